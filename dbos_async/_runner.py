"""Starting and running workflows.

A workflow starts once its status row is durable; its body then runs as a task of the
runtime, registered in ``rt.live`` until it ends. A workflow ID that exists already is
never run again: its caller gets a handle to the recorded (or still running) workflow.
A stored workflow (recovered, resumed, forked, claimed from a queue) runs through
``launch_recorded``: its recorded steps return their outputs without running.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ._checkpoint import settle_deferred, wait_deferred
from ._classes import split_receiver, stored_receiver
from ._clock import now_ms
from ._context import (
    WorkflowState,
    current_sql_connection,
    current_sql_session,
    current_step,
    current_workflow,
    enqueue_options,
    new_workflow_id,
    take_assigned_workflow_id,
    workflow_timeout_ms,
)
from ._errors import (
    DBOSConflictingWorkflowError,
    DBOSException,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowFunctionNotFoundError,
    DeferredRowFailed,
    ReplayFailed,
    WorkflowOwnershipLost,
)
from ._failpoints import CRASH_AFTER, step_durable
from ._handle import WorkflowHandle, outcome_of
from ._live import LiveRun, fail
from ._management import cancel_workflow
from ._registry import FunctionInfo, registry
from ._runtime import Runtime, get_runtime
from ._status import WorkflowStatusString
from ._timeouts import arm_deadline, arm_enqueued_deadline, quietly
from ._tracing import workflow_span
from ._txguard import refuse_in_transaction
from .sysdb import StepRow, WorkflowRow, notification_key

__all__ = [
    "EnqueueRequest",
    "LazyEnqueue",
    "call_workflow",
    "enqueue_workflow",
    "enqueued_row",
    "launch_recorded",
    "start_workflow",
]

log = logging.getLogger("dbos_async")


def _placement() -> tuple[str | None, tuple[WorkflowState, int] | None]:
    """At call time: the ID a SetWorkflowID block assigned, and, inside a workflow (not
    inside a step), the parent and the step ID this child takes."""
    assigned = take_assigned_workflow_id()
    parent = current_workflow.get()
    if parent is None or current_step.get() is not None:
        return assigned, None
    return assigned, (parent, parent.take_step_id())


def _refuse_enqueue_options(how: str) -> None:
    """Enqueue options only apply to an enqueue: refuse them around a plain start before
    anything is taken or written, rather than ignore them (``DBOSException``, naming the
    options set, as DBOS Transact does). A block that sets none of them is harmless."""
    options = enqueue_options.get()
    if options is None:
        return
    named = [
        name
        for name in ("deduplication_id", "priority", "queue_partition_key", "delay_seconds")
        if getattr(options, name, None) is not None
    ]
    if named:
        raise DBOSException(
            f"SetEnqueueOptions({', '.join(named)}) set on a workflow that is not being "
            f"enqueued: {how} runs the workflow without a queue, so the options would be "
            "ignored. They apply only to Queue.enqueue(): call queue.enqueue(workflow, ...) "
            "inside the SetEnqueueOptions block."
        )


def start_workflow(
    info: FunctionInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Coroutine[Any, Any, WorkflowHandle[Any]]:
    """Start a workflow; the step ID (for a child) and the assigned ID are taken now."""
    refuse_in_transaction("DBOS.start_workflow()")
    _refuse_enqueue_options("DBOS.start_workflow()")
    assigned, parent = _placement()
    return _start(info, args, kwargs, assigned, parent)


def call_workflow(
    info: FunctionInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Coroutine[Any, Any, Any]:
    """Run a workflow to completion and return its result."""
    refuse_in_transaction(f"calling the workflow {info.name!r}")
    _refuse_enqueue_options(f"calling workflow {info.name!r} directly")
    assigned, parent = _placement()

    async def run() -> Any:
        handle = await _start(info, args, kwargs, assigned, parent)
        return await handle.get_result()

    return run()


@dataclass(frozen=True)
class EnqueueRequest:
    """Where and how to enqueue a workflow instead of starting it (validated already)."""

    queue_name: str
    priority: int = 0
    deduplication_id: str | None = None
    partition_key: str | None = None
    delay_seconds: float | None = None
    #: The application version that may run it; None lets any version's workers run it.
    app_version: str | None = None
    #: Its timeout (ms from its claim), instead of an enclosing SetWorkflowTimeout's.
    timeout_ms: int | None = None


#: An enqueue whose queue is looked up only if the enqueue was not recorded already.
LazyEnqueue = Callable[[], Awaitable[EnqueueRequest]]


def enqueue_workflow(
    info: FunctionInfo,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    request: EnqueueRequest | LazyEnqueue,
    *,
    workflow_id: str | None = None,
) -> Coroutine[Any, Any, WorkflowHandle[Any]]:
    """Enqueue a workflow (ENQUEUED until a queue worker claims it); inside a workflow it
    is a child, as for ``start_workflow``. ``workflow_id`` overrides a SetWorkflowID
    block's; a ``LazyEnqueue`` is awaited once it is known the enqueue is not recorded."""
    refuse_in_transaction("Queue.enqueue()")
    assigned, parent = _placement()
    return _start(info, args, kwargs, workflow_id or assigned, parent, request)


def enqueued_row(
    workflow_id: str,
    name: str,
    inputs: str,
    request: EnqueueRequest,
    *,
    parent_workflow_id: str | None = None,
    timeout_ms: int | None = None,
    deadline_ms: int | None = None,
    class_name: str | None = None,
    config_name: str | None = None,
) -> WorkflowRow:
    """The status row of an enqueued workflow. Its timeout starts when it is claimed."""
    now = now_ms()
    delay = request.delay_seconds
    return WorkflowRow(
        workflow_id=workflow_id,
        status=WorkflowStatusString.ENQUEUED.value,
        name=name,
        inputs=inputs,
        output=None,
        error=None,
        executor_id=None,
        application_version=request.app_version,
        created_at=now,
        updated_at=now,
        queue_name=request.queue_name,
        parent_workflow_id=parent_workflow_id,
        workflow_timeout_ms=timeout_ms,
        workflow_deadline_epoch_ms=deadline_ms,
        priority=request.priority,
        deduplication_id=request.deduplication_id,
        queue_partition_key=request.partition_key,
        delay_until_epoch_ms=now + int(delay * 1000) if delay else None,
        class_name=class_name,
        config_name=config_name,
    )


def _check_same(workflow_id: str, existing: WorkflowRow | None, row: WorkflowRow) -> None:
    """An ID taken already must name the same function, on the same class and instance."""
    if existing is None:
        return
    if (existing.name, existing.class_name, existing.config_name) != (
        row.name,
        row.class_name,
        row.config_name,
    ):
        raise DBOSConflictingWorkflowError(workflow_id, _shown(existing), _shown(row))


def _shown(row: WorkflowRow) -> str:
    """A workflow's function as an error shows it: with its class and instance, if any."""
    if row.config_name is not None:
        return f"{row.name} (instance {row.config_name!r} of class {row.class_name!r})"
    if row.class_name is not None:
        return f"{row.name} (class {row.class_name!r})"
    return row.name


async def _start(
    info: FunctionInfo,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    assigned: str | None,
    parent: tuple[WorkflowState, int] | None,
    lazy: EnqueueRequest | LazyEnqueue | None = None,
) -> WorkflowHandle[Any]:
    rt = get_runtime()
    if parent is not None:
        state, step_id = parent
        recorded = state.recorded.get(step_id)
        if recorded is not None:
            if recorded.function_name != info.name or recorded.child_workflow_id is None:
                raise DBOSUnexpectedStepError(
                    state.workflow_id, step_id, info.name, recorded.function_name
                )
            return WorkflowHandle(rt, recorded.child_workflow_id)
        # A child's row is an effect: the rows its parent deferred go first (rule 1).
        await settle_deferred(state)
        enqueue = lazy if lazy is None or isinstance(lazy, EnqueueRequest) else await lazy()
        workflow_id = assigned or f"{state.workflow_id}-{step_id}"
        # Starting a child is one of the parent's steps: a cancel of the parent lets its
        # row, its recording and its launch all happen, or none.
        with state.step_body():
            return await _create(rt, info, args, kwargs, workflow_id, parent, enqueue)
    enqueue = lazy if lazy is None or isinstance(lazy, EnqueueRequest) else await lazy()
    return await _create(rt, info, args, kwargs, assigned or new_workflow_id(), None, enqueue)


async def _create(
    rt: Runtime,
    info: FunctionInfo,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    workflow_id: str,
    parent: tuple[WorkflowState, int] | None,
    enqueue: EnqueueRequest | None,
) -> WorkflowHandle[Any]:
    """Write a new workflow's row (ENQUEUED, or PENDING and launched here) unless its ID
    exists, then, for a child, record its start as the parent's step."""
    receiver = split_receiver(info, args)
    inputs = rt.codec.dump_inputs(info.name, info.stored_signature, receiver.args, kwargs)
    timeout_ms = workflow_timeout_ms()
    if enqueue is not None and enqueue.timeout_ms is not None:
        timeout_ms = enqueue.timeout_ms
    # (An enqueued workflow's own timeout starts when a worker claims it.)
    deadline_ms = now_ms() + timeout_ms if timeout_ms is not None and enqueue is None else None
    if parent is not None and parent[0].deadline_ms is not None:
        # A child never outlives its parent's deadline.
        inherited = parent[0].deadline_ms
        deadline_ms = inherited if deadline_ms is None else min(deadline_ms, inherited)
    if enqueue is not None:
        row = enqueued_row(
            workflow_id,
            info.name,
            inputs,
            enqueue,
            parent_workflow_id=parent[0].workflow_id if parent else None,
            timeout_ms=timeout_ms,
            deadline_ms=deadline_ms,
            class_name=receiver.class_name,
            config_name=receiver.config_name,
        )
        existing = await rt.sysdb.enqueue_workflow(row)
        _check_same(workflow_id, existing, row)
        if existing is None:
            # Wake this process's worker of the queue (others hear the NOTIFY).
            rt.notifier.notify(notification_key("queue", enqueue.queue_name, ""))
            if deadline_ms is not None:
                arm_enqueued_deadline(rt, workflow_id, deadline_ms)
        if parent is not None:
            workflow_id = await _record_child(rt, parent, info.name, workflow_id, row.created_at)
        return WorkflowHandle(rt, workflow_id)
    now = now_ms()
    row = WorkflowRow(
        workflow_id=workflow_id,
        status=WorkflowStatusString.PENDING.value,
        name=info.name,
        inputs=inputs,
        output=None,
        error=None,
        executor_id=rt.executor_id,
        application_version=rt.app_version,
        created_at=now,
        updated_at=now,
        parent_workflow_id=parent[0].workflow_id if parent else None,
        workflow_timeout_ms=timeout_ms,
        workflow_deadline_epoch_ms=deadline_ms,
        owner=rt.sysdb.owner,
        class_name=receiver.class_name,
        config_name=receiver.config_name,
    )
    if parent is None and workflow_id in rt.live:
        # Already running here: attach, as for any existing ID (its function is checked).
        _check_same(workflow_id, await rt.sysdb.get_workflow(workflow_id), row)
        return WorkflowHandle(rt, workflow_id)
    existing = await rt.journal.insert_workflow(row)
    _check_same(workflow_id, existing, row)
    recorded_id = workflow_id
    if parent is not None:
        recorded_id = await _record_child(rt, parent, info.name, workflow_id, now)
    if existing is None and recorded_id != workflow_id:
        # Another run of the parent started another child at this step first: that one
        # stands, and the row written here never runs.
        await cancel_workflow(rt, workflow_id)
    elif existing is None:
        state = WorkflowState(workflow_id, info.name, deadline_ms=deadline_ms)
        _launch(rt, info, state, args, kwargs)
    return WorkflowHandle(rt, recorded_id)


async def _record_child(
    rt: Runtime, parent: tuple[WorkflowState, int], name: str, child_id: str, started: int
) -> str:
    """Record a child's start as the parent's step, so a re-run finds the same child.
    Returns the child that stands: ``child_id``, or the one another run of the parent
    recorded at this step first."""
    state, step_id = parent
    stored = await rt.journal.record_step(
        StepRow(
            workflow_id=state.workflow_id,
            function_id=step_id,
            function_name=name,
            child_workflow_id=child_id,
            started_at_epoch_ms=started,
            completed_at_epoch_ms=now_ms(),
        )
    )
    if stored.function_name != name or stored.child_workflow_id is None:
        raise DBOSUnexpectedStepError(state.workflow_id, step_id, name, stored.function_name)
    state.recorded[step_id] = stored
    if CRASH_AFTER:  # (a child's start is a step: the crash hook counts it like the others)
        step_durable(state.workflow_id, step_id)
    return stored.child_workflow_id


def _launch(
    rt: Runtime,
    info: FunctionInfo,
    state: WorkflowState,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    if not rt.launched:
        return  # closing: it stays PENDING, for a live process to take over
    if state.workflow_id in rt.live:
        return  # one run per workflow in a process: the one here goes on
    # Nobody may await a workflow started in the background: its error is set with
    # ``fail`` (marked retrieved), so asyncio does not warn about it.
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def ended() -> None:  # (not a finally: a task cancelled before it starts runs none)
        rt.live.remove(run)

    task = rt.spawn(_execute(rt, info, state, args, kwargs, future), ended)
    run = LiveRun(state, task, future)
    rt.live.add(run)
    if state.deadline_ms is not None:
        arm_deadline(rt, state, state.deadline_ms)


async def _execute(
    rt: Runtime,
    info: FunctionInfo,
    state: WorkflowState,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    future: asyncio.Future[Any],
) -> None:
    current_workflow.set(state)
    current_step.set(None)
    current_sql_connection.set(None)
    current_sql_session.set(None)
    enqueue_options.set(None)  # (a block around whoever launched it is not the body's)
    workflow_id = state.workflow_id
    try:
        error: BaseException | None = None
        output: str | None = None
        try:
            with workflow_span(workflow_id, info.name):
                result = await info.func(*args, **kwargs)
            output = rt.codec.dumps(result, f"output of workflow {info.name!r}")
        except (asyncio.CancelledError, DBOSWorkflowCancelledError):
            if state.cancelled:
                # Cancelled by an operator or its deadline: CANCELLED is recorded. A step
                # still running under asyncio.gather records before this run ends.
                await state.bodies_ended()
                await _rows_before_end(rt, state)
                return
            raise
        except Exception as exc:
            error = exc
        except WorkflowOwnershipLost:
            _abandon(state, future)
            return
        except ReplayFailed as exc:
            log.error(
                "%s; the workflow stays PENDING, for a process that can read it (the right "
                "encryption key or serializer) to recover",
                exc,
            )
            if not future.done():
                fail(future, exc.error)
            return
        if not rt.launched:
            # The runtime began to close while the body ran: what it met may be that
            # (no runtime any more), so nothing is recorded. It stays PENDING and is
            # recovered; its recorded steps make the rerun cheap.
            future.cancel()
            return
        try:
            try:
                finished = await _finish(rt, workflow_id, output, error)
            except DeferredRowFailed as exc:
                # A step's row failed after the workflow went on from it: its error is
                # the outcome, as if the step had waited for its row and raised it.
                error = exc.error
                finished = await _finish(rt, workflow_id, None, error)
        except WorkflowOwnershipLost:
            _abandon(state, future)
            return
        # The rows the workflow deferred were queued before its outcome, so they have
        # committed (or failed) by now, in its batch or before.
        # (A deferred row that failed while the outcome committed: fencing makes both
        # fail together, so this is only logged.)
        try:
            await settle_deferred(state)
        except (Exception, WorkflowOwnershipLost) as exc:
            log.error("workflow %s: a step row was not recorded: %r", workflow_id, exc)
        if not finished:
            # Someone else decided this workflow's outcome first (cancelled, dead-lettered).
            row = await rt.sysdb.get_workflow(workflow_id)
            if row is not None and WorkflowStatusString(row.status).is_terminal:
                try:
                    result, error = outcome_of(rt, row), None
                except Exception as exc:
                    error = exc
        rt.notifier.notify(notification_key("end", workflow_id, ""))
        if error is not None:
            fail(future, error)
        else:
            future.set_result(result)
    except asyncio.CancelledError:
        if state.cancelled:
            return
        # The runtime is shutting down: the workflow stays PENDING, to be recovered.
        future.cancel()
        raise
    except BaseException as exc:
        if not future.done():
            fail(future, exc)
        if not isinstance(exc, Exception):
            raise
        log.error("workflow %s could not record its outcome: %r", workflow_id, exc)
    finally:
        # (A run that stopped without waiting for its deferred rows, fenced or shut down,
        # reads their errors, so none is reported as never retrieved.)
        for _row, deferred in state.deferred:
            if deferred.done() and not deferred.cancelled():
                deferred.exception()


async def _rows_before_end(rt: Runtime, state: WorkflowState) -> None:
    """A cancelled run ends only once the rows it deferred have committed, so that a
    resume (which waits for this run to end) finds them and never runs those steps
    again. A repeated stop (the resume stops the run too) does not cut this short; the
    runtime's shutdown does (the journal commits what is pending as it closes)."""
    while True:
        try:
            await wait_deferred(state)
            return
        except asyncio.CancelledError:
            if not rt.launched:
                raise


async def _finish(
    rt: Runtime, workflow_id: str, output: str | None, error: BaseException | None
) -> bool:
    """Record the outcome (SUCCESS with ``output``, or ERROR with ``error``)."""
    if error is None:
        return await rt.journal.finish_workflow(
            workflow_id, WorkflowStatusString.SUCCESS.value, output, None, now_ms()
        )
    return await rt.journal.finish_workflow(
        workflow_id, WorkflowStatusString.ERROR.value, None, rt.codec.dump_error(error), now_ms()
    )


def _abandon(state: WorkflowState, future: asyncio.Future[Any]) -> None:
    """Another process owns this workflow now: this run stops and records nothing more.
    Awaiters here follow the workflow in the status table to the new owner's outcome.
    (A run stopped by a cancel whose workflow is then not its own is, most often, one
    that was deleted meanwhile: no warning then.)"""
    if state.cancelled:
        log.info(
            "workflow %s was stopped (cancelled or deleted) and is no longer this "
            "process's: this run records nothing more",
            state.workflow_id,
        )
    else:
        log.warning(
            "workflow %s was taken over by another process (this one was paused or cut off "
            "from the database past its lease, or the workflow was handed elsewhere); this "
            "run stops here and records nothing more",
            state.workflow_id,
        )
    if not future.done():
        fail(future, WorkflowOwnershipLost(state.workflow_id))


def launch_recorded(
    rt: Runtime, row: WorkflowRow, steps: list[StepRow], *, fresh: bool = False
) -> None:
    """Run a stored workflow here (recovery, resume, fork, or ``fresh`` from a queue, never
    run before): recorded steps return their outputs, the rest run. One whose deadline
    has passed is cancelled instead."""
    info = registry.workflows.get(row.name)
    if info is None:
        raise DBOSWorkflowFunctionNotFoundError(row.workflow_id, row.name)
    receiver, missing = stored_receiver(info, row.class_name, row.config_name)
    if missing is not None:
        raise DBOSWorkflowFunctionNotFoundError(row.workflow_id, row.name, missing)
    deadline = row.workflow_deadline_epoch_ms
    if deadline is not None and deadline <= now_ms():
        # Past its deadline before this run began (a queued child whose parent's deadline
        # passed while it waited, a recovery after the deadline): cancel, run nothing.
        rt.spawn(quietly(cancel_workflow(rt, row.workflow_id), row.workflow_id))
        return
    args, kwargs = rt.codec.load_inputs(row.inputs or "", info.stored_signature, info.hints)
    state = WorkflowState(
        row.workflow_id,
        info.name,
        recorded={s.function_id: s for s in steps},
        replaying=not fresh,
        deadline_ms=row.workflow_deadline_epoch_ms,
        queue_name=row.queue_name,
        partition_key=row.queue_partition_key,
    )
    _launch(rt, info, state, (*receiver, *args), kwargs)
