"""Rule 1 of docs/architecture.md with deferred step rows: a step's or transaction's row
may commit after its workflow saw the output, but before the workflow's next effect.

Commits are slowed down (every batch of the journal waits before it goes out), so a
row deferred by the workflow is still in flight when its next call begins; each effect
then checks, in the database, that every row of the workflow before it has committed.
The crash half of the rule (a step whose row was lost runs again, nothing after it had
run) is ``test_crash.py``'s deferred scenario, with a real SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import pytest

from dbos_async import DBOS, Queue, SetWorkflowID, WorkflowStatusString
from dbos_async._runtime import get_runtime
from dbos_async.sysdb import InsertWorkflow, MessageRow, StepRow, Write, WriteResult

deferred_queue = Queue("deferred_rows_queue")

#: What each effect saw: (effect, its step ID, the step IDs committed before it).
SEEN: list[tuple[str, int, set[int]]] = []
WORKFLOW = "deferred-effects"


async def committed_steps(workflow_id: str) -> set[int]:
    rows = await UNWRAPPED["load_steps"](workflow_id)
    return {row.function_id for row in rows}


async def saw(effect: str, step_id: int) -> None:
    SEEN.append((effect, step_id, await committed_steps(WORKFLOW)))


UNWRAPPED: dict[str, Any] = {}


@DBOS.step()
async def dr_step(n: int) -> int:
    step_id = DBOS.step_id
    assert step_id is not None
    await saw("step body", step_id)
    return n


@DBOS.transaction()
async def dr_transaction(n: int) -> int:
    step_id = DBOS.step_id
    assert step_id is not None
    await saw("transaction body", step_id)
    return n * 2


@DBOS.workflow()
async def dr_child(n: int) -> int:
    return n


@DBOS.workflow()
async def dr_effects() -> int:
    a = await dr_step(1)  # 1
    await DBOS.send(WORKFLOW, "hello", "self")  # 2
    b = await dr_transaction(a)  # 3
    child = await DBOS.start_workflow(dr_child, b)  # 4
    await DBOS.set_event("progress", b)  # 5
    queued = await deferred_queue.enqueue(dr_child, 3)  # 6
    c = await dr_step(4)  # 7
    await DBOS.sleep(0.01)  # 8
    d = await dr_step(5)  # 9
    return a + b + c + d + await child + await queued  # (get_result steps 10, 11)


@pytest.fixture
def slow_commits(dbos: DBOS, monkeypatch: pytest.MonkeyPatch) -> list[list[Write]]:
    """Every journal batch waits 50 ms before it goes out; sends, events and child
    inserts note what had committed when they began. Returns the batches."""
    SEEN.clear()
    sysdb = get_runtime().sysdb
    UNWRAPPED["load_steps"] = sysdb.load_steps
    batches: list[list[Write]] = []
    real_batch = sysdb.write_batch
    real_send = sysdb.send_message
    real_event = sysdb.set_event
    real_enqueue = sysdb.enqueue_workflow

    async def write_batch(writes: Sequence[Write], *, retry: bool = False) -> list[WriteResult]:
        batches.append(list(writes))
        for w in writes:
            if isinstance(w, InsertWorkflow) and w.row.parent_workflow_id == WORKFLOW:
                await saw("child start", int(w.row.workflow_id.rsplit("-", 1)[1]))
        await asyncio.sleep(0.05)
        return await real_batch(writes, retry=retry)

    async def send_message(message: MessageRow, step: StepRow | None) -> None:
        if step is not None and step.workflow_id == WORKFLOW:
            await saw("send", step.function_id)
        await real_send(message, step)

    async def set_event(workflow_id: str, key: str, value: str, step: StepRow | None) -> None:
        if step is not None and workflow_id == WORKFLOW:
            await saw("set_event", step.function_id)
        await real_event(workflow_id, key, value, step)

    async def enqueue_workflow(row: Any) -> Any:
        if row.parent_workflow_id == WORKFLOW:
            await saw("enqueue", int(row.workflow_id.rsplit("-", 1)[1]))
        return await real_enqueue(row)

    monkeypatch.setattr(sysdb, "write_batch", write_batch)
    monkeypatch.setattr(sysdb, "send_message", send_message)
    monkeypatch.setattr(sysdb, "set_event", set_event)
    monkeypatch.setattr(sysdb, "enqueue_workflow", enqueue_workflow)
    return batches


async def test_deferred__no_effect_begins_before_earlier_rows_commit(
    slow_commits: list[list[Write]],
) -> None:
    with SetWorkflowID(WORKFLOW):
        handle = await DBOS.start_workflow(dr_effects)
    result = await asyncio.wait_for(handle, timeout=60)
    assert result == 1 + 2 + 4 + 5 + 2 + 3
    # The caller saw the result only once the outcome had committed.
    status = await DBOS.get_workflow_status(WORKFLOW)
    assert status is not None and status.status == WorkflowStatusString.SUCCESS

    effects = [(effect, step_id) for effect, step_id, _ in SEEN]
    assert effects == [
        ("step body", 1),
        ("send", 2),
        ("transaction body", 3),
        ("child start", 4),
        ("set_event", 5),
        ("enqueue", 6),
        ("step body", 7),
        ("step body", 9),
    ]
    for effect, step_id, committed in SEEN:
        before = set(range(1, step_id))
        assert before <= committed, f"{effect} at step {step_id} began before {before - committed}"


@DBOS.step()
async def dr_plain(n: int) -> int:
    return n


@DBOS.workflow()
async def dr_three(n: int) -> int:
    return await dr_plain(await dr_plain(await dr_plain(n)))


async def test_deferred__sequential_workflow_waits_for_four_commits(
    slow_commits: list[list[Write]],
) -> None:
    """The status insert, steps 1 and 2 (each awaited by the next step), and step 3 with
    the outcome in one batch."""
    with SetWorkflowID("deferred-three"):
        assert await dr_three(7) == 7
    mine = [[type(w).__name__ for w in batch] for batch in slow_commits]
    assert mine == [
        ["InsertWorkflow"],
        ["RecordStep"],
        ["RecordStep"],
        ["RecordStep", "FinishWorkflow"],
    ]


@DBOS.step()
async def dr_failing() -> None:
    raise ValueError("step failed")


@DBOS.workflow()
async def dr_catches() -> str:
    with contextlib.suppress(ValueError):
        await dr_failing()
    return await dr_step_after()


@DBOS.step()
async def dr_step_after() -> str:
    rows = await UNWRAPPED["load_steps"](DBOS.workflow_id)
    return ",".join(f"{r.function_id}:{r.function_name.rsplit('.', 1)[-1]}" for r in rows)


async def test_deferred__a_failed_step_row_also_commits_before_the_next_effect(
    slow_commits: list[list[Write]],
) -> None:
    with SetWorkflowID("deferred-error"):
        assert await dr_catches() == "1:dr_failing"
    steps = await DBOS.list_workflow_steps("deferred-error")
    assert [s.function_id for s in steps] == [1, 2]
    assert isinstance(steps[0].error, ValueError)
