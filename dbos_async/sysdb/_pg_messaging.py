"""Postgres: messages, events and streams.

Each write is one statement (data-modifying CTEs), so the message, event or stream row,
the step row of the workflow that wrote it, and the ``pg_notify`` that wakes waiters in
other processes commit together. The LISTEN side is ``_pg_listener``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from .._errors import SEND_DESTINATION, DBOSNonExistentWorkflowError
from ._columns import step_row_or_none, stream_entry
from ._keys import notification_key
from ._pg_errors import raise_if_fenced
from ._pg_pool import PostgresPool
from ._queries import load_queries
from ._rows import MessageRow, StepRow, StreamEntry

__all__ = ["PostgresMessaging"]

Q = load_queries("postgres")


def _step_params(step: StepRow | None) -> tuple[Any, Any, Any]:
    if step is None:
        return None, None, None
    return step.function_id, step.function_name, step.output


class PostgresMessaging:
    """The messaging half of the Postgres system database."""

    def __init__(self, pool: PostgresPool) -> None:
        self._pg = pool
        #: The process whose workflows' writes this database makes (set by the runtime
        #: before it connects; None for a client): see ``SystemDatabase.owner``.
        self.owner: str | None = None

    async def send_message(self, message: MessageRow, step: StepRow | None) -> None:
        fid, fname, out = _step_params(step)
        wake = notification_key("msg", message.destination_id, message.topic)

        async def op(conn: Any) -> None:
            await conn.execute(
                Q["send_message"],
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
                self.owner,
            )

        try:
            await self._pg.retrying(op)
        except asyncpg.ForeignKeyViolationError:
            raise DBOSNonExistentWorkflowError(message.destination_id, SEND_DESTINATION) from None
        except asyncpg.PostgresError as exc:
            raise_if_fenced(exc, step.workflow_id if step else None)
            raise

    async def send_messages(self, messages: Sequence[MessageRow], step: StepRow | None) -> None:
        fid, fname, out = _step_params(step)
        sender = step.workflow_id if step else None

        async def op(conn: Any) -> None:
            # One transaction: each message's statement also writes the step row (once:
            # the rest find it there) and its receiver's wake-up, delivered at commit.
            async with conn.transaction():
                for message in messages:
                    try:
                        await conn.execute(
                            Q["send_message"],
                            message.message_uuid,
                            message.destination_id,
                            message.topic,
                            message.message,
                            message.created_at,
                            sender,
                            fid,
                            fname,
                            out,
                            notification_key("msg", message.destination_id, message.topic),
                            self.owner,
                        )
                    except asyncpg.ForeignKeyViolationError:
                        raise DBOSNonExistentWorkflowError(
                            message.destination_id, SEND_DESTINATION
                        ) from None

        try:
            await self._pg.retrying(op)
        except asyncpg.PostgresError as exc:
            raise_if_fenced(exc, sender)
            raise

    async def receive_message(self, workflow_id: str, topic: str, step: StepRow) -> StepRow | None:
        async def op(conn: Any) -> StepRow | None:
            r = await conn.fetchrow(
                Q["receive_message"],
                workflow_id,
                topic,
                step.function_id,
                step.function_name,
                step.completed_at_epoch_ms,
                self.owner,
            )
            return step_row_or_none(r)

        try:
            return await self._pg.retrying(op)
        except asyncpg.PostgresError as exc:
            raise_if_fenced(exc, workflow_id)
            raise

    async def set_event(self, workflow_id: str, key: str, value: str, step: StepRow | None) -> None:
        fid, fname, out = _step_params(step)
        now = step.completed_at_epoch_ms if step else None

        async def op(conn: Any) -> None:
            await conn.execute(
                Q["set_event"],
                workflow_id,
                key,
                value,
                fid,
                fname,
                out,
                now,
                notification_key("event", workflow_id, key),
                self.owner,
            )

        try:
            await self._pg.retrying(op)
        except asyncpg.PostgresError as exc:
            raise_if_fenced(exc, workflow_id if self.owner is not None else None)
            raise

    async def get_event(self, workflow_id: str, key: str) -> str | None:
        async def op(conn: Any) -> str | None:
            value: str | None = await conn.fetchval(Q["get_event"], workflow_id, key)
            return value

        return await self._pg.retrying(op)

    async def get_all_events(self, workflow_id: str) -> dict[str, str]:
        async def op(conn: Any) -> dict[str, str]:
            return {r[0]: r[1] for r in await conn.fetch(Q["get_all_events"], workflow_id)}

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
                        Q["write_stream"],
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
                        self.owner,
                    )
                    return
                except asyncpg.UniqueViolationError:
                    continue  # a concurrent write took this offset: take the next
            raise RuntimeError(f"stream {key!r} of {workflow_id!r}: no free offset after 100 tries")

        try:
            await self._pg.retrying(op)
        except asyncpg.ForeignKeyViolationError:
            raise DBOSNonExistentWorkflowError(workflow_id) from None
        except asyncpg.PostgresError as exc:
            raise_if_fenced(exc, workflow_id)
            raise

    async def announce(self, key: str) -> None:
        async def op(conn: Any) -> None:
            await conn.execute(Q["announce"], key)

        await self._pg.retrying(op)

    async def read_stream(self, workflow_id: str, key: str, from_offset: int) -> list[StreamEntry]:
        async def op(conn: Any) -> list[StreamEntry]:
            rows = await conn.fetch(Q["read_stream"], workflow_id, key, from_offset)
            return [stream_entry(r) for r in rows]

        return await self._pg.retrying(op)
