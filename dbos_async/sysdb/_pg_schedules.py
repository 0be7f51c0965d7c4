"""Postgres: schedules stored as data."""

from __future__ import annotations

from typing import Any

from ._pg_pool import PostgresPool
from ._queries import load_queries
from ._rows import ScheduleRow

__all__ = ["PostgresSchedules"]

Q = load_queries("postgres")


def _row(record: Any) -> ScheduleRow:
    return ScheduleRow(*record)


class PostgresSchedules:
    """The schedule part of the Postgres system database."""

    _pg: PostgresPool

    async def insert_schedule(self, schedule: ScheduleRow) -> bool:
        async def op(conn: Any) -> bool:
            inserted = await conn.fetchval(
                Q["insert_schedule"],
                schedule.schedule_id,
                schedule.schedule_name,
                schedule.workflow_name,
                schedule.schedule,
                schedule.status,
                schedule.context,
                schedule.automatic_backfill,
                schedule.cron_timezone,
                schedule.queue_name,
                schedule.created_at,
            )
            return inserted is not None

        return await self._pg.retrying(op)

    async def get_schedule(self, schedule_name: str) -> ScheduleRow | None:
        async def op(conn: Any) -> ScheduleRow | None:
            record = await conn.fetchrow(Q["get_schedule"], schedule_name)
            return None if record is None else _row(record)

        return await self._pg.retrying(op)

    async def list_schedules(self) -> list[ScheduleRow]:
        async def op(conn: Any) -> list[ScheduleRow]:
            return [_row(r) for r in await conn.fetch(Q["list_schedules"])]

        return await self._pg.retrying(op)

    async def delete_schedule(self, schedule_name: str) -> bool:
        async def op(conn: Any) -> bool:
            return await conn.fetchval(Q["delete_schedule"], schedule_name) is not None

        return await self._pg.retrying(op)

    async def set_schedule_status(self, schedule_name: str, status: str, now: int) -> bool:
        async def op(conn: Any) -> bool:
            found = await conn.fetchval(Q["set_schedule_status"], schedule_name, status, now)
            return found is not None

        return await self._pg.retrying(op)

    async def record_schedule_fired(self, schedule_id: str, fired_at: int) -> None:
        async def op(conn: Any) -> None:
            await conn.execute(Q["record_schedule_fired"], schedule_id, fired_at)

        await self._pg.retrying(op)
