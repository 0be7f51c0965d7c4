"""Postgres: messages, events and streams, and the LISTEN connection that wakes waiters.

Each write is one statement (data-modifying CTEs), so the message, event or stream row,
the step row of the workflow that wrote it, and the ``pg_notify`` that wakes waiters in
other processes commit together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import asyncpg

from .._errors import DBOSNonExistentWorkflowError
from ._columns import STEP_COLUMNS, column_list
from ._keys import notification_key
from ._pg_errors import is_transient
from ._rows import MessageRow, StepRow, StreamEntry

if TYPE_CHECKING:
    from ._postgres import PostgresPool

__all__ = ["CHANNEL", "PostgresListener", "PostgresMessaging"]

log = logging.getLogger("dbos_async")

CHANNEL = "dbos_async_notify"

# An optional step row, inserted with the write: parameters $S1..$S6 of each statement.
_STEP_CTE = (
    "s AS (INSERT INTO dbos_async.operation_outputs (workflow_uuid, function_id,"
    " function_name, output, started_at_epoch_ms, completed_at_epoch_ms)"
    " SELECT {0}::text, {1}::int, {2}::text, {3}::text, {4}::bigint, {4}::bigint"
    " WHERE {1}::int IS NOT NULL"
    " ON CONFLICT (workflow_uuid, function_id) DO NOTHING RETURNING 1)"
)

_SEND = (
    "WITH m AS (INSERT INTO dbos_async.notifications (message_uuid, destination_uuid, topic,"
    " message, created_at_epoch_ms) VALUES ($1, $2, $3, $4, $5)"
    " ON CONFLICT (message_uuid) DO NOTHING RETURNING 1), "
    + _STEP_CTE.format("$6", "$7", "$8", "$9", "$5")
    + " SELECT pg_notify('"
    + CHANNEL
    + "', $10)"
)
# The function (in the schema) takes the step row before it consumes, so a repeat finds
# the step recorded and consumes nothing more.
_RECEIVE = (
    "SELECT " + column_list(STEP_COLUMNS) + " FROM dbos_async.receive_message($1::text, $2::text,"
    " $3::int, $4::text, $5::bigint)"
)
_SET_EVENT = (
    "WITH e AS (INSERT INTO dbos_async.workflow_events (workflow_uuid, key, value)"
    " VALUES ($1, $2, $3) ON CONFLICT (workflow_uuid, key) DO UPDATE SET value = EXCLUDED.value"
    " RETURNING 1), "
    + _STEP_CTE.format("$1", "$4", "$5", "$6", "$7")
    + " SELECT pg_notify('"
    + CHANNEL
    + "', $8)"
)
_GET_EVENT = "SELECT value FROM dbos_async.workflow_events WHERE workflow_uuid = $1 AND key = $2"
_GET_ALL_EVENTS = "SELECT key, value FROM dbos_async.workflow_events WHERE workflow_uuid = $1"
# Each write carries a key ($10), so a repeat after a lost reply adds nothing.
_WRITE_STREAM = (
    "WITH w AS (INSERT INTO dbos_async.streams"
    ' (workflow_uuid, key, "offset", value, closed, write_key)'
    ' SELECT $1, $2, COALESCE(MAX("offset") + 1, 0), $3, $4, $10 FROM dbos_async.streams'
    " WHERE workflow_uuid = $1 AND key = $2"
    " ON CONFLICT (workflow_uuid, write_key) WHERE write_key IS NOT NULL DO NOTHING"
    " RETURNING 1), "
    + _STEP_CTE.format("$1", "$5", "$6", "$7", "$8")
    + " SELECT pg_notify('"
    + CHANNEL
    + "', $9)"
)
_READ_STREAM = (
    'SELECT "offset", value, closed FROM dbos_async.streams'
    ' WHERE workflow_uuid = $1 AND key = $2 AND "offset" >= $3 ORDER BY "offset"'
)


def _step_params(step: StepRow | None) -> tuple[Any, Any, Any]:
    if step is None:
        return None, None, None
    return step.function_id, step.function_name, step.output


class PostgresMessaging:
    """The messaging half of the Postgres system database."""

    def __init__(self, pool: PostgresPool) -> None:
        self._pg = pool

    async def send_message(self, message: MessageRow, step: StepRow | None) -> None:
        fid, fname, out = _step_params(step)
        wake = notification_key("msg", message.destination_id, message.topic)

        async def op(conn: Any) -> None:
            await conn.execute(
                _SEND,
                message.message_uuid,
                message.destination_id,
                message.topic,
                message.message,
                message.created_at,
                step.workflow_id if step else None,
                fid,
                fname,
                out,
                wake,
            )

        try:
            await self._pg.retrying(op)
        except asyncpg.ForeignKeyViolationError:
            raise DBOSNonExistentWorkflowError(message.destination_id) from None

    async def receive_message(self, workflow_id: str, topic: str, step: StepRow) -> StepRow | None:
        async def op(conn: Any) -> StepRow | None:
            r = await conn.fetchrow(
                _RECEIVE,
                workflow_id,
                topic,
                step.function_id,
                step.function_name,
                step.completed_at_epoch_ms,
            )
            return None if r is None else StepRow(*r)

        return await self._pg.retrying(op)

    async def set_event(self, workflow_id: str, key: str, value: str, step: StepRow | None) -> None:
        fid, fname, out = _step_params(step)
        now = step.completed_at_epoch_ms if step else None

        async def op(conn: Any) -> None:
            await conn.execute(
                _SET_EVENT,
                workflow_id,
                key,
                value,
                fid,
                fname,
                out,
                now,
                notification_key("event", workflow_id, key),
            )

        await self._pg.retrying(op)

    async def get_event(self, workflow_id: str, key: str) -> str | None:
        async def op(conn: Any) -> str | None:
            value: str | None = await conn.fetchval(_GET_EVENT, workflow_id, key)
            return value

        return await self._pg.retrying(op)

    async def get_all_events(self, workflow_id: str) -> dict[str, str]:
        async def op(conn: Any) -> dict[str, str]:
            return {r[0]: r[1] for r in await conn.fetch(_GET_ALL_EVENTS, workflow_id)}

        return await self._pg.retrying(op)

    async def write_stream(
        self, workflow_id: str, key: str, value: str | None, closed: bool, step: StepRow | None
    ) -> None:
        fid, fname, out = _step_params(step)
        now = step.completed_at_epoch_ms if step else None
        # A workflow's write is keyed by its step (a second run of the step adds nothing);
        # a step's write by this call.
        write_key = f"step-{fid}" if fid is not None else uuid.uuid4().hex

        async def op(conn: Any) -> None:
            for _ in range(100):
                try:
                    await conn.execute(
                        _WRITE_STREAM,
                        workflow_id,
                        key,
                        value,
                        closed,
                        fid,
                        fname,
                        out,
                        now,
                        notification_key("stream", workflow_id, key),
                        write_key,
                    )
                    return
                except asyncpg.UniqueViolationError:
                    continue  # a concurrent write took this offset: take the next
            raise RuntimeError(f"stream {key!r} of {workflow_id!r}: no free offset after 100 tries")

        try:
            await self._pg.retrying(op)
        except asyncpg.ForeignKeyViolationError:
            raise DBOSNonExistentWorkflowError(workflow_id) from None

    async def announce(self, key: str) -> None:
        async def op(conn: Any) -> None:
            await conn.execute(_ANNOUNCE, key)

        await self._pg.retrying(op)

    async def read_stream(self, workflow_id: str, key: str, from_offset: int) -> list[StreamEntry]:
        async def op(conn: Any) -> list[StreamEntry]:
            rows = await conn.fetch(_READ_STREAM, workflow_id, key, from_offset)
            return [StreamEntry(r[0], r[1], r[2]) for r in rows]

        return await self._pg.retrying(op)


_ANNOUNCE = "SELECT pg_notify('" + CHANNEL + "', $1)"


class PostgresListener:
    """One LISTEN connection per process, outside the pool, reconnecting with backoff
    after Postgres restarts. After a reconnect every waiter is woken ("*") to re-check
    what it may have missed."""

    def __init__(self, pool: PostgresPool) -> None:
        self._pg = pool
        self._conn: asyncpg.Connection | None = None
        self._on_notify: Callable[[str], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._closing = False

    async def start(self, on_notify: Callable[[str], None]) -> None:
        self._on_notify = on_notify
        try:
            await self._connect()
        except Exception as exc:
            if not is_transient(exc):
                raise
            # Cut while connecting: the keep-alive loop connects again.
            log.warning("LISTEN connection lost while connecting (%r); retrying", exc)
            self._lost.set()
        self._task = asyncio.get_running_loop().create_task(self._keep_alive())

    def _deliver(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        if self._on_notify is not None:
            self._on_notify(str(payload))

    def _terminated(self, _conn: object) -> None:
        self._lost.set()

    async def _connect(self) -> None:
        conn = await asyncpg.connect(self._pg.url, timeout=self._pg.connect_timeout)
        try:
            await conn.add_listener(CHANNEL, self._deliver)
            conn.add_termination_listener(self._terminated)
        except BaseException:
            conn.terminate()
            raise
        self._conn = conn

    async def _alive(self) -> bool:
        conn = self._conn
        if self._lost.is_set() or conn is None or conn.is_closed():
            return False
        try:
            # Bounded: a half-open socket (no RST after a failover) never answers.
            await conn.execute("SELECT 1", timeout=2.0)
            return True
        except Exception as exc:
            log.info("LISTEN connection check failed: %r", exc)
            return False

    async def _keep_alive(self) -> None:
        """Never ends by itself: whatever breaks the connection, it connects again, with
        a pause doubling up to 5 s, and then wakes every waiter ("*")."""
        delay = 0.1
        while not self._closing:
            # Wake up now and then to check the connection: termination is not always
            # reported when the server goes away.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):  # (wait_for may swallow a cancel in 3.11)
                    await self._lost.wait()
            if await self._alive():
                continue
            self._lost.clear()
            if self._conn is not None:
                self._conn.terminate()
                self._conn = None
            while not self._closing:
                try:
                    await self._connect()
                except Exception as exc:
                    log.warning("LISTEN connection lost (%r); retrying in %.1fs", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                delay = 0.1
                log.info("LISTEN connection to Postgres restored")
                if self._on_notify is not None:
                    self._on_notify("*")
                break

    async def stop(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                await asyncio.wait_for(conn.close(), timeout=2.0)
            except Exception:
                conn.terminate()
