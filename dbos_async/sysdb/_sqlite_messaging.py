"""SQLite: messages, events and streams. No push notifications: waiters in other
processes poll (waiters in this process are woken by the engine directly)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import aiosqlite

from .._errors import DBOSNonExistentWorkflowError
from ._columns import STEP_COLUMNS, column_list
from ._rows import MessageRow, StepRow, StreamEntry

if TYPE_CHECKING:
    from ._sqlite import SQLiteConnection

__all__ = ["SQLiteMessaging"]

_WORKFLOW_EXISTS = "SELECT 1 FROM dbos_workflow_status WHERE workflow_uuid = ?"
_SEND = (
    "INSERT INTO dbos_notifications (message_uuid, destination_uuid, topic, message,"
    " created_at_epoch_ms) VALUES (?, ?, ?, ?, ?) ON CONFLICT (message_uuid) DO NOTHING"
)
_INSERT_STEP = (
    "INSERT INTO dbos_operation_outputs (workflow_uuid, function_id, function_name, output,"
    " started_at_epoch_ms, completed_at_epoch_ms) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (workflow_uuid, function_id) DO NOTHING"
)
_CONSUME = (
    "UPDATE dbos_notifications SET consumed = 1 WHERE seq = (SELECT seq FROM dbos_notifications"
    " WHERE destination_uuid = ? AND topic = ? AND consumed = 0 ORDER BY seq LIMIT 1)"
    " RETURNING message"
)
_SET_EVENT = (
    "INSERT INTO dbos_workflow_events (workflow_uuid, key, value) VALUES (?, ?, ?)"
    " ON CONFLICT (workflow_uuid, key) DO UPDATE SET value = excluded.value"
)
_GET_EVENT = "SELECT value FROM dbos_workflow_events WHERE workflow_uuid = ? AND key = ?"
_GET_ALL_EVENTS = "SELECT key, value FROM dbos_workflow_events WHERE workflow_uuid = ?"
# Keyed, as on Postgres: a second run of a workflow's write step adds nothing.
_WRITE_STREAM = (
    'INSERT INTO dbos_streams (workflow_uuid, key, "offset", value, closed, write_key)'
    ' SELECT ?, ?, COALESCE(MAX("offset") + 1, 0), ?, ?, ? FROM dbos_streams'
    " WHERE workflow_uuid = ? AND key = ?"
    " ON CONFLICT (workflow_uuid, write_key) WHERE write_key IS NOT NULL DO NOTHING"
)
_GET_STEP = (
    "SELECT " + column_list(STEP_COLUMNS) + " FROM dbos_operation_outputs"
    " WHERE workflow_uuid = ? AND function_id = ?"
)
_READ_STREAM = (
    'SELECT "offset", value, closed FROM dbos_streams'
    ' WHERE workflow_uuid = ? AND key = ? AND "offset" >= ? ORDER BY "offset"'
)


async def _insert_step(conn: aiosqlite.Connection, step: StepRow | None) -> None:
    if step is not None:
        await conn.execute(
            _INSERT_STEP,
            (
                step.workflow_id,
                step.function_id,
                step.function_name,
                step.output,
                step.started_at_epoch_ms,
                step.completed_at_epoch_ms,
            ),
        )


async def _require_workflow(conn: aiosqlite.Connection, workflow_id: str) -> None:
    cur = await conn.execute(_WORKFLOW_EXISTS, (workflow_id,))
    if await cur.fetchone() is None:
        raise DBOSNonExistentWorkflowError(workflow_id)


class SQLiteMessaging:
    """The messaging half of the SQLite system database."""

    _db: SQLiteConnection

    async def send_message(self, message: MessageRow, step: StepRow | None) -> None:
        async def op(conn: aiosqlite.Connection) -> None:
            await _require_workflow(conn, message.destination_id)
            await conn.execute(
                _SEND,
                (
                    message.message_uuid,
                    message.destination_id,
                    message.topic,
                    message.message,
                    message.created_at,
                ),
            )
            await _insert_step(conn, step)

        await self._db.write(op)

    async def receive_message(self, workflow_id: str, topic: str, step: StepRow) -> StepRow | None:
        async def op(conn: aiosqlite.Connection) -> StepRow | None:
            # Recorded already (by another run of this workflow): consume nothing more.
            cur = await conn.execute(_GET_STEP, (workflow_id, step.function_id))
            stored = await cur.fetchone()
            if stored is not None:
                return StepRow(*stored)
            cur = await conn.execute(_CONSUME, (workflow_id, topic))
            row = await cur.fetchone()
            if row is None:
                return None
            step.output = str(row[0])
            await _insert_step(conn, step)
            return step

        return await self._db.write(op)

    async def set_event(self, workflow_id: str, key: str, value: str, step: StepRow | None) -> None:
        async def op(conn: aiosqlite.Connection) -> None:
            await _require_workflow(conn, workflow_id)
            await conn.execute(_SET_EVENT, (workflow_id, key, value))
            await _insert_step(conn, step)

        await self._db.write(op)

    async def get_event(self, workflow_id: str, key: str) -> str | None:
        async def op(conn: aiosqlite.Connection) -> str | None:
            cur = await conn.execute(_GET_EVENT, (workflow_id, key))
            row = await cur.fetchone()
            return None if row is None else str(row[0])

        return await self._db.read(op)

    async def get_all_events(self, workflow_id: str) -> dict[str, str]:
        async def op(conn: aiosqlite.Connection) -> dict[str, str]:
            cur = await conn.execute(_GET_ALL_EVENTS, (workflow_id,))
            return {str(r[0]): str(r[1]) for r in await cur.fetchall()}

        return await self._db.read(op)

    async def write_stream(
        self, workflow_id: str, key: str, value: str | None, closed: bool, step: StepRow | None
    ) -> None:
        async def op(conn: aiosqlite.Connection) -> None:
            await _require_workflow(conn, workflow_id)
            write_key = None if step is None else f"step-{step.function_id}"
            await conn.execute(
                _WRITE_STREAM, (workflow_id, key, value, int(closed), write_key, workflow_id, key)
            )
            await _insert_step(conn, step)

        await self._db.write(op)

    async def read_stream(self, workflow_id: str, key: str, from_offset: int) -> list[StreamEntry]:
        async def op(conn: aiosqlite.Connection) -> list[StreamEntry]:
            cur = await conn.execute(_READ_STREAM, (workflow_id, key, from_offset))
            return [StreamEntry(r[0], r[1], bool(r[2])) for r in await cur.fetchall()]

        return await self._db.read(op)

    async def listen(self, on_notify: Callable[[str], None]) -> bool:
        return False

    async def unlisten(self) -> None:
        return None

    async def announce(self, key: str) -> None:
        return None
