"""Queues and schedules across real processes (API.md section 6): worker processes run
tests/queue_app.py on one database (a SQLite file or a Postgres database), the test
enqueues through ``DBOSClient`` and reads what ran where and when from the workers' event
logs and from the status table."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

import asyncpg
import pytest

from dbos_async import (
    DBOSClient,
    DBOSNonExistentWorkflowError,
    DBOSQueueDeduplicatedError,
    WorkflowHandle,
    WorkflowStatusString,
)

from .faults import cutting

APP = Path(__file__).with_name("queue_app.py")
pytestmark = pytest.mark.crash

READY_TIMEOUT = 20.0
RESULT_TIMEOUT = 30.0
WAIT_TIMEOUT = 15.0


# -- worker processes ------------------------------------------------------------------


class Workers:
    """The queue_app.py processes of one test, on one database and work directory."""

    def __init__(self, db_url: str, workdir: Path) -> None:
        self.db_url = db_url
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(
        self,
        *executor_ids: str,
        queues: list[str],
        scheduled: bool = False,
        poll: float | None = None,
    ) -> None:
        """Start one process per executor ID (all at once), then wait until each has
        launched."""
        started = []
        for executor_id in executor_ids:
            (self.workdir / f"ready-{executor_id}").unlink(missing_ok=True)
            n = sum(1 for e, _, _ in self.procs if e == executor_id)
            err = open(self.workdir / f"stderr-{executor_id}-{n}.txt", "wb")  # noqa: SIM115
            cmd = [sys.executable, str(APP), self.db_url, str(self.workdir), executor_id]
            cmd += ["--queues", ",".join(queues)]
            if scheduled:
                cmd.append("--scheduled")
            if poll is not None:
                cmd += ["--poll", str(poll)]
            proc = subprocess.Popen(cmd, stdout=err, stderr=err)
            self.procs.append((executor_id, proc, err))
            started.append((executor_id, proc))
        deadline = time.monotonic() + READY_TIMEOUT
        for executor_id, proc in started:
            ready = self.workdir / f"ready-{executor_id}"
            while not ready.exists():
                assert proc.poll() is None, f"worker {executor_id} exited"
                assert time.monotonic() < deadline, f"worker {executor_id} never got ready"
                time.sleep(0.01)
            assert int(ready.read_text()) == proc.pid

    def _alive(self, executor_id: str) -> list[subprocess.Popen[bytes]]:
        return [p for e, p, _ in self.procs if e == executor_id and p.poll() is None]

    def stop(self, *executor_ids: str) -> None:
        """SIGTERM: each process destroys DBOS and exits 0."""
        procs = [p for e in executor_ids for p in self._alive(e)]
        assert procs, f"no live worker among {executor_ids}"
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            assert proc.wait(timeout=15) == 0, "a worker did not exit cleanly"

    def kill(self, executor_id: str) -> None:
        [proc] = self._alive(executor_id)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=15) == -signal.SIGKILL

    def close(self) -> None:
        for _, proc, _ in self.procs:
            if proc.poll() is None:
                proc.kill()
        for _, proc, err in self.procs:
            proc.wait(timeout=15)
            err.close()

    def pids(self) -> dict[int, str]:
        """The executor ID of every process started, by PID."""
        return {proc.pid: executor_id for executor_id, proc, _ in self.procs}

    def stderr(self) -> str:
        parts = []
        for path in sorted(self.workdir.glob("stderr-*.txt")):
            text = path.read_text(errors="replace").strip()
            if text:
                parts.append(f"--- {path.name}\n{text[-4000:]}")
        return "\n".join(parts) or "(the workers wrote nothing to stderr)"

    def events(self) -> list[dict[str, Any]]:
        """Every event the workflows logged, in every process."""
        out = []
        for path in sorted(self.workdir.glob("events-*.jsonl")):
            out += [json.loads(line) for line in path.read_text().splitlines()]
        return out


@pytest.fixture
def workers(db_url: str, tmp_path: Path) -> Iterator[Workers]:
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


# -- helpers -----------------------------------------------------------------------------


def shows_worker_stderr(
    test: Callable[..., Awaitable[None]],
) -> Callable[..., Awaitable[None]]:
    """Append the workers' stderr to the message of a failed assertion of ``test``."""

    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> None:
        try:
            await test(*args, **kwargs)
        except AssertionError as exc:
            exc.args = (f"{exc}\n\nworkers' stderr:\n{kwargs['workers'].stderr()}",)
            raise

    return run


def opts(queue: str, workflow: str = "qp_sleep", **more: Any) -> Any:
    return {"queue_name": queue, "workflow_name": workflow, **more}


async def results(handles: list[WorkflowHandle[Any]], workers: Workers) -> list[Any]:
    """The results of all handles, or a failure that shows the workers' stderr."""
    try:
        async with asyncio.timeout(RESULT_TIMEOUT):
            return list(await asyncio.gather(*(h.get_result() for h in handles)))
    except TimeoutError:
        pytest.fail(f"workflows did not finish in {RESULT_TIMEOUT} s\n{workers.stderr()}")


async def wait_until(what: str, check: Any, workers: Workers) -> None:
    """Poll ``await check()`` until it is true."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}\n{workers.stderr()}")
        await asyncio.sleep(0.02)


def _sqlite_rows(path: str, ids: list[str]) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        marks = ", ".join("?" * len(ids))
        return conn.execute(
            "SELECT workflow_uuid, status, executor_id, started_at_epoch_ms"
            f" FROM dbos_workflow_status WHERE workflow_uuid IN ({marks})",
            ids,
        ).fetchall()
    finally:
        conn.close()


async def claims(db_url: str, ids: list[str]) -> dict[str, tuple[str, str | None, int | None]]:
    """(status, executor_id, started_at_epoch_ms) of each workflow, read from the status
    table (the claim time is not in WorkflowStatus)."""
    if db_url.startswith("sqlite"):
        rows = _sqlite_rows(db_url[len("sqlite:///") :], ids)
    else:
        conn = await asyncpg.connect(db_url)
        try:
            rows = await conn.fetch(
                "SELECT workflow_uuid, status, executor_id, started_at_epoch_ms"
                " FROM dbos_async.workflow_status WHERE workflow_uuid = ANY($1::text[])",
                ids,
            )
        finally:
            await conn.close()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def runs(events: list[dict[str, Any]], ids: list[str]) -> dict[str, tuple[int, float, float]]:
    """Check each workflow's body started and ended exactly once, in one process; return
    (pid, start, end) by workflow ID."""
    by_wf: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if e["event"] in ("start", "end"):
            by_wf[e["wf"]].append(e)
    assert sorted(by_wf) == sorted(ids), "workflows ran that were not enqueued, or not all ran"
    out = {}
    for wf, evs in by_wf.items():
        kinds = sorted(e["event"] for e in evs)
        assert kinds == ["end", "start"], f"{wf} did not run exactly once: {evs}"
        start = next(e for e in evs if e["event"] == "start")
        end = next(e for e in evs if e["event"] == "end")
        assert start["pid"] == end["pid"]
        assert start["t"] <= end["t"]
        out[wf] = (start["pid"], start["t"], end["t"])
    return out


def slots_so_far(workdir: Path) -> set[str]:
    """The schedule slots the running workers have logged so far."""
    slots = set()
    for path in workdir.glob("events-*.jsonl"):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):  # a line still being written
                event = json.loads(line)
                if event["event"] == "sched":
                    slots.add(event["slot"])
    return slots


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end before a start at the same time)."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, delta in points:
        running += delta
        peak = max(peak, running)
    return peak


async def check_claimers(
    db_url: str, ran: dict[str, tuple[int, float, float]], workers: Workers
) -> None:
    """Each workflow succeeded, claimed by the executor of the process that ran it."""
    rows = await claims(db_url, list(ran))
    pids = workers.pids()
    for wf, (pid, _, _) in ran.items():
        status, executor_id, started_at = rows[wf]
        assert status == WorkflowStatusString.SUCCESS.value
        assert executor_id == pids[pid], f"{wf} claimed by {executor_id}, run by {pids[pid]}"
        assert started_at is not None


# -- limits ------------------------------------------------------------------------------


@shows_worker_stderr
async def test_queue_processes__global_concurrency_holds_across_processes(
    db_url: str, workers: Workers, client: DBOSClient
) -> None:
    workers.start("c0", "c1", "c2", queues=["qp_conc2"])
    handles = [await client.enqueue(opts("qp_conc2"), f"c{i}", 0.3) for i in range(12)]
    assert await results(handles, workers) == [f"c{i}" for i in range(12)]

    ran = runs(workers.events(), [h.workflow_id for h in handles])
    # concurrency=2: never more than 2 bodies at once in all processes together, and
    # the queue does run 2 at a time.
    peak = max_overlap([(s, e) for _, s, e in ran.values()])
    assert peak == 2, f"{peak} workflows ran at once on a queue with concurrency=2"
    await check_claimers(db_url, ran, workers)


@shows_worker_stderr
async def test_queue_processes__worker_concurrency_holds_in_each_process(
    db_url: str, workers: Workers, client: DBOSClient
) -> None:
    workers.start("w0", "w1", "w2", queues=["qp_worker1"])
    handles = [await client.enqueue(opts("qp_worker1"), f"w{i}", 0.2) for i in range(9)]
    assert await results(handles, workers) == [f"w{i}" for i in range(9)]

    ran = runs(workers.events(), [h.workflow_id for h in handles])
    by_pid: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for pid, s, e in ran.values():
        by_pid[pid].append((s, e))
    for pid, intervals in by_pid.items():
        peak = max_overlap(intervals)
        assert peak == 1, f"process {pid} ran {peak} at once with worker_concurrency=1"
    await check_claimers(db_url, ran, workers)


@shows_worker_stderr
async def test_queue_processes__limiter_holds_across_processes(
    db_url: str, workers: Workers, client: DBOSClient
) -> None:
    limit, period = 2, 1.0  # qp_limited in queue_app.py
    workers.start("l0", "l1", queues=["qp_limited"])
    handles = [await client.enqueue(opts("qp_limited"), f"l{i}", 0.05) for i in range(6)]
    assert await results(handles, workers) == [f"l{i}" for i in range(6)]

    ids = [h.workflow_id for h in handles]
    ran = runs(workers.events(), ids)
    await check_claimers(db_url, ran, workers)
    # The claim times (what the limiter counts): no window shorter than the period
    # holds more than `limit` claims.
    rows = await claims(db_url, ids)
    claimed = sorted(int(rows[wf][2] or 0) for wf in ids)
    for i in range(len(claimed) - limit):
        assert claimed[i + limit] - claimed[i] >= period * 1000, (
            f"{limit + 1} claims within {period} s: {claimed}"
        )
    # Each body starts after its own claim (how much later varies with the load), so
    # the spacing of the claims holds back the bodies too.
    for wf in ids:
        assert ran[wf][1] >= int(rows[wf][2] or 0) / 1000 - 0.001


@shows_worker_stderr
async def test_queue_processes__runs_by_priority_then_fifo(
    db_url: str, workers: Workers, client: DBOSClient
) -> None:
    # Launch once so that the queue is registered, then enqueue with no worker running.
    workers.start("p0", queues=["qp_priority"])
    workers.stop("p0")
    priorities = [3, 1, None, 1, 0, 2, 3, None, 2]
    handles = []
    for i, priority in enumerate(priorities):
        extra = {} if priority is None else {"priority": priority}
        handles.append(await client.enqueue(opts("qp_priority", **extra), f"p{i}", 0.02))
    queued = await client.list_queued_workflows(queue_name="qp_priority")
    assert {s.status for s in queued} == {WorkflowStatusString.ENQUEUED}
    assert len(queued) == len(priorities)

    workers.start("p0", queues=["qp_priority"])
    tags = [f"p{i}" for i in range(len(priorities))]
    assert await results(handles, workers) == tags
    ids = [h.workflow_id for h in handles]
    ran = runs(workers.events(), ids)
    tag_of = dict(zip(ids, tags, strict=True))
    order = sorted(range(len(ids)), key=lambda i: (priorities[i] or 0, i))
    expected = [ids[i] for i in order]
    # Lowest priority number first (none counts as 0), FIFO among equals.
    assert [tag_of[wf] for wf in sorted(ran, key=lambda wf: ran[wf][1])] == [tags[i] for i in order]
    rows = await claims(db_url, ids)
    claimed = [int(rows[wf][2] or 0) for wf in expected]
    assert claimed == sorted(claimed), "claims were not in priority order"


# -- partitions ------------------------------------------------------------------------


@shows_worker_stderr
async def test_queue_processes__partition_limits_hold_per_key_across_processes(
    db_url: str, workers: Workers, client: DBOSClient
) -> None:
    """qp_part: concurrency=1 per partition key. Two processes drain two keys: never two
    bodies of one key at once in both processes together, the keys side by side, and
    every workflow runs exactly once."""
    workers.start("pt0", "pt1", queues=["qp_part"])
    keys = ("ka", "kb")
    handles: dict[str, list[WorkflowHandle[Any]]] = {key: [] for key in keys}
    for i in range(3):
        for key in keys:
            handles[key].append(
                await client.enqueue(opts("qp_part", queue_partition_key=key), f"{key}{i}", 0.3)
            )
    every = [h for key in keys for h in handles[key]]
    assert await results(every, workers) == [f"{key}{i}" for key in keys for i in range(3)]

    ran = runs(workers.events(), [h.workflow_id for h in every])
    for key in keys:
        peak = max_overlap([ran[h.workflow_id][1:] for h in handles[key]])
        assert peak == 1, f"{peak} workflows of partition {key} ran at once"
    # The limit is per key, not per queue: the two keys ran side by side.
    assert max_overlap([ran[h.workflow_id][1:] for h in every]) == 2
    await check_claimers(db_url, ran, workers)
    for key in keys:
        for h in handles[key]:
            status = await client.get_workflow_status(h.workflow_id)
            assert status is not None and status.queue_partition_key == key


# -- wake-ups --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["postgres"])
@shows_worker_stderr
async def test_queue_processes__enqueue_wakes_another_process_by_notify(
    db_url: str, workers: Workers, client: DBOSClient
) -> None:
    """A worker process that polls its queue only every 600 s runs a workflow a client
    enqueues within seconds: only the NOTIFY of the enqueue can have woken it."""
    workers.start("n0", queues=["qp_free"], poll=600)
    # A first workflow (claimed by the worker's first poll or by NOTIFY); after it the
    # worker polls once more, then waits its 600 s.
    first = await client.enqueue(opts("qp_free"), "first", 0)
    assert await results([first], workers) == ["first"]
    await asyncio.sleep(2.0)  # let that poll pass: the worker is now in its long wait
    second = await client.enqueue(opts("qp_free"), "second", 0)
    try:
        result = await asyncio.wait_for(second.get_result(), 60)
    except TimeoutError:
        pytest.fail(f"the enqueue did not wake the worker within 60 s\n{workers.stderr()}")
    assert result == "second"
    ran = runs(workers.events(), [first.workflow_id, second.workflow_id])
    await check_claimers(db_url, ran, workers)


# -- deduplication -------------------------------------------------------------------------


@shows_worker_stderr
async def test_queue_processes__deduplication_id_is_free_once_the_first_ends(
    db_url: str, workers: Workers, client: DBOSClient
) -> None:
    workers.start("d0", "d1", queues=["qp_free", "qp_conc2"])
    other = DBOSClient(db_url)

    async def refused_while(status: str, attempt: str) -> None:
        """Another client's enqueue with the same deduplication ID is refused while
        dedup-1 is ``status``, and creates nothing."""
        before = await other.get_workflow_status("dedup-1")
        with pytest.raises(DBOSQueueDeduplicatedError):
            await other.enqueue(
                opts("qp_free", deduplication_id="dd", workflow_id=attempt), attempt, 0
            )
        after = await other.get_workflow_status("dedup-1")
        assert before is not None and after is not None
        assert before.status == after.status == status
        with pytest.raises(DBOSNonExistentWorkflowError):
            await other.retrieve_workflow(attempt)

    async def first_pending() -> bool:
        st = await client.get_workflow_status("dedup-1")
        return st is not None and st.status == WorkflowStatusString.PENDING

    try:
        # Delayed: ENQUEUED for 3 s (time to check it while ENQUEUED on a loaded
        # machine), then PENDING in a worker for 0.6 s.
        first = await client.enqueue(
            opts("qp_free", deduplication_id="dd", delay_seconds=3.0, workflow_id="dedup-1"),
            "first",
            0.6,
        )
        await refused_while("ENQUEUED", "dedup-2")
        # The same deduplication ID on another queue is another ID.
        elsewhere = await other.enqueue(
            opts("qp_conc2", deduplication_id="dd", workflow_id="dedup-other"), "elsewhere", 0
        )
        await wait_until("dedup-1 is PENDING", first_pending, workers)
        await refused_while("PENDING", "dedup-3")

        assert await results([first, elsewhere], workers) == ["first", "elsewhere"]
        again = await other.enqueue(
            opts("qp_free", deduplication_id="dd", workflow_id="dedup-4"), "again", 0
        )
        assert await results([again], workers) == ["again"]
        status = await client.get_workflow_status("dedup-4")
        assert status is not None
        assert status.deduplication_id == "dd"
    finally:
        await other.destroy()
    ran = runs(workers.events(), ["dedup-1", "dedup-other", "dedup-4"])
    await check_claimers(db_url, ran, workers)


# -- schedules ------------------------------------------------------------------------------


@shows_worker_stderr
async def test_queue_processes__schedule_runs_each_slot_once_across_processes(
    db_url: str, workers: Workers, client: DBOSClient, tmp_path: Path
) -> None:
    workers.start("s0", "s1", "s2", queues=["qp_free"], scheduled=True)

    async def slots_ran() -> bool:
        return len(slots_so_far(tmp_path)) >= 3

    await wait_until("3 slots ran", slots_ran, workers)
    workers.stop("s0", "s1", "s2")

    fired = [e for e in workers.events() if e["event"] == "sched"]
    per_slot = Counter(e["slot"] for e in fired)
    assert all(n == 1 for n in per_slot.values()), f"slots ran more than once: {per_slot}"
    assert len(per_slot) >= 3, f"too few slots ran: {fired}"
    for e in fired:
        assert e["wf"] == f"sched-qp_sched-{e['slot']}"
    # Every second between the first and the last slot ran.
    slots = sorted(datetime.fromisoformat(s) for s in per_slot)
    assert slots == [slots[0] + timedelta(seconds=i) for i in range(len(slots))]
    # In the database: one workflow per slot, and every finished one logged its run.
    stored = await client.list_workflows(name="qp_sched", load_input=False)
    assert len({s.workflow_id for s in stored}) == len(stored)
    done = {s.workflow_id for s in stored if s.status == WorkflowStatusString.SUCCESS}
    assert done == {e["wf"] for e in fired}


# -- crash ------------------------------------------------------------------------------------


@shows_worker_stderr
async def test_queue_processes__a_killed_worker_s_claims_are_taken_over_by_a_live_one(
    db_url: str, workers: Workers, client: DBOSClient
) -> None:
    sleep = 3.0
    workers.start("k-dead", queues=["qp_crash"])
    ids = [f"crash-{i}" for i in range(3)]
    handles = [
        await client.enqueue(opts("qp_crash", "qp_two_steps", workflow_id=wf), i, sleep)
        for i, wf in enumerate(ids)
    ]

    async def steps_a_recorded() -> bool:
        for wf in ids:
            steps = await client.list_workflow_steps(wf)
            # Step A, then the durable sleep's wake-up time.
            if len(steps) != 2:
                assert len(steps) < 2, steps
                return False
            assert steps[0].function_name == "qp_step_a", steps
        return True

    # worker_concurrency=3: all three run step A, then sleep durably.
    await wait_until("all 3 recorded step A and began to sleep", steps_a_recorded, workers)
    # Another executor runs the queue; the first one dies and never comes back. Its
    # claims (and the queue places they hold) are taken over by the live one, which
    # sleeps only what remains of each durable sleep.
    workers.start("k-live", queues=["qp_crash"])
    workers.kill("k-dead")
    extra = await client.enqueue(opts("qp_crash", "qp_two_steps", workflow_id="crash-x"), 7, 0.1)
    assert await results([*handles, extra], workers) == [10, 20, 30, 80]
    rows = await claims(db_url, ids)
    assert all(rows[wf][:2] == ("SUCCESS", "k-live") for wf in ids), rows

    pids = workers.pids()
    events = workers.events()
    for wf in [*ids, "crash-x"]:
        a = [e for e in events if e["wf"] == wf and e["event"] == "step_a"]
        b = [e for e in events if e["wf"] == wf and e["event"] == "step_b"]
        # A recorded step never runs again; step B ran once, after the whole sleep.
        assert len(a) == 1, f"{wf} ran step A {len(a)} times"
        assert len(b) == 1, f"{wf} ran step B {len(b)} times"
        if wf != "crash-x":
            assert b[0]["t"] >= a[0]["t"] + sleep - 0.05
            assert pids[a[0]["pid"]] == "k-dead"
        assert pids[b[0]["pid"]] == "k-live"


# -- no double claims ------------------------------------------------------------------------


@shows_worker_stderr
async def test_queue_processes__racing_workers_run_each_workflow_once(
    db_url: str, workers: Workers, client: DBOSClient
) -> None:
    workers.start("r0", "r1", "r2", queues=["qp_free"])
    handles = await asyncio.gather(
        *(client.enqueue(opts("qp_free"), f"r{i}", 0.01) for i in range(60))
    )
    assert await results(list(handles), workers) == [f"r{i}" for i in range(60)]
    ran = runs(workers.events(), [h.workflow_id for h in handles])
    await check_claimers(db_url, ran, workers)


# -- connection cuts (chaos) -------------------------------------------------------------


@pytest.mark.faults
@pytest.mark.parametrize("backend", ["postgres"])
@shows_worker_stderr
async def test_queue_processes__connection_cuts_lose_and_repeat_nothing(
    db_url: str, workers: Workers, client: DBOSClient
) -> None:
    """Every connection of every process (workers and client) is cut every 40 ms for 3 s
    while three workers drain a concurrency-2 queue and a free one: each workflow runs
    exactly once, the limit holds, and no process fails."""
    workers.start("x0", "x1", "x2", queues=["qp_conc2", "qp_free"])
    async with cutting(db_url, interval=0.04, seconds=3.0) as cutter:
        limited = [await client.enqueue(opts("qp_conc2"), f"x{i}", 0.05) for i in range(16)]
        free = [await client.enqueue(opts("qp_free"), f"y{i}", 0.01) for i in range(40)]
        assert await results(limited + free, workers) == [f"x{i}" for i in range(16)] + [
            f"y{i}" for i in range(40)
        ]
    assert cutter.cut > 0
    ran = runs(workers.events(), [h.workflow_id for h in limited + free])
    peak = max_overlap([ran[h.workflow_id][1:] for h in limited])
    assert peak <= 2, f"{peak} workflows ran at once on a queue with concurrency=2"
    await check_claimers(db_url, ran, workers)
