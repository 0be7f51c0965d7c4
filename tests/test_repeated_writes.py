"""Storage calls repeated with the same step (a second run of a workflow step, or a call
retried after a lost reply) change nothing more, on both backends: a recv consumes one
message, a stream write appends one value."""

from __future__ import annotations

import asyncio

from dbos_async import DBOS, SetWorkflowID
from dbos_async._decorators import function_info
from dbos_async._runtime import get_runtime
from dbos_async.sysdb import StepRow

from .test_transactions import db_execute, db_fetch


@DBOS.workflow()
async def rw_target() -> str:
    return "done"


def _step(workflow_id: str, function_id: int, name: str) -> StepRow:
    return StepRow(workflow_id, function_id, name, output="null", completed_at_epoch_ms=1)


async def test_receive_message__repeated_step_consumes_nothing_more(dbos: DBOS) -> None:
    with SetWorkflowID("rw-recv"):
        await rw_target()
    await DBOS.send("rw-recv", "first", "t")
    await DBOS.send("rw-recv", "second", "t")
    sysdb = get_runtime().sysdb
    got = await sysdb.receive_message("rw-recv", "t", _step("rw-recv", 5, "DBOS.recv"))
    again = await sysdb.receive_message("rw-recv", "t", _step("rw-recv", 5, "DBOS.recv"))
    assert got is not None and again is not None
    assert got.output == again.output == '"first"'
    nxt = await sysdb.receive_message("rw-recv", "t", _step("rw-recv", 6, "DBOS.recv"))
    assert nxt is not None and nxt.output == '"second"'
    assert await sysdb.receive_message("rw-recv", "t", _step("rw-recv", 7, "DBOS.recv")) is None


async def test_write_stream__repeated_step_appends_once(dbos: DBOS) -> None:
    with SetWorkflowID("rw-stream"):
        await rw_target()
    sysdb = get_runtime().sysdb
    for _ in range(2):
        await sysdb.write_stream("rw-stream", "s", '"v"', False, _step("rw-stream", 3, "w"))
    await sysdb.write_stream("rw-stream", "s", None, True, _step("rw-stream", 4, "c"))
    entries = await sysdb.read_stream("rw-stream", "s", 0)
    assert [(e.offset, e.value, e.closed) for e in entries] == [(0, '"v"', False), (1, None, True)]


TX_BODIES: list[str] = []


@DBOS.transaction()
async def rw_tx() -> str:
    TX_BODIES.append("ran")
    sql = "INSERT INTO rw_applied (n) VALUES (1)"
    await DBOS.sql_connection.execute(sql)
    return "from-this-run"


@DBOS.workflow()
async def rw_tx_workflow() -> str:
    return await rw_tx()


async def test_transaction__output_committed_by_another_run_wins(
    dbos: DBOS, backend: str, db_url: str
) -> None:
    """A fresh run whose transaction finds the step's output committed already (by
    another run of the same workflow) returns that output and rolls its own writes back."""
    TX_BODIES.clear()
    outputs = (
        "dbos_transaction_outputs" if backend == "sqlite" else "dbos_async.transaction_outputs"
    )
    await db_execute(backend, db_url, "CREATE TABLE rw_applied (n INTEGER)")
    await db_execute(
        backend,
        db_url,
        f"INSERT INTO {outputs} (workflow_uuid, function_id, output, created_at)"
        " VALUES ('rw-tx', 1, '\"from-other-run\"', 0)",
    )
    with SetWorkflowID("rw-tx"):
        assert await rw_tx_workflow() == "from-other-run"
    assert TX_BODIES == ["ran"]
    assert await db_fetch(backend, db_url, "SELECT count(*) FROM rw_applied") == [(0,)]


rw_gates: dict[str, asyncio.Event] = {}  # made in each test's own event loop


@DBOS.workflow()
async def rw_parent_of_assigned_child() -> str:
    await rw_gates["go"].wait()
    with SetWorkflowID(f"{DBOS.workflow_id}-own-child"):
        handle = await DBOS.start_workflow(rw_target)
    return handle.workflow_id


async def test_child_start__child_recorded_by_another_run_wins(dbos: DBOS) -> None:
    """A child's start is the parent's step: if another run of the parent recorded that
    step first (with another child, as a SetWorkflowID inside a workflow may give), this
    run's handle is to the child recorded there, as a replay would give, and the child
    this run wrote is cancelled before it runs."""
    rw_gates["go"] = asyncio.Event()
    with SetWorkflowID("rw-parent"):
        parent = await DBOS.start_workflow(rw_parent_of_assigned_child)
    with SetWorkflowID("rw-winner-child"):
        await rw_target()
    info = function_info(rw_target)
    assert info is not None
    winner = StepRow(
        "rw-parent", 1, info.name, child_workflow_id="rw-winner-child", completed_at_epoch_ms=1
    )
    await get_runtime().journal.record_step(winner)
    rw_gates["go"].set()
    assert await asyncio.wait_for(parent, timeout=30) == "rw-winner-child"
    steps = await DBOS.list_workflow_steps("rw-parent")
    assert [s.child_workflow_id for s in steps] == ["rw-winner-child"]
    # The child this run wrote never runs: it is cancelled, not left PENDING.
    own = await DBOS.get_workflow_status("rw-parent-own-child")
    assert own is not None and own.status == "CANCELLED"
