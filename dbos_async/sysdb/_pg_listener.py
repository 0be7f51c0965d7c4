"""Postgres: the one LISTEN connection per process that wakes this process's waiters when
another process writes (each notification's payload is a key of ``_keys``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from ._keys import CHANNEL
from ._pg_errors import is_transient
from ._pg_pool import PostgresPool
from ._queries import load_queries

__all__ = ["PostgresListener"]

log = logging.getLogger("dbos_async")
Q = load_queries("postgres")


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
            await conn.execute(Q["ping"], timeout=2.0)
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
