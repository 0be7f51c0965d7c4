"""Postgres: the application versions processes launched with."""

from __future__ import annotations

from typing import Any

from ._pg_pool import PostgresPool
from ._queries import load_queries
from ._rows import VersionRow

__all__ = ["PostgresVersions"]

Q = load_queries("postgres")


class PostgresVersions:
    """The application-version part of the Postgres system database."""

    _pg: PostgresPool

    async def register_version(self, version: VersionRow) -> None:
        async def op(conn: Any) -> None:
            await conn.execute(
                Q["register_version"],
                version.version_id,
                version.version_name,
                version.version_timestamp,
                version.application_name,
            )

        await self._pg.retrying(op)

    async def list_versions(self) -> list[VersionRow]:
        async def op(conn: Any) -> list[VersionRow]:
            return [VersionRow(*r) for r in await conn.fetch(Q["list_versions"])]

        return await self._pg.retrying(op)

    async def set_version_timestamp(self, version_name: str, timestamp_ms: int) -> bool:
        async def op(conn: Any) -> bool:
            found = await conn.fetchval(Q["set_version_timestamp"], version_name, timestamp_ms)
            return found is not None

        return await self._pg.retrying(op)
