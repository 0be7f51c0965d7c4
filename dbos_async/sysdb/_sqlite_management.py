"""SQLite: listing, cancelling, resuming and forking workflows."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

import aiosqlite

from ._columns import WORKFLOW_COLUMNS, column_list, workflow_params
from ._columns import workflow_row as _row
from ._results import deduplicated
from ._rows import WorkflowQuery, WorkflowRow

if TYPE_CHECKING:
    from ._sqlite import SQLiteConnection

__all__ = ["SQLiteManagement"]

_COLS = column_list(WORKFLOW_COLUMNS)
_LIST_WHERE = (
    "SELECT " + _COLS + " FROM dbos_workflow_status"
    " WHERE (:ids IS NULL OR workflow_uuid IN (SELECT value FROM json_each(:ids)))"
    " AND (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))"
    " AND (:name IS NULL OR name = :name)"
    " AND (:start IS NULL OR created_at >= :start)"
    " AND (:end IS NULL OR created_at <= :end)"
    " AND (:queue IS NULL OR queue_name = :queue)"
    " AND (:parent IS NULL OR parent_workflow_id = :parent)"
    " AND (NOT :queued_only OR queue_name IS NOT NULL)"
)
_LIST_ASC = _LIST_WHERE + " ORDER BY created_at ASC, workflow_uuid ASC LIMIT :limit OFFSET :offset"
_LIST_DESC = (
    _LIST_WHERE + " ORDER BY created_at DESC, workflow_uuid DESC LIMIT :limit OFFSET :offset"
)
_CANCEL = (
    "UPDATE dbos_workflow_status SET status = 'CANCELLED', updated_at = ?"
    " WHERE workflow_uuid = ? AND status IN ('PENDING', 'ENQUEUED')"
)
_GET = "SELECT " + _COLS + " FROM dbos_workflow_status WHERE workflow_uuid = ?"
# A workflow of a queue goes back to ENQUEUED (its queue's limits apply again); any other
# becomes PENDING on the executor given.
_RESUME = (
    "UPDATE dbos_workflow_status SET"
    " status = CASE WHEN queue_name IS NULL THEN 'PENDING' ELSE 'ENQUEUED' END,"
    " executor_id = CASE WHEN queue_name IS NULL THEN ? END,"
    " started_at_epoch_ms = CASE WHEN queue_name IS NULL THEN started_at_epoch_ms END,"
    " recovery_attempts = 0, updated_at = ?, output = NULL, error = NULL,"
    " workflow_deadline_epoch_ms = NULL"
    " WHERE workflow_uuid = ? AND status IN ('CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')"
    " RETURNING " + _COLS
)
_INSERT = (
    "INSERT INTO dbos_workflow_status (" + _COLS + ") VALUES "
    "(" + ", ".join("?" * len(WORKFLOW_COLUMNS)) + ")"
)
_COPY_STEPS = (
    "INSERT INTO dbos_operation_outputs (workflow_uuid, function_id, function_name,"
    " output, error, child_workflow_id, started_at_epoch_ms, completed_at_epoch_ms)"
    " SELECT ?, function_id, function_name, output, error, child_workflow_id,"
    " started_at_epoch_ms, completed_at_epoch_ms FROM dbos_operation_outputs"
    " WHERE workflow_uuid = ? AND function_id < ?"
)
_CANCELLED_AMONG = (
    "SELECT k.value FROM json_each(?) AS k"
    " LEFT JOIN dbos_workflow_status AS w ON w.workflow_uuid = k.value"
    " WHERE w.workflow_uuid IS NULL OR w.status = 'CANCELLED'"
)


class SQLiteManagement:
    """The management half of the SQLite system database."""

    _db: SQLiteConnection

    async def list_workflows(self, query: WorkflowQuery) -> list[WorkflowRow]:
        params = {
            "ids": None if query.workflow_ids is None else json.dumps(query.workflow_ids),
            "statuses": None if query.statuses is None else json.dumps(query.statuses),
            "name": query.name,
            "start": query.start_ms,
            "end": query.end_ms,
            "queue": query.queue_name,
            "parent": query.parent_workflow_id,
            "queued_only": int(query.queued_only),
            "limit": -1 if query.limit is None else query.limit,
            "offset": query.offset or 0,
        }
        sql = _LIST_DESC if query.sort_desc else _LIST_ASC

        async def op(conn: aiosqlite.Connection) -> list[WorkflowRow]:
            cur = await conn.execute(sql, params)
            return [_row(r) for r in await cur.fetchall()]

        return await self._db.read(op)

    async def cancel_workflow(self, workflow_id: str, now_ms: int) -> WorkflowRow | None:
        async def op(conn: aiosqlite.Connection) -> WorkflowRow | None:
            await conn.execute(_CANCEL, (now_ms, workflow_id))
            cur = await conn.execute(_GET, (workflow_id,))
            r = await cur.fetchone()
            return _row(r) if r is not None else None

        return await self._db.write(op)

    async def resume_workflow(
        self, workflow_id: str, executor_id: str, now_ms: int
    ) -> tuple[bool, WorkflowRow | None]:
        async def op(conn: aiosqlite.Connection) -> tuple[bool, WorkflowRow | None]:
            try:
                cur = await conn.execute(_RESUME, (executor_id, now_ms, workflow_id))
                r = await cur.fetchone()
            except sqlite3.IntegrityError:
                # Its deduplication ID was taken by another workflow meanwhile.
                cur = await conn.execute(_GET, (workflow_id,))
                stored = await cur.fetchone()
                raise deduplicated(_row(stored)) from None
            if r is not None:
                return True, _row(r)
            cur = await conn.execute(_GET, (workflow_id,))
            r = await cur.fetchone()
            return False, _row(r) if r is not None else None

        return await self._db.write(op)

    async def fork_workflow(self, source_id: str, row: WorkflowRow, start_step: int) -> None:
        async def op(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                _INSERT,
                workflow_params(row),
            )
            await conn.execute(_COPY_STEPS, (row.workflow_id, source_id, start_step))

        await self._db.write(op)

    async def cancelled_among(self, workflow_ids: Sequence[str]) -> list[str]:
        async def op(conn: aiosqlite.Connection) -> list[str]:
            cur = await conn.execute(_CANCELLED_AMONG, (json.dumps(list(workflow_ids)),))
            return [str(r[0]) for r in await cur.fetchall()]

        return await self._db.read(op)
