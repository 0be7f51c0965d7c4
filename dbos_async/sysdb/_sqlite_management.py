"""SQLite: listing, cancelling, resuming and forking workflows."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from .._errors import DBOSConflictingWorkflowError
from ._columns import workflow_params, workflow_row, workflow_row_or_none
from ._queries import load_queries
from ._results import deduplicated
from ._rows import WorkflowQuery, WorkflowRow
from ._sqlite_connection import SQLiteConnection

__all__ = ["SQLiteManagement"]

Q = load_queries("sqlite")


class SQLiteManagement:
    """The management half of the SQLite system database."""

    _db: SQLiteConnection
    owner: str | None

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
            "prefix": query.workflow_id_prefix,
        }
        sql = Q["list_workflows_newest_first" if query.sort_desc else "list_workflows"]

        def op(conn: sqlite3.Connection) -> list[WorkflowRow]:
            cur = conn.execute(sql, params)
            return [workflow_row(r) for r in cur.fetchall()]

        return await self._db.read(op)

    async def cancel_workflow(self, workflow_id: str, now_ms: int) -> WorkflowRow | None:
        def op(conn: sqlite3.Connection) -> WorkflowRow | None:
            conn.execute(Q["cancel_workflow"], (now_ms, workflow_id))
            cur = conn.execute(Q["get_workflow"], (workflow_id,))
            return workflow_row_or_none(cur.fetchone())

        return await self._db.write(op)

    async def resume_workflow(
        self, workflow_id: str, executor_id: str, now_ms: int
    ) -> tuple[bool, WorkflowRow | None]:
        def op(conn: sqlite3.Connection) -> tuple[bool, WorkflowRow | None]:
            try:
                cur = conn.execute(
                    Q["resume_workflow"], (executor_id, self.owner, now_ms, workflow_id)
                )
                r = cur.fetchone()
            except sqlite3.IntegrityError:
                # Its deduplication ID was taken by another workflow meanwhile.
                cur = conn.execute(Q["get_workflow"], (workflow_id,))
                stored = cur.fetchone()
                raise deduplicated(workflow_row(stored)) from None
            if r is not None:
                return True, workflow_row(r)
            cur = conn.execute(Q["get_workflow"], (workflow_id,))
            return False, workflow_row_or_none(cur.fetchone())

        return await self._db.write(op)

    async def fork_workflow(self, source_id: str, row: WorkflowRow, start_step: int) -> None:
        def op(conn: sqlite3.Connection) -> None:
            cur = conn.execute(Q["insert_workflow"], workflow_params(row))
            if cur.rowcount == 0:
                cur = conn.execute(Q["get_workflow"], (row.workflow_id,))
                stored = workflow_row(cur.fetchone())
                raise DBOSConflictingWorkflowError(row.workflow_id, stored.name, row.name)
            conn.execute(Q["copy_steps"], (row.workflow_id, source_id, start_step))

        await self._db.write(op)

    async def delete_workflows(self, workflow_ids: Sequence[str]) -> list[str]:
        def op(conn: sqlite3.Connection) -> list[str]:
            cur = conn.execute(Q["delete_workflows"], (json.dumps(list(workflow_ids)),))
            return [str(r[0]) for r in cur.fetchall()]

        return await self._db.write(op)

    async def cancelled_among(self, workflow_ids: Sequence[str]) -> list[str]:
        def op(conn: sqlite3.Connection) -> list[str]:
            cur = conn.execute(Q["cancelled_among"], (json.dumps(list(workflow_ids)),))
            return [str(r[0]) for r in cur.fetchall()]

        return await self._db.read(op)

    async def not_owned_among(self, workflow_ids: Sequence[str]) -> list[str]:
        def op(conn: sqlite3.Connection) -> list[str]:
            ids = json.dumps(list(workflow_ids))
            cur = conn.execute(Q["not_owned"], (ids, self.owner))
            return [str(r[0]) for r in cur.fetchall()]

        return await self._db.read(op)
