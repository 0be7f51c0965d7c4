"""The storage seam: what the engine asks of a database, with no SQL in sight.

Two backends implement it: ``_postgres`` (asyncpg pool) and ``_sqlite`` (aiosqlite).
Values (inputs, outputs, errors) cross this seam already serialized, as text; the values
themselves are in ``_rows``, the keys waiters wait on in ``_keys``.

Checkpoint writes arrive in batches (``write_batch``), gathered by the step journal from
every workflow running in the process. Every write is keyed and safe to repeat: a
workflow row by its ID, a step row by ``(workflow_id, function_id)``. A repeated write
changes nothing and reports what is stored, so a commit whose outcome was unknown can
simply be retried.

Ownership: a launched process holds a lease (``register_lease``) and owns the PENDING
workflows it runs (``WorkflowRow.owner``). Every write a workflow makes (a step row, its
outcome, a message, an event, a stream value, a recv, a transaction's output) commits
only if the database's ``owner`` (this process) still owns the workflow: a step or an
outcome then answers ``Fenced``, the others raise ``WorkflowOwnershipLost``, and nothing
is written. A workflow whose owner's lease has expired is taken over (``take_over``) by
exactly one live process, and no fenced write of the old owner commits after that.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from ._rows import (
    ExecutorRow,
    LeaseHolder,
    MessageRow,
    QueueActivity,
    QueueClaim,
    QueueInfo,
    RecoveryClaim,
    RecoveryRequest,
    ScheduleRow,
    StepRow,
    StreamEntry,
    VersionRow,
    WorkflowQuery,
    WorkflowRow,
    Write,
    WriteResult,
)

__all__ = [
    "ApplicationDatabase",
    "LeaseDatabase",
    "ManagementDatabase",
    "MessagingDatabase",
    "QueueDatabase",
    "ScheduleDatabase",
    "SystemDatabase",
    "TransactionConflict",
    "VersionDatabase",
]

T = TypeVar("T")


class TransactionConflict(Exception):
    """A backend's translation of a retryable failure (serialization failure, deadlock,
    database busy); the engine retries the transaction."""


class MessagingDatabase(Protocol):
    """Messages, events and streams. Each write that a workflow makes as a step carries
    its step row, committed in the same transaction, so a re-run never repeats it."""

    async def send_message(self, message: MessageRow, step: StepRow | None) -> None:
        """Store a message unless its ``message_uuid`` was stored before (even if it was
        consumed since). Raises ``DBOSNonExistentWorkflowError`` for an unknown
        destination."""

    async def send_messages(self, messages: Sequence[MessageRow], step: StepRow | None) -> None:
        """Store several messages (and ``step``, if given) in one transaction: all of them
        or none. Each is skipped if its ``message_uuid`` was stored before, so a repeat
        stores nothing more. Raises ``DBOSNonExistentWorkflowError`` naming the first
        unknown destination (then nothing is stored)."""

    async def receive_message(self, workflow_id: str, topic: str, step: StepRow) -> StepRow | None:
        """Consume the oldest unconsumed message on the topic and record it as ``step``'s
        output, atomically; None (and nothing written) if there is none. If a step row
        exists at ``step``'s ID already (the call is repeated after a lost reply, or
        another run of the workflow recorded it), consume nothing and return that row."""

    async def set_event(
        self, workflow_id: str, key: str, value: str, step: StepRow | None
    ) -> None: ...

    async def get_event(self, workflow_id: str, key: str) -> str | None: ...

    async def get_all_events(self, workflow_id: str) -> dict[str, str]: ...

    async def write_stream(
        self, workflow_id: str, key: str, value: str | None, closed: bool, step: StepRow | None
    ) -> None:
        """Append a value (or the closing mark) at the next offset. Safe to repeat: a
        write with a step row adds nothing if that step was recorded before."""

    async def read_stream(
        self, workflow_id: str, key: str, from_offset: int
    ) -> list[StreamEntry]: ...

    async def listen(self, on_notify: Callable[[str], None]) -> bool:
        """Call ``on_notify(key)`` when another process writes something a waiter may want
        (keys as ``notification_key`` makes them); reconnect after connection loss and
        then call ``on_notify("*")``. False if this backend has no push notifications."""

    async def unlisten(self) -> None: ...

    async def announce(self, key: str) -> None:
        """Tell the other processes' listeners about ``key`` (nothing without push)."""


class ManagementDatabase(Protocol):
    """What operators need: listing, cancelling, resuming and forking workflows."""

    async def list_workflows(self, query: WorkflowQuery) -> list[WorkflowRow]:
        """Workflows matching every filter, by creation time (then ID)."""

    async def cancel_workflow(self, workflow_id: str, now_ms: int) -> WorkflowRow | None:
        """Make a PENDING or ENQUEUED workflow CANCELLED (and tell other processes).
        Returns the row as it is now (unchanged if it had ended), None if unknown."""

    async def resume_workflow(
        self, workflow_id: str, executor_id: str, now_ms: int
    ) -> tuple[bool, WorkflowRow | None]:
        """Run a CANCELLED or MAX_RECOVERY_ATTEMPTS_EXCEEDED workflow again, its recovery
        attempts reset and its deadline cleared: one of a queue becomes ENQUEUED on it
        (no executor, no owner, no start time; its queue's workers are woken), any other
        PENDING on ``executor_id``, owned by ``owner`` (a client's None leaves it for the
        first live process to take over). Returns (changed, row now). Raises
        ``DBOSQueueDeduplicatedError`` if another active workflow of its queue took its
        deduplication ID meanwhile. A repeat after a lost reply still answers changed."""

    async def fork_workflow(self, source_id: str, row: WorkflowRow, start_step: int) -> None:
        """Insert ``row`` and copy the source's step rows below ``start_step`` to it, in
        one transaction. Raises ``DBOSConflictingWorkflowError`` if another workflow has
        ``row``'s ID."""

    async def delete_workflows(self, workflow_ids: Sequence[str]) -> list[str]:
        """Delete these workflows and every row that refers to them (steps, messages sent
        to them, events, streams) in one transaction, and tell the processes that run
        one of them to stop it (as for a cancel). Returns the IDs deleted (unknown IDs
        are skipped); safe to repeat."""

    async def cancelled_among(self, workflow_ids: Sequence[str]) -> list[str]:
        """Which of these workflows are CANCELLED (or no longer exist)."""

    async def not_owned_among(self, workflow_ids: Sequence[str]) -> list[str]:
        """Which of these workflows ``owner`` does not own (any more), or no longer exist."""

    async def queue_activity(
        self, since_ms: int, period_ms: int, periods: int
    ) -> list[QueueActivity]:
        """For each queue that holds ENQUEUED or PENDING workflows, or is registered and
        started one since ``since_ms``: how many it holds of each, and how many it started
        in each of the ``periods`` periods of ``period_ms`` from ``since_ms`` on (counted
        for registered queues only); by queue name."""

    async def workflow_streams(self, workflow_id: str, limit: int) -> dict[str, list[StreamEntry]]:
        """The values of every stream of a workflow (at most ``limit`` in all), by key."""


class QueueDatabase(Protocol):
    """Queues: enqueueing and claiming workflows within each queue's limits."""

    async def enqueue_workflow(self, row: WorkflowRow) -> WorkflowRow | None:
        """Insert an ENQUEUED workflow row and wake the queue's workers. Returns None if
        inserted, else the row already stored under its ID. Raises
        ``DBOSQueueDeduplicatedError`` if an ENQUEUED or PENDING workflow of the queue
        holds its deduplication ID."""

    async def claim_queued(self, claim: QueueClaim) -> list[WorkflowRow]:
        """Make up to ``claim.max_count`` ENQUEUED workflows PENDING on this executor, owned
        by ``owner``, lowest priority first then in enqueue order, skipping delayed ones
        and those of another application version, and never past the global limits
        however many workers claim at once: the queue-wide ones counted over the whole
        queue (every partition), the per-partition ones over ``claim.partition_key``
        alone. Only one worker wins each workflow. A claimed workflow's deadline becomes
        the earlier of the one it inherited and claim time plus its timeout; its
        ``started_at_epoch_ms`` is the claim time."""

    async def queue_partitions(self, queue_name: str) -> list[str]:
        """The partition keys that have ENQUEUED workflows on this queue."""

    async def cancel_expired_enqueued(
        self, now_ms: int, *, workflow_id: str | None = None, queue_name: str | None = None
    ) -> list[str]:
        """Make CANCELLED the ENQUEUED workflows whose deadline is at or before ``now_ms``
        (the one workflow, or those of one queue): one conditional update, so a workflow
        claimed or resumed meanwhile is left alone. Returns the IDs it cancelled."""

    async def register_queues(self, queues: Sequence[QueueInfo], now_ms: int) -> None:
        """Record (or update) the queues this process declares, so clients can check
        the queue names they enqueue to."""

    async def list_queues(self) -> list[QueueInfo]:
        """Every queue some process registered, by name."""

    async def get_queue(self, name: str) -> QueueInfo | None:
        """A queue's row (declared in code or at run time), or None."""

    async def upsert_queue(self, queue: QueueInfo, now_ms: int, *, update_existing: bool) -> bool:
        """Declare a queue at run time (its row ``database_backed`` from now on). An
        existing run-time queue of that name is replaced only if ``update_existing``; a
        row recording a declaration in code always is. True if written (Postgres tells
        every process's workers of the queue)."""

    async def update_queue(self, queue: QueueInfo, expected_updated_at: int, now_ms: int) -> bool:
        """Replace a run-time queue's settings, only if its row is still the one last
        written at ``expected_updated_at``: False if it changed (or is gone) since, and
        the caller reads it again. Postgres tells every process's workers of it."""

    async def delete_queue(self, name: str) -> bool:
        """Delete a run-time queue's row; True if there was one. A queue declared in code
        keeps its row (its processes register it at each launch)."""

    async def deduplicated_workflow(
        self, queue_name: str, deduplication_id: str
    ) -> WorkflowRow | None:
        """The ENQUEUED or PENDING workflow of the queue that holds the deduplication ID
        (the one an enqueue raising ``DBOSQueueDeduplicatedError`` met), or None."""


class LeaseDatabase(Protocol):
    """Leases of launched processes, and taking over what expired ones owned."""

    async def register_lease(self, holder: LeaseHolder, lease_ms: int) -> None:
        """Register a launched process with a lease of ``lease_ms`` from now (and forget
        processes whose lease expired long ago and that own nothing)."""

    async def renew_lease(self, process_id: str, lease_ms: int) -> bool:
        """Extend a process's lease to ``lease_ms`` from now, even if it had expired.
        False if the process is not registered (register it again)."""

    async def end_lease(self, process_id: str) -> None:
        """End a process's lease now (it stops, or it died) and wake the other processes'
        takeover: what it owns is theirs to take at once."""

    async def list_executors(self) -> list[ExecutorRow]:
        """Every registered process, oldest first."""

    async def orphaned_workflows(
        self,
        app_version: str,
        names: Sequence[str],
        stale_before_ms: int,
        running: Sequence[str],
        limit: int,
    ) -> list[WorkflowRow]:
        """PENDING workflows of ``app_version`` and of the workflow functions ``names``
        that no live process runs (at most ``limit``, oldest first): unowned ones, those
        whose owner's lease has expired,
        and those ``owner`` itself owns but does not run (not in ``running``) and has not
        updated since ``stale_before_ms`` (claimed here, but the reply was lost)."""

    async def take_over(
        self, requests: Sequence[RecoveryRequest], executor_id: str, now_ms: int
    ) -> list[RecoveryClaim]:
        """Make ``owner`` the owner of each workflow still PENDING with the owner and the
        attempt count its request saw, if that owner still has no live lease; count one
        more recovery attempt (past its ``max_attempts`` it is dead-lettered instead).
        One conditional statement: exactly one process wins each. Returns the claims won,
        in any order."""


class VersionDatabase(Protocol):
    """The application versions processes launched with, and which one is the latest."""

    async def register_version(self, version: VersionRow) -> None:
        """Record a version unless its name is recorded already (then nothing changes:
        a relaunch of an older version does not make it the latest)."""

    async def list_versions(self) -> list[VersionRow]:
        """Every recorded version, the latest (highest ``version_timestamp``) first."""

    async def set_version_timestamp(self, version_name: str, timestamp_ms: int) -> bool:
        """Set a recorded version's ``version_timestamp`` (making it the latest if it is
        the highest). False, and nothing changed, if no version has that name."""


class ScheduleDatabase(Protocol):
    """Schedules stored as data (``DBOS.create_schedule``), by unique name."""

    async def insert_schedule(self, schedule: ScheduleRow) -> bool:
        """Store a new schedule; False, and nothing changed, if its name is taken."""

    async def get_schedule(self, schedule_name: str) -> ScheduleRow | None: ...

    async def list_schedules(self) -> list[ScheduleRow]:
        """Every schedule, by name."""

    async def delete_schedule(self, schedule_name: str) -> bool:
        """Delete a schedule; False if there was none."""

    async def set_schedule_status(self, schedule_name: str, status: str, now: int) -> bool:
        """Set a schedule's status (``"ACTIVE"``, ``"PAUSED"``); False if there is none."""

    async def record_schedule_fired(self, schedule_id: str, fired_at: int) -> None:
        """A slot of the schedule (by ID) was started: ``last_fired_at`` becomes it,
        unless a later one is recorded. Safe to repeat; nothing if there is none."""


class SystemDatabase(
    MessagingDatabase,
    ManagementDatabase,
    QueueDatabase,
    LeaseDatabase,
    VersionDatabase,
    ScheduleDatabase,
    Protocol,
):
    """The runtime's own tables: workflow status, step outputs, messaging, queues, leases."""

    url: str
    #: The process (its lease's ``process_id``) whose workflows' writes this database
    #: makes, fenced on it; set before ``connect``. None for a client, which writes no
    #: workflow's steps.
    owner: str | None

    async def connect(self) -> None:
        """Open connections, creating the database if missing, and migrate the schema."""

    async def close(self) -> None: ...

    async def write_batch(
        self, writes: Sequence[Write], *, retry: bool = False
    ) -> list[WriteResult]:
        """Commit every write in one transaction, or none of them (then raise).

        No two writes of a batch share a key. Results come in the order of ``writes``.
        ``retry`` says these writes may have committed already (an earlier attempt's
        outcome is unknown): a stored row equal to the write's own then counts as this
        write's, not as a conflict, so a retried batch returns what the first would have.
        A step or finish of a workflow ``owner`` does not own answers ``Fenced`` (and the
        rest of the batch commits).
        """

    async def get_workflow(self, workflow_id: str) -> WorkflowRow | None: ...

    async def load_steps(self, workflow_id: str) -> list[StepRow]:
        """All recorded steps of a workflow, by step ID."""

    async def load_steps_many(self, workflow_ids: Sequence[str]) -> dict[str, list[StepRow]]:
        """The recorded steps of several workflows at once (recovery loads them together)."""


class ApplicationDatabase(Protocol):
    """Where ``@DBOS.transaction`` functions run, and where their outputs are recorded."""

    url: str
    #: True if a transaction's output is written only if its workflow's owner is
    #: ``owner`` (this database holds the system tables too); else the engine checks
    #: ownership before the transaction runs.
    fenced: bool
    owner: str | None

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def run_transaction(
        self,
        body: Callable[[Any], Awaitable[T]],
        isolation_level: str,
        record: Callable[[T], tuple[str, int, str]] | None,
    ) -> T:
        """Run ``body(connection)`` in one database transaction. If ``record`` is given,
        write the ``(workflow_id, function_id, output)`` it returns in the same transaction
        (if ``fenced``, only if ``owner`` owns the workflow as the transaction sees it:
        else everything rolls back and ``WorkflowOwnershipLost`` is raised). Retryable
        failures are raised as ``TransactionConflict``."""

    async def get_transaction_output(self, workflow_id: str, function_id: int) -> str | None:
        """The output a committed transaction recorded, or ``None``."""

    def sql_session(self, conn: Any) -> Any:
        """An SQLAlchemy ``AsyncSession`` on ``conn`` (the connection a ``run_transaction``
        body was given), running inside that body's transaction and never beginning,
        committing or closing anything itself (``_sqlalchemy``). No I/O here.
        ``DBOSException`` naming the ``sqlalchemy`` extra when SQLAlchemy is missing."""

    async def end_sql_session(self, session: Any, *, flush: bool) -> None:
        """The body that opened ``session`` returned (``flush``: its pending changes are
        flushed, before the transaction commits) or raised; the session lets go of the
        connection and refuses any later use."""

    async def delete_transaction_outputs(self, workflow_ids: Sequence[str]) -> None:
        """Forget the transaction outputs of these (deleted) workflows, in one
        transaction; safe to repeat."""
