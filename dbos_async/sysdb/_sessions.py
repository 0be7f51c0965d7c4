"""``DBOS.sql_session`` for an application database, without importing SQLAlchemy.

Each backend holds one ``Sessions``; SQLAlchemy (the optional ``sqlalchemy`` extra) is
imported only when the first session is asked for, so an application that never uses
``DBOS.sql_session`` needs neither SQLAlchemy nor greenlet. ``_sqlalchemy`` says how a
session runs inside the runtime's transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .._errors import DBOSException

__all__ = ["Sessions", "driver_error"]

MISSING = (
    "DBOS.sql_session needs SQLAlchemy 2 with its asyncio support (greenlet): "
    "install the extra, pip install 'dbos_async[sqlalchemy]'"
)


class Sessions:
    """The SQLAlchemy sessions of one application database (``backend``: "postgres" or
    "sqlite"); ``is_closed`` tells a closed driver connection, whose wrapper is dropped."""

    def __init__(self, backend: str, is_closed: Callable[[Any], bool] | None = None) -> None:
        self._backend = backend
        self._is_closed = is_closed
        self._factory: Any = None

    def open(self, driver: Any) -> Any:
        """A ``TransactionSession`` on the driver connection of a running transaction
        body; ``DBOSException`` naming the extra if SQLAlchemy is not installed."""
        if self._factory is None:
            try:
                from ._sqlalchemy import SessionFactory
            except ImportError as exc:
                raise DBOSException(f"{MISSING} ({exc})") from exc
            self._factory = SessionFactory(self._backend, self._is_closed)
        return self._factory.open(driver)

    async def end(self, session: Any, *, flush: bool) -> None:
        """The transaction function returned (``flush``: its pending changes are
        flushed, to commit with it) or raised; the session lets go of the connection."""
        await self._factory.end(session, flush=flush)

    def close(self) -> None:
        """The database closes: forget the engine and the wrapped connections."""
        if self._factory is not None:
            self._factory.dispose()
            self._factory = None


def driver_error(exc: BaseException) -> BaseException:
    """The driver's exception behind ``exc`` when ``exc`` is SQLAlchemy's wrapper of it
    (a ``DBOS.sql_session`` statement failed), else ``exc``: what a backend classifies
    (a serialization failure to retry, a lost connection) is the driver's error.
    SQLAlchemy keeps the DB-API error as ``orig``; its asyncio adapters raise that one
    ``from`` the driver's own."""
    orig = getattr(exc, "orig", None)
    if not isinstance(orig, BaseException) or not type(exc).__module__.startswith("sqlalchemy"):
        return exc
    return orig.__cause__ if isinstance(orig.__cause__, BaseException) else orig
