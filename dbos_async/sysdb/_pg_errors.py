"""Which asyncpg errors mean "the connection was lost", in one place.

A *transient* error says nothing about the statement itself: the connection broke, the
server is shutting down or restarting, or it refused a new connection for now. The
statement may or may not have committed (a lost reply), so the backends retry only
statements that are idempotent by construction, on a fresh connection, after a pause.
Every other error is *real*: the statement failed and is not retried.

- transient: the server went away or cut us off (SQLSTATE classes 08 and 57P, "too many
  connections", a hot standby refusing writes during a failover), socket errors and
  connect time-outs, and the client-side errors asyncpg raises on a connection that broke
  under it (``InterfaceError`` "connection is closed", ``InternalClientError`` from a
  protocol left in a broken state);
- shutdown: our own pool was closed under the operation (``destroy()`` is running): not
  retried, reported as ``DBOSConnectionError``;
- real: everything else (constraint violations, a programming error, a query cancelled by
  a statement timeout).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from .._errors import WorkflowOwnershipLost

__all__ = [
    "FENCED",
    "drop_if_broken",
    "is_closed",
    "is_pool_closed",
    "is_transient",
    "lost_by_driver",
    "raise_if_fenced",
]

#: The SQLSTATE ``dbos_async.assert_owner`` raises: the writing process does not own the
#: workflow (any more), so the statement wrote nothing.
FENCED = "DBA01"

_TRANSIENT: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08, incl. ConnectionDoesNotExistError
    asyncpg.CannotConnectNowError,  # 57P03: starting up or shutting down
    asyncpg.AdminShutdownError,  # 57P01: pg_terminate_backend, fast shutdown
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.TooManyConnectionsError,  # 53300
    asyncpg.ReadOnlySQLTransactionError,  # 25006: a standby during a failover
    asyncpg.InternalClientError,  # a protocol state broken by a cut connection
    ConnectionError,
    OSError,
    TimeoutError,  # connecting took too long
)

_LOST_MARKERS = ("connection is closed", "underlying connection is closed")


def is_pool_closed(exc: BaseException) -> bool:
    """The pool was closed under the operation (the runtime is shutting down)."""
    return isinstance(exc, asyncpg.InterfaceError) and "pool is clos" in str(exc)


#: What asyncpg itself raises when the connection goes away under a statement.
_DRIVER_LOST: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InternalClientError,
)


def lost_by_driver(exc: BaseException) -> bool:
    """True if asyncpg raised ``exc`` because the connection was lost: unlike an OSError
    or a read-only violation, user code cannot raise it for a reason of its own."""
    if isinstance(exc, _DRIVER_LOST):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and is_transient(exc)


def is_transient(exc: BaseException) -> bool:
    """True if ``exc`` means the connection was lost, not that the statement failed."""
    if isinstance(exc, _TRANSIENT):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        message = str(exc)
        return any(marker in message for marker in _LOST_MARKERS)
    return False


def drop_if_broken(conn: Any, exc: BaseException) -> None:
    """After a transient error, close ``conn`` (a connection or a pool's proxy of one)
    at once: its protocol state is unknown, so it must never be used again. A proxy the
    pool already took back (asyncpg releases a connection that closed) is left alone."""
    if is_transient(exc) and not is_closed(conn):
        conn.terminate()


def is_closed(conn: Any) -> bool:
    """Whether a connection (or a pool's proxy of one, maybe released already) broke."""
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True  # released back to the pool: asyncpg does that when it closes


def raise_if_fenced(exc: BaseException, workflow_id: str | None) -> None:
    """Raise ``WorkflowOwnershipLost`` if ``exc`` is ``assert_owner``'s refusal."""
    if workflow_id is not None and getattr(exc, "sqlstate", None) == FENCED:
        raise WorkflowOwnershipLost(workflow_id) from None
