"""What the runtime reports about workflows and their steps."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = ["ExecutorInfo", "StepInfo", "WorkflowStatus", "WorkflowStatusString"]


class WorkflowStatusString(enum.StrEnum):
    """The states of a workflow. A ``str`` enum: it compares equal to its value."""

    PENDING = "PENDING"
    ENQUEUED = "ENQUEUED"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"
    MAX_RECOVERY_ATTEMPTS_EXCEEDED = "MAX_RECOVERY_ATTEMPTS_EXCEEDED"

    @property
    def is_terminal(self) -> bool:
        """True once the workflow can no longer change by itself."""
        return self not in (WorkflowStatusString.PENDING, WorkflowStatusString.ENQUEUED)


@dataclass(frozen=True)
class WorkflowStatus:
    """One workflow's stored status, with its input and output deserialized.

    ``input`` is ``{"args": [...], "kwargs": {...}}``; ``error`` is the rebuilt exception.
    Times are epoch milliseconds.
    """

    workflow_id: str
    status: WorkflowStatusString
    name: str
    input: dict[str, Any] | None
    output: Any
    error: BaseException | None
    created_at: int
    updated_at: int
    queue_name: str | None
    executor_id: str | None
    app_version: str | None
    recovery_attempts: int
    parent_workflow_id: str | None
    forked_from: str | None
    workflow_timeout_ms: int | None
    workflow_deadline_epoch_ms: int | None
    priority: int
    deduplication_id: str | None
    #: The partition of a partitioned queue it was enqueued on.
    queue_partition_key: str | None = None


@dataclass(frozen=True)
class StepInfo:
    """One recorded step of a workflow (``function_id`` is its 1-based step ID)."""

    function_id: int
    function_name: str
    output: Any
    error: BaseException | None
    child_workflow_id: str | None
    started_at_epoch_ms: int | None
    completed_at_epoch_ms: int | None


@dataclass(frozen=True)
class ExecutorInfo:
    """A process that holds (``alive``) or held a lease on the database: one launch of a
    ``DBOS`` app. Times are epoch milliseconds (the database's clock on Postgres)."""

    executor_id: str
    hostname: str
    pid: int
    application_version: str
    started_at: int
    last_heartbeat_at: int
    #: Whether its lease is live: its workflows are its own until it expires.
    alive: bool
    #: How many PENDING workflows it owns.
    workflows: int
    #: The process's lease key (the owner recorded on the workflows it runs).
    process_id: str
    #: When its lease expires (or expired), unless renewed.
    lease_expires_at: int
