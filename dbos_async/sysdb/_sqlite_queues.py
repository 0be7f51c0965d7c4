"""SQLite: enqueueing and claiming queued workflows.

A claim is one ``BEGIN IMMEDIATE`` transaction, which SQLite runs one at a time across
every process sharing the file: counting what runs, picking, and marking the picked rows
PENDING cannot interleave with another worker's claim, so no workflow runs twice and the
limits hold. Enqueue order is the rowid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import aiosqlite

from .._errors import DBOSException
from ._columns import WORKFLOW_COLUMNS, column_list, workflow_params
from ._results import deduplicated, insert_result
from ._rows import QueueClaim, QueueInfo, WorkflowRow

if TYPE_CHECKING:
    from ._sqlite import SQLiteConnection

__all__ = ["SQLiteQueues"]

_COLS = column_list(WORKFLOW_COLUMNS)
_ENQUEUE = (
    "INSERT INTO dbos_workflow_status (" + _COLS + ") VALUES "
    "(" + ", ".join("?" * len(WORKFLOW_COLUMNS)) + ") ON CONFLICT DO NOTHING"
)
_GET = "SELECT " + _COLS + " FROM dbos_workflow_status WHERE workflow_uuid = ?"
_IN_QUEUE = " WHERE queue_name = :queue AND queue_partition_key IS :partition"
_RUNNING = "SELECT count(*) FROM dbos_workflow_status" + _IN_QUEUE + " AND status = 'PENDING'"
_STARTED = (
    "SELECT count(*) FROM dbos_workflow_status"
    + _IN_QUEUE
    + " AND started_at_epoch_ms > :now - :period"
)
_CLAIM = (
    "UPDATE dbos_workflow_status SET status = 'PENDING', executor_id = :executor,"
    " application_version = :version, started_at_epoch_ms = :now, updated_at = :now,"
    " workflow_deadline_epoch_ms = CASE"
    " WHEN workflow_timeout_ms IS NULL THEN workflow_deadline_epoch_ms"
    " WHEN workflow_deadline_epoch_ms IS NULL THEN :now + workflow_timeout_ms"
    " ELSE min(workflow_deadline_epoch_ms, :now + workflow_timeout_ms) END"
    " WHERE workflow_uuid IN (SELECT workflow_uuid FROM dbos_workflow_status"
    + _IN_QUEUE
    + " AND status = 'ENQUEUED'"
    " AND (delay_until_epoch_ms IS NULL OR delay_until_epoch_ms <= :now)"
    " AND (application_version IS NULL OR application_version = :version)"
    " ORDER BY priority, rowid LIMIT :n)"
    " RETURNING " + _COLS
)
_ANY_READY = (
    "SELECT 1 FROM dbos_workflow_status" + _IN_QUEUE + " AND status = 'ENQUEUED'"
    " AND (delay_until_epoch_ms IS NULL OR delay_until_epoch_ms <= :now) LIMIT 1"
)
_PARTITIONS = (
    "SELECT DISTINCT queue_partition_key FROM dbos_workflow_status"
    " WHERE queue_name = ? AND status = 'ENQUEUED' AND queue_partition_key IS NOT NULL"
)
_EXPIRE = (
    "UPDATE dbos_workflow_status SET status = 'CANCELLED', updated_at = ?"
    " WHERE status = 'ENQUEUED' AND workflow_deadline_epoch_ms <= ?"
    " AND (? IS NULL OR workflow_uuid = ?) AND (? IS NULL OR queue_name = ?)"
    " RETURNING workflow_uuid"
)
_ANY_EXPIRED = (
    "SELECT 1 FROM dbos_workflow_status"
    " WHERE status = 'ENQUEUED' AND workflow_deadline_epoch_ms <= ?"
    " AND (? IS NULL OR workflow_uuid = ?) AND (? IS NULL OR queue_name = ?) LIMIT 1"
)
_REGISTER = (
    "INSERT INTO dbos_queues (name, concurrency, worker_concurrency, limiter_limit,"
    " limiter_period_seconds, priority_enabled, partition_queue, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency,"
    " worker_concurrency = excluded.worker_concurrency,"
    " limiter_limit = excluded.limiter_limit,"
    " limiter_period_seconds = excluded.limiter_period_seconds,"
    " priority_enabled = excluded.priority_enabled,"
    " partition_queue = excluded.partition_queue, updated_at = excluded.updated_at"
)
_LIST_QUEUES = (
    "SELECT name, concurrency, worker_concurrency, limiter_limit, limiter_period_seconds,"
    " priority_enabled, partition_queue FROM dbos_queues ORDER BY name"
)


class SQLiteQueues:
    """The queue half of the SQLite system database."""

    _db: SQLiteConnection

    async def enqueue_workflow(self, row: WorkflowRow) -> WorkflowRow | None:
        async def op(conn: aiosqlite.Connection) -> WorkflowRow | None:
            cur = await conn.execute(_ENQUEUE, workflow_params(row))
            if cur.rowcount == 1:
                return None
            cur = await conn.execute(_GET, (row.workflow_id,))
            stored = await cur.fetchone()
            if stored is not None:
                return insert_result(row, WorkflowRow(*stored), False)
            if row.deduplication_id is None:
                raise DBOSException(f"workflow {row.workflow_id!r} could not be enqueued")
            raise deduplicated(row)

        return await self._db.write(op)

    async def claim_queued(self, claim: QueueClaim) -> list[WorkflowRow]:
        params: dict[str, Any] = {
            "queue": claim.queue_name,
            "partition": claim.partition_key,
            "executor": claim.executor_id,
            "version": claim.app_version,
            "now": claim.now_ms,
            "period": claim.period_ms or 0,
        }

        async def count(conn: aiosqlite.Connection, sql: str) -> int:
            cur = await conn.execute(sql, params)
            r = await cur.fetchone()
            return int(r[0]) if r is not None else 0

        async def any_ready(conn: aiosqlite.Connection) -> bool:
            cur = await conn.execute(_ANY_READY, params)
            return await cur.fetchone() is not None

        # An idle worker's poll is a read: the write lock is taken only for a claim.
        if not await self._db.read(any_ready):
            return []

        async def op(conn: aiosqlite.Connection) -> list[WorkflowRow]:
            n = claim.max_count
            if claim.concurrency is not None:
                n = min(n, claim.concurrency - await count(conn, _RUNNING))
            if claim.limit is not None:
                n = min(n, claim.limit - await count(conn, _STARTED))
            if n <= 0:
                return []
            cur = await conn.execute(_CLAIM, {**params, "n": n})
            return [WorkflowRow(*r) for r in await cur.fetchall()]

        return await self._db.write(op)

    async def queue_partitions(self, queue_name: str) -> list[str]:
        async def op(conn: aiosqlite.Connection) -> list[str]:
            cur = await conn.execute(_PARTITIONS, (queue_name,))
            return [str(r[0]) for r in await cur.fetchall()]

        return await self._db.read(op)

    async def cancel_expired_enqueued(
        self, now_ms: int, *, workflow_id: str | None = None, queue_name: str | None = None
    ) -> list[str]:
        params = (now_ms, now_ms, workflow_id, workflow_id, queue_name, queue_name)

        async def any_expired(conn: aiosqlite.Connection) -> bool:
            cur = await conn.execute(_ANY_EXPIRED, params[1:])
            return await cur.fetchone() is not None

        async def op(conn: aiosqlite.Connection) -> list[str]:
            cur = await conn.execute(_EXPIRE, params)
            return [str(r[0]) for r in await cur.fetchall()]

        # Most sweeps find nothing: they only read, without taking the write lock.
        if not await self._db.read(any_expired):
            return []
        return await self._db.write(op)

    async def register_queues(self, queues: Sequence[QueueInfo], now_ms: int) -> None:
        async def op(conn: aiosqlite.Connection) -> None:
            await conn.executemany(
                _REGISTER,
                [
                    (
                        q.name,
                        q.concurrency,
                        q.worker_concurrency,
                        q.limiter_limit,
                        q.limiter_period_seconds,
                        int(q.priority_enabled),
                        int(q.partition_queue),
                        now_ms,
                    )
                    for q in queues
                ],
            )

        if queues:
            await self._db.write(op)

    async def list_queues(self) -> list[QueueInfo]:
        async def op(conn: aiosqlite.Connection) -> list[QueueInfo]:
            cur = await conn.execute(_LIST_QUEUES)
            return [
                QueueInfo(r[0], r[1], r[2], r[3], r[4], bool(r[5]), bool(r[6]))
                for r in await cur.fetchall()
            ]

        return await self._db.read(op)
