"""What the runtime reports about workflows and their steps."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

__all__ = ["ExecutorInfo", "StepInfo", "StepStatus", "WorkflowStatus", "WorkflowStatusString"]


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
    """The workflow's ID."""
    status: WorkflowStatusString
    """Its state (a ``WorkflowStatusString``)."""
    name: str
    """The registered name of its workflow function."""
    input: dict[str, Any] | None
    """Its arguments, ``{"args": [...], "kwargs": {...}}`` (None when not loaded)."""
    output: Any
    """Its return value once SUCCESS (None before, or when not loaded)."""
    error: BaseException | None
    """The exception it ended with once ERROR, rebuilt as its own type where possible."""
    created_at: int
    """When it was created (epoch ms)."""
    updated_at: int
    """When its status row last changed (epoch ms)."""
    queue_name: str | None
    """The queue it was enqueued on, or None."""
    executor_id: str | None
    """The ``executor_id`` it runs (or last ran, or will run) under."""
    app_version: str | None
    """The application version it runs under."""
    recovery_attempts: int
    """How many times it has been recovered since it was created or resumed."""
    parent_workflow_id: str | None
    """The workflow that started it as a child, or None."""
    forked_from: str | None
    """The workflow it was forked from, or None."""
    workflow_timeout_ms: int | None
    """Its timeout (``SetWorkflowTimeout``), in milliseconds, or None."""
    workflow_deadline_epoch_ms: int | None
    """When it is cancelled if still running (epoch ms), or None."""
    priority: int
    """Its priority on its queue (lower runs first; 0 by default)."""
    deduplication_id: str | None
    """Its queue deduplication ID, or None."""
    queue_partition_key: str | None = None
    """The partition of a partitioned queue it was enqueued on."""
    class_name: str | None = None
    """For a workflow that is a method of a ``@DBOS.dbos_class()`` class (instance or
    class method), the class's registered name; None otherwise."""
    config_name: str | None = None
    """For an instance method workflow, the ``config_name`` of the
    ``DBOSConfiguredInstance`` it runs on; None otherwise."""


@dataclass(frozen=True)
class StepInfo:
    """One recorded step of a workflow (``function_id`` is its 1-based step ID)."""

    function_id: int
    """The step's 1-based step ID within its workflow."""
    function_name: str
    """The step's name (a registered name, or a built-in such as ``DBOS.sleep``)."""
    output: Any
    """The recorded return value (None for a step that raised)."""
    error: BaseException | None
    """The recorded exception, rebuilt, or None."""
    child_workflow_id: str | None
    """For a step that started a child workflow, that workflow's ID."""
    started_at_epoch_ms: int | None
    """When the step started (epoch ms), if recorded."""
    completed_at_epoch_ms: int | None
    """When its outcome was recorded (epoch ms), if recorded."""

    def __getitem__(self, key: str) -> Any:
        """A field by name, ``step["function_name"]``, as code written for DBOS Transact
        (whose ``StepInfo`` is a ``TypedDict``) reads it; ``KeyError`` for another name."""
        if key not in _STEP_INFO_FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in _STEP_INFO_FIELDS

    def get(self, key: str, default: Any = None) -> Any:
        """``step.get("output")``: a field by name, or ``default`` for another name."""
        return getattr(self, key) if key in _STEP_INFO_FIELDS else default

    def keys(self) -> list[str]:
        """The field names, in order (``dict(step.items())`` style code works too)."""
        return list(_STEP_INFO_FIELDS)

    def items(self) -> list[tuple[str, Any]]:
        """(name, value) for every field, in order."""
        return [(name, getattr(self, name)) for name in _STEP_INFO_FIELDS]


_STEP_INFO_FIELDS = tuple(f.name for f in dataclasses.fields(StepInfo))


@dataclass(frozen=True)
class StepStatus:
    """The step running now, as ``DBOS.step_status`` gives it inside a step's body."""

    step_id: int
    """The step's 1-based step ID within its workflow."""
    current_attempt: int | None
    """For a step with retries (``retries_allowed=True``), the attempt running now,
    counted from 0; None for a step without retries."""
    max_attempts: int | None
    """For a step with retries, how many attempts it makes at most before it fails;
    None for a step without retries."""


@dataclass(frozen=True)
class ExecutorInfo:
    """A process that holds (``alive``) or held a lease on the database: one launch of a
    ``DBOS`` app. Times are epoch milliseconds (the database's clock on Postgres)."""

    executor_id: str
    """The process's ``executor_id`` (config, or env ``DBOS__VMID``)."""
    hostname: str
    """The machine it runs on."""
    pid: int
    """Its operating-system process ID."""
    application_version: str
    """Its application version."""
    started_at: int
    """When it launched (epoch ms)."""
    last_heartbeat_at: int
    """When it last renewed its lease (epoch ms)."""
    alive: bool
    """Whether its lease is live: its workflows are its own until it expires."""
    workflows: int
    """How many PENDING workflows it owns."""
    process_id: str
    """The process's lease key (the owner recorded on the workflows it runs)."""
    lease_expires_at: int
    """When its lease expires (or expired), unless renewed (epoch ms)."""
