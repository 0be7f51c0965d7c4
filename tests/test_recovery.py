"""Recovery claims: one conditional update per chunk, and only one claimant wins each
workflow, however many race for it."""

from __future__ import annotations

import asyncio

from dbos_async import DBOS, SetWorkflowID, WorkflowStatusString
from dbos_async._runtime import get_runtime
from dbos_async.sysdb import RecoveryRequest

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


async def test_claim_for_recovery__racing_claimants_win_each_workflow_once(
    dbos: DBOS, db_url: str
) -> None:
    ids = await leave_pending(db_url, 30)
    # A runtime that does not recover on its own: another executor id.
    DBOS({"database_url": db_url, "application_version": "test", "executor_id": "other"})
    await DBOS.launch()
    sysdb = get_runtime().sysdb
    requests = [RecoveryRequest(wid, 0, 5) for wid in ids]
    results = await asyncio.gather(*(sysdb.claim_for_recovery(requests, 1) for _ in range(4)))
    won = sorted(c.row.workflow_id for claims in results for c in claims)
    assert won == sorted(ids)
    assert all(not c.exceeded and c.row.recovery_attempts == 1 for r in results for c in r)
    # A request that saw a stale attempt count wins nothing.
    assert await sysdb.claim_for_recovery(requests, 2) == []


async def test_claim_for_recovery__past_the_limit_dead_letters(dbos: DBOS, db_url: str) -> None:
    ids = await leave_pending(db_url, 3)
    DBOS({"database_url": db_url, "application_version": "test", "executor_id": "other"})
    await DBOS.launch()
    sysdb = get_runtime().sysdb
    claims = await sysdb.claim_for_recovery([RecoveryRequest(w, 0, 0) for w in ids], 1)
    assert sorted(c.row.workflow_id for c in claims) == sorted(ids)
    assert all(c.exceeded for c in claims)
    for wid in ids:
        status = await DBOS.get_workflow_status(wid)
        assert status is not None
        assert status.status == WorkflowStatusString.MAX_RECOVERY_ATTEMPTS_EXCEEDED


async def test_recovery__many_pending_workflows_all_finish(dbos: DBOS, db_url: str) -> None:
    ids = await leave_pending(db_url, 1200)  # more than one recovery chunk
    gate.set()
    DBOS({"database_url": db_url, "application_version": "test"})
    await DBOS.launch()
    results = [await (await DBOS.retrieve_workflow(wid)) for wid in ids]
    assert results == list(range(1200))
    steps = await get_runtime().sysdb.load_steps_many(ids[:5])
    assert [len(v) for v in steps.values()] == [1] * 5
