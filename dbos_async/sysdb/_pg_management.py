"""Postgres: listing, cancelling, resuming and forking workflows."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from .._errors import DBOSConflictingWorkflowError
from ._columns import WORKFLOW_COLUMNS, column_list, workflow_params
from ._columns import workflow_row as _row
from ._keys import notification_key
from ._pg_messaging import CHANNEL
from ._results import deduplicated, is_our_insert
from ._rows import WorkflowQuery, WorkflowRow

if TYPE_CHECKING:
    from ._postgres import PostgresPool

__all__ = ["PostgresManagement"]

_COLS = column_list(WORKFLOW_COLUMNS)
_LIST_WHERE = (
    "SELECT " + _COLS + " FROM dbos_async.workflow_status"
    " WHERE ($1::text[] IS NULL OR workflow_uuid = ANY($1::text[]))"
    " AND ($2::text[] IS NULL OR status = ANY($2::text[]))"
    " AND ($3::text IS NULL OR name = $3)"
    " AND ($4::bigint IS NULL OR created_at >= $4)"
    " AND ($5::bigint IS NULL OR created_at <= $5)"
    " AND ($6::text IS NULL OR queue_name = $6)"
    " AND ($7::text IS NULL OR parent_workflow_id = $7)"
    " AND (NOT $8::bool OR queue_name IS NOT NULL)"
)
_LIST_ASC = _LIST_WHERE + " ORDER BY created_at ASC, workflow_uuid ASC LIMIT $9 OFFSET $10"
_LIST_DESC = _LIST_WHERE + " ORDER BY created_at DESC, workflow_uuid DESC LIMIT $9 OFFSET $10"
_CANCEL = (
    "WITH c AS (UPDATE dbos_async.workflow_status SET status = 'CANCELLED', updated_at = $2"
    " WHERE workflow_uuid = $1 AND status IN ('PENDING', 'ENQUEUED') RETURNING 1)"
    " SELECT pg_notify('" + CHANNEL + "', $3) FROM c"
)
_GET = "SELECT " + _COLS + " FROM dbos_async.workflow_status WHERE workflow_uuid = $1"
# A workflow of a queue goes back to ENQUEUED (its queue's limits apply again) and its
# queue's workers are woken; any other becomes PENDING on the executor given.
_RESUME = (
    "WITH r AS (UPDATE dbos_async.workflow_status SET"
    " status = CASE WHEN queue_name IS NULL THEN 'PENDING' ELSE 'ENQUEUED' END,"
    " executor_id = CASE WHEN queue_name IS NULL THEN $2 END,"
    " started_at_epoch_ms = CASE WHEN queue_name IS NULL THEN started_at_epoch_ms END,"
    " recovery_attempts = 0, updated_at = $3, output = NULL, error = NULL,"
    " workflow_deadline_epoch_ms = NULL, claim_token = $4"
    " WHERE workflow_uuid = $1 AND status IN ('CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')"
    " RETURNING " + _COLS + ")"
    " SELECT r.*, CASE WHEN r.queue_name IS NOT NULL THEN pg_notify('" + CHANNEL + "',"
    " 'queue' || chr(31) || r.queue_name || chr(31)) END FROM r"
)
# A resume whose reply was lost left its token on the row.
_RESUMED = (
    "SELECT " + _COLS + " FROM dbos_async.workflow_status"
    " WHERE workflow_uuid = $1 AND claim_token = $2"
)
_INSERT = (
    "INSERT INTO dbos_async.workflow_status (" + _COLS + ") VALUES "
    "(" + ", ".join(f"${i}" for i in range(1, len(WORKFLOW_COLUMNS) + 1)) + ")"
    " ON CONFLICT (workflow_uuid) DO NOTHING RETURNING 1"
)
_COPY_STEPS = (
    "INSERT INTO dbos_async.operation_outputs (workflow_uuid, function_id, function_name,"
    " output, error, child_workflow_id, started_at_epoch_ms, completed_at_epoch_ms)"
    " SELECT $2, function_id, function_name, output, error, child_workflow_id,"
    " started_at_epoch_ms, completed_at_epoch_ms FROM dbos_async.operation_outputs"
    " WHERE workflow_uuid = $1 AND function_id < $3"
)
_CANCELLED_AMONG = (
    "SELECT k.id FROM unnest($1::text[]) AS k(id)"
    " LEFT JOIN dbos_async.workflow_status AS w ON w.workflow_uuid = k.id"
    " WHERE w.workflow_uuid IS NULL OR w.status = 'CANCELLED'"
)


class PostgresManagement:
    """The management half of the Postgres system database."""

    _pg: PostgresPool

    async def list_workflows(self, query: WorkflowQuery) -> list[WorkflowRow]:
        sql = _LIST_DESC if query.sort_desc else _LIST_ASC

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
            )
            return [_row(r) for r in rows]

        return await self._pg.retrying(op)

    async def cancel_workflow(self, workflow_id: str, now_ms: int) -> WorkflowRow | None:
        async def op(conn: Any) -> WorkflowRow | None:
            await conn.execute(
                _CANCEL, workflow_id, now_ms, notification_key("cancel", workflow_id, "")
            )
            r = await conn.fetchrow(_GET, workflow_id)
            return _row(r) if r is not None else None

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
                mine = await conn.fetchrow(_RESUMED, workflow_id, token)
                if mine is not None:
                    return True, _row(mine)  # the first attempt committed
            try:
                r = await conn.fetchrow(_RESUME, workflow_id, executor_id, now_ms, token)
            except asyncpg.UniqueViolationError:
                # Its deduplication ID was taken by another workflow meanwhile.
                stored = await conn.fetchrow(_GET, workflow_id)
                raise deduplicated(_row(stored)) from None
            if r is not None:
                return True, _row(tuple(r)[:-1])  # (without the notification's column)
            r = await conn.fetchrow(_GET, workflow_id)
            return False, _row(r) if r is not None else None

        return await self._pg.retrying(op)

    async def fork_workflow(self, source_id: str, row: WorkflowRow, start_step: int) -> None:
        attempts = 0

        async def op(conn: Any) -> None:
            nonlocal attempts
            attempts += 1
            async with conn.transaction():
                if await conn.fetchval(_INSERT, *workflow_params(row)) is None:
                    stored = _row(await conn.fetchrow(_GET, row.workflow_id))
                    if attempts > 1 and is_our_insert(row, stored):
                        return  # the first attempt committed; its reply was lost
                    raise DBOSConflictingWorkflowError(row.workflow_id, stored.name, row.name)
                await conn.execute(_COPY_STEPS, source_id, row.workflow_id, start_step)

        await self._pg.retrying(op)

    async def cancelled_among(self, workflow_ids: Sequence[str]) -> list[str]:
        async def op(conn: Any) -> list[str]:
            return [r[0] for r in await conn.fetch(_CANCELLED_AMONG, list(workflow_ids))]

        return await self._pg.retrying(op)
