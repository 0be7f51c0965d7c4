"""How a backend reports a keyed write that found a row already stored.

Shared by both backends so they answer alike: a stored row equal to the write's own is
the write's own (after a retry whose first commit was in doubt), anything else is the
other writer's row, which wins.
"""

from __future__ import annotations

from .._errors import DBOSQueueDeduplicatedError
from ._rows import Fenced, FinishWorkflow, StepRow, WorkflowRow

__all__ = [
    "deduplicated",
    "finish_result",
    "insert_result",
    "is_our_insert",
    "same_step",
    "step_result",
]


def is_our_insert(ours: WorkflowRow, stored: WorkflowRow) -> bool:
    """After a retry, tell our own committed insert from another writer's row."""
    return (
        stored.name == ours.name
        and stored.created_at == ours.created_at
        and stored.executor_id == ours.executor_id
        and stored.inputs == ours.inputs
    )


def same_step(ours: StepRow, stored: StepRow) -> bool:
    return (
        stored.function_name == ours.function_name
        and stored.output == ours.output
        and stored.error == ours.error
        and stored.child_workflow_id == ours.child_workflow_id
    )


def insert_result(ours: WorkflowRow, stored: WorkflowRow | None, retry: bool) -> WorkflowRow | None:
    if stored is None or (retry and is_our_insert(ours, stored)):
        return None
    return stored


def step_result(ours: StepRow, stored: StepRow | None) -> StepRow:
    return ours if stored is None or same_step(ours, stored) else stored


def finish_result(
    write: FinishWorkflow, stored: WorkflowRow | None, retry: bool, owner: str | None
) -> bool | Fenced:
    """A finish that changed nothing: ``Fenced`` if the workflow has another owner now,
    True if the stored outcome is this write's own (after a retry), else False (someone
    else decided the outcome first: a cancel, a dead-letter)."""
    if stored is not None and stored.owner != owner:
        return Fenced(write.workflow_id)
    return (
        retry
        and stored is not None
        and (stored.status, stored.output, stored.error)
        == (write.status, write.output, write.error)
    )


def deduplicated(row: WorkflowRow) -> DBOSQueueDeduplicatedError:
    """The error for a workflow refused because another active workflow of its queue holds
    its deduplication ID."""
    return DBOSQueueDeduplicatedError(
        row.workflow_id, row.queue_name or "", row.deduplication_id or ""
    )
