"""What code written for DBOS Transact reads (API.md section 11): ``DBOS.step_status``,
``DBOS.logger``, ``DBOS.span``, and ``StepInfo`` read as a mapping; on both backends."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from dbos_async import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSException,
    DBOSNonExistentWorkflowError,
    SetWorkflowID,
    StepInfo,
    StepStatus,
)

seen: list[Any] = []


@DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=0.01)
async def compat_flaky() -> str:
    status = DBOS.step_status
    seen.append(status)
    assert status is not None
    if status.current_attempt is not None and status.current_attempt < 2:
        raise RuntimeError(f"attempt {status.current_attempt} fails")
    return "third time lucky"


@DBOS.step()
def compat_plain_sync() -> Any:
    return DBOS.step_status


@DBOS.transaction()
async def compat_transaction() -> Any:
    return DBOS.step_status


@DBOS.workflow()
async def compat_workflow() -> list[Any]:
    in_workflow_code = DBOS.step_status
    flaky = await compat_flaky()
    plain = await compat_plain_sync()
    in_transaction = await compat_transaction()
    return [in_workflow_code, flaky, plain, in_transaction]


async def test_step_status__attempts_of_a_retried_step_and_plain_steps(dbos: DBOS) -> None:
    seen.clear()
    with SetWorkflowID("compat-status"):
        in_code, flaky, plain, in_transaction = await compat_workflow()
    assert in_code is None and in_transaction is None
    assert flaky == "third time lucky"
    assert seen == [StepStatus(1, 0, 3), StepStatus(1, 1, 3), StepStatus(1, 2, 3)]
    # (A plain ``def`` step runs in a worker thread: the status travels with it.)
    assert plain == StepStatus(2, None, None)
    assert DBOS.step_status is None  # outside workflows


async def test_step_info__reads_as_dbos_reads_it(dbos: DBOS) -> None:
    with SetWorkflowID("compat-info"):
        await compat_workflow()
    steps = await DBOS.list_workflow_steps("compat-info")
    first: StepInfo = steps[0]
    assert first["function_id"] == first.function_id == 1
    assert first["function_name"] == "compat_flaky"
    assert first["output"] == "third time lucky" and first["error"] is None
    assert "child_workflow_id" in first and "nope" not in first
    assert first.get("nope", 7) == 7
    assert dict(first.items())["function_id"] == 1
    assert first.keys()[:3] == ["function_id", "function_name", "output"]
    with pytest.raises(KeyError):
        first["nope"]


def test_logger__is_the_librarys_logger() -> None:
    assert isinstance(DBOS.logger, logging.Logger)
    assert DBOS.logger is logging.getLogger("dbos_async")


# -- DBOS.get_result and DBOS.wait_first ---------------------------------------------

gates: dict[str, asyncio.Event] = {}


@DBOS.workflow()
async def compat_child(label: str) -> str:
    if label in gates:
        await gates[label].wait()
    if label == "bad":
        raise ValueError("bad child")
    return f"child {label}"


@DBOS.workflow()
async def compat_parent() -> list[Any]:
    slow = await DBOS.start_workflow(compat_child, "slow")
    quick = await DBOS.start_workflow(compat_child, "quick")
    first = await DBOS.wait_first([slow, quick])
    got = await DBOS.get_result(first.workflow_id)
    gates["slow"].set()
    late = await DBOS.get_result(slow.workflow_id)
    return [first.workflow_id == quick.workflow_id, got, late]


@DBOS.transaction()
async def compat_wait_in_transaction(workflow_id: str) -> Any:
    return await DBOS.get_result(workflow_id)


async def test_get_result__outside_workflows(dbos: DBOS) -> None:
    ok = await DBOS.start_workflow(compat_child, "a")
    bad = await DBOS.start_workflow(compat_child, "bad")
    assert await DBOS.get_result(ok.workflow_id) == "child a"
    assert await DBOS.get_result_async(ok.workflow_id) == "child a"
    with pytest.raises(ValueError, match="bad child"):
        await DBOS.get_result(bad.workflow_id)
    with pytest.raises(DBOSNonExistentWorkflowError):
        await DBOS.get_result("compat-no-such-workflow")


async def test_wait_first__returns_the_handle_that_ended_first(dbos: DBOS) -> None:
    gates["slow"] = asyncio.Event()
    try:
        slow = await DBOS.start_workflow(compat_child, "slow")
        failing = await DBOS.start_workflow(compat_child, "bad")
        first = await asyncio.wait_for(DBOS.wait_first([slow, failing]), 30)
        assert first is failing  # an error is an end too
        assert (await slow.get_status()).status == "PENDING"  # type: ignore[union-attr]
    finally:
        gates.pop("slow").set()
    assert await slow.get_result() == "child slow"


async def test_wait_first_and_get_result__are_steps_in_a_workflow(dbos: DBOS) -> None:
    gates["slow"] = asyncio.Event()
    try:
        with SetWorkflowID("compat-parent"):
            result = await asyncio.wait_for(compat_parent(), 30)
    finally:
        gates.pop("slow").set()
    assert result == [True, "child quick", "child slow"]
    steps = await DBOS.list_workflow_steps("compat-parent")
    names = [s.function_name for s in steps]
    assert names == [
        "compat_child",
        "compat_child",
        "DBOS.waitFirst",
        "DBOS.getResult",
        "DBOS.getResult",
    ]
    assert steps[2].output == "compat-parent-2"  # the quick child's ID, recorded
    # A fork that starts after them replays the recorded outcomes: no waiting again.
    gates["slow"] = asyncio.Event()  # (a re-run that waited would block here)
    try:
        fork = await DBOS.fork_workflow("compat-parent", start_step=5)
        assert await asyncio.wait_for(fork.get_result(), 30) == [True, "child quick", "child slow"]
    finally:
        gates.pop("slow").set()


async def test_wait_first__bad_arguments(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(compat_child, "x")
    with pytest.raises(ValueError, match="at least one handle"):
        DBOS.wait_first([])
    with pytest.raises(ValueError, match="different workflows"):
        DBOS.wait_first([handle, handle])
    with pytest.raises(TypeError, match="WorkflowHandles"):
        DBOS.wait_first([handle.workflow_id])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="polling_interval_sec"):
        DBOS.wait_first([handle], polling_interval_sec=0)
    with pytest.raises(DBOSException, match="get_result"):
        await compat_wait_in_transaction(handle.workflow_id)
    await handle.get_result()


def test_errors__carry_dbos_error_codes() -> None:
    from dbos_async import (
        DBOSAwaitedWorkflowCancelledError,
        DBOSConflictingWorkflowError,
        DBOSErrorCode,
        DBOSWorkflowCancelledError,
        DBOSWorkflowError,
    )

    conflict = DBOSConflictingWorkflowError("w", "a", "b")
    assert conflict.dbos_error_code == DBOSErrorCode.ConflictingWorkflowError.value == 9
    assert DBOSNonExistentWorkflowError("w").dbos_error_code == 5
    assert DBOSAwaitedWorkflowCancelledError("w").dbos_error_code == 13
    assert DBOSWorkflowCancelledError("w").dbos_error_code == 10
    assert DBOSWorkflowError("T", "m").dbos_error_code is None  # (no DBOS counterpart)


async def test_errors__a_recorded_error_keeps_its_code(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(compat_child, "x")
    await handle.get_result()
    with pytest.raises(DBOSNonExistentWorkflowError) as caught:
        await DBOS.get_result("compat-missing")
    assert caught.value.dbos_error_code == 5


# -- preemptible steps and DBOS.asyncio_wait -------------------------------------------

calls: dict[str, int] = {}
started: dict[str, asyncio.Event] = {}


@DBOS.step(preemptible=True, retries_allowed=True, max_attempts=5, interval_seconds=0.01)
async def compat_long_step() -> str:
    calls["long"] = calls.get("long", 0) + 1
    if calls["long"] == 1:
        started["long"].set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            calls["cancelled"] = 1
            raise
    return "done"


@DBOS.workflow()
async def compat_preempted() -> str:
    return await compat_long_step()


async def test_preemptible__a_cancel_interrupts_the_step_and_resume_reruns_it(
    dbos: DBOS,
) -> None:
    calls.clear()
    started["long"] = asyncio.Event()
    with SetWorkflowID("compat-preempt"):
        handle = await DBOS.start_workflow(compat_preempted)
    await asyncio.wait_for(started["long"].wait(), 30)
    await DBOS.cancel_workflow("compat-preempt")
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(handle.get_result(), 30)
    assert calls == {"long": 1, "cancelled": 1}  # interrupted, and not retried
    assert await DBOS.list_workflow_steps("compat-preempt") == []  # nothing recorded
    resumed = await DBOS.resume_workflow("compat-preempt")
    assert await asyncio.wait_for(resumed.get_result(), 30) == "done"
    assert calls["long"] == 2


def test_preemptible__refused_for_a_plain_def_step() -> None:
    with pytest.raises(DBOSException, match="async def"):

        @DBOS.step(preemptible=True)
        def compat_sync_preemptible() -> None:
            pass


@DBOS.step()
async def compat_delayed(label: str, seconds: float) -> str:
    calls[label] = calls.get(label, 0) + 1
    await asyncio.sleep(seconds)
    return label


@DBOS.workflow()
async def compat_racing(slow_seconds: float) -> list[Any]:
    quick = compat_delayed("quick", 0.0)
    slow = compat_delayed("slow", slow_seconds)
    done, pending = await DBOS.asyncio_wait([quick, slow], return_when=asyncio.FIRST_COMPLETED)
    finished = sorted(f.result() for f in done)
    for future in pending:
        await future  # let the slow step finish and record
    return finished


async def test_asyncio_wait__the_recorded_split_is_replayed(dbos: DBOS) -> None:
    calls.clear()
    with SetWorkflowID("compat-race"):
        assert await asyncio.wait_for(compat_racing(0.5), 30) == ["quick"]
    steps = await DBOS.list_workflow_steps("compat-race")
    assert [(s.function_id, s.function_name) for s in steps] == [
        (1, "compat_delayed"),
        (2, "compat_delayed"),
        (3, "DBOS.asyncio_wait"),
    ]
    assert steps[2].output == [0]
    # A re-run from step 3 (a fork) replays the split even though both steps (recorded,
    # so instant now) would both be done: the branch taken stays the same.
    fork = await DBOS.fork_workflow("compat-race", start_step=4)
    assert await asyncio.wait_for(fork.get_result(), 30) == ["quick"]
    assert calls == {"quick": 1, "slow": 1}


async def test_asyncio_wait__outside_workflows_and_bad_arguments(dbos: DBOS) -> None:
    async def value(v: int) -> int:
        return v

    done, pending = await DBOS.asyncio_wait([value(1), value(2)])
    assert sorted(f.result() for f in done) == [1, 2] and pending == set()
    with pytest.raises(ValueError, match="return_when"):
        DBOS.asyncio_wait([], return_when="WHENEVER")
    with pytest.raises(ValueError, match="at least one"):
        DBOS.asyncio_wait([])


# -- DBOS.executor_id, DBOS.application_version, WorkflowHandleAsync ----------------------


async def test_executor_id_and_application_version__read_the_runtime(db_url: str) -> None:
    await DBOS.destroy()
    DBOS(
        {
            "name": "compat-ids",
            "database_url": db_url,
            "executor_id": "vm-7",
            "application_version": "v-compat",
        }
    )
    try:
        assert DBOS.executor_id == "vm-7"
        assert DBOS.application_version == "v-compat"
        await DBOS.launch()
        handle = await DBOS.start_workflow(compat_workflow)
        await handle
        status = await handle.get_status()
        assert (status.executor_id, status.app_version) == ("vm-7", "v-compat")
    finally:
        await DBOS.destroy()


async def test_executor_id_and_application_version__defaults(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await DBOS.destroy()
    monkeypatch.delenv("DBOS__VMID", raising=False)
    monkeypatch.delenv("DBOS__APPVERSION", raising=False)
    assert DBOS.executor_id == "local"
    DBOS({"name": "compat-defaults", "database_url": db_url})
    try:
        await DBOS.launch()
        # Without one configured, the version is the hash of the registered workflows,
        # the one recorded with each workflow.
        version = DBOS.application_version
        assert version
        handle = await DBOS.start_workflow(compat_workflow)
        await handle
        assert (await handle.get_status()).app_version == version
    finally:
        await DBOS.destroy()
    monkeypatch.setenv("DBOS__VMID", "vm-env")
    monkeypatch.setenv("DBOS__APPVERSION", "v-env")
    assert (DBOS.executor_id, DBOS.application_version) == ("vm-env", "v-env")


def test_workflow_handle_async__is_the_handle_class() -> None:
    from dbos_async import WorkflowHandle, WorkflowHandleAsync

    assert WorkflowHandleAsync is WorkflowHandle
    assert WorkflowHandleAsync[str] is not None  # DBOS code annotates with it


# -- DBOS's error texts for queues ---------------------------------------------------------


@DBOS.workflow()
async def compat_wait_for_gate(x: int) -> int:
    await DBOS.recv("go", timeout_seconds=30)
    return x


async def test_queue_error_texts__are_dbos_texts(dbos: DBOS) -> None:
    from dbos_async import DBOSQueueDeduplicatedError, Queue, SetEnqueueOptions

    queue = Queue("compat_texts_q")
    partitioned = Queue("compat_texts_parts", partition_queue=True)
    with SetEnqueueOptions(deduplication_id="d-1"):
        first = await queue.enqueue(compat_wait_for_gate, 1)
        with SetWorkflowID("compat-dup"), pytest.raises(DBOSQueueDeduplicatedError) as info:
            await queue.enqueue(compat_wait_for_gate, 2)
    assert str(info.value).endswith(
        "Workflow compat-dup was deduplicated due to an existing workflow in queue "
        "compat_texts_q with deduplication ID d-1."
    )
    refused = "Deduplication is not supported for partitioned"
    with (
        SetEnqueueOptions(deduplication_id="d-2", queue_partition_key="k"),
        pytest.raises(ValueError, match=refused),
    ):
        await partitioned.enqueue(compat_wait_for_gate, 3)
    with pytest.raises(ValueError, match="without a partition key"):
        await partitioned.enqueue(compat_wait_for_gate, 4)
    with (
        SetEnqueueOptions(queue_partition_key="k"),
        pytest.raises(ValueError, match="only use a partition key on a partition-enabled"),
    ):
        await queue.enqueue(compat_wait_for_gate, 5)
    await DBOS.send(first.workflow_id, "now", "go")
    assert await first.get_result() == 1
