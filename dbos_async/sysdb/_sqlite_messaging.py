"""SQLite: messages, events and streams. No push notifications: waiters in other
processes poll (waiters in this process are woken by the engine directly)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from .._errors import SEND_DESTINATION, DBOSNonExistentWorkflowError, WorkflowOwnershipLost
from ._columns import step_row, stream_entry
from ._queries import load_queries
from ._rows import MessageRow, StepRow, StreamEntry
from ._sqlite_connection import SQLiteConnection

__all__ = ["SQLiteMessaging"]

Q = load_queries("sqlite")


def _insert_step(conn: sqlite3.Connection, step: StepRow | None) -> None:
    if step is not None:
        conn.execute(
            Q["record_message_step"],
            (
                step.workflow_id,
                step.function_id,
                step.function_name,
                step.output,
                step.started_at_epoch_ms,
                step.completed_at_epoch_ms,
            ),
        )


def _require_owner(conn: sqlite3.Connection, workflow_id: str | None, owner: str | None) -> None:
    """A workflow's write commits only if ``owner`` owns the workflow (the check and the
    write are in one transaction: SQLite has one writer). Nothing to check without a
    workflow, or for a client (no owner)."""
    if workflow_id is None or owner is None:
        return
    cur = conn.execute(Q["owner_of"], (workflow_id,))
    found = cur.fetchone()
    if found is None or found[0] != owner:
        raise WorkflowOwnershipLost(workflow_id)


def _require_workflow(
    conn: sqlite3.Connection, workflow_id: str, destination: str = "target"
) -> None:
    cur = conn.execute(Q["workflow_exists"], (workflow_id,))
    if cur.fetchone() is None:
        raise DBOSNonExistentWorkflowError(workflow_id, destination)


class SQLiteMessaging:
    """The messaging half of the SQLite system database."""

    _db: SQLiteConnection
    owner: str | None

    async def send_message(self, message: MessageRow, step: StepRow | None) -> None:
        def op(conn: sqlite3.Connection) -> None:
            _require_owner(conn, step.workflow_id if step else None, self.owner)
            _require_workflow(conn, message.destination_id, SEND_DESTINATION)
            conn.execute(
                Q["send_message"],
                (
                    message.message_uuid,
                    message.destination_id,
                    message.topic,
                    message.message,
                    message.created_at,
                ),
            )
            _insert_step(conn, step)

        await self._db.write(op)

    async def send_messages(self, messages: Sequence[MessageRow], step: StepRow | None) -> None:
        def op(conn: sqlite3.Connection) -> None:
            _require_owner(conn, step.workflow_id if step else None, self.owner)
            for message in messages:
                _require_workflow(conn, message.destination_id, SEND_DESTINATION)
                conn.execute(
                    Q["send_message"],
                    (
                        message.message_uuid,
                        message.destination_id,
                        message.topic,
                        message.message,
                        message.created_at,
                    ),
                )
            _insert_step(conn, step)

        await self._db.write(op)

    async def receive_message(self, workflow_id: str, topic: str, step: StepRow) -> StepRow | None:
        def anything(conn: sqlite3.Connection) -> bool:
            args = (workflow_id, step.function_id, workflow_id, topic)
            cur = conn.execute(Q["anything_to_receive"], args)
            return cur.fetchone() is not None

        # A waiter's poll that finds nothing is a read: the file's write lock is taken only
        # to consume (a thousand idle waiters would otherwise queue every writer behind
        # their polls).
        if not await self._db.read(anything):
            return None

        def op(conn: sqlite3.Connection) -> StepRow | None:
            # Recorded already (by another run of this workflow): consume nothing more.
            cur = conn.execute(Q["get_step"], (workflow_id, step.function_id))
            stored = cur.fetchone()
            if stored is not None:
                _require_owner(conn, workflow_id, self.owner)
                return step_row(stored)
            cur = conn.execute(Q["consume_message"], (workflow_id, topic))
            row = cur.fetchone()
            if row is None:
                return None
            _require_owner(conn, workflow_id, self.owner)  # (else the consume rolls back)
            step.output = str(row[0])
            _insert_step(conn, step)
            return step

        return await self._db.write(op)

    async def set_event(self, workflow_id: str, key: str, value: str, step: StepRow | None) -> None:
        def op(conn: sqlite3.Connection) -> None:
            _require_owner(conn, workflow_id, self.owner)
            _require_workflow(conn, workflow_id)
            conn.execute(Q["set_event"], (workflow_id, key, value))
            _insert_step(conn, step)

        await self._db.write(op)

    async def get_event(self, workflow_id: str, key: str) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            cur = conn.execute(Q["get_event"], (workflow_id, key))
            row = cur.fetchone()
            return None if row is None else str(row[0])

        return await self._db.read(op)

    async def get_all_events(self, workflow_id: str) -> dict[str, str]:
        def op(conn: sqlite3.Connection) -> dict[str, str]:
            cur = conn.execute(Q["get_all_events"], (workflow_id,))
            return {str(r[0]): str(r[1]) for r in cur.fetchall()}

        return await self._db.read(op)

    async def write_stream(
        self, workflow_id: str, key: str, value: str | None, closed: bool, step: StepRow | None
    ) -> None:
        def op(conn: sqlite3.Connection) -> None:
            _require_owner(conn, workflow_id, self.owner)
            _require_workflow(conn, workflow_id)
            write_key = None if step is None else f"step-{step.function_id}"
            conn.execute(
                Q["write_stream"],
                (workflow_id, key, value, int(closed), write_key, workflow_id, key),
            )
            _insert_step(conn, step)

        await self._db.write(op)

    async def read_stream(self, workflow_id: str, key: str, from_offset: int) -> list[StreamEntry]:
        def op(conn: sqlite3.Connection) -> list[StreamEntry]:
            cur = conn.execute(Q["read_stream"], (workflow_id, key, from_offset))
            return [stream_entry(r) for r in cur.fetchall()]

        return await self._db.read(op)

    async def listen(self, on_notify: Callable[[str], None]) -> bool:
        return False

    async def unlisten(self) -> None:
        return None

    async def announce(self, key: str) -> None:
        return None
