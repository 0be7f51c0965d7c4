"""Faults never fail, lose or repeat work (issue 10), on both backends: a cancel or a
deadline stops a workflow at a step boundary (a running step or transaction finishes and
is recorded; the next one never runs), a resumed queued workflow goes back through its
queue's limits without re-running its finished steps, handles follow the current run,
an ENQUEUED workflow past its deadline is cancelled without waiting for a queue slot, and
enqueue options outside an enqueue are refused."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from dbos_async import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSClient,
    DBOSException,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
    SetWorkflowTimeout,
    WorkflowHandle,
    WorkflowStatus,
    WorkflowStatusString,
)
from dbos_async._registry import registry

# Generous bounds: the suite runs on a loaded 2-core machine. Only outcomes and orderings
# are asserted, never how fast something happened below these bounds.
WITHIN = 15.0

counts: Counter[str] = Counter()
#: Gates the workflows below wait on, made afresh for every test (event loops differ).
gates: dict[str, asyncio.Event] = {}
thread_gate = threading.Event()


def gate(name: str) -> asyncio.Event:
    if name not in gates:
        gates[name] = asyncio.Event()
    return gates[name]


def _declare(name: str, **kwargs: Any) -> Queue:
    """A queue of this module, in the registry only while one of its tests runs."""
    queue = Queue(name, polling_interval_sec=0.1, **kwargs)
    registry.queues.pop(name, None)
    return queue


Q_ONE = _declare("cb_one", concurrency=1)


@pytest.fixture(autouse=True)
def _module_queues() -> Iterator[None]:
    registry.queues[Q_ONE.name] = Q_ONE
    try:
        yield
    finally:
        registry.queues.pop(Q_ONE.name, None)


async def relaunch(db_url: str) -> None:
    """Simulate a process restart: destroy the runtime and launch a new one."""
    await DBOS.destroy()
    DBOS({"database_url": db_url, "application_version": "test"})
    await DBOS.launch()


@pytest.fixture(autouse=True)
def _reset_state() -> Iterator[None]:
    counts.clear()
    gates.clear()
    thread_gate.clear()
    yield
    thread_gate.set()  # never leave a worker thread blocked
    counts.clear()
    gates.clear()


async def wait_until(predicate: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WITHIN
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def counted(key: str, n: int = 1) -> None:
    async def check() -> bool:
        return counts[key] >= n

    await wait_until(check, f"{key} to reach {n}")


async def status(workflow_id: str) -> WorkflowStatus:
    st = await DBOS.get_workflow_status(workflow_id)
    assert st is not None, workflow_id
    return st


async def has_status(workflow_id: str, expected: str) -> None:
    async def check() -> bool:
        return (await status(workflow_id)).status == expected

    await wait_until(check, f"{workflow_id} to be {expected}")


async def step_names(workflow_id: str) -> list[str]:
    return [s.function_name for s in await DBOS.list_workflow_steps(workflow_id)]


async def recorded(workflow_id: str, name: str) -> None:
    async def check() -> bool:
        return name in await step_names(workflow_id)

    await wait_until(check, f"step {name} of {workflow_id} to be recorded")


async def cancelled_promptly(handle: WorkflowHandle[Any]) -> None:
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(handle.get_result(), WITHIN)


# -- steps with two effects around an await ------------------------------------------


@DBOS.step()
async def cb_two_effects(tag: str) -> str:
    counts[f"{tag}:first"] += 1
    await gate(tag).wait()
    counts[f"{tag}:second"] += 1
    return tag


@DBOS.step()
async def cb_next() -> str:
    counts["next"] += 1
    return "next"


@DBOS.workflow()
async def cb_one_step() -> str:
    first = await cb_two_effects("a")
    return first + await cb_next()


@DBOS.workflow()
async def cb_gathered() -> str:
    a, b = await asyncio.gather(cb_two_effects("a"), cb_two_effects("b"))
    return a + b + await cb_next()


@DBOS.workflow()
async def cb_step_and_sleep() -> str:
    a, _ = await asyncio.gather(cb_two_effects("a"), DBOS.sleep(60))
    return a + await cb_next()


@DBOS.step()
def cb_thread_step() -> str:
    counts["thread:first"] += 1
    thread_gate.wait(60)
    counts["thread:second"] += 1
    return "t"


@DBOS.workflow()
async def cb_thread_workflow() -> str:
    first = cb_thread_step()
    return await first + await cb_next()


def assert_step_ran_once(tag: str) -> None:
    assert counts[f"{tag}:first"] == 1
    assert counts[f"{tag}:second"] == 1


async def test_cancel__running_step_finishes_records_and_next_never_runs(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(cb_one_step)
    await counted("a:first")
    await DBOS.cancel_workflow(handle.workflow_id)
    # Awaiters learn at once, while the step body is still running.
    await cancelled_promptly(handle)
    assert counts["a:second"] == 0
    gate("a").set()
    await recorded(handle.workflow_id, "cb_two_effects")
    await asyncio.sleep(0.3)
    assert_step_ran_once("a")
    assert counts["next"] == 0
    assert await step_names(handle.workflow_id) == ["cb_two_effects"]
    [step] = await DBOS.list_workflow_steps(handle.workflow_id)
    assert step.output == "a"
    assert (await status(handle.workflow_id)).status == WorkflowStatusString.CANCELLED


async def test_cancel__deadline_lets_the_running_step_finish(dbos: DBOS) -> None:
    # (Long enough that the step surely starts first, even on a loaded machine.)
    with SetWorkflowTimeout(2.0):
        handle = await DBOS.start_workflow(cb_one_step)
    await counted("a:first")
    await has_status(handle.workflow_id, WorkflowStatusString.CANCELLED)
    await cancelled_promptly(handle)
    assert counts["a:second"] == 0
    gate("a").set()
    await recorded(handle.workflow_id, "cb_two_effects")
    await asyncio.sleep(0.3)
    assert_step_ran_once("a")
    assert counts["next"] == 0
    assert await step_names(handle.workflow_id) == ["cb_two_effects"]
    assert (await status(handle.workflow_id)).status == WorkflowStatusString.CANCELLED


async def test_cancel__gathered_steps_all_finish_and_record(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(cb_gathered)
    await counted("a:first")
    await counted("b:first")
    await DBOS.cancel_workflow(handle.workflow_id)
    await cancelled_promptly(handle)
    gate("a").set()
    await recorded(handle.workflow_id, "cb_two_effects")
    await asyncio.sleep(0.2)
    assert counts["b:second"] == 0  # still running: not interrupted
    gate("b").set()

    async def both() -> bool:
        return len(await step_names(handle.workflow_id)) == 2

    await wait_until(both, "both gathered steps to be recorded")
    await asyncio.sleep(0.3)
    assert_step_ran_once("a")
    assert_step_ran_once("b")
    assert counts["next"] == 0
    assert await step_names(handle.workflow_id) == ["cb_two_effects", "cb_two_effects"]
    assert (await status(handle.workflow_id)).status == WorkflowStatusString.CANCELLED


async def test_cancel__step_gathered_with_a_sleep_finishes_then_the_workflow_stops(
    dbos: DBOS,
) -> None:
    handle = await DBOS.start_workflow(cb_step_and_sleep)
    await counted("a:first")
    await DBOS.cancel_workflow(handle.workflow_id)
    await cancelled_promptly(handle)
    gate("a").set()
    await recorded(handle.workflow_id, "cb_two_effects")
    await asyncio.sleep(0.3)
    assert_step_ran_once("a")
    assert counts["next"] == 0
    assert sorted(await step_names(handle.workflow_id)) == ["DBOS.sleep", "cb_two_effects"]
    assert (await status(handle.workflow_id)).status == WorkflowStatusString.CANCELLED


async def test_cancel__def_step_in_a_thread_finishes_and_records(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(cb_thread_workflow)
    await counted("thread:first")
    await DBOS.cancel_workflow(handle.workflow_id)
    await cancelled_promptly(handle)
    assert counts["thread:second"] == 0
    thread_gate.set()
    await recorded(handle.workflow_id, "cb_thread_step")
    await asyncio.sleep(0.3)
    assert_step_ran_once("thread")
    assert counts["next"] == 0
    assert await step_names(handle.workflow_id) == ["cb_thread_step"]
    assert (await status(handle.workflow_id)).status == WorkflowStatusString.CANCELLED


# -- a transaction ---------------------------------------------------------------------


@DBOS.transaction()
async def cb_transaction() -> int:
    counts["tx:first"] += 1
    await DBOS.sql_connection.execute("CREATE TABLE IF NOT EXISTS cb_t (x INTEGER)")
    await gate("tx").wait()
    await DBOS.sql_connection.execute("INSERT INTO cb_t (x) VALUES (1)")
    counts["tx:second"] += 1
    return 7


@DBOS.workflow()
async def cb_tx_workflow() -> int:
    value = await cb_transaction()
    await cb_next()
    return value


async def test_cancel__running_transaction_commits_and_records(dbos: DBOS, backend: str) -> None:
    handle = await DBOS.start_workflow(cb_tx_workflow)
    await counted("tx:first")
    # On SQLite the cancel's write waits for the open transaction (one writer), queued
    # ahead of the step's checkpoint; on Postgres it lands while the body runs (waited
    # for here, however loaded the machine). Either way the body is not interrupted.
    cancel = asyncio.create_task(DBOS.cancel_workflow(handle.workflow_id))
    if backend == "postgres":
        await asyncio.wait_for(asyncio.shield(cancel), WITHIN)
    else:
        await asyncio.wait({cancel}, timeout=1.0)
    gate("tx").set()
    await asyncio.wait_for(cancel, WITHIN)
    await cancelled_promptly(handle)
    await recorded(handle.workflow_id, "cb_transaction")
    await asyncio.sleep(0.3)
    assert_step_ran_once("tx")
    assert counts["next"] == 0
    [step] = await DBOS.list_workflow_steps(handle.workflow_id)
    assert step.output == 7
    assert (await status(handle.workflow_id)).status == WorkflowStatusString.CANCELLED


# -- waiting workflows stop at once ----------------------------------------------------


@DBOS.workflow()
async def cb_waiter(kind: str) -> str:
    await cb_next()
    counts["waiting"] += 1
    try:
        if kind == "sleep":
            await DBOS.sleep(60)
        elif kind == "recv":
            await DBOS.recv("cb-topic", timeout_seconds=60)
        elif kind == "get_event":
            await DBOS.get_event("cb-nobody", "key", timeout_seconds=60)
        else:
            await gate("plain").wait()
    finally:
        counts["unwound"] += 1
    counts["after"] += 1
    await cb_next()
    return "done"


@pytest.mark.parametrize("kind", ["sleep", "recv", "get_event", "plain"])
async def test_cancel__waiting_workflow_stops_at_once(dbos: DBOS, kind: str) -> None:
    handle = await DBOS.start_workflow(cb_waiter, kind)
    await counted("waiting")
    await asyncio.sleep(0.05)
    await DBOS.cancel_workflow(handle.workflow_id)
    await cancelled_promptly(handle)
    await counted("unwound")  # the wait itself was interrupted, nothing ran after it
    gate("plain").set()
    await asyncio.sleep(0.2)
    assert counts["after"] == 0
    assert counts["next"] == 1
    assert (await status(handle.workflow_id)).status == WorkflowStatusString.CANCELLED


async def test_resume__waits_for_the_cancelled_run_to_record_its_step(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(cb_one_step)
    await counted("a:first")
    await DBOS.cancel_workflow(handle.workflow_id)
    resume = asyncio.create_task(DBOS.resume_workflow(handle.workflow_id))
    await asyncio.sleep(0.3)
    assert not resume.done()  # the step of the cancelled run is still running
    gate("a").set()
    resumed = await asyncio.wait_for(resume, WITHIN)
    assert await asyncio.wait_for(resumed.get_result(), WITHIN) == "anext"
    assert_step_ran_once("a")
    assert counts["next"] == 1
    assert await step_names(handle.workflow_id) == ["cb_two_effects", "cb_next"]


# -- handles follow the current run --------------------------------------------------


async def test_handle__taken_before_cancel_gives_the_result_after_resume(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(cb_one_step)
    await counted("a:first")
    await DBOS.cancel_workflow(handle.workflow_id)
    await cancelled_promptly(handle)
    gate("a").set()
    await DBOS.resume_workflow(handle.workflow_id)
    assert await asyncio.wait_for(handle.get_result(), WITHIN) == "anext"
    assert await asyncio.wait_for(handle, WITHIN) == "anext"
    assert_step_ran_once("a")
    assert counts["next"] == 1


# -- resume of a queued workflow goes back through its queue -------------------------


@DBOS.step()
async def cb_mark(tag: str, n: int) -> str:
    counts[f"{tag}:{n}"] += 1
    return f"{tag}{n}"


@DBOS.workflow()
async def cb_queued(tag: str) -> str:
    counts["running"] += 1
    counts["peak"] = max(counts["peak"], counts["running"])
    try:
        first = await cb_mark(tag, 1)
        await gate(tag).wait()
        return first + await cb_mark(tag, 2)
    finally:
        counts["running"] -= 1


@pytest.mark.parametrize("via", ["dbos", "client"])
async def test_resume__queued_workflow_waits_for_its_queue_slot_and_keeps_its_steps(
    dbos: DBOS, db_url: str, via: str
) -> None:
    first = await Q_ONE.enqueue(cb_queued, "A")
    await counted("A:1")
    await DBOS.cancel_workflow(first.workflow_id)
    await cancelled_promptly(first)
    await has_status(first.workflow_id, WorkflowStatusString.CANCELLED)
    busy = await Q_ONE.enqueue(cb_queued, "B")
    await counted("B:1")  # B holds the queue's only slot

    if via == "dbos":
        await DBOS.resume_workflow(first.workflow_id)
    else:
        client = DBOSClient(db_url)
        try:
            await client.resume_workflow(first.workflow_id)
        finally:
            await client.destroy()
    st = await status(first.workflow_id)
    assert st.status == WorkflowStatusString.ENQUEUED
    assert st.queue_name == "cb_one"
    assert st.executor_id is None
    assert st.recovery_attempts == 0
    assert st.workflow_deadline_epoch_ms is None
    gate("A").set()
    await asyncio.sleep(1.0)  # many polls: the full queue does not let it start
    assert (await status(first.workflow_id)).status == WorkflowStatusString.ENQUEUED
    assert counts["peak"] == 1

    gate("B").set()
    assert await asyncio.wait_for(busy.get_result(), WITHIN) == "B1B2"
    # The handle taken at enqueue, before the cancel, follows the resumed run.
    assert await asyncio.wait_for(first.get_result(), WITHIN) == "A1A2"
    assert counts["A:1"] == 1  # recorded before the cancel: not run again
    assert counts["A:2"] == 1
    assert counts["peak"] == 1
    assert await step_names(first.workflow_id) == ["cb_mark", "cb_mark"]
    assert (await status(first.workflow_id)).status == WorkflowStatusString.SUCCESS


# -- deadlines of ENQUEUED workflows ---------------------------------------------------


@DBOS.workflow()
async def cb_enqueue_child() -> str:
    child = await Q_ONE.enqueue(cb_queued, "child")
    return await child


@pytest.mark.parametrize("restart", [False, True])
async def test_deadline__enqueued_child_on_a_full_queue_is_cancelled_at_its_deadline(
    dbos: DBOS, db_url: str, restart: bool
) -> None:
    busy = await Q_ONE.enqueue(cb_queued, "B")
    await counted("B:1")  # B holds the queue's only slot
    with SetWorkflowTimeout(3.0 if restart else 1.5):  # (the child is enqueued first)
        parent = await DBOS.start_workflow(cb_enqueue_child)
    child_id = f"{parent.workflow_id}-1"

    async def enqueued() -> bool:
        st = await DBOS.get_workflow_status(child_id)
        return st is not None and st.status == WorkflowStatusString.ENQUEUED

    await wait_until(enqueued, "the child to be enqueued")
    if restart:
        # The process that enqueued it (and armed its timer) is gone: a handle awaiting
        # it enforces the deadline.
        await relaunch(db_url)
    child = await DBOS.retrieve_workflow(child_id)
    await cancelled_promptly(child)
    st = await status(child_id)
    assert st.status == WorkflowStatusString.CANCELLED
    assert st.parent_workflow_id == parent.workflow_id
    assert st.workflow_deadline_epoch_ms is not None
    assert counts["child:1"] == 0  # it never ran
    await cancelled_promptly(await DBOS.retrieve_workflow(parent.workflow_id))
    assert (await status(busy.workflow_id)).status == WorkflowStatusString.PENDING
    gate("B").set()
    assert await asyncio.wait_for((await DBOS.retrieve_workflow(busy.workflow_id)), WITHIN) == (
        "B1B2"
    )
    await asyncio.sleep(0.5)
    assert counts["child:1"] == 0
    assert (await status(child_id)).status == WorkflowStatusString.CANCELLED


async def test_deadline__enqueued_child_nobody_awaits_is_swept_by_its_queue_workers(
    dbos: DBOS, db_url: str
) -> None:
    """The process that enqueued the child died and nobody awaits it: the queue's
    workers cancel it when they sweep (every few seconds), though the queue stays full."""
    busy = await Q_ONE.enqueue(cb_queued, "B")
    await counted("B:1")
    with SetWorkflowTimeout(2.0):  # (long enough for the child to be enqueued first)
        parent = await DBOS.start_workflow(cb_enqueue_child)
    child_id = f"{parent.workflow_id}-1"

    async def child_is(status_: WorkflowStatusString) -> bool:
        st = await DBOS.get_workflow_status(child_id)
        return st is not None and st.status == status_

    await wait_until(lambda: child_is(WorkflowStatusString.ENQUEUED), "the child to be enqueued")
    await relaunch(db_url)  # no timer here now; B is recovered and holds the slot again
    await wait_until(lambda: child_is(WorkflowStatusString.CANCELLED), "the sweep to cancel it")
    assert counts["child:1"] == 0
    gate("B").set()
    assert await asyncio.wait_for((await DBOS.retrieve_workflow(busy.workflow_id)), WITHIN)


# -- enqueue options outside an enqueue ------------------------------------------------


@DBOS.workflow()
async def cb_echo(x: int) -> int:
    counts["echo"] += 1
    return x


@DBOS.workflow()
async def cb_direct_child_in_options() -> int:
    with SetEnqueueOptions(priority=1):
        return await cb_echo(3)


async def test_set_enqueue_options__around_a_start_raises_and_writes_nothing(
    dbos: DBOS,
) -> None:
    with SetWorkflowID("cb-refused"), SetEnqueueOptions(deduplication_id="d"):
        with pytest.raises(DBOSException, match=r"SetEnqueueOptions.*Queue\.enqueue"):
            await DBOS.start_workflow(cb_echo, 1)
        with pytest.raises(DBOSException, match=r"SetEnqueueOptions.*Queue\.enqueue"):
            await cb_echo(2)
    assert await DBOS.list_workflows() == []
    assert counts["echo"] == 0

    # Inside a workflow too: its child call fails the workflow, and no child is written.
    handle = await DBOS.start_workflow(cb_direct_child_in_options)
    with pytest.raises(DBOSException, match="SetEnqueueOptions"):
        await asyncio.wait_for(handle.get_result(), WITHIN)
    assert [s.workflow_id for s in await DBOS.list_workflows()] == [handle.workflow_id]
    assert await DBOS.list_workflow_steps(handle.workflow_id) == []
    assert counts["echo"] == 0

    # Around an enqueue the options apply, and a workflow started in the block by the
    # queue does not see them.
    with SetEnqueueOptions(priority=0):
        queued = await Q_ONE.enqueue(cb_echo, 4)
    assert await asyncio.wait_for(queued.get_result(), WITHIN) == 4


@DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=60)
async def cb_flaky() -> str:
    counts["flaky"] += 1
    if counts["flaky"] == 1:
        raise RuntimeError("first attempt fails")
    return "ok"


@DBOS.workflow()
async def cb_retrying() -> str:
    return await cb_flaky() + await cb_next()


async def test_cancel__step_waiting_to_retry_stops_there_unrecorded(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(cb_retrying)
    await counted("flaky")
    await asyncio.sleep(0.05)  # into its 60 s wait before the next attempt
    await DBOS.cancel_workflow(handle.workflow_id)
    await cancelled_promptly(handle)
    # The cancelled run ended without waiting out the retry interval (a resume waits for
    # it), and the step, not finished, was not recorded: the resumed run runs it.
    resumed = await asyncio.wait_for(DBOS.resume_workflow(handle.workflow_id), WITHIN)
    assert await asyncio.wait_for(resumed.get_result(), WITHIN) == "oknext"
    assert counts["flaky"] == 2
    assert await step_names(handle.workflow_id) == ["cb_flaky", "cb_next"]
