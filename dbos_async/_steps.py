"""Steps, transactions and durable sleep inside workflows.

Each takes its step ID when it is called (before any ``await``), so concurrent calls in
``asyncio.gather`` number deterministically. A step's output is recorded before the
workflow sees it; on re-execution a recorded step returns its output (or raises its error)
without running, after checking it is the same function that was recorded there.

A cancel (or a deadline) never interrupts a step or transaction body: the body finishes
and its checkpoint is recorded, then the workflow stops before its next step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from ._context import (
    StepFrame,
    WorkflowState,
    current_sql_connection,
    current_step,
    current_workflow,
)
from ._errors import (
    DBOSMaxStepRetriesExceeded,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
)
from ._registry import FunctionInfo
from ._runtime import Runtime, get_runtime
from .sysdb import StepRow, TransactionConflict

__all__ = [
    "SLEEP_STEP_NAME",
    "call_step",
    "call_transaction",
    "durable_sleep",
    "record_step_outcome",
    "replay_step",
]

SLEEP_STEP_NAME = "DBOS.sleep"

T = TypeVar("T")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _in_workflow() -> WorkflowState | None:
    """The workflow a step called now belongs to; None outside workflows and inside steps
    (a step called from a step is part of the outer step)."""
    state = current_workflow.get()
    if state is None or current_step.get() is not None:
        return None
    return state


def replay_step(rt: Runtime, state: WorkflowState, step_id: int, name: str, hint: Any) -> Any:
    """The recorded outcome at ``step_id``: return its output or raise its error."""
    row = state.recorded[step_id]
    if row.function_name != name:
        raise DBOSUnexpectedStepError(state.workflow_id, step_id, name, row.function_name)
    if row.error is not None:
        raise rt.codec.load_error(row.error)
    return rt.codec.loads(row.output, hint)


async def record_step_outcome(rt: Runtime, state: WorkflowState, row: StepRow, value: Any) -> Any:
    """Record a step that produced ``value``; if another run recorded this step ID first,
    its outcome wins."""
    replaced, other = await _record(rt, state, row, Any)
    return other if replaced else value


async def _record(rt: Runtime, state: WorkflowState, row: StepRow, hint: Any) -> tuple[bool, Any]:
    """Record a step; if another run recorded this step ID first, its outcome wins:
    returns ``(True, value)`` (or raises its error) in that case."""
    stored = await rt.journal.record_step(row)
    if stored is row:
        return False, None
    state.recorded[row.function_id] = stored
    return True, replay_step(rt, state, row.function_id, row.function_name, hint)


async def _invoke(info: FunctionInfo, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if info.is_async:
        return await info.func(*args, **kwargs)
    return await asyncio.to_thread(info.func, *args, **kwargs)


async def _plain_step(info: FunctionInfo, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if current_step.get() is not None:
        return await _invoke(info, args, kwargs)
    token = current_step.set(StepFrame(None, None))
    try:
        return await _invoke(info, args, kwargs)
    finally:
        current_step.reset(token)


async def _as_body(state: WorkflowState, run: Coroutine[Any, Any, T]) -> T:
    """Run a step or transaction (body and checkpoint) so that a cancel arriving meanwhile
    lets it finish and record; a workflow cancelled before it starts never runs it."""
    if state.cancelled:
        run.close()
        raise DBOSWorkflowCancelledError(state.workflow_id)
    with state.step_body():
        return await run


async def _attempts(
    state: WorkflowState, info: FunctionInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    opts = info.options
    if not opts["retries_allowed"]:
        return await _invoke(info, args, kwargs)
    errors: list[BaseException] = []
    for attempt in range(opts["max_attempts"]):
        try:
            return await _invoke(info, args, kwargs)
        except Exception as exc:
            errors.append(exc)
            if attempt + 1 < opts["max_attempts"]:
                with state.between_attempts():  # a cancel stops the workflow here
                    await asyncio.sleep(opts["interval_seconds"] * opts["backoff_rate"] ** attempt)
    raise DBOSMaxStepRetriesExceeded(info.name, opts["max_attempts"], errors) from errors[-1]


def call_step(
    info: FunctionInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Coroutine[Any, Any, Any]:
    state = _in_workflow()
    if state is None:
        return _plain_step(info, args, kwargs)
    return _as_body(state, _run_step(state, state.take_step_id(), info, args, kwargs))


async def _run_step(
    state: WorkflowState,
    step_id: int,
    info: FunctionInfo,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    rt = get_runtime()
    hint = info.return_hint
    if step_id in state.recorded:
        return replay_step(rt, state, step_id, info.name, hint)
    started = _now_ms()
    try:
        token = current_step.set(StepFrame(state.workflow_id, step_id))
        try:
            value = await _attempts(state, info, args, kwargs)
        finally:
            current_step.reset(token)
        output = rt.codec.dumps(value, f"output of step {info.name!r}")
    except Exception as exc:
        row = StepRow(
            state.workflow_id,
            step_id,
            info.name,
            error=rt.codec.dump_error(exc),
            started_at_epoch_ms=started,
            completed_at_epoch_ms=_now_ms(),
        )
        replaced, other = await _record(rt, state, row, hint)
        if replaced:
            return other
        raise
    row = StepRow(
        state.workflow_id,
        step_id,
        info.name,
        output=output,
        started_at_epoch_ms=started,
        completed_at_epoch_ms=_now_ms(),
    )
    replaced, other = await _record(rt, state, row, hint)
    return other if replaced else value


def call_transaction(
    info: FunctionInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Coroutine[Any, Any, Any]:
    state = _in_workflow()
    if state is None:
        return _run_transaction(None, None, info, args, kwargs)
    return _as_body(state, _run_transaction(state, state.take_step_id(), info, args, kwargs))


async def _run_transaction(
    state: WorkflowState | None,
    step_id: int | None,
    info: FunctionInfo,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    rt = get_runtime()
    hint = info.return_hint
    if state is not None and step_id is not None:
        if step_id in state.recorded:
            return replay_step(rt, state, step_id, info.name, hint)
        if state.replaying:
            # Committed before a crash that came before its step row: never run it again.
            committed = await rt.appdb.get_transaction_output(state.workflow_id, step_id)
            if committed is not None:
                return await _finish_transaction(rt, state, step_id, info, committed, hint)
    output: list[str] = []

    def record(value: Any) -> tuple[str, int, str]:
        assert state is not None and step_id is not None
        output.append(rt.codec.dumps(value, f"output of transaction {info.name!r}"))
        return state.workflow_id, step_id, output[-1]

    async def body(conn: Any) -> Any:
        sql_token = current_sql_connection.set(conn)
        frame = StepFrame(state.workflow_id, step_id) if state else current_step.get()
        step_token = current_step.set(frame or StepFrame(None, None))
        try:
            return await info.func(*args, **kwargs)
        finally:
            current_step.reset(step_token)
            current_sql_connection.reset(sql_token)

    started = _now_ms()
    delay = 0.01
    while True:
        try:
            value = await rt.appdb.run_transaction(
                body, info.options["isolation_level"], record if state is not None else None
            )
            break
        except TransactionConflict:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            if state is not None and step_id is not None:
                committed = await rt.appdb.get_transaction_output(state.workflow_id, step_id)
                if committed is not None:
                    return await _finish_transaction(rt, state, step_id, info, committed, hint)
        except Exception as exc:
            if state is not None and step_id is not None:
                row = StepRow(
                    state.workflow_id,
                    step_id,
                    info.name,
                    error=rt.codec.dump_error(exc),
                    started_at_epoch_ms=started,
                    completed_at_epoch_ms=_now_ms(),
                )
                replaced, other = await _record(rt, state, row, hint)
                if replaced:
                    return other
            raise
    if state is None or step_id is None:
        return value
    row = StepRow(
        state.workflow_id,
        step_id,
        info.name,
        output=output[-1],
        started_at_epoch_ms=started,
        completed_at_epoch_ms=_now_ms(),
    )
    replaced, other = await _record(rt, state, row, hint)
    return other if replaced else value


async def _finish_transaction(
    rt: Runtime, state: WorkflowState, step_id: int, info: FunctionInfo, output: str, hint: Any
) -> Any:
    now = _now_ms()
    row = StepRow(
        state.workflow_id,
        step_id,
        info.name,
        output=output,
        started_at_epoch_ms=now,
        completed_at_epoch_ms=now,
    )
    stored = await rt.journal.record_step(row)
    state.recorded[step_id] = stored
    return replay_step(rt, state, step_id, info.name, hint)


def durable_sleep(seconds: float) -> Coroutine[Any, Any, None]:
    """``DBOS.sleep``: inside a workflow the wake-up time is recorded, so a recovered
    workflow sleeps only what remains; elsewhere a plain ``asyncio.sleep``."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"DBOS.sleep() needs a number of seconds, got {seconds!r}")
    state = _in_workflow()
    if state is None:
        return asyncio.sleep(seconds)
    return _sleep(state, state.take_step_id(), float(seconds))


async def _sleep(state: WorkflowState, step_id: int, seconds: float) -> None:
    rt = get_runtime()
    if step_id in state.recorded:
        wake_at = float(replay_step(rt, state, step_id, SLEEP_STEP_NAME, float))
    else:
        wake_at = time.time() + seconds
        now = _now_ms()
        row = StepRow(
            state.workflow_id,
            step_id,
            SLEEP_STEP_NAME,
            output=rt.codec.dumps(wake_at, "wake time"),
            started_at_epoch_ms=now,
            completed_at_epoch_ms=now,
        )
        replaced, other = await _record(rt, state, row, float)
        if replaced:
            wake_at = float(other)
    await asyncio.sleep(max(0.0, wake_at - time.time()))
