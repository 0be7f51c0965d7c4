"""SQLite: what the dashboard reads about queues and streams (read-only)."""

from __future__ import annotations

import sqlite3

from ._columns import queue_activity, workflow_streams
from ._queries import load_queries
from ._rows import QueueActivity, StreamEntry
from ._sqlite_connection import SQLiteConnection

__all__ = ["SQLiteDashboardReads"]

Q = load_queries("sqlite")


class SQLiteDashboardReads:
    """The dashboard's reads on the SQLite system database."""

    _db: SQLiteConnection

    async def queue_activity(
        self, since_ms: int, period_ms: int, periods: int
    ) -> list[QueueActivity]:
        def op(conn: sqlite3.Connection) -> list[QueueActivity]:
            counts = conn.execute(Q["queue_counts"]).fetchall()
            params = {"since": since_ms, "period": period_ms}
            starts = conn.execute(Q["queue_starts"], params).fetchall()
            return queue_activity(counts, starts, periods)

        return await self._db.read(op)

    async def workflow_streams(self, workflow_id: str, limit: int) -> dict[str, list[StreamEntry]]:
        def op(conn: sqlite3.Connection) -> dict[str, list[StreamEntry]]:
            rows = conn.execute(Q["workflow_streams"], (workflow_id, limit)).fetchall()
            return workflow_streams(rows)

        return await self._db.read(op)
