"""Postgres: leases, and taking over the workflows of processes whose lease has expired.

Lease times are the database's clock (``dbos_async.now_ms()``), so processes on machines
whose clocks disagree agree on which leases have expired. A takeover is one conditional
statement that locks the rows it takes ``FOR UPDATE SKIP LOCKED``: of several processes
taking over at once each workflow goes to exactly one, and a fenced write of the old
owner (which holds the row ``FOR SHARE``) commits before it or not at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from ._columns import workflow_row
from ._keys import notification_key
from ._pg_pool import PostgresPool
from ._queries import load_queries
from ._rows import ExecutorRow, LeaseHolder, RecoveryClaim, RecoveryRequest, WorkflowRow

__all__ = ["PostgresLeases"]

Q = load_queries("postgres")

#: What a process announces when a lease ends: every live process looks for workflows
#: to take over.
TAKEOVER_KEY = notification_key("run", "", "")


class PostgresLeases:
    """The lease half of the Postgres system database."""

    _pg: PostgresPool
    owner: str | None

    async def register_lease(self, holder: LeaseHolder, lease_ms: int) -> None:
        async def op(conn: Any) -> None:
            await conn.execute(
                Q["register_lease"],
                holder.process_id,
                holder.executor_id,
                holder.hostname,
                holder.pid,
                holder.process_tag,
                holder.application_version,
                lease_ms,
            )

        await self._pg.retrying(op)

    async def renew_lease(self, process_id: str, lease_ms: int) -> bool:
        async def op(conn: Any) -> bool:
            return await conn.fetchval(Q["renew_lease"], process_id, lease_ms) is not None

        return await self._pg.retrying(op)

    async def end_lease(self, process_id: str) -> None:
        async def op(conn: Any) -> None:
            await conn.execute(Q["end_lease"], process_id, TAKEOVER_KEY)

        await self._pg.retrying(op)

    async def list_executors(self) -> list[ExecutorRow]:
        async def op(conn: Any) -> list[ExecutorRow]:
            return [ExecutorRow(*r) for r in await conn.fetch(Q["list_executors"])]

        return await self._pg.retrying(op)

    async def orphaned_workflows(
        self,
        app_version: str,
        names: Sequence[str],
        stale_before_ms: int,
        running: Sequence[str],
        limit: int,
    ) -> list[WorkflowRow]:
        async def op(conn: Any) -> list[WorkflowRow]:
            rows = await conn.fetch(
                Q["orphaned_workflows"],
                app_version,
                self.owner,
                stale_before_ms,
                list(running),
                limit,
                list(names),
            )
            return [workflow_row(r) for r in rows]

        return await self._pg.retrying(op)

    async def take_over(
        self, requests: Sequence[RecoveryRequest], executor_id: str, now_ms: int
    ) -> list[RecoveryClaim]:
        ids = [r.workflow_id for r in requests]
        token = uuid.uuid4().hex
        attempts = 0

        async def op(conn: Any) -> list[RecoveryClaim]:
            nonlocal attempts
            attempts += 1
            # A first attempt whose reply was lost may have taken them: its token says.
            rows = await conn.fetch(Q["taken_over"], ids, token) if attempts > 1 else []
            if not rows:
                rows = await conn.fetch(
                    Q["take_over"],
                    ids,
                    [r.seen_owner for r in requests],
                    [r.seen_attempts for r in requests],
                    [r.max_attempts for r in requests],
                    self.owner,
                    executor_id,
                    now_ms,
                    token,
                )
            return [
                RecoveryClaim(row, exceeded=row.status == "MAX_RECOVERY_ATTEMPTS_EXCEEDED")
                for row in map(workflow_row, rows)
            ]

        return await self._pg.retrying(op)
