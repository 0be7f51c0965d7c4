"""The management calls of ``DBOS`` (status, lists, cancel, resume, fork), which from a
workflow's own code are steps, with DBOS Transact's step names: ``DBOS.getStatus``,
``DBOS.listWorkflows``, ``DBOS.listQueuedWorkflows``, ``DBOS.listWorkflowSteps``,
``DBOS.cancelWorkflow``, ``DBOS.resumeWorkflow`` and ``DBOS.forkWorkflow``. A re-run of
the workflow gets the recorded answer back (a list as it was then, whatever changed
since) and never cancels, resumes or forks again. Outside workflows, and inside a step,
each is the plain call.

What is recorded must come back as what a live call returns, whatever the serializer.
A ``WorkflowStatus`` holds values of any type (the workflow's arguments, its output of
its declared return type, a rebuilt exception), which JSON alone cannot always give back
as the same types; so a status is recorded as the stored fields it is made of
(``status_record``: the status row's columns, its input, output and error as the stored
text they are in the status table), and a re-run decodes them exactly as the live call
decoded the row (``status_of``). A ``StepInfo`` likewise (``step_record``: the step
row). A resume or fork records the workflow's ID, and a re-run returns a handle to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Coroutine
from typing import Any

from . import _management
from ._context import SetWorkflowID, take_assigned_workflow_id
from ._handle import WorkflowHandle, status_of, step_infos
from ._runner import launch_recorded
from ._runtime import Runtime, get_runtime
from ._status import StepInfo, WorkflowStatus, WorkflowStatusString
from ._steps import builtin_step, builtin_step_naming
from .sysdb import StepRow, WorkflowQuery, WorkflowRow, notification_key

__all__ = [
    "cancel_workflow",
    "fork_workflow",
    "get_workflow_status",
    "list_workflow_steps",
    "list_workflows",
    "resume_here",
    "resume_workflow",
    "status_from_record",
    "status_record",
    "step_record",
    "steps_from_records",
]

#: The status row's columns a ``WorkflowStatus`` is made of (what ``status_of`` reads).
_STATUS_COLUMNS = (
    "workflow_id",
    "status",
    "name",
    "inputs",
    "output",
    "error",
    "executor_id",
    "application_version",
    "created_at",
    "updated_at",
    "recovery_attempts",
    "queue_name",
    "parent_workflow_id",
    "forked_from",
    "workflow_timeout_ms",
    "workflow_deadline_epoch_ms",
    "priority",
    "deduplication_id",
    "queue_partition_key",
    "class_name",
    "config_name",
)
_STEP_COLUMNS = tuple(f.name for f in dataclasses.fields(StepRow))


def status_record(row: WorkflowRow) -> dict[str, Any]:
    """A status as recorded: its row's columns (strings, integers, None)."""
    return {column: getattr(row, column) for column in _STATUS_COLUMNS}


def status_from_record(rt: Runtime, record: dict[str, Any]) -> WorkflowStatus:
    """The ``WorkflowStatus`` a recorded status stands for, decoded as a live call does."""
    return status_of(rt, WorkflowRow(**{c: record[c] for c in _STATUS_COLUMNS if c in record}))


def step_record(row: StepRow) -> dict[str, Any]:
    """A recorded step as recorded in turn: its row's columns."""
    return {column: getattr(row, column) for column in _STEP_COLUMNS}


def steps_from_records(rt: Runtime, records: list[dict[str, Any]]) -> list[StepInfo]:
    """The ``StepInfo`` list recorded step rows stand for, decoded as a live call does."""
    rows = [StepRow(**{c: r[c] for c in _STEP_COLUMNS if c in r}) for r in records]
    return step_infos(rt, rows)


def get_workflow_status(workflow_id: str) -> Coroutine[Any, Any, WorkflowStatus | None]:
    """``DBOS.get_workflow_status``; in a workflow, the step ``DBOS.getStatus``."""
    rt = get_runtime()

    async def read() -> dict[str, Any] | None:
        row = await rt.sysdb.get_workflow(workflow_id)
        return status_record(row) if row is not None else None

    async def decoded(step: Coroutine[Any, Any, dict[str, Any] | None]) -> WorkflowStatus | None:
        record = await step
        return status_from_record(rt, record) if record is not None else None

    return decoded(builtin_step("DBOS.getStatus", read))


def list_workflows(
    step_name: str, query: WorkflowQuery, *, load_input: bool, load_output: bool
) -> Coroutine[Any, Any, list[WorkflowStatus]]:
    """The workflows ``query`` matches; in a workflow, the step ``step_name``
    (``DBOS.listWorkflows`` or ``DBOS.listQueuedWorkflows``)."""
    rt = get_runtime()

    async def read() -> list[dict[str, Any]]:
        rows = await _management.list_workflow_rows(
            rt, query, load_input=load_input, load_output=load_output
        )
        return [status_record(row) for row in rows]

    async def decoded(step: Coroutine[Any, Any, list[dict[str, Any]]]) -> list[WorkflowStatus]:
        return [status_from_record(rt, record) for record in await step]

    return decoded(builtin_step(step_name, read))


def list_workflow_steps(workflow_id: str) -> Coroutine[Any, Any, list[StepInfo]]:
    """``DBOS.list_workflow_steps``; in a workflow, the step ``DBOS.listWorkflowSteps``."""
    rt = get_runtime()

    async def read() -> list[dict[str, Any]]:
        return [step_record(row) for row in await rt.sysdb.load_steps(workflow_id)]

    async def decoded(step: Coroutine[Any, Any, list[dict[str, Any]]]) -> list[StepInfo]:
        return steps_from_records(rt, await step)

    return decoded(builtin_step("DBOS.listWorkflowSteps", read))


def cancel_workflow(workflow_id: str) -> Coroutine[Any, Any, None]:
    """``DBOS.cancel_workflow``; in a workflow, the step ``DBOS.cancelWorkflow``."""
    rt = get_runtime()

    async def cancel() -> None:
        await _management.cancel_workflow(rt, workflow_id)

    return builtin_step("DBOS.cancelWorkflow", cancel, type(None))


async def resume_here(rt: Runtime, workflow_id: str) -> None:
    """Resume a workflow (the plain call, never a step): a workflow of a queue goes back
    on it, any other runs again here."""
    row = await _management.resume_workflow(rt, workflow_id, executor_id=rt.executor_id)
    if row is not None and row.status == WorkflowStatusString.ENQUEUED:
        # Back on its queue: this process's worker is woken here, other processes' by
        # the resume's notification.
        rt.notifier.notify(notification_key("queue", row.queue_name or "", ""))
    elif row is not None:
        launch_recorded(rt, row, await rt.sysdb.load_steps(workflow_id))


async def _handle(rt: Runtime, step: Coroutine[Any, Any, str]) -> WorkflowHandle[Any]:
    return WorkflowHandle(rt, await step)


def resume_workflow(workflow_id: str) -> Coroutine[Any, Any, WorkflowHandle[Any]]:
    """``DBOS.resume_workflow``; in a workflow, the step ``DBOS.resumeWorkflow``, which
    records the workflow's ID."""
    rt = get_runtime()

    async def resume() -> str:
        await resume_here(rt, workflow_id)
        return workflow_id

    return _handle(rt, builtin_step("DBOS.resumeWorkflow", resume, str))


def fork_workflow(
    workflow_id: str, start_step: int, application_version: str | None
) -> Coroutine[Any, Any, WorkflowHandle[Any]]:
    """``DBOS.fork_workflow``; in a workflow, the step ``DBOS.forkWorkflow``, which
    records the new workflow's ID."""
    rt = get_runtime()

    async def fork(child_id: str | None) -> str:
        new_id = take_assigned_workflow_id() or child_id
        if child_id is not None and new_id is not None:
            # A re-run of this step after a crash that came between the fork and its
            # record: the fork made then is this step's outcome, not a second fork.
            existing = await rt.sysdb.get_workflow(new_id)
            if existing is not None and existing.forked_from == workflow_id:
                return new_id
        with SetWorkflowID(new_id) if new_id is not None else contextlib.nullcontext():
            row, steps = await _management.fork_workflow(
                rt,
                workflow_id,
                start_step,
                application_version=application_version,
                executor_id=rt.executor_id,
            )
        if row.owner is not None:
            launch_recorded(rt, row, steps)
        else:  # another version's: for a live process of that version to take over
            await rt.sysdb.announce(notification_key("run", row.workflow_id, ""))
        return row.workflow_id

    return _handle(rt, builtin_step_naming("DBOS.forkWorkflow", fork, str))
