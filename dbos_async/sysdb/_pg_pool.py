"""The Postgres connection pool every Postgres database role runs on.

One asyncpg pool per role, with what surrounds it: creating the database if it is
missing, bringing a component's tables up to date, and ``retrying``, which runs an
idempotent operation through connection loss (a Postgres restart, a dropped socket, a
commit whose outcome is unknown) with backoff until the database answers again: connection
loss pauses workflows, it does not fail them. ``_pg_errors`` says which errors mean the
connection was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from .._errors import DBOSConnectionError
from .._urls import redact_url
from ._migrations import load_schema_files
from ._pg_errors import drop_if_broken, is_closed, is_pool_closed, is_transient
from ._queries import load_queries

if TYPE_CHECKING:
    from typing import TypeAlias

    from asyncpg.pool import PoolConnectionProxy

    #: A connection lent by the pool, as operations receive it.
    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]

__all__ = ["PostgresPool", "create_database", "drop_database"]

log = logging.getLogger("dbos_async")
T = TypeVar("T")
Q = load_queries("postgres")

_MIGRATION_LOCK = 0x64626F735F61  # advisory lock key serializing schema migrations
_CLOSE_TIMEOUT = 5.0  # seconds a pool may take to close gracefully


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a connection without a reset query. The runtime's own statements leave no
    session state (no LISTEN, no session locks, no SET), so the round trip that asyncpg's
    default reset costs on every release is saved. User transactions use a pool that
    resets."""


class PostgresPool:
    """One asyncpg pool with the connect, create-database and migration logic around it."""

    def __init__(
        self,
        url: str,
        size: int,
        connect_timeout: float,
        *,
        reset_sessions: bool = True,
        create_missing: bool = True,
    ) -> None:
        self.url = url
        self.reset_sessions = reset_sessions
        self.create_missing = create_missing
        self.size = size
        self.connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None
        self._users = 0
        self._lock = asyncio.Lock()
        #: The journal writer's own connection, outside the pool (see ``retrying``).
        self._held: asyncpg.Connection | None = None
        self._held_lock = asyncio.Lock()
        #: Set by the last ``close()``: operations stop retrying.
        self._closing = False

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None or self._closing:
            raise DBOSConnectionError(
                f"the connection pool to {redact_url(self.url)} is closed "
                "(DBOS is not launched, or is shutting down)"
            )
        return self._pool

    async def open(self) -> None:
        async with self._lock:
            self._users += 1
            if self._pool is None:
                self._closing = False
                self._pool = await self._create()

    async def close(self) -> None:
        async with self._lock:
            self._users -= 1
            if self._users <= 0 and self._pool is not None:
                self._closing = True
                await self._drop_held()
                pool, self._pool = self._pool, None
                try:
                    # Graceful close waits for every connection to come back; one a
                    # cancelled operation left behind on a cut connection may never.
                    await asyncio.wait_for(pool.close(), timeout=_CLOSE_TIMEOUT)
                except TimeoutError:
                    log.warning("Postgres pool did not close in %gs; terminated", _CLOSE_TIMEOUT)
                    pool.terminate()

    async def _create(self) -> asyncpg.Pool:
        deadline = time.monotonic() + self.connect_timeout
        delay = 0.1
        created_db = False
        while True:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                return await asyncpg.create_pool(
                    self.url,
                    min_size=1,
                    max_size=self.size,
                    timeout=remaining,
                    reset=None if self.reset_sessions else _keep_session,
                )
            except asyncpg.InvalidCatalogNameError as exc:
                if not self.create_missing:
                    raise DBOSConnectionError(
                        f"database {urlsplit(self.url).path.lstrip('/')!r} does not exist at "
                        f"{redact_url(self.url)}"
                    ) from exc
                if created_db:
                    raise
                await self._create_database()
                created_db = True
                continue
            except Exception as exc:
                if not is_transient(exc):
                    if isinstance(exc, asyncpg.PostgresError):
                        raise DBOSConnectionError(
                            f"cannot connect to Postgres at {redact_url(self.url)}: {exc}"
                        ) from exc
                    raise
                if time.monotonic() + delay >= deadline:
                    raise DBOSConnectionError(
                        f"cannot reach Postgres at {redact_url(self.url)} within "
                        f"{self.connect_timeout:g}s: {type(exc).__name__}: {exc}"
                    ) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _create_database(self) -> None:
        await create_database(self.url, self.connect_timeout)

    async def migrate(self, component: str, *, from_migrations: bool = False) -> None:
        """Bring one component's tables up to date, one process at a time."""
        files = load_schema_files("postgres", component)

        async def op(conn: Conn) -> None:
            async with conn.transaction():
                await conn.execute(Q["lock_migrations"], _MIGRATION_LOCK)
                await conn.execute(Q["create_schema"])
                await conn.execute(Q["create_migrations_table"])
                rows = await conn.fetch(Q["applied_migrations"], component)
                applied = {r[0] for r in rows}
                now = int(time.time() * 1000)
                if not applied and not from_migrations:
                    await conn.execute(files.schema)
                    todo = [m.version for m in files.migrations]
                else:
                    todo = []
                    for m in files.migrations:
                        if m.version not in applied:
                            await conn.execute(m.sql)
                            todo.append(m.version)
                await conn.executemany(Q["record_migration"], [(component, v, now) for v in todo])

        # All or nothing, and a re-run skips what is applied: safe to retry.
        await self.retrying(op)

    @contextlib.asynccontextmanager
    async def lend(self) -> AsyncIterator[Conn]:
        """A connection of the pool for one operation that settles its own outcome while
        it holds the connection (a transaction: committed, or failed with its error).
        Giving it back can fail on its own: the pool resets the session on release, and
        a connection cut then raises ``ConnectionDoesNotExistError`` from the release.
        That error says nothing about the operation, so it must not replace its outcome
        (a serialization failure to retry, the body's own error, a committed result):
        the connection is dropped (asyncpg terminates it) and the outcome stands."""
        pool = self.pool
        conn = await pool.acquire()
        try:
            yield conn
        finally:
            try:
                await pool.release(conn)
            except Exception as exc:
                log.debug("a connection failed its reset on release (%r); dropped", exc)
                if not is_closed(conn):  # (asyncpg terminates it when its reset fails)
                    conn.terminate()

    async def retrying(self, op: Callable[[Conn], Awaitable[T]], *, held: bool = False) -> T:
        """Run an idempotent operation, retrying it through connection loss: on a transient
        error (``_pg_errors``) the connection is dropped and the operation runs again on a
        fresh one, after a pause that doubles up to 5 s, for as long as the pool is open.
        ``held`` runs it on the one connection this pool keeps outside the pool for the
        journal's writer, saving an acquire and a release per batch."""
        delay = 0.05
        while True:
            try:
                if held:
                    if self._closing:  # (the held connection must not reopen)
                        raise DBOSConnectionError(f"the pool to {redact_url(self.url)} is closed")
                    async with self._held_lock:
                        return await self._on_held(op)
                async with self.pool.acquire() as conn:
                    try:
                        return await op(conn)
                    except Exception as exc:
                        drop_if_broken(conn, exc)
                        raise
            except DBOSConnectionError:
                raise
            except Exception as exc:
                if self._closing or is_pool_closed(exc):
                    raise DBOSConnectionError(
                        f"the connection pool to {redact_url(self.url)} was closed "
                        f"(DBOS is shutting down): {type(exc).__name__}: {exc}"
                    ) from exc
                if not is_transient(exc):
                    raise
                log.warning(
                    "Postgres connection lost (%s: %s); retrying in %.2fs",
                    type(exc).__name__,
                    exc,
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _on_held(self, op: Callable[[Conn], Awaitable[T]]) -> T:
        if self._held is None or self._held.is_closed():
            conn = await asyncpg.connect(self.url, timeout=self.connect_timeout)
            try:
                await conn.execute(Q["journal_session"])
            except BaseException:
                conn.terminate()
                raise
            self._held = conn
        conn = self._held
        try:
            return await op(conn)  # type: ignore[arg-type]
        except Exception as exc:
            if is_transient(exc):
                self._held = None
                drop_if_broken(conn, exc)
            raise

    async def _drop_held(self) -> None:
        conn, self._held = self._held, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), timeout=2.0)
            except Exception:
                conn.terminate()


async def create_database(url: str, connect_timeout: float = 10.0) -> None:
    """Create the Postgres database ``url`` names unless it exists. Connects to the
    server's ``postgres`` database to do it."""
    name, admin_url = _admin(url)
    conn = await asyncpg.connect(admin_url, timeout=connect_timeout)
    try:
        await conn.execute("CREATE DATABASE " + _quote(name))
    except asyncpg.DuplicateDatabaseError:
        pass
    finally:
        await conn.close()


def _admin(url: str) -> tuple[str, str]:
    """The database ``url`` names and the URL of its server's ``postgres`` database."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name:
        raise ValueError(f"database URL {redact_url(url)!r} names no database")
    return name, urlunsplit(parts._replace(path="/postgres"))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def drop_database(url: str, connect_timeout: float = 10.0) -> None:
    """Drop the Postgres database ``url`` names, if it exists, closing its sessions first
    (the pytest plugin drops each test's database this way). Connects to the server's
    ``postgres`` database to do it."""
    name, admin_url = _admin(url)
    conn = await asyncpg.connect(admin_url, timeout=connect_timeout)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")
    finally:
        await conn.close()
