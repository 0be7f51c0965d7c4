"""SQLite: a read or a whole write transaction in one trip to the connection's thread.

aiosqlite runs every call on its connection's own thread, and each call is a trip there
and back: a queue put, the thread waking up, and the event loop waking up through its
self-pipe to take the result. Driven statement by statement, a checkpoint of one step was
three trips (``BEGIN IMMEDIATE``, the ``INSERT``, ``COMMIT``) and a group commit of
2,000 writes 2,002, each trip waiting for the one before. Here the thread is handed one
plain function that runs every statement of a read, or ``BEGIN IMMEDIATE``, the
statements, and ``COMMIT`` (``ROLLBACK`` on any failure) of a write, against the
``sqlite3`` connection directly: one trip, whatever the size.

Why aiosqlite's thread and not a thread of our own: the application database hands its
aiosqlite connection to transaction bodies (``DBOS.sql_connection``), and on
``sqlite:///:memory:`` the system database shares that very connection. A thread of our
own would be a second thread on one ``sqlite3`` connection, or a second code path for
``:memory:``. aiosqlite runs one thread per connection draining one FIFO queue; what this
module takes from it beyond its public API is ``Connection._execute`` (queue a callable,
await its result) and ``Connection._conn`` (the ``sqlite3`` connection), both private but
unchanged in meaning since aiosqlite's first releases, and used nowhere else.

Cancellation. The thread runs what it was handed whatever happens to the task awaiting
it. A cancelled write is told (``_Attempt.cancelled``) and rolls back unless it has
reached ``COMMIT`` already, as the statement-by-statement version did; either way the
caller waits, holding its locks, until the thread is done with it, so the next writer on
the file never finds it still open.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import aiosqlite

__all__ = ["Work", "run_read", "run_write"]

T = TypeVar("T")

#: What a trip runs on the connection's thread: plain ``sqlite3`` calls, no awaiting.
Work = Callable[[sqlite3.Connection], T]


class _Attempt:
    """Shared by the event loop and the thread: set when the awaiting task is cancelled,
    read by the thread just before ``COMMIT``."""

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False


class _Abandoned(Exception):
    """The task waiting for this write was cancelled before it committed."""


def _submit(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> Awaitable[T]:
    """Queue ``fn(*args)`` on the connection's thread (raises ``ValueError`` once the
    connection is closed, as aiosqlite's own calls do)."""
    execute = cast(Callable[..., Awaitable[T]], conn._execute)
    return execute(fn, *args)


def _sqlite3(conn: aiosqlite.Connection) -> sqlite3.Connection:
    return conn._conn


def _transaction(raw: sqlite3.Connection, work: Work[T], attempt: _Attempt) -> T:
    """On the connection's thread: ``work`` in one ``BEGIN IMMEDIATE`` transaction."""
    raw.execute("BEGIN IMMEDIATE")
    try:
        result = work(raw)
        if attempt.cancelled:
            raise _Abandoned
        raw.execute("COMMIT")
    except BaseException:
        # (A failed BEGIN leaves nothing to roll back: it raised before this block.)
        with contextlib.suppress(sqlite3.Error):
            raw.execute("ROLLBACK")
        raise
    return result


def _nothing() -> None:
    return None


async def _settle(conn: aiosqlite.Connection) -> None:
    """Wait, whatever cancels the caller meanwhile, until the thread has run everything
    queued on it so far (it runs its queue in order)."""
    barrier = asyncio.ensure_future(_submit(conn, _nothing))
    while not barrier.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(barrier)
    if not barrier.cancelled():
        barrier.exception()  # (retrieved: a closed connection is not this caller's error)


async def run_write(conn: aiosqlite.Connection, work: Work[T]) -> T:
    """``work`` in one ``BEGIN IMMEDIATE`` transaction, in one trip; rolled back on any
    failure. The caller holds the file's write lock."""
    attempt = _Attempt()
    try:
        return await _submit(conn, _transaction, _sqlite3(conn), work, attempt)
    except asyncio.CancelledError:
        attempt.cancelled = True
        await _settle(conn)
        raise


async def run_read(conn: aiosqlite.Connection, work: Work[T]) -> T:
    """``work`` outside any transaction of its own (in autocommit each statement reads
    a consistent snapshot), in one trip."""
    return await _submit(conn, work, _sqlite3(conn))
