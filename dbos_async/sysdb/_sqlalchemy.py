"""SQLAlchemy sessions on the connection of a running ``@DBOS.transaction``.

``DBOS.sql_session`` is an ``AsyncSession`` whose statements run on the very driver
connection the application database lent the transaction body (asyncpg on Postgres,
aiosqlite on SQLite), inside the transaction the runtime began there. The runtime owns
that transaction: it commits it together with the recorded output when the function
returns, and rolls it back when it raises. So SQLAlchemy must never begin, commit, roll
back or close anything on that connection itself. Three pieces see to it:

- **A dialect that leaves the transaction alone.** Each backend's SQLAlchemy dialect,
  subclassed so that ``do_begin``, ``do_commit`` and ``do_rollback`` do nothing; on
  Postgres the engine is in ``AUTOCOMMIT`` mode too, so SQLAlchemy's asyncpg adapter
  never opens an asyncpg transaction of its own (SQLite's connection is already in
  autocommit mode: the runtime issues ``BEGIN IMMEDIATE`` itself). Savepoints
  (``session.begin_nested()``) are plain SQL and work.
- **A pool that lends, never connects or closes.** ``_LendingPool`` wraps the driver
  connection a session names (``_lending``, set only around the checkout); the wrapper
  (SQLAlchemy's adapter) is kept for the next transaction on the same driver
  connection; nothing is installed on the connection itself (``PostgresDialect``), so
  ``DBOS.sql_connection`` behaves the same whether or not a session used it before.
  The adapter's prepared statements are forgotten at each
  new transaction (asyncpg refuses a statement prepared before the connection last went
  back to the pool). Closing or terminating is a no-op: the runtime's pool owns the
  connection.
- **A session that is bound to one transaction.** ``TransactionSession`` gets its
  connection on first use from ``get_bind`` (inside SQLAlchemy's greenlet, so the
  checkout may do I/O), flushes and lets go of it when the transaction function ends
  (``end_session``), and refuses to be used afterwards. ``commit()`` only flushes and
  ``rollback()`` raises: raising from the function is how a transaction rolls back.

One engine per application database (built on the first session, disposed with the
database); the SQLAlchemy dialect runs its one-time server probe (version, default
schema, isolation level) in the first transaction that uses a session.

This is the only module that imports SQLAlchemy (an optional extra: ``sqlalchemy``);
the backends import it when a session is first asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import ConnectionPoolEntry, Pool

from .._errors import DBOSException

__all__ = ["SessionFactory", "TransactionSession"]

#: The driver connection a checkout in progress wraps (set only around the checkout).
_lending: ContextVar[Any] = ContextVar("dbos_async_sqlalchemy_lending", default=None)

_ENDED = (
    "this DBOS.sql_session belonged to a @DBOS.transaction that has ended; "
    "read DBOS.sql_session again inside the transaction that uses it"
)


class _InRuntimeTransaction:
    """Dialect methods that leave the runtime's transaction alone (mixed in first)."""

    def do_begin(self, dbapi_connection: Any) -> None:
        """The runtime began the transaction before the function ran."""

    def do_commit(self, dbapi_connection: Any) -> None:
        """The runtime commits, with the recorded output, after the function returns."""

    def do_rollback(self, dbapi_connection: Any) -> None:
        """The runtime rolls back when the function raises."""


class PostgresDialect(_InRuntimeTransaction, PGDialect_asyncpg):
    """asyncpg under a transaction the runtime owns, on a connection left as asyncpg
    made it: SQLAlchemy's asyncpg dialect installs JSON codecs on each connection it
    wraps, which would change what ``DBOS.sql_connection`` returns for ``json``
    columns (dicts instead of text) on whichever pooled connection a session once
    used. Here nothing is installed, and SQLAlchemy decodes JSON-typed columns itself
    from asyncpg's text (as on other drivers)."""

    supports_statement_cache = True  # (SQLAlchemy reads it from each class itself)
    supports_native_json_deserialization = False
    # The generic PostgreSQL JSON types, which decode text (SQLAlchemy 2.0's asyncpg
    # dialect maps them to types that leave decoding to its codecs).
    colspecs = {**PGDialect_asyncpg.colspecs, sqltypes.JSON: pg.JSON, pg.JSONB: pg.JSONB}

    def on_connect(self) -> Any:
        # The generic PostgreSQL hook, without the asyncpg one's codecs.
        return super(PGDialect_asyncpg, self).on_connect()


class SQLiteDialect(_InRuntimeTransaction, SQLiteDialect_aiosqlite):
    """aiosqlite under a transaction the runtime owns, on a connection left as the
    runtime opened it: SQLAlchemy's SQLite hook would register ``regexp`` and ``floor``
    functions on it (the latter replacing SQLite's own), so raw SQL on
    ``DBOS.sql_connection`` would answer differently once a session had used the
    connection. Without them, ``regexp_match`` is not available to sessions."""

    supports_statement_cache = True

    def on_connect(self) -> Any:
        return None


registry.register("postgresql.dbos_async", __name__, "PostgresDialect")
registry.register("sqlite.dbos_async", __name__, "SQLiteDialect")


class _LendingPool(Pool):
    """Checkouts serve the driver connection being lent (``_lending``): one pool entry
    per driver connection, created on its first checkout and kept until the connection
    is closed; nothing is ever connected or closed here."""

    def __init__(self, creator: Any, **kw: Any) -> None:
        super().__init__(creator, **kw)
        self._entries: dict[int, tuple[Any, ConnectionPoolEntry]] = {}
        #: Whether a driver connection is closed (its entry is then dropped).
        self.is_closed: Callable[[Any], bool] = _never_closed

    def _do_get(self) -> ConnectionPoolEntry:
        driver = _lending.get()
        if driver is None:
            raise DBOSException(_ENDED)
        found = self._entries.get(id(driver))
        if found is not None and found[0] is driver:
            # A new transaction: asyncpg refuses statements prepared before the
            # connection last went back to its pool, so SQLAlchemy's adapter forgets
            # those (it prepares again, once per statement and transaction).
            cache = getattr(found[1].dbapi_connection, "_prepared_statement_cache", None)
            if cache is not None:
                cache.clear()
            return found[1]
        for key, (other, _) in list(self._entries.items()):
            if self.is_closed(other):
                del self._entries[key]
        entry = self._create_connection()  # the creator wraps ``driver``
        self._entries[id(driver)] = (driver, entry)
        return entry

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        """Kept for the next transaction on the same driver connection."""

    def _close_connection(self, connection: Any, *, terminate: bool = False) -> None:
        """Never: the runtime's pool owns the driver connection."""

    def dispose(self) -> None:
        self._entries.clear()

    def recreate(self) -> _LendingPool:
        return self

    def status(self) -> str:
        return f"lending {len(self._entries)} driver connection(s)"


def _never_closed(driver: Any) -> bool:
    return False


async def _lent() -> Any:
    return _lending.get()


class _TransactionSyncSession(Session):
    """The synchronous session under ``TransactionSession``: bound to one lent driver
    connection, checked out on first use."""

    _dbos_engine: Engine
    _dbos_driver: Any = None
    _dbos_connection: Connection | None = None

    def get_bind(self, *args: Any, **kw: Any) -> Connection:
        if self._dbos_driver is None:
            raise DBOSException(_ENDED)
        if self._dbos_connection is None:
            token = _lending.set(self._dbos_driver)
            try:
                self._dbos_connection = self._dbos_engine.connect()
            finally:
                _lending.reset(token)
        return self._dbos_connection

    def _dbos_release(self) -> None:
        self.close()
        connection, self._dbos_connection = self._dbos_connection, None
        self._dbos_driver = None
        if connection is not None:
            connection.close()  # back to the lending pool: nothing sent to the database


def _release(session: Session) -> None:
    assert isinstance(session, _TransactionSyncSession)
    session._dbos_release()


class TransactionSession(AsyncSession):
    """``DBOS.sql_session``: an ``AsyncSession`` on the running transaction's connection.

    Everything it executes (Core statements, ORM flushes and queries) runs inside the
    ``@DBOS.transaction``'s own database transaction and commits with its recorded
    output when the function returns (pending ORM changes are flushed first), or rolls
    back when it raises. ``commit()`` only flushes; ``rollback()`` raises (raise from the
    function to roll back); ``begin_nested()`` savepoints work as usual.
    """

    sync_session: _TransactionSyncSession

    async def commit(self) -> None:
        """Flush: the transaction commits when the ``@DBOS.transaction`` function returns."""
        await self.flush()

    async def rollback(self) -> None:
        """Refused: raise from the ``@DBOS.transaction`` function to roll it back."""
        raise DBOSException(
            "DBOS.sql_session cannot roll back the transaction it runs in: raise an "
            "exception from the @DBOS.transaction function to roll it back (or use "
            "session.begin_nested() for a savepoint you may roll back)"
        )


class SessionFactory:
    """The sessions of one application database, on one engine built at first use."""

    def __init__(self, backend: str, is_closed: Callable[[Any], bool] | None = None) -> None:
        if backend not in ("postgres", "sqlite"):
            raise ValueError(f"no SQLAlchemy dialect for backend {backend!r}")
        self._backend = backend
        self._is_closed = is_closed
        self._engine: AsyncEngine | None = None

    def _build(self) -> AsyncEngine:
        if self._backend == "postgres":
            # AUTOCOMMIT: the asyncpg adapter begins no transaction of its own.
            engine = create_async_engine(
                "postgresql+dbos_async://",
                async_creator=_lent,
                poolclass=_LendingPool,
                pool_reset_on_return=None,
                isolation_level="AUTOCOMMIT",
            )
        else:
            engine = create_async_engine(
                "sqlite+dbos_async://",
                async_creator=_lent,
                poolclass=_LendingPool,
                pool_reset_on_return=None,
            )
        pool = engine.sync_engine.pool
        if self._is_closed is not None and isinstance(pool, _LendingPool):
            pool.is_closed = self._is_closed
        return engine

    def open(self, driver: Any) -> TransactionSession:
        """A session on ``driver``, the connection a transaction body was lent (no I/O
        here: the connection is checked out on the session's first statement)."""
        if self._engine is None:
            self._engine = self._build()
        session = TransactionSession(sync_session_class=_TransactionSyncSession)
        session.sync_session._dbos_engine = self._engine.sync_engine
        session.sync_session._dbos_driver = driver
        return session

    async def end(self, session: TransactionSession, *, flush: bool) -> None:
        """The transaction function ended: flush pending changes (if it returned, so
        they commit with it), then let go of the connection; the session refuses any
        later use."""
        try:
            if flush:
                await session.flush()
        finally:
            await session.run_sync(_release)

    def dispose(self) -> None:
        """Forget the lent connections (closing none of them) and the engine."""
        if self._engine is not None:
            engine, self._engine = self._engine, None
            engine.sync_engine.pool.dispose()
