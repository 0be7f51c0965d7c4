"""Steps: async and sync steps, plain calls outside workflows, retries, recording and
replay of outputs and errors, nested steps, and decorated signatures (API.md 2-4)."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiosqlite
import asyncpg
import pytest

from dbos_async import (
    DBOS,
    DBOSMaxStepRetriesExceeded,
    SetWorkflowID,
    WorkflowStatusString,
    _steps,
)

CALLS: Counter[str] = Counter()
GATES: dict[str, asyncio.Event] = {}
THREADS: dict[str, int] = {}
ATTEMPTS: list[float] = []
RAISED: list[BaseException] = []


@pytest.fixture(autouse=True)
def _reset_state() -> Iterator[None]:
    CALLS.clear()
    GATES.clear()
    THREADS.clear()
    ATTEMPTS.clear()
    RAISED.clear()
    yield
    GATES.clear()


def gate(name: str) -> asyncio.Event:
    if name not in GATES:
        GATES[name] = asyncio.Event()
    return GATES[name]


async def count_step_rows(backend: str, db_url: str) -> int:
    """Rows in the runtime's step table, read with a connection of our own."""
    if backend == "postgres":
        conn = await asyncpg.connect(db_url)
        try:
            return int(await conn.fetchval("SELECT COUNT(*) FROM dbos_async.operation_outputs"))
        finally:
            await conn.close()
    async with aiosqlite.connect(db_url[len("sqlite:///") :]) as conn:
        cur = await conn.execute("SELECT COUNT(*) FROM dbos_operation_outputs")
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


# -- steps and workflows used by the tests ------------------------------------------


class StCustomError(Exception):
    pass


@DBOS.step()
async def st_async_double(x: int) -> int:
    CALLS["st_async_double"] += 1
    THREADS["async"] = threading.get_ident()
    return 2 * x


@DBOS.step()
def st_sync_triple(x: int) -> int:
    CALLS["st_sync_triple"] += 1
    THREADS["sync"] = threading.get_ident()
    return 3 * x


@DBOS.workflow()
async def st_wf_async_and_sync(x: int) -> list[int]:
    return [await st_async_double(x), await st_sync_triple(x)]


@DBOS.step()
async def st_ctx() -> list[Any]:
    return [DBOS.workflow_id, DBOS.step_id]


@DBOS.step()
def st_sync_ctx() -> list[Any]:
    return [DBOS.workflow_id, DBOS.step_id]


@DBOS.workflow()
async def st_wf_one_step(x: int) -> int:
    return await st_async_double(x)


@DBOS.communicator()
async def st_comm(x: int) -> int:
    CALLS["st_comm"] += 1
    return x + 1


@DBOS.communicator()
def st_sync_comm(x: int) -> list[Any]:
    THREADS["sync_comm"] = threading.get_ident()
    return [x * 10, DBOS.step_id]


@DBOS.workflow()
async def st_wf_comm(x: int) -> list[Any]:
    return [await st_comm(x), await st_sync_comm(x)]


@DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=0.05, backoff_rate=2)
async def st_flaky(fail_times: int) -> str:
    ATTEMPTS.append(time.monotonic())
    if len(ATTEMPTS) <= fail_times:
        err = ValueError(f"attempt {len(ATTEMPTS)} failed")
        RAISED.append(err)
        raise err
    return "ok"


@DBOS.workflow()
async def st_wf_flaky(fail_times: int) -> str:
    return await st_flaky(fail_times)


@DBOS.step()
async def st_fails(message: str) -> None:
    CALLS["st_fails"] += 1
    raise RuntimeError(message)


@DBOS.workflow()
async def st_wf_fails(message: str) -> None:
    await st_fails(message)


@DBOS.workflow()
async def st_wf_sees_own_step() -> dict[str, Any]:
    value = await st_async_double(21)
    steps = await DBOS.list_workflow_steps(DBOS.workflow_id or "")
    return {
        "value": value,
        "steps": [[s.function_id, s.function_name, s.output, s.error] for s in steps],
    }


@DBOS.step()
async def st_raise_custom(message: str) -> None:
    CALLS["st_raise_custom"] += 1
    raise StCustomError(message)


@DBOS.workflow()
async def st_wf_catch_then_wait(message: str) -> str:
    try:
        await st_raise_custom(message)  # step 1
        caught = "nothing"
    except StCustomError as exc:
        caught = f"{type(exc).__name__}: {exc}"
    gate("reached").set()
    await gate("release").wait()
    after = await st_async_double(1)  # step 2
    return f"{caught} / {after}"


@DBOS.step()
async def st_inner() -> list[Any]:
    CALLS["st_inner"] += 1
    return [DBOS.workflow_id, DBOS.step_id]


@DBOS.step()
async def st_outer() -> list[Any]:
    inner = await st_inner()
    return [DBOS.step_id, inner]


@DBOS.workflow()
async def st_wf_nested() -> dict[str, Any]:
    outer = await st_outer()  # step 1 (st_inner runs inside it)
    after = await st_ctx()  # step 2
    return {"outer": outer, "after": after}


# -- async and sync steps ------------------------------------------------------------


async def test_step__async_and_sync_steps_run_and_record(dbos: DBOS) -> None:
    with SetWorkflowID("st-both"):
        assert await st_wf_async_and_sync(2) == [4, 6]
    steps = await DBOS.list_workflow_steps("st-both")
    assert [(s.function_id, s.function_name, s.output, s.error) for s in steps] == [
        (1, "st_async_double", 4, None),
        (2, "st_sync_triple", 6, None),
    ]
    for s in steps:
        assert s.started_at_epoch_ms is not None
        assert s.completed_at_epoch_ms is not None
        assert s.started_at_epoch_ms <= s.completed_at_epoch_ms


async def test_step__sync_step_runs_in_worker_thread(dbos: DBOS) -> None:
    loop_thread = threading.get_ident()
    assert await st_wf_async_and_sync(1) == [2, 3]
    assert THREADS["async"] == loop_thread
    assert THREADS["sync"] != loop_thread

    # Also outside a workflow.
    THREADS.clear()
    assert await st_sync_triple(5) == 15
    assert THREADS["sync"] != loop_thread


async def test_step__sync_step_sees_workflow_context(dbos: DBOS) -> None:
    @DBOS.workflow()
    async def st_wf_sync_ctx() -> list[Any]:
        return [await st_ctx(), await st_sync_ctx()]

    with SetWorkflowID("st-sync-ctx"):
        assert await st_wf_sync_ctx() == [["st-sync-ctx", 1], ["st-sync-ctx", 2]]


async def test_step__outside_workflow_is_plain_call(dbos: DBOS, backend: str, db_url: str) -> None:
    assert await st_async_double(5) == 10
    assert await st_sync_triple(5) == 15
    assert await st_ctx() == [None, None]
    assert await st_sync_ctx() == [None, None]
    assert CALLS["st_async_double"] == 1
    assert CALLS["st_sync_triple"] == 1
    assert await count_step_rows(backend, db_url) == 0

    # The same step inside a workflow records one row (the count above can see rows).
    assert await st_wf_one_step(5) == 10
    assert await count_step_rows(backend, db_url) == 1


async def test_step__outside_workflow_errors_propagate_once(dbos: DBOS) -> None:
    with pytest.raises(RuntimeError, match="plain failure"):
        await st_fails("plain failure")
    assert CALLS["st_fails"] == 1


async def test_communicator__behaves_as_step(dbos: DBOS) -> None:
    loop_thread = threading.get_ident()
    with SetWorkflowID("st-comm"):
        assert await st_wf_comm(1) == [2, [10, 2]]
    assert THREADS["sync_comm"] != loop_thread
    steps = await DBOS.list_workflow_steps("st-comm")
    assert [(s.function_id, s.function_name, s.output) for s in steps] == [
        (1, "st_comm", 2),
        (2, "st_sync_comm", [10, 2]),
    ]
    # Outside a workflow: a plain call.
    assert await st_comm(10) == 11
    assert CALLS["st_comm"] == 2


# -- retries ---------------------------------------------------------------------------


async def test_step_retries__succeeds_after_failures_with_backoff(
    dbos: DBOS, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pauses the retry loop asks for, recorded where it sleeps (a stopwatch cannot
    # tell 0.05 s from 0.1 s on a loaded machine; the requested delays are exact).
    requested: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay: float, *args: Any) -> Any:
        requested.append(delay)
        return await real_sleep(delay, *args)

    class AsyncioRecordingSleeps:
        sleep = staticmethod(recording_sleep)

        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

    monkeypatch.setattr(_steps, "asyncio", AsyncioRecordingSleeps())
    with SetWorkflowID("st-flaky"):
        assert await asyncio.wait_for(st_wf_flaky(2), timeout=30) == "ok"
    assert len(ATTEMPTS) == 3
    # interval_seconds, then interval_seconds * backoff_rate.
    assert requested == [pytest.approx(0.05), pytest.approx(0.1)]
    # And the pauses really happened between the attempts (lower bounds only: a
    # loaded machine may wake late, never early).
    assert ATTEMPTS[1] - ATTEMPTS[0] >= 0.045
    assert ATTEMPTS[2] - ATTEMPTS[1] >= 0.095
    steps = await DBOS.list_workflow_steps("st-flaky")
    assert [(s.function_id, s.function_name, s.output, s.error) for s in steps] == [
        (1, "st_flaky", "ok", None)
    ]
    status = await DBOS.get_workflow_status("st-flaky")
    assert status is not None
    assert status.status == WorkflowStatusString.SUCCESS


async def test_step_retries__exhausted_raises_max_step_retries_exceeded(dbos: DBOS) -> None:
    with SetWorkflowID("st-exhausted"), pytest.raises(DBOSMaxStepRetriesExceeded) as raised:
        await st_wf_flaky(10)
    assert len(ATTEMPTS) == 3
    errors = raised.value.errors
    assert len(errors) == 3
    assert all(isinstance(e, ValueError) for e in errors)
    assert [str(e) for e in errors] == [str(e) for e in RAISED]
    assert [str(e) for e in errors] == ["attempt 1 failed", "attempt 2 failed", "attempt 3 failed"]

    status = await DBOS.get_workflow_status("st-exhausted")
    assert status is not None
    assert status.status == WorkflowStatusString.ERROR
    assert isinstance(status.error, DBOSMaxStepRetriesExceeded)
    assert len(status.error.errors) == 3
    steps = await DBOS.list_workflow_steps("st-exhausted")
    assert len(steps) == 1
    assert isinstance(steps[0].error, DBOSMaxStepRetriesExceeded)


async def test_step_retries__without_retries_raises_once(dbos: DBOS) -> None:
    with SetWorkflowID("st-no-retry"), pytest.raises(RuntimeError, match="no retry"):
        await st_wf_fails("no retry")
    assert CALLS["st_fails"] == 1
    steps = await DBOS.list_workflow_steps("st-no-retry")
    assert len(steps) == 1
    assert steps[0].function_name == "st_fails"
    assert isinstance(steps[0].error, RuntimeError)
    assert str(steps[0].error) == "no retry"
    assert steps[0].output is None
    status = await DBOS.get_workflow_status("st-no-retry")
    assert status is not None
    assert status.status == WorkflowStatusString.ERROR


# -- recording and replay ------------------------------------------------------------


async def test_step__output_recorded_before_workflow_continues(dbos: DBOS) -> None:
    with SetWorkflowID("st-sees"):
        result = await st_wf_sees_own_step()
    assert result == {"value": 42, "steps": [[1, "st_async_double", 42, None]]}


async def test_step__error_replayed_on_reexecution_without_running(dbos: DBOS, db_url: str) -> None:
    try:
        with SetWorkflowID("st-replay-error"):
            await DBOS.start_workflow(st_wf_catch_then_wait, "bad input")
        await asyncio.wait_for(gate("reached").wait(), timeout=5)
        assert CALLS["st_raise_custom"] == 1
        await DBOS.destroy()

        gate("release").set()
        DBOS({"database_url": db_url, "application_version": "test"})
        await DBOS.launch()
        handle = await DBOS.retrieve_workflow("st-replay-error")
        assert await asyncio.wait_for(handle, timeout=5) == "StCustomError: bad input / 2"
        assert CALLS["st_raise_custom"] == 1
        steps = await DBOS.list_workflow_steps("st-replay-error")
        assert [s.function_id for s in steps] == [1, 2]
        assert isinstance(steps[0].error, StCustomError)
        assert str(steps[0].error) == "bad input"
        assert (await handle.get_status()).recovery_attempts == 1
    finally:
        await DBOS.destroy()


async def test_step__nested_step_runs_inline_without_step_id(dbos: DBOS) -> None:
    with SetWorkflowID("st-nested"):
        result = await st_wf_nested()
    assert result == {
        "outer": [1, ["st-nested", 1]],
        "after": ["st-nested", 2],
    }
    assert CALLS["st_inner"] == 1
    steps = await DBOS.list_workflow_steps("st-nested")
    assert [(s.function_id, s.function_name) for s in steps] == [
        (1, "st_outer"),
        (2, "st_ctx"),
    ]


# -- decorated functions keep their metadata -----------------------------------------


async def _st_twin_async(a: int, b: str = "x", *, c: float = 1.0) -> str:
    return f"{a}{b}{c}"


def _st_twin_sync(a: int, b: str = "x", *, c: float = 1.0) -> str:
    return f"{a}{b}{c}"


@DBOS.step()
async def st_documented(a: int, b: str = "x", *, c: float = 1.0) -> str:
    """An async step with a docstring."""
    return f"{a}{b}{c}"


@DBOS.step(retries_allowed=True)
def st_documented_sync(a: int, b: str = "x", *, c: float = 1.0) -> str:
    """A sync step with a docstring."""
    return f"{a}{b}{c}"


@DBOS.workflow()
async def st_documented_workflow(a: int, b: str = "x", *, c: float = 1.0) -> str:
    """A workflow with a docstring."""
    return f"{a}{b}{c}"


@DBOS.transaction()
async def st_documented_transaction(a: int, b: str = "x", *, c: float = 1.0) -> str:
    """A transaction with a docstring."""
    return f"{a}{b}{c}"


@pytest.mark.parametrize(
    ("func", "name", "doc", "twin"),
    [
        (st_documented, "st_documented", "An async step with a docstring.", _st_twin_async),
        (st_documented_sync, "st_documented_sync", "A sync step with a docstring.", _st_twin_sync),
        (
            st_documented_workflow,
            "st_documented_workflow",
            "A workflow with a docstring.",
            _st_twin_async,
        ),
        (
            st_documented_transaction,
            "st_documented_transaction",
            "A transaction with a docstring.",
            _st_twin_async,
        ),
    ],
)
def test_decorators__keep_name_doc_and_signature(func: Any, name: str, doc: str, twin: Any) -> None:
    assert func.__name__ == name
    assert func.__qualname__ == name
    assert func.__doc__ == doc
    assert inspect.signature(func) == inspect.signature(twin)
    assert list(inspect.signature(func).parameters) == ["a", "b", "c"]
