"""The values that cross the storage seam: rows, filters, claims and checkpoint writes.

Plain data, no SQL: the backends map their rows to these in ``_columns``. Values (inputs,
outputs, errors) are already serialized, as text. The rows and writes made for every
workflow are slots dataclasses: no attribute dict each, so half the objects the garbage
collector tracks for them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ExecutorRow",
    "Fenced",
    "FinishWorkflow",
    "InsertWorkflow",
    "LeaseHolder",
    "MessageRow",
    "QueueActivity",
    "QueueClaim",
    "QueueInfo",
    "RecordStep",
    "RecoveryClaim",
    "RecoveryRequest",
    "ScheduleRow",
    "StepRow",
    "StreamEntry",
    "WorkflowQuery",
    "WorkflowRow",
    "Write",
    "WriteResult",
]


@dataclass(slots=True)
class WorkflowRow:
    """A row of the workflow status table; ``inputs``, ``output``, ``error`` are serialized.
    Its fields are in the order of ``_columns.WORKFLOW_COLUMNS``."""

    workflow_id: str
    status: str
    name: str
    inputs: str | None
    output: str | None
    error: str | None
    executor_id: str | None
    application_version: str | None
    created_at: int
    updated_at: int
    recovery_attempts: int = 0
    queue_name: str | None = None
    parent_workflow_id: str | None = None
    forked_from: str | None = None
    workflow_timeout_ms: int | None = None
    workflow_deadline_epoch_ms: int | None = None
    priority: int = 0
    deduplication_id: str | None = None
    queue_partition_key: str | None = None
    #: When a queue worker claimed it (the limiter counts starts per period).
    started_at_epoch_ms: int | None = None
    #: An enqueued workflow is not claimed before this time.
    delay_until_epoch_ms: int | None = None
    #: The process (``process_id`` of its lease) that runs it; None: none yet, or its
    #: last owner handed it back. Every write the workflow makes is fenced on it.
    owner: str | None = None
    #: A method workflow's class (``@DBOS.dbos_class()`` name) and, for an instance
    #: method, the instance's ``config_name``: what a rerun finds its receiver by.
    class_name: str | None = None
    config_name: str | None = None


@dataclass(slots=True)
class StepRow:
    """A recorded step: its output or its error (serialized), or the child it started.
    Its fields are in the order of ``_columns.STEP_COLUMNS``."""

    workflow_id: str
    function_id: int
    function_name: str
    output: str | None = None
    error: str | None = None
    child_workflow_id: str | None = None
    started_at_epoch_ms: int | None = None
    completed_at_epoch_ms: int | None = None


@dataclass
class MessageRow:
    """A message sent to a workflow. ``message_uuid`` makes the send idempotent."""

    message_uuid: str
    destination_id: str
    topic: str
    message: str
    created_at: int


@dataclass
class StreamEntry:
    """One value of a stream (``closed`` marks the end; its value is None)."""

    offset: int
    value: str | None
    closed: bool


@dataclass
class WorkflowQuery:
    """Filters of ``list_workflows``; None means no filter. Times are epoch ms."""

    workflow_ids: list[str] | None = None
    statuses: list[str] | None = None
    name: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    queue_name: str | None = None
    parent_workflow_id: str | None = None
    queued_only: bool = False
    limit: int | None = None
    offset: int | None = None
    sort_desc: bool = False
    #: Only workflows whose ID starts with this.
    workflow_id_prefix: str | None = None


@dataclass
class QueueActivity:
    """What a queue holds now and how many workflows it started lately (the dashboard's
    queue page): ``started[i]`` counts the starts of the i-th period asked for."""

    queue_name: str
    enqueued: int
    running: int
    started: list[int]


@dataclass
class RecoveryRequest:
    """A workflow to claim for recovery, as ``pending_workflows`` saw it."""

    workflow_id: str
    seen_attempts: int
    max_attempts: int
    #: The owner it had then (a process whose lease has expired, or None).
    seen_owner: str | None = None


@dataclass
class RecoveryClaim:
    """The outcome of claiming a PENDING workflow for recovery."""

    row: WorkflowRow
    #: True if the claim pushed the workflow past its limit: it is now dead-lettered.
    exceeded: bool


@dataclass
class QueueInfo:
    """A queue's row: as a process declared it in code (limits as declared), or, if
    ``database_backed``, as declared at run time."""

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    limiter_limit: int | None = None
    limiter_period_seconds: float | None = None
    priority_enabled: bool = False
    partition_queue: bool = False
    #: How often the queue's workers poll besides being woken (seconds).
    polling_interval_seconds: float = 1.0
    #: Declared at run time (``DBOS.register_queue``): the row is the queue's
    #: configuration, which every process's worker of it follows and which may change.
    database_backed: bool = False
    #: When the row was last written (epoch ms): changes compare it, so two writers
    #: never lose each other's change.
    updated_at: int = 0
    #: Per-partition limits (DBOS Transact's ``partition_*``), which partition the
    #: queue; with them, ``concurrency``, ``worker_concurrency`` and the limiter bound
    #: the whole queue. Without them, ``partition_queue`` (the older form) makes those
    #: three apply per partition instead.
    partition_concurrency: int | None = None
    partition_worker_concurrency: int | None = None
    partition_limiter_limit: int | None = None
    partition_limiter_period_seconds: float | None = None


@dataclass
class QueueClaim:
    """What a worker may claim from a queue (or one partition of it) in one poll."""

    queue_name: str
    #: The partition polled; None for a queue without partitions.
    partition_key: str | None
    executor_id: str
    app_version: str
    now_ms: int
    #: At most this many (the worker's free capacity).
    max_count: int
    #: Queue-wide limits, counted across all processes and all partitions: running
    #: workflows, and starts within the last ``period_ms``.
    concurrency: int | None = None
    limit: int | None = None
    period_ms: int | None = None
    #: Per-partition limits, counted across all processes in ``partition_key`` alone.
    partition_concurrency: int | None = None
    partition_limit: int | None = None
    partition_period_ms: int | None = None


@dataclass(slots=True)
class InsertWorkflow:
    """Insert a workflow status row unless its ID exists. Result: ``None`` if inserted,
    else the stored row."""

    row: WorkflowRow


@dataclass(slots=True)
class RecordStep:
    """Insert a step row unless one exists at its ID. Result: the stored row (``step``
    itself when this write stored it)."""

    step: StepRow


@dataclass(slots=True)
class FinishWorkflow:
    """Record the outcome of a PENDING workflow. Result: False if it was no longer
    PENDING."""

    workflow_id: str
    status: str
    output: str | None
    error: str | None
    updated_at: int


@dataclass(frozen=True)
class Fenced:
    """The result of a step or finish write of a workflow that the writing process does
    not own (any more): nothing was written."""

    workflow_id: str


Write = InsertWorkflow | RecordStep | FinishWorkflow
WriteResult = WorkflowRow | StepRow | bool | Fenced | None


@dataclass
class LeaseHolder:
    """A launched process, as it registers its lease."""

    process_id: str
    executor_id: str
    hostname: str
    pid: int
    #: What tells this process from a later one that reuses its PID (its start time).
    process_tag: str | None
    application_version: str


@dataclass
class ExecutorRow:
    """A process that holds or held a lease. Times are epoch ms (the database's clock on
    Postgres)."""

    process_id: str
    executor_id: str
    hostname: str
    pid: int
    process_tag: str | None
    application_version: str
    started_at: int
    last_heartbeat_at: int
    lease_expires_at: int
    #: Whether its lease has not expired.
    alive: bool
    #: How many PENDING workflows it owns.
    workflows: int


@dataclass
class VersionRow:
    """An application version some process launched with. Times are epoch ms; the latest
    version is the one with the highest ``version_timestamp``."""

    version_id: str
    version_name: str
    #: When it was registered (its first launch), or last made the latest.
    version_timestamp: int
    created_at: int
    #: The ``name`` of the application that registered it.
    application_name: str | None


@dataclass
class ScheduleRow:
    """A schedule stored as data (``DBOS.create_schedule``). Times are epoch ms."""

    schedule_id: str
    schedule_name: str
    #: The registered name of the workflow it runs.
    workflow_name: str
    #: The cron expression, read on ``cron_timezone``'s clock (UTC if None).
    schedule: str
    #: ``"ACTIVE"`` or ``"PAUSED"``.
    status: str
    #: The serialized context every run gets.
    context: str | None
    automatic_backfill: bool
    cron_timezone: str | None
    #: The queue its runs are enqueued on; None: started directly.
    queue_name: str | None
    #: The latest slot started, if any.
    last_fired_at: int | None
    created_at: int
    updated_at: int
