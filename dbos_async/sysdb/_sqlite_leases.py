"""SQLite: leases, and taking over the workflows of processes whose lease has expired.

Every process sharing a SQLite file runs on one machine, so lease times are this
machine's clock. A takeover is one conditional update per workflow, all in one write
transaction: of several processes taking over at once each workflow goes to exactly one.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from .. import _clock
from ._columns import workflow_row
from ._queries import load_queries
from ._rows import ExecutorRow, LeaseHolder, RecoveryClaim, RecoveryRequest, WorkflowRow
from ._sqlite_connection import SQLiteConnection

__all__ = ["SQLiteLeases"]

Q = load_queries("sqlite")

#: Processes whose lease expired this long ago, and that own nothing, are forgotten.
_FORGET_AFTER_MS = 86_400_000


class SQLiteLeases:
    """The lease half of the SQLite system database."""

    _db: SQLiteConnection
    owner: str | None

    async def register_lease(self, holder: LeaseHolder, lease_ms: int) -> None:
        def op(conn: sqlite3.Connection) -> None:
            now = _clock.now_ms()
            conn.execute(Q["forget_executors"], {"before": now - _FORGET_AFTER_MS})
            conn.execute(
                Q["register_lease"],
                {
                    "process": holder.process_id,
                    "executor": holder.executor_id,
                    "host": holder.hostname,
                    "pid": holder.pid,
                    "process_tag": holder.process_tag,
                    "version": holder.application_version,
                    "now": now,
                    "expires": now + lease_ms,
                },
            )

        await self._db.write(op)

    async def renew_lease(self, process_id: str, lease_ms: int) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            now = _clock.now_ms()
            cur = conn.execute(Q["renew_lease"], (now, now + lease_ms, process_id))
            return cur.rowcount == 1

        return await self._db.write(op)

    async def end_lease(self, process_id: str) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(Q["end_lease"], (_clock.now_ms(), process_id))

        await self._db.write(op)

    async def list_executors(self) -> list[ExecutorRow]:
        def op(conn: sqlite3.Connection) -> list[ExecutorRow]:
            cur = conn.execute(Q["list_executors"], (_clock.now_ms(),))
            return [
                ExecutorRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bool(r[9]), r[10])
                for r in cur.fetchall()
            ]

        return await self._db.read(op)

    async def orphaned_workflows(
        self,
        app_version: str,
        names: Sequence[str],
        stale_before_ms: int,
        running: Sequence[str],
        limit: int,
    ) -> list[WorkflowRow]:
        def op(conn: sqlite3.Connection) -> list[WorkflowRow]:
            cur = conn.execute(
                Q["orphaned_workflows"],
                {
                    "version": app_version,
                    "names": json.dumps(list(names)),
                    "me": self.owner,
                    "stale": stale_before_ms,
                    "running": json.dumps(list(running)),
                    "now": _clock.now_ms(),
                    "n": limit,
                },
            )
            return [workflow_row(r) for r in cur.fetchall()]

        return await self._db.read(op)

    async def take_over(
        self, requests: Sequence[RecoveryRequest], executor_id: str, now_ms: int
    ) -> list[RecoveryClaim]:
        # Leases are judged as of this call, not after waiting for the file's write lock:
        # a lease that ran out only because a long transaction held the lock (and with
        # it every process's renewal) is not taken from; the next round sees it renewed.
        clock = _clock.now_ms()

        def op(conn: sqlite3.Connection) -> list[RecoveryClaim]:
            won = []
            for r in requests:
                cur = conn.execute(
                    Q["take_over"],
                    {
                        "id": r.workflow_id,
                        "seen_owner": r.seen_owner,
                        "seen": r.seen_attempts,
                        "max": r.max_attempts,
                        "me": self.owner,
                        "executor": executor_id,
                        "now": now_ms,
                        "clock": clock,
                    },
                )
                found = cur.fetchone()
                if found is not None:
                    row = workflow_row(found)
                    exceeded = row.status == "MAX_RECOVERY_ATTEMPTS_EXCEEDED"
                    won.append(RecoveryClaim(row, exceeded=exceeded))
            return won

        return await self._db.write(op)
