"""Debouncer and DebouncerClient (DBOS Transact's names and meanings): calls with one key
inside the period collapse into one run of the workflow with the last arguments.

Timing: periods are a few seconds and nothing asserts how soon a workflow runs, only
that the calls collapsed and which arguments won; so a loaded machine makes these tests
slower, not flaky (a burst's calls are made back to back, well inside the period).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from dbos_async import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSClient,
    DBOSException,
    DBOSQueueDeduplicatedError,
    Debouncer,
    DebouncerClient,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
    SetWorkflowTimeout,
)
from dbos_async._debouncer import DEBOUNCER_WORKFLOW_NAME, INTERNAL_QUEUE_NAME
from dbos_async._registry import registry
from dbos_async._runtime import get_runtime
from dbos_async.testing import crash_and_recover
from tests import debounce_app

PERIOD = 3.0
#: How long a test waits for a debounced workflow's result at most.
WAIT = 60.0

RUNS: list[tuple[str, Any]] = []


@DBOS.workflow()
async def deb_echo(x: Any) -> Any:
    RUNS.append(("deb_echo", x))
    return x


@DBOS.workflow()
async def deb_kw(a: int, *, b: str = "") -> str:
    RUNS.append(("deb_kw", (a, b)))
    return f"{a}{b}"


async def registered(queue_name: str) -> None:
    """Wait until a queue declared after launch is registered (clients check names)."""
    sysdb = get_runtime().sysdb
    async with asyncio.timeout(WAIT):
        while queue_name not in [q.name for q in await sysdb.list_queues()]:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def runs_of(name: str) -> list[Any]:
    return [x for n, x in RUNS if n == name]


async def result(handle: Any) -> Any:
    return await asyncio.wait_for(handle.get_result(), WAIT)


@pytest.fixture(autouse=True)
def _clear_runs() -> None:
    RUNS.clear()


async def test_debouncer__calls_inside_the_period_collapse_into_one_run(dbos: DBOS) -> None:
    debouncer = Debouncer.create(deb_echo)
    first = await debouncer.debounce("key", PERIOD, 1)
    second = await Debouncer.create(deb_echo).debounce("key", PERIOD, 2)
    assert first.workflow_id == second.workflow_id
    assert await result(first) == 2
    assert await result(second) == 2
    assert runs_of("deb_echo") == [2]
    status = await second.get_status()
    assert status.status == "SUCCESS" and status.name == "deb_echo"
    assert status.queue_name == INTERNAL_QUEUE_NAME

    # The key is free again: a new burst is a new workflow.
    third = await debouncer.debounce("key", PERIOD, 3)
    fourth = await debouncer.debounce_async("key", PERIOD, 4)
    assert third.workflow_id == fourth.workflow_id != first.workflow_id
    assert await result(third) == 4
    assert runs_of("deb_echo") == [2, 4]

    # SetWorkflowID around the call that starts a burst names the workflow.
    wfid = f"deb-{uuid.uuid4()}"
    with SetWorkflowID(wfid):
        named = await debouncer.debounce("key", PERIOD, 5)
    assert named.workflow_id == wfid
    assert await result(named) == 5
    assert (await DBOS.retrieve_workflow(wfid)).workflow_id == wfid


async def test_debouncer__the_last_arguments_win(dbos: DBOS) -> None:
    debouncer = Debouncer.create(deb_kw)
    handles = [
        await debouncer.debounce("k", PERIOD, 1, b="x"),
        await debouncer.debounce("k", PERIOD, 2),
        await debouncer.debounce("k", PERIOD, 3, b="z"),
    ]
    assert len({h.workflow_id for h in handles}) == 1
    assert await result(handles[0]) == "3z"
    assert runs_of("deb_kw") == [(3, "z")]


async def test_debouncer__separate_keys_run_separately(dbos: DBOS) -> None:
    one = Debouncer.create(deb_echo)
    two = Debouncer.create(deb_echo)
    a1 = await one.debounce("key-one", PERIOD, "a1")
    b1 = await two.debounce("key-two", PERIOD, "b1")
    a2 = await one.debounce("key-one", PERIOD, "a2")
    b2 = await two.debounce("key-two", PERIOD, "b2")
    assert a1.workflow_id == a2.workflow_id != b1.workflow_id == b2.workflow_id
    assert await result(a1) == "a2"
    assert await result(b1) == "b2"
    assert sorted(runs_of("deb_echo")) == ["a2", "b2"]


async def test_debouncer__timeout_caps_the_total_delay(dbos: DBOS) -> None:
    # A period far longer than the test: only the timeout makes the workflow run.
    debouncer = Debouncer.create(deb_echo, debounce_timeout_sec=2)
    first = await debouncer.debounce("key", 100_000, 1)
    second = await debouncer.debounce("key", 100_000, 2)
    assert first.workflow_id == second.workflow_id
    assert await result(second) == 2

    # A later call's shorter period restarts the wait with that period.
    plain = Debouncer.create(deb_echo)
    third = await plain.debounce("key", 100_000, 3)
    fourth = await plain.debounce("key", 0.5, 4)
    assert third.workflow_id == fourth.workflow_id != first.workflow_id
    assert await result(third) == 4
    assert runs_of("deb_echo") == [2, 4]


async def test_debouncer__runs_on_its_queue_with_the_callers_timeout(dbos: DBOS) -> None:
    name = f"deb-queue-{uuid.uuid4().hex[:8]}"
    queue = Queue(name, concurrency=1)
    try:
        debouncer = Debouncer.create(deb_echo, queue=queue)
        with SetWorkflowTimeout(30):
            first = await debouncer.debounce("key", PERIOD, 1)
            second = await debouncer.debounce("key", PERIOD, 2)
        assert first.workflow_id == second.workflow_id
        assert await result(second) == 2
        status = await second.get_status()
        assert status.queue_name == name
        assert status.workflow_timeout_ms == 30_000

        # The queue may be given by name.
        by_name = Debouncer.create(deb_echo, queue=name)
        third = await by_name.debounce("key", PERIOD, 3)
        assert await result(third) == 3
        assert (await third.get_status()).queue_name == name
    finally:
        registry.queues.pop(name, None)


async def test_debouncer__refuses_what_it_cannot_honour(dbos: DBOS) -> None:
    debouncer = Debouncer.create(deb_echo)
    for options, word in (
        (SetEnqueueOptions(deduplication_id="d"), "deduplication_id"),
        (SetEnqueueOptions(delay_seconds=5), "delay"),
        (SetEnqueueOptions(priority=1), "priority"),
        (SetEnqueueOptions(queue_partition_key="p"), "partition key"),
    ):
        with options, pytest.raises(DBOSException, match=word):
            await debouncer.debounce("k", PERIOD, 1)
    with pytest.raises(ValueError, match="debounce_period_sec"):
        await debouncer.debounce("k", -1, 1)
    with pytest.raises(ValueError, match="debounce_key"):
        await debouncer.debounce("", PERIOD, 1)
    with pytest.raises(ValueError, match="debounce_timeout_sec"):
        Debouncer.create(deb_echo, debounce_timeout_sec=0)
    with pytest.raises(TypeError, match=r"@DBOS\.workflow"):
        Debouncer.create(runs_of)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await debouncer.debounce("k", PERIOD, 1, 2)  # type: ignore[call-arg]
    with pytest.raises(DBOSException, match="not declared"):
        await Debouncer.create(deb_echo, queue="no-such-queue").debounce("k", PERIOD, 1)
    # Nothing was enqueued by the refused calls.
    assert await DBOS.list_workflows(name=DEBOUNCER_WORKFLOW_NAME) == []


async def test_debouncer__concurrent_callers_collapse(dbos: DBOS, db_url: str) -> None:
    """Calls from many tasks of this process and from two clients at once: one
    debouncer, one run, every caller holding its handle, with one of their arguments."""
    debouncer = Debouncer.create(deb_echo)
    options: Any = {"workflow_name": "deb_echo", "queue_name": INTERNAL_QUEUE_NAME}
    period = 8.0
    async with DBOSClient(db_url) as c1, DBOSClient(db_url) as c2:
        clients = [DebouncerClient(c, options) for c in (c1, c2)]
        calls = [debouncer.debounce("burst", period, i) for i in range(12)]
        calls += [clients[i % 2].debounce("burst", period, 100 + i) for i in range(12)]
        handles = await asyncio.gather(*calls)
        assert len({h.workflow_id for h in handles}) == 1
        value = await result(handles[0])
        assert value in [*range(12), *range(100, 112)]
        for handle in handles[1:]:
            assert await result(handle) == value
    assert runs_of("deb_echo") == [value]
    assert len(await DBOS.list_workflows(name=DEBOUNCER_WORKFLOW_NAME)) == 1


async def test_debouncer__in_a_workflow_each_call_is_a_step(dbos: DBOS) -> None:
    debouncer = Debouncer.create(deb_echo)

    @DBOS.workflow()
    async def deb_parent(base: int) -> list[str]:
        first = await debouncer.debounce("in-wf", PERIOD, base)
        second = await debouncer.debounce("in-wf", PERIOD, base + 1)
        return [first.workflow_id, second.workflow_id]

    with SetWorkflowID(f"deb-parent-{uuid.uuid4()}"):
        handle = await DBOS.start_workflow(deb_parent, 10)
    ids = await handle.get_result()
    assert ids[0] == ids[1] == f"{handle.workflow_id}-1"
    steps = await DBOS.list_workflow_steps(handle.workflow_id)
    assert [s.function_name for s in steps] == ["DBOS.debounce", "DBOS.debounce"]
    # (The workflow exists once the period has ended; only the handles wait for that.)
    async with asyncio.timeout(WAIT):
        while await DBOS.get_workflow_status(ids[0]) is None:  # noqa: ASYNC110 - a table
            await asyncio.sleep(0.1)
    assert await result(await DBOS.retrieve_workflow(ids[0])) == 11
    assert runs_of("deb_echo") == [11]


async def test_debouncer_client__collapses_and_names_the_workflow(dbos: DBOS, db_url: str) -> None:
    name = f"deb-client-queue-{uuid.uuid4().hex[:8]}"
    Queue(name)
    try:
        await registered(name)
        async with DBOSClient(db_url) as client:
            options: Any = {"workflow_name": "deb_echo", "queue_name": name}
            debouncer = DebouncerClient(client, options)
            first = await debouncer.debounce("key", PERIOD, 1)
            second = await debouncer.debounce_async("key", PERIOD, 2)
            assert first.workflow_id == second.workflow_id
            assert await result(first) == 2
            assert (await second.get_status()).queue_name == name

            # The options are read at each call: a workflow ID names the next burst's.
            wfid = f"deb-client-{uuid.uuid4()}"
            options["workflow_id"] = wfid
            third = await debouncer.debounce("key", PERIOD, 3)
            assert third.workflow_id == wfid
            assert await result(third) == 3

            with pytest.raises(DBOSException, match="delay"):
                await DebouncerClient(client, {**options, "delay_seconds": 1}).debounce(
                    "key", PERIOD, 4
                )
            with pytest.raises(TypeError, match="unknown option"):
                DebouncerClient(client, {**options, "bogus": 1})
        assert runs_of("deb_echo") == [2, 3]
    finally:
        registry.queues.pop(name, None)


async def test_debouncer__a_key_held_by_another_workflow_is_a_conflict(
    dbos: DBOS, db_url: str
) -> None:
    # "colw" + "b-k" and "colw-b" + "k" make the same deduplication ID.
    async with DBOSClient(db_url) as client:
        opts_a: Any = {"workflow_name": "colw", "queue_name": INTERNAL_QUEUE_NAME}
        opts_b: Any = {"workflow_name": "colw-b", "queue_name": INTERNAL_QUEUE_NAME}
        held = await DebouncerClient(client, opts_a).debounce("b-k", 100_000, 1)
        with pytest.raises(DBOSQueueDeduplicatedError):
            await DebouncerClient(client, opts_b).debounce("k", 1, 2)
        again = await DebouncerClient(client, opts_a).debounce("b-k", 100_000, 3)
        assert again.workflow_id == held.workflow_id
        # Cancelling the burst's debouncer cancels the burst: its handles say so.
        await DBOS.cancel_workflow(held.debouncer_id)  # type: ignore[attr-defined]
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            await result(held)


# -- crashes ---------------------------------------------------------------------------------


def append(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


def lines(path: str | Path) -> list[str]:
    return Path(path).read_text().splitlines()


@DBOS.workflow()
async def deb_append(path: str, line: str) -> str:
    append(path, line)
    return line


CRASH_DEBOUNCER = Debouncer.create(deb_append)


@DBOS.step()
async def deb_noop() -> None:
    pass


@DBOS.workflow()
async def deb_parent_crash(path: str) -> str:
    """Step 1 a debounce, 2 a step."""
    handle = await CRASH_DEBOUNCER.debounce("crash-parent", 1.0, path, "once")
    await deb_noop()
    return handle.workflow_id


async def test_debouncer__a_workflow_killed_after_its_debounce_replays_it(
    dbos: DBOS, tmp_path: Path
) -> None:
    """The process of a workflow dies right after its debounce step: the recovered
    workflow gets the same handle back, and the burst runs once."""
    path = str(tmp_path / "runs.txt")
    report = await crash_and_recover(deb_parent_crash, path, crash_after_step=1)
    assert report.result == f"{report.workflow_id}-1"
    assert [s.function_name for s in report.steps] == ["DBOS.debounce", "deb_noop"]
    async with asyncio.timeout(WAIT):
        while await DBOS.get_workflow_status(report.result) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    assert await result(await DBOS.retrieve_workflow(report.result)) == "once"
    assert lines(path) == ["once"]
    assert len(await DBOS.list_workflows(name=DEBOUNCER_WORKFLOW_NAME)) == 1


# -- a crash of the debouncer's process ----------------------------------------------------

APP = Path(debounce_app.__file__)


async def test_debouncer__survives_a_crash_of_the_debouncers_process(
    db_url: str, tmp_path: Path
) -> None:
    """The process that runs the debouncer dies (SIGKILL) while it waits out the period,
    after taking the burst's second call. A client adds a third call to the burst while
    nobody runs it; the next launch recovers the debouncer, which runs the workflow once,
    with the third call's arguments."""
    await DBOS.destroy()
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(APP), db_url, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(APP.parent.parent)},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ids = json.loads(proc.stdout.strip().splitlines()[-1])

    async with DBOSClient(db_url) as client:
        status = await client.get_workflow_status(ids["debouncer_id"])
        assert status is not None and status.status == "PENDING"
        options: Any = {"workflow_name": "debounced_run", "queue_name": INTERNAL_QUEUE_NAME}
        third = await DebouncerClient(client, options).debounce(
            debounce_app.KEY, 1.0, 3, str(tmp_path)
        )
        assert third.workflow_id == ids["workflow_id"]

    DBOS({"database_url": db_url, "application_version": debounce_app.APP_VERSION})
    await DBOS.launch()
    try:
        handle = await DBOS.retrieve_workflow(ids["debouncer_id"])
        assert await asyncio.wait_for(handle.get_result(), WAIT) == ids["workflow_id"]
        ran = await DBOS.retrieve_workflow(ids["workflow_id"])
        assert await asyncio.wait_for(ran.get_result(), WAIT) == 3
    finally:
        await DBOS.destroy()
    assert lines(tmp_path / "log") == ["ran 3"]


def test_registry__clear_keeps_the_librarys_own_registrations() -> None:
    """``DBOS.destroy(destroy_registry=True)`` forgets the application's workflows and
    queues, not the debouncer workflow and the internal queue registered at import."""
    from dbos_async._registry import Registry

    table = Registry()
    table.workflows.update({DEBOUNCER_WORKFLOW_NAME: "builtin", "app_wf": "app"})  # type: ignore[dict-item]
    table.queues.update({INTERNAL_QUEUE_NAME: "builtin", "app_q": "app"})
    table.builtin_workflows.add(DEBOUNCER_WORKFLOW_NAME)
    table.builtin_queues.add(INTERNAL_QUEUE_NAME)
    table.clear()
    assert list(table.workflows) == [DEBOUNCER_WORKFLOW_NAME]
    assert list(table.queues) == [INTERNAL_QUEUE_NAME]
    assert DEBOUNCER_WORKFLOW_NAME in registry.builtin_workflows
    assert INTERNAL_QUEUE_NAME in registry.builtin_queues


def test_debouncer__methods_are_refused() -> None:
    class Holder:
        async def method(self, x: int) -> int:
            return x

    with pytest.raises(TypeError, match="not methods"):
        Debouncer.create(Holder().method)
