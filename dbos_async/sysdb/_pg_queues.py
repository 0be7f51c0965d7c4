"""Postgres: enqueueing and claiming queued workflows.

A worker claims with one statement per poll: it picks the first ENQUEUED rows ``FOR
UPDATE SKIP LOCKED``, so workers polling at once never wait for each other nor take the
same row. A queue with a global limit (``concurrency`` or a limiter) counts what runs
across all processes; those claims are serialized per queue (and partition) by a
transaction-scoped advisory lock taken before the claim statement, so its snapshot sees
every earlier claim and the limit holds however many workers race.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._errors import DBOSException, DBOSQueueDeduplicatedError
from ._pg_messaging import CHANNEL
from ._protocol import (
    WORKFLOW_COLUMNS,
    QueueClaim,
    QueueInfo,
    WorkflowRow,
    notification_key,
)
from ._results import insert_result

if TYPE_CHECKING:
    from ._postgres import PostgresPool

__all__ = ["PostgresQueues"]

_COLS = WORKFLOW_COLUMNS
_N = _COLS.count(",") + 1
_W_COLS = ", ".join("w." + c for c in _COLS.split(", "))

_ENQUEUE = (
    "WITH ins AS (INSERT INTO dbos_async.workflow_status ("
    + _COLS
    + ", enqueue_seq) VALUES ("
    + ", ".join(f"${i}" for i in range(1, _N + 1))
    + ", nextval('dbos_async.enqueue_seq')) ON CONFLICT DO NOTHING RETURNING 1)"
    " SELECT pg_notify('" + CHANNEL + "', $" + str(_N + 1) + ") FROM ins"
)
_GET = "SELECT " + _COLS + " FROM dbos_async.workflow_status WHERE workflow_uuid = $1"

# $1 queue, $2 partition key, $3 executor, $4 application version, $5 now (ms),
# $6 most to claim, $7 concurrency, $8 limiter limit, $9 limiter period (ms).
_IN_QUEUE = " WHERE queue_name = $1 AND queue_partition_key IS NOT DISTINCT FROM $2"
_CLAIM = (
    "WITH cap AS (SELECT LEAST($6::bigint,"
    " COALESCE($7::bigint - (SELECT count(*) FROM dbos_async.workflow_status"
    + _IN_QUEUE
    + " AND status = 'PENDING'), $6::bigint),"
    " COALESCE($8::bigint - (SELECT count(*) FROM dbos_async.workflow_status"
    + _IN_QUEUE
    + " AND started_at_epoch_ms > $5::bigint - $9::bigint), $6::bigint)) AS n),"
    " picked AS (SELECT workflow_uuid FROM dbos_async.workflow_status"
    + _IN_QUEUE
    + " AND status = 'ENQUEUED'"
    " AND (delay_until_epoch_ms IS NULL OR delay_until_epoch_ms <= $5)"
    " AND (application_version IS NULL OR application_version = $4)"
    " ORDER BY priority, enqueue_seq LIMIT (SELECT GREATEST(n, 0) FROM cap)"
    " FOR UPDATE SKIP LOCKED)"
    " UPDATE dbos_async.workflow_status AS w SET status = 'PENDING', executor_id = $3,"
    " application_version = $4, started_at_epoch_ms = $5, updated_at = $5,"
    " workflow_deadline_epoch_ms ="  # (LEAST ignores NULLs)
    " LEAST(w.workflow_deadline_epoch_ms, $5 + w.workflow_timeout_ms)"
    " FROM picked WHERE w.workflow_uuid = picked.workflow_uuid AND w.status = 'ENQUEUED'"
    " RETURNING " + _W_COLS
)
#: Serializes claims on one queue (or partition) that a global limit bounds.
_LOCK_QUEUE = "SELECT pg_advisory_xact_lock(1684172659, hashtext($1))"
_PARTITIONS = (
    "SELECT DISTINCT queue_partition_key FROM dbos_async.workflow_status"
    " WHERE queue_name = $1 AND status = 'ENQUEUED' AND queue_partition_key IS NOT NULL"
)
_REGISTER = (
    "INSERT INTO dbos_async.queues (name, concurrency, worker_concurrency, limiter_limit,"
    " limiter_period_seconds, priority_enabled, partition_queue, updated_at)"
    " SELECT q.*, $8 FROM unnest($1::text[], $2::int[], $3::int[], $4::int[],"
    " $5::float8[], $6::bool[], $7::bool[]) AS q"
    " ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency,"
    " worker_concurrency = excluded.worker_concurrency,"
    " limiter_limit = excluded.limiter_limit,"
    " limiter_period_seconds = excluded.limiter_period_seconds,"
    " priority_enabled = excluded.priority_enabled,"
    " partition_queue = excluded.partition_queue, updated_at = excluded.updated_at"
)
_LIST_QUEUES = (
    "SELECT name, concurrency, worker_concurrency, limiter_limit, limiter_period_seconds,"
    " priority_enabled, partition_queue FROM dbos_async.queues ORDER BY name"
)


class PostgresQueues:
    """The queue half of the Postgres system database."""

    _pg: PostgresPool

    async def enqueue_workflow(self, row: WorkflowRow) -> WorkflowRow | None:
        attempts = 0
        wake = notification_key("queue", row.queue_name or "", "")

        async def op(conn: Any) -> WorkflowRow | None:
            nonlocal attempts
            retry = attempts > 0
            attempts += 1
            if await conn.fetch(_ENQUEUE, *row.params(), wake):
                return None
            stored = await conn.fetchrow(_GET, row.workflow_id)
            if stored is not None:
                return insert_result(row, WorkflowRow(*stored), retry)
            if row.deduplication_id is None:
                raise DBOSException(f"workflow {row.workflow_id!r} could not be enqueued")
            raise DBOSQueueDeduplicatedError(
                row.workflow_id, row.queue_name or "", row.deduplication_id
            )

        return await self._pg.retrying(op)

    async def claim_queued(self, claim: QueueClaim) -> list[WorkflowRow]:
        args = (
            claim.queue_name,
            claim.partition_key,
            claim.executor_id,
            claim.app_version,
            claim.now_ms,
            claim.max_count,
            claim.concurrency,
            claim.limit,
            claim.period_ms,
        )
        lock_key = f"{claim.queue_name}\x1f{claim.partition_key or ''}"

        async def op(conn: Any) -> list[WorkflowRow]:
            if claim.concurrency is None and claim.limit is None:
                rows = await conn.fetch(_CLAIM, *args)
            else:
                async with conn.transaction():
                    await conn.execute(_LOCK_QUEUE, lock_key)
                    rows = await conn.fetch(_CLAIM, *args)
            return [WorkflowRow(*r) for r in rows]

        return await self._pg.retrying(op)

    async def queue_partitions(self, queue_name: str) -> list[str]:
        async def op(conn: Any) -> list[str]:
            return [r[0] for r in await conn.fetch(_PARTITIONS, queue_name)]

        return await self._pg.retrying(op)

    async def register_queues(self, queues: Sequence[QueueInfo], now_ms: int) -> None:
        async def op(conn: Any) -> None:
            await conn.execute(
                _REGISTER,
                [q.name for q in queues],
                [q.concurrency for q in queues],
                [q.worker_concurrency for q in queues],
                [q.limiter_limit for q in queues],
                [q.limiter_period_seconds for q in queues],
                [q.priority_enabled for q in queues],
                [q.partition_queue for q in queues],
                now_ms,
            )

        if queues:
            await self._pg.retrying(op)

    async def list_queues(self) -> list[QueueInfo]:
        async def op(conn: Any) -> list[QueueInfo]:
            return [QueueInfo(*r) for r in await conn.fetch(_LIST_QUEUES)]

        return await self._pg.retrying(op)
