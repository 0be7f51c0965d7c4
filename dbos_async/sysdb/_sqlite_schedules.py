"""SQLite: schedules stored as data."""

from __future__ import annotations

import sqlite3
from typing import Any

from ._queries import load_queries
from ._rows import ScheduleRow
from ._sqlite_connection import SQLiteConnection

__all__ = ["SQLiteSchedules"]

Q = load_queries("sqlite")


def _row(record: Any) -> ScheduleRow:
    row = ScheduleRow(*record)
    row.automatic_backfill = bool(row.automatic_backfill)
    return row


class SQLiteSchedules:
    """The schedule part of the SQLite system database."""

    _db: SQLiteConnection

    async def insert_schedule(self, schedule: ScheduleRow) -> bool:
        params = {
            "id": schedule.schedule_id,
            "name": schedule.schedule_name,
            "workflow": schedule.workflow_name,
            "schedule": schedule.schedule,
            "status": schedule.status,
            "context": schedule.context,
            "backfill": int(schedule.automatic_backfill),
            "tz": schedule.cron_timezone,
            "queue": schedule.queue_name,
            "now": schedule.created_at,
        }

        def op(conn: sqlite3.Connection) -> bool:
            return conn.execute(Q["insert_schedule"], params).fetchone() is not None

        return await self._db.write(op)

    async def get_schedule(self, schedule_name: str) -> ScheduleRow | None:
        def op(conn: sqlite3.Connection) -> ScheduleRow | None:
            record = conn.execute(Q["get_schedule"], {"name": schedule_name}).fetchone()
            return None if record is None else _row(record)

        return await self._db.read(op)

    async def list_schedules(self) -> list[ScheduleRow]:
        def op(conn: sqlite3.Connection) -> list[ScheduleRow]:
            return [_row(r) for r in conn.execute(Q["list_schedules"]).fetchall()]

        return await self._db.read(op)

    async def delete_schedule(self, schedule_name: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(Q["delete_schedule"], {"name": schedule_name})
            return cur.fetchone() is not None

        return await self._db.write(op)

    async def set_schedule_status(self, schedule_name: str, status: str, now: int) -> bool:
        params = {"name": schedule_name, "status": status, "now": now}

        def op(conn: sqlite3.Connection) -> bool:
            return conn.execute(Q["set_schedule_status"], params).fetchone() is not None

        return await self._db.write(op)

    async def record_schedule_fired(self, schedule_id: str, fired_at: int) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(Q["record_schedule_fired"], {"id": schedule_id, "fired": fired_at})

        await self._db.write(op)
