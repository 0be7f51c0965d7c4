"""Postgres: listing, cancelling, resuming and forking workflows."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from .._errors import DBOSConflictingWorkflowError
from ._columns import workflow_params, workflow_row, workflow_row_or_none
from ._keys import notification_key
from ._pg_pool import PostgresPool
from ._queries import load_queries
from ._results import deduplicated, is_our_insert
from ._rows import WorkflowQuery, WorkflowRow

__all__ = ["PostgresManagement"]

Q = load_queries("postgres")


class PostgresManagement:
    """The management half of the Postgres system database."""

    _pg: PostgresPool
    owner: str | None

    async def list_workflows(self, query: WorkflowQuery) -> list[WorkflowRow]:
        sql = Q["list_workflows_newest_first" if query.sort_desc else "list_workflows"]

        async def op(conn: Any) -> list[WorkflowRow]:
            rows = await conn.fetch(
                sql,
                query.workflow_ids,
                query.statuses,
                query.name,
                query.start_ms,
                query.end_ms,
                query.queue_name,
                query.parent_workflow_id,
                query.queued_only,
                query.limit,
                query.offset,
                query.workflow_id_prefix,
            )
            return [workflow_row(r) for r in rows]

        return await self._pg.retrying(op)

    async def cancel_workflow(self, workflow_id: str, now_ms: int) -> WorkflowRow | None:
        async def op(conn: Any) -> WorkflowRow | None:
            wake = notification_key("cancel", workflow_id, "")
            await conn.execute(Q["cancel_workflow"], workflow_id, now_ms, wake)
            return workflow_row_or_none(await conn.fetchrow(Q["get_workflow"], workflow_id))

        return await self._pg.retrying(op)

    async def resume_workflow(
        self, workflow_id: str, executor_id: str, now_ms: int
    ) -> tuple[bool, WorkflowRow | None]:
        token = uuid.uuid4().hex
        attempts = 0

        async def op(conn: Any) -> tuple[bool, WorkflowRow | None]:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                mine = await conn.fetchrow(Q["resumed_workflow"], workflow_id, token)
                if mine is not None:
                    return True, workflow_row(mine)  # the first attempt committed
            try:
                r = await conn.fetchrow(
                    Q["resume_workflow"], workflow_id, executor_id, now_ms, token, self.owner
                )
            except asyncpg.UniqueViolationError:
                # Its deduplication ID was taken by another workflow meanwhile.
                stored = await conn.fetchrow(Q["get_workflow"], workflow_id)
                raise deduplicated(workflow_row(stored)) from None
            if r is not None:
                return True, workflow_row(tuple(r)[:-1])  # (without the notification's column)
            r = await conn.fetchrow(Q["get_workflow"], workflow_id)
            return False, workflow_row_or_none(r)

        return await self._pg.retrying(op)

    async def fork_workflow(self, source_id: str, row: WorkflowRow, start_step: int) -> None:
        attempts = 0

        async def op(conn: Any) -> None:
            nonlocal attempts
            attempts += 1
            async with conn.transaction():
                if await conn.fetchval(Q["insert_workflow"], *workflow_params(row)) is None:
                    stored = workflow_row(await conn.fetchrow(Q["get_workflow"], row.workflow_id))
                    if attempts > 1 and is_our_insert(row, stored):
                        return  # the first attempt committed; its reply was lost
                    raise DBOSConflictingWorkflowError(row.workflow_id, stored.name, row.name)
                await conn.execute(Q["copy_steps"], source_id, row.workflow_id, start_step)

        await self._pg.retrying(op)

    async def delete_workflows(self, workflow_ids: Sequence[str]) -> list[str]:
        ids = list(workflow_ids)
        keys = [notification_key("cancel", i, "") for i in ids]

        async def op(conn: Any) -> list[str]:
            return [r[0] for r in await conn.fetch(Q["delete_workflows"], ids, keys)]

        return await self._pg.retrying(op)

    async def cancelled_among(self, workflow_ids: Sequence[str]) -> list[str]:
        async def op(conn: Any) -> list[str]:
            return [r[0] for r in await conn.fetch(Q["cancelled_among"], list(workflow_ids))]

        return await self._pg.retrying(op)

    async def not_owned_among(self, workflow_ids: Sequence[str]) -> list[str]:
        async def op(conn: Any) -> list[str]:
            rows = await conn.fetch(Q["not_owned"], list(workflow_ids), self.owner)
            return [r[0] for r in rows]

        return await self._pg.retrying(op)
