"""Postgres backend: an asyncpg pool; tables in the ``dbos_async`` schema.

Writes that record workflow state are idempotent, so a call that lost its connection (a
Postgres restart, a dropped socket, a commit whose outcome is unknown) is retried with
backoff until the database answers again: connection loss pauses workflows, it does not
fail them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

if TYPE_CHECKING:
    from typing import TypeAlias

    from asyncpg.pool import PoolConnectionProxy

    _Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]

from .._errors import DBOSConnectionError
from .._urls import redact_url
from ._columns import (
    STEP_COLUMNS,
    WORKFLOW_COLUMNS,
    column_list,
    step_params,
    workflow_params,
)
from ._columns import step_row as _step_row
from ._columns import workflow_row as _workflow_row
from ._migrations import load_schema_files
from ._pg_errors import (
    drop_if_broken,
    is_closed,
    is_pool_closed,
    is_transient,
    lost_by_driver,
)
from ._pg_management import PostgresManagement
from ._pg_messaging import CHANNEL, PostgresListener, PostgresMessaging
from ._pg_queues import PostgresQueues
from ._protocol import TransactionConflict
from ._results import finish_result, insert_result, step_result
from ._rows import (
    FinishWorkflow,
    InsertWorkflow,
    RecordStep,
    RecoveryClaim,
    RecoveryRequest,
    StepRow,
    WorkflowRow,
    Write,
    WriteResult,
)

__all__ = ["PostgresApplicationDatabase", "PostgresPool", "PostgresSystemDatabase"]

log = logging.getLogger("dbos_async")
T = TypeVar("T")

_MIGRATION_LOCK = 0x64626F735F61  # advisory lock key serializing schema migrations
_CLOSE_TIMEOUT = 5.0  # seconds a pool may take to close gracefully

_COLS = column_list(WORKFLOW_COLUMNS)
_STEP_COLS = column_list(STEP_COLUMNS)

#: The Postgres type of each of ``WORKFLOW_COLUMNS`` (for unnest).
_WORKFLOW_TYPES = (
    "text", "text", "text", "text", "text", "text", "text", "text", "bigint", "bigint", "int",
    "text", "text", "text", "bigint", "bigint", "int", "text", "text", "bigint", "bigint",
)  # fmt: skip
_N = len(_WORKFLOW_TYPES)
_VALUES = "(" + ", ".join(f"${i}" for i in range(1, _N + 1)) + ")"
_INSERT_WORKFLOW = (
    "INSERT INTO dbos_async.workflow_status (" + _COLS + ") VALUES " + _VALUES + " "
    "ON CONFLICT (workflow_uuid) DO NOTHING RETURNING 1"
)
_GET_WORKFLOW = "SELECT " + _COLS + " FROM dbos_async.workflow_status WHERE workflow_uuid = $1"
# A queued workflow that ends frees a place in its queue: wake the queue's workers.
_WAKE_QUEUE = "pg_notify('" + CHANNEL + "', 'queue' || chr(31) || queue_name || chr(31))"
_FINISH_WORKFLOW = (
    "WITH f AS (UPDATE dbos_async.workflow_status"
    " SET status = $2, output = $3, error = $4, updated_at = $5"
    " WHERE workflow_uuid = $1 AND status = 'PENDING' RETURNING queue_name),"
    " woke AS (SELECT " + _WAKE_QUEUE + " FROM f WHERE queue_name IS NOT NULL)"
    " SELECT (SELECT count(*) FROM f), (SELECT count(*) FROM woke)"
)
_INSERT_STEP = (
    "INSERT INTO dbos_async.operation_outputs (" + _STEP_COLS + ") VALUES "
    "($1, $2, $3, $4, $5, $6, $7, $8) "
    "ON CONFLICT (workflow_uuid, function_id) DO NOTHING RETURNING 1"
)
_GET_STEP = (
    "SELECT " + _STEP_COLS + " FROM dbos_async.operation_outputs "
    "WHERE workflow_uuid = $1 AND function_id = $2"
)
_WRITE_BATCH = (
    "WITH ins AS ("
    " INSERT INTO dbos_async.workflow_status (" + _COLS + ")"
    " SELECT * FROM unnest("
    + ", ".join(f"${i}::{t}[]" for i, t in enumerate(_WORKFLOW_TYPES, 1))
    + ") ON CONFLICT (workflow_uuid) DO NOTHING RETURNING workflow_uuid"
    "), steps AS ("
    " INSERT INTO dbos_async.operation_outputs (" + _STEP_COLS + ")"
    " SELECT * FROM unnest("
    + ", ".join(
        f"${_N + i}::{t}[]"
        for i, t in enumerate(
            ("text", "int", "text", "text", "text", "text", "bigint", "bigint"), 1
        )
    )
    + ") ON CONFLICT (workflow_uuid, function_id) DO NOTHING"
    " RETURNING workflow_uuid, function_id"
    "), fin AS ("
    " UPDATE dbos_async.workflow_status AS w"
    " SET status = f.status, output = f.output, error = f.error, updated_at = f.updated_at"
    " FROM unnest("
    + ", ".join(
        f"${_N + 8 + i}::{t}[]" for i, t in enumerate(("text", "text", "text", "text", "bigint"), 1)
    )
    + ")"
    " AS f(workflow_uuid, status, output, error, updated_at)"
    " WHERE w.workflow_uuid = f.workflow_uuid AND w.status = 'PENDING'"
    " RETURNING w.workflow_uuid, w.queue_name"
    "), woke AS (SELECT " + _WAKE_QUEUE + " FROM"
    " (SELECT DISTINCT queue_name FROM fin WHERE queue_name IS NOT NULL) AS q"
    ")"
    " SELECT 1, workflow_uuid, NULL::int FROM ins"
    " UNION ALL SELECT 2, workflow_uuid, function_id FROM steps"
    " UNION ALL SELECT 3, workflow_uuid, NULL::int FROM fin"
    " UNION ALL SELECT 4, NULL::text, NULL::int FROM woke"
)
_GET_WORKFLOWS = (
    "SELECT " + _COLS + " FROM dbos_async.workflow_status WHERE workflow_uuid = ANY($1::text[])"
)
_GET_STEPS = (
    "SELECT o." + _STEP_COLS.replace(", ", ", o.") + " FROM dbos_async.operation_outputs AS o"
    " JOIN unnest($1::text[], $2::int[]) AS k(workflow_uuid, function_id)"
    " ON o.workflow_uuid = k.workflow_uuid AND o.function_id = k.function_id"
)
_LOAD_STEPS = (
    "SELECT " + _STEP_COLS + " FROM dbos_async.operation_outputs "
    "WHERE workflow_uuid = $1 ORDER BY function_id"
)
_PENDING = (
    "SELECT " + _COLS + " FROM dbos_async.workflow_status "
    "WHERE status = 'PENDING' AND executor_id = $1 AND application_version = $2 "
    "ORDER BY created_at"
)
_CLAIM = (
    "UPDATE dbos_async.workflow_status AS w SET recovery_attempts = w.recovery_attempts + 1,"
    " status = CASE WHEN w.recovery_attempts + 1 > c.max_attempts"
    " THEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' ELSE w.status END, updated_at = $4,"
    " claim_token = $5"
    " FROM unnest($1::text[], $2::int[], $3::int[]) AS c(workflow_uuid, seen, max_attempts)"
    " WHERE w.workflow_uuid = c.workflow_uuid AND w.status = 'PENDING'"
    " AND w.recovery_attempts = c.seen"
    " RETURNING " + ", ".join("w." + c for c in _COLS.split(", "))
)
# What a recovery claim whose reply was lost took (one statement: all of it or nothing).
_CLAIMED = (
    "SELECT " + _COLS + " FROM dbos_async.workflow_status"
    " WHERE workflow_uuid = ANY($1::text[]) AND claim_token = $2"
)
_LOAD_STEPS_MANY = (
    "SELECT " + _STEP_COLS + " FROM dbos_async.operation_outputs "
    "WHERE workflow_uuid = ANY($1::text[]) ORDER BY workflow_uuid, function_id"
)
_INSERT_TX_OUTPUT = (
    "INSERT INTO dbos_async.transaction_outputs (workflow_uuid, function_id, output, created_at) "
    "VALUES ($1, $2, $3, $4) RETURNING txid_current(), pg_backend_pid()"
)
#: A transaction's ID and its server process, taken before COMMIT (for a transaction
#: outside workflows: only if it wrote something; if not, a retry is harmless), and its
#: fate after a connection lost during COMMIT (Postgres keeps it: "committed", "aborted" or "in
#: progress").
_TXID = "SELECT txid_current_if_assigned(), pg_backend_pid()"
_TXID_STATUS = "SELECT txid_status($1)"
#: A transaction still "in progress" long after its connection broke (its COMMIT never
#: reached the server, which has not noticed yet): end it, so its fate is known.
_END_ORPHAN = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
    " WHERE pid = $2 AND backend_xid::text = ($1 % 4294967296)::text"
)
_GET_TX_OUTPUT = (
    "SELECT output FROM dbos_async.transaction_outputs "
    "WHERE workflow_uuid = $1 AND function_id = $2"
)

_ISOLATION = {
    "SERIALIZABLE": "serializable",
    "REPEATABLE READ": "repeatable_read",
    "READ COMMITTED": "read_committed",
}


async def _write_one(conn: _Conn, write: Write, retry: bool) -> WriteResult:
    if isinstance(write, InsertWorkflow):
        row = write.row
        inserted = await conn.fetchval(
            _INSERT_WORKFLOW,
            *workflow_params(row),
        )
        if inserted is not None:
            return None
        r = await conn.fetchrow(_GET_WORKFLOW, row.workflow_id)
        return insert_result(row, _workflow_row(r) if r is not None else None, retry)
    if isinstance(write, RecordStep):
        step = write.step
        inserted = await conn.fetchval(
            _INSERT_STEP,
            *step_params(step),
        )
        if inserted is not None:
            return step
        r = await conn.fetchrow(_GET_STEP, step.workflow_id, step.function_id)
        return step_result(step, _step_row(r) if r is not None else None)
    updated = await conn.fetchval(
        _FINISH_WORKFLOW,
        write.workflow_id,
        write.status,
        write.output,
        write.error,
        write.updated_at,
    )
    if updated == 1:
        return True
    r = await conn.fetchrow(_GET_WORKFLOW, write.workflow_id)
    return finish_result(write, _workflow_row(r) if r is not None else None, retry)


def _columns(rows: Sequence[Any], names: Sequence[str]) -> list[list[Any]]:
    return [[getattr(r, n) for r in rows] for n in names]


_WORKFLOW_FIELDS = tuple(f.name for f in fields(WorkflowRow))
_STEP_FIELDS = (
    "workflow_id",
    "function_id",
    "function_name",
    "output",
    "error",
    "child_workflow_id",
    "started_at_epoch_ms",
    "completed_at_epoch_ms",
)
_FINISH_FIELDS = ("workflow_id", "status", "output", "error", "updated_at")


async def _write_many(conn: _Conn, writes: Sequence[Write], retry: bool) -> list[WriteResult]:
    inserts = [w.row for w in writes if isinstance(w, InsertWorkflow)]
    steps = [w.step for w in writes if isinstance(w, RecordStep)]
    finishes = [w for w in writes if isinstance(w, FinishWorkflow)]
    done = await conn.fetch(
        _WRITE_BATCH,
        *_columns(inserts, _WORKFLOW_FIELDS),
        *_columns(steps, _STEP_FIELDS),
        *_columns(finishes, _FINISH_FIELDS),
    )
    inserted = {r[1] for r in done if r[0] == 1}
    recorded = {(r[1], r[2]) for r in done if r[0] == 2}
    finished = {r[1] for r in done if r[0] == 3}

    # Rows that were there already (rare): read what is stored.
    clashing = [r.workflow_id for r in inserts if r.workflow_id not in inserted]
    clashing += [f.workflow_id for f in finishes if f.workflow_id not in finished]
    stored_rows: dict[str, WorkflowRow] = {}
    if clashing:
        for r in await conn.fetch(_GET_WORKFLOWS, clashing):
            stored_rows[r[0]] = _workflow_row(r)
    missing = [s for s in steps if (s.workflow_id, s.function_id) not in recorded]
    stored_steps: dict[tuple[str, int], StepRow] = {}
    if missing:
        keys = _columns(missing, ("workflow_id", "function_id"))
        for r in await conn.fetch(_GET_STEPS, *keys):
            stored_steps[(r[0], r[1])] = _step_row(r)

    results: list[WriteResult] = []
    for w in writes:
        if isinstance(w, InsertWorkflow):
            wid = w.row.workflow_id
            results.append(
                None if wid in inserted else insert_result(w.row, stored_rows.get(wid), retry)
            )
        elif isinstance(w, RecordStep):
            key = (w.step.workflow_id, w.step.function_id)
            results.append(
                w.step if key in recorded else step_result(w.step, stored_steps.get(key))
            )
        else:
            results.append(
                w.workflow_id in finished or finish_result(w, stored_rows.get(w.workflow_id), retry)
            )
    return results


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a connection without a reset query. The runtime's own statements leave no
    session state (no LISTEN, no session locks, no SET), so the round trip that asyncpg's
    default reset costs on every release is saved. User transactions use a pool that
    resets."""


class PostgresPool:
    """One asyncpg pool with the connect, create-database and migration logic around it."""

    def __init__(
        self,
        url: str,
        size: int,
        connect_timeout: float,
        *,
        reset_sessions: bool = True,
        create_missing: bool = True,
    ) -> None:
        self.url = url
        self.reset_sessions = reset_sessions
        self.create_missing = create_missing
        self.size = size
        self.connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None
        self._users = 0
        self._lock = asyncio.Lock()
        #: The journal writer's own connection, outside the pool (see ``retrying``).
        self._held: asyncpg.Connection | None = None
        self._held_lock = asyncio.Lock()
        #: Set by the last ``close()``: operations stop retrying.
        self._closing = False

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None or self._closing:
            raise DBOSConnectionError(
                f"the connection pool to {redact_url(self.url)} is closed "
                "(DBOS is not launched, or is shutting down)"
            )
        return self._pool

    async def open(self) -> None:
        async with self._lock:
            self._users += 1
            if self._pool is None:
                self._closing = False
                self._pool = await self._create()

    async def close(self) -> None:
        async with self._lock:
            self._users -= 1
            if self._users <= 0 and self._pool is not None:
                self._closing = True
                await self._drop_held()
                pool, self._pool = self._pool, None
                try:
                    # Graceful close waits for every connection to come back; one a
                    # cancelled operation left behind on a cut connection may never.
                    await asyncio.wait_for(pool.close(), timeout=_CLOSE_TIMEOUT)
                except TimeoutError:
                    log.warning("Postgres pool did not close in %gs; terminated", _CLOSE_TIMEOUT)
                    pool.terminate()

    async def _create(self) -> asyncpg.Pool:
        deadline = time.monotonic() + self.connect_timeout
        delay = 0.1
        created_db = False
        while True:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                return await asyncpg.create_pool(
                    self.url,
                    min_size=1,
                    max_size=self.size,
                    timeout=remaining,
                    reset=None if self.reset_sessions else _keep_session,
                )
            except asyncpg.InvalidCatalogNameError as exc:
                if not self.create_missing:
                    raise DBOSConnectionError(
                        f"database {urlsplit(self.url).path.lstrip('/')!r} does not exist at "
                        f"{redact_url(self.url)}"
                    ) from exc
                if created_db:
                    raise
                await self._create_database()
                created_db = True
                continue
            except Exception as exc:
                if not is_transient(exc):
                    if isinstance(exc, asyncpg.PostgresError):
                        raise DBOSConnectionError(
                            f"cannot connect to Postgres at {redact_url(self.url)}: {exc}"
                        ) from exc
                    raise
                if time.monotonic() + delay >= deadline:
                    raise DBOSConnectionError(
                        f"cannot reach Postgres at {redact_url(self.url)} within "
                        f"{self.connect_timeout:g}s: {type(exc).__name__}: {exc}"
                    ) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _create_database(self) -> None:
        parts = urlsplit(self.url)
        name = parts.path.lstrip("/")
        admin_url = urlunsplit(parts._replace(path="/postgres"))
        conn = await asyncpg.connect(admin_url, timeout=self.connect_timeout)
        try:
            quoted = '"' + name.replace('"', '""') + '"'
            await conn.execute("CREATE DATABASE " + quoted)
        except asyncpg.DuplicateDatabaseError:
            pass
        finally:
            await conn.close()

    async def migrate(self, component: str, *, from_migrations: bool = False) -> None:
        """Bring one component's tables up to date, one process at a time."""
        files = load_schema_files("postgres", component)

        async def op(conn: _Conn) -> None:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                await conn.execute("CREATE SCHEMA IF NOT EXISTS dbos_async")
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS dbos_async.migrations ("
                    "component TEXT NOT NULL, version INTEGER NOT NULL, "
                    "applied_at BIGINT NOT NULL, PRIMARY KEY (component, version))"
                )
                rows = await conn.fetch(
                    "SELECT version FROM dbos_async.migrations WHERE component = $1", component
                )
                applied = {r[0] for r in rows}
                now = int(time.time() * 1000)
                if not applied and not from_migrations:
                    await conn.execute(files.schema)
                    todo = [m.version for m in files.migrations]
                else:
                    todo = []
                    for m in files.migrations:
                        if m.version not in applied:
                            await conn.execute(m.sql)
                            todo.append(m.version)
                await conn.executemany(
                    "INSERT INTO dbos_async.migrations (component, version, applied_at) "
                    "VALUES ($1, $2, $3)",
                    [(component, v, now) for v in todo],
                )

        # All or nothing, and a re-run skips what is applied: safe to retry.
        await self.retrying(op)

    async def retrying(self, op: Callable[[_Conn], Awaitable[T]], *, held: bool = False) -> T:
        """Run an idempotent operation, retrying it through connection loss: on a transient
        error (``_pg_errors``) the connection is dropped and the operation runs again on a
        fresh one, after a pause that doubles up to 5 s, for as long as the pool is open.
        ``held`` runs it on the one connection this pool keeps outside the pool for the
        journal's writer, saving an acquire and a release per batch."""
        delay = 0.05
        while True:
            try:
                if held:
                    if self._closing:  # (the held connection must not reopen)
                        raise DBOSConnectionError(f"the pool to {redact_url(self.url)} is closed")
                    async with self._held_lock:
                        return await self._on_held(op)
                async with self.pool.acquire() as conn:
                    try:
                        return await op(conn)
                    except Exception as exc:
                        drop_if_broken(conn, exc)
                        raise
            except DBOSConnectionError:
                raise
            except Exception as exc:
                if self._closing or is_pool_closed(exc):
                    raise DBOSConnectionError(
                        f"the connection pool to {redact_url(self.url)} was closed "
                        f"(DBOS is shutting down): {type(exc).__name__}: {exc}"
                    ) from exc
                if not is_transient(exc):
                    raise
                log.warning(
                    "Postgres connection lost (%s: %s); retrying in %.2fs",
                    type(exc).__name__,
                    exc,
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _on_held(self, op: Callable[[_Conn], Awaitable[T]]) -> T:
        if self._held is None or self._held.is_closed():
            self._held = await asyncpg.connect(self.url, timeout=self.connect_timeout)
        conn = self._held
        try:
            return await op(conn)  # type: ignore[arg-type]
        except Exception as exc:
            if is_transient(exc):
                self._held = None
                drop_if_broken(conn, exc)
            raise

    async def _drop_held(self) -> None:
        conn, self._held = self._held, None
        if conn is not None:
            try:
                await asyncio.wait_for(conn.close(), timeout=2.0)
            except Exception:
                conn.terminate()


class PostgresSystemDatabase(PostgresMessaging, PostgresManagement, PostgresQueues):
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

        async def op(conn: _Conn) -> list[WriteResult]:
            nonlocal attempts
            retrying = retry or attempts > 0
            attempts += 1
            if len(writes) == 1:
                return [await _write_one(conn, writes[0], retrying)]
            return await _write_many(conn, writes, retrying)

        return await self._pg.retrying(op, held=True)

    async def get_workflow(self, workflow_id: str) -> WorkflowRow | None:
        async def op(conn: _Conn) -> WorkflowRow | None:
            r = await conn.fetchrow(_GET_WORKFLOW, workflow_id)
            return _workflow_row(r) if r is not None else None

        return await self._pg.retrying(op)

    async def load_steps(self, workflow_id: str) -> list[StepRow]:
        async def op(conn: _Conn) -> list[StepRow]:
            return [_step_row(r) for r in await conn.fetch(_LOAD_STEPS, workflow_id)]

        return await self._pg.retrying(op)

    async def pending_workflows(self, executor_id: str, app_version: str) -> list[WorkflowRow]:
        async def op(conn: _Conn) -> list[WorkflowRow]:
            return [_workflow_row(r) for r in await conn.fetch(_PENDING, executor_id, app_version)]

        return await self._pg.retrying(op)

    async def load_steps_many(self, workflow_ids: Sequence[str]) -> dict[str, list[StepRow]]:
        async def op(conn: _Conn) -> dict[str, list[StepRow]]:
            found: dict[str, list[StepRow]] = {wid: [] for wid in workflow_ids}
            for r in await conn.fetch(_LOAD_STEPS_MANY, list(workflow_ids)):
                found[r[0]].append(_step_row(r))
            return found

        return await self._pg.retrying(op)

    async def claim_for_recovery(
        self, claims: Sequence[RecoveryRequest], now_ms: int
    ) -> list[RecoveryClaim]:
        ids = [c.workflow_id for c in claims]
        token = uuid.uuid4().hex
        attempts = 0

        async def op(conn: _Conn) -> list[RecoveryClaim]:
            nonlocal attempts
            attempts += 1
            rows = await conn.fetch(_CLAIMED, ids, token) if attempts > 1 else []
            if not rows:
                rows = await conn.fetch(
                    _CLAIM,
                    ids,
                    [c.seen_attempts for c in claims],
                    [c.max_attempts for c in claims],
                    now_ms,
                    token,
                )
            return [
                RecoveryClaim(row, exceeded=row.status == "MAX_RECOVERY_ATTEMPTS_EXCEEDED")
                for row in map(_workflow_row, rows)
            ]

        return await self._pg.retrying(op)


class PostgresApplicationDatabase:
    """The application database on Postgres: where ``@DBOS.transaction`` bodies run."""

    def __init__(self, pool: PostgresPool) -> None:
        self._pg = pool
        self.url = pool.url

    async def connect(self) -> None:
        await self._pg.open()
        try:
            await self._pg.migrate("app")
        except BaseException:
            await self._pg.close()
            raise

    async def close(self) -> None:
        await self._pg.close()

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
        until the server says committed (the result is returned) or aborted (retry)."""
        committing = False
        in_body = False
        lost = False
        xid: asyncpg.Record | None = None  # (transaction ID or None, server process ID)
        try:
            async with self._pg.pool.acquire() as conn:
                try:
                    tx = conn.transaction(isolation=_ISOLATION[isolation_level])  # type: ignore[arg-type]
                    await tx.start()
                    try:
                        in_body = True
                        result = await body(conn)
                        in_body = False
                        if record is not None:
                            workflow_id, function_id, output = record(result)
                            try:
                                xid = await conn.fetchrow(
                                    _INSERT_TX_OUTPUT,
                                    workflow_id,
                                    function_id,
                                    output,
                                    int(time.time() * 1000),
                                )
                            except asyncpg.UniqueViolationError as exc:
                                # Another run committed this step first: its output wins.
                                raise TransactionConflict(str(exc)) from exc
                        else:
                            xid = await conn.fetchrow(_TXID)
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
                    # was lost, or it broke meanwhile.
                    lost = is_transient(exc) and (
                        not in_body or lost_by_driver(exc) or is_closed(conn)
                    )
                    if lost:
                        drop_if_broken(conn, exc)
                    raise
        except (asyncpg.SerializationError, asyncpg.DeadlockDetectedError) as exc:
            raise TransactionConflict(str(exc)) from exc
        except Exception as exc:
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

            async def status(conn: _Conn) -> str | None:
                try:
                    value: str | None = await conn.fetchval(_TXID_STATUS, xid)
                except asyncpg.InvalidParameterValueError:
                    # "in the future": a server that never saw it (a failover to a
                    # replica behind the old primary), so it did not commit there.
                    return "aborted"
                return value

            async def end_orphan(conn: _Conn) -> None:
                await conn.execute(_END_ORPHAN, xid, pid)

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
        async def op(conn: _Conn) -> str | None:
            value: str | None = await conn.fetchval(_GET_TX_OUTPUT, workflow_id, function_id)
            return value

        return await self._pg.retrying(op)
