"""SQLite backend: the system and application databases, each on one ``SQLiteConnection``.

The layers, each importing only those below: ``_queries`` (the statements,
``sql/sqlite/queries``); ``_sqlite_connection`` (one aiosqlite connection, the per-file
write lock and the rules that make sharing a file safe: read its docstring); the parts of
the system database (``_sqlite_messaging``, ``_sqlite_management``, ``_sqlite_queues``);
and this module, which puts the system database together, and the application database.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiosqlite

from ._columns import (
    step_params,
    step_row,
    step_row_or_none,
    workflow_params,
    workflow_row,
    workflow_row_or_none,
)
from ._protocol import TransactionConflict
from ._queries import load_queries
from ._results import finish_result, insert_result, step_result
from ._rows import (
    InsertWorkflow,
    RecordStep,
    RecoveryClaim,
    RecoveryRequest,
    StepRow,
    WorkflowRow,
    Write,
    WriteResult,
)
from ._sqlite_connection import SQLiteConnection, is_busy
from ._sqlite_management import SQLiteManagement
from ._sqlite_messaging import SQLiteMessaging
from ._sqlite_queues import SQLiteQueues

__all__ = ["SQLiteApplicationDatabase", "SQLiteConnection", "SQLiteSystemDatabase"]

T = TypeVar("T")
Q = load_queries("sqlite")


async def _write(conn: aiosqlite.Connection, write: Write, retry: bool) -> WriteResult:
    """One write inside a batch's transaction."""
    if isinstance(write, InsertWorkflow):
        row = write.row
        cur = await conn.execute(Q["insert_workflow"], workflow_params(row))
        if cur.rowcount == 1:
            return None
        cur = await conn.execute(Q["get_workflow"], (row.workflow_id,))
        return insert_result(row, workflow_row_or_none(await cur.fetchone()), retry)
    if isinstance(write, RecordStep):
        step = write.step
        cur = await conn.execute(Q["insert_step"], step_params(step))
        if cur.rowcount == 1:
            return step
        cur = await conn.execute(Q["get_step"], (step.workflow_id, step.function_id))
        return step_result(step, step_row_or_none(await cur.fetchone()))
    cur = await conn.execute(
        Q["finish_workflow"],
        (write.status, write.output, write.error, write.updated_at, write.workflow_id),
    )
    if cur.rowcount == 1:
        return True
    cur = await conn.execute(Q["get_workflow"], (write.workflow_id,))
    return finish_result(write, workflow_row_or_none(await cur.fetchone()), retry)


class SQLiteSystemDatabase(SQLiteMessaging, SQLiteManagement, SQLiteQueues):
    """The system database on SQLite."""

    def __init__(self, db: SQLiteConnection) -> None:
        self._db = db
        self.url = db.url

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
        async def op(conn: aiosqlite.Connection) -> list[WriteResult]:
            return [await _write(conn, w, retry) for w in writes]

        return await self._db.write(op)

    async def get_workflow(self, workflow_id: str) -> WorkflowRow | None:
        async def op(conn: aiosqlite.Connection) -> WorkflowRow | None:
            cur = await conn.execute(Q["get_workflow"], (workflow_id,))
            return workflow_row_or_none(await cur.fetchone())

        return await self._db.read(op)

    async def load_steps(self, workflow_id: str) -> list[StepRow]:
        async def op(conn: aiosqlite.Connection) -> list[StepRow]:
            cur = await conn.execute(Q["load_steps"], (workflow_id,))
            return [step_row(r) for r in await cur.fetchall()]

        return await self._db.read(op)

    async def pending_workflows(self, executor_id: str, app_version: str) -> list[WorkflowRow]:
        async def op(conn: aiosqlite.Connection) -> list[WorkflowRow]:
            cur = await conn.execute(Q["pending_workflows"], (executor_id, app_version))
            return [workflow_row(r) for r in await cur.fetchall()]

        return await self._db.read(op)

    async def load_steps_many(self, workflow_ids: Sequence[str]) -> dict[str, list[StepRow]]:
        async def op(conn: aiosqlite.Connection) -> dict[str, list[StepRow]]:
            found: dict[str, list[StepRow]] = {wid: [] for wid in workflow_ids}
            cur = await conn.execute(Q["load_steps_many"], (json.dumps(list(workflow_ids)),))
            for r in await cur.fetchall():
                found[r[0]].append(step_row(r))
            return found

        return await self._db.read(op)

    async def claim_for_recovery(
        self, claims: Sequence[RecoveryRequest], now_ms: int
    ) -> list[RecoveryClaim]:
        async def op(conn: aiosqlite.Connection) -> list[RecoveryClaim]:
            won = []
            for c in claims:
                cur = await conn.execute(
                    Q["claim_for_recovery"],
                    (c.max_attempts, now_ms, c.workflow_id, c.seen_attempts),
                )
                r = await cur.fetchone()
                if r is not None:
                    row = workflow_row(r)
                    won.append(
                        RecoveryClaim(row, exceeded=row.status == "MAX_RECOVERY_ATTEMPTS_EXCEEDED")
                    )
            return won

        return await self._db.write(op)


class SQLiteApplicationDatabase:
    """The application database on SQLite. Transactions run one at a time per file (SQLite
    has one writer) as ``BEGIN IMMEDIATE``, queued with the file's other writes (module
    docstring); every isolation level is serializable."""

    def __init__(self, db: SQLiteConnection) -> None:
        self._db = db
        self.url = db.url

    async def connect(self) -> None:
        await self._db.open()
        try:
            await self._db.migrate("app")
        except BaseException:
            await self._db.close()
            raise

    async def close(self) -> None:
        await self._db.close()

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
                try:
                    await conn.execute(
                        Q["insert_transaction_output"],
                        (workflow_id, function_id, output, int(time.time() * 1000)),
                    )
                except sqlite3.IntegrityError as exc:
                    # Another run committed this step first: its output wins (the engine
                    # reads it back). This run's writes roll back.
                    raise TransactionConflict(str(exc)) from exc
            return result

        try:
            # Not retried here: a lock failure (another process holds the file past the
            # busy timeout) is the engine's to retry, as any conflict.
            return await self._db.write(op, retry_busy=False)
        except sqlite3.OperationalError as exc:
            if is_busy(exc):
                raise TransactionConflict(str(exc)) from exc
            raise

    async def get_transaction_output(self, workflow_id: str, function_id: int) -> str | None:
        async def op(conn: aiosqlite.Connection) -> str | None:
            cur = await conn.execute(Q["get_transaction_output"], (workflow_id, function_id))
            r = await cur.fetchone()
            return None if r is None else str(r[0])

        return await self._db.read(op)
