"""Postgres: the application database, where ``@DBOS.transaction`` bodies run.

A transaction whose connection is lost is never guessed about: lost before COMMIT was
sent, nothing committed; lost during COMMIT, its transaction ID (taken before COMMIT) is
looked up on a new connection until the server says whether it committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg

from .._errors import DBOSConnectionError, WorkflowOwnershipLost
from ._pg_errors import (
    drop_if_broken,
    is_closed,
    is_pool_closed,
    is_transient,
    lost_by_driver,
)
from ._pg_pool import PostgresPool
from ._protocol import TransactionConflict
from ._queries import load_queries
from ._sessions import Sessions, driver_error

if TYPE_CHECKING:
    from ._pg_pool import Conn

__all__ = ["PostgresApplicationDatabase"]

log = logging.getLogger("dbos_async")
T = TypeVar("T")
Q = load_queries("postgres")

_ISOLATION = {
    "SERIALIZABLE": "serializable",
    "REPEATABLE READ": "repeatable_read",
    "READ COMMITTED": "read_committed",
}


def _driver(conn: Any) -> Any:
    """The asyncpg connection behind the pool's proxy: a session wraps the connection
    itself, so its prepared statements and codecs serve the next transaction lent the
    same connection (the proxy is new at each acquire). It is used only while a
    transaction body holds the proxy (``_sqlalchemy``)."""
    return getattr(conn, "_con", None) or conn


def _is_closed(driver: Any) -> bool:
    return bool(driver.is_closed())


class PostgresApplicationDatabase:
    """The application database on Postgres: where ``@DBOS.transaction`` bodies run."""

    def __init__(self, pool: PostgresPool, *, fenced: bool = False) -> None:
        self._pg = pool
        self.url = pool.url
        #: Whether a transaction's output is written only if its workflow's owner is
        #: ``owner`` as the transaction sees it (this database is the system database
        #: too, so its own insert checks; without a lock: see transactions.sql).
        self.fenced = fenced
        self.owner: str | None = None
        self._sessions = Sessions("postgres", is_closed=_is_closed)

    async def connect(self) -> None:
        await self._pg.open()
        try:
            await self._pg.migrate("app")
        except BaseException:
            await self._pg.close()
            raise

    async def close(self) -> None:
        self._sessions.close()
        await self._pg.close()

    def sql_session(self, conn: Any) -> Any:
        return self._sessions.open(_driver(conn))

    async def end_sql_session(self, session: Any, *, flush: bool) -> None:
        await self._sessions.end(session, flush=flush)

    async def run_transaction(
        self,
        body: Callable[[Any], Awaitable[T]],
        isolation_level: str,
        record: Callable[[T], tuple[str, int, str]] | None,
    ) -> T:
        """Run ``body`` in one transaction. If the connection is lost, the outcome is
        resolved, never guessed: lost before COMMIT was sent, nothing committed and the
        engine may retry (``TransactionConflict``); lost during COMMIT, the transaction's
        ID (taken before COMMIT) is looked up with ``txid_status`` on a new connection
        until the server says committed (the result is returned) or aborted (retry).
        The connection goes back through ``lend``: a cut while the pool resets it after
        the outcome is settled costs the connection, and never replaces the outcome."""
        committing = False
        in_body = False
        lost = False
        xid: asyncpg.Record | None = None  # (transaction ID or None, server process ID)
        try:
            async with self._pg.lend() as conn:
                try:
                    tx = conn.transaction(isolation=_ISOLATION[isolation_level])  # type: ignore[arg-type]
                    await tx.start()
                    try:
                        in_body = True
                        result = await body(conn)
                        in_body = False
                        if record is not None:
                            workflow_id, function_id, output = record(result)
                            now = int(time.time() * 1000)
                            try:
                                if self.fenced:
                                    xid = await conn.fetchrow(
                                        Q["insert_transaction_output_fenced"],
                                        workflow_id,
                                        function_id,
                                        output,
                                        now,
                                        self.owner,
                                    )
                                    if xid is None:  # (rolled back below)
                                        raise WorkflowOwnershipLost(workflow_id)
                                else:
                                    xid = await conn.fetchrow(
                                        Q["insert_transaction_output"],
                                        workflow_id,
                                        function_id,
                                        output,
                                        now,
                                    )
                            except asyncpg.UniqueViolationError as exc:
                                # Another run committed this step first: its output wins.
                                raise TransactionConflict(str(exc)) from exc

                        else:
                            xid = await conn.fetchrow(Q["transaction_id"])
                    except BaseException:
                        # On a broken connection the server rolls back by itself.
                        with contextlib.suppress(Exception):
                            await tx.rollback()
                        raise
                    committing = True
                    await tx.commit()
                    return result
                except Exception as exc:
                    # An error the body raised is the body's (an OSError of its own, a
                    # read-only transaction...) unless the driver says the connection
                    # was lost, or it broke meanwhile. (A DBOS.sql_session statement's
                    # error is SQLAlchemy's, around the driver's: that is what counts.)
                    cause = driver_error(exc)
                    lost = is_transient(cause) and (
                        not in_body or lost_by_driver(cause) or is_closed(conn)
                    )
                    if lost:
                        drop_if_broken(conn, cause)
                    raise
        except (asyncpg.SerializationError, asyncpg.DeadlockDetectedError) as exc:
            raise TransactionConflict(str(exc)) from exc
        except Exception as exc:
            cause = driver_error(exc)
            if isinstance(cause, (asyncpg.SerializationError, asyncpg.DeadlockDetectedError)):
                raise TransactionConflict(str(cause)) from exc
            if is_pool_closed(exc):
                raise DBOSConnectionError(f"the connection pool was closed: {exc}") from exc
            if not (lost or (is_transient(exc) and not in_body)):  # (or lost acquiring)
                raise
            if (
                committing
                and xid is not None
                and xid[0] is not None
                and await self._committed(xid[0], xid[1])
            ):
                return result
            # Not committed (an xid of None: the body wrote nothing, a retry is safe).
            raise TransactionConflict(f"connection lost: {exc}") from exc

    async def _committed(self, xid: int, pid: int) -> bool:
        """Whether transaction ``xid`` committed; waits while the server still runs it,
        and after a second ends it (its COMMIT never arrived, so it can only abort)."""
        delay = 0.01
        waited = 0.0
        warned_at = 0.0
        while True:

            async def status(conn: Conn) -> str | None:
                try:
                    value: str | None = await conn.fetchval(Q["transaction_status"], xid)
                except asyncpg.InvalidParameterValueError:
                    # "in the future": a server that never saw it (a failover to a
                    # replica behind the old primary), so it did not commit there.
                    return "aborted"
                return value

            async def end_orphan(conn: Conn) -> None:
                await conn.execute(Q["end_orphan_transaction"], xid, pid)

            state = await self._pg.retrying(status)
            if state != "in progress":
                return state == "committed"
            if waited >= 1.0:
                await self._pg.retrying(end_orphan)
            if waited - warned_at >= 10.0:
                warned_at = waited
                log.warning(
                    "transaction %d is still in progress %.0fs after its connection was "
                    "lost; waiting for the server to end it",
                    xid,
                    waited,
                )
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.5)

    async def get_transaction_output(self, workflow_id: str, function_id: int) -> str | None:
        async def op(conn: Conn) -> str | None:
            value: str | None = await conn.fetchval(
                Q["get_transaction_output"], workflow_id, function_id
            )
            return value

        return await self._pg.retrying(op)

    async def delete_transaction_outputs(self, workflow_ids: Sequence[str]) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(Q["delete_transaction_outputs"], list(workflow_ids))

        await self._pg.retrying(op)
