"""``WorkflowHandle``: an awaitable for a workflow's outcome, here or in another process.
A handle is only a workflow ID: each ``get_result()`` follows the workflow's current run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._deadlines import expire_enqueued
from ._errors import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded,
    DBOSNonExistentWorkflowError,
    WorkflowOwnershipLost,
)
from ._registry import registry
from ._status import StepInfo, WorkflowStatus, WorkflowStatusString
from .sysdb import notification_key

if TYPE_CHECKING:
    from ._runtime import Runtime
    from .sysdb import StepRow, WorkflowRow

__all__ = ["WorkflowHandle", "WorkflowHandleAsync", "outcome_of", "status_of", "step_infos"]

R = TypeVar("R")

_POLL_FIRST = 0.01
_POLL_MAX = 0.5


def outcome_of(runtime: Runtime, row: WorkflowRow) -> Any:
    """The result of a finished workflow's row, or raise its error."""
    status = row.status
    if status == WorkflowStatusString.SUCCESS:
        info = registry.workflows.get(row.name)
        return runtime.codec.loads(row.output, info.return_hint if info else Any)
    if status == WorkflowStatusString.ERROR:
        raise runtime.codec.load_error(row.error or "null")
    if status == WorkflowStatusString.CANCELLED:
        raise DBOSAwaitedWorkflowCancelledError(row.workflow_id)
    if status == WorkflowStatusString.MAX_RECOVERY_ATTEMPTS_EXCEEDED:
        raise DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded(row.workflow_id)
    raise AssertionError(f"workflow {row.workflow_id!r} has not finished ({status})")


def status_of(runtime: Runtime, row: WorkflowRow) -> WorkflowStatus:
    codec = runtime.codec
    info = registry.workflows.get(row.name)
    return WorkflowStatus(
        workflow_id=row.workflow_id,
        status=WorkflowStatusString(row.status),
        name=row.name,
        input=codec.loads(row.inputs),
        output=codec.loads(row.output, info.return_hint if info else Any),
        error=codec.load_error(row.error) if row.error is not None else None,
        created_at=row.created_at,
        updated_at=row.updated_at,
        queue_name=row.queue_name,
        executor_id=row.executor_id,
        app_version=row.application_version,
        recovery_attempts=row.recovery_attempts,
        parent_workflow_id=row.parent_workflow_id,
        forked_from=row.forked_from,
        workflow_timeout_ms=row.workflow_timeout_ms,
        workflow_deadline_epoch_ms=row.workflow_deadline_epoch_ms,
        priority=row.priority,
        deduplication_id=row.deduplication_id,
        queue_partition_key=row.queue_partition_key,
        class_name=row.class_name,
        config_name=row.config_name,
    )


def step_infos(runtime: Runtime, rows: list[StepRow]) -> list[StepInfo]:
    """Recorded step rows as ``StepInfo``, outputs deserialized and errors rebuilt."""
    codec = runtime.codec
    return [
        StepInfo(
            function_id=s.function_id,
            function_name=s.function_name,
            output=codec.loads(s.output),
            error=codec.load_error(s.error) if s.error is not None else None,
            child_workflow_id=s.child_workflow_id,
            started_at_epoch_ms=s.started_at_epoch_ms,
            completed_at_epoch_ms=s.completed_at_epoch_ms,
        )
        for s in rows
    ]


async def _shielded(outcome: asyncio.Future[Any]) -> Any:
    """``await asyncio.shield(outcome)``: the outcome of a run here, without cancelling it
    when the awaiter is cancelled (other handles await it too). Lighter than ``shield``,
    which every handle of every workflow goes through: one future and one callback, and
    none once the outcome is known."""
    if outcome.done():
        return outcome.result()
    waiter = outcome.get_loop().create_future()

    def relay(done: asyncio.Future[Any]) -> None:
        if waiter.done():
            return
        if done.cancelled():
            waiter.cancel()
            return
        error = done.exception()
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(done.result())

    outcome.add_done_callback(relay)
    try:
        return await waiter
    finally:
        if not outcome.done():
            outcome.remove_done_callback(relay)


class WorkflowHandle(Generic[R]):
    """A started workflow. ``await handle`` (or ``get_result()``) gives its result or raises
    its error. A workflow running in this process resolves the handle directly; one running
    elsewhere is watched in the status table until it ends."""

    # One per workflow started, often kept while it runs: no attribute dict.
    __slots__ = ("_callbacks", "_runtime", "_task", "workflow_id")

    def __init__(self, runtime: Runtime, workflow_id: str) -> None:
        self._runtime = runtime
        self.workflow_id = workflow_id
        self._task: asyncio.Task[R] | None = None
        #: Made on first use (a handle is made for every workflow; few get callbacks).
        self._callbacks: dict[Callable[[Any], object], list[Callable[[object], None]]] | None
        self._callbacks = None

    def __repr__(self) -> str:
        return f"WorkflowHandle({self.workflow_id!r})"

    def get_workflow_id(self) -> str:
        """The workflow's ID (the same as ``handle.workflow_id``)."""
        return self.workflow_id

    async def get_result(self) -> R:
        """The outcome of the workflow's current run, looked up at each call: a handle
        taken before a cancel gives the result of the run that a resume started. An
        ENQUEUED workflow whose deadline has passed is cancelled here."""
        local = self._runtime.live.outcome(self.workflow_id)
        if local is not None:
            try:
                result: R = await _shielded(local)
                return result
            except WorkflowOwnershipLost:
                pass  # another process runs it now: follow it in the status table
        delay = _POLL_FIRST
        # Woken at once if it ends in this process (a queued workflow claimed here after
        # this handle was made); else the status table is polled.
        with self._runtime.notifier.subscribe(
            notification_key("end", self.workflow_id, "")
        ) as ended:
            while True:
                row = await self._runtime.sysdb.get_workflow(self.workflow_id)
                if row is None:
                    raise DBOSNonExistentWorkflowError(self.workflow_id)
                if WorkflowStatusString(row.status).is_terminal:
                    value: R = outcome_of(self._runtime, row)
                    return value
                deadline = row.workflow_deadline_epoch_ms
                if (
                    row.status == WorkflowStatusString.ENQUEUED
                    and deadline is not None
                    and deadline <= time.time() * 1000
                    # Nobody enforced it (the process that enqueued it died): do it now.
                    and await expire_enqueued(self._runtime, workflow_id=self.workflow_id)
                ):
                    continue
                local = self._runtime.live.outcome(self.workflow_id)
                if local is not None:
                    try:
                        result = await _shielded(local)
                        return result
                    except WorkflowOwnershipLost:
                        pass
                await self._runtime.notifier.wait(ended, delay)
                delay = min(delay * 2, _POLL_MAX)

    get_result_async = get_result

    def __await__(self) -> Generator[Any, None, R]:
        return self.get_result().__await__()

    # -- the Future protocol, so asyncio.wait() accepts handles (Python 3.11+ no longer
    # wraps awaitables in tasks there). A task awaiting the result is made on first use.

    def _result_task(self) -> asyncio.Task[R]:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.get_result())
        return self._task

    def add_done_callback(self, fn: Callable[[Any], object], *, context: Any = None) -> None:
        """Call ``fn(handle)`` once the result is known (the ``asyncio.Future`` protocol,
        so ``asyncio.wait`` accepts handles). Needs a running event loop."""

        def call(_: object) -> None:
            fn(self)

        if self._callbacks is None:
            self._callbacks = {}
        self._callbacks.setdefault(fn, []).append(call)
        self._result_task().add_done_callback(call, context=context)

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        """Remove every registration of ``fn``; return how many were removed."""
        removed = 0
        task = self._result_task()
        for call in (self._callbacks or {}).pop(fn, []):
            removed += task.remove_done_callback(call)
        return removed

    def done(self) -> bool:
        """Whether the result is known here yet, without waiting (starts watching the
        workflow on first use; needs a running event loop)."""
        return self._result_task().done()

    def cancelled(self) -> bool:
        """Whether waiting here was stopped with ``cancel()`` (not whether the workflow
        was cancelled: that is ``get_status()``)."""
        return self._result_task().cancelled()

    def cancel(self, msg: Any = None) -> bool:
        """Stop waiting for the result here; the workflow itself is not cancelled."""
        return self._result_task().cancel(msg)

    def result(self) -> R:
        """The result once ``done()``, without waiting (raises the workflow's error, or
        ``asyncio.InvalidStateError`` before it is known). Use ``await handle`` to wait."""
        return self._result_task().result()

    def exception(self) -> BaseException | None:
        """The workflow's error once ``done()`` (None if it succeeded), without waiting."""
        return self._result_task().exception()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the handle watches the workflow on."""
        return self._result_task().get_loop()

    async def get_status(self) -> WorkflowStatus:
        """The workflow's stored status now; raises ``DBOSNonExistentWorkflowError`` if it
        does not exist."""
        row = await self._runtime.sysdb.get_workflow(self.workflow_id)
        if row is None:
            raise DBOSNonExistentWorkflowError(self.workflow_id)
        return status_of(self._runtime, row)

    get_status_async = get_status


#: DBOS Transact's name for the handle its async API returns; here every handle is
#: async, so it is ``WorkflowHandle`` itself.
WorkflowHandleAsync = WorkflowHandle
