"""The step journal's ordering rule, with slow and failing flushes injected."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest

from dbos_async import DBOS, SetWorkflowID, WorkflowStatusString
from dbos_async._runtime import get_runtime
from dbos_async.sysdb import FinishWorkflow, InsertWorkflow, RecordStep, Write, WriteResult

events: list[tuple[str, Any]] = []


def write_key(write: Write) -> tuple[Any, ...]:
    if isinstance(write, InsertWorkflow):
        return ("insert", write.row.workflow_id)
    if isinstance(write, RecordStep):
        return ("step", write.step.workflow_id, write.step.function_id)
    assert isinstance(write, FinishWorkflow)
    return ("finish", write.workflow_id)


def wrap_write_batch(
    monkeypatch: pytest.MonkeyPatch, before: Any = None, after: Any = None
) -> None:
    """Interpose on the system database's batch writes of the running DBOS."""
    sysdb = get_runtime().sysdb
    real = sysdb.write_batch

    async def write_batch(writes: Sequence[Write], *, retry: bool = False) -> list[WriteResult]:
        if before is not None:
            await before(writes, retry)
        results = await real(writes, retry=retry)
        events.extend(("committed", write_key(w)) for w in writes)
        if after is not None:
            await after(writes, retry)
        return results

    monkeypatch.setattr(sysdb, "write_batch", write_batch)


@DBOS.step()
async def jr_step(n: int) -> int:
    events.append(("body", ("step", DBOS.workflow_id, n)))
    return n


@DBOS.workflow()
async def jr_three_steps(tag: str) -> int:
    total = 0
    for n in (1, 2, 3):
        total += await jr_step(n)
        events.append(("seen", ("step", DBOS.workflow_id, n)))
    return total


@DBOS.step()
async def jr_maybe_poison(value: str) -> str:
    return value


@DBOS.workflow()
async def jr_poisonable(value: str) -> str:
    return await jr_maybe_poison(value)


async def test_journal__step_rows_commit_before_the_next_step_body(
    dbos: DBOS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With slow commits: a step's row may commit after the workflow saw its output,
    never after the next step's body began; the last row commits with the outcome, so a
    3-step workflow waits for four commits (insert, step 1, step 2, step 3 + outcome)."""
    events.clear()
    batches: list[list[tuple[Any, ...]]] = []

    async def slow(writes: Sequence[Write], retry: bool) -> None:
        batches.append([write_key(w) for w in writes])
        await asyncio.sleep(0.1)

    wrap_write_batch(monkeypatch, before=slow)
    started = time.monotonic()
    with SetWorkflowID("slow-1"):
        assert await jr_three_steps("a") == 6
    assert time.monotonic() - started >= 0.4
    for n in (1, 2):
        committed = events.index(("committed", ("step", "slow-1", n)))
        assert committed < events.index(("body", ("step", "slow-1", n + 1)))
    assert batches == [
        [("insert", "slow-1")],
        [("step", "slow-1", 1)],
        [("step", "slow-1", 2)],
        [("step", "slow-1", 3), ("finish", "slow-1")],
    ]


async def test_journal__writes_of_one_workflow_keep_their_order(
    dbos: DBOS, monkeypatch: pytest.MonkeyPatch
) -> None:
    events.clear()
    wrap_write_batch(monkeypatch)
    ids = [f"order-{i}" for i in range(30)]
    handles = []
    for wid in ids:
        with SetWorkflowID(wid):
            handles.append(await DBOS.start_workflow(jr_three_steps, wid))
    assert await asyncio.gather(*handles) == [6] * 30
    committed = [key for kind, key in events if kind == "committed"]
    for wid in ids:
        mine = [k for k in committed if k[1] == wid]
        assert mine == [
            ("insert", wid),
            ("step", wid, 1),
            ("step", wid, 2),
            ("step", wid, 3),
            ("finish", wid),
        ]


async def test_journal__concurrent_workflows_share_commits(dbos: DBOS) -> None:
    journal = get_runtime().journal
    batches, writes = journal.batches, journal.writes
    handles = await asyncio.gather(
        *(DBOS.start_workflow(jr_three_steps, str(i)) for i in range(200))
    )
    assert await asyncio.gather(*handles) == [6] * 200
    new_batches = journal.batches - batches
    new_writes = journal.writes - writes
    assert new_writes == 200 * 5
    # Group commit: far fewer commits than writes.
    assert new_batches * 3 <= new_writes


async def test_journal__lone_write_goes_out_at_once(
    dbos: DBOS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No batching timer: a lone write reaches the database within a few turns of the
    event loop. Counted in loop turns, not milliseconds, so a loaded machine cannot make
    it fail; a writer that first waits on a timer (even 1 ms) is still asleep after
    these turns, which take microseconds each on an idle machine."""
    called: list[int] = []

    async def stamp(writes: Sequence[Write], retry: bool) -> None:
        called.append(len(writes))

    wrap_write_batch(monkeypatch, before=stamp)
    write = asyncio.ensure_future(
        get_runtime().journal.finish_workflow("nobody", "SUCCESS", None, None, 0)
    )
    for _ in range(10):
        await asyncio.sleep(0)  # one loop turn; ready callbacks only
        if called:
            break
    assert called == [1], "the lone write was not sent within 10 loop turns"
    await asyncio.wait_for(write, timeout=30)


async def test_journal__failed_batch_fails_only_its_culprit(
    dbos: DBOS, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def poison(writes: Sequence[Write], retry: bool) -> None:
        for w in writes:
            if isinstance(w, RecordStep) and w.step.output and "poison" in w.step.output:
                raise RuntimeError("poisoned write")

    values = [f"ok-{i}" for i in range(20)] + ["poison"]
    handles = []
    for value in values:
        with SetWorkflowID(f"p-{value}"):
            handles.append(await DBOS.start_workflow(jr_poisonable, value))
    wrap_write_batch(monkeypatch, before=poison)
    results = await asyncio.gather(*handles, return_exceptions=True)
    assert results[:-1] == values[:-1]
    # (The step's row was deferred: the workflow went on and returned, and its outcome
    # is refused; the row's error is recorded as the workflow's error instead.)
    assert isinstance(results[-1], RuntimeError) and "poisoned write" in str(results[-1])
    for value in values[:-1]:
        status = await DBOS.get_workflow_status(f"p-{value}")
        assert status is not None and status.status == WorkflowStatusString.SUCCESS
    poisoned = await DBOS.get_workflow_status("p-poison")
    assert poisoned is not None and poisoned.status == WorkflowStatusString.ERROR


async def test_journal__batch_committed_then_failed_loses_nothing(
    dbos: DBOS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch commits but its reply is lost (as when the connection drops during
    COMMIT): the journal retries write by write, and nothing is lost or doubled."""
    failed: list[int] = []

    async def lose_reply(writes: Sequence[Write], retry: bool) -> None:
        if not retry and len(writes) > 1 and len(failed) < 3:
            failed.append(len(writes))
            raise ConnectionResetError("reply lost after commit")

    wrap_write_batch(monkeypatch, after=lose_reply)
    ids = [f"lost-{i}" for i in range(40)]
    handles = []
    for wid in ids:
        with SetWorkflowID(wid):
            handles.append(await DBOS.start_workflow(jr_three_steps, wid))
    assert await asyncio.gather(*handles) == [6] * 40
    assert failed, "no multi-write batch was formed"
    for wid in ids:
        steps = await DBOS.list_workflow_steps(wid)
        assert [s.function_id for s in steps] == [1, 2, 3]
        assert [s.output for s in steps] == [1, 2, 3]
        status = await DBOS.get_workflow_status(wid)
        assert status is not None and status.status == WorkflowStatusString.SUCCESS
        assert status.output == 6
