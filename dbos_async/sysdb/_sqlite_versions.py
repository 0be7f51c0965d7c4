"""SQLite: the application versions processes launched with."""

from __future__ import annotations

import sqlite3

from ._queries import load_queries
from ._rows import VersionRow
from ._sqlite_connection import SQLiteConnection

__all__ = ["SQLiteVersions"]

Q = load_queries("sqlite")


class SQLiteVersions:
    """The application-version part of the SQLite system database."""

    _db: SQLiteConnection

    async def register_version(self, version: VersionRow) -> None:
        params = {
            "id": version.version_id,
            "name": version.version_name,
            "now": version.version_timestamp,
            "app": version.application_name,
        }

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(Q["register_version"], params)

        await self._db.write(op)

    async def list_versions(self) -> list[VersionRow]:
        def op(conn: sqlite3.Connection) -> list[VersionRow]:
            cur = conn.execute(Q["list_versions"])
            return [VersionRow(*r) for r in cur.fetchall()]

        return await self._db.read(op)

    async def set_version_timestamp(self, version_name: str, timestamp_ms: int) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                Q["set_version_timestamp"], {"name": version_name, "ts": timestamp_ms}
            )
            return cur.fetchone() is not None

        return await self._db.write(op)
