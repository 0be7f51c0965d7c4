"""SQLite backend: the system and application databases, each on one ``SQLiteConnection``.

The layers, each importing only those below: ``_queries`` (the statements,
``sql/sqlite/queries``); ``_sqlite_thread`` (a read or a whole write transaction as one
plain ``sqlite3`` function, run in one trip to the connection's thread);
``_sqlite_connection`` (one aiosqlite connection, the per-file write lock and the rules
that make sharing a file safe: read its docstring); the parts of the system database
(``_sqlite_messaging``, ``_sqlite_management``, ``_sqlite_queues``, ``_sqlite_leases``,
``_sqlite_versions``, ``_sqlite_schedules``); and this module, which puts the system
database together, and the application database.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiosqlite

from .._errors import WorkflowOwnershipLost
from ._columns import (
    step_params,
    step_row,
    step_row_or_none,
    workflow_params,
    workflow_row_or_none,
)
from ._protocol import TransactionConflict
from ._queries import load_queries
from ._results import finish_result, insert_result, step_result
from ._rows import (
    Fenced,
    InsertWorkflow,
    RecordStep,
    StepRow,
    WorkflowRow,
    Write,
    WriteResult,
)
from ._sessions import Sessions, driver_error
from ._sqlite_connection import SQLiteConnection, is_busy
from ._sqlite_dashboard import SQLiteDashboardReads
from ._sqlite_leases import SQLiteLeases
from ._sqlite_management import SQLiteManagement
from ._sqlite_messaging import SQLiteMessaging
from ._sqlite_queues import SQLiteQueues
from ._sqlite_schedules import SQLiteSchedules
from ._sqlite_versions import SQLiteVersions

__all__ = ["SQLiteApplicationDatabase", "SQLiteConnection", "SQLiteSystemDatabase"]

T = TypeVar("T")
Q = load_queries("sqlite")


def _write(conn: sqlite3.Connection, write: Write, retry: bool, owner: str | None) -> WriteResult:
    """One write inside a batch's transaction; steps and finishes only for workflows
    ``owner`` owns (else ``Fenced``)."""
    if isinstance(write, InsertWorkflow):
        row = write.row
        cur = conn.execute(Q["insert_workflow"], workflow_params(row))
        if cur.rowcount == 1:
            return None
        cur = conn.execute(Q["get_workflow"], (row.workflow_id,))
        return insert_result(row, workflow_row_or_none(cur.fetchone()), retry)
    if isinstance(write, RecordStep):
        step = write.step
        cur = conn.execute(Q["insert_step"], (*step_params(step), owner))
        if cur.rowcount == 1:
            return step
        cur = conn.execute(Q["owner_of"], (step.workflow_id,))
        found = cur.fetchone()
        if found is None or found[0] != owner:
            return Fenced(step.workflow_id)
        cur = conn.execute(Q["get_step"], (step.workflow_id, step.function_id))
        return step_result(step, step_row_or_none(cur.fetchone()))
    cur = conn.execute(
        Q["finish_workflow"],
        (write.status, write.output, write.error, write.updated_at, write.workflow_id, owner),
    )
    if cur.rowcount == 1:
        return True
    cur = conn.execute(Q["get_workflow"], (write.workflow_id,))
    return finish_result(write, workflow_row_or_none(cur.fetchone()), retry, owner)


class SQLiteSystemDatabase(
    SQLiteMessaging,
    SQLiteManagement,
    SQLiteQueues,
    SQLiteLeases,
    SQLiteVersions,
    SQLiteSchedules,
    SQLiteDashboardReads,
):
    """The system database on SQLite."""

    def __init__(self, db: SQLiteConnection) -> None:
        self._db = db
        self.url = db.url
        #: The process whose workflows' writes this database makes (set by the runtime
        #: before it connects; None for a client): see ``SystemDatabase.owner``.
        self.owner: str | None = None

    async def connect(self) -> None:
        await self._db.open()
        try:
            await self._db.migrate("system")
        except BaseException:
            await self._db.close()
            raise

    async def close(self) -> None:
        await self._db.close()

    async def write_batch(
        self, writes: Sequence[Write], *, retry: bool = False
    ) -> list[WriteResult]:
        def op(conn: sqlite3.Connection) -> list[WriteResult]:
            return [_write(conn, w, retry, self.owner) for w in writes]

        return await self._db.write(op)

    async def get_workflow(self, workflow_id: str) -> WorkflowRow | None:
        def op(conn: sqlite3.Connection) -> WorkflowRow | None:
            cur = conn.execute(Q["get_workflow"], (workflow_id,))
            return workflow_row_or_none(cur.fetchone())

        return await self._db.read(op)

    async def load_steps(self, workflow_id: str) -> list[StepRow]:
        def op(conn: sqlite3.Connection) -> list[StepRow]:
            cur = conn.execute(Q["load_steps"], (workflow_id,))
            return [step_row(r) for r in cur.fetchall()]

        return await self._db.read(op)

    async def load_steps_many(self, workflow_ids: Sequence[str]) -> dict[str, list[StepRow]]:
        def op(conn: sqlite3.Connection) -> dict[str, list[StepRow]]:
            found: dict[str, list[StepRow]] = {wid: [] for wid in workflow_ids}
            cur = conn.execute(Q["load_steps_many"], (json.dumps(list(workflow_ids)),))
            for r in cur.fetchall():
                found[r[0]].append(step_row(r))
            return found

        return await self._db.read(op)


class SQLiteApplicationDatabase:
    """The application database on SQLite. Transactions run one at a time per file (SQLite
    has one writer) as ``BEGIN IMMEDIATE``, queued with the file's other writes (module
    docstring); every isolation level is serializable."""

    def __init__(self, db: SQLiteConnection, *, fenced: bool = False) -> None:
        self._db = db
        self.url = db.url
        #: Whether a transaction's output commits only if its workflow's owner is
        #: ``owner`` (the system database is in this file too, so one statement checks).
        self.fenced = fenced
        self.owner: str | None = None
        self._sessions = Sessions("sqlite")

    async def connect(self) -> None:
        await self._db.open()
        try:
            await self._db.migrate("app")
        except BaseException:
            await self._db.close()
            raise

    async def close(self) -> None:
        self._sessions.close()
        await self._db.close()

    def sql_session(self, conn: Any) -> Any:
        return self._sessions.open(conn)

    async def end_sql_session(self, session: Any, *, flush: bool) -> None:
        await self._sessions.end(session, flush=flush)

    async def run_transaction(
        self,
        body: Callable[[Any], Awaitable[T]],
        isolation_level: str,
        record: Callable[[T], tuple[str, int, str]] | None,
    ) -> T:
        async def op(conn: aiosqlite.Connection) -> T:
            result = await body(conn)
            if record is not None:
                workflow_id, function_id, output = record(result)
                values = (workflow_id, function_id, output, int(time.time() * 1000))
                try:
                    if self.fenced:
                        cur = await conn.execute(
                            Q["insert_transaction_output_fenced"], (*values, self.owner)
                        )
                        if cur.rowcount == 0:  # (the writes of the body roll back)
                            raise WorkflowOwnershipLost(workflow_id)
                    else:
                        await conn.execute(Q["insert_transaction_output"], values)
                except sqlite3.IntegrityError as exc:
                    # Another run committed this step first: its output wins (the engine
                    # reads it back). This run's writes roll back.
                    raise TransactionConflict(str(exc)) from exc
            return result

        try:
            # Not retried here: a lock failure (another process holds the file past the
            # busy timeout) is the engine's to retry, as any conflict.
            return await self._db.transaction(op, retry_busy=False)
        except Exception as exc:
            cause = driver_error(exc)  # (a DBOS.sql_session statement's: SQLAlchemy's)
            if is_busy(cause):
                raise TransactionConflict(str(cause)) from exc
            raise

    async def get_transaction_output(self, workflow_id: str, function_id: int) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            cur = conn.execute(Q["get_transaction_output"], (workflow_id, function_id))
            r = cur.fetchone()
            return None if r is None else str(r[0])

        return await self._db.read(op)

    async def delete_transaction_outputs(self, workflow_ids: Sequence[str]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(Q["delete_transaction_outputs"], (json.dumps(list(workflow_ids)),))

        await self._db.write(op)
