"""Postgres: enqueueing and claiming queued workflows.

A worker claims with one statement per poll, a call of the schema's ``claim_queued``
function: it picks the first ENQUEUED rows ``FOR UPDATE SKIP LOCKED``, so workers polling
at once never wait for each other nor take the same row. A queue with a global limit
(``concurrency`` or a limiter) counts what runs across all processes; those claims take
turns per queue (and partition) under a transaction-scoped advisory lock, and count with
a snapshot taken after it, so the limit holds however many workers race.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .._errors import DBOSException
from ._columns import WORKFLOW_COLUMNS, column_list, workflow_params
from ._keys import notification_key
from ._pg_messaging import CHANNEL
from ._results import deduplicated, insert_result
from ._rows import QueueClaim, QueueInfo, WorkflowRow

if TYPE_CHECKING:
    from ._postgres import PostgresPool

__all__ = ["PostgresQueues"]

_COLS = column_list(WORKFLOW_COLUMNS)
_N = len(WORKFLOW_COLUMNS)

_ENQUEUE = (
    "WITH ins AS (INSERT INTO dbos_async.workflow_status ("
    + _COLS
    + ", enqueue_seq) VALUES ("
    + ", ".join(f"${i}" for i in range(1, _N + 1))
    + ", nextval('dbos_async.enqueue_seq')) ON CONFLICT DO NOTHING RETURNING 1)"
    " SELECT pg_notify('" + CHANNEL + "', $" + str(_N + 1) + ") FROM ins"
)
_GET = "SELECT " + _COLS + " FROM dbos_async.workflow_status WHERE workflow_uuid = $1"

# Arguments: queue, partition key, executor, application version, now (ms), most to
# claim, concurrency, limiter limit, limiter period (ms), claim token. The function is in
# the schema.
_CLAIM = (
    "SELECT " + _COLS + " FROM dbos_async.claim_queued($1::text, $2::text, $3::text,"
    " $4::text, $5::bigint, $6::bigint, $7::bigint, $8::bigint, $9::bigint, $10::text)"
)
# What a claim whose reply was lost took (one statement: all of it or nothing).
_CLAIMED = (
    "SELECT " + _COLS + " FROM dbos_async.workflow_status"
    " WHERE queue_name = $1 AND status = 'PENDING' AND claim_token = $2"
)
_PARTITIONS = (
    "SELECT DISTINCT queue_partition_key FROM dbos_async.workflow_status"
    " WHERE queue_name = $1 AND status = 'ENQUEUED' AND queue_partition_key IS NOT NULL"
)
_EXPIRE = (
    "UPDATE dbos_async.workflow_status SET status = 'CANCELLED', updated_at = $1"
    " WHERE status = 'ENQUEUED' AND workflow_deadline_epoch_ms <= $1"
    " AND ($2::text IS NULL OR workflow_uuid = $2) AND ($3::text IS NULL OR queue_name = $3)"
    " RETURNING workflow_uuid"
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
            if await conn.fetch(_ENQUEUE, *workflow_params(row), wake):
                return None
            stored = await conn.fetchrow(_GET, row.workflow_id)
            if stored is not None:
                return insert_result(row, WorkflowRow(*stored), retry)
            if row.deduplication_id is None:
                raise DBOSException(f"workflow {row.workflow_id!r} could not be enqueued")
            raise deduplicated(row)

        return await self._pg.retrying(op)

    async def claim_queued(self, claim: QueueClaim) -> list[WorkflowRow]:
        token = uuid.uuid4().hex
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
            token,
        )
        attempts = 0

        async def op(conn: Any) -> list[WorkflowRow]:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                # The first attempt may have committed before its reply was lost.
                taken = await conn.fetch(_CLAIMED, claim.queue_name, token)
                if taken:
                    return [WorkflowRow(*r) for r in taken]
            return [WorkflowRow(*r) for r in await conn.fetch(_CLAIM, *args)]

        return await self._pg.retrying(op)

    async def queue_partitions(self, queue_name: str) -> list[str]:
        async def op(conn: Any) -> list[str]:
            return [r[0] for r in await conn.fetch(_PARTITIONS, queue_name)]

        return await self._pg.retrying(op)

    async def cancel_expired_enqueued(
        self, now_ms: int, *, workflow_id: str | None = None, queue_name: str | None = None
    ) -> list[str]:
        async def op(conn: Any) -> list[str]:
            return [r[0] for r in await conn.fetch(_EXPIRE, now_ms, workflow_id, queue_name)]

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
