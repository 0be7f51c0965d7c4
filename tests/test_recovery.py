"""Takeover claims: one conditional update per chunk, and only one process wins each
orphaned workflow, however many race for it; a live lease is never taken from."""

from __future__ import annotations

import asyncio

from dbos_async import DBOS, SetWorkflowID, WorkflowStatusString
from dbos_async._runtime import get_runtime
from dbos_async.sysdb import (
    InsertWorkflow,
    RecoveryRequest,
    SystemDatabase,
    WorkflowRow,
    open_databases,
)

gate = asyncio.Event()


@DBOS.step()
async def rc_step() -> int:
    return 1


@DBOS.workflow()
async def rc_blocked(n: int) -> int:
    await rc_step()
    await gate.wait()
    return n


async def leave_pending(db_url: str, count: int) -> list[str]:
    """Start workflows that block, then stop the runtime: they stay PENDING."""
    global gate
    gate = asyncio.Event()
    ids = [f"rc-{i}" for i in range(count)]
    for i, wid in enumerate(ids):
        with SetWorkflowID(wid):
            await DBOS.start_workflow(rc_blocked, i)
    for _ in range(500):  # until the last one has recorded its step
        if await DBOS.list_workflow_steps(ids[-1]):
            break
        await asyncio.sleep(0.01)
    await DBOS.destroy()
    return ids


async def other_processes(db_url: str, count: int) -> list[SystemDatabase]:
    """System databases of ``count`` other (not launched) processes, each its own owner."""
    found = []
    for i in range(count):
        sysdb, _ = open_databases(db_url, db_url, pool_size=2, connect_timeout=5.0)
        sysdb.owner = f"other-{i}"
        await sysdb.connect()
        found.append(sysdb)
    return found


async def requests_for(sysdb: SystemDatabase, ids: list[str], limit: int) -> list[RecoveryRequest]:
    requests = []
    for wid in ids:
        row = await sysdb.get_workflow(wid)
        assert row is not None and row.owner is not None  # the stopped process's
        requests.append(RecoveryRequest(wid, row.recovery_attempts, limit, row.owner))
    return requests


async def test_take_over__racing_processes_win_each_workflow_once(dbos: DBOS, db_url: str) -> None:
    ids = await leave_pending(db_url, 30)  # its process stopped: its lease ended
    others = await other_processes(db_url, 4)
    try:
        requests = await requests_for(others[0], ids, 5)
        results = await asyncio.gather(*(o.take_over(requests, "exec", 1) for o in others))
        won = sorted(c.row.workflow_id for claims in results for c in claims)
        assert won == sorted(ids)
        for other, claims in zip(others, results, strict=True):
            for claim in claims:
                assert not claim.exceeded
                assert claim.row.recovery_attempts == 1
                assert claim.row.owner == other.owner
                assert claim.row.executor_id == "exec"
        # A request that saw a stale owner (or attempt count) wins nothing.
        assert await others[0].take_over(requests, "exec", 2) == []
    finally:
        for other in others:
            await other.close()


async def test_take_over__past_the_limit_dead_letters(dbos: DBOS, db_url: str) -> None:
    ids = await leave_pending(db_url, 3)
    (other,) = await other_processes(db_url, 1)
    try:
        claims = await other.take_over(await requests_for(other, ids, 0), "exec", 1)
        assert sorted(c.row.workflow_id for c in claims) == sorted(ids)
        assert all(c.exceeded for c in claims)
        for wid in ids:
            row = await other.get_workflow(wid)
            assert row is not None
            assert row.status == WorkflowStatusString.MAX_RECOVERY_ATTEMPTS_EXCEEDED
    finally:
        await other.close()


async def test_take_over__never_from_a_live_lease(dbos: DBOS, db_url: str) -> None:
    global gate
    gate = asyncio.Event()
    with SetWorkflowID("rc-live"):
        handle = await DBOS.start_workflow(rc_blocked, 1)
    (other,) = await other_processes(db_url, 1)
    try:
        # This process's lease is live: nothing of it is orphaned, and a takeover fails.
        assert await other.orphaned_workflows("test", ["rc_blocked"], 2**62, [], 10) == []
        assert await other.take_over(await requests_for(other, ["rc-live"], 5), "x", 1) == []
    finally:
        await other.close()
    gate.set()
    assert await handle == 1


async def test_recovery__many_pending_workflows_all_finish(dbos: DBOS, db_url: str) -> None:
    ids = await leave_pending(db_url, 1200)  # more than one recovery chunk
    gate.set()
    DBOS({"database_url": db_url, "application_version": "test"})
    await DBOS.launch()
    results = [await (await DBOS.retrieve_workflow(wid)) for wid in ids]
    assert results == list(range(1200))
    steps = await get_runtime().sysdb.load_steps_many(ids[:5])
    assert [len(v) for v in steps.values()] == [1] * 5


async def test_take_over__orphans_of_functions_not_here_do_not_block_ours(
    dbos: DBOS, db_url: str
) -> None:
    """Another app's (or an unknown function's) orphans of the same version, however many,
    neither starve this process's takeover nor flood its log."""
    global gate
    gate = asyncio.Event()
    gate.set()
    (other,) = await other_processes(db_url, 1)
    try:
        foreign = [
            WorkflowRow(f"foreign-{i}", "PENDING", "not_here", "[]", None, None, "x", "test",
                        i, i, owner=None)
            for i in range(600)
        ]  # fmt: skip
        inputs = get_runtime().codec.dump_inputs("rc_blocked", None, (5,), {})
        ours = WorkflowRow(
            "ours", "PENDING", "rc_blocked", inputs, None, None, "x", "test", 10_000, 10_000,
            owner=None,
        )  # fmt: skip
        await other.write_batch([InsertWorkflow(r) for r in [*foreign, ours]])
    finally:
        await other.close()
    handle = await DBOS.retrieve_workflow("ours")
    assert await asyncio.wait_for(handle.get_result(), 15) == 5
