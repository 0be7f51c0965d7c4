"""Queues the DBOS way (issue 14), on both backends: queues registered at run time
(``DBOS.register_queue``, stored in the database and run by every launched process),
reading, listing and deleting them, changing their limits while they run (also from
``DBOSClient``), ``DBOS.enqueue_workflow`` and ``enqueue_workflow_with_options``,
``SetEnqueueOptions(app_version=...)``, priorities on any queue, and deduplication refused
on partitioned queues. The last test changes a queue's limits while two real worker
processes (tests/queue_app.py) run it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from dbos_async import (
    DBOS,
    DBOSClient,
    DBOSConfigError,
    DBOSException,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
    WorkflowHandle,
    WorkflowStatusString,
)
from dbos_async._registry import registry
from dbos_async._runtime import get_runtime
from dbos_async.sysdb import VersionRow

from .test_queue_processes import (
    Workers,
    max_overlap,
    opts,
    results,
    runs,
    shows_worker_stderr,
)

POLL = 0.1
TIMEOUT = 15.0

RUNNING: Counter[str] = Counter()
PEAK: Counter[str] = Counter()
ORDER: list[str] = []
GATES: dict[str, asyncio.Event] = {}


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    for store in (RUNNING, PEAK, ORDER, GATES):
        store.clear()
    yield
    for name in ("tqd_code", "tqd_part_code", "tqd_code_mix"):
        registry.queues.pop(name, None)


def gate(tag: str) -> asyncio.Event:
    return GATES.setdefault(tag, asyncio.Event())


@DBOS.workflow(name="tqd_echo")
async def tqd_echo(x: Any) -> Any:
    return x


@DBOS.workflow(name="tqd_gated")
async def tqd_gated(queue: str, tag: str) -> str:
    RUNNING[queue] += 1
    PEAK[queue] = max(PEAK[queue], RUNNING[queue])
    ORDER.append(tag)
    try:
        await gate(tag).wait()
    finally:
        RUNNING[queue] -= 1
    return tag


@DBOS.workflow(name="tqd_gated_in")
async def tqd_gated_in(scopes: list[str], tag: str) -> str:
    """Counts itself running in each of ``scopes`` (a queue, a partition) until its gate
    opens."""
    for scope in scopes:
        RUNNING[scope] += 1
        PEAK[scope] = max(PEAK[scope], RUNNING[scope])
    try:
        await gate(tag).wait()
    finally:
        for scope in scopes:
            RUNNING[scope] -= 1
    return tag


async def enqueue_in(queue: str, key: str, tag: str) -> WorkflowHandle[Any]:
    with SetEnqueueOptions(queue_partition_key=key):
        return await DBOS.enqueue_workflow(queue, tqd_gated_in, [queue, f"{queue}/{key}"], tag)


@DBOS.workflow(name="tqd_parent")
async def tqd_parent(queue: str) -> Any:
    handle = await DBOS.enqueue_workflow_with_options(
        {"queue_name": queue, "workflow_name": "tqd_echo"}, "from-parent"
    )
    return [handle.workflow_id, await handle.get_result()]


async def result(handle: WorkflowHandle[Any]) -> Any:
    async with asyncio.timeout(TIMEOUT):
        return await handle.get_result()


async def eventually(what: str, check: Any) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.02)


async def status_of(workflow_id: str) -> str:
    st = await DBOS.get_workflow_status(workflow_id)
    assert st is not None
    return st.status


def settings(q: Queue) -> dict[str, Any]:
    return {
        "global_concurrency": q.global_concurrency,
        "worker_concurrency": q.worker_concurrency,
        "limiter": q.limiter,
        "partition_concurrency": q.partition_concurrency,
        "partition_worker_concurrency": q.partition_worker_concurrency,
        "partition_limiter": q.partition_limiter,
        "partition_queue": q.partition_queue,
        "priority_enabled": q.priority_enabled,
        "polling_interval_sec": q.polling_interval_sec,
        "database_backed_queue": q.database_backed_queue,
    }


# -- registering, reading, listing -----------------------------------------------------


async def test_register_queue__runs_workflows_and_is_not_a_code_queue(dbos: DBOS) -> None:
    queue = await DBOS.register_queue("tqd_basic", polling_interval_sec=POLL)
    assert queue.name == "tqd_basic" and queue.database_backed_queue
    assert "tqd_basic" not in registry.queues
    wfid = f"tqd-{uuid.uuid4()}"
    with SetWorkflowID(wfid):
        handle = await DBOS.enqueue_workflow("tqd_basic", tqd_echo, "abc")
    assert handle.workflow_id == wfid
    assert await result(handle) == "abc"
    st = await handle.get_status()
    assert st.queue_name == "tqd_basic"
    # Through the returned Queue, as through any queue.
    assert await result(await queue.enqueue(tqd_echo, 7)) == 7
    assert DBOS.enqueue_workflow_async is DBOS.enqueue_workflow


async def test_register_queue__before_launch_is_stored_at_launch(db_url: str) -> None:
    await DBOS.destroy()
    DBOS({"database_url": db_url, "application_version": "test"})
    try:
        queue = await DBOS.register_queue(
            "tqd_early", worker_concurrency=2, polling_interval_sec=POLL
        )
        assert queue.database_backed_queue and queue.worker_concurrency == 2
        await DBOS.launch()
        stored = await DBOS.retrieve_queue("tqd_early")
        assert stored is not None and stored.worker_concurrency == 2
        assert await result(await DBOS.enqueue_workflow("tqd_early", tqd_echo, 1)) == 1
    finally:
        await DBOS.destroy()


async def test_queue_crud__retrieve_list_and_on_conflict(dbos: DBOS) -> None:
    assert await DBOS.retrieve_queue("tqd_crud") is None
    assert await DBOS.list_queues() == []
    registered = await DBOS.register_queue(
        "tqd_crud",
        global_concurrency=10,
        limiter={"limit": 5, "period": 1.5},
        worker_concurrency=2,
        priority_enabled=True,
        polling_interval_sec=2.5,
    )
    expected = {
        "global_concurrency": 10,
        "worker_concurrency": 2,
        "limiter": {"limit": 5, "period": 1.5},
        "partition_concurrency": None,
        "partition_worker_concurrency": None,
        "partition_limiter": None,
        "partition_queue": False,
        "priority_enabled": True,
        "polling_interval_sec": 2.5,
        "database_backed_queue": True,
    }
    retrieved = await DBOS.retrieve_queue_async("tqd_crud")
    listed = await DBOS.list_queues_async()
    assert [q.name for q in listed] == ["tqd_crud"]
    assert retrieved is not None
    for q in (registered, retrieved, listed[0]):
        assert settings(q) == expected
    # Queues declared in code are neither listed nor retrieved.
    Queue("tqd_code")
    assert await DBOS.retrieve_queue("tqd_code") is None

    await DBOS.register_queue("tqd_crud", concurrency=99, on_conflict="never_update")
    kept = await DBOS.retrieve_queue("tqd_crud")
    assert kept is not None and kept.concurrency == 10
    await DBOS.register_queue("tqd_crud", concurrency=20, on_conflict="always_update")
    replaced = await DBOS.retrieve_queue("tqd_crud")
    assert replaced is not None
    assert (replaced.concurrency, replaced.worker_concurrency, replaced.limiter) == (20, None, None)
    assert (replaced.priority_enabled, replaced.polling_interval_sec) == (False, 1.0)
    # The default: replaced if this process runs the newest application version...
    await DBOS.register_queue("tqd_crud", concurrency=30)
    newest = await DBOS.retrieve_queue("tqd_crud")
    assert newest is not None and newest.concurrency == 30

    # ...and not once another version is the latest (as a newer build's launch makes it).
    rt = get_runtime()
    now = int(time.time() * 1000)
    await rt.sysdb.register_version(VersionRow("v-newer-id", "newer", now, now, None))
    await DBOS.set_latest_application_version("newer")
    stays = await DBOS.register_queue("tqd_crud", concurrency=999)
    assert stays.concurrency == 30
    with pytest.raises(ValueError, match="on_conflict"):
        await DBOS.register_queue("tqd_crud", on_conflict="sometimes")  # type: ignore[arg-type]


async def test_register_queue__partition_limits(dbos: DBOS) -> None:
    q = await DBOS.register_queue(
        "tqd_parts",
        partition_concurrency=4,
        partition_worker_concurrency=2,
        partition_limiter={"limit": 3, "period": 1.0},
    )
    assert settings(q) | {"polling_interval_sec": 0} == {
        "global_concurrency": None,
        "worker_concurrency": None,  # (no queue-wide limits were given)
        "limiter": None,
        "partition_concurrency": 4,
        "partition_worker_concurrency": 2,
        "partition_limiter": {"limit": 3, "period": 1.0},
        "partition_queue": True,
        "priority_enabled": False,
        "polling_interval_sec": 0,
        "database_backed_queue": True,
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"concurrency": 1, "global_concurrency": 1}, "only one of them"),
        ({"partition_queue": True, "partition_concurrency": 1}, "only one of them"),
        ({"global_concurrency": 5, "partition_queue": True}, "global_concurrency"),
        ({"global_concurrency": 2, "partition_concurrency": 3}, "global_concurrency must be"),
        ({"worker_concurrency": 1, "partition_worker_concurrency": 2}, "worker_concurrency must"),
        ({"global_concurrency": 1, "partition_worker_concurrency": 2}, "global_concurrency must"),
        ({"partition_concurrency": 1, "partition_worker_concurrency": 2}, "greater than"),
        ({"partition_concurrency": 0}, "at least 1"),
        ({"partition_limiter": {"limit": 1}}, "partition_limiter"),
        ({"worker_concurrency": 3, "concurrency": 2}, "worker_concurrency"),
        ({"polling_interval_sec": 0}, "polling_interval_sec"),
        ({"limiter": {"limit": 0, "period": 1}}, "limiter"),
    ],
)
async def test_register_queue__refuses_contradictory_settings(
    dbos: DBOS, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await DBOS.register_queue("tqd_bad", **kwargs)
    assert await DBOS.retrieve_queue("tqd_bad") is None


# -- changing a queue at run time ------------------------------------------------------


async def test_queue_setters__write_the_database_checked(dbos: DBOS) -> None:
    queue = await DBOS.register_queue("tqd_dyn", concurrency=4, worker_concurrency=2)
    await queue.set_global_concurrency(8)
    await queue.set_worker_concurrency_async(3)
    await queue.set_limiter({"limit": 7, "period": 2.0})
    await queue.set_priority_enabled(True)
    await queue.set_polling_interval_sec(0.5)
    fresh = await DBOS.retrieve_queue("tqd_dyn")
    assert fresh is not None
    for q in (queue, fresh):
        assert await q.get_global_concurrency_async() == 8
        assert await q.get_worker_concurrency_async() == 3
        assert await q.get_limiter_async() == {"limit": 7, "period": 2.0}
        assert await q.get_priority_enabled_async() is True
        assert await q.get_polling_interval_sec_async() == 0.5
    with pytest.raises(ValueError, match="worker_concurrency"):
        await queue.set_worker_concurrency(100)
    with pytest.raises(ValueError, match="polling_interval_sec"):
        await queue.set_polling_interval_sec(0.0)
    with pytest.raises(ValueError, match="limiter"):
        await queue.set_limiter({"limit": 1})
    # Per-partition limits combine with queue-wide ones, never above them.
    with pytest.raises(ValueError, match="global_concurrency must be"):
        await queue.set_partition_concurrency(9)
    await queue.set_partition_concurrency(2)
    assert await queue.get_partition_queue_async() is True
    assert await queue.get_global_concurrency_async() == 8
    await queue.set_partition_concurrency(None)
    assert await queue.get_partition_queue_async() is False
    await queue.set_limiter(None)
    assert await queue.get_limiter_async() is None

    # A stale object checks against the database, not its cached values.
    one = await DBOS.retrieve_queue("tqd_dyn")
    two = await DBOS.retrieve_queue("tqd_dyn")
    assert one is not None and two is not None
    await one.set_concurrency(10)
    await one.set_worker_concurrency(5)
    with pytest.raises(ValueError, match="worker_concurrency"):
        await two.set_concurrency(2)
    assert two.concurrency == 8  # (the refused change left its cache as it was)
    await two.set_concurrency(6)
    assert (await DBOS.retrieve_queue("tqd_dyn")).worker_concurrency == 5  # type: ignore[union-attr]

    # A queue declared in code takes its settings from the code.
    code = Queue("tqd_code", concurrency=2)
    with pytest.raises(DBOSException, match="register_queue"):
        await code.set_concurrency(5)
    assert await code.get_concurrency_async() == 2

    # A deleted queue cannot be changed.
    await DBOS.delete_queue("tqd_dyn")
    with pytest.raises(DBOSException, match="not registered"):
        await queue.set_concurrency(1)


async def test_queue_setters__partition_limits_partition_and_unpartition(dbos: DBOS) -> None:
    queue = await DBOS.register_queue("tqd_pdyn")
    await queue.set_partition_concurrency(6)
    await queue.set_partition_worker_concurrency(2)
    await queue.set_partition_limiter({"limit": 4, "period": 3.0})
    fresh = await DBOS.retrieve_queue("tqd_pdyn")
    assert fresh is not None
    assert await fresh.get_partition_concurrency_async() == 6
    assert await fresh.get_partition_worker_concurrency_async() == 2
    assert await fresh.get_partition_limiter_async() == {"limit": 4, "period": 3.0}
    assert await fresh.get_partition_queue_async() is True
    assert await fresh.get_global_concurrency_async() is None
    with pytest.raises(ValueError, match="greater than or equal"):
        await queue.set_partition_concurrency(1)
    with pytest.raises(ValueError, match="partition_worker_concurrency"):
        await queue.set_partition_worker_concurrency(100)
    with pytest.raises(ValueError, match="at least 1"):
        await queue.set_partition_concurrency(0)
    # Queue-wide limits combine with them, at least as large.
    with pytest.raises(ValueError, match="partition_concurrency"):
        await queue.set_global_concurrency(5)
    with pytest.raises(ValueError, match="partition_worker_concurrency"):
        await queue.set_worker_concurrency(1)
    await queue.set_global_concurrency(10)
    await queue.set_worker_concurrency(2)
    assert await queue.get_global_concurrency_async() == 10
    assert await queue.get_worker_concurrency_async() == 2
    assert await queue.get_partition_concurrency_async() == 6
    await queue.set_global_concurrency(None)
    await queue.set_worker_concurrency(None)
    await queue.set_partition_concurrency(None)
    await queue.set_partition_limiter(None)
    assert await queue.get_partition_queue_async() is True
    await queue.set_partition_worker_concurrency(None)
    assert await queue.get_partition_queue_async() is False


async def test_queue_crud__both_kinds_of_limits_as_dbos_transact(dbos: DBOS) -> None:
    """DBOS Transact's test_queue_crud_async: a queue with queue-wide and per-partition
    limits, read back and changed through the getters and setters."""
    registered = await DBOS.register_queue_async(
        "tqd_crud_both",
        global_concurrency=10,
        limiter={"limit": 5, "period": 1.5},
        worker_concurrency=2,
        partition_concurrency=4,
        partition_worker_concurrency=2,
        partition_limiter={"limit": 3, "period": 1.0},
        priority_enabled=True,
        polling_interval_sec=2.5,
    )
    assert registered.database_backed_queue is True
    retrieved = await DBOS.retrieve_queue_async("tqd_crud_both")
    listed = await DBOS.list_queues_async()
    assert [q.name for q in listed] == ["tqd_crud_both"]
    for q in (retrieved, listed[0]):
        assert q is not None
        assert await q.get_global_concurrency_async() == 10
        assert await q.get_worker_concurrency_async() == 2
        assert await q.get_limiter_async() == {"limit": 5, "period": 1.5}
        assert await q.get_partition_concurrency_async() == 4
        assert await q.get_partition_worker_concurrency_async() == 2
        assert await q.get_partition_limiter_async() == {"limit": 3, "period": 1.0}
        assert await q.get_partition_queue_async() is True
        assert await q.get_priority_enabled_async() is True
        assert await q.get_polling_interval_sec_async() == 2.5

    assert retrieved is not None
    await retrieved.set_global_concurrency_async(8)
    await retrieved.set_worker_concurrency_async(3)
    await retrieved.set_limiter_async({"limit": 7, "period": 2.0})
    await retrieved.set_priority_enabled_async(True)
    await retrieved.set_partition_concurrency_async(6)
    await retrieved.set_partition_worker_concurrency_async(2)
    await retrieved.set_partition_limiter_async({"limit": 4, "period": 3.0})
    await retrieved.set_polling_interval_sec_async(0.5)
    fresh = await DBOS.retrieve_queue_async("tqd_crud_both")
    assert fresh is not None
    assert await fresh.get_global_concurrency_async() == 8
    assert await fresh.get_worker_concurrency_async() == 3
    assert await fresh.get_limiter_async() == {"limit": 7, "period": 2.0}
    assert await fresh.get_partition_concurrency_async() == 6
    assert await fresh.get_partition_worker_concurrency_async() == 2
    assert await fresh.get_partition_limiter_async() == {"limit": 4, "period": 3.0}
    assert await fresh.get_partition_queue_async() is True
    assert await fresh.get_polling_interval_sec_async() == 0.5
    with pytest.raises(ValueError):
        await retrieved.set_worker_concurrency_async(100)
    with pytest.raises(ValueError):
        await retrieved.set_polling_interval_sec_async(0.0)
    await retrieved.set_limiter_async(None)
    cleared = await DBOS.retrieve_queue_async("tqd_crud_both")
    assert cleared is not None and await cleared.get_limiter_async() is None
    # Clearing the queue-wide limits leaves it partitioned by its partition_* ones.
    await cleared.set_global_concurrency(None)
    assert await cleared.get_partition_queue_async() is True


async def test_partition_queue__the_older_form_applies_every_limit_per_partition(
    dbos: DBOS,
) -> None:
    legacy = await DBOS.register_queue(
        "tqd_legacy", concurrency=2, worker_concurrency=1, partition_queue=True
    )
    assert settings(legacy) | {"polling_interval_sec": 0} == {
        "global_concurrency": None,
        "worker_concurrency": 1,  # (the attribute as stored: per partition here)
        "limiter": None,
        "partition_concurrency": 2,
        "partition_worker_concurrency": 1,
        "partition_limiter": None,
        "partition_queue": True,
        "priority_enabled": False,
        "polling_interval_sec": 0,
        "database_backed_queue": True,
    }
    assert await legacy.get_worker_concurrency_async() is None  # (as DBOS Transact's)
    assert await legacy.get_partition_worker_concurrency_async() == 1
    for setter in (legacy.set_global_concurrency, legacy.set_partition_concurrency):
        with pytest.raises(DBOSException, match="partition_queue"):
            await setter(3)
    # A queue partitioned by its partition_* limits is not switched by the older flag.
    mixed = await DBOS.register_queue("tqd_pmix", partition_concurrency=1, global_concurrency=2)
    with pytest.raises(DBOSException, match="partition_\\* limits"):
        await mixed.set_partition_queue(False)
    code = Queue("tqd_code_mix", partition_concurrency=1, global_concurrency=2)
    assert (code.global_concurrency, code.partition_concurrency) == (2, 1)
    assert code.partition_queue is True and code.concurrency == 2
    with pytest.raises(DBOSConfigError, match="global_concurrency must be"):
        Queue("tqd_code_bad", partition_concurrency=3, global_concurrency=2)


async def test_combined_limits__global_and_partition_concurrency_each_hold(dbos: DBOS) -> None:
    """global_concurrency=3 over three partitions of partition_concurrency=2: three run in
    all, never more than two of a partition; then one partition alone runs two."""
    await DBOS.register_queue(
        "tqd_mix", global_concurrency=3, partition_concurrency=2, polling_interval_sec=POLL
    )
    handles = [await enqueue_in("tqd_mix", k, f"{k}{i}") for k in "abc" for i in range(3)]
    await eventually("three run", lambda: RUNNING["tqd_mix"] == 3)
    await asyncio.sleep(0.5)
    assert PEAK["tqd_mix"] == 3
    assert all(PEAK[f"tqd_mix/{k}"] <= 2 for k in "abc")
    for k in "bc":
        for i in range(3):
            gate(f"{k}{i}").set()
    # Only partition a is left: its own limit binds now, below the queue's.
    await eventually("two of a run", lambda: RUNNING["tqd_mix/a"] == 2)
    await asyncio.sleep(0.5)
    assert PEAK["tqd_mix/a"] == 2 and RUNNING["tqd_mix"] == 2
    for i in range(3):
        gate(f"a{i}").set()
    assert sorted([await result(h) for h in handles]) == sorted(
        f"{k}{i}" for k in "abc" for i in range(3)
    )
    assert PEAK["tqd_mix"] == 3 and all(PEAK[f"tqd_mix/{k}"] <= 2 for k in "abc")


async def test_combined_limits__worker_and_partition_worker_concurrency_each_hold(
    dbos: DBOS,
) -> None:
    """A queue declared in code with worker_concurrency=2 and partition_worker_concurrency=1:
    two run in this process over three partitions, one per partition."""
    queue = Queue(
        "tqd_code_mix",
        worker_concurrency=2,
        partition_worker_concurrency=1,
        polling_interval_sec=POLL,
    )
    assert (queue.worker_concurrency, queue.partition_worker_concurrency) == (2, 1)
    handles = [await enqueue_in("tqd_code_mix", k, f"{k}{i}") for k in "abc" for i in range(2)]
    await eventually("two run", lambda: RUNNING["tqd_code_mix"] == 2)
    await asyncio.sleep(0.5)
    assert PEAK["tqd_code_mix"] == 2
    running = sorted(k for k in "abc" if PEAK[f"tqd_code_mix/{k}"] == 1)
    assert len(running) == 2 and all(PEAK[f"tqd_code_mix/{k}"] <= 1 for k in "abc")
    (idle,) = set("abc") - set(running)
    for i in range(2):
        gate(f"{running[0]}{i}").set()
    await eventually("the third partition runs", lambda: RUNNING[f"tqd_code_mix/{idle}"] == 1)
    for k in "abc":
        for i in range(2):
            gate(f"{k}{i}").set()
    assert len([await result(h) for h in handles]) == 6
    assert PEAK["tqd_code_mix"] == 2
    assert all(PEAK[f"tqd_code_mix/{k}"] == 1 for k in "abc")


async def test_combined_limits__queue_and_partition_limiters_each_hold(dbos: DBOS) -> None:
    """limiter 3 per 60 s over the queue, partition_limiter 1 per 60 s: of two workflows
    in each of four partitions, three start, each of another partition."""
    await DBOS.register_queue(
        "tqd_rate",
        limiter={"limit": 3, "period": 60},
        partition_limiter={"limit": 1, "period": 60},
        polling_interval_sec=POLL,
    )
    handles = []
    for k in "abcd":
        for i in range(2):
            with SetEnqueueOptions(queue_partition_key=k):
                handles.append(await DBOS.enqueue_workflow("tqd_rate", tqd_echo, f"{k}{i}"))
    done: list[str] = []

    async def started() -> list[str]:
        out = []
        for h in handles:
            st = await h.get_status()
            if st.status != WorkflowStatusString.ENQUEUED.value:
                out.append(h.workflow_id)
        return out

    deadline = time.monotonic() + TIMEOUT
    while len(done := await started()) < 3:
        assert time.monotonic() < deadline, "three did not start"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.6)
    done = await started()
    assert len(done) == 3
    keys = [(await DBOS.get_workflow_status(w)).queue_partition_key for w in done]  # type: ignore[union-attr]
    assert len(set(keys)) == 3, f"two of one partition started: {keys}"


async def test_limit_change__applies_to_the_running_worker(dbos: DBOS) -> None:
    queue = await DBOS.register_queue("tqd_live", worker_concurrency=1, polling_interval_sec=POLL)
    handles = [
        await DBOS.enqueue_workflow("tqd_live", tqd_gated, "tqd_live", f"t{i}") for i in range(5)
    ]
    await eventually("one runs", lambda: RUNNING["tqd_live"] == 1)
    await asyncio.sleep(0.5)
    assert PEAK["tqd_live"] == 1
    await queue.set_worker_concurrency(3)
    await eventually("three run", lambda: RUNNING["tqd_live"] == 3)
    await asyncio.sleep(0.3)
    assert PEAK["tqd_live"] == 3
    for i in range(5):
        gate(f"t{i}").set()
    assert [await result(h) for h in handles] == [f"t{i}" for i in range(5)]


async def test_delete_queue__stops_its_worker_and_registering_again_resumes(dbos: DBOS) -> None:
    await DBOS.register_queue("tqd_del", polling_interval_sec=POLL)
    assert await result(await DBOS.enqueue_workflow("tqd_del", tqd_echo, 1)) == 1
    await DBOS.delete_queue_async("tqd_del")
    await DBOS.delete_queue("tqd_del")  # (nothing to delete: no error)
    assert await DBOS.retrieve_queue("tqd_del") is None
    handle = await DBOS.enqueue_workflow("tqd_del", tqd_echo, 2)
    await asyncio.sleep(0.6)
    assert await status_of(handle.workflow_id) == WorkflowStatusString.ENQUEUED.value
    await DBOS.register_queue("tqd_del", polling_interval_sec=POLL)
    assert await result(handle) == 2


async def test_enqueue_workflow__on_a_queue_not_registered_yet_waits_for_it(dbos: DBOS) -> None:
    handle = await DBOS.enqueue_workflow("tqd_later", tqd_echo, 7)
    await asyncio.sleep(0.6)
    assert await status_of(handle.workflow_id) == WorkflowStatusString.ENQUEUED.value
    await DBOS.register_queue("tqd_later", polling_interval_sec=POLL)
    assert await result(handle) == 7


async def test_enqueue_workflow__on_a_code_queue_checks_its_settings(dbos: DBOS) -> None:
    Queue("tqd_code", polling_interval_sec=POLL)
    with SetEnqueueOptions(queue_partition_key="k"), pytest.raises(ValueError, match="partition"):
        await DBOS.enqueue_workflow("tqd_code", tqd_echo, 1)
    assert await result(await DBOS.enqueue_workflow("tqd_code", tqd_echo, 2)) == 2
    with pytest.raises(TypeError, match="workflow"):
        DBOS.enqueue_workflow("tqd_code", result, 1)  # type: ignore[arg-type]


# -- enqueue by options --------------------------------------------------------------


async def test_enqueue_workflow_with_options__by_name_and_as_a_child(dbos: DBOS) -> None:
    await DBOS.register_queue("tqd_opts", polling_interval_sec=POLL)
    handle = await DBOS.enqueue_workflow_with_options(
        {
            "queue_name": "tqd_opts",
            "workflow_name": "tqd_echo",
            "workflow_id": "tqd-by-options",
            "priority": 3,
            "workflow_timeout": 30,
        },
        "x",
    )
    assert handle.workflow_id == "tqd-by-options"
    assert await result(handle) == "x"
    st = await handle.get_status()
    assert (st.queue_name, st.priority, st.app_version) == ("tqd_opts", 3, "test")
    with pytest.raises(TypeError, match="priorty"):
        await DBOS.enqueue_workflow_with_options(
            {"queue_name": "tqd_opts", "workflow_name": "tqd_echo", "priorty": 1}  # type: ignore[typeddict-unknown-key]
        )

    parent = await DBOS.start_workflow(tqd_parent, "tqd_opts")
    child_id, value = await result(parent)
    assert value == "from-parent"
    assert child_id == f"{parent.workflow_id}-1"
    steps = await DBOS.list_workflow_steps(parent.workflow_id)
    assert (steps[0].function_name, steps[0].child_workflow_id) == ("tqd_echo", child_id)


# -- enqueue options -----------------------------------------------------------------


async def test_app_version__only_processes_of_that_version_run_it(dbos: DBOS) -> None:
    await DBOS.register_queue("tqd_ver", polling_interval_sec=POLL)
    with SetEnqueueOptions(app_version="other"):
        parked = await DBOS.enqueue_workflow("tqd_ver", tqd_echo, "parked")
    with SetEnqueueOptions(app_version="test"):
        runs_here = await DBOS.enqueue_workflow("tqd_ver", tqd_echo, "here")
    assert await result(runs_here) == "here"
    await asyncio.sleep(0.5)
    st = await parked.get_status()
    assert (st.status, st.app_version) == (WorkflowStatusString.ENQUEUED.value, "other")
    with pytest.raises(ValueError, match="app_version"):
        SetEnqueueOptions(app_version="")


async def test_priority__honoured_on_a_queue_without_priority_enabled(dbos: DBOS) -> None:
    await DBOS.register_queue("tqd_prio", worker_concurrency=1, polling_interval_sec=POLL)
    blocker = await DBOS.enqueue_workflow("tqd_prio", tqd_gated, "tqd_prio", "blocker")
    await eventually("the blocker runs", lambda: ORDER == ["blocker"])
    handles = []
    for tag, priority in (("c", 3), ("a", 1), ("b", 2)):
        with SetEnqueueOptions(priority=priority):
            handles.append(await DBOS.enqueue_workflow("tqd_prio", tqd_gated, "tqd_prio", tag))
        gate(tag).set()
    gate("blocker").set()
    await result(blocker)
    for handle in handles:
        await result(handle)
    assert ORDER == ["blocker", "a", "b", "c"]


async def test_deduplication__refused_on_partitioned_queues(dbos: DBOS, db_url: str) -> None:
    part = Queue("tqd_part_code", concurrency=1, partition_queue=True, polling_interval_sec=POLL)
    await DBOS.register_queue("tqd_part_db", partition_concurrency=1)
    both = SetEnqueueOptions(deduplication_id="d", queue_partition_key="k")
    with both, pytest.raises(ValueError, match="eduplication is not supported"):
        await part.enqueue(tqd_echo, 1)
    with both, pytest.raises(ValueError, match="eduplication is not supported"):
        await DBOS.enqueue_workflow("tqd_part_db", tqd_echo, 1)
    with both, pytest.raises(ValueError, match="eduplication is not supported"):
        await DBOS.enqueue_workflow("tqd_not_registered", tqd_echo, 1)
    async with DBOSClient(db_url) as client:
        with pytest.raises(ValueError, match="eduplication is not supported"):
            await client.enqueue(
                {
                    "queue_name": "tqd_part_db",
                    "workflow_name": "tqd_echo",
                    "deduplication_id": "d",
                    "queue_partition_key": "k",
                },
                1,
            )
    assert await DBOS.list_workflows() == []


# -- the client ------------------------------------------------------------------------


async def test_client__manages_queues_and_the_processes_follow(dbos: DBOS, db_url: str) -> None:
    async with DBOSClient(db_url) as client:
        assert await client.retrieve_queue("tqd_client") is None
        assert await client.list_queues() == []
        queue = await client.register_queue(
            "tqd_client", global_concurrency=4, worker_concurrency=2, polling_interval_sec=2.5
        )
        assert queue.database_backed_queue
        retrieved = await client.retrieve_queue_async("tqd_client")
        assert retrieved is not None and settings(retrieved) == settings(queue)
        assert [q.name for q in await client.list_queues_async()] == ["tqd_client"]
        await retrieved.set_concurrency(8)
        fresh = await DBOS.retrieve_queue("tqd_client")
        assert fresh is not None and fresh.concurrency == 8
        with pytest.raises(DBOSException, match=r"DBOSClient\.enqueue"):
            await retrieved.enqueue(tqd_echo, 1)
        # The launched process runs the client's queue, and follows its changes.
        await retrieved.set_polling_interval_sec(POLL)
        handle = await DBOS.enqueue_workflow("tqd_client", tqd_echo, 42)
        assert await result(handle) == 42
        by_client = await client.enqueue(
            {"queue_name": "tqd_client", "workflow_name": "tqd_echo"}, 5
        )
        assert await result(by_client) == 5
        with pytest.raises(DBOSException, match="application version"):
            await client.register_queue("tqd_client", on_conflict="update_if_latest_version")
        await client.register_queue("tqd_client", concurrency=99)  # always_update
        overwritten = await DBOS.retrieve_queue("tqd_client")
        assert overwritten is not None and overwritten.concurrency == 99
        await client.delete_queue_async("tqd_client")
        assert await client.retrieve_queue("tqd_client") is None
        await client.delete_queue("tqd_client")


# -- across processes ------------------------------------------------------------------


@pytest.fixture
def workers(db_url: str, tmp_path: Any) -> Iterator[Workers]:
    group = Workers(db_url, tmp_path)
    try:
        yield group
    finally:
        group.close()


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[DBOSClient]:
    c = DBOSClient(db_url)
    try:
        yield c
    finally:
        await c.destroy()


@pytest.mark.crash
@shows_worker_stderr
async def test_processes__every_process_runs_a_registered_queue_and_follows_its_changes(
    db_url: str, workers: Workers, client: DBOSClient
) -> None:
    # The workers declare no queue of their own that matters here: the registered queue
    # reaches them through the database.
    workers.start("w1", "w2", queues=["qp_free"])
    queue = await client.register_queue("qp_dyn", worker_concurrency=1, polling_interval_sec=POLL)
    first = [await client.enqueue(opts("qp_dyn"), f"a{i}", 0.4) for i in range(6)]
    assert await results(first, workers) == [f"a{i}" for i in range(6)]
    done = runs(workers.events(), [h.workflow_id for h in first])
    by_pid: dict[int, list[tuple[float, float]]] = {}
    for pid, start, end in done.values():
        by_pid.setdefault(pid, []).append((start, end))
    assert len(by_pid) == 2, "both processes run the registered queue"
    assert all(max_overlap(spans) == 1 for spans in by_pid.values())

    # Raise the per-process limit: both running workers follow, from the database.
    await queue.set_worker_concurrency(3)
    second = [await client.enqueue(opts("qp_dyn"), f"b{i}", 1.0) for i in range(6)]
    assert await results(second, workers) == [f"b{i}" for i in range(6)]
    done = runs(workers.events(), [h.workflow_id for h in first + second])
    spans_b: dict[int, list[tuple[float, float]]] = {}
    for wf in (h.workflow_id for h in second):
        pid, start, end = done[wf]
        spans_b.setdefault(pid, []).append((start, end))
    assert max(max_overlap(spans) for spans in spans_b.values()) >= 2
    assert all(max_overlap(spans) <= 3 for spans in spans_b.values())

    # Deleted, the queue stops in every process: its workflows wait (this one may start
    # in 1 s, after the deletion).
    parked = await client.enqueue(opts("qp_dyn", delay_seconds=1.0), "parked", 0.0)
    await client.delete_queue("qp_dyn")
    await asyncio.sleep(2.5)
    st = await parked.get_status()
    assert st is not None and st.status == WorkflowStatusString.ENQUEUED.value


@pytest.mark.crash
@shows_worker_stderr
async def test_processes__queue_wide_and_partition_limits_hold_together(
    db_url: str, workers: Workers, client: DBOSClient
) -> None:
    """Two processes run a queue with global_concurrency=3, worker_concurrency=2,
    partition_concurrency=2 and partition_worker_concurrency=1 over three partitions:
    at no instant more than three run in all, two in one process, two of one partition,
    or one of a partition in one process."""
    workers.start("m1", "m2", queues=["qp_free"])
    await client.register_queue(
        "qp_mix",
        global_concurrency=3,
        worker_concurrency=2,
        partition_concurrency=2,
        partition_worker_concurrency=1,
        polling_interval_sec=POLL,
    )
    handles = {
        k: [
            await client.enqueue(opts("qp_mix", queue_partition_key=k), f"{k}{i}", 0.4)
            for i in range(4)
        ]
        for k in ("ka", "kb", "kc")
    }
    every = [h for hs in handles.values() for h in hs]
    assert len(await results(every, workers)) == 12
    ran = runs(workers.events(), [h.workflow_id for h in every])
    spans = [ran[h.workflow_id][1:] for h in every]
    assert max_overlap(spans) <= 3
    assert max_overlap(spans) >= 2, "the queue ran no two at once"
    for pid in {p for p, _, _ in ran.values()}:
        mine = [(s, e) for p, s, e in ran.values() if p == pid]
        assert max_overlap(mine) <= 2, "worker_concurrency exceeded in one process"
    for k, hs in handles.items():
        part = [ran[h.workflow_id] for h in hs]
        assert max_overlap([(s, e) for _, s, e in part]) <= 2, f"partition {k} ran 3 at once"
        for pid in {p for p, _, _ in part}:
            mine = [(s, e) for p, s, e in part if p == pid]
            assert max_overlap(mine) <= 1, f"partition {k} ran 2 at once in one process"


# -- DBOS.listen_queues ----------------------------------------------------------------------


async def test_listen_queues__only_the_listened_queues_run_here(db_url: str) -> None:
    await DBOS.destroy()
    with pytest.raises(DBOSException, match="DBOS\\(config\\)"):
        DBOS.listen_queues(["x"])
    heard = Queue("tqd_heard", polling_interval_sec=POLL)
    Queue("tqd_unheard", polling_interval_sec=POLL)
    DBOS({"name": "tqd-listen", "database_url": db_url, "application_version": "test"})
    try:
        with pytest.raises(TypeError, match="list of queues"):
            DBOS.listen_queues("tqd_heard")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="neither a Queue nor"):
            DBOS.listen_queues([heard, 3])  # type: ignore[list-item]
        DBOS.listen_queues([heard, "tqd_registered_heard"])
        with pytest.raises(DBOSException, match="already called"):
            DBOS.listen_queues([heard])
        await DBOS.launch()
        with pytest.raises(DBOSException, match=r"before DBOS\.launch"):
            DBOS.listen_queues([heard])
        runs_here = await heard.enqueue(tqd_echo, 1)
        waits = await DBOS.enqueue_workflow("tqd_unheard", tqd_echo, 2)
        late = Queue("tqd_late_unheard", polling_interval_sec=POLL)  # declared after launch
        waits_too = await late.enqueue(tqd_echo, 3)
        await DBOS.register_queue("tqd_registered_heard", polling_interval_sec=POLL)
        registered = await DBOS.enqueue_workflow("tqd_registered_heard", tqd_echo, 4)
        assert await result(runs_here) == 1
        assert await result(registered) == 4
        await asyncio.sleep(0.6)
        for handle in (waits, waits_too):
            assert await status_of(handle.workflow_id) == WorkflowStatusString.ENQUEUED.value
        # The queues not listened to are registered all the same: a client may use them.
        names = {q.name for q in await get_runtime().sysdb.list_queues()}
        assert {"tqd_unheard", "tqd_late_unheard"} <= names
    finally:
        await DBOS.destroy()
        for name in ("tqd_heard", "tqd_unheard", "tqd_late_unheard"):
            registry.queues.pop(name, None)
