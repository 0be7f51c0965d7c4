"""The checkpoint of one workflow step: the one place a step's outcome is recorded and
handed back to its workflow. Steps, transactions, ``DBOS.sleep`` and the messaging calls
(send, recv, events, streams) all go through it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ._clock import now_ms
from ._context import WorkflowState, current_step, current_workflow
from ._errors import (
    DBOSSerializationError,
    DBOSUnexpectedStepError,
    ReplayFailed,
    WorkflowOwnershipLost,
)
from ._failpoints import CRASH_AFTER, step_durable
from ._runtime import Runtime
from ._tracing import traced
from .sysdb import StepRow

__all__ = ["Checkpoint", "next_checkpoint", "settle_deferred", "wait_deferred"]

T = TypeVar("T")


def next_checkpoint(name: str, hint: Any = Any) -> Checkpoint | None:
    """The checkpoint of the next step of the workflow whose own code runs here, its step
    ID taken now (at call time, so concurrent calls in ``asyncio.gather`` number in call
    order; a cancelled workflow raises here). None outside workflows and inside a step:
    a call made from a step is part of that step, not a step of its own."""
    state = current_workflow.get()
    if state is None or current_step.get() is not None:
        return None
    return Checkpoint(state, state.take_step_id(), name, hint)


class Checkpoint:
    """Step ``step_id`` of the workflow ``state``, named ``name``: replay what an earlier
    run recorded there, or record what this run produced and hand back the outcome that
    counts. The contract (rules 1, 2 and 4 of docs/architecture.md):

    * **Replay, never rerun.** If an earlier run recorded this step ID (``recorded``), the
      step does not run again: ``replay`` returns its output (decoded with ``hint``) or
      raises its error, after checking the name recorded there is ``name`` (else
      ``DBOSUnexpectedStepError``: the workflow code is not deterministic).
    * **Durable before anything outside sees it.** ``record``, ``record_error`` and
      ``record_committed`` write the row through the journal and return only once the
      batch holding it has committed. ``defer`` and ``defer_error`` (steps and
      transactions) hand the outcome back at once and leave the row to commit before
      the workflow's next effect: every call that takes a checkpoint waits for it
      first (``traced``). They add no round trip and no await beyond the journal's.
    * **The first recorded row wins.** The journal keeps a step ID's first row and
      answers a later write with it. If another run of this workflow (a concurrent
      recovery or resume) recorded the step first, its row is kept in ``state.recorded``
      and ITS outcome is handed back (returned, or its error raised) instead of this
      run's, so every run goes on from the same outcome.
    * **Rows written with the step's own write.** send, set_event, write_stream and recv
      commit their step row in the same statement as the message, event or stream value
      (never through the journal): build it with ``row`` and, once the write has
      committed, ``adopt`` the row the database holds.

    A transaction's output is also written inside its own application-database
    transaction; ``record_committed`` covers a commit found there without its step row.
    """

    __slots__ = ("hint", "name", "state", "step_id")

    def __init__(self, state: WorkflowState, step_id: int, name: str, hint: Any = Any) -> None:
        self.state = state
        self.step_id = step_id
        self.name = name
        self.hint = hint

    def traced(self, make: Callable[[], Coroutine[Any, Any, T]]) -> Coroutine[Any, Any, T]:
        """The coroutine that carries out this step (``make()``), run inside the step's
        span when tracing is on (``dbos_async._tracing``) and only once every row this
        workflow deferred before it is durable (``defer``): whatever this step does, its
        body, send, child start, wait or record, is an effect those rows must precede.
        Every call that takes a checkpoint runs through here.

        ``make`` is called only then (a run stopped before it creates nothing to close),
        and the rows are checked when the coroutine runs, not now: one made before a row
        was deferred may be awaited after."""
        return _after_deferred(self, make)

    @property
    def recorded(self) -> bool:
        """Whether a row is recorded at this step ID (by an earlier run, or adopted)."""
        return self.step_id in self.state.recorded

    def replay(self, rt: Runtime) -> Any:
        """The recorded outcome: return its output or raise its error."""
        row = self.state.recorded[self.step_id]
        if row.function_name != self.name:
            raise DBOSUnexpectedStepError(
                self.state.workflow_id, self.step_id, self.name, row.function_name
            )
        try:
            if row.error is None:
                return rt.codec.loads(row.output, self.hint)
            error = rt.codec.load_error(row.error)
        except DBOSSerializationError as exc:
            # (Handing the decoding error to the workflow would let it take another path
            # than the run that recorded this step.)
            raise ReplayFailed(self.state.workflow_id, self.step_id, exc) from exc
        raise error

    def row(
        self, output: str | None = None, error: str | None = None, started_ms: int | None = None
    ) -> StepRow:
        """This step's row, completed now (and started now unless ``started_ms``)."""
        now = now_ms()
        return StepRow(
            self.state.workflow_id,
            self.step_id,
            self.name,
            output=output,
            error=error,
            started_at_epoch_ms=now if started_ms is None else started_ms,
            completed_at_epoch_ms=now,
        )

    def adopt(self, row: StepRow) -> None:
        """Take ``row``, committed by the database, as this step's recorded row."""
        self.state.recorded[self.step_id] = row
        if CRASH_AFTER:
            step_durable(row.workflow_id, row.function_id)

    async def record(
        self, rt: Runtime, output: str, value: Any, started_ms: int | None = None
    ) -> Any:
        """Record ``output`` (``value``, serialized) once it is durable; return ``value``,
        or the outcome of the run that recorded this step first."""
        row = self.row(output=output, started_ms=started_ms)
        stored = await rt.journal.record_step(row)
        if stored is row:
            if CRASH_AFTER:
                step_durable(row.workflow_id, row.function_id)
            return value
        self.adopt(stored)
        return self.replay(rt)

    def defer(self, rt: Runtime, output: str, value: Any, started_ms: int | None = None) -> Any:
        """Record ``output`` (``value``, serialized) without waiting: return ``value`` now,
        while the row commits in the journal's next batch.

        Rule 1 of docs/architecture.md, "durable before anything outside sees it": the
        workflow's own code between two steps is deterministic and has no effects, so
        the row needs to be durable only before the workflow's next effect, not before
        the workflow sees the value. Every call that takes a checkpoint waits for the
        rows deferred before it (``traced``, ``settle_deferred``), and the workflow's
        outcome is queued behind them, so the last step's row and the final status share
        one commit. A crash before the row commits loses only work no one outside saw:
        recovery runs the step again.

        A cancelled run waits for its deferred rows before it ends (``wait_deferred``),
        as it waits for a running body; ``settle_deferred`` hands out a row's error, or
        stops the run if another run recorded this step first."""
        self._defer(rt, self.row(output=output, started_ms=started_ms))
        return value

    def defer_error(self, rt: Runtime, error: Exception, started_ms: int | None = None) -> Any:
        """``defer`` for an error: record it without waiting and raise it now. Not while
        the runtime closes (``record_error`` says why)."""
        if not rt.launched:
            raise asyncio.CancelledError from error
        self._defer(rt, self.row(error=rt.codec.dump_error(error), started_ms=started_ms))
        raise error

    def _defer(self, rt: Runtime, row: StepRow) -> None:
        future = rt.journal.defer_step(row)
        if CRASH_AFTER:
            # (Added first, so a crash hook fires before anyone awaiting the row goes on.)
            future.add_done_callback(lambda f: _durable_hook(f, row))
        self.state.deferred.append((row, future))

    async def record_error(
        self, rt: Runtime, error: Exception, started_ms: int | None = None
    ) -> Any:
        """Record ``error`` as the step's outcome and, once it is durable, raise it; or
        hand back the outcome of the run that recorded this step first.

        Not while the runtime closes: the error may be the shutdown's doing (a closed
        pool, no runtime any more), so nothing is recorded and the workflow stops here
        as its cancelled task would; recovery runs the step again."""
        if not rt.launched:
            raise asyncio.CancelledError from error
        row = self.row(error=rt.codec.dump_error(error), started_ms=started_ms)
        stored = await rt.journal.record_step(row)
        if stored is row:
            if CRASH_AFTER:
                step_durable(row.workflow_id, row.function_id)
            raise error
        self.adopt(stored)
        return self.replay(rt)

    async def record_committed(self, rt: Runtime, output: str) -> Any:
        """Record the output a transaction committed (found in the application database,
        its step row missing) and return the recorded outcome, decoded: this run's row or
        the one another run recorded first. The row is stamped now."""
        self.adopt(await rt.journal.record_step(self.row(output=output)))
        return self.replay(rt)


def _durable_hook(future: asyncio.Future[Any], row: StepRow) -> None:
    if not future.cancelled() and future.exception() is None and future.result() is row:
        step_durable(row.workflow_id, row.function_id)


async def settle_deferred(state: WorkflowState) -> None:
    """Wait until every row ``state``'s workflow deferred so far has committed.

    Raises what a deferred write met (``WorkflowOwnershipLost`` if another process owns
    the workflow now). If another run recorded a deferred step first, this run already
    went on with its own outcome of that step, so it cannot go on: it stops as a
    fenced run does (``WorkflowOwnershipLost``), recording nothing more, and the run
    that recorded first (or a recovery) carries the workflow. Concurrent callers
    (steps under ``asyncio.gather``) each wait for all rows deferred before them.

    The journal settles its futures in the order it commits them, so waiting for the
    last one is waiting for all; the wait is on a future of its own, so a cancelled
    caller (a ``wait_for`` around a step) cancels nothing the journal or another
    caller waits on."""
    if not state.deferred:
        return
    entries = list(state.deferred)
    last = entries[-1][1]
    if not last.done():
        await _wait_done(last)
    for row, future in entries:
        if not future.done():  # (settled out of order only by a retried batch)
            await _wait_done(future)
        with contextlib.suppress(ValueError):
            state.deferred.remove((row, future))
        if future.cancelled():
            raise asyncio.CancelledError  # (the journal closed: the runtime is stopping)
        error = future.exception()
        if error is not None:
            raise error
        if future.result() is not row:
            raise WorkflowOwnershipLost(state.workflow_id)


async def wait_deferred(state: WorkflowState) -> None:
    """Wait until the rows ``state``'s workflow deferred have committed or failed,
    raising nothing (a cancelled run, before it ends: a resume must find them)."""
    for _row, future in list(state.deferred):
        if not future.done():
            await _wait_done(future)
        if not future.cancelled():
            future.exception()  # (read: it is reported by whoever runs the workflow next)
    state.deferred.clear()


async def _wait_done(future: asyncio.Future[Any]) -> None:
    waiter = asyncio.get_running_loop().create_future()

    def wake(_: asyncio.Future[Any]) -> None:
        if not waiter.done():
            waiter.set_result(None)

    future.add_done_callback(wake)
    try:
        await waiter
    finally:
        future.remove_done_callback(wake)


async def _after_deferred(checkpoint: Checkpoint, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    state = checkpoint.state
    if state.deferred:
        await settle_deferred(state)
    return await traced(state.workflow_id, checkpoint.step_id, checkpoint.name, make())
