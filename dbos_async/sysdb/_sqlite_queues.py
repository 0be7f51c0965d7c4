"""SQLite: enqueueing and claiming queued workflows.

A claim is one ``BEGIN IMMEDIATE`` transaction, which SQLite runs one at a time across
every process sharing the file: counting what runs, picking, and marking the picked rows
PENDING cannot interleave with another worker's claim, so no workflow runs twice and the
limits hold. Enqueue order is the rowid.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from .._errors import DBOSException
from ._columns import queue_info, workflow_params, workflow_row
from ._queries import load_queries
from ._results import deduplicated, insert_result
from ._rows import QueueClaim, QueueInfo, WorkflowRow
from ._sqlite_connection import SQLiteConnection

__all__ = ["SQLiteQueues"]

Q = load_queries("sqlite")


class SQLiteQueues:
    """The queue half of the SQLite system database."""

    _db: SQLiteConnection
    owner: str | None

    async def enqueue_workflow(self, row: WorkflowRow) -> WorkflowRow | None:
        def op(conn: sqlite3.Connection) -> WorkflowRow | None:
            cur = conn.execute(Q["enqueue_workflow"], workflow_params(row))
            if cur.rowcount == 1:
                return None
            cur = conn.execute(Q["get_workflow"], (row.workflow_id,))
            stored = cur.fetchone()
            if stored is not None:
                return insert_result(row, workflow_row(stored), False)
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
            "partition_period": claim.partition_period_ms or 0,
            "owner": self.owner,
        }

        def count(conn: sqlite3.Connection, sql: str) -> int:
            cur = conn.execute(sql, params)
            r = cur.fetchone()
            return int(r[0]) if r is not None else 0

        def any_ready(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(Q["any_ready"], params)
            return cur.fetchone() is not None

        # An idle worker's poll is a read: the write lock is taken only for a claim.
        if not await self._db.read(any_ready):
            return []

        def op(conn: sqlite3.Connection) -> list[WorkflowRow]:
            n = claim.max_count
            if claim.concurrency is not None:
                n = min(n, claim.concurrency - count(conn, Q["count_running_queue"]))
            if claim.limit is not None:
                n = min(n, claim.limit - count(conn, Q["count_started_queue"]))
            if claim.partition_concurrency is not None:
                n = min(n, claim.partition_concurrency - count(conn, Q["count_running"]))
            if claim.partition_limit is not None:
                n = min(n, claim.partition_limit - count(conn, Q["count_started"]))
            if n <= 0:
                return []
            cur = conn.execute(Q["claim_queued"], {**params, "n": n})
            return [workflow_row(r) for r in cur.fetchall()]

        return await self._db.write(op)

    async def queue_partitions(self, queue_name: str) -> list[str]:
        def op(conn: sqlite3.Connection) -> list[str]:
            cur = conn.execute(Q["queue_partitions"], (queue_name,))
            return [str(r[0]) for r in cur.fetchall()]

        return await self._db.read(op)

    async def cancel_expired_enqueued(
        self, now_ms: int, *, workflow_id: str | None = None, queue_name: str | None = None
    ) -> list[str]:
        params = (now_ms, now_ms, workflow_id, workflow_id, queue_name, queue_name)

        def any_expired(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(Q["any_expired_enqueued"], params[1:])
            return cur.fetchone() is not None

        def op(conn: sqlite3.Connection) -> list[str]:
            cur = conn.execute(Q["cancel_expired_enqueued"], params)
            return [str(r[0]) for r in cur.fetchall()]

        # Most sweeps find nothing: they only read, without taking the write lock.
        if not await self._db.read(any_expired):
            return []
        return await self._db.write(op)

    async def register_queues(self, queues: Sequence[QueueInfo], now_ms: int) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(Q["register_queue"], [(*_queue_settings(q), now_ms) for q in queues])

        if queues:
            await self._db.write(op)

    async def list_queues(self) -> list[QueueInfo]:
        def op(conn: sqlite3.Connection) -> list[QueueInfo]:
            cur = conn.execute(Q["list_queues"])
            return [queue_info(r) for r in cur.fetchall()]

        return await self._db.read(op)

    async def get_queue(self, name: str) -> QueueInfo | None:
        def op(conn: sqlite3.Connection) -> QueueInfo | None:
            cur = conn.execute(Q["get_queue"], (name,))
            row = cur.fetchone()
            return None if row is None else queue_info(row)

        return await self._db.read(op)

    async def upsert_queue(self, queue: QueueInfo, now_ms: int, *, update_existing: bool) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                Q["upsert_queue"], (*_queue_settings(queue), now_ms, int(update_existing))
            )
            return cur.rowcount > 0

        return await self._db.write(op)

    async def update_queue(self, queue: QueueInfo, expected_updated_at: int, now_ms: int) -> bool:
        settings = _queue_settings(queue)

        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                Q["update_queue"], (*settings[1:], now_ms, expected_updated_at, settings[0])
            )
            return cur.rowcount > 0

        return await self._db.write(op)

    async def delete_queue(self, name: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(Q["delete_queue"], (name,))
            return cur.rowcount > 0

        return await self._db.write(op)

    async def deduplicated_workflow(
        self, queue_name: str, deduplication_id: str
    ) -> WorkflowRow | None:
        def op(conn: sqlite3.Connection) -> WorkflowRow | None:
            cur = conn.execute(Q["deduplicated_workflow"], (queue_name, deduplication_id))
            r = cur.fetchone()
            return workflow_row(r) if r is not None else None

        return await self._db.read(op)


def _queue_settings(q: QueueInfo) -> tuple[Any, ...]:
    """A queue's name and settings, in the order the statements bind them."""
    return (
        q.name,
        q.concurrency,
        q.worker_concurrency,
        q.limiter_limit,
        q.limiter_period_seconds,
        int(q.priority_enabled),
        int(q.partition_queue),
        q.polling_interval_seconds,
        q.partition_concurrency,
        q.partition_worker_concurrency,
        q.partition_limiter_limit,
        q.partition_limiter_period_seconds,
    )
