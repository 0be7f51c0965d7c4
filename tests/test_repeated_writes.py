"""Storage calls repeated with the same step (a second run of a workflow step, or a call
retried after a lost reply) change nothing more, on both backends: a recv consumes one
message, a stream write appends one value."""

from __future__ import annotations

from dbos_async import DBOS, SetWorkflowID
from dbos_async._runtime import get_runtime
from dbos_async.sysdb import StepRow


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
