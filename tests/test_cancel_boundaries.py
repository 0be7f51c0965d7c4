"""Faults never fail, lose or repeat work (issue 10), on both backends: a cancel or a
deadline stops a workflow at a step boundary (a running step or transaction finishes and
is recorded; the next one never runs), a resumed queued workflow goes back through its
queue's limits without re-running its finished steps, handles follow the current run,
an ENQUEUED workflow past its deadline is cancelled without waiting for a queue slot, and
enqueue options outside an enqueue are refused."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from dbos_async import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    SetWorkflowTimeout,
    WorkflowHandle,
    WorkflowStatus,
    WorkflowStatusString,
)

# Generous bounds: the suite runs on a loaded 2-core machine. Only outcomes and orderings
# are asserted, never how fast something happened below these bounds.
WITHIN = 15.0

counts: Counter[str] = Counter()
#: Gates the workflows below wait on, made afresh for every test (event loops differ).
gates: dict[str, asyncio.Event] = {}
thread_gate = threading.Event()


def gate(name: str) -> asyncio.Event:
    if name not in gates:
        gates[name] = asyncio.Event()
    return gates[name]


@pytest.fixture(autouse=True)
def _reset_state() -> Iterator[None]:
    counts.clear()
    gates.clear()
    thread_gate.clear()
    yield
    thread_gate.set()  # never leave a worker thread blocked
    counts.clear()
    gates.clear()


async def wait_until(predicate: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WITHIN
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def counted(key: str, n: int = 1) -> None:
    async def check() -> bool:
        return counts[key] >= n

    await wait_until(check, f"{key} to reach {n}")


async def status(workflow_id: str) -> WorkflowStatus:
    st = await DBOS.get_workflow_status(workflow_id)
    assert st is not None, workflow_id
    return st


async def has_status(workflow_id: str, expected: str) -> None:
    async def check() -> bool:
        return (await status(workflow_id)).status == expected

    await wait_until(check, f"{workflow_id} to be {expected}")


async def step_names(workflow_id: str) -> list[str]:
    return [s.function_name for s in await DBOS.list_workflow_steps(workflow_id)]


async def recorded(workflow_id: str, name: str) -> None:
    async def check() -> bool:
        return name in await step_names(workflow_id)

    await wait_until(check, f"step {name} of {workflow_id} to be recorded")


async def cancelled_promptly(handle: WorkflowHandle[Any]) -> None:
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(handle.get_result(), WITHIN)


# -- steps with two effects around an await ------------------------------------------


@DBOS.step()
async def cb_two_effects(tag: str) -> str:
    counts[f"{tag}:first"] += 1
    await gate(tag).wait()
    counts[f"{tag}:second"] += 1
    return tag


@DBOS.step()
async def cb_next() -> str:
    counts["next"] += 1
    return "next"


@DBOS.workflow()
async def cb_one_step() -> str:
    first = await cb_two_effects("a")
    return first + await cb_next()


@DBOS.workflow()
async def cb_gathered() -> str:
    a, b = await asyncio.gather(cb_two_effects("a"), cb_two_effects("b"))
    return a + b + await cb_next()


@DBOS.workflow()
async def cb_step_and_sleep() -> str:
    a, _ = await asyncio.gather(cb_two_effects("a"), DBOS.sleep(60))
    return a + await cb_next()


@DBOS.step()
def cb_thread_step() -> str:
    counts["thread:first"] += 1
    thread_gate.wait(60)
    counts["thread:second"] += 1
    return "t"


@DBOS.workflow()
async def cb_thread_workflow() -> str:
    first = cb_thread_step()
    return await first + await cb_next()


def assert_step_ran_once(tag: str) -> None:
    assert counts[f"{tag}:first"] == 1
    assert counts[f"{tag}:second"] == 1


async def test_cancel__running_step_finishes_records_and_next_never_runs(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(cb_one_step)
    await counted("a:first")
    await DBOS.cancel_workflow(handle.workflow_id)
    # Awaiters learn at once, while the step body is still running.
    await cancelled_promptly(handle)
    assert counts["a:second"] == 0
    gate("a").set()
    await recorded(handle.workflow_id, "cb_two_effects")
    await asyncio.sleep(0.3)
    assert_step_ran_once("a")
    assert counts["next"] == 0
    assert await step_names(handle.workflow_id) == ["cb_two_effects"]
    [step] = await DBOS.list_workflow_steps(handle.workflow_id)
    assert step.output == "a"
    assert (await status(handle.workflow_id)).status == WorkflowStatusString.CANCELLED


async def test_cancel__deadline_lets_the_running_step_finish(dbos: DBOS) -> None:
    with SetWorkflowTimeout(0.3):
        handle = await DBOS.start_workflow(cb_one_step)
    await counted("a:first")
    await has_status(handle.workflow_id, WorkflowStatusString.CANCELLED)
    await cancelled_promptly(handle)
    assert counts["a:second"] == 0
    gate("a").set()
    await recorded(handle.workflow_id, "cb_two_effects")
    await asyncio.sleep(0.3)
    assert_step_ran_once("a")
    assert counts["next"] == 0
    assert await step_names(handle.workflow_id) == ["cb_two_effects"]
    assert (await status(handle.workflow_id)).status == WorkflowStatusString.CANCELLED


async def test_cancel__gathered_steps_all_finish_and_record(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(cb_gathered)
    await counted("a:first")
    await counted("b:first")
    await DBOS.cancel_workflow(handle.workflow_id)
    await cancelled_promptly(handle)
    gate("a").set()
    await recorded(handle.workflow_id, "cb_two_effects")
    await asyncio.sleep(0.2)
    assert counts["b:second"] == 0  # still running: not interrupted
    gate("b").set()

    async def both() -> bool:
        return len(await step_names(handle.workflow_id)) == 2

    await wait_until(both, "both gathered steps to be recorded")
    await asyncio.sleep(0.3)
    assert_step_ran_once("a")
    assert_step_ran_once("b")
    assert counts["next"] == 0
    assert await step_names(handle.workflow_id) == ["cb_two_effects", "cb_two_effects"]
    assert (await status(handle.workflow_id)).status == WorkflowStatusString.CANCELLED


async def test_cancel__step_gathered_with_a_sleep_finishes_then_the_workflow_stops(
    dbos: DBOS,
) -> None:
    handle = await DBOS.start_workflow(cb_step_and_sleep)
    await counted("a:first")
    await DBOS.cancel_workflow(handle.workflow_id)
    await cancelled_promptly(handle)
    gate("a").set()
    await recorded(handle.workflow_id, "cb_two_effects")
    await asyncio.sleep(0.3)
    assert_step_ran_once("a")
    assert counts["next"] == 0
    assert sorted(await step_names(handle.workflow_id)) == ["DBOS.sleep", "cb_two_effects"]
    assert (await status(handle.workflow_id)).status == WorkflowStatusString.CANCELLED


async def test_cancel__def_step_in_a_thread_finishes_and_records(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(cb_thread_workflow)
    await counted("thread:first")
    await DBOS.cancel_workflow(handle.workflow_id)
    await cancelled_promptly(handle)
    assert counts["thread:second"] == 0
    thread_gate.set()
    await recorded(handle.workflow_id, "cb_thread_step")
    await asyncio.sleep(0.3)
    assert_step_ran_once("thread")
    assert counts["next"] == 0
    assert await step_names(handle.workflow_id) == ["cb_thread_step"]
    assert (await status(handle.workflow_id)).status == WorkflowStatusString.CANCELLED


# -- a transaction ---------------------------------------------------------------------


@DBOS.transaction()
async def cb_transaction() -> int:
    counts["tx:first"] += 1
    await DBOS.sql_connection.execute("CREATE TABLE IF NOT EXISTS cb_t (x INTEGER)")
    await gate("tx").wait()
    await DBOS.sql_connection.execute("INSERT INTO cb_t (x) VALUES (1)")
    counts["tx:second"] += 1
    return 7


@DBOS.workflow()
async def cb_tx_workflow() -> int:
    value = await cb_transaction()
    await cb_next()
    return value


async def test_cancel__running_transaction_commits_and_records(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(cb_tx_workflow)
    await counted("tx:first")
    # On SQLite the cancel's write waits for the open transaction (one writer); on
    # Postgres it lands while the body runs. Either way the body is not interrupted.
    cancel = asyncio.create_task(DBOS.cancel_workflow(handle.workflow_id))
    await asyncio.wait({cancel}, timeout=1.0)
    gate("tx").set()
    await asyncio.wait_for(cancel, WITHIN)
    await cancelled_promptly(handle)
    await recorded(handle.workflow_id, "cb_transaction")
    await asyncio.sleep(0.3)
    assert_step_ran_once("tx")
    assert counts["next"] == 0
    [step] = await DBOS.list_workflow_steps(handle.workflow_id)
    assert step.output == 7
    assert (await status(handle.workflow_id)).status == WorkflowStatusString.CANCELLED


# -- waiting workflows stop at once ----------------------------------------------------


@DBOS.workflow()
async def cb_waiter(kind: str) -> str:
    await cb_next()
    counts["waiting"] += 1
    try:
        if kind == "sleep":
            await DBOS.sleep(60)
        elif kind == "recv":
            await DBOS.recv("cb-topic", timeout_seconds=60)
        elif kind == "get_event":
            await DBOS.get_event("cb-nobody", "key", timeout_seconds=60)
        else:
            await gate("plain").wait()
    finally:
        counts["unwound"] += 1
    counts["after"] += 1
    await cb_next()
    return "done"


@pytest.mark.parametrize("kind", ["sleep", "recv", "get_event", "plain"])
async def test_cancel__waiting_workflow_stops_at_once(dbos: DBOS, kind: str) -> None:
    handle = await DBOS.start_workflow(cb_waiter, kind)
    await counted("waiting")
    await asyncio.sleep(0.05)
    await DBOS.cancel_workflow(handle.workflow_id)
    await cancelled_promptly(handle)
    await counted("unwound")  # the wait itself was interrupted, nothing ran after it
    gate("plain").set()
    await asyncio.sleep(0.2)
    assert counts["after"] == 0
    assert counts["next"] == 1
    assert (await status(handle.workflow_id)).status == WorkflowStatusString.CANCELLED
