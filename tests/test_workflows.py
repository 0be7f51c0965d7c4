"""Workflows: running, handles, workflow IDs, child workflows, context, durable sleep,
errors, and re-execution after a relaunch (API.md sections 3 and 4), on both backends."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from dbos_async import (
    DBOS,
    DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded,
    DBOSConflictingWorkflowError,
    DBOSNonExistentWorkflowError,
    DBOSUnexpectedStepError,
    SetWorkflowID,
    WorkflowHandle,
    WorkflowStatusString,
)

# Module-level state the workflows below report into; reset before every test.
CALLS: Counter[str] = Counter()
GATES: dict[str, asyncio.Event] = {}
FINISHED: list[str] = []
FLAGS: dict[str, bool] = {}


@pytest.fixture(autouse=True)
def _reset_state() -> Iterator[None]:
    CALLS.clear()
    GATES.clear()
    FINISHED.clear()
    FLAGS.clear()
    yield
    GATES.clear()


def gate(name: str) -> asyncio.Event:
    if name not in GATES:
        GATES[name] = asyncio.Event()
    return GATES[name]


def now_ms() -> int:
    return int(time.time() * 1000)


async def relaunch(db_url: str) -> None:
    """Simulate a process restart: destroy the runtime and launch a new one."""
    await DBOS.destroy()
    DBOS({"database_url": db_url, "application_version": "test"})
    await DBOS.launch()


# -- workflows and steps used by the tests ------------------------------------------


class WfCustomError(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


@DBOS.workflow()
async def wf_add(a: int, b: int, c: int = 0) -> int:
    CALLS["wf_add"] += 1
    return a + b + c


@DBOS.workflow()
async def wf_other(a: int, b: int, c: int = 0) -> int:
    CALLS["wf_other"] += 1
    return a * b


@DBOS.workflow()
async def wf_fail(code: int) -> None:
    CALLS["wf_fail"] += 1
    raise WfCustomError(code, "custom failure")


@DBOS.workflow()
async def wf_value_error(message: str) -> None:
    CALLS["wf_value_error"] += 1
    raise ValueError(message)


@DBOS.workflow()
async def wf_wait_gate(name: str) -> str:
    CALLS["wf_wait_gate"] += 1
    await gate(name).wait()
    return f"opened {name}"


@DBOS.step()
async def wf_echo_step(x: str) -> str:
    return x


@DBOS.workflow()
async def wf_child(x: str) -> dict[str, Any]:
    CALLS["wf_child"] += 1
    return {"x": x, "workflow_id": DBOS.workflow_id}


@DBOS.workflow()
async def wf_parent() -> dict[str, Any]:
    await wf_echo_step("s")  # step 1
    called = await wf_child("called")  # step 2
    handle = await DBOS.start_workflow(wf_child, "started")  # step 3
    started = await handle
    return {
        "parent": DBOS.workflow_id,
        "called": called["workflow_id"],
        "started": handle.workflow_id,
        "started_seen": started["workflow_id"],
    }


@DBOS.workflow()
async def wf_parent_custom_child() -> dict[str, Any]:
    with SetWorkflowID(f"{DBOS.workflow_id}-mine"):
        custom = await wf_child("custom")  # step 1
    default = await wf_child("default")  # step 2
    return {"custom": custom["workflow_id"], "default": default["workflow_id"]}


@DBOS.step()
async def wf_ctx_step() -> list[Any]:
    return [DBOS.workflow_id, DBOS.step_id]


@DBOS.step()
def wf_ctx_sync_step() -> list[Any]:
    return [DBOS.workflow_id, DBOS.step_id]


@DBOS.workflow()
async def wf_ctx() -> dict[str, Any]:
    body = [DBOS.workflow_id, DBOS.step_id]
    first = await wf_ctx_step()
    second = await wf_ctx_sync_step()
    after = [DBOS.workflow_id, DBOS.step_id]
    return {"body": body, "first": first, "second": second, "after": after}


async def _finish_after(tag: str, after: str | None) -> str:
    """Finish once ``after`` has finished (at once for None): an order of finishing
    fixed by events, not by sleeps of different lengths that a loaded machine blurs."""
    if after is not None:
        await gate(f"finished-{after}").wait()
    FINISHED.append(tag)
    gate(f"finished-{tag}").set()
    return tag


@DBOS.step()
async def wf_ordered_step(tag: str, after: str | None) -> str:
    return await _finish_after(tag, after)


@DBOS.workflow()
async def wf_ordered_child(tag: str, after: str | None) -> str:
    return await _finish_after(tag, after)


@DBOS.workflow()
async def wf_gather_parent() -> list[str]:
    return list(
        await asyncio.gather(
            wf_ordered_step("a", "b"),  # step 1
            wf_ordered_child("b", "c"),  # step 2
            wf_ordered_step("c", "d"),  # step 3
            wf_ordered_step("d", None),  # step 4
        )
    )


@DBOS.workflow()
async def wf_gather_reversed() -> list[str]:
    # Called in order a, b, c, d but handed to gather (and so scheduled) in reverse.
    a = wf_ordered_step("a", "b")
    b = wf_ordered_child("b", "c")
    c = DBOS.start_workflow(wf_ordered_child, "c", "d")
    d = wf_ordered_step("d", None)
    d_out, c_handle, b_out, a_out = await asyncio.gather(d, c, b, a)
    return [a_out, b_out, await c_handle, d_out]


@DBOS.workflow()
async def wf_sleeper(seconds: float) -> float:
    start = time.monotonic()
    await DBOS.sleep(seconds)
    return time.monotonic() - start


@DBOS.step()
async def wf_count_step(tag: str) -> str:
    CALLS[f"step:{tag}"] += 1
    return tag.upper()


@DBOS.workflow()
async def wf_recoverable(tag: str) -> str:
    first = await wf_count_step(tag)  # step 1
    gate("reached").set()
    await gate("release").wait()
    second = await wf_count_step(tag + "2")  # step 2
    return first + second


@DBOS.workflow(max_recovery_attempts=1)
async def wf_fragile() -> str:
    await wf_count_step("fragile")
    gate("reached").set()
    await gate("release").wait()
    return "done"


@DBOS.step()
async def wf_step_a() -> str:
    CALLS["wf_step_a"] += 1
    return "a"


@DBOS.step()
async def wf_step_b() -> str:
    CALLS["wf_step_b"] += 1
    return "b"


@DBOS.workflow()
async def wf_changing() -> str:
    value = await (wf_step_b() if FLAGS.get("use_b") else wf_step_a())
    gate("reached").set()
    await gate("release").wait()
    return value


# -- running workflows and handles ---------------------------------------------------


async def test_workflow__call_returns_result(dbos: DBOS) -> None:
    assert await wf_add(1, 2, c=3) == 6
    assert CALLS["wf_add"] == 1


async def test_start_workflow__handle_reports_result_and_status(dbos: DBOS) -> None:
    before = now_ms()
    handle = await DBOS.start_workflow(wf_add, 2, 3, c=4)
    assert isinstance(handle, WorkflowHandle)
    assert isinstance(handle.workflow_id, str) and handle.workflow_id
    assert handle.get_workflow_id() == handle.workflow_id
    assert await handle == 9
    assert await handle.get_result() == 9
    after = now_ms()

    status = await handle.get_status()
    assert status.workflow_id == handle.workflow_id
    assert status.status == WorkflowStatusString.SUCCESS
    assert status.status == "SUCCESS"
    assert status.name == "wf_add"
    assert status.input == {"args": [2, 3], "kwargs": {"c": 4}}
    assert status.output == 9
    assert status.error is None
    assert status.executor_id == "local"
    assert status.app_version == "test"
    assert status.parent_workflow_id is None
    assert before <= status.created_at <= status.updated_at <= after
    assert CALLS["wf_add"] == 1


async def test_start_workflow__default_ids_are_unique(dbos: DBOS) -> None:
    first = await DBOS.start_workflow(wf_add, 1, 1)
    second = await DBOS.start_workflow(wf_add, 1, 1)
    assert first.workflow_id != second.workflow_id
    assert await first == await second == 2
    assert CALLS["wf_add"] == 2


async def test_handle__works_with_gather_and_wait_for(dbos: DBOS) -> None:
    h1 = await DBOS.start_workflow(wf_add, 1, 2)
    h2 = await DBOS.start_workflow(wf_add, 10, 20)
    assert await asyncio.gather(h1, h2) == [3, 30]
    assert await asyncio.wait_for(h1, timeout=30) == 3
    h3 = await DBOS.start_workflow(wf_add, 100, 200)
    assert await asyncio.wait_for(h3.get_result(), timeout=30) == 300


async def test_handle__works_with_asyncio_wait(dbos: DBOS) -> None:
    h1 = await DBOS.start_workflow(wf_add, 1, 2)
    h2 = await DBOS.start_workflow(wf_wait_gate, "w")
    done, pending = await asyncio.wait([h1, h2], timeout=5, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1 and len(pending) == 1
    assert [await d for d in done] == [3]
    gate("w").set()
    done, pending = await asyncio.wait([h1, h2], timeout=5)
    assert not pending
    assert sorted([await d for d in done], key=str) == [3, "opened w"]


async def test_handle__wait_for_times_out_on_a_running_workflow(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(wf_wait_gate, "slow")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(handle, timeout=0.2)
    # The workflow keeps running after the waiter timed out.
    assert (await handle.get_status()).status == WorkflowStatusString.PENDING
    gate("slow").set()
    assert await asyncio.wait_for(handle, timeout=30) == "opened slow"


# -- workflow IDs --------------------------------------------------------------------


async def test_set_workflow_id__fixes_the_id(dbos: DBOS) -> None:
    with SetWorkflowID("wf-fixed-id"):
        handle = await DBOS.start_workflow(wf_add, 1, 1)
    assert handle.workflow_id == "wf-fixed-id"
    assert await handle == 2

    with SetWorkflowID("wf-called-id"):
        assert await wf_add(2, 2) == 4
    status = await DBOS.get_workflow_status("wf-called-id")
    assert status is not None
    assert status.status == WorkflowStatusString.SUCCESS
    assert status.output == 4


async def test_set_workflow_id__rerun_returns_recorded_result(dbos: DBOS) -> None:
    with SetWorkflowID("wf-once"):
        assert await wf_add(1, 2) == 3
    with SetWorkflowID("wf-once"):
        # Other arguments: the recorded outcome is returned, the body does not run.
        assert await wf_add(5, 5) == 3
    with SetWorkflowID("wf-once"):
        handle = await DBOS.start_workflow(wf_add, 7, 7)
    assert handle.workflow_id == "wf-once"
    assert await handle == 3
    assert CALLS["wf_add"] == 1


async def test_set_workflow_id__rerun_of_failed_workflow_raises_recorded_error(
    dbos: DBOS,
) -> None:
    with SetWorkflowID("wf-failed"), pytest.raises(WfCustomError) as first:
        await wf_fail(7)
    assert first.value.code == 7
    with SetWorkflowID("wf-failed"), pytest.raises(WfCustomError) as second:
        await wf_fail(8)
    assert second.value.code == 7
    assert second.value.detail == "custom failure"
    assert CALLS["wf_fail"] == 1


async def test_set_workflow_id__rerun_waits_for_running_workflow(dbos: DBOS) -> None:
    with SetWorkflowID("wf-running"):
        first = await DBOS.start_workflow(wf_wait_gate, "g")
    with SetWorkflowID("wf-running"):
        second_call = asyncio.ensure_future(wf_wait_gate("g"))
    await asyncio.sleep(0.3)
    assert not second_call.done()
    gate("g").set()
    assert await asyncio.wait_for(second_call, timeout=30) == "opened g"
    assert await asyncio.wait_for(first, timeout=30) == "opened g"
    assert CALLS["wf_wait_gate"] == 1


async def test_set_workflow_id__other_function_raises_conflict(dbos: DBOS) -> None:
    with SetWorkflowID("wf-conflict"):
        assert await wf_add(1, 2) == 3
    with SetWorkflowID("wf-conflict"), pytest.raises(DBOSConflictingWorkflowError):
        await wf_other(1, 2)
    with SetWorkflowID("wf-conflict"), pytest.raises(DBOSConflictingWorkflowError):
        await DBOS.start_workflow(wf_other, 1, 2)
    assert CALLS["wf_other"] == 0
    status = await DBOS.get_workflow_status("wf-conflict")
    assert status is not None
    assert status.name == "wf_add"
    assert status.output == 3


async def test_retrieve_workflow__unknown_id_raises(dbos: DBOS) -> None:
    with pytest.raises(DBOSNonExistentWorkflowError):
        await DBOS.retrieve_workflow("wf-does-not-exist")


async def test_retrieve_workflow__existing_workflow_false_returns_a_handle(dbos: DBOS) -> None:
    handle = await DBOS.retrieve_workflow("wf-later", existing_workflow=False)
    assert isinstance(handle, WorkflowHandle)
    assert handle.workflow_id == "wf-later"
    with SetWorkflowID("wf-later"):
        await DBOS.start_workflow(wf_add, 4, 5)
    assert await asyncio.wait_for(handle, timeout=30) == 9


async def test_retrieve_workflow__returns_result_of_existing_workflow(dbos: DBOS) -> None:
    with SetWorkflowID("wf-retrieve"):
        await wf_add(3, 4)
    handle = await DBOS.retrieve_workflow("wf-retrieve")
    assert handle.workflow_id == "wf-retrieve"
    assert await handle == 7
    assert (await handle.get_status()).status == WorkflowStatusString.SUCCESS


# -- child workflows -----------------------------------------------------------------


async def test_child_workflow__ids_follow_parent_and_step(dbos: DBOS) -> None:
    with SetWorkflowID("wf-parent"):
        result = await wf_parent()
    assert result == {
        "parent": "wf-parent",
        "called": "wf-parent-2",
        "started": "wf-parent-3",
        "started_seen": "wf-parent-3",
    }
    for child_id, x in (("wf-parent-2", "called"), ("wf-parent-3", "started")):
        status = await DBOS.get_workflow_status(child_id)
        assert status is not None
        assert status.parent_workflow_id == "wf-parent"
        assert status.name == "wf_child"
        assert status.status == WorkflowStatusString.SUCCESS
        assert status.output == {"x": x, "workflow_id": child_id}

    steps = await DBOS.list_workflow_steps("wf-parent")
    assert [(s.function_id, s.function_name, s.child_workflow_id) for s in steps] == [
        (1, "wf_echo_step", None),
        (2, "wf_child", "wf-parent-2"),
        (3, "wf_child", "wf-parent-3"),
    ]
    parent_status = await DBOS.get_workflow_status("wf-parent")
    assert parent_status is not None
    assert parent_status.parent_workflow_id is None


async def test_child_workflow__set_workflow_id_overrides_child_id(dbos: DBOS) -> None:
    with SetWorkflowID("wf-custom-parent"):
        result = await wf_parent_custom_child()
    assert result == {"custom": "wf-custom-parent-mine", "default": "wf-custom-parent-2"}
    status = await DBOS.get_workflow_status("wf-custom-parent-mine")
    assert status is not None
    assert status.parent_workflow_id == "wf-custom-parent"
    steps = await DBOS.list_workflow_steps("wf-custom-parent")
    assert [(s.function_id, s.child_workflow_id) for s in steps] == [
        (1, "wf-custom-parent-mine"),
        (2, "wf-custom-parent-2"),
    ]


# -- context ---------------------------------------------------------------------------


async def test_context__workflow_id_and_step_id(dbos: DBOS) -> None:
    assert DBOS.workflow_id is None
    assert DBOS.step_id is None
    with SetWorkflowID("wf-ctx"):
        result = await wf_ctx()
    assert result == {
        "body": ["wf-ctx", None],
        "first": ["wf-ctx", 1],
        "second": ["wf-ctx", 2],
        "after": ["wf-ctx", None],
    }
    # A step called outside a workflow sees no workflow and no step ID.
    assert await wf_ctx_step() == [None, None]
    assert DBOS.workflow_id is None
    assert DBOS.step_id is None


# -- asyncio.gather inside a workflow -------------------------------------------------


async def test_gather__step_ids_follow_call_order(dbos: DBOS) -> None:
    with SetWorkflowID("wf-gather"):
        result = await asyncio.wait_for(wf_gather_parent(), timeout=30)
    assert result == ["a", "b", "c", "d"]
    # They finished in reverse order of the calls...
    assert FINISHED == ["d", "c", "b", "a"]
    # ... but step IDs were taken in call order.
    steps = await DBOS.list_workflow_steps("wf-gather")
    assert [(s.function_id, s.function_name) for s in steps] == [
        (1, "wf_ordered_step"),
        (2, "wf_ordered_child"),
        (3, "wf_ordered_step"),
        (4, "wf_ordered_step"),
    ]
    by_id = {s.function_id: s for s in steps}
    assert by_id[1].output == "a"
    assert by_id[2].child_workflow_id == "wf-gather-2"
    assert by_id[3].output == "c"
    assert by_id[4].output == "d"
    child = await DBOS.get_workflow_status("wf-gather-2")
    assert child is not None
    assert child.output == "b"


async def test_gather__step_ids_taken_at_call_time_not_schedule_time(dbos: DBOS) -> None:
    with SetWorkflowID("wf-gather-rev"):
        assert await asyncio.wait_for(wf_gather_reversed(), timeout=30) == ["a", "b", "c", "d"]
    assert FINISHED == ["d", "c", "b", "a"]
    steps = await DBOS.list_workflow_steps("wf-gather-rev")
    assert [(s.function_id, s.function_name, s.output, s.child_workflow_id) for s in steps] == [
        (1, "wf_ordered_step", "a", None),
        (2, "wf_ordered_child", None, "wf-gather-rev-2"),
        (3, "wf_ordered_child", None, "wf-gather-rev-3"),
        (4, "wf_ordered_step", "d", None),
    ]


# -- durable sleep ---------------------------------------------------------------------


async def test_sleep__recorded_as_step_and_sleeps(dbos: DBOS) -> None:
    start = time.monotonic()
    with SetWorkflowID("wf-sleep"):
        inner = await wf_sleeper(0.3)
    elapsed = time.monotonic() - start
    # It slept (lower bounds; a loaded machine may wake it late, never early) and did
    # not take seconds for milliseconds.
    assert 0.3 - 0.01 <= inner <= elapsed < 10
    steps = await DBOS.list_workflow_steps("wf-sleep")
    assert [(s.function_id, s.function_name) for s in steps] == [(1, "DBOS.sleep")]


# -- errors ----------------------------------------------------------------------------


async def test_workflow_error__recorded_and_reraised(dbos: DBOS) -> None:
    with SetWorkflowID("wf-error"), pytest.raises(ValueError, match="it broke"):
        await wf_value_error("it broke")
    status = await DBOS.get_workflow_status("wf-error")
    assert status is not None
    assert status.status == WorkflowStatusString.ERROR
    assert isinstance(status.error, ValueError)
    assert str(status.error) == "it broke"
    assert status.output is None

    handle = await DBOS.start_workflow(wf_value_error, "again")
    with pytest.raises(ValueError, match="again"):
        await handle
    assert (await handle.get_status()).status == WorkflowStatusString.ERROR
    assert CALLS["wf_value_error"] == 2


async def test_workflow_error__custom_type_survives_relaunch(dbos: DBOS, db_url: str) -> None:
    try:
        with SetWorkflowID("wf-custom-error"), pytest.raises(WfCustomError):
            await wf_fail(42)
        await relaunch(db_url)

        handle = await DBOS.retrieve_workflow("wf-custom-error")
        with pytest.raises(WfCustomError) as raised:
            await handle
        assert raised.value.code == 42
        assert raised.value.detail == "custom failure"

        status = await handle.get_status()
        assert status.status == WorkflowStatusString.ERROR
        assert isinstance(status.error, WfCustomError)
        assert status.error.code == 42
        assert CALLS["wf_fail"] == 1
    finally:
        await DBOS.destroy()


async def test_handle__result_read_back_after_relaunch(dbos: DBOS, db_url: str) -> None:
    try:
        with SetWorkflowID("wf-persisted"):
            assert await wf_add(20, 22) == 42
        await relaunch(db_url)

        handle = await DBOS.retrieve_workflow("wf-persisted")
        assert await asyncio.wait_for(handle, timeout=30) == 42
        status = await handle.get_status()
        assert status.status == WorkflowStatusString.SUCCESS
        assert status.output == 42
        with SetWorkflowID("wf-persisted"):
            assert await wf_add(0, 0) == 42
        assert CALLS["wf_add"] == 1
    finally:
        await DBOS.destroy()


# -- re-execution after a relaunch ----------------------------------------------------


async def test_recovery__pending_workflow_resumes_without_rerunning_steps(
    dbos: DBOS, db_url: str
) -> None:
    try:
        with SetWorkflowID("wf-recover"):
            await DBOS.start_workflow(wf_recoverable, "a")
        await asyncio.wait_for(gate("reached").wait(), timeout=30)
        assert CALLS["step:a"] == 1
        await DBOS.destroy()

        gate("reached").clear()
        DBOS({"database_url": db_url, "application_version": "test"})
        await DBOS.launch()
        await asyncio.wait_for(gate("reached").wait(), timeout=30)
        status = await DBOS.get_workflow_status("wf-recover")
        assert status is not None
        assert status.status == WorkflowStatusString.PENDING
        assert status.recovery_attempts == 1
        assert CALLS["step:a"] == 1

        gate("release").set()
        handle = await DBOS.retrieve_workflow("wf-recover")
        assert await asyncio.wait_for(handle, timeout=30) == "AA2"
        assert CALLS["step:a"] == 1
        assert CALLS["step:a2"] == 1
        status = await handle.get_status()
        assert status.status == WorkflowStatusString.SUCCESS
        assert status.recovery_attempts == 1
        steps = await DBOS.list_workflow_steps("wf-recover")
        assert [(s.function_id, s.output) for s in steps] == [(1, "A"), (2, "A2")]
    finally:
        await DBOS.destroy()


async def test_recovery__max_recovery_attempts_exceeded(dbos: DBOS, db_url: str) -> None:
    try:
        with SetWorkflowID("wf-fragile"):
            await DBOS.start_workflow(wf_fragile)
        await asyncio.wait_for(gate("reached").wait(), timeout=30)

        # First restart: recovered once (1 <= max_recovery_attempts).
        gate("reached").clear()
        await relaunch(db_url)
        await asyncio.wait_for(gate("reached").wait(), timeout=30)
        status = await DBOS.get_workflow_status("wf-fragile")
        assert status is not None
        assert status.status == WorkflowStatusString.PENDING
        assert status.recovery_attempts == 1

        # Second restart: one attempt too many.
        await relaunch(db_url)
        status = await DBOS.get_workflow_status("wf-fragile")
        assert status is not None
        assert status.status == WorkflowStatusString.MAX_RECOVERY_ATTEMPTS_EXCEEDED
        handle = await DBOS.retrieve_workflow("wf-fragile")
        with pytest.raises(DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded):
            await asyncio.wait_for(handle, timeout=30)
        assert CALLS["step:fragile"] == 1
    finally:
        await DBOS.destroy()


async def test_recovery__changed_step_raises_unexpected_step_error(dbos: DBOS, db_url: str) -> None:
    try:
        with SetWorkflowID("wf-changing"):
            await DBOS.start_workflow(wf_changing)
        await asyncio.wait_for(gate("reached").wait(), timeout=30)
        assert CALLS["wf_step_a"] == 1
        await DBOS.destroy()

        # "Deploy" code whose first step differs, with the same application version.
        FLAGS["use_b"] = True
        gate("release").set()
        DBOS({"database_url": db_url, "application_version": "test"})
        await DBOS.launch()

        handle = await DBOS.retrieve_workflow("wf-changing")
        with pytest.raises(DBOSUnexpectedStepError):
            await asyncio.wait_for(handle, timeout=30)
        assert CALLS["wf_step_b"] == 0
        assert CALLS["wf_step_a"] == 1
        status = await handle.get_status()
        assert status.status == WorkflowStatusString.ERROR
        assert isinstance(status.error, DBOSUnexpectedStepError)
    finally:
        await DBOS.destroy()
