"""Transactions: ``@DBOS.transaction`` with ``DBOS.sql_connection`` on both backends:
commit, rollback, recorded outputs, plain calls, serialization retries (API.md 2-4)."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiosqlite
import asyncpg
import pytest

from dbos_async import DBOS, DBOSException, SetWorkflowID, WorkflowStatusString

CALLS: Counter[str] = Counter()
GATES: dict[str, asyncio.Event] = {}
SEEN: dict[str, Any] = {}
#: The backend of the running test, so transaction bodies pick their SQL dialect.
BACKEND: dict[str, str] = {}


def gate(name: str) -> asyncio.Event:
    if name not in GATES:
        GATES[name] = asyncio.Event()
    return GATES[name]


def pg_sql(sql: str) -> str:
    """``?`` placeholders to asyncpg's ``$1, $2, ...``."""
    counter = iter(range(1, 1000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


# -- direct database access (our own connection, not the library's) -----------------


async def db_fetch(backend: str, db_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    if backend == "postgres":
        conn = await asyncpg.connect(db_url)
        try:
            return [tuple(r) for r in await conn.fetch(pg_sql(sql), *params)]
        finally:
            await conn.close()
    async with aiosqlite.connect(db_url[len("sqlite:///") :]) as conn:
        cur = await conn.execute(sql, params)
        rows = await cur.fetchall()
        await conn.commit()
        return [tuple(r) for r in rows]


async def db_execute(backend: str, db_url: str, sql: str) -> None:
    if backend == "postgres":
        conn = await asyncpg.connect(db_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()
        return
    async with aiosqlite.connect(db_url[len("sqlite:///") :]) as conn:
        await conn.execute(sql)
        await conn.commit()


async def item_names(backend: str, db_url: str) -> list[str]:
    return [
        r[0] for r in await db_fetch(backend, db_url, "SELECT name FROM tx_items ORDER BY name")
    ]


@pytest.fixture
async def tables(dbos: DBOS, backend: str, db_url: str) -> AsyncIterator[None]:
    """The user tables, created in the application database of a launched DBOS."""
    CALLS.clear()
    GATES.clear()
    SEEN.clear()
    BACKEND["name"] = backend
    await db_execute(backend, db_url, "CREATE TABLE tx_items (name TEXT NOT NULL)")
    await db_execute(
        backend, db_url, "CREATE TABLE tx_counter (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)"
    )
    await db_execute(backend, db_url, "INSERT INTO tx_counter (id, value) VALUES (1, 0)")
    yield
    GATES.clear()
    BACKEND.clear()


# -- SQL through DBOS.sql_connection in either dialect ------------------------------


async def tx_exec(sql: str, *params: Any) -> None:
    conn = DBOS.sql_connection
    if BACKEND["name"] == "postgres":
        await conn.execute(pg_sql(sql), *params)
    else:
        await conn.execute(sql, params)


async def tx_value(sql: str, *params: Any) -> Any:
    conn = DBOS.sql_connection
    if BACKEND["name"] == "postgres":
        return await conn.fetchval(pg_sql(sql), *params)
    cur = await conn.execute(sql, params)
    row = await cur.fetchone()
    return None if row is None else row[0]


# -- transactions and workflows used by the tests -----------------------------------


class TxError(Exception):
    pass


@DBOS.transaction()
async def tx_insert(name: str) -> int:
    CALLS["tx_insert"] += 1
    SEEN["connection"] = DBOS.sql_connection
    SEEN["context"] = [DBOS.workflow_id, DBOS.step_id]
    await tx_exec("INSERT INTO tx_items (name) VALUES (?)", name)
    return int(await tx_value("SELECT COUNT(*) FROM tx_items"))


@DBOS.transaction()
async def tx_insert_then_fail(name: str) -> None:
    CALLS["tx_insert_then_fail"] += 1
    await tx_exec("INSERT INTO tx_items (name) VALUES (?)", name)
    # The write is visible inside the transaction before it fails.
    assert await tx_value("SELECT COUNT(*) FROM tx_items WHERE name = ?", name) == 1
    raise TxError(f"failed after inserting {name}")


@DBOS.transaction()
async def tx_increment(delay: float) -> int:
    CALLS["tx_increment"] += 1
    value = int(await tx_value("SELECT value FROM tx_counter WHERE id = 1"))
    await asyncio.sleep(delay)
    await tx_exec("UPDATE tx_counter SET value = ? WHERE id = 1", value + 1)
    return value + 1


async def _isolation_and_insert(name: str) -> str:
    await tx_exec("INSERT INTO tx_items (name) VALUES (?)", name)
    if BACKEND["name"] == "postgres":
        return str(await DBOS.sql_connection.fetchval("SHOW transaction_isolation"))
    return "sqlite"


@DBOS.transaction(isolation_level="READ COMMITTED")
async def tx_read_committed(name: str) -> str:
    return await _isolation_and_insert(name)


@DBOS.transaction()
async def tx_default_isolation(name: str) -> str:
    return await _isolation_and_insert(name)


@DBOS.workflow()
async def tx_wf_insert(name: str) -> int:
    return await tx_insert(name)


@DBOS.workflow()
async def tx_wf_fail_caught(name: str) -> str:
    try:
        await tx_insert_then_fail(name)
    except TxError as exc:
        return f"caught: {exc}"
    return "not raised"


@DBOS.workflow()
async def tx_wf_fail(name: str) -> None:
    await tx_insert_then_fail(name)


@DBOS.workflow()
async def tx_wf_insert_then_wait(name: str) -> int:
    count = await tx_insert(name)  # step 1
    gate("reached").set()
    await gate("release").wait()
    return count


@DBOS.workflow()
async def tx_wf_increment(delay: float) -> int:
    return await tx_increment(delay)


@DBOS.workflow()
async def tx_wf_isolation() -> list[str]:
    return [await tx_read_committed("rc"), await tx_default_isolation("default")]


@DBOS.step()
async def tx_step_reads_sql_connection() -> str:
    try:
        DBOS.sql_connection  # noqa: B018
    except DBOSException:
        return "raised"
    return "no error"


@DBOS.workflow()
async def tx_wf_reads_sql_connection() -> list[str]:
    try:
        DBOS.sql_connection  # noqa: B018
        body = "no error"
    except DBOSException:
        body = "raised"
    return [body, await tx_step_reads_sql_connection()]


# -- tests -----------------------------------------------------------------------------


async def test_transaction__writes_commit(tables: None, backend: str, db_url: str) -> None:
    with SetWorkflowID("tx-commit"):
        assert await tx_wf_insert("alpha") == 1
    assert await item_names(backend, db_url) == ["alpha"]
    assert SEEN["context"] == ["tx-commit", 1]
    conn = SEEN["connection"]
    if backend == "sqlite":
        assert isinstance(conn, aiosqlite.Connection)
    else:
        assert isinstance(conn, (asyncpg.Connection, asyncpg.pool.PoolConnectionProxy))
    steps = await DBOS.list_workflow_steps("tx-commit")
    assert [(s.function_id, s.function_name, s.output, s.error) for s in steps] == [
        (1, "tx_insert", 1, None)
    ]


async def test_transaction__exception_rolls_back_and_is_recorded(
    tables: None, backend: str, db_url: str
) -> None:
    with SetWorkflowID("tx-rollback"):
        assert await tx_wf_fail_caught("beta") == "caught: failed after inserting beta"
    assert await item_names(backend, db_url) == []
    steps = await DBOS.list_workflow_steps("tx-rollback")
    assert len(steps) == 1
    assert steps[0].function_id == 1
    assert steps[0].function_name == "tx_insert_then_fail"
    assert isinstance(steps[0].error, TxError)
    assert str(steps[0].error) == "failed after inserting beta"
    assert steps[0].output is None
    status = await DBOS.get_workflow_status("tx-rollback")
    assert status is not None
    assert status.status == WorkflowStatusString.SUCCESS


async def test_transaction__uncaught_exception_fails_workflow(
    tables: None, backend: str, db_url: str
) -> None:
    with SetWorkflowID("tx-uncaught"), pytest.raises(TxError, match="gamma"):
        await tx_wf_fail("gamma")
    assert await item_names(backend, db_url) == []
    assert CALLS["tx_insert_then_fail"] == 1
    status = await DBOS.get_workflow_status("tx-uncaught")
    assert status is not None
    assert status.status == WorkflowStatusString.ERROR
    assert isinstance(status.error, TxError)


async def test_transaction__not_run_again_under_same_workflow_id(
    tables: None, backend: str, db_url: str
) -> None:
    with SetWorkflowID("tx-once"):
        assert await tx_wf_insert("delta") == 1
    with SetWorkflowID("tx-once"):
        assert await tx_wf_insert("delta") == 1
    assert await item_names(backend, db_url) == ["delta"]
    assert CALLS["tx_insert"] == 1


async def test_transaction__not_run_again_on_recovery(
    tables: None, backend: str, db_url: str
) -> None:
    try:
        with SetWorkflowID("tx-recover"):
            await DBOS.start_workflow(tx_wf_insert_then_wait, "epsilon")
        await asyncio.wait_for(gate("reached").wait(), timeout=30)
        await DBOS.destroy()

        gate("release").set()
        DBOS({"database_url": db_url, "application_version": "test"})
        await DBOS.launch()
        handle = await DBOS.retrieve_workflow("tx-recover")
        assert await asyncio.wait_for(handle, timeout=30) == 1
        assert (await handle.get_status()).recovery_attempts == 1
        assert CALLS["tx_insert"] == 1
        assert await item_names(backend, db_url) == ["epsilon"]
    finally:
        await DBOS.destroy()


async def test_transaction__outside_workflow_is_plain_transaction(
    tables: None, backend: str, db_url: str
) -> None:
    assert await tx_insert("zeta") == 1
    assert CALLS["tx_insert"] == 1
    assert SEEN["context"] == [None, None]
    assert await item_names(backend, db_url) == ["zeta"]

    with pytest.raises(TxError):
        await tx_insert_then_fail("eta")
    assert CALLS["tx_insert_then_fail"] == 1
    assert await item_names(backend, db_url) == ["zeta"]


async def test_sql_connection__outside_transaction_raises(tables: None) -> None:
    with pytest.raises(DBOSException):
        DBOS.sql_connection  # noqa: B018
    assert await tx_wf_reads_sql_connection() == ["raised", "raised"]


async def test_transaction__concurrent_serializable_increments_both_commit(
    tables: None, backend: str, db_url: str
) -> None:
    results = await asyncio.wait_for(
        asyncio.gather(tx_wf_increment(0.2), tx_wf_increment(0.2)), timeout=20
    )
    assert sorted(results) == [1, 2]
    assert await db_fetch(backend, db_url, "SELECT value FROM tx_counter WHERE id = 1") == [(2,)]
    if backend == "postgres":
        # Both read 0 concurrently: one of them failed to serialize and ran again.
        assert CALLS["tx_increment"] >= 3
    else:
        assert CALLS["tx_increment"] >= 2


async def test_transaction__read_committed_accepted(
    tables: None, backend: str, db_url: str
) -> None:
    levels = await tx_wf_isolation()
    if backend == "postgres":
        assert levels == ["read committed", "serializable"]
    else:
        assert levels == ["sqlite", "sqlite"]
    assert await item_names(backend, db_url) == ["default", "rc"]


# -- errors of the body's own are the body's, not a lost connection ----------------------


@DBOS.transaction()
async def tx_body_oserror(path: str) -> None:
    CALLS["tx_body_oserror"] += 1
    await tx_exec("INSERT INTO tx_items (name) VALUES (?)", "os")
    with open(path) as f:  # noqa: ASYNC230 - the error is the point
        f.read()


@DBOS.workflow()
async def tx_wf_body_oserror(path: str) -> str:
    try:
        await tx_body_oserror(path)
    except FileNotFoundError:
        return "raised"
    return "no error"


async def test_transaction__body_oserror_is_recorded_not_retried(
    tables: None, backend: str, db_url: str, tmp_path: Any
) -> None:
    """An OSError the body raises itself (its connection fine) is the step's error: the
    body ran once, its writes rolled back, and a re-run raises it again from the record."""
    missing = str(tmp_path / "missing.txt")
    with SetWorkflowID("tx-oserror"):
        assert await asyncio.wait_for(tx_wf_body_oserror(missing), 20) == "raised"
    assert CALLS["tx_body_oserror"] == 1
    assert await item_names(backend, db_url) == []
    steps = await DBOS.list_workflow_steps("tx-oserror")
    assert [type(s.error).__name__ for s in steps] == ["FileNotFoundError"]


@DBOS.transaction()
async def tx_read_only_write() -> None:
    CALLS["tx_read_only_write"] += 1
    await DBOS.sql_connection.execute("SET TRANSACTION READ ONLY")
    await DBOS.sql_connection.execute("INSERT INTO tx_items (name) VALUES ('ro')")


@pytest.mark.parametrize("backend", ["postgres"])  # (SET TRANSACTION READ ONLY)
async def test_transaction__read_only_violation_is_a_real_error(tables: None) -> None:
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        await asyncio.wait_for(tx_read_only_write(), 20)
    assert CALLS["tx_read_only_write"] == 1
