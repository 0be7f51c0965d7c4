"""Ownership in one process: every write a workflow makes is fenced on its owner, a run
whose workflow was taken over stops and records nothing more, leases are listed, and
``destroy`` lets running workflows finish within its grace period, then hands over."""

# ruff: noqa: ASYNC110 (the tests poll what other processes would change)
from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from dbos_async import DBOS, DBOSClient, DBOSConfigError, SetWorkflowID, WorkflowStatusString
from dbos_async._runtime import get_runtime
from dbos_async._urls import is_sqlite_url, sqlite_path

gate = asyncio.Event()
OTHER = "another-process"


async def execute(db_url: str, sql: str, *args: Any) -> None:
    """Run one statement on the system tables behind the runtime's back (as another
    process would). ``$1``-style placeholders; tables named without schema prefix."""
    if is_sqlite_url(db_url):
        lite = sql.replace("TABLE ", "TABLE dbos_").replace("$1", "?").replace("$2", "?")
        for table in ("workflow_status", "operation_outputs", "executors"):
            lite = lite.replace(f" {table}", f" dbos_{table}")
        conn = sqlite3.connect(sqlite_path(db_url), timeout=10)
        try:
            conn.execute(lite, args)
            conn.commit()
        finally:
            conn.close()
        return
    pg = await asyncpg.connect(db_url)
    try:
        for table in ("workflow_status", "operation_outputs", "executors"):
            sql = sql.replace(f" {table}", f" dbos_async.{table}")
        await pg.execute(sql, *args)
    finally:
        await pg.close()


async def take_away(db_url: str, workflow_id: str) -> None:
    """Make another process the owner of a workflow (what a takeover does). That process
    holds a live lease: with none, this process's recovery would see the workflow as
    orphaned and take it back within a second (a new run under the same ID)."""
    await execute(
        db_url,
        "INSERT INTO executors (process_id, executor_id, hostname, pid, application_version,"
        " started_at, last_heartbeat_at, lease_expires_at)"
        " VALUES ($1, 'other', 'elsewhere', 1, 'test', 0, 0, 99999999999999)"
        " ON CONFLICT (process_id) DO NOTHING",
        OTHER,
    )
    await execute(db_url, "UPDATE workflow_status SET owner = $1 WHERE workflow_uuid = $2", OTHER,
                  workflow_id)  # fmt: skip


async def step_count(workflow_id: str) -> int:
    return len(await DBOS.list_workflow_steps(workflow_id))


@DBOS.step()
async def own_step() -> str:
    return "stepped"


@DBOS.transaction()
async def own_transaction() -> str:
    return "committed"


async def write_step() -> None:
    await own_step()


async def write_transaction() -> None:
    await own_transaction()


async def write_send() -> None:
    await DBOS.send("own-target", "hi", "topic")


async def write_event() -> None:
    await DBOS.set_event("key", "value")


async def write_stream() -> None:
    await DBOS.write_stream("stream", "value")


async def write_recv() -> None:
    await DBOS.recv("topic", timeout_seconds=5)


async def write_nothing() -> None:
    return None  # (the workflow's outcome is the write)


@DBOS.step()
async def own_step_sets_event() -> None:
    await DBOS.set_event("key", "from a step")


@DBOS.step()
async def own_step_writes_stream() -> None:
    await DBOS.write_stream("stream", "from a step")


WRITES: dict[str, Callable[[], Awaitable[None]]] = {
    "step": write_step,
    "transaction": write_transaction,
    "send": write_send,
    "set_event": write_event,
    "write_stream": write_stream,
    "recv": write_recv,
    "outcome": write_nothing,
    "set_event_in_step": own_step_sets_event,
    "write_stream_in_step": own_step_writes_stream,
}


@DBOS.workflow()
async def own_target() -> None:
    await DBOS.sleep(60)


@DBOS.workflow()
async def own_fenced(kind: str) -> str:
    await own_step()  # step 1: recorded while it is ours
    await gate.wait()
    await WRITES[kind]()
    return "finished"


@pytest.mark.parametrize("kind", list(WRITES))
async def test_ownership__a_taken_over_workflow_writes_nothing_more(
    dbos: DBOS, db_url: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    global gate
    gate = asyncio.Event()
    with SetWorkflowID("own-target"):
        await DBOS.start_workflow(own_target)
    with SetWorkflowID("own-fenced"):
        handle = await DBOS.start_workflow(own_fenced, kind)
    if kind == "recv":
        await DBOS.send("own-fenced", "waiting", "topic")
    while await step_count("own-fenced") < 1:
        await asyncio.sleep(0.01)
    rt = get_runtime()
    steps_before = await step_count("own-fenced")
    await take_away(db_url, "own-fenced")
    with caplog.at_level(logging.WARNING, logger="dbos_async"):
        gate.set()
        for _ in range(300):
            if "own-fenced" not in rt.live:
                break
            await asyncio.sleep(0.01)
        assert "own-fenced" not in rt.live
    assert "taken over" in caplog.text
    # Nothing more was recorded: no step row, no message, event or stream value, and the
    # workflow is still PENDING, for its new owner.
    assert await step_count("own-fenced") == steps_before
    status = await DBOS.get_workflow_status("own-fenced")
    assert status is not None and status.status == WorkflowStatusString.PENDING
    assert await DBOS.get_event("own-fenced", "key", timeout_seconds=0) is None
    assert await stream_values(db_url, "own-fenced") == 0
    if kind == "send":
        assert await own_target_messages(db_url) == 0
    if kind == "recv":
        # The message was not consumed: the new owner's recv gets it.
        assert await unconsumed_messages(db_url, "own-fenced") == 1
    if kind == "transaction":
        assert await transaction_outputs(db_url, "own-fenced") == 0
    # A handle here follows the workflow to its new owner's outcome.
    waiting = asyncio.ensure_future(handle.get_result())
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await execute(
        db_url,
        "UPDATE workflow_status SET status = 'SUCCESS', output = $1 WHERE workflow_uuid = $2",
        '"elsewhere"',
        "own-fenced",
    )
    assert await asyncio.wait_for(waiting, 10) == "elsewhere"


async def count(db_url: str, pg_sql: str, lite_sql: str, *args: Any) -> int:
    if is_sqlite_url(db_url):
        conn = sqlite3.connect(sqlite_path(db_url), timeout=10)
        try:
            return int(conn.execute(lite_sql, args).fetchone()[0])
        finally:
            conn.close()
    pg = await asyncpg.connect(db_url)
    try:
        return int(await pg.fetchval(pg_sql, *args))
    finally:
        await pg.close()


async def own_target_messages(db_url: str) -> int:
    return await count(
        db_url,
        "SELECT count(*) FROM dbos_async.notifications WHERE destination_uuid = 'own-target'",
        "SELECT count(*) FROM dbos_notifications WHERE destination_uuid = 'own-target'",
    )


async def unconsumed_messages(db_url: str, workflow_id: str) -> int:
    return await count(
        db_url,
        "SELECT count(*) FROM dbos_async.notifications "
        "WHERE destination_uuid = $1 AND NOT consumed",
        "SELECT count(*) FROM dbos_notifications WHERE destination_uuid = ? AND consumed = 0",
        workflow_id,
    )


async def stream_values(db_url: str, workflow_id: str) -> int:
    return await count(
        db_url,
        "SELECT count(*) FROM dbos_async.streams WHERE workflow_uuid = $1",
        "SELECT count(*) FROM dbos_streams WHERE workflow_uuid = ?",
        workflow_id,
    )


async def transaction_outputs(db_url: str, workflow_id: str) -> int:
    return await count(
        db_url,
        "SELECT count(*) FROM dbos_async.transaction_outputs WHERE workflow_uuid = $1",
        "SELECT count(*) FROM dbos_transaction_outputs WHERE workflow_uuid = ?",
        workflow_id,
    )


@DBOS.workflow()
async def own_sleeper() -> str:
    await DBOS.sleep(30)
    return "woke"


async def test_ownership__a_waiting_run_is_stopped_once_taken_over(dbos: DBOS, db_url: str) -> None:
    with SetWorkflowID("own-sleeper"):
        await DBOS.start_workflow(own_sleeper)
    while await step_count("own-sleeper") < 1:
        await asyncio.sleep(0.01)
    rt = get_runtime()
    await take_away(db_url, "own-sleeper")
    # The request watcher notices within its polling interval; the run is stopped.
    deadline = time.monotonic() + 5
    while "own-sleeper" in rt.live and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert "own-sleeper" not in rt.live


async def test_ownership__executors_are_listed(dbos: DBOS, db_url: str) -> None:
    global gate
    gate = asyncio.Event()
    with SetWorkflowID("own-listed"):
        handle = await DBOS.start_workflow(own_fenced, "step")
    (me,) = await DBOS.list_executors()
    assert me.alive and me.executor_id == "local" and me.application_version == "test"
    assert me.pid > 0 and me.hostname
    assert me.workflows == 1
    assert me.started_at <= me.last_heartbeat_at < me.lease_expires_at
    gate.set()
    await handle
    assert (await DBOS.list_executors())[0].workflows == 0
    await DBOS.destroy()
    client = DBOSClient(db_url)
    try:
        (gone,) = await client.list_executors()
        assert gone.process_id == me.process_id and not gone.alive
    finally:
        await client.destroy()


@DBOS.workflow()
async def own_takes(seconds: float) -> str:
    await own_step()
    await asyncio.sleep(seconds)
    await own_step()
    return "done"


async def test_ownership__destroy_lets_running_workflows_finish_within_its_grace(
    dbos: DBOS, db_url: str
) -> None:
    with SetWorkflowID("own-quick"):
        await DBOS.start_workflow(own_takes, 0.3)
    with SetWorkflowID("own-slow"):
        await DBOS.start_workflow(own_takes, 30)
    started = time.monotonic()
    await DBOS.destroy(workflow_completion_timeout_sec=1.5)
    took = time.monotonic() - started
    assert 1.4 < took < 10
    client = DBOSClient(db_url)
    try:
        quick = await client.get_workflow_status("own-quick")
        slow = await client.get_workflow_status("own-slow")
        assert quick is not None and quick.status == WorkflowStatusString.SUCCESS
        assert slow is not None and slow.status == WorkflowStatusString.PENDING
        (executor,) = await client.list_executors()
        assert not executor.alive and executor.workflows == 1  # handed over
    finally:
        await client.destroy()
    # The next process takes over what was handed over.
    DBOS({"database_url": db_url, "application_version": "test"})
    await DBOS.launch()
    steps = [s.function_name for s in await DBOS.list_workflow_steps("own-slow")]
    assert steps == ["own_step"]


async def test_ownership__destroy_refuses_a_bad_grace_period() -> None:
    for bad in (-1, float("nan"), "1", True):
        with pytest.raises(ValueError, match="workflow_completion_timeout_sec"):
            await DBOS.destroy(workflow_completion_timeout_sec=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1, 0.1, "10", True, float("inf")])
def test_ownership__lease_config_is_checked(bad: object) -> None:
    with pytest.raises(DBOSConfigError, match="executor_lease_seconds"):
        DBOS({"database_url": "sqlite:///:memory:", "executor_lease_seconds": bad})


@DBOS.workflow()
async def own_cancellable() -> str:
    await own_step()
    await gate.wait()
    await own_step()
    return "resumed"


async def test_ownership__a_client_resume_reaches_a_running_process(
    dbos: DBOS, db_url: str
) -> None:
    """On SQLite too (no notifications): the takeover polls within a second."""
    global gate
    gate = asyncio.Event()
    with SetWorkflowID("own-resumed"):
        handle = await DBOS.start_workflow(own_cancellable)
    while await step_count("own-resumed") < 1:
        await asyncio.sleep(0.01)
    await DBOS.cancel_workflow("own-resumed")
    client = DBOSClient(db_url)
    try:
        gate.set()
        started = time.monotonic()
        await client.resume_workflow("own-resumed")
        assert await asyncio.wait_for(handle.get_result(), 10) == "resumed"
        assert time.monotonic() - started < 5
    finally:
        await client.destroy()
