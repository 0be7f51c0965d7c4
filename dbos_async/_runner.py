"""Starting, running and recovering workflows.

A workflow starts once its status row is durable; its body then runs as a task of the
runtime. A workflow ID that exists already is never run again: its caller gets a handle
to the recorded (or still running) workflow. Recovery claims each PENDING workflow of
this executor with one conditional update, loads its recorded steps once, and runs the
body again; recorded steps return their outputs without running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from ._context import (
    WorkflowState,
    current_sql_connection,
    current_step,
    current_workflow,
    new_workflow_id,
    take_assigned_workflow_id,
    workflow_timeout_ms,
)
from ._errors import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSConflictingWorkflowError,
    DBOSException,
    DBOSNonExistentWorkflowError,
    DBOSUnexpectedStepError,
    DBOSWorkflowCancelledError,
    DBOSWorkflowFunctionNotFoundError,
)
from ._handle import WorkflowHandle, outcome_of
from ._registry import FunctionInfo, registry
from ._runtime import Runtime, get_runtime
from ._status import WorkflowStatusString
from .sysdb import RecoveryRequest, StepRow, WorkflowRow, notification_key

__all__ = [
    "arm_deadline",
    "call_workflow",
    "cancel_workflow",
    "launch_recorded",
    "recover_pending_workflows",
    "start_workflow",
    "stop_cancelled",
]

log = logging.getLogger("dbos_async")


def now_ms() -> int:
    return int(time.time() * 1000)


def _placement() -> tuple[str | None, tuple[WorkflowState, int] | None]:
    """At call time: the ID a SetWorkflowID block assigned, and, inside a workflow (not
    inside a step), the parent and the step ID this child takes."""
    assigned = take_assigned_workflow_id()
    parent = current_workflow.get()
    if parent is None or current_step.get() is not None:
        return assigned, None
    return assigned, (parent, parent.take_step_id())


def start_workflow(
    info: FunctionInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Coroutine[Any, Any, WorkflowHandle[Any]]:
    """Start a workflow; the step ID (for a child) and the assigned ID are taken now."""
    assigned, parent = _placement()
    return _start(info, args, kwargs, assigned, parent)


def call_workflow(
    info: FunctionInfo, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Coroutine[Any, Any, Any]:
    """Run a workflow to completion and return its result."""
    assigned, parent = _placement()

    async def run() -> Any:
        handle = await _start(info, args, kwargs, assigned, parent)
        return await handle.get_result()

    return run()


async def _start(
    info: FunctionInfo,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    assigned: str | None,
    parent: tuple[WorkflowState, int] | None,
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
        workflow_id = assigned or f"{state.workflow_id}-{step_id}"
    else:
        workflow_id = assigned or new_workflow_id()

    inputs = rt.codec.dump_inputs(info.name, info.signature, args, kwargs)
    timeout_ms = workflow_timeout_ms()
    deadline_ms = now_ms() + timeout_ms if timeout_ms is not None else None
    if parent is not None and parent[0].deadline_ms is not None:
        # A child never outlives its parent's deadline.
        inherited = parent[0].deadline_ms
        deadline_ms = inherited if deadline_ms is None else min(deadline_ms, inherited)
    if parent is None and workflow_id in rt.running:
        # Already running here: attach, as for any existing ID (its name is checked).
        existing_row = await rt.sysdb.get_workflow(workflow_id)
        if existing_row is not None and existing_row.name != info.name:
            raise DBOSConflictingWorkflowError(workflow_id, existing_row.name, info.name)
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
    )
    existing = await rt.journal.insert_workflow(row)
    if existing is not None and existing.name != info.name:
        raise DBOSConflictingWorkflowError(workflow_id, existing.name, info.name)
    if parent is not None:
        state, step_id = parent
        await rt.journal.record_step(
            StepRow(
                workflow_id=state.workflow_id,
                function_id=step_id,
                function_name=info.name,
                child_workflow_id=workflow_id,
                started_at_epoch_ms=now,
                completed_at_epoch_ms=now_ms(),
            )
        )
    if existing is None:
        state = WorkflowState(workflow_id, info.name, deadline_ms=deadline_ms)
        _launch(rt, info, state, args, kwargs)
    return WorkflowHandle(rt, workflow_id)


def _launch(
    rt: Runtime,
    info: FunctionInfo,
    state: WorkflowState,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    # Nobody may await a workflow started in the background; don't warn about its error.
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    rt.running[state.workflow_id] = future
    task = rt.spawn(_execute(rt, info, state, args, kwargs, future))
    rt.active[state.workflow_id] = (state, task)
    if state.deadline_ms is not None:
        arm_deadline(rt, state, state.deadline_ms)


def arm_deadline(rt: Runtime, state: WorkflowState, deadline_ms: int) -> None:
    """Cancel this run of the workflow at its deadline (at once if it has passed). A later
    run under the same ID (resumed) is not this timer's business."""
    loop = asyncio.get_running_loop()
    delay = max(0.0, deadline_ms / 1000 - time.time())

    def expire() -> None:
        active = rt.active.get(state.workflow_id)
        if active is not None and active[0] is state:
            rt.spawn(cancel_workflow(rt, state.workflow_id))

    loop.call_later(delay, expire)


async def cancel_workflow(rt: Runtime, workflow_id: str) -> None:
    """Mark a PENDING or ENQUEUED workflow CANCELLED and stop it if it runs here; other
    processes stop theirs when they hear of it (notification or poll)."""
    row = await rt.sysdb.cancel_workflow(workflow_id, now_ms())
    if row is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    if row.status == WorkflowStatusString.CANCELLED:
        stop_cancelled(rt, workflow_id)


def stop_cancelled(rt: Runtime, workflow_id: str) -> None:
    """Stop a workflow of this process that was cancelled: its awaiters get
    DBOSAwaitedWorkflowCancelledError at once, its task is cancelled (a step it reaches
    meanwhile raises DBOSWorkflowCancelledError)."""
    active = rt.active.get(workflow_id)
    if active is None:
        return
    state, task = active
    state.cancelled = True
    future = rt.running.get(workflow_id)
    if future is not None and not future.done():
        future.set_exception(DBOSAwaitedWorkflowCancelledError(workflow_id))
    task.cancel()


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
    workflow_id = state.workflow_id
    try:
        error: BaseException | None = None
        output: str | None = None
        try:
            result = await info.func(*args, **kwargs)
            output = rt.codec.dumps(result, f"output of workflow {info.name!r}")
        except (asyncio.CancelledError, DBOSWorkflowCancelledError):
            if state.cancelled:
                return  # cancelled by an operator or its deadline: CANCELLED is recorded
            raise
        except Exception as exc:
            error = exc
        if error is None:
            finished = await rt.journal.finish_workflow(
                workflow_id, WorkflowStatusString.SUCCESS.value, output, None, now_ms()
            )
        else:
            finished = await rt.journal.finish_workflow(
                workflow_id,
                WorkflowStatusString.ERROR.value,
                None,
                rt.codec.dump_error(error),
                now_ms(),
            )
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
            future.set_exception(error)
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
            future.set_exception(exc)
        if not isinstance(exc, Exception):
            raise
        log.error("workflow %s could not record its outcome: %r", workflow_id, exc)
    finally:
        if rt.running.get(workflow_id) is future:
            del rt.running[workflow_id]
        if rt.active.get(workflow_id, (None,))[0] is state:
            del rt.active[workflow_id]


_RECOVERY_CHUNK = 500


async def recover_pending_workflows(rt: Runtime) -> list[WorkflowHandle[Any]]:
    """Recover this executor's PENDING workflows of this application version: claim them
    and load their recorded steps a chunk at a time, then run each again."""
    requests: list[RecoveryRequest] = []
    for row in await rt.sysdb.pending_workflows(rt.executor_id, rt.app_version):
        if row.workflow_id in rt.running:
            continue
        info = registry.workflows.get(row.name)
        if info is None:
            error = DBOSWorkflowFunctionNotFoundError(row.workflow_id, row.name)
            log.error("cannot recover: %s", error)
            continue
        limit = info.options["max_recovery_attempts"]
        requests.append(RecoveryRequest(row.workflow_id, row.recovery_attempts, limit))
    handles: list[WorkflowHandle[Any]] = []
    for start in range(0, len(requests), _RECOVERY_CHUNK):
        chunk = requests[start : start + _RECOVERY_CHUNK]
        claims = await rt.sysdb.claim_for_recovery(chunk, now_ms())
        for claim in claims:
            if claim.exceeded:
                log.warning(
                    "workflow %s exceeded its %d recovery attempts and is now %s",
                    claim.row.workflow_id,
                    registry.workflows[claim.row.name].options["max_recovery_attempts"],
                    WorkflowStatusString.MAX_RECOVERY_ATTEMPTS_EXCEEDED.value,
                )
        live = [c.row for c in claims if not c.exceeded]
        steps = await rt.sysdb.load_steps_many([r.workflow_id for r in live]) if live else {}
        for row in live:
            try:
                launch_recorded(rt, row, steps.get(row.workflow_id, []))
            except DBOSException as exc:
                log.error("cannot recover workflow %s: %s", row.workflow_id, exc)
                continue
            handles.append(WorkflowHandle(rt, row.workflow_id))
    return handles


def launch_recorded(rt: Runtime, row: WorkflowRow, steps: list[StepRow]) -> None:
    """Run a stored workflow here again (recovery, resume, fork): recorded steps return
    their outputs, the rest run."""
    info = registry.workflows.get(row.name)
    if info is None:
        raise DBOSWorkflowFunctionNotFoundError(row.workflow_id, row.name)
    args, kwargs = rt.codec.load_inputs(row.inputs or "", info.signature, info.hints)
    state = WorkflowState(
        row.workflow_id,
        info.name,
        recorded={s.function_id: s for s in steps},
        replaying=True,
        deadline_ms=row.workflow_deadline_epoch_ms,
    )
    _launch(rt, info, state, args, kwargs)
