"""A separate ``system_database_url`` on Postgres: the application database and the system
database are two Postgres databases. Transactions (and their recorded outputs) go to the
application database; workflow status, steps, events and queues go to the system one.
Each database is read directly with its own connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from dbos_async import DBOS, DBOSClient, SetWorkflowID, WorkflowStatusString

from .conftest import create_pg_database, drop_pg_database_async, pg_url

pytestmark = pytest.mark.postgres


@DBOS.step()
async def sdb_step(x: int) -> int:
    return x + 1


@DBOS.transaction()
async def sdb_insert(name: str) -> int:
    conn = DBOS.sql_connection
    await conn.execute("INSERT INTO sdb_rows (name) VALUES ($1)", name)
    return int(await conn.fetchval("SELECT count(*) FROM sdb_rows"))


@DBOS.workflow()
async def sdb_workflow(name: str) -> list[int]:
    first = await sdb_step(1)
    count = await sdb_insert(name)
    await DBOS.set_event("done", name)
    return [first, count]


async def fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def has_table(url: str, name: str) -> bool:
    [row] = await fetch(url, "SELECT to_regclass($1) IS NOT NULL AS present", name)
    return bool(row["present"])


@pytest.fixture
async def app_and_system(postgres_template: str) -> AsyncIterator[tuple[str, str]]:
    """Two new, empty databases: launch migrates each for its own role."""
    app = await create_pg_database(None)
    system = await create_pg_database(None)
    try:
        conn = await asyncpg.connect(pg_url(app))
        try:
            await conn.execute("CREATE TABLE sdb_rows (name text PRIMARY KEY)")
        finally:
            await conn.close()
        yield pg_url(app), pg_url(system)
    finally:
        await DBOS.destroy()
        await drop_pg_database_async(app)
        await drop_pg_database_async(system)


async def test_system_database_url__transactions_in_app_db_checkpoints_in_system_db(
    app_and_system: tuple[str, str],
) -> None:
    app_url, system_url = app_and_system
    await DBOS.destroy()
    DBOS({"database_url": app_url, "system_database_url": system_url})
    await DBOS.launch()
    with SetWorkflowID("sdb-1"):
        assert await sdb_workflow("alpha") == [2, 1]
    await DBOS.destroy()

    # The application database: the transaction's row and its recorded output, and
    # none of the system tables.
    assert [r["name"] for r in await fetch(app_url, "SELECT name FROM sdb_rows")] == ["alpha"]
    outputs = await fetch(
        app_url, "SELECT workflow_uuid, function_id FROM dbos_async.transaction_outputs"
    )
    assert [(r["workflow_uuid"], r["function_id"]) for r in outputs] == [("sdb-1", 2)]
    for table in ("workflow_status", "operation_outputs", "workflow_events", "queues"):
        assert not await has_table(app_url, f"dbos_async.{table}"), table

    # The system database: the workflow's status, its steps and its event, and neither
    # the application's table nor the transaction outputs.
    [status] = await fetch(
        system_url, "SELECT status FROM dbos_async.workflow_status WHERE workflow_uuid = 'sdb-1'"
    )
    assert status["status"] == WorkflowStatusString.SUCCESS.value
    steps = await fetch(
        system_url,
        "SELECT function_id, function_name FROM dbos_async.operation_outputs"
        " WHERE workflow_uuid = 'sdb-1' ORDER BY function_id",
    )
    assert [(r["function_id"], r["function_name"]) for r in steps] == [
        (1, "sdb_step"),
        (2, "sdb_insert"),
        (3, "DBOS.setEvent"),
    ]
    events = await fetch(system_url, "SELECT key FROM dbos_async.workflow_events")
    assert [r["key"] for r in events] == ["done"]
    assert not await has_table(system_url, "public.sdb_rows")
    assert not await has_table(system_url, "dbos_async.transaction_outputs")

    # A relaunch on the same pair replays from the system database: the recorded
    # transaction does not run again in the application database.
    DBOS({"database_url": app_url, "system_database_url": system_url})
    await DBOS.launch()
    with SetWorkflowID("sdb-1"):
        assert await sdb_workflow("alpha") == [2, 1]
    assert len(await fetch(app_url, "SELECT name FROM sdb_rows")) == 1

    # A client pointed at the system database sees the workflow.
    client = DBOSClient(system_database_url=system_url)
    try:
        remote = await client.get_workflow_status("sdb-1")
        assert remote is not None and remote.status == WorkflowStatusString.SUCCESS
        assert await client.get_event("sdb-1", "done", timeout_seconds=0) == "alpha"
    finally:
        await client.destroy()
