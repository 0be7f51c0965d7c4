"""SQLite backend: the embedded default, one aiosqlite connection per database role.

The file is opened in WAL mode with a busy timeout, so several processes may share it;
within a process an ``asyncio.Lock`` gives each operation the connection to itself.
``sqlite:///:memory:`` keeps everything in one connection shared by both roles.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import aiosqlite

from .._errors import DBOSConnectionError
from ._migrations import load_schema_files, split_statements
from ._protocol import (
    STEP_COLUMNS,
    WORKFLOW_COLUMNS,
    InsertWorkflow,
    RecordStep,
    RecoveryClaim,
    RecoveryRequest,
    StepRow,
    TransactionConflict,
    WorkflowRow,
    Write,
    WriteResult,
)
from ._results import finish_result, insert_result, step_result
from ._sqlite_management import SQLiteManagement
from ._sqlite_messaging import SQLiteMessaging
from ._sqlite_queues import SQLiteQueues

__all__ = ["SQLiteApplicationDatabase", "SQLiteConnection", "SQLiteSystemDatabase"]

T = TypeVar("T")

_COLS = WORKFLOW_COLUMNS
_STEP_COLS = STEP_COLUMNS
_INSERT_WORKFLOW = (
    "INSERT INTO dbos_workflow_status (" + _COLS + ") VALUES "
    "(" + ", ".join("?" * (_COLS.count(",") + 1)) + ") "
    "ON CONFLICT (workflow_uuid) DO NOTHING"
)
_GET_WORKFLOW = "SELECT " + _COLS + " FROM dbos_workflow_status WHERE workflow_uuid = ?"
_FINISH_WORKFLOW = (
    "UPDATE dbos_workflow_status SET status = ?, output = ?, error = ?, updated_at = ? "
    "WHERE workflow_uuid = ? AND status = 'PENDING'"
)
_INSERT_STEP = (
    "INSERT INTO dbos_operation_outputs (" + _STEP_COLS + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (workflow_uuid, function_id) DO NOTHING"
)
_GET_STEP = (
    "SELECT " + _STEP_COLS + " FROM dbos_operation_outputs "
    "WHERE workflow_uuid = ? AND function_id = ?"
)
_LOAD_STEPS = (
    "SELECT " + _STEP_COLS + " FROM dbos_operation_outputs "
    "WHERE workflow_uuid = ? ORDER BY function_id"
)
_PENDING = (
    "SELECT " + _COLS + " FROM dbos_workflow_status "
    "WHERE status = 'PENDING' AND executor_id = ? AND application_version = ? "
    "ORDER BY created_at"
)
_CLAIM = (
    "UPDATE dbos_workflow_status SET recovery_attempts = recovery_attempts + 1, "
    "status = CASE WHEN recovery_attempts + 1 > ? "
    "THEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' ELSE status END, updated_at = ? "
    "WHERE workflow_uuid = ? AND status = 'PENDING' AND recovery_attempts = ? "
    "RETURNING " + _COLS
)
_LOAD_STEPS_MANY = (
    "SELECT " + _STEP_COLS + " FROM dbos_operation_outputs "
    "WHERE workflow_uuid IN (SELECT value FROM json_each(?)) ORDER BY workflow_uuid, function_id"
)
_INSERT_TX_OUTPUT = (
    "INSERT INTO dbos_transaction_outputs (workflow_uuid, function_id, output, created_at) "
    "VALUES (?, ?, ?, ?)"
)
_GET_TX_OUTPUT = (
    "SELECT output FROM dbos_transaction_outputs WHERE workflow_uuid = ? AND function_id = ?"
)


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///path`` URL (``sqlite:////abs/path`` for absolute)."""
    return url[len("sqlite:///") :]


class SQLiteConnection:
    """One aiosqlite connection and the lock that serializes its use in this process."""

    def __init__(self, url: str, *, create_missing: bool = True) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self.create_missing = create_missing
        self.lock = asyncio.Lock()
        self._conn: aiosqlite.Connection | None = None
        self._users = 0

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("the SQLite connection is not open")
        return self._conn

    async def open(self) -> None:
        self._users += 1
        if self._conn is not None:
            return
        missing = self.path != ":memory:" and not await asyncio.to_thread(os.path.exists, self.path)
        if missing and not self.create_missing:
            self._users -= 1
            raise DBOSConnectionError(f"SQLite database {self.path!r} does not exist")
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await conn.execute("PRAGMA busy_timeout = 30000")
            if self.path != ":memory:":
                await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = FULL")
            await conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            await conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        self._users -= 1
        if self._users <= 0 and self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def write(self, op: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run ``op`` in one ``BEGIN IMMEDIATE`` transaction; roll back on any failure."""
        async with self.lock:
            conn = self.conn
            try:
                await conn.execute("BEGIN IMMEDIATE")
                result = await op(conn)
                await conn.execute("COMMIT")
            except BaseException:
                # aiosqlite runs statements in order, so this follows whatever was sent.
                with contextlib.suppress(sqlite3.Error):
                    await conn.execute("ROLLBACK")
                raise
            return result

    async def read(self, op: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        async with self.lock:
            return await op(self.conn)

    async def migrate(self, component: str, *, from_migrations: bool = False) -> None:
        files = load_schema_files("sqlite", component)

        async def op(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS dbos_migrations (component TEXT NOT NULL, "
                "version INTEGER NOT NULL, applied_at INTEGER NOT NULL, "
                "PRIMARY KEY (component, version))"
            )
            cur = await conn.execute(
                "SELECT version FROM dbos_migrations WHERE component = ?", (component,)
            )
            applied = {r[0] for r in await cur.fetchall()}
            scripts: list[str] = []
            if not applied and not from_migrations:
                scripts.append(files.schema)
                todo = [m.version for m in files.migrations]
            else:
                todo = [m.version for m in files.migrations if m.version not in applied]
                scripts.extend(m.sql for m in files.migrations if m.version in todo)
            for script in scripts:
                for statement in split_statements(script):
                    await conn.execute(statement)
            now = int(time.time() * 1000)
            await conn.executemany(
                "INSERT INTO dbos_migrations (component, version, applied_at) VALUES (?, ?, ?)",
                [(component, v, now) for v in todo],
            )

        await self.write(op)


def _workflow_row(r: Any) -> WorkflowRow:
    return WorkflowRow(*r)


def _step_row(r: Any) -> StepRow:
    return StepRow(*r)


async def _write(conn: aiosqlite.Connection, write: Write, retry: bool) -> WriteResult:
    """One write inside a batch's transaction."""
    if isinstance(write, InsertWorkflow):
        row = write.row
        cur = await conn.execute(
            _INSERT_WORKFLOW,
            row.params(),
        )
        if cur.rowcount == 1:
            return None
        cur = await conn.execute(_GET_WORKFLOW, (row.workflow_id,))
        existing = await cur.fetchone()
        return insert_result(row, _workflow_row(existing) if existing else None, retry)
    if isinstance(write, RecordStep):
        step = write.step
        cur = await conn.execute(
            _INSERT_STEP,
            step.params(),
        )
        if cur.rowcount == 1:
            return step
        cur = await conn.execute(_GET_STEP, (step.workflow_id, step.function_id))
        stored = await cur.fetchone()
        return step_result(step, _step_row(stored) if stored is not None else None)
    cur = await conn.execute(
        _FINISH_WORKFLOW,
        (write.status, write.output, write.error, write.updated_at, write.workflow_id),
    )
    if cur.rowcount == 1:
        return True
    cur = await conn.execute(_GET_WORKFLOW, (write.workflow_id,))
    stored_row = await cur.fetchone()
    return finish_result(write, _workflow_row(stored_row) if stored_row else None, retry)


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
            cur = await conn.execute(_GET_WORKFLOW, (workflow_id,))
            r = await cur.fetchone()
            return _workflow_row(r) if r is not None else None

        return await self._db.read(op)

    async def load_steps(self, workflow_id: str) -> list[StepRow]:
        async def op(conn: aiosqlite.Connection) -> list[StepRow]:
            cur = await conn.execute(_LOAD_STEPS, (workflow_id,))
            return [_step_row(r) for r in await cur.fetchall()]

        return await self._db.read(op)

    async def pending_workflows(self, executor_id: str, app_version: str) -> list[WorkflowRow]:
        async def op(conn: aiosqlite.Connection) -> list[WorkflowRow]:
            cur = await conn.execute(_PENDING, (executor_id, app_version))
            return [_workflow_row(r) for r in await cur.fetchall()]

        return await self._db.read(op)

    async def load_steps_many(self, workflow_ids: Sequence[str]) -> dict[str, list[StepRow]]:
        async def op(conn: aiosqlite.Connection) -> dict[str, list[StepRow]]:
            found: dict[str, list[StepRow]] = {wid: [] for wid in workflow_ids}
            cur = await conn.execute(_LOAD_STEPS_MANY, (json.dumps(list(workflow_ids)),))
            for r in await cur.fetchall():
                found[r[0]].append(_step_row(r))
            return found

        return await self._db.read(op)

    async def claim_for_recovery(
        self, claims: Sequence[RecoveryRequest], now_ms: int
    ) -> list[RecoveryClaim]:
        async def op(conn: aiosqlite.Connection) -> list[RecoveryClaim]:
            won = []
            for c in claims:
                cur = await conn.execute(
                    _CLAIM, (c.max_attempts, now_ms, c.workflow_id, c.seen_attempts)
                )
                r = await cur.fetchone()
                if r is not None:
                    row = _workflow_row(r)
                    won.append(
                        RecoveryClaim(row, exceeded=row.status == "MAX_RECOVERY_ATTEMPTS_EXCEEDED")
                    )
            return won

        return await self._db.write(op)


class SQLiteApplicationDatabase:
    """The application database on SQLite. Transactions run one at a time per process
    (SQLite has one writer) as ``BEGIN IMMEDIATE``; every isolation level is serializable."""

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
                await conn.execute(
                    _INSERT_TX_OUTPUT, (workflow_id, function_id, output, int(time.time() * 1000))
                )
            return result

        try:
            return await self._db.write(op)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise TransactionConflict(str(exc)) from exc
            raise

    async def get_transaction_output(self, workflow_id: str, function_id: int) -> str | None:
        async def op(conn: aiosqlite.Connection) -> str | None:
            cur = await conn.execute(_GET_TX_OUTPUT, (workflow_id, function_id))
            r = await cur.fetchone()
            return None if r is None else str(r[0])

        return await self._db.read(op)
