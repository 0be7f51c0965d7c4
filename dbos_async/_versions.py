"""Application versions: which versions processes launched with, and which is the latest.

A process records its application version when it launches (the first launch of a
version makes it the latest). The latest version is the one with the highest
``version_timestamp``; ``set_latest_application_version`` moves a version's timestamp to
now, making it the latest (to roll back to an older build, or forward before its
processes launch). What "latest" decides (as in DBOS Transact):

- a queued workflow that names no application version (enqueued by a client without
  ``app_version``) is claimed only by processes of the latest version;
- a fork without ``application_version`` runs on the latest version.

Recovery and takeover do not look at "latest": a process takes over only workflows of
its own version, whichever is the latest.
"""

from __future__ import annotations

from typing import TypedDict

from ._clock import now_ms
from ._errors import DBOSException
from ._ids import check_text
from ._runtime import Runtime
from .sysdb import VersionRow

__all__ = [
    "VersionInfo",
    "get_latest_application_version",
    "latest_version_name",
    "list_application_versions",
    "set_latest_application_version",
]


class VersionInfo(TypedDict):
    """An application version, as ``DBOS.list_application_versions()`` returns it
    (DBOS Transact's keys). Times are epoch milliseconds."""

    version_id: str
    """A unique ID of the record."""
    version_name: str
    """The application version itself (``DBOS.application_version``)."""
    version_timestamp: int
    """When it was first launched or last made the latest: the latest is the highest."""
    created_at: int
    """When it was first launched."""
    application_name: str | None
    """The configured ``name`` of the application whose launch recorded it."""


def _info(row: VersionRow) -> VersionInfo:
    return VersionInfo(
        version_id=row.version_id,
        version_name=row.version_name,
        version_timestamp=row.version_timestamp,
        created_at=row.created_at,
        application_name=row.application_name,
    )


async def list_application_versions(rt: Runtime) -> list[VersionInfo]:
    """Every recorded version, the latest first."""
    return [_info(row) for row in await rt.sysdb.list_versions()]


async def get_latest_application_version(rt: Runtime) -> VersionInfo:
    """The latest version; ``DBOSException`` when none is recorded (no process of this
    system database has launched since versions were recorded)."""
    versions = await rt.sysdb.list_versions()
    if not versions:
        raise DBOSException("no application versions found: no process has launched yet")
    return _info(versions[0])


async def latest_version_name(rt: Runtime) -> str | None:
    """The latest version's name, or None when none is recorded."""
    versions = await rt.sysdb.list_versions()
    return versions[0].version_name if versions else None


async def set_latest_application_version(rt: Runtime, version_name: str) -> None:
    """Make a recorded version the latest: its timestamp becomes now (or just past the
    latest's, if that is later). ``DBOSException`` if no process launched with it."""
    check_text(version_name, "version_name", non_empty=True)
    versions = await rt.sysdb.list_versions()
    stamp = max([now_ms(), *(v.version_timestamp + 1 for v in versions[:1])])
    if not await rt.sysdb.set_version_timestamp(version_name, stamp):
        known = ", ".join(repr(v.version_name) for v in versions) or "none"
        raise DBOSException(
            f"cannot make application version {version_name!r} the latest: no process "
            f"launched with it (recorded versions: {known})"
        )
