"""Postgres: what the dashboard reads about queues and streams (read-only)."""

from __future__ import annotations

from typing import Any

from ._columns import queue_activity, workflow_streams
from ._pg_pool import PostgresPool
from ._queries import load_queries
from ._rows import QueueActivity, StreamEntry

__all__ = ["PostgresDashboardReads"]

Q = load_queries("postgres")


class PostgresDashboardReads:
    """The dashboard's reads on the Postgres system database."""

    _pg: PostgresPool

    async def queue_activity(
        self, since_ms: int, period_ms: int, periods: int
    ) -> list[QueueActivity]:
        async def op(conn: Any) -> list[QueueActivity]:
            counts = await conn.fetch(Q["queue_counts"])
            starts = await conn.fetch(Q["queue_starts"], since_ms, period_ms)
            return queue_activity(counts, starts, periods)

        return await self._pg.retrying(op)

    async def workflow_streams(self, workflow_id: str, limit: int) -> dict[str, list[StreamEntry]]:
        async def op(conn: Any) -> dict[str, list[StreamEntry]]:
            return workflow_streams(await conn.fetch(Q["workflow_streams"], workflow_id, limit))

        return await self._pg.retrying(op)
