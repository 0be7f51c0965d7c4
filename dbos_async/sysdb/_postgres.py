"""Postgres backend: the system database, composed of its parts, on an asyncpg pool.

Tables live in the ``dbos_async`` schema. The layers, each importing only those below:
``_pg_errors`` and ``_queries`` (the statements, ``sql/postgres/queries``); ``_pg_pool``
(connecting, migrating, retrying through connection loss); the parts of the system
database (``_pg_batch``: checkpoints, ``_pg_messaging`` with ``_pg_listener``,
``_pg_management``, ``_pg_queues``, ``_pg_leases``, ``_pg_versions``,
``_pg_schedules``) and the application database (``_pg_app``); and this module, which
puts the system database together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ._columns import step_row, workflow_row_or_none
from ._pg_app import PostgresApplicationDatabase
from ._pg_batch import write_batch
from ._pg_dashboard import PostgresDashboardReads
from ._pg_leases import PostgresLeases
from ._pg_listener import PostgresListener
from ._pg_management import PostgresManagement
from ._pg_messaging import PostgresMessaging
from ._pg_pool import PostgresPool
from ._pg_queues import PostgresQueues
from ._pg_schedules import PostgresSchedules
from ._pg_versions import PostgresVersions
from ._queries import load_queries
from ._rows import StepRow, WorkflowRow, Write, WriteResult

if TYPE_CHECKING:
    from ._pg_pool import Conn

__all__ = ["PostgresApplicationDatabase", "PostgresPool", "PostgresSystemDatabase"]

Q = load_queries("postgres")


class PostgresSystemDatabase(
    PostgresMessaging,
    PostgresManagement,
    PostgresQueues,
    PostgresLeases,
    PostgresVersions,
    PostgresSchedules,
    PostgresDashboardReads,
):
    """The system database on Postgres."""

    def __init__(self, pool: PostgresPool) -> None:
        super().__init__(pool)
        self.url = pool.url
        self._listener: PostgresListener | None = None

    async def connect(self) -> None:
        await self._pg.open()
        try:
            await self._pg.migrate("system")
        except BaseException:
            await self._pg.close()
            raise

    async def close(self) -> None:
        await self.unlisten()
        await self._pg.close()

    async def listen(self, on_notify: Callable[[str], None]) -> bool:
        if self._listener is None:
            self._listener = PostgresListener(self._pg)
            await self._listener.start(on_notify)
        return True

    async def unlisten(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.stop()

    async def write_batch(
        self, writes: Sequence[Write], *, retry: bool = False
    ) -> list[WriteResult]:
        attempts = 0

        async def op(conn: Conn) -> list[WriteResult]:
            nonlocal attempts
            retrying = retry or attempts > 0
            attempts += 1
            return await write_batch(conn, writes, retrying, self.owner)

        return await self._pg.retrying(op, held=True)

    async def get_workflow(self, workflow_id: str) -> WorkflowRow | None:
        async def op(conn: Conn) -> WorkflowRow | None:
            return workflow_row_or_none(await conn.fetchrow(Q["get_workflow"], workflow_id))

        return await self._pg.retrying(op)

    async def load_steps(self, workflow_id: str) -> list[StepRow]:
        async def op(conn: Conn) -> list[StepRow]:
            return [step_row(r) for r in await conn.fetch(Q["load_steps"], workflow_id)]

        return await self._pg.retrying(op)

    async def load_steps_many(self, workflow_ids: Sequence[str]) -> dict[str, list[StepRow]]:
        async def op(conn: Conn) -> dict[str, list[StepRow]]:
            found: dict[str, list[StepRow]] = {wid: [] for wid in workflow_ids}
            for r in await conn.fetch(Q["load_steps_many"], list(workflow_ids)):
                found[r[0]].append(step_row(r))
            return found

        return await self._pg.retrying(op)
