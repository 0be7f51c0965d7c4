"""The runtime's lifecycle: parts start in order and stop in reverse, a failed start
leaves nothing running, and a workflow caught by a shutdown stays PENDING."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dbos_async import DBOS, DBOSClient, DBOSException, Queue, SetWorkflowID
from dbos_async._config import resolve_config
from dbos_async._lifecycle import client_parts, process_parts
from dbos_async._queue_worker import QueueWorkers
from dbos_async._runtime import Part, Runtime


def _runtime(tmp_path: Path) -> Runtime:
    return Runtime(resolve_config({"database_url": f"sqlite:///{tmp_path / 'l.sqlite'}"}))


def _part(name: str, log: list[str], *, fail_start: bool = False, fail_stop: bool = False) -> Part:
    async def start() -> None:
        await asyncio.sleep(0)
        if fail_start:
            raise RuntimeError(f"{name} cannot start")
        log.append(f"start {name}")

    async def stop() -> None:
        await asyncio.sleep(0)
        log.append(f"stop {name}")
        if fail_stop:
            raise RuntimeError(f"{name} cannot stop")

    return Part(name, start, stop)


async def test_start__parts_start_in_order_and_stop_in_reverse(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    log: list[str] = []
    await rt.start([_part("a", log), _part("b", log), _part("c", log)])
    await rt.start([_part("again", log)])  # started already: nothing happens
    await rt.close()
    assert log == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]


async def test_start__concurrent_starts_start_once(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    log: list[str] = []
    await asyncio.gather(*(rt.start([_part("a", log)]) for _ in range(5)))
    await rt.close()
    assert log == ["start a", "stop a"]


async def test_start__a_part_that_fails_stops_those_started_in_reverse(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    log: list[str] = []
    parts = [_part("a", log), _part("b", log), _part("c", log, fail_start=True), _part("d", log)]
    with pytest.raises(RuntimeError, match="c cannot start"):
        await rt.start(parts)
    assert log == ["start a", "start b", "stop b", "stop a"]
    log.clear()
    await rt.close()  # nothing is left to stop
    assert log == []
    await rt.start([_part("a", log)])  # and it can start again
    await rt.close()
    assert log == ["start a", "stop a"]


async def test_close__stops_every_part_though_one_fails_then_raises_that(tmp_path: Path) -> None:
    rt = _runtime(tmp_path)
    log: list[str] = []
    await rt.start([_part("a", log), _part("b", log, fail_stop=True), _part("c", log)])
    with pytest.raises(RuntimeError, match="b cannot stop"):
        await rt.close()
    assert log == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]


def test_process_parts__the_documented_order(tmp_path: Path) -> None:
    """The lease is held before anything runs and until everything stopped; the takeover
    (recovery) runs before any queue worker claims more work (taken-over queued workflows
    count against per-process limits), and workflows may run from before it until after
    the workers and the scheduler stopped."""
    rt = _runtime(tmp_path)
    assert [p.name for p in process_parts(rt)] == [
        "databases",
        "lease",
        "journal",
        "notifier",
        "request watcher",
        "workflows",
        "takeover",
        "queue workers",
        "scheduler",
    ]
    assert [p.name for p in client_parts(rt)] == ["databases", "notifier"]


# -- a workflow caught by a shutdown -----------------------------------------------------

lc_queue = Queue("lc_queue")  # so a launch has queue workers to stop
lc_gates: dict[str, asyncio.Event] = {}  # made in each test's own event loop
lc_seen: list[str] = []


@DBOS.step()
async def lc_step() -> str:
    return "stepped"


@DBOS.workflow()
async def lc_wait_then_use_dbos() -> str:
    await lc_step()
    await lc_gates["open"].wait()
    try:
        await DBOS.set_event("after-gate", "yes")
    except DBOSException as exc:
        lc_seen.append(str(exc))
        raise
    return "done"


async def test_destroy__workflow_failing_as_runtime_closes_stays_pending(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A workflow that runs on while ``destroy()`` stops the runtime's parts meets a
    runtime that is going away; that is not its outcome. It records nothing and is
    recovered at the next launch, where it finishes."""
    stop_workers = QueueWorkers.stop

    async def stop_after_the_workflow_met_it(self: QueueWorkers) -> None:
        lc_gates["open"].set()  # the workflow wakes while destroy() stops the queue workers
        for _ in range(500):
            if lc_seen:
                break
            await asyncio.sleep(0.01)
        await stop_workers(self)

    monkeypatch.setattr(QueueWorkers, "stop", stop_after_the_workflow_met_it)
    lc_gates["open"] = asyncio.Event()
    lc_seen.clear()
    await DBOS.destroy()
    DBOS({"database_url": db_url, "application_version": "test"})
    await DBOS.launch()
    try:
        with SetWorkflowID("lc-caught"):
            await DBOS.start_workflow(lc_wait_then_use_dbos)
        for _ in range(200):
            if [s.function_name for s in await DBOS.list_workflow_steps("lc-caught")]:
                break
            await asyncio.sleep(0.01)
        await DBOS.destroy()
        assert lc_seen, "the workflow was cancelled before it met the closing runtime"

        DBOS({"database_url": db_url, "application_version": "test"})
        await DBOS.launch()  # recovers it; the gate is open now
        handle = await DBOS.retrieve_workflow("lc-caught")
        assert await asyncio.wait_for(handle, timeout=30) == "done"
        status = await DBOS.get_workflow_status("lc-caught")
        assert status is not None and status.status == "SUCCESS"
        steps = [s.function_name for s in await DBOS.list_workflow_steps("lc-caught")]
        assert steps[0].endswith("lc_step") and steps.count(steps[0]) == 1
    finally:
        await DBOS.destroy()


lc_attempts: list[int] = []


@DBOS.step()
async def lc_step_failing_once() -> str:
    lc_attempts.append(1)
    await lc_gates["open"].wait()
    if len(lc_attempts) == 1:
        lc_seen.append("failed")
        raise ValueError("failed while the runtime closed")
    return "ok"


@DBOS.workflow()
async def lc_step_caught_by_shutdown() -> str:
    try:
        return await lc_step_failing_once()
    except ValueError:
        return "took the error"


async def test_destroy__step_failing_as_runtime_closes_is_not_recorded(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step that fails while ``destroy()`` stops the runtime records nothing (the
    failure may be the shutdown's doing) and its workflow does not go on past it: after
    recovery the step runs again, and the workflow sees that run's outcome."""
    stop_workers = QueueWorkers.stop

    async def stop_after_the_step_failed(self: QueueWorkers) -> None:
        lc_gates["open"].set()
        for _ in range(500):
            if lc_seen:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # room for a (wrong) error row to be written
        await stop_workers(self)

    monkeypatch.setattr(QueueWorkers, "stop", stop_after_the_step_failed)
    lc_gates["open"] = asyncio.Event()
    lc_seen.clear()
    lc_attempts.clear()
    await DBOS.destroy()
    DBOS({"database_url": db_url, "application_version": "test"})
    await DBOS.launch()
    try:
        with SetWorkflowID("lc-step-caught"):
            await DBOS.start_workflow(lc_step_caught_by_shutdown)
        for _ in range(500):
            if lc_attempts:
                break
            await asyncio.sleep(0.01)
        await DBOS.destroy()
        assert lc_seen == ["failed"]

        DBOS({"database_url": db_url, "application_version": "test"})
        await DBOS.launch()
        handle = await DBOS.retrieve_workflow("lc-step-caught")
        assert await asyncio.wait_for(handle, timeout=30) == "ok"
        assert len(lc_attempts) == 2
        steps = await DBOS.list_workflow_steps("lc-step-caught")
        assert [(s.output, s.error) for s in steps] == [("ok", None)]
    finally:
        await DBOS.destroy()


@DBOS.workflow()
async def lc_blocked() -> str:
    await lc_step()
    await lc_gates["open"].wait()
    return "unblocked"


async def test_launch__retried_after_a_failed_start_recovers_again(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A launch whose recovery ran but a later part failed is undone (its recovered
    workflows' tasks are cancelled); the retried launch recovers them again."""
    lc_gates["open"] = asyncio.Event()
    # The undone launch took the workflow over; the retry (the same process) takes back
    # its own workflow once it has been left untouched for a lease: keep that short.
    config = {"database_url": db_url, "application_version": "test", "executor_lease_seconds": 1}
    await DBOS.destroy()
    DBOS(config)
    await DBOS.launch()
    with SetWorkflowID("lc-blocked"):
        await DBOS.start_workflow(lc_blocked)
    await DBOS.destroy()  # it stays PENDING

    start_workers = QueueWorkers.start
    failures: list[str] = []

    async def fail_once(self: QueueWorkers) -> None:
        if not failures:
            failures.append("queue workers")
            raise RuntimeError("queue workers cannot start")
        await start_workers(self)

    monkeypatch.setattr(QueueWorkers, "start", fail_once)
    DBOS(config)
    try:
        with pytest.raises(RuntimeError, match="queue workers cannot start"):
            await DBOS.launch()  # recovery ran, then the workers failed: all undone
        await DBOS.launch()
        lc_gates["open"].set()
        handle = await DBOS.retrieve_workflow("lc-blocked")
        assert await asyncio.wait_for(handle, timeout=30) == "unblocked"
    finally:
        await DBOS.destroy()


async def test_client__destroy_during_its_first_connect_leaves_nothing_open(
    db_url: str,
) -> None:
    """``destroy()`` racing the connect of a client's first call waits for it and then
    closes what it opened, rather than finding nothing to close yet."""
    client = DBOSClient(db_url)
    first = asyncio.create_task(client.list_workflows())
    await asyncio.sleep(0)  # the connect is under way
    await client.destroy()
    await asyncio.gather(first, return_exceptions=True)
    assert client._runtime._parts == []
    assert not client._runtime.launched
