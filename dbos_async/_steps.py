"""Steps, transactions and durable sleep inside workflows.

Each takes its step ID when it is called (before any ``await``), so concurrent calls in
``asyncio.gather`` number deterministically. A step's output is recorded before the
workflow's next effect (``Checkpoint.defer``); on re-execution a recorded step returns its
output (or raises its error) without running, after checking it is the same function that
was recorded there.

A cancel (or a deadline) never interrupts a step or transaction body: the body finishes
and its checkpoint is recorded, then the workflow stops before its next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from ._checkpoint import Checkpoint, next_checkpoint
from ._clock import now_ms
from ._context import (
    SqlSessionSlot,
    StepFrame,
    WorkflowState,
    current_sql_connection,
    current_sql_session,
    current_step,
)
from ._errors import (
    DBOSException,
    DBOSMaxStepRetriesExceeded,
    DBOSWorkflowCancelledError,
    WorkflowOwnershipLost,
)
from ._failpoints import ACTIVE as FAILPOINTS
from ._failpoints import hit
from ._registry import FunctionInfo
from ._runtime import get_runtime
from .sysdb import TransactionConflict

__all__ = [
    "SLEEP_STEP_NAME",
    "builtin_step",
    "call_step",
    "call_transaction",
    "durable_sleep",
    "durable_wait",
    "transaction_session",
]

SLEEP_STEP_NAME = "DBOS.sleep"

T = TypeVar("T")


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
    state.enter_body()
    try:
        return await run
    finally:
        state.leave_body()


async def _preemptible(state: WorkflowState, run: Coroutine[Any, Any, T]) -> T:
    """Run a preemptible step: not a body a cancel waits for, so a cancel of its workflow
    cancels it where it is (nothing is recorded; a resumed run runs it again)."""
    if state.cancelled:
        run.close()
        raise DBOSWorkflowCancelledError(state.workflow_id)
    return await run


async def _attempts(
    state: WorkflowState, info: FunctionInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    opts = info.step_options
    if not opts.retries_allowed:
        return await _invoke(info, args, kwargs)
    errors: list[BaseException] = []
    frame = current_step.get() or StepFrame(state.workflow_id, None)
    for attempt in range(opts.max_attempts):
        token = current_step.set(
            dataclasses.replace(frame, current_attempt=attempt, max_attempts=opts.max_attempts)
        )
        try:
            return await _invoke(info, args, kwargs)
        except Exception as exc:
            errors.append(exc)
            if attempt + 1 < opts.max_attempts:
                with state.between_attempts():  # a cancel stops the workflow here
                    await asyncio.sleep(opts.interval_seconds * opts.backoff_rate**attempt)
        finally:
            current_step.reset(token)
    raise DBOSMaxStepRetriesExceeded(info.name, opts.max_attempts, errors) from errors[-1]


def call_step(
    info: FunctionInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Coroutine[Any, Any, Any]:
    checkpoint = next_checkpoint(info.name, info.return_hint)
    if checkpoint is None:
        return _plain_step(info, args, kwargs)
    if info.step_options.preemptible:
        return checkpoint.traced(
            lambda: _preemptible(checkpoint.state, _run_step(checkpoint, info, args, kwargs))
        )
    return checkpoint.traced(
        lambda: _as_body(checkpoint.state, _run_step(checkpoint, info, args, kwargs))
    )


async def _run_step(
    checkpoint: Checkpoint, info: FunctionInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    rt = get_runtime()
    if checkpoint.recorded:
        return checkpoint.replay(rt)
    state = checkpoint.state
    started = now_ms()
    try:
        token = current_step.set(StepFrame(state.workflow_id, checkpoint.step_id))
        try:
            if info.is_async and not info.step_options.retries_allowed:
                value = await info.func(*args, **kwargs)  # (_attempts, two frames fewer)
            else:
                value = await _attempts(state, info, args, kwargs)
        finally:
            current_step.reset(token)
        if FAILPOINTS:
            hit("after_step_body")
        output = rt.codec.dumps(value, f"output of step {info.name!r}")
    except Exception as exc:
        return checkpoint.defer_error(rt, exc, started)
    return checkpoint.defer(rt, output, value, started)


def call_transaction(
    info: FunctionInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Coroutine[Any, Any, Any]:
    checkpoint = next_checkpoint(info.name, info.return_hint)
    if checkpoint is None:
        return _run_transaction(None, info, args, kwargs)
    return checkpoint.traced(
        lambda: _as_body(checkpoint.state, _run_transaction(checkpoint, info, args, kwargs))
    )


async def _run_transaction(
    checkpoint: Checkpoint | None,
    info: FunctionInfo,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Run a transaction; in a workflow (``checkpoint`` given) its output commits with it
    (in the application database) and is then recorded as its step, so it commits once."""
    rt = get_runtime()
    if checkpoint is not None:
        if checkpoint.recorded:
            return checkpoint.replay(rt)
        if checkpoint.state.replaying:
            # Committed before a crash that came before its step row: never run it again.
            committed = await rt.appdb.get_transaction_output(
                checkpoint.state.workflow_id, checkpoint.step_id
            )
            if committed is not None:
                return await checkpoint.record_committed(rt, committed)
        if not rt.appdb.fenced:
            # The application database is not the system database, so its commit cannot
            # check the owner itself: check now, before the body runs.
            workflow_id = checkpoint.state.workflow_id
            if await rt.sysdb.not_owned_among([workflow_id]):
                raise WorkflowOwnershipLost(workflow_id)
    output: list[str] = []

    def record(value: Any) -> tuple[str, int, str]:
        assert checkpoint is not None
        output.append(rt.codec.dumps(value, f"output of transaction {info.name!r}"))
        return checkpoint.state.workflow_id, checkpoint.step_id, output[-1]

    async def body(conn: Any) -> Any:
        slot = SqlSessionSlot(conn)
        sql_token = current_sql_connection.set(conn)
        session_token = current_sql_session.set(slot)
        frame = (
            StepFrame(checkpoint.state.workflow_id, checkpoint.step_id)
            if checkpoint
            else current_step.get()
        )
        step_token = current_step.set(frame or StepFrame(None, None))
        try:
            value = await info.func(*args, **kwargs)
        except BaseException:
            if slot.session is not None:
                # (The transaction rolls back: nothing to flush, and the body's error,
                # not a cleanup's, is the outcome.)
                with contextlib.suppress(Exception):
                    await rt.appdb.end_sql_session(slot.session, flush=False)
            raise
        finally:
            current_step.reset(step_token)
            current_sql_session.reset(session_token)
            current_sql_connection.reset(sql_token)
        if slot.session is not None:
            # Pending ORM changes are written before the output and the commit.
            await rt.appdb.end_sql_session(slot.session, flush=True)
        return value

    started = now_ms()
    delay = 0.01
    while True:
        try:
            value = await rt.appdb.run_transaction(
                body,
                info.transaction_options.isolation_level,
                record if checkpoint is not None else None,
            )
            if FAILPOINTS and checkpoint is not None:
                hit("after_transaction_commit")
            break
        except TransactionConflict:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            if checkpoint is not None:
                committed = await rt.appdb.get_transaction_output(
                    checkpoint.state.workflow_id, checkpoint.step_id
                )
                if committed is not None:
                    return await checkpoint.record_committed(rt, committed)
        except Exception as exc:
            if checkpoint is None:
                raise
            return checkpoint.defer_error(rt, exc, started)
    if checkpoint is None:
        return value
    return checkpoint.defer(rt, output[-1], value, started)


def transaction_session() -> Any:
    """``DBOS.sql_session``: the SQLAlchemy session of the running ``@DBOS.transaction``,
    opened on its connection the first time the body asks (then the same one)."""
    slot = current_sql_session.get()
    if slot is None:
        raise DBOSException("DBOS.sql_session is only available inside a @DBOS.transaction")
    if slot.session is None:
        slot.session = get_runtime().appdb.sql_session(slot.conn)
    return slot.session


def durable_sleep(seconds: float) -> Coroutine[Any, Any, None]:
    """``DBOS.sleep``: inside a workflow the wake-up time is recorded, so a recovered
    workflow sleeps only what remains; elsewhere a plain ``asyncio.sleep``."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"DBOS.sleep() needs a number of seconds, got {seconds!r}")
    checkpoint = next_checkpoint(SLEEP_STEP_NAME, float)
    if checkpoint is None:
        return asyncio.sleep(seconds)
    return checkpoint.traced(lambda: _sleep(checkpoint, float(seconds)))


async def _sleep(checkpoint: Checkpoint, seconds: float) -> None:
    rt = get_runtime()
    if checkpoint.recorded:
        wake_at = float(checkpoint.replay(rt))
    else:
        wake_at = time.time() + seconds
        # (The wake time another run recorded first, if one did.)
        wake_at = float(await checkpoint.record(rt, rt.codec.dumps(wake_at, "wake time"), wake_at))
    await asyncio.sleep(max(0.0, wake_at - time.time()))


def builtin_step(
    name: str, run: Callable[[], Awaitable[T]], hint: Any = Any
) -> Coroutine[Any, Any, T]:
    """A built-in call (``DBOS.get_result``, ``DBOS.wait_first``) that, from a workflow's
    own code, is a step named ``name``: ``run()``'s outcome is recorded, and a re-run gets
    it back without running it again. Elsewhere (outside workflows, inside a step) it is
    ``run()`` itself. Unlike a step body, ``run()`` is a wait: a cancel stops it at once,
    and nothing is recorded then."""
    checkpoint = next_checkpoint(name, hint)
    if checkpoint is None:
        return _awaited(run)
    return checkpoint.traced(lambda: _builtin(checkpoint, run))


def builtin_step_naming(
    name: str, run: Callable[[str | None], Awaitable[T]], hint: Any = Any
) -> Coroutine[Any, Any, T]:
    """``builtin_step`` for a call that creates a workflow: ``run`` gets the ID a child
    started at this step would have (``{workflow_id}-{step_id}``) in a workflow's own
    code, None elsewhere, so that a re-run after a crash between the creation and the
    step's record finds what the first run created instead of creating it again."""
    checkpoint = next_checkpoint(name, hint)
    if checkpoint is None:
        return _awaited(lambda: run(None))
    child_id = f"{checkpoint.state.workflow_id}-{checkpoint.step_id}"
    return checkpoint.traced(lambda: _builtin(checkpoint, lambda: run(child_id)))


async def _awaited(run: Callable[[], Awaitable[T]]) -> T:
    return await run()


async def _builtin(checkpoint: Checkpoint, run: Callable[[], Awaitable[Any]]) -> Any:
    rt = get_runtime()
    if checkpoint.recorded:
        return checkpoint.replay(rt)
    started = now_ms()
    try:
        value = await run()
        output = rt.codec.dumps(value, f"output of {checkpoint.name}")
    except Exception as exc:
        return await checkpoint.record_error(rt, exc, started)
    return await checkpoint.record(rt, output, value, started)


def durable_wait(
    futures: Sequence[asyncio.Future[Any]], wait_seconds: float | None, return_when: str
) -> Coroutine[Any, Any, tuple[set[asyncio.Future[Any]], set[asyncio.Future[Any]]]]:
    """``DBOS.asyncio_wait``: ``asyncio.wait`` whose answer (which futures were done) is,
    from a workflow's own code, a step (``DBOS.asyncio_wait``, recording their indices),
    so a re-run returns the same split: it waits for the futures recorded as done, and
    hands back the others as pending, whatever they do meanwhile."""
    checkpoint = next_checkpoint("DBOS.asyncio_wait", list[int])
    if checkpoint is None:
        return asyncio.wait(futures, timeout=wait_seconds, return_when=return_when)
    return checkpoint.traced(lambda: _durable_wait(checkpoint, futures, wait_seconds, return_when))


async def _durable_wait(
    checkpoint: Checkpoint,
    futures: Sequence[asyncio.Future[Any]],
    wait_seconds: float | None,
    return_when: str,
) -> tuple[set[asyncio.Future[Any]], set[asyncio.Future[Any]]]:
    rt = get_runtime()
    if checkpoint.recorded:
        indices = checkpoint.replay(rt) or []
    else:
        started = now_ms()
        done, _ = await asyncio.wait(futures, timeout=wait_seconds, return_when=return_when)
        ours = [i for i, f in enumerate(futures) if f in done]
        output = rt.codec.dumps(ours, "the indices DBOS.asyncio_wait found done")
        # (The split another run recorded first, if one did, stands.)
        indices = await checkpoint.record(rt, output, ours, started)
    done = {f for i, f in enumerate(futures) if i in set(indices)}
    if done:
        await asyncio.wait(done)  # (a replay: those done in the recorded run end here too)
    return done, {f for f in futures if f not in done}
