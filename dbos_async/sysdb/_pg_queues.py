"""Postgres: enqueueing and claiming queued workflows.

A worker claims with one statement per poll, a call of the schema's ``claim_queued``
function: it picks the first ENQUEUED rows ``FOR UPDATE SKIP LOCKED``, so workers polling
at once never wait for each other nor take the same row. A queue with a global limit
counts what runs across all processes: a queue-wide one (``concurrency`` or a limiter)
over the whole queue, its claims from every partition taking turns under the queue's
transaction-scoped advisory lock; a per-partition one over the partition, under the
partition's lock (taken after the queue's). Each count uses a snapshot taken after its
lock, so the limits hold however many workers race.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from .._errors import DBOSException
from ._columns import queue_info, workflow_params, workflow_row
from ._keys import notification_key
from ._pg_pool import PostgresPool
from ._queries import load_queries
from ._results import deduplicated, insert_result
from ._rows import QueueClaim, QueueInfo, WorkflowRow

__all__ = ["PostgresQueues"]

Q = load_queries("postgres")


class PostgresQueues:
    """The queue half of the Postgres system database."""

    _pg: PostgresPool
    owner: str | None

    async def enqueue_workflow(self, row: WorkflowRow) -> WorkflowRow | None:
        attempts = 0
        wake = notification_key("queue", row.queue_name or "", "")

        async def op(conn: Any) -> WorkflowRow | None:
            nonlocal attempts
            retry = attempts > 0
            attempts += 1
            if await conn.fetch(Q["enqueue_workflow"], *workflow_params(row), wake):
                return None
            stored = await conn.fetchrow(Q["get_workflow"], row.workflow_id)
            if stored is not None:
                return insert_result(row, workflow_row(stored), retry)
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
            claim.partition_concurrency,
            claim.partition_limit,
            claim.partition_period_ms,
            token,
            self.owner,
        )
        attempts = 0

        async def op(conn: Any) -> list[WorkflowRow]:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                # The first attempt may have committed before its reply was lost.
                taken = await conn.fetch(Q["claimed_queued"], claim.queue_name, token)
                if taken:
                    return [workflow_row(r) for r in taken]
            return [workflow_row(r) for r in await conn.fetch(Q["claim_queued"], *args)]

        return await self._pg.retrying(op)

    async def queue_partitions(self, queue_name: str) -> list[str]:
        async def op(conn: Any) -> list[str]:
            return [r[0] for r in await conn.fetch(Q["queue_partitions"], queue_name)]

        return await self._pg.retrying(op)

    async def cancel_expired_enqueued(
        self, now_ms: int, *, workflow_id: str | None = None, queue_name: str | None = None
    ) -> list[str]:
        async def op(conn: Any) -> list[str]:
            return [
                r[0]
                for r in await conn.fetch(
                    Q["cancel_expired_enqueued"], now_ms, workflow_id, queue_name
                )
            ]

        return await self._pg.retrying(op)

    async def register_queues(self, queues: Sequence[QueueInfo], now_ms: int) -> None:
        async def op(conn: Any) -> None:
            await conn.execute(
                Q["register_queues"],
                [q.name for q in queues],
                [q.concurrency for q in queues],
                [q.worker_concurrency for q in queues],
                [q.limiter_limit for q in queues],
                [q.limiter_period_seconds for q in queues],
                [q.priority_enabled for q in queues],
                [q.partition_queue for q in queues],
                [q.polling_interval_seconds for q in queues],
                now_ms,
                [q.partition_concurrency for q in queues],
                [q.partition_worker_concurrency for q in queues],
                [q.partition_limiter_limit for q in queues],
                [q.partition_limiter_period_seconds for q in queues],
            )

        if queues:
            await self._pg.retrying(op)

    async def list_queues(self) -> list[QueueInfo]:
        async def op(conn: Any) -> list[QueueInfo]:
            return [queue_info(r) for r in await conn.fetch(Q["list_queues"])]

        return await self._pg.retrying(op)

    async def get_queue(self, name: str) -> QueueInfo | None:
        async def op(conn: Any) -> QueueInfo | None:
            row = await conn.fetchrow(Q["get_queue"], name)
            return None if row is None else queue_info(row)

        return await self._pg.retrying(op)

    async def upsert_queue(self, queue: QueueInfo, now_ms: int, *, update_existing: bool) -> bool:
        async def op(conn: Any) -> bool:
            rows = await conn.fetch(
                Q["upsert_queue"],
                *_queue_settings(queue),
                now_ms,
                update_existing,
                *_partition_settings(queue),
            )
            return bool(rows)

        return await self._pg.retrying(op)

    async def update_queue(self, queue: QueueInfo, expected_updated_at: int, now_ms: int) -> bool:
        async def op(conn: Any) -> bool:
            rows = await conn.fetch(
                Q["update_queue"],
                *_queue_settings(queue),
                now_ms,
                expected_updated_at,
                *_partition_settings(queue),
            )
            return bool(rows)

        # (A retry after a lost reply finds the row changed: the caller reads it again.)
        return await self._pg.retrying(op)

    async def delete_queue(self, name: str) -> bool:
        async def op(conn: Any) -> bool:
            return bool(await conn.fetch(Q["delete_queue"], name))

        return await self._pg.retrying(op)

    async def deduplicated_workflow(
        self, queue_name: str, deduplication_id: str
    ) -> WorkflowRow | None:
        async def op(conn: Any) -> WorkflowRow | None:
            r = await conn.fetchrow(Q["deduplicated_workflow"], queue_name, deduplication_id)
            return workflow_row(r) if r is not None else None

        return await self._pg.retrying(op)


def _queue_settings(q: QueueInfo) -> tuple[Any, ...]:
    """A queue's name and settings, in the order the statements bind them."""
    return (
        q.name,
        q.concurrency,
        q.worker_concurrency,
        q.limiter_limit,
        q.limiter_period_seconds,
        q.priority_enabled,
        q.partition_queue,
        q.polling_interval_seconds,
    )


def _partition_settings(q: QueueInfo) -> tuple[Any, ...]:
    """A queue's per-partition limits, in the order the statements bind them."""
    return (
        q.partition_concurrency,
        q.partition_worker_concurrency,
        q.partition_limiter_limit,
        q.partition_limiter_period_seconds,
    )
