"""Queues in one process (API.md section 6): enqueueing, the ENQUEUED -> PENDING -> SUCCESS
life cycle, concurrency, worker concurrency, the rate limiter, priorities, deduplication,
partitions, delays, child workflows, workflow IDs, cancellation and timeouts of queued
workflows, ``DBOSClient.enqueue``, on both backends; and the validation of ``Queue`` and
``SetEnqueueOptions`` arguments, which needs no database.

The queues of this module are put into the process-global registry only while one of its
tests runs (the autouse fixture ``_module_queues``), so the DBOS instances that other
modules' tests launch do not poll them.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import sqlite3
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import pytest

from dbos_async import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSClient,
    DBOSConfigError,
    DBOSConflictingWorkflowError,
    DBOSQueueDeduplicatedError,
    DBOSQueueNotFoundError,
    DBOSWorkflowFunctionNotFoundError,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
    SetWorkflowTimeout,
    WorkflowHandle,
    WorkflowStatus,
    WorkflowStatusString,
)
from dbos_async._registry import registry
from dbos_async._runtime import current_runtime
from dbos_async.sysdb import QueueInfo, notification_key

POLL = 0.1  # every test queue polls this often

# -- queues --------------------------------------------------------------------------


def _declare(name: str, *args: Any, **kwargs: Any) -> Queue:
    """Build a module queue but leave it out of the registry until a test of this module
    runs (see ``_module_queues``)."""
    queue = Queue(name, *args, polling_interval_sec=POLL, **kwargs)
    registry.queues.pop(name, None)
    return queue


Q_BASIC = _declare("tq_basic")
Q_SECOND = _declare("tq_second")
Q_CONC = _declare("tq_conc", concurrency=3)
Q_WCONC = _declare("tq_wconc", worker_concurrency=2)
LIMIT, PERIOD = 3, 0.6
Q_LIMIT = _declare("tq_limit", limiter={"limit": LIMIT, "period": PERIOD})
Q_PRIO = _declare("tq_prio", worker_concurrency=1, priority_enabled=True)
Q_DEDUP = _declare("tq_dedup")
Q_DEDUP_OTHER = _declare("tq_dedup_other")
Q_PART = _declare("tq_part", concurrency=1, partition_queue=True)
MODULE_QUEUES = [
    Q_BASIC,
    Q_SECOND,
    Q_CONC,
    Q_WCONC,
    Q_LIMIT,
    Q_PRIO,
    Q_DEDUP,
    Q_DEDUP_OTHER,
    Q_PART,
]


@pytest.fixture(autouse=True)
def _module_queues() -> Iterator[None]:
    """Declare this module's queues for the test (before the ``dbos`` fixture launches, so
    they are registered in the database at launch) and withdraw them afterwards."""
    for queue in MODULE_QUEUES:
        registry.queues[queue.name] = queue
    try:
        yield
    finally:
        for queue in MODULE_QUEUES:
            registry.queues.pop(queue.name, None)


# -- state the workflows report into; reset before every test -------------------------

CALLS: Counter[str] = Counter()
RUNNING: Counter[str] = Counter()
PEAK: Counter[str] = Counter()
ORDER: list[str] = []
STARTS: dict[str, float] = {}
SPANS: dict[str, tuple[float, float]] = {}
GATES: dict[str, asyncio.Event] = {}


@pytest.fixture(autouse=True)
def _reset_state() -> Iterator[None]:
    for store in (CALLS, RUNNING, PEAK, ORDER, STARTS, SPANS, GATES):
        store.clear()
    yield
    GATES.clear()


def gate(name: str) -> asyncio.Event:
    if name not in GATES:
        GATES[name] = asyncio.Event()
    return GATES[name]


# -- workflows ------------------------------------------------------------------------


@DBOS.step()
async def tq_step_label(label: str) -> str:
    return f"step-{label}"


@DBOS.workflow()
async def tq_double(x: int) -> int:
    CALLS["tq_double"] += 1
    return 2 * x


@DBOS.workflow()
async def tq_record(label: str) -> str:
    """Note when it starts, in run order."""
    ORDER.append(label)
    STARTS[label] = time.time()
    CALLS[label] += 1
    return label


@DBOS.workflow()
async def tq_gated(label: str) -> str:
    """Start, then wait until the test opens ``gate(label)``."""
    ORDER.append(label)
    STARTS[label] = time.time()
    await gate(label).wait()
    return label


@DBOS.workflow()
async def tq_tracked(groups: list[str], hold: float, label: str) -> str:
    """Count itself as running in each of ``groups`` for ``hold`` seconds; keep the peak."""
    start = time.time()
    for group in groups:
        RUNNING[group] += 1
        PEAK[group] = max(PEAK[group], RUNNING[group])
    try:
        await asyncio.sleep(hold)
    finally:
        for group in groups:
            RUNNING[group] -= 1
    SPANS[label] = (start, time.time())
    return label


@DBOS.workflow()
async def tq_parent(n: int) -> list[Any]:
    await tq_step_label("first")  # step 1
    first = await Q_BASIC.enqueue(tq_double, n)  # step 2
    second = await Q_BASIC.enqueue(tq_double, n + 1)  # step 3
    return [first.workflow_id, await first, second.workflow_id, await second]


@DBOS.workflow()
async def tq_timed(label: str, hold: float | None) -> str:
    """Run for ``hold`` seconds, or until cancelled when ``hold`` is None."""
    STARTS[label] = time.time()
    if hold is None:
        await gate(label).wait()
    else:
        await asyncio.sleep(hold)
    return label


@DBOS.workflow(name="tq_client_sum")
async def tq_client_sum_impl(a: int, b: int, *, scale: int = 1) -> int:
    CALLS["tq_client_sum"] += 1
    return (a + b) * scale


async def tq_plain_async(x: int) -> int:
    return x


def tq_plain_sync(x: int) -> int:
    return x


# -- helpers --------------------------------------------------------------------------


async def wait_until(predicate: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def status(workflow_id: str) -> WorkflowStatus:
    st = await DBOS.get_workflow_status(workflow_id)
    assert st is not None, workflow_id
    return st


async def wait_status(
    workflow_id: str, want: WorkflowStatusString, within: float = 30.0
) -> WorkflowStatus:
    deadline = time.monotonic() + within
    while True:
        st = await status(workflow_id)
        if st.status == want:
            return st
        if time.monotonic() > deadline:
            raise AssertionError(f"workflow {workflow_id} is {st.status}, never {want}")
        await asyncio.sleep(0.01)


async def result(handle: WorkflowHandle[Any], within: float = 30.0) -> Any:
    return await asyncio.wait_for(handle.get_result(), within)


_ROW_COLUMNS = (
    "workflow_uuid",
    "status",
    "created_at",
    "started_at_epoch_ms",
    "delay_until_epoch_ms",
    "workflow_deadline_epoch_ms",
    "queue_partition_key",
)


async def queue_rows(db_url: str, queue_name: str) -> dict[str, dict[str, Any]]:
    """The status table's rows of a queue, read directly (``started_at_epoch_ms`` and
    ``delay_until_epoch_ms`` are not in WorkflowStatus), by workflow ID."""
    cols = ", ".join(_ROW_COLUMNS)
    if db_url.startswith("sqlite:///"):
        path = db_url[len("sqlite:///") :]

        def read() -> list[tuple[Any, ...]]:
            conn = sqlite3.connect(path)
            try:
                cur = conn.execute(
                    f"SELECT {cols} FROM dbos_workflow_status WHERE queue_name = ?",
                    (queue_name,),
                )
                return list(cur.fetchall())
            finally:
                conn.close()

        rows = await asyncio.to_thread(read)
    else:
        conn = await asyncpg.connect(db_url, timeout=5)
        try:
            records = await conn.fetch(
                f"SELECT {cols} FROM dbos_async.workflow_status WHERE queue_name = $1",
                queue_name,
            )
        finally:
            await conn.close()
        rows = [tuple(r) for r in records]
    return {r[0]: dict(zip(_ROW_COLUMNS, r, strict=True)) for r in rows}


# -- the life cycle of a queued workflow ------------------------------------------------


async def test_enqueue__enqueued_until_claimed_then_success_with_queue_name(dbos: DBOS) -> None:
    with SetEnqueueOptions(delay_seconds=1.5):  # time to look at it while ENQUEUED
        handle = await Q_BASIC.enqueue(tq_double, 21)

    st = await status(handle.workflow_id)
    assert st.status == WorkflowStatusString.ENQUEUED
    assert st.queue_name == "tq_basic"
    assert st.name == "tq_double"
    assert st.executor_id is None  # nobody has claimed it
    assert st.input == {"args": [21], "kwargs": {}}
    assert CALLS["tq_double"] == 0

    assert await result(handle) == 42
    assert CALLS["tq_double"] == 1
    done = await status(handle.workflow_id)
    assert done.status == WorkflowStatusString.SUCCESS
    assert done.queue_name == "tq_basic"
    assert done.executor_id == "local"
    assert done.output == 42


async def test_enqueue__handle_result_and_enqueue_async_alias(dbos: DBOS) -> None:
    first = await Q_BASIC.enqueue(tq_double, 5)
    second = await Q_BASIC.enqueue_async(tq_double, x=7)
    assert isinstance(first, WorkflowHandle)
    assert first.workflow_id != second.workflow_id
    assert await result(first) == 10
    assert await result(second) == 14
    retrieved = await DBOS.retrieve_workflow(second.workflow_id)
    assert await result(retrieved) == 14
    assert (await second.get_status()).status == WorkflowStatusString.SUCCESS


async def test_list_queued_workflows__enqueued_and_pending_only_by_queue(
    dbos: DBOS, db_url: str
) -> None:
    pending = await Q_BASIC.enqueue(tq_gated, "lq-pending")
    await wait_status(pending.workflow_id, WorkflowStatusString.PENDING)
    with SetEnqueueOptions(delay_seconds=30):
        enqueued = await Q_SECOND.enqueue(tq_record, "lq-enqueued")
    finished = await Q_BASIC.enqueue(tq_record, "lq-finished")
    assert await result(finished) == "lq-finished"
    not_queued = await DBOS.start_workflow(tq_gated, "lq-not-queued")
    await wait_until(lambda: "lq-not-queued" in STARTS, "the unqueued workflow to start")

    listed = {s.workflow_id: s.status for s in await DBOS.list_queued_workflows()}
    assert listed == {
        pending.workflow_id: WorkflowStatusString.PENDING,
        enqueued.workflow_id: WorkflowStatusString.ENQUEUED,
    }
    basic = await DBOS.list_queued_workflows(queue_name="tq_basic")
    assert [s.workflow_id for s in basic] == [pending.workflow_id]
    assert basic[0].queue_name == "tq_basic"
    second = await DBOS.list_queued_workflows(queue_name="tq_second")
    assert [s.workflow_id for s in second] == [enqueued.workflow_id]
    only_enqueued = await DBOS.list_queued_workflows(status="ENQUEUED")
    assert [s.workflow_id for s in only_enqueued] == [enqueued.workflow_id]
    assert await DBOS.list_queued_workflows(queue_name="tq_conc") == []

    client = DBOSClient(db_url)
    try:
        via_client = await client.list_queued_workflows(queue_name="tq_second")
        assert [s.workflow_id for s in via_client] == [enqueued.workflow_id]
        assert {s.workflow_id for s in await client.list_queued_workflows()} == set(listed)
    finally:
        await client.destroy()

    gate("lq-pending").set()
    gate("lq-not-queued").set()
    assert await result(pending) == "lq-pending"
    assert await result(not_queued) == "lq-not-queued"
    await DBOS.cancel_workflow(enqueued.workflow_id)
    assert await DBOS.list_queued_workflows() == []


# -- limits -----------------------------------------------------------------------------


async def test_concurrency__never_more_than_limit_running(dbos: DBOS) -> None:
    handles = [await Q_CONC.enqueue(tq_tracked, ["conc"], 0.15, f"c{i}") for i in range(12)]
    assert [await result(h) for h in handles] == [f"c{i}" for i in range(12)]
    assert 2 <= PEAK["conc"] <= 3, PEAK
    assert RUNNING["conc"] == 0
    # At no instant did four recorded spans overlap.
    spans = sorted(SPANS.values())
    for i, (start, _) in enumerate(spans):
        overlapping = sum(1 for s, e in spans[:i] if e > start)
        assert overlapping <= 2, (i, spans)


async def test_worker_concurrency__never_more_than_limit_running_here(dbos: DBOS) -> None:
    handles = [await Q_WCONC.enqueue(tq_tracked, ["wconc"], 0.15, f"w{i}") for i in range(8)]
    assert [await result(h) for h in handles] == [f"w{i}" for i in range(8)]
    assert PEAK["wconc"] == 2, PEAK
    assert RUNNING["wconc"] == 0


async def test_limiter__no_window_of_period_holds_more_than_limit_claims(
    dbos: DBOS, db_url: str
) -> None:
    began = time.monotonic()
    handles = [await Q_LIMIT.enqueue(tq_record, f"l{i}") for i in range(3 * LIMIT)]
    assert [await result(h) for h in handles] == [f"l{i}" for i in range(3 * LIMIT)]
    elapsed = time.monotonic() - began

    rows = await queue_rows(db_url, "tq_limit")
    assert set(rows) == {h.workflow_id for h in handles}
    claims = sorted(r["started_at_epoch_ms"] for r in rows.values())
    assert None not in claims
    period_ms = int(PERIOD * 1000)
    # In any window of `period` at most `limit` claims: claim j and claim j - limit are at
    # least a period apart.
    for j in range(LIMIT, len(claims)):
        assert claims[j] - claims[j - LIMIT] >= period_ms, claims
    assert claims[-1] - claims[0] >= 2 * period_ms, claims
    assert elapsed >= 2 * PERIOD
    # The bodies were held back too: each started after its own claim (so the spacing
    # of the claims above bounds the bodies; how much later varies with the load).
    for i, handle in enumerate(handles):
        claimed_ms = rows[handle.workflow_id]["started_at_epoch_ms"]
        assert STARTS[f"l{i}"] * 1000 >= claimed_ms - 1, (i, STARTS, claims)


# -- priority ---------------------------------------------------------------------------


async def test_priority__lower_first_fifo_among_equals_none_counts_as_zero(
    dbos: DBOS,
) -> None:
    blocker = await Q_PRIO.enqueue(tq_gated, "blocker")
    await wait_until(lambda: "blocker" in STARTS, "the blocker to run")
    plan: list[tuple[str, int | None]] = [
        ("a", 5),
        ("b", 1),
        ("c", None),
        ("d", 1),
        ("e", 0),
        ("f", 5),
        ("g", None),
    ]
    handles = {}
    for label, priority in plan:
        with SetEnqueueOptions(priority=priority):
            handles[label] = await Q_PRIO.enqueue(tq_record, label)
    for label, priority in plan:
        st = await status(handles[label].workflow_id)
        assert st.status == WorkflowStatusString.ENQUEUED, label
        assert st.priority == (priority or 0), label
    assert ORDER == ["blocker"]

    gate("blocker").set()
    assert await result(blocker) == "blocker"
    for label, handle in handles.items():
        assert await result(handle) == label
    assert ORDER == ["blocker", "c", "e", "g", "b", "d", "a", "f"]


async def test_priority__honoured_without_priority_enabled(dbos: DBOS) -> None:
    # As in DBOS Transact now, any queue takes priorities (priority_enabled is kept).
    with SetEnqueueOptions(priority=2):
        handle = await Q_BASIC.enqueue(tq_record, "prio-any-queue")
    assert await result(handle) == "prio-any-queue"
    assert (await status(handle.workflow_id)).priority == 2
    with SetEnqueueOptions(priority=0):  # the default priority is no priority
        handle = await Q_BASIC.enqueue(tq_record, "prio-zero")
    assert await result(handle) == "prio-zero"
    assert (await status(handle.workflow_id)).priority == 0


# -- deduplication ----------------------------------------------------------------------


async def test_dedup__second_active_enqueue_rejected_until_first_ends(dbos: DBOS) -> None:
    with SetEnqueueOptions(deduplication_id="d1", delay_seconds=0.4):
        first = await Q_DEDUP.enqueue(tq_gated, "dd-first")
    st = await status(first.workflow_id)
    assert st.status == WorkflowStatusString.ENQUEUED
    assert st.deduplication_id == "d1"

    # Rejected while the first is ENQUEUED; the rejected workflow is not stored.
    rejected_id = f"tq-rejected-{uuid.uuid4()}"
    with (
        SetEnqueueOptions(deduplication_id="d1"),
        SetWorkflowID(rejected_id),
        pytest.raises(DBOSQueueDeduplicatedError) as info,
    ):
        await Q_DEDUP.enqueue(tq_record, "dd-dup-enqueued")
    assert info.value.workflow_id == rejected_id
    assert "d1" in str(info.value) and "tq_dedup" in str(info.value)
    assert await DBOS.get_workflow_status(rejected_id) is None

    # The same ID on another queue is another ID.
    with SetEnqueueOptions(deduplication_id="d1"):
        other = await Q_DEDUP_OTHER.enqueue(tq_record, "dd-other")
    assert await result(other) == "dd-other"
    assert (await status(other.workflow_id)).deduplication_id == "d1"

    # Rejected while the first is PENDING.
    await wait_status(first.workflow_id, WorkflowStatusString.PENDING)
    with SetEnqueueOptions(deduplication_id="d1"), pytest.raises(DBOSQueueDeduplicatedError):
        await Q_DEDUP.enqueue(tq_record, "dd-dup-pending")

    gate("dd-first").set()
    assert await result(first) == "dd-first"

    # Free again once the first has ended.
    with SetEnqueueOptions(deduplication_id="d1"):
        again = await Q_DEDUP.enqueue(tq_record, "dd-again")
    assert await result(again) == "dd-again"
    assert (await status(again.workflow_id)).deduplication_id == "d1"
    assert CALLS["dd-dup-enqueued"] == 0 and CALLS["dd-dup-pending"] == 0
    names = {s.workflow_id for s in await DBOS.list_workflows(queue_name="tq_dedup")}
    assert names == {first.workflow_id, again.workflow_id}


# -- partitions -------------------------------------------------------------------------


async def test_partition__limits_per_key_keys_run_in_parallel(dbos: DBOS) -> None:
    handles = []
    for i in range(3):
        for key in ("p1", "p2"):
            with SetEnqueueOptions(queue_partition_key=key):
                handles.append(
                    await Q_PART.enqueue(tq_tracked, [f"part-{key}", "part-all"], 0.2, f"{key}-{i}")
                )
    st = await status(handles[1].workflow_id)
    assert st.queue_name == "tq_part"
    assert st.queue_partition_key == "p2"
    assert [await result(h) for h in handles] == [
        f"{key}-{i}" for i in range(3) for key in ("p1", "p2")
    ]
    assert PEAK["part-p1"] == 1, PEAK
    assert PEAK["part-p2"] == 1, PEAK
    assert PEAK["part-all"] == 2, PEAK  # the two keys ran side by side
    for key in ("p1", "p2"):
        spans = sorted(v for k, v in SPANS.items() if k.startswith(key))
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, (key, spans)  # one at a time within a key


async def test_partition__key_required_on_partitioned_and_refused_elsewhere(
    dbos: DBOS,
) -> None:
    with pytest.raises(ValueError, match="queue_partition_key"):
        await Q_PART.enqueue(tq_record, "no-key")
    with (
        SetEnqueueOptions(queue_partition_key="p1"),
        pytest.raises(ValueError, match="not partitioned"),
    ):
        await Q_BASIC.enqueue(tq_record, "key-on-plain")
    assert await DBOS.list_workflows() == []
    # The same calls the right way round work.
    with SetEnqueueOptions(queue_partition_key="p1"):
        ok = await Q_PART.enqueue(tq_record, "with-key")
    plain = await Q_BASIC.enqueue(tq_record, "plain")
    assert await result(ok) == "with-key"
    assert await result(plain) == "plain"


# -- delay ------------------------------------------------------------------------------


async def test_delay__not_started_before_delay(dbos: DBOS, db_url: str) -> None:
    enqueued_at = time.time()
    # Long enough for the prompt one to run first on a loaded machine.
    with SetEnqueueOptions(delay_seconds=2.0):
        delayed = await Q_BASIC.enqueue(tq_record, "delayed")
    prompt = await Q_BASIC.enqueue(tq_record, "prompt")
    assert await result(prompt) == "prompt"
    assert (await status(delayed.workflow_id)).status == WorkflowStatusString.ENQUEUED
    assert "delayed" not in STARTS

    assert await result(delayed) == "delayed"
    assert STARTS["delayed"] >= enqueued_at + 2.0 - 0.002
    assert ORDER == ["prompt", "delayed"]
    row = (await queue_rows(db_url, "tq_basic"))[delayed.workflow_id]
    assert row["delay_until_epoch_ms"] - row["created_at"] == 2000
    assert row["started_at_epoch_ms"] >= row["delay_until_epoch_ms"]


# -- children, IDs, cancellation, timeouts ----------------------------------------------


async def test_enqueue_in_workflow__child_id_parent_and_result(dbos: DBOS) -> None:
    parent_id = f"tq-parent-{uuid.uuid4()}"
    with SetWorkflowID(parent_id):
        parent = await DBOS.start_workflow(tq_parent, 10)
    assert await result(parent) == [f"{parent_id}-2", 20, f"{parent_id}-3", 22]
    for step_id, value in ((2, 20), (3, 22)):
        child = await status(f"{parent_id}-{step_id}")
        assert child.status == WorkflowStatusString.SUCCESS
        assert child.parent_workflow_id == parent_id
        assert child.queue_name == "tq_basic"
        assert child.output == value
    steps = await DBOS.list_workflow_steps(parent_id)
    assert [(s.function_id, s.function_name, s.child_workflow_id) for s in steps] == [
        (1, "tq_step_label", None),
        (2, "tq_double", f"{parent_id}-2"),
        (3, "tq_double", f"{parent_id}-3"),
    ]
    assert CALLS["tq_double"] == 2


async def test_enqueue_with_workflow_id__uses_it_and_runs_once(dbos: DBOS) -> None:
    wid = f"tq-fixed-{uuid.uuid4()}"
    with SetWorkflowID(wid), SetEnqueueOptions(delay_seconds=0.3):
        first = await Q_BASIC.enqueue(tq_record, "once")
    with SetWorkflowID(wid):
        second = await Q_BASIC.enqueue(tq_record, "once")  # still ENQUEUED
    assert first.workflow_id == second.workflow_id == wid
    assert await result(first) == "once"
    assert await result(second) == "once"
    with SetWorkflowID(wid):
        third = await Q_BASIC.enqueue(tq_record, "once")  # finished
    assert third.workflow_id == wid
    assert await result(third) == "once"
    with SetWorkflowID(wid), pytest.raises(DBOSConflictingWorkflowError):
        await Q_BASIC.enqueue(tq_double, 1)
    await asyncio.sleep(3 * POLL)
    assert CALLS["once"] == 1
    assert [s.workflow_id for s in await DBOS.list_workflows(queue_name="tq_basic")] == [wid]


async def test_cancel__enqueued_workflow_never_runs(dbos: DBOS) -> None:
    delay = 1.5  # time to see it ENQUEUED and cancel it before it is due
    with SetEnqueueOptions(delay_seconds=delay):
        handle = await Q_BASIC.enqueue(tq_record, "cancelled")
    assert (await status(handle.workflow_id)).status == WorkflowStatusString.ENQUEUED
    await DBOS.cancel_workflow(handle.workflow_id)
    assert (await status(handle.workflow_id)).status == WorkflowStatusString.CANCELLED
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await result(handle)
    await asyncio.sleep(delay + 3 * POLL)  # past the delay, several polls
    assert CALLS["cancelled"] == 0
    assert (await status(handle.workflow_id)).status == WorkflowStatusString.CANCELLED
    assert await DBOS.list_queued_workflows() == []


async def test_resume__cancelled_workflow_whose_dedup_id_was_taken_raises(dbos: DBOS) -> None:
    with SetEnqueueOptions(deduplication_id="tq-resume", delay_seconds=30):
        first = await Q_DEDUP.enqueue(tq_record, "first")
    await DBOS.cancel_workflow(first.workflow_id)
    # Cancelled, it no longer holds the ID: another workflow takes it.
    with SetEnqueueOptions(deduplication_id="tq-resume", delay_seconds=30):
        second = await Q_DEDUP.enqueue(tq_record, "second")
    with pytest.raises(DBOSQueueDeduplicatedError) as info:
        await DBOS.resume_workflow(first.workflow_id)
    assert info.value.workflow_id == first.workflow_id
    assert "tq-resume" in str(info.value) and "tq_dedup" in str(info.value)
    assert (await status(first.workflow_id)).status == WorkflowStatusString.CANCELLED
    assert (await status(second.workflow_id)).status == WorkflowStatusString.ENQUEUED
    assert CALLS["first"] == 0
    await DBOS.cancel_workflow(second.workflow_id)


async def test_timeout__counted_from_claim_not_from_enqueue(dbos: DBOS, db_url: str) -> None:
    # The quick one needs 0.05 s of its 1 s, leaving slack for a loaded machine.
    delay, timeout = 1.2, 1.0
    enqueued_at = time.time()
    with SetWorkflowTimeout(timeout), SetEnqueueOptions(delay_seconds=delay):
        quick = await Q_BASIC.enqueue(tq_timed, "quick", 0.05)
        stuck = await Q_BASIC.enqueue(tq_timed, "stuck", None)
    st = await status(stuck.workflow_id)
    assert st.status == WorkflowStatusString.ENQUEUED
    assert st.workflow_timeout_ms == 1000
    assert st.workflow_deadline_epoch_ms is None  # its clock has not started

    # The delay alone outlasts the timeout: counted from the enqueue, the quick one
    # would be cancelled before it ran.
    assert await result(quick) == "quick"
    assert (await status(quick.workflow_id)).status == WorkflowStatusString.SUCCESS

    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await result(stuck)
    ended_at = time.time()
    assert (await status(stuck.workflow_id)).status == WorkflowStatusString.CANCELLED
    row = (await queue_rows(db_url, "tq_basic"))[stuck.workflow_id]
    assert row["workflow_deadline_epoch_ms"] == row["started_at_epoch_ms"] + 1000
    assert ended_at * 1000 >= row["started_at_epoch_ms"] + 1000 - 2
    assert ended_at - enqueued_at >= delay + timeout - 0.02


@DBOS.workflow()
async def tq_timed_parent(child_timeout: float | None) -> str:
    with SetWorkflowTimeout(child_timeout), SetEnqueueOptions(delay_seconds=0.3):
        child = await Q_BASIC.enqueue(tq_timed, "child", 0.05)
    return str(await child)


async def test_timeout__enqueued_child_takes_the_earlier_of_parent_and_own_deadline(
    dbos: DBOS, db_url: str
) -> None:
    # Own timeout shorter than what is left of the parent's: claim time + own timeout.
    with SetWorkflowTimeout(30):
        short = await DBOS.start_workflow(tq_timed_parent, 5)
    assert await result(short) == "child"
    parent = await status(short.workflow_id)
    child_id = f"{short.workflow_id}-1"
    row = (await queue_rows(db_url, "tq_basic"))[child_id]
    assert row["workflow_deadline_epoch_ms"] == row["started_at_epoch_ms"] + 5000
    assert parent.workflow_deadline_epoch_ms is not None
    assert row["workflow_deadline_epoch_ms"] < parent.workflow_deadline_epoch_ms

    # No timeout of its own: the parent's deadline, inherited at enqueue, stays.
    with SetWorkflowTimeout(30):
        inherited = await DBOS.start_workflow(tq_timed_parent, None)
    assert await result(inherited) == "child"
    parent = await status(inherited.workflow_id)
    row = (await queue_rows(db_url, "tq_basic"))[f"{inherited.workflow_id}-1"]
    assert row["workflow_deadline_epoch_ms"] == parent.workflow_deadline_epoch_ms


# -- DBOSClient.enqueue -----------------------------------------------------------------


async def test_client_enqueue__runs_registered_name(dbos: DBOS, db_url: str) -> None:
    client = DBOSClient(db_url)
    try:
        handle = await client.enqueue(
            {"queue_name": "tq_basic", "workflow_name": "tq_client_sum"}, 2, 3, scale=10
        )
        assert await result(handle) == 50
        st = await client.get_workflow_status(handle.workflow_id)
        assert st is not None
        assert st.status == WorkflowStatusString.SUCCESS
        assert st.name == "tq_client_sum"
        assert st.queue_name == "tq_basic"
        # The DBOS process sees the same workflow.
        assert await result(await DBOS.retrieve_workflow(handle.workflow_id)) == 50

        wid = f"tq-client-{uuid.uuid4()}"
        options: Any = {
            "queue_name": "tq_prio",
            "workflow_name": "tq_client_sum",
            "workflow_id": wid,
            "priority": 7,
        }
        fixed = await client.enqueue(options, 1, 1)
        assert fixed.workflow_id == wid
        assert await result(fixed) == 2
        again = await client.enqueue(options, 1, 1)  # same ID, same name: the same one
        assert await result(again) == 2
        assert (await status(wid)).priority == 7
        assert CALLS["tq_client_sum"] == 2
    finally:
        await client.destroy()


async def test_client_enqueue__unknown_queue_raises_not_found(dbos: DBOS, db_url: str) -> None:
    async with DBOSClient(db_url) as client:
        with pytest.raises(DBOSQueueNotFoundError, match="tq_nowhere"):
            await client.enqueue({"queue_name": "tq_nowhere", "workflow_name": "tq_client_sum"})
    assert await DBOS.list_workflows() == []


async def test_client_enqueue__bad_options_raise(dbos: DBOS, db_url: str) -> None:
    bad: Any
    async with DBOSClient(db_url) as client:
        bad = {"queue_name": "tq_basic", "workflow_name": "tq_client_sum", "priorty": 1}
        with pytest.raises(TypeError, match="priorty"):
            await client.enqueue(bad, 1, 2)
        bad = {"queue_name": "tq_basic"}
        with pytest.raises(TypeError, match="workflow_name"):
            await client.enqueue(bad, 1, 2)
        bad = {"queue_name": "", "workflow_name": "tq_client_sum"}
        with pytest.raises(TypeError, match="queue_name"):
            await client.enqueue(bad, 1, 2)
        bad = {"queue_name": "tq_basic", "workflow_name": "tq_client_sum", "priority": -1}
        with pytest.raises(ValueError, match="priority"):
            await client.enqueue(bad, 1, 2)
        bad = {"queue_name": "tq_part", "workflow_name": "tq_client_sum"}
        with pytest.raises(ValueError, match="queue_partition_key"):
            await client.enqueue(bad, 1, 2)
    assert await DBOS.list_workflows() == []
    assert CALLS["tq_client_sum"] == 0


async def test_client_enqueue__checks_current_settings_of_a_redeclared_queue(
    dbos: DBOS, db_url: str
) -> None:
    rt = current_runtime()
    assert rt is not None
    async with DBOSClient(db_url) as client:
        plain: Any = {"queue_name": "tq_second", "workflow_name": "tq_client_sum"}
        assert await result(await client.enqueue(plain, 1, 1)) == 2  # settings now cached
        # Another process declares the queue again, partitioned.
        await rt.sysdb.register_queues([QueueInfo("tq_second", partition_queue=True)], 0)
        with pytest.raises(ValueError, match="partitioned"):
            await client.enqueue(plain, 2, 2)
        # ...and again without: the cached settings would refuse a plain enqueue.
        await rt.sysdb.register_queues([QueueInfo("tq_second")], 0)
        handle = await client.enqueue({**plain, "priority": 4}, 3, 3)
        assert (await status(handle.workflow_id)).priority == 4
        assert await result(handle) == 6
        with pytest.raises(ValueError, match="workflow_timeout"):
            await client.enqueue({**plain, "workflow_timeout": 0}, 3, 3)


async def test_client_enqueue__deduplication(dbos: DBOS, db_url: str) -> None:
    async with DBOSClient(db_url) as client:
        options: Any = {
            "queue_name": "tq_dedup",
            "workflow_name": "tq_client_sum",
            "deduplication_id": "cd",
            "delay_seconds": 0.3,
        }
        first = await client.enqueue(options, 1, 2)
        assert (await status(first.workflow_id)).deduplication_id == "cd"
        with pytest.raises(DBOSQueueDeduplicatedError):
            await client.enqueue(options, 3, 4)
        assert await result(first) == 3
        undelayed: Any = {**options, "delay_seconds": 0}
        later = await client.enqueue(undelayed, 5, 6)
        assert await result(later) == 11
    assert CALLS["tq_client_sum"] == 2


async def test_client_enqueue__unregistered_workflow_name_ends_error(
    dbos: DBOS, db_url: str
) -> None:
    async with DBOSClient(db_url) as client:
        handle = await client.enqueue(
            {"queue_name": "tq_basic", "workflow_name": "tq_nobody_has_this"}, 1
        )
        with pytest.raises(DBOSWorkflowFunctionNotFoundError, match="tq_nobody_has_this"):
            await result(handle)
        st = await client.get_workflow_status(handle.workflow_id)
        assert st is not None
        assert st.status == WorkflowStatusString.ERROR
        assert isinstance(st.error, DBOSWorkflowFunctionNotFoundError)
    # The worker goes on with the next workflow.
    assert await result(await Q_BASIC.enqueue(tq_double, 4)) == 8


# -- a queue declared after launch ---------------------------------------------------------


async def test_queue_declared_after_launch__runs_its_workflows(dbos: DBOS, db_url: str) -> None:
    try:
        late = Queue("tq_late", concurrency=2, polling_interval_sec=POLL)
        handle = await late.enqueue(tq_double, 6)
        assert await result(handle) == 12
        assert (await status(handle.workflow_id)).queue_name == "tq_late"
        # Its worker registered it in the database first, so a client can use it now.
        async with DBOSClient(db_url) as client:
            via_client = await client.enqueue(
                {"queue_name": "tq_late", "workflow_name": "tq_client_sum"}, 2, 2
            )
            assert await result(via_client) == 4
    finally:
        registry.queues.pop("tq_late", None)


# -- shutdown ----------------------------------------------------------------------------


async def test_destroy__queue_worker_stops_when_woken_as_it_is_cancelled(dbos: DBOS) -> None:
    """``DBOS.destroy()`` cancels each queue worker loop and awaits it. A loop woken in the
    same instant (a queued workflow of the queue ending here, a local enqueue, a NOTIFY)
    must stop all the same, or ``destroy()`` waits for it forever."""
    rt = current_runtime()
    assert rt is not None
    loop_task = next(t for t in asyncio.all_tasks() if t.get_name() == "dbos_async queue tq_basic")
    wake = notification_key("queue", "tq_basic", "")
    rt.notifier.notify(wake)  # what a queued workflow ending here does
    await asyncio.sleep(0.05)  # it polled and sits in its wait again
    assert not loop_task.done()
    rt.notifier.notify(wake)  # woken...
    loop_task.cancel()  # ...as destroy() cancels it
    try:
        done, _ = await asyncio.wait({loop_task}, timeout=1)
        assert done, "the queue worker loop swallowed its cancellation: destroy() would hang"
    finally:
        while not loop_task.done():  # don't leave the hang to the fixture's teardown
            loop_task.cancel()
            await asyncio.wait({loop_task}, timeout=1)


# -- validation (no database) ----------------------------------------------------------------

BAD_QUEUES: list[tuple[Any, dict[str, Any], str]] = [
    ("", {}, "name"),
    (None, {}, "name"),
    ("tq_invalid", {"concurrency": 0}, "concurrency"),
    ("tq_invalid", {"concurrency": -2}, "concurrency"),
    ("tq_invalid", {"concurrency": 1.5}, "concurrency"),
    ("tq_invalid", {"concurrency": True}, "concurrency"),
    ("tq_invalid", {"concurrency": "3"}, "concurrency"),
    ("tq_invalid", {"worker_concurrency": 0}, "worker_concurrency"),
    ("tq_invalid", {"worker_concurrency": False}, "worker_concurrency"),
    ("tq_invalid", {"worker_concurrency": 2.0}, "worker_concurrency"),
    ("tq_invalid", {"concurrency": 2, "worker_concurrency": 3}, "worker_concurrency"),
    ("tq_invalid", {"limiter": {"limit": 3}}, "limiter"),
    ("tq_invalid", {"limiter": {"period": 1.0}}, "limiter"),
    ("tq_invalid", {"limiter": {"limit": 3, "period": 1.0, "burst": 2}}, "limiter"),
    ("tq_invalid", {"limiter": [("limit", 3), ("period", 1.0)]}, "limiter"),
    ("tq_invalid", {"limiter": {"limit": 0, "period": 1.0}}, "limit"),
    ("tq_invalid", {"limiter": {"limit": 2.5, "period": 1.0}}, "limit"),
    ("tq_invalid", {"limiter": {"limit": 3, "period": 0}}, "period"),
    ("tq_invalid", {"limiter": {"limit": 3, "period": -1.0}}, "period"),
    ("tq_invalid", {"limiter": {"limit": 3, "period": math.inf}}, "period"),
    ("tq_invalid", {"limiter": {"limit": 3, "period": "1"}}, "period"),
    ("tq_invalid", {"priority_enabled": 1}, "priority_enabled"),
    ("tq_invalid", {"priority_enabled": "yes"}, "priority_enabled"),
    ("tq_invalid", {"partition_queue": 1}, "partition_queue"),
    ("tq_invalid", {"partition_queue": None}, "partition_queue"),
    ("tq_invalid", {"polling_interval_sec": 0}, "polling_interval_sec"),
    ("tq_invalid", {"polling_interval_sec": math.nan}, "polling_interval_sec"),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "field"),
    BAD_QUEUES,
    ids=[f"{i}-{case[2]}" for i, case in enumerate(BAD_QUEUES)],
)
def test_queue_validation__bad_input_raises_config_error_naming_field(
    name: Any, kwargs: dict[str, Any], field: str
) -> None:
    before = dict(registry.queues)
    with pytest.raises(DBOSConfigError) as info:
        Queue(name, **kwargs)
    assert field in str(info.value)
    assert registry.queues == before  # nothing declared


def test_queue_validation__good_settings_accepted() -> None:
    try:
        queue = Queue(
            "tq_valid",
            concurrency=4,
            limiter={"limit": 10, "period": 0.5},
            worker_concurrency=4,
            priority_enabled=True,
            partition_queue=True,
            polling_interval_sec=0.1,
        )
        assert registry.queues["tq_valid"] is queue
        assert queue.concurrency == 4 and queue.worker_concurrency == 4
        assert queue.limit == 10 and queue.period == 0.5
    finally:
        registry.queues.pop("tq_valid", None)


def test_queue_validation__redeclare_with_other_settings_raises() -> None:
    with pytest.raises(DBOSConfigError, match="tq_basic"):
        Queue("tq_basic", concurrency=5, polling_interval_sec=POLL)
    with pytest.raises(DBOSConfigError, match="tq_limit"):
        Queue("tq_limit", limiter={"limit": LIMIT, "period": 2 * PERIOD})
    with pytest.raises(DBOSConfigError, match="tq_prio"):
        Queue("tq_prio", worker_concurrency=1, polling_interval_sec=POLL)
    assert registry.queues["tq_basic"] is Q_BASIC
    assert registry.queues["tq_limit"] is Q_LIMIT
    # The same settings again replace the declaration silently.
    same = Queue("tq_conc", concurrency=3, polling_interval_sec=POLL)
    assert registry.queues["tq_conc"] is same


BAD_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"deduplication_id": ""}, "deduplication_id"),
    ({"deduplication_id": 5}, "deduplication_id"),
    ({"queue_partition_key": ""}, "queue_partition_key"),
    ({"queue_partition_key": b"p"}, "queue_partition_key"),
    ({"priority": -1}, "priority"),
    ({"priority": 2**31}, "priority"),
    ({"priority": 1.0}, "priority"),
    ({"priority": True}, "priority"),
    ({"priority": "1"}, "priority"),
    ({"delay_seconds": -0.5}, "delay_seconds"),
    ({"delay_seconds": math.inf}, "delay_seconds"),
    ({"delay_seconds": math.nan}, "delay_seconds"),
    ({"delay_seconds": True}, "delay_seconds"),
    ({"delay_seconds": "1"}, "delay_seconds"),
]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    BAD_OPTIONS,
    ids=[f"{i}-{case[1]}" for i, case in enumerate(BAD_OPTIONS)],
)
def test_enqueue_options_validation__bad_input_raises_value_error(
    kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        SetEnqueueOptions(**kwargs)


def test_enqueue_options_validation__bounds_accepted() -> None:
    opts = SetEnqueueOptions(
        deduplication_id="x", priority=2**31 - 1, queue_partition_key="k", delay_seconds=0
    )
    assert opts.priority == 2**31 - 1
    assert SetEnqueueOptions(priority=0).priority == 0


@pytest.mark.parametrize(
    "func",
    # (A @DBOS.step() is enqueued as a workflow of its own, as in DBOS Transact:
    # tests/test_bulk_and_misc.py.)
    [tq_plain_async, tq_plain_sync, lambda: None],
    ids=["async-def", "def", "lambda"],
)
async def test_enqueue_validation__non_workflow_raises_type_error(func: Any) -> None:
    with pytest.raises(TypeError, match="workflow"):
        await Q_BASIC.enqueue(func, 1)
