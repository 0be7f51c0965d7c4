"""Issue 14: ``DBOS.send_bulk`` / ``SendMessage``, ``DBOS.run_step``, steps started as
workflows, bulk cancel / resume / delete (DBOS and DBOSClient, the CLI's ``delete``), and
DBOS Transact's error texts. Every test runs on SQLite and Postgres."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from dbos_async import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSClient,
    DBOSConfigError,
    DBOSException,
    DBOSMaxStepRetriesExceeded,
    DBOSNonExistentWorkflowError,
    Queue,
    SendMessage,
    SetEnqueueOptions,
    SetWorkflowID,
    WorkflowStatusString,
)
from dbos_async._runtime import get_runtime

WITHIN = 15.0
counts: Counter[str] = Counter()
gates: dict[str, asyncio.Event] = {}

Q_MISC = Queue("bulk_misc_q")
Q_PART = Queue("bulk_misc_part_q", partition_queue=True)


def _gate(name: str) -> asyncio.Event:
    gates[name] = asyncio.Event()
    return gates[name]


@pytest.fixture(autouse=True)
def _reset() -> None:
    counts.clear()
    gates.clear()


# -- workflows ---------------------------------------------------------------------------


@DBOS.workflow()
async def bm_recv(n: int, topic: str | None = None, wait: float = WITHIN) -> list[Any]:
    return [await DBOS.recv(topic, timeout_seconds=wait) for _ in range(n)]


@DBOS.workflow()
async def bm_send_bulk_wf(messages: list[tuple[str, str]]) -> str:
    counts["send_bulk_wf"] += 1
    await DBOS.send_bulk([SendMessage(dest, msg) for dest, msg in messages])
    return "sent"


@DBOS.workflow()
async def bm_send_empty_wf() -> str:
    await DBOS.send_bulk_async([])
    return "ok"


@DBOS.step(name="bm_double_step")
async def bm_double(x: int) -> int:
    counts["double"] += 1
    return x * 2


@DBOS.step()
def bm_sync_step(x: int) -> str:
    counts["sync_step"] += 1
    return f"sync-{x}-{DBOS.workflow_id}"


@DBOS.transaction()
async def bm_txn(x: int) -> int:
    counts["txn"] += 1
    return x + 1


def bm_plain(x: int) -> int:
    counts["plain"] += 1
    return x + 100


async def bm_plain_async(x: int) -> int:
    counts["plain_async"] += 1
    return x + 200


@DBOS.workflow()
async def bm_run_step_wf(x: int) -> list[int]:
    a = await DBOS.run_step({"name": "plainStep"}, bm_plain, x)
    b = await DBOS.run_step_async(None, bm_plain_async, x)

    def flaky() -> int:
        status = DBOS.step_status
        assert status is not None and status.current_attempt is not None
        counts["flaky"] += 1
        if status.current_attempt < 2:
            raise ValueError("not yet")
        return status.current_attempt

    c = await DBOS.run_step(
        {
            "name": "flakyStep",
            "retries_allowed": True,
            "max_attempts": 5,
            "interval_seconds": 0.01,
            "backoff_rate": 1,
        },
        flaky,
    )
    return [a, b, c]


@DBOS.workflow()
async def bm_run_step_fails_wf() -> None:
    def always() -> None:
        counts["always"] += 1
        raise ValueError("never")

    await DBOS.run_step({"retries_allowed": True, "max_attempts": 2, "interval_seconds": 0}, always)


@DBOS.workflow()
async def bm_preemptible_wf() -> None:
    async def long() -> None:
        gates["preempt-started"].set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            counts["preempted"] += 1
            raise

    await DBOS.run_step_async({"preemptible": True}, long)


@DBOS.workflow()
async def bm_blocks(tag: str) -> str:
    counts[f"blocks-{tag}"] += 1
    await DBOS.recv("go", timeout_seconds=60)
    return f"done-{tag}"


@DBOS.workflow()
async def bm_parent(tag: str) -> str:
    child = await DBOS.start_workflow(bm_blocks, f"{tag}-child")
    await DBOS.set_event("child", child.workflow_id)
    await DBOS.recv("go", timeout_seconds=60)
    return await child.get_result()


@DBOS.workflow()
async def bm_everything(tag: str) -> int:
    await DBOS.set_event("k", tag)
    await DBOS.write_stream("s", 1)
    await DBOS.close_stream("s")
    return await bm_txn(await bm_double(1))


@DBOS.workflow()
async def bm_bulk_ops_in_wf(ids: list[str]) -> int:
    counts["bulk_ops_wf"] += 1
    await DBOS.cancel_workflows(ids)
    await DBOS.resume_workflows(ids)
    await DBOS.delete_workflows(ids)
    return len(ids)


async def _status(workflow_id: str) -> str | None:
    status = await DBOS.get_workflow_status(workflow_id)
    return None if status is None else status.status.value


async def _wait_status(workflow_id: str, *statuses: str) -> None:
    async def poll() -> None:
        while await _status(workflow_id) not in statuses:  # noqa: ASYNC110 (a stored row)
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), WITHIN)


# -- send_bulk --------------------------------------------------------------------------


async def test_send_bulk__outside_workflows_to_several_destinations_and_topics(
    dbos: DBOS,
) -> None:
    with SetWorkflowID("sb-a"):
        a = await DBOS.start_workflow(bm_recv, 2, "t")
    with SetWorkflowID("sb-b"):
        b = await DBOS.start_workflow(bm_recv, 1)
    await DBOS.send_bulk(
        [
            SendMessage("sb-a", "a1", "t"),
            SendMessage("sb-b", {"x": 1}),
            SendMessage("sb-a", "a2", "t"),
        ]
    )
    assert await asyncio.wait_for(a.get_result(), WITHIN) == ["a1", "a2"]
    assert await asyncio.wait_for(b.get_result(), WITHIN) == [{"x": 1}]


async def test_send_bulk__an_unknown_destination_sends_nothing(dbos: DBOS) -> None:
    with SetWorkflowID("sb-real"):
        real = await DBOS.start_workflow(bm_recv, 1, None, 1.0)
    with pytest.raises(DBOSNonExistentWorkflowError) as info:
        await DBOS.send_bulk([SendMessage("sb-real", "no"), SendMessage("sb-nowhere", "x")])
    assert "DBOS Error 5: Non-existent `send` destination workflow ID: sb-nowhere" in str(
        info.value
    )
    assert info.value.workflow_id == "sb-nowhere"
    assert await asyncio.wait_for(real.get_result(), WITHIN) == [None]


async def test_send_bulk__from_a_workflow_is_one_step_sent_once(dbos: DBOS) -> None:
    with SetWorkflowID("sb-dest"):
        dest = await DBOS.start_workflow(bm_recv, 3, None, 2.0)
    with SetWorkflowID("sb-sender"):
        assert await bm_send_bulk_wf([("sb-dest", "one"), ("sb-dest", "two")]) == "sent"
    steps = await DBOS.list_workflow_steps("sb-sender")
    assert [s.function_name for s in steps] == ["DBOS.send_bulk"]
    # Run again under the same ID: the recorded outcome, nothing sent twice.
    with SetWorkflowID("sb-sender"):
        assert await bm_send_bulk_wf([("sb-dest", "one"), ("sb-dest", "two")]) == "sent"
    assert await asyncio.wait_for(dest.get_result(), WITHIN) == ["one", "two", None]
    # The same workflow under another ID is another step: its messages are delivered.
    with SetWorkflowID("sb-dest2"):
        dest2 = await DBOS.start_workflow(bm_recv, 1)
    with SetWorkflowID("sb-sender2"):
        await bm_send_bulk_wf([("sb-dest2", "again")])
    assert await asyncio.wait_for(dest2.get_result(), WITHIN) == ["again"]


async def test_send_bulk__to_an_unknown_destination_from_a_workflow_records_the_error(
    dbos: DBOS,
) -> None:
    with SetWorkflowID("sb-err"), pytest.raises(DBOSNonExistentWorkflowError, match="Non-existent"):
        await bm_send_bulk_wf([("sb-missing", "x")])
    assert counts["send_bulk_wf"] == 1
    steps = await DBOS.list_workflow_steps("sb-err")
    assert [s.function_name for s in steps] == ["DBOS.send_bulk"]
    assert isinstance(steps[0].error, DBOSNonExistentWorkflowError)
    assert await _status("sb-err") == WorkflowStatusString.ERROR.value


async def test_send_bulk__idempotency_keys(dbos: DBOS) -> None:
    with SetWorkflowID("sb-idem"):
        dest = await DBOS.start_workflow(bm_recv, 2, None, 2.0)
    await DBOS.send_bulk([SendMessage("sb-idem", "hello", idempotency_key="k1")])
    await DBOS.send_bulk([SendMessage("sb-idem", "duplicate", idempotency_key="k1")])
    assert await asyncio.wait_for(dest.get_result(), WITHIN) == ["hello", None]

    with SetWorkflowID("sb-dup"):
        dup = await DBOS.start_workflow(bm_recv, 1, None, 1.0)
    with pytest.raises(DBOSException, match="duplicate idempotency keys: k2"):
        await DBOS.send_bulk(
            [
                SendMessage("sb-dup", "first", idempotency_key="k2"),
                SendMessage("sb-dup", "second", idempotency_key="k2"),
            ]
        )
    assert await asyncio.wait_for(dup.get_result(), WITHIN) == [None]


async def test_send_bulk__empty_and_bad_input(dbos: DBOS) -> None:
    await DBOS.send_bulk([])
    assert await bm_send_empty_wf() == "ok"
    with pytest.raises(TypeError, match="SendMessage"):
        await DBOS.send_bulk([("sb-x", "m")])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        await DBOS.send_bulk([SendMessage("", "m")])


async def test_send_bulk__from_a_client(dbos: DBOS, db_url: str) -> None:
    with SetWorkflowID("sb-c1"):
        one = await DBOS.start_workflow(bm_recv, 1)
    with SetWorkflowID("sb-c2"):
        two = await DBOS.start_workflow(bm_recv, 1)
    async with DBOSClient(db_url) as client:
        await client.send_bulk_async([SendMessage("sb-c1", "to-1"), SendMessage("sb-c2", "to-2")])
        with pytest.raises(DBOSNonExistentWorkflowError, match="`send` destination"):
            await client.send_bulk([SendMessage("sb-c-missing", 1)])
    assert await asyncio.wait_for(one.get_result(), WITHIN) == ["to-1"]
    assert await asyncio.wait_for(two.get_result(), WITHIN) == ["to-2"]


# -- run_step ------------------------------------------------------------------------------


async def test_run_step__in_a_workflow_is_recorded_with_its_options(dbos: DBOS) -> None:
    with SetWorkflowID("rs-1"):
        assert await bm_run_step_wf(1) == [101, 201, 2]
    steps = await DBOS.list_workflow_steps("rs-1")
    assert [s.function_name for s in steps] == ["plainStep", "bm_plain_async", "flakyStep"]
    assert counts["flaky"] == 3
    # Replayed: nothing runs again.
    with SetWorkflowID("rs-1"):
        assert await bm_run_step_wf(1) == [101, 201, 2]
    assert (counts["plain"], counts["plain_async"], counts["flaky"]) == (1, 1, 3)


async def test_run_step__retries_exhausted_and_outside_workflows(dbos: DBOS) -> None:
    with pytest.raises(DBOSMaxStepRetriesExceeded):
        await bm_run_step_fails_wf()
    assert counts["always"] == 2
    # Outside a workflow the function just runs (a plain def in a worker thread).
    assert await DBOS.run_step(None, bm_plain, 5) == 105
    assert await DBOS.run_step_async({"name": "x"}, bm_plain_async, 5) == 205
    assert len(await DBOS.list_workflows()) == 1  # (only the failed workflow)


async def test_run_step__bad_options_are_refused(dbos: DBOS) -> None:
    with pytest.raises(DBOSConfigError, match="should_retry"):
        await DBOS.run_step({"should_retry": lambda e: True}, bm_plain, 1)
    with pytest.raises(DBOSConfigError, match="unknown step option"):
        await DBOS.run_step({"retries": 3}, bm_plain, 1)
    with pytest.raises(DBOSConfigError, match="max_attempts"):
        await DBOS.run_step({"max_attempts": 0}, bm_plain, 1)
    with pytest.raises(DBOSConfigError, match="async def"):
        await DBOS.run_step({"preemptible": True}, bm_plain, 1)
    assert counts["plain"] == 0


async def test_run_step__preemptible_step_is_cancelled_with_its_workflow(dbos: DBOS) -> None:
    started = _gate("preempt-started")
    with SetWorkflowID("rs-preempt"):
        handle = await DBOS.start_workflow(bm_preemptible_wf)
    await asyncio.wait_for(started.wait(), WITHIN)
    await DBOS.cancel_workflow("rs-preempt")
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(handle.get_result(), WITHIN)
    assert counts["preempted"] == 1


# -- steps started as workflows -----------------------------------------------------------


async def test_step_as_workflow__start_workflow_runs_it_as_its_own_workflow(dbos: DBOS) -> None:
    with SetWorkflowID("saw-1"):
        handle = await DBOS.start_workflow(bm_double, 21)
    assert await asyncio.wait_for(handle.get_result(), WITHIN) == 42
    status = await DBOS.get_workflow_status("saw-1")
    assert status is not None and status.name == "<temp>.bm_double_step"
    steps = await DBOS.list_workflow_steps("saw-1")
    assert [(s.function_id, s.function_name, s.output) for s in steps] == [
        (1, "bm_double_step", 42)
    ]
    # A sync step and a transaction too; the step sees its workflow's ID.
    with SetWorkflowID("saw-sync"):
        sync = await DBOS.start_workflow_async(bm_sync_step, 3)
    assert await asyncio.wait_for(sync.get_result(), WITHIN) == "sync-3-saw-sync"
    txn = await DBOS.start_workflow(bm_txn, 1)
    assert await asyncio.wait_for(txn.get_result(), WITHIN) == 2
    txn_status = await txn.get_status()
    assert txn_status is not None and txn_status.name == "<temp>.bm_txn"
    # Fork reruns it from its recorded inputs (found in the registry by its name).
    fork = await DBOS.fork_workflow("saw-1", 1)
    assert await asyncio.wait_for(fork.get_result(), WITHIN) == 42
    assert counts["double"] == 2


@DBOS.step()
async def bm_gated_step(x: int) -> int:
    counts["gated"] += 1
    await gates["gated"].wait()
    return x + 1


async def test_step_as_workflow__is_recovered_after_a_restart(dbos: DBOS, db_url: str) -> None:
    _gate("gated")
    with SetWorkflowID("saw-recover"):
        await DBOS.start_workflow(bm_gated_step, 1)
    while counts["gated"] == 0:  # noqa: ASYNC110 (a counter, not an event)
        await asyncio.sleep(0.02)
    await DBOS.destroy()  # (the step never finished: the workflow stays PENDING)
    gates["gated"].set()
    DBOS({"database_url": db_url, "application_version": "test"})
    await DBOS.launch()
    handle = await DBOS.retrieve_workflow("saw-recover")
    assert await asyncio.wait_for(handle.get_result(), WITHIN) == 2
    assert counts["gated"] == 2
    status = await handle.get_status()
    assert status is not None and status.name == "<temp>.bm_gated_step"


async def test_step_as_workflow__enqueued_and_called_outside_workflows(dbos: DBOS) -> None:
    queued = await Q_MISC.enqueue(bm_double, 5)
    assert await asyncio.wait_for(queued.get_result(), WITHIN) == 10
    status = await queued.get_status()
    assert status is not None and status.name == "<temp>.bm_double_step"
    assert status.queue_name == "bulk_misc_q"
    # Called outside a workflow, a step just runs: no workflow is created.
    before = len(await DBOS.list_workflows())
    assert await bm_double(4) == 8
    assert len(await DBOS.list_workflows()) == before
    with pytest.raises(TypeError, match="decorated"):
        await DBOS.start_workflow(bm_plain, 1)  # type: ignore[arg-type]


# -- cancel / resume / delete many ------------------------------------------------------------


async def test_cancel_and_resume_workflows(dbos: DBOS) -> None:
    handles = []
    for tag in ("c1", "c2"):
        with SetWorkflowID(f"bulk-{tag}"):
            handles.append(await DBOS.start_workflow(bm_blocks, tag))
    ids = [h.workflow_id for h in handles]
    with pytest.raises(DBOSNonExistentWorkflowError, match="bulk-nope"):
        await DBOS.cancel_workflows([*ids, "bulk-nope"])
    assert [await _status(i) for i in ids] == ["PENDING", "PENDING"]
    await DBOS.cancel_workflows_async(ids)
    assert [await _status(i) for i in ids] == ["CANCELLED", "CANCELLED"]
    for handle in handles:
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            await asyncio.wait_for(handle.get_result(), WITHIN)

    with pytest.raises(DBOSNonExistentWorkflowError, match="bulk-nope"):
        await DBOS.resume_workflows(["bulk-nope", *ids])
    assert [await _status(i) for i in ids] == ["CANCELLED", "CANCELLED"]
    resumed = await DBOS.resume_workflows_async(ids)
    assert [h.workflow_id for h in resumed] == ids
    for workflow_id in ids:
        await DBOS.send(workflow_id, "go", "go")
    results = [await asyncio.wait_for(h.get_result(), WITHIN) for h in resumed]
    assert results == ["done-c1", "done-c2"]


async def test_cancel_workflows__with_children(dbos: DBOS) -> None:
    with SetWorkflowID("bulk-parent"):
        parent = await DBOS.start_workflow(bm_parent, "p")
    child_id = await DBOS.get_event("bulk-parent", "child", WITHIN)
    assert child_id is not None
    await _wait_status(child_id, "PENDING")
    await DBOS.cancel_workflows(["bulk-parent"], cancel_children=True)
    assert await _status("bulk-parent") == "CANCELLED"
    assert await _status(child_id) == "CANCELLED"
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(parent.get_result(), WITHIN)


async def test_delete_workflows__removes_every_row_in_both_databases(dbos: DBOS) -> None:
    with SetWorkflowID("del-all"):
        assert await bm_everything("x") == 3
    with SetWorkflowID("del-keep"):
        assert await bm_everything("y") == 3
    rt = get_runtime()
    steps = await DBOS.list_workflow_steps("del-all")
    txn_step = next(s.function_id for s in steps if s.function_name.endswith("bm_txn"))
    assert await rt.appdb.get_transaction_output("del-all", txn_step) is not None
    # (a message waiting for it, unconsumed)
    await DBOS.send("del-all", "unread")

    await DBOS.delete_workflow("del-all")
    assert await DBOS.get_workflow_status("del-all") is None
    assert await rt.sysdb.load_steps("del-all") == []
    assert await rt.sysdb.get_all_events("del-all") == {}
    assert await rt.sysdb.read_stream("del-all", "s", 0) == []
    assert await rt.appdb.get_transaction_output("del-all", txn_step) is None
    with pytest.raises(DBOSNonExistentWorkflowError, match="Non-existent target workflow ID"):
        await DBOS.retrieve_workflow("del-all")
    # Another workflow's rows are untouched; deleting again (or an unknown ID) is a no-op.
    assert await DBOS.get_all_events("del-keep") == {"k": "y"}
    assert len(await DBOS.list_workflow_steps("del-keep")) == len(steps)
    await DBOS.delete_workflows_async(["del-all", "del-unknown"])

    # The ID can be used again: a fresh workflow (a message sent before is gone).
    with SetWorkflowID("del-all"):
        again = await DBOS.start_workflow(bm_recv, 1, None, 0.5)
    assert await asyncio.wait_for(again.get_result(), WITHIN) == [None]


async def test_delete_workflows__children_only_when_asked(dbos: DBOS) -> None:
    for tag in ("a", "b"):
        with SetWorkflowID(f"del-parent-{tag}"):
            await DBOS.start_workflow(bm_parent, tag)
    child_a = await DBOS.get_event("del-parent-a", "child", WITHIN)
    child_b = await DBOS.get_event("del-parent-b", "child", WITHIN)
    assert child_a and child_b
    await DBOS.delete_workflows(["del-parent-a"])
    assert await _status("del-parent-a") is None
    assert await _status(child_a) == "PENDING"
    await DBOS.delete_workflows(["del-parent-b"], delete_children=True)
    assert await _status("del-parent-b") is None
    assert await _status(child_b) is None
    await DBOS.delete_workflows([child_a])


async def test_delete_workflow__a_running_workflow_is_stopped(dbos: DBOS) -> None:
    with SetWorkflowID("del-running"):
        handle = await DBOS.start_workflow(bm_blocks, "r")
    await _wait_status("del-running", "PENDING")
    waiting = asyncio.ensure_future(handle.get_result())
    await asyncio.sleep(0.1)
    await DBOS.delete_workflow("del-running")
    # An awaiter of the run here hears it stopped as a cancel; later, there is no workflow.
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(waiting, WITHIN)
    await asyncio.sleep(0.3)
    assert "del-running" not in get_runtime().live
    assert await DBOS.get_workflow_status("del-running") is None
    with pytest.raises(DBOSNonExistentWorkflowError):
        await asyncio.wait_for(handle.get_result(), WITHIN)
    assert counts["blocks-r"] == 1


@DBOS.step()
async def bm_slow_step() -> str:
    gates["slow-started"].set()
    await gates["slow-release"].wait()
    counts["slow_step"] += 1
    return "slow"


@DBOS.step()
async def bm_after_slow() -> None:
    counts["after_slow"] += 1


@DBOS.workflow()
async def bm_slow_wf() -> str:
    first = await bm_slow_step()
    await bm_after_slow()
    return first


async def test_delete_workflow__while_a_step_runs_records_nothing_and_harms_no_other(
    dbos: DBOS,
) -> None:
    started, release = _gate("slow-started"), _gate("slow-release")
    with SetWorkflowID("del-in-step"):
        handle = await DBOS.start_workflow(bm_slow_wf)
    await asyncio.wait_for(started.wait(), WITHIN)
    await DBOS.delete_workflow("del-in-step")
    release.set()
    with pytest.raises((DBOSAwaitedWorkflowCancelledError, DBOSNonExistentWorkflowError)):
        await asyncio.wait_for(handle.get_result(), WITHIN)
    await asyncio.sleep(0.3)
    # The step's body finished, but nothing of it was stored, and the workflow's next
    # step never began (its own code may go on while the step's row is written: it has
    # no effects); the journal goes on recording other workflows' steps.
    assert counts["slow_step"] == 1 and counts["after_slow"] == 0
    assert await DBOS.get_workflow_status("del-in-step") is None
    assert await get_runtime().sysdb.load_steps("del-in-step") == []
    with SetWorkflowID("del-after"):
        assert await bm_everything("z") == 3


async def test_bulk_operations__from_a_workflow_are_steps(dbos: DBOS) -> None:
    with SetWorkflowID("bulk-target"):
        await DBOS.start_workflow(bm_blocks, "t")
    with SetWorkflowID("bulk-ops"):
        assert await bm_bulk_ops_in_wf(["bulk-target"]) == 1
    steps = await DBOS.list_workflow_steps("bulk-ops")
    assert [s.function_name for s in steps] == [
        "DBOS.cancelWorkflow",
        "DBOS.resumeWorkflow",
        "DBOS.deleteWorkflow",
    ]
    assert await _status("bulk-target") is None


async def test_bulk_operations__from_a_client(dbos: DBOS, db_url: str) -> None:
    for tag in ("k1", "k2"):
        with SetWorkflowID(f"cl-{tag}"):
            await DBOS.start_workflow(bm_blocks, tag)
    ids = ["cl-k1", "cl-k2"]
    async with DBOSClient(db_url) as client:
        with pytest.raises(DBOSNonExistentWorkflowError):
            await client.cancel_workflows([*ids, "cl-missing"])
        await client.cancel_workflows_async(ids)
        assert [await _status(i) for i in ids] == ["CANCELLED", "CANCELLED"]
        handles = await client.resume_workflows(ids)
        assert [h.workflow_id for h in handles] == ids
        for workflow_id in ids:
            await _wait_status(workflow_id, "PENDING")
        await client.delete_workflow("cl-k1")
        await client.delete_workflows_async(["cl-k2"], delete_children=True)
    for workflow_id in ids:
        await _wait_status(workflow_id, None)  # type: ignore[arg-type]


async def test_bulk_operations__bad_ids_change_nothing(dbos: DBOS) -> None:
    with pytest.raises(TypeError, match="list of workflow IDs"):
        await DBOS.delete_workflows("one-id")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await DBOS.cancel_workflows(["ok", ""])


# -- DBOS Transact's error texts ---------------------------------------------------------------


@DBOS.workflow()
async def bm_send_to(dest: str) -> None:
    await DBOS.send(dest, "m")


async def test_error_texts__as_dbos_transact_words_them(dbos: DBOS) -> None:
    with pytest.raises(DBOSNonExistentWorkflowError) as info:
        await DBOS.retrieve_workflow("et-missing")
    assert "Non-existent target workflow ID: et-missing" in str(info.value)
    assert str(info.value).startswith("DBOS Error 5: ")
    with pytest.raises(DBOSNonExistentWorkflowError) as info:
        await DBOS.send("et-missing", "m")
    assert "DBOS Error 5: Non-existent `send` destination workflow ID: et-missing" in str(
        info.value
    )
    with pytest.raises(DBOSNonExistentWorkflowError) as info:
        await bm_send_to("et-missing")
    assert "Non-existent `send` destination workflow ID: et-missing" in str(info.value)
    with pytest.raises(DBOSException, match=r"set_event\(\) must be called from within a workflow"):
        await DBOS.set_event("k", "v")
    with pytest.raises(DBOSException, match=r"recv\(\) must be called from within a workflow"):
        await DBOS.recv()


async def test_error_texts__enqueue_options_around_a_start(dbos: DBOS) -> None:
    options: list[dict[str, Any]] = [
        {"deduplication_id": "d"},
        {"priority": 5},
        {"queue_partition_key": "k"},
        {"delay_seconds": 30},
    ]
    for option in options:
        with (
            pytest.raises(DBOSException) as info,
            SetEnqueueOptions(**option),
            SetWorkflowID("et-enq"),
        ):
            await DBOS.start_workflow(bm_double, 1)
        assert "not being enqueued" in str(info.value)
        assert next(iter(option)) in str(info.value)
        assert await DBOS.get_workflow_status("et-enq") is None
    # A block that sets nothing is harmless.
    with SetEnqueueOptions(), SetWorkflowID("et-enq"):
        assert await (await DBOS.start_workflow(bm_double, 2)).get_result() == 4


async def test_error_texts__partition_keys(dbos: DBOS) -> None:
    with pytest.raises(ValueError, match="without a partition key"):
        await Q_PART.enqueue(bm_double, 1)
    with (
        SetEnqueueOptions(queue_partition_key="key"),
        pytest.raises(ValueError, match="only use a partition key on a partition-enabled queue"),
    ):
        await Q_MISC.enqueue(bm_double, 1)


def test_errors__non_existent_workflow_error_round_trips() -> None:
    error = DBOSNonExistentWorkflowError("a, b", "`send` destination")
    again = DBOSNonExistentWorkflowError(*error.args)
    assert (
        str(again)
        == str(error)
        == ("DBOS Error 5: Non-existent `send` destination workflow ID: a, b")
    )
    assert DBOSNonExistentWorkflowError("x").message == "Non-existent target workflow ID: x"
