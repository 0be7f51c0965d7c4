"""SQLite: one aiosqlite connection per database role, and how roles share one file.

One file, one writer. SQLite lets one transaction at a time write a file, and by default
the application's tables (``@DBOS.transaction`` bodies, on the application connection)
and the runtime's own tables (checkpoints, messages, queue claims, on the system
connection) share one file. The rules that make that safe:

- **Writes queue on the event loop, per file.** Every ``BEGIN IMMEDIATE`` section on a
  file, whichever connection runs it, first takes one ``asyncio.Lock`` shared by every
  connection of this process (and event loop) to that file. So while a transaction body
  is open, checkpoint writes of other workflows wait their turn on the loop, however long
  the body takes, instead of spinning in SQLite's busy handler until "database is
  locked". They never fail for it: a workflow whose step succeeded records it.
- **Reads keep going.** The file is in WAL mode and reads take no write lock, so status
  reads, ``get_event``, stream reads and queue polls run while a transaction is open
  (on another connection: the system connection's reads while an application
  transaction body is open on the application connection).
- **One trip per operation.** A system read, or a system write's whole ``BEGIN
  IMMEDIATE`` ... ``COMMIT``, is one function handed to the connection's thread
  (``_sqlite_thread``), not a trip per statement; many reads queue there at once.
- **Other processes: wait, roll back, retry.** A write that still finds the file locked
  (another process's transaction, held past ``BUSY_TIMEOUT_SECONDS``) is rolled back and
  retried with backoff, without end: it is never surfaced to a workflow. Only a
  transaction body's own lock failure becomes ``TransactionConflict``, which the engine
  retries.
- **No system write from inside a transaction body.** Such a write would wait for the
  lock its own transaction holds. The engine refuses the DBOS calls that write
  (``send``, ``set_event``, starting a workflow, ...) inside a transaction on every
  backend; as a backstop, a write reaching this module from inside a transaction on the
  same file raises ``DBOSException`` at once instead of waiting forever.

The price is the one SQLite always charges: while a transaction body runs, every
checkpoint write to its file waits for it. Measured (``benchmarks/sqlite_lock_wait.py``,
2-core machine): a body open 2 s while 20 workflows ran steps held each of their
checkpoints for the rest of the body (at most 2.0 s, against a median of 1-3 ms with no
body open); every workflow ended SUCCESS with each step run once, and the first
checkpoint committed 2-7 ms after the body did (a body open 5 s with 50 workflows: the
same, 5.0 s at most).
Keep transaction bodies short, and never make one wait for another workflow (its
checkpoints would wait for the body).

``sqlite:///:memory:`` keeps everything in one connection shared by both roles; a read
from inside a transaction body on it runs inside that transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
import weakref
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

import aiosqlite

from .._errors import DBOSConnectionError, DBOSException
from .._urls import sqlite_path
from ._migrations import load_schema_files
from ._queries import load_queries
from ._sqlite_thread import Work, run_read, run_write

__all__ = ["BUSY_TIMEOUT_SECONDS", "SQLiteConnection", "is_busy", "split_statements"]

T = TypeVar("T")

log = logging.getLogger("dbos_async")
Q = load_queries("sqlite")

#: How long one statement waits in SQLite's busy handler for another process's write
#: lock before failing with "database is locked" (``PRAGMA busy_timeout``). Within a
#: process writers never meet there (they queue on the file's lock first). A system write
#: that fails so is retried (after ``_RETRY_FIRST`` .. ``_RETRY_MAX`` seconds); between
#: attempts its connection serves reads. Read when a connection opens.
BUSY_TIMEOUT_SECONDS = 1.0
_RETRY_FIRST = 0.005
_RETRY_MAX = 0.2
#: A write waiting this long on another process is logged (once per write).
_WARN_AFTER = 30.0


def is_busy(exc: BaseException) -> bool:
    """True for SQLite's "database is locked" / "database table is locked" failures."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc)
    return "locked" in text or "busy" in text


#: The write lock of each file, per event loop (an ``asyncio.Lock`` belongs to one loop).
_file_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _file_lock(key: str) -> asyncio.Lock:
    locks = _file_locks.setdefault(asyncio.get_running_loop(), {})
    lock = locks.get(key)
    if lock is None:
        lock = locks[key] = asyncio.Lock()
    return lock


@dataclass(eq=False)
class _Hold:
    """A write section in progress: the code it runs (and tasks that code starts) sees it
    through ``_holding``; ``active`` turns False when the section ends."""

    conn: SQLiteConnection
    lock: asyncio.Lock
    active: bool = True


_holding: ContextVar[_Hold | None] = ContextVar("dbos_async_sqlite_hold", default=None)


class SQLiteConnection:
    """One aiosqlite connection and the locks that order its use in this process: its
    file's lock for writes (one ``BEGIN IMMEDIATE`` section at a time on the file), and
    its own lock, held by a transaction body (``transaction``) for as long as it is open.

    The system database's reads and writes (``read``, ``write``) are plain ``sqlite3``
    functions, each run in one trip to the connection's thread (``_sqlite_thread``);
    they take the connection's lock only to wait for an open transaction body."""

    def __init__(self, url: str, *, create_missing: bool = True) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self.create_missing = create_missing
        self.lock = asyncio.Lock()
        self._conn: aiosqlite.Connection | None = None
        self._users = 0
        # :memory: is one database per connection: its own key. A file: its real path,
        # so every connection to it in this process shares one write lock.
        if self.path == ":memory:":
            self.file_key = f":memory:{id(self)}"
        else:
            self.file_key = os.path.realpath(self.path)

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
        try:
            conn = await aiosqlite.connect(self.path, isolation_level=None)
        except BaseException:
            self._users -= 1
            raise
        try:
            await conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            if self.path != ":memory:":
                # Switching a new file to WAL takes its lock: wait for other processes.
                await _retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL"), self.path)
            await conn.execute("PRAGMA synchronous = FULL")
            await conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            self._users -= 1
            await conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        self._users -= 1
        if self._users <= 0 and self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    def _refuse_nested(self, file_lock: asyncio.Lock) -> None:
        hold = _holding.get()
        if hold is not None and hold.active and hold.lock is file_lock:
            raise DBOSException(
                f"cannot write to SQLite database {self.path!r} from inside a transaction "
                "that holds its write lock (a @DBOS.transaction body): the write would wait "
                "for that transaction forever. Make the call from the workflow after the "
                "transaction returns."
            )

    async def write(self, work: Work[T], *, retry_busy: bool = True) -> T:
        """Run ``work`` in one ``BEGIN IMMEDIATE`` transaction, in one trip to the
        connection's thread (``_sqlite_thread``); roll back on any failure.

        Waits for the file's write lock of this process first (no timeout: a long
        transaction body delays, never fails, the writes behind it). If another process
        holds the file, a "database is locked" failure is rolled back and, with
        ``retry_busy``, retried with backoff until it goes through; without, it is raised.
        """
        return await self._write(lambda: self._one_trip(run_write, work), retry_busy)

    async def transaction(
        self, op: Callable[[aiosqlite.Connection], Awaitable[T]], *, retry_busy: bool = True
    ) -> T:
        """Run ``op``, which awaits on the aiosqlite connection (a transaction body), in one
        ``BEGIN IMMEDIATE`` transaction; roll back on any failure. Locks and retries as
        ``write``; the connection runs nothing else until it ends."""
        file_lock = _file_lock(self.file_key)

        async def attempt() -> T:
            async with self.lock:
                return await self._transaction(op, file_lock)

        return await self._write(attempt, retry_busy)

    async def _write(self, attempt: Callable[[], Awaitable[T]], retry_busy: bool) -> T:
        file_lock = _file_lock(self.file_key)
        self._refuse_nested(file_lock)
        delay = _RETRY_FIRST
        started = time.monotonic()
        warned = False
        async with file_lock:
            while True:
                try:
                    return await attempt()
                except sqlite3.OperationalError as exc:
                    if not retry_busy or not is_busy(exc):
                        raise
                waited = time.monotonic() - started
                if not warned and waited > _WARN_AFTER:
                    warned = True
                    log.warning(
                        "SQLite database %r has been locked by another process for %.0f s; "
                        "writes are waiting for it",
                        self.path,
                        waited,
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)

    async def _one_trip(
        self, send: Callable[[aiosqlite.Connection, Work[T]], Awaitable[T]], work: Work[T]
    ) -> T:
        """Send ``work`` to the thread (``run_read`` or ``run_write``). It needs no turn of
        the connection's lock (the thread runs its queue in order, so one trip never lands
        in the middle of another), except while a multi-trip ``transaction`` holds it:
        then it waits for the end of that transaction."""
        if self.lock.locked():
            async with self.lock:
                return await send(self.conn, work)
        return await send(self.conn, work)

    async def _transaction(
        self, op: Callable[[aiosqlite.Connection], Awaitable[T]], file_lock: asyncio.Lock
    ) -> T:
        conn = self.conn
        hold = _Hold(self, file_lock)
        token = _holding.set(hold)
        try:
            await conn.execute("BEGIN IMMEDIATE")
            result = await op(conn)
            await conn.execute("COMMIT")
        except BaseException:
            # aiosqlite runs statements in order, so this follows whatever was sent.
            with contextlib.suppress(sqlite3.Error):
                await conn.execute("ROLLBACK")
            raise
        finally:
            hold.active = False
            _holding.reset(token)
        return result

    async def read(self, work: Work[T]) -> T:
        """Run ``work`` (plain ``sqlite3`` calls) in one trip to the connection's thread,
        outside any write section (WAL: it does not wait for writers). From inside a
        write section on this very connection (``:memory:``, where both roles share one),
        it runs there, in that transaction."""
        hold = _holding.get()
        if hold is not None and hold.active and hold.conn is self:
            return await run_read(self.conn, work)
        return await _retry_busy(lambda: self._one_trip(run_read, work), self.path)

    async def migrate(self, component: str, *, from_migrations: bool = False) -> None:
        files = load_schema_files("sqlite", component)

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(Q["create_migrations_table"])
            cur = conn.execute(Q["applied_migrations"], (component,))
            applied = {r[0] for r in cur.fetchall()}
            scripts: list[str] = []
            if not applied and not from_migrations:
                scripts.append(files.schema)
                todo = [m.version for m in files.migrations]
            else:
                todo = [m.version for m in files.migrations if m.version not in applied]
                scripts.extend(m.sql for m in files.migrations if m.version in todo)
            for script in scripts:
                for statement in split_statements(script):
                    conn.execute(statement)
            now = int(time.time() * 1000)
            conn.executemany(Q["record_migration"], [(component, v, now) for v in todo])

        await self.write(op)


def split_statements(sql: str) -> list[str]:
    """Split a schema file into statements (our files hold plain DDL, no procedures)."""
    statements: list[str] = []
    current: list[str] = []
    for line in sql.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current.append(line)
        text = "\n".join(current)
        if sqlite3.complete_statement(text):
            statements.append(text.strip())
            current = []
    if current and "\n".join(current).strip():
        raise RuntimeError(f"unterminated SQL statement: {' '.join(current)[:80]}")
    return statements


async def _retry_busy(attempt: Callable[[], Awaitable[T]], path: str) -> T:
    """Run ``attempt`` (a read or a statement safe to repeat) until the file is not
    locked by another process."""
    delay = _RETRY_FIRST
    while True:
        try:
            return await attempt()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
        log.debug("SQLite database %r is locked by another process; retrying", path)
        await asyncio.sleep(delay)
        delay = min(delay * 2, _RETRY_MAX)
