"""Fault injection for the Postgres fault tests: cutting every connection to a database
from an admin connection (as a failover or a network blip does)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg

_TERMINATE = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
    " WHERE datname = $1 AND pid <> pg_backend_pid()"
)


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


class ConnectionCutter:
    """Terminates every backend connected to one database, every ``interval`` seconds,
    from its own admin connection; counts the connections it cut."""

    def __init__(self, url: str, interval: float) -> None:
        self.url = url
        self.database = database_name(url)
        self.interval = interval
        self.rounds = 0
        self.cut = 0

    async def cut_once(self, conn: asyncpg.Connection) -> int:
        n: int = await conn.fetchval(_TERMINATE, self.database)
        self.rounds += 1
        self.cut += n
        return n

    async def run(self, seconds: float) -> None:
        admin_url = self.url.rsplit("/", 1)[0] + "/postgres"
        conn = await asyncpg.connect(admin_url)
        try:
            loop = asyncio.get_running_loop()
            end = loop.time() + seconds
            while loop.time() < end:
                await self.cut_once(conn)
                await asyncio.sleep(self.interval)
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def cutting(url: str, interval: float, seconds: float) -> AsyncIterator[ConnectionCutter]:
    """Cut connections in the background for ``seconds`` while the block runs; the block's
    end waits for the cutting to stop."""
    cutter = ConnectionCutter(url, interval)
    task = asyncio.get_running_loop().create_task(cutter.run(seconds))
    try:
        yield cutter
    finally:
        await task
