"""What the two bench workers share: the workload, the measurements, the worker CLI.

Each worker (``bench_dbos_async.py``, ``bench_dbos.py``) is a thin ``Library`` adapter
around one durable-execution library; everything else lives here, so both libraries run
the very same workflows, measured the very same way. This module imports neither library.

The runner (``run.py``) uses the Postgres helpers and the floor measurement from here too.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import signal
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import asyncpg

# -- constants shared by the runner and the workers ----------------------------------

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
DB_PREFIX = "bench_"
RESULT_PREFIX = "RESULT "
#: Set in the environment of the process that recovers the blocked workflows.
RECOVERING_ENV = "BENCH_RECOVERING"
EXECUTOR_ID = "bench-executor"
APP_VERSION = "bench-v1"
IDLE_SLEEP_SECONDS = 60.0
#: How many workflows the idle and recovery figures start per ``asyncio.gather``.
START_BATCH = 500
#: Postgres 15 keeps a backend's statistics (xact_commit among them) in that backend
#: until it flushes them: at a transaction end at most once a second, and otherwise when
#: the backend has been idle for PGSTAT_IDLE_INTERVAL = 10 s. Measured here: after a
#: burst on a pool, pg_stat_get_db_xact_commit stays put for ~10 s and then jumps.
#: ``pg_stat_force_next_flush()`` only flushes the calling backend, not the library's
#: pool connections, and the ~0.6 s wait of the old stats collector misses most commits.
#: So the counter is read (from the maintenance database, in a fresh transaction, so
#: neither the reader's own commits nor a cached snapshot count) after 11 s of quiet.
STATS_FLUSH_WAIT_SECONDS = 11.0
#: DBOS polls Postgres in the background (about 11 commits/s when idle, measured):
#: that rate, measured over this window after the runs, times each run's window is not
#: counted as the workflows' commits.
IDLE_RATE_WINDOW_SECONDS = 5.0
POLL_INTERVAL_SECONDS = 0.02
#: The queue figure: its queue, the workflow enqueued on it (by name), and the line a
#: drain worker prints once it is ready to launch (it then waits for GO on stdin).
QUEUE_NAME = "bench_queue"
QUEUED_WORKFLOW = "bench_queued"
STEPS_PER_QUEUED_WORKFLOW = 3
READY_LINE = "READY"
GO_LINE = "GO"
ENQUEUER_EXECUTOR_ID = "bench-enqueuer"
#: A drain worker whose destroy() takes longer dumps its tasks' stacks and fails.
DESTROY_TIMEOUT_SECONDS = 60.0


# -- Postgres helpers ------------------------------------------------------------------


def database_url(name: str) -> str:
    return f"{PG_SERVER}/{name}"


def maintenance_url(url: str) -> str:
    """The URL of the ``postgres`` database on the same server as ``url``."""
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


def database_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _quoted(name: str) -> str:
    if not name.startswith(DB_PREFIX) or not name.replace("_", "").isalnum():
        raise ValueError(f"refusing to touch database {name!r}: not a {DB_PREFIX}* name")
    return '"' + name + '"'


async def create_database(name: str) -> str:
    """Create ``name`` afresh (dropping a leftover of an earlier run); return its URL."""
    conn = await asyncpg.connect(database_url("postgres"))
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {_quoted(name)} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {_quoted(name)}")
    finally:
        await conn.close()
    return database_url(name)


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(database_url("postgres"))
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {_quoted(name)} WITH (FORCE)")
    finally:
        await conn.close()


async def server_version() -> str:
    conn = await asyncpg.connect(database_url("postgres"))
    try:
        return str(await conn.fetchval("SELECT version()"))
    finally:
        await conn.close()


async def read_commits(monitor: asyncpg.Connection, database: str) -> int:
    """``xact_commit`` of ``database``, read in a fresh transaction (the default
    ``stats_fetch_consistency = cache`` only caches within one transaction)."""
    value = await monitor.fetchval(
        "SELECT pg_stat_get_db_xact_commit(oid) FROM pg_database WHERE datname = $1", database
    )
    return int(value)


async def wait_until(probe: Callable[[], Awaitable[bool]], limit_s: float, what: str) -> float:
    """Poll ``probe`` until it is true; return the seconds it took."""
    start = time.perf_counter()
    while not await probe():
        if time.perf_counter() - start > limit_s:
            raise TimeoutError(f"gave up after {limit_s:g}s waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL_SECONDS)
    return time.perf_counter() - start


# -- statistics --------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    rank = (len(ordered) - 1) * q / 100.0
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Summary:
        return cls(statistics.median(values), min(values), max(values))


# -- the floor: one autocommit INSERT at a time, plain asyncpg ----------------------------


async def floor_p50_ms(url: str, inserts: int) -> float:
    """p50 latency (ms) of single-row autocommit INSERTs on one connection."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS floor_scratch (id bigserial PRIMARY KEY, v integer)"
        )
        latencies = []
        for i in range(inserts):
            start = time.perf_counter()
            await conn.execute("INSERT INTO floor_scratch (v) VALUES ($1)", i)
            latencies.append((time.perf_counter() - start) * 1000.0)
        return percentile(latencies, 50)
    finally:
        await conn.close()


# -- the workload ------------------------------------------------------------------------

AsyncFn = Callable[..., Coroutine[Any, Any, Any]]
Decorator = Callable[[AsyncFn], AsyncFn]


class Handle(Protocol):
    def get_result(self) -> Awaitable[Any]: ...

    def get_workflow_id(self) -> str: ...


@dataclass(frozen=True)
class LaunchSettings:
    url: str
    executor_id: str
    app_version: str
    pool_size: int


class QueueClient(Protocol):
    """The library's client: enqueues by workflow name from a process that runs none."""

    def enqueue(self, queue_name: str, workflow_name: str, arg: int) -> Awaitable[Any]: ...

    def close(self) -> Awaitable[None]: ...


@dataclass(frozen=True)
class Outcome:
    """One stored workflow, as the library's own ``list_workflows`` reads it back."""

    status: str
    args: list[Any]
    output: Any


class Library(Protocol):
    """One durable-execution library, as the workload and the measurements see it."""

    #: Where the library keeps ``workflow_status`` and ``operation_outputs``.
    schema: str
    #: The file the library was imported from (recorded with every result).
    origin: str

    def workflow(self, name: str) -> Decorator: ...

    def step(self, name: str) -> Decorator: ...

    def sleep(self, seconds: float) -> Awaitable[None]: ...

    async def launch(self, settings: LaunchSettings, queues: Sequence[str] = ()) -> None:
        """Launch; ``queues`` are declared (no limits, the library's default polling
        interval) and registered in the database by the time this returns."""
        ...

    async def destroy(self) -> None: ...

    async def start(self, workflow: AsyncFn, arg: int) -> Handle: ...

    def send(self, destination_id: str, message: Any, topic: str) -> Awaitable[None]: ...

    def recv(self, topic: str, timeout_seconds: float) -> Awaitable[Any]: ...

    async def client(self, url: str) -> QueueClient: ...

    async def list_outcomes(self, workflow_name: str) -> list[Outcome]: ...

    def journal_commits(self) -> int | None:
        """Commits the library's checkpoint journal has made so far in this process
        (batches a workflow waits on), or None for a library without such a counter."""
        ...


async def step_one(x: int) -> int:
    return x + 1


async def step_two(x: int) -> int:
    return x * 2


async def step_three(x: int) -> int:
    return x - 1


# Never set: in the first recovery process, step 2 waits on it forever.
_NEVER = asyncio.Event()


async def step_blocking(x: int) -> int:
    """Step 2 of the recovery workload: blocks forever unless this is the recovering process."""
    if os.environ.get(RECOVERING_ENV) != "1":
        await _NEVER.wait()
    return x * 2


def expected(x: int) -> int:
    """What the three-step and the blocking workflows return for ``x``."""
    return (x + 1) * 2 - 1


#: Message number -> the moment (perf_counter) the receiving workflow got it.
RECEIVED: dict[int, float] = {}
#: Set by the receiving workflow after each message it got.
GOT_ONE = asyncio.Event()
MSG_TOPIC = "ping"
#: Every argument the queued workflow was entered with in this process (a workflow body
#: that ran twice, here or in another worker, shows up twice across the workers).
EXECUTED: list[int] = []


@dataclass(frozen=True)
class Workload:
    three_steps: AsyncFn  # step_one, step_two, step_three
    idle: AsyncFn  # step_one, then sleep(IDLE_SLEEP_SECONDS)
    blocking: AsyncFn  # step_one, step_blocking, step_three
    receiver: AsyncFn  # recv(MSG_TOPIC) x n, noting when each message arrived
    queued: AsyncFn  # three_steps, noting its argument in EXECUTED: the queue figure's


def define_workload(lib: Library) -> Workload:
    """Register the benchmark's steps and workflows with ``lib`` (at import time)."""
    one = lib.step("bench_step_one")(step_one)
    two = lib.step("bench_step_two")(step_two)
    three = lib.step("bench_step_three")(step_three)
    block = lib.step("bench_step_blocking")(step_blocking)

    async def three_steps(x: int) -> int:
        return int(await three(await two(await one(x))))

    async def idle(x: int) -> int:
        y = int(await one(x))
        await lib.sleep(IDLE_SLEEP_SECONDS)
        return y

    async def blocking(x: int) -> int:
        return int(await three(await block(await one(x))))

    async def receiver(n: int) -> int:
        for _ in range(n):
            message = int(await lib.recv(MSG_TOPIC, 30.0))
            RECEIVED[message] = time.perf_counter()
            GOT_ONE.set()
        return n

    async def queued(x: int) -> int:
        EXECUTED.append(x)
        return int(await three(await two(await one(x))))

    return Workload(
        three_steps=lib.workflow("bench_three_steps")(three_steps),
        idle=lib.workflow("bench_idle")(idle),
        blocking=lib.workflow("bench_blocking")(blocking),
        receiver=lib.workflow("bench_receiver")(receiver),
        queued=lib.workflow(QUEUED_WORKFLOW)(queued),
    )


def _check(results: list[Any], first: int) -> None:
    for i, got in enumerate(results, start=first):
        if got != expected(i):
            raise AssertionError(f"workflow {i} returned {got!r}, expected {expected(i)!r}")


async def start_in_batches(lib: Library, workflow: AsyncFn, n: int) -> None:
    """Start ``n`` workflows, ``START_BATCH`` concurrent starts at a time."""
    for first in range(0, n, START_BATCH):
        batch = range(first, min(first + START_BATCH, n))
        await asyncio.gather(*(lib.start(workflow, i) for i in batch))


# -- figures, as measured inside a worker ------------------------------------------------


def process_cpu_s() -> float:
    """User plus system CPU seconds of this whole process (every thread) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure_seq(lib: Library, wl: Workload, n: int) -> dict[str, float]:
    """``n`` workflows one after another: start, await the result, next."""
    latencies: list[float] = []
    results: list[Any] = []
    commits_before = lib.journal_commits()
    begin = time.perf_counter()
    for i in range(n):
        start = time.perf_counter()
        handle = await lib.start(wl.three_steps, i)
        results.append(await handle.get_result())
        latencies.append((time.perf_counter() - start) * 1000.0)
    elapsed = time.perf_counter() - begin
    commits_after = lib.journal_commits()
    _check(results, 0)
    out = {
        "throughput": n / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
    }
    if commits_before is not None and commits_after is not None:
        # One workflow at a time: every journal commit of the run was awaited by it.
        out["journal_commits_per_workflow"] = (commits_after - commits_before) / n
    return out


async def measure_conc(lib: Library, wl: Workload, n: int) -> dict[str, float]:
    """``n`` workflows started at once, then all their results gathered; also the
    process's CPU time (user + system, all threads) over that window, per workflow."""
    cpu_before = process_cpu_s()
    begin = time.perf_counter()
    handles = await asyncio.gather(*(lib.start(wl.three_steps, i) for i in range(n)))
    results = await asyncio.gather(*(h.get_result() for h in handles))
    elapsed = time.perf_counter() - begin
    cpu = process_cpu_s() - cpu_before
    _check(list(results), 0)
    return {"throughput": n / elapsed, "cpu_us_per_workflow": cpu / n * 1e6}


async def measure_conc_with_commits(
    lib: Library, wl: Workload, n: int, monitor: asyncpg.Connection, database: str
) -> dict[str, float]:
    """``measure_conc``, plus the database's commits from just before the starts until
    every backend has flushed its statistics (``STATS_FLUSH_WAIT_SECONDS`` after)."""
    before = await read_commits(monitor, database)
    begin = time.perf_counter()
    out = await measure_conc(lib, wl, n)
    await asyncio.sleep(STATS_FLUSH_WAIT_SECONDS)
    out["commits_delta"] = await read_commits(monitor, database) - before
    out["window_s"] = time.perf_counter() - begin
    return out


async def idle_commit_rate(monitor: asyncpg.Connection, database: str) -> dict[str, float]:
    """Commits per second the launched library makes on its own, with no workflow running
    (background pollers). Called right after a run's flush wait, so only the library's
    background backends (which flush at least every second) are moving the counter."""
    before = await read_commits(monitor, database)
    await asyncio.sleep(IDLE_RATE_WINDOW_SECONDS)
    rate = (await read_commits(monitor, database) - before) / IDLE_RATE_WINDOW_SECONDS
    return {"idle_commits_per_s": rate}


def attribute_commits(result: dict[str, Any], n: int) -> None:
    """Per run: the commits of the window, less the idle background rate over the window,
    per workflow (``commits_per_workflow``), floored at 0; the raw figure stays beside it.
    (A library with background commits of its own but few workflow commits makes fewer
    background commits during a burst than its idle rate predicts: its pollers wait
    behind the burst. Subtracting the idle rate then gave a small negative count.)"""
    rate = result["idle_commits_per_s"]
    for run in [result["warmup"], *result["runs"]]:
        run["commits_raw_per_workflow"] = run["commits_delta"] / n
        background = rate * run["window_s"]
        run["commits_per_workflow"] = max(0.0, run["commits_delta"] - background) / n


@dataclass(frozen=True)
class WorkerArgs:
    figure: str
    url: str
    n: int
    runs: int
    pool_size: int
    #: Which of the queue figure's drain workers this is (0, 1, ...).
    index: int = 0

    def settings(self, executor_id: str = EXECUTOR_ID) -> LaunchSettings:
        return LaunchSettings(self.url, executor_id, APP_VERSION, self.pool_size)


async def repeated(
    lib: Library,
    args: WorkerArgs,
    once: Callable[[], Awaitable[dict[str, float]]],
    epilogue: Callable[[], Awaitable[dict[str, float]]] | None = None,
) -> dict[str, Any]:
    """Launch once, run ``once`` for a warm-up and then ``args.runs`` times, then the
    ``epilogue`` (still launched)."""
    await lib.launch(args.settings())
    try:
        warmup = await once()
        runs = [await once() for _ in range(args.runs)]
        extra = await epilogue() if epilogue is not None else {}
    finally:
        await lib.destroy()
    return {"warmup": warmup, "runs": runs, **extra}


async def measure_msg(lib: Library, wl: Workload, n: int) -> dict[str, float]:
    """One workflow waits in ``recv``; ``n`` messages are sent to it from outside, one at a
    time: the latency is from just before ``send`` to the workflow resuming with it."""
    RECEIVED.clear()
    handle = await lib.start(wl.receiver, n)
    destination = handle.get_workflow_id()
    await asyncio.sleep(0.2)  # let it reach its first recv
    latencies: list[float] = []
    for i in range(n):
        GOT_ONE.clear()
        sent = time.perf_counter()
        await lib.send(destination, i, MSG_TOPIC)
        await asyncio.wait_for(GOT_ONE.wait(), 30.0)
        latencies.append((RECEIVED[i] - sent) * 1000.0)
    if await handle.get_result() != n:
        raise AssertionError("the receiving workflow did not get every message")
    return {"p50_ms": percentile(latencies, 50), "p99_ms": percentile(latencies, 99)}


async def figure_msg(lib: Library, wl: Workload, args: WorkerArgs) -> dict[str, Any]:
    return await repeated(lib, args, lambda: measure_msg(lib, wl, args.n))


async def figure_seq(lib: Library, wl: Workload, args: WorkerArgs) -> dict[str, Any]:
    return await repeated(lib, args, lambda: measure_seq(lib, wl, args.n))


async def figure_conc(lib: Library, wl: Workload, args: WorkerArgs) -> dict[str, Any]:
    if args.url.startswith("sqlite"):
        return await repeated(lib, args, lambda: measure_conc(lib, wl, args.n))
    monitor = await asyncpg.connect(maintenance_url(args.url))
    try:
        database = database_of(args.url)
        result = await repeated(
            lib,
            args,
            lambda: measure_conc_with_commits(lib, wl, args.n, monitor, database),
            lambda: idle_commit_rate(monitor, database),
        )
        attribute_commits(result, args.n)
        return result
    finally:
        await monitor.close()


def rss_mb() -> float:
    """This process's resident set size, from /proc/self/status (VmRSS), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


async def count_rows(conn: asyncpg.Connection, sql: str, *params: Any) -> int:
    return int(await conn.fetchval(sql, *params))


async def figure_idle(lib: Library, wl: Workload, args: WorkerArgs) -> dict[str, Any]:
    """RSS growth from ``args.n`` workflows that all sit in ``sleep(60)``."""
    sleeping = (
        f"SELECT count(*) FROM {lib.schema}.operation_outputs WHERE function_name = 'DBOS.sleep'"
    )
    conn = await asyncpg.connect(args.url)
    await lib.launch(args.settings())
    try:
        gc.collect()
        before = rss_mb()
        await start_in_batches(lib, wl.idle, args.n)
        waited = await wait_until(
            lambda: _equals(count_rows(conn, sleeping), args.n), 600, "all workflows asleep"
        )
        await asyncio.sleep(0.5)  # every recorded sleep is now in asyncio.sleep
        gc.collect()
        after = rss_mb()
        threads = threading.active_count()
    finally:
        await lib.destroy()
        await conn.close()
    return {
        "rss_before_mb": before,
        "rss_after_mb": after,
        "rss_growth_mb": after - before,
        "seconds_until_all_asleep": waited,
        "threads_while_asleep": threads,
    }


async def _equals(count: Awaitable[int], target: int) -> bool:
    return await count == target


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


async def figure_crash(lib: Library, wl: Workload, args: WorkerArgs) -> dict[str, Any]:
    """Recovery, first process: start ``args.n`` blocking workflows, wait until every one
    is PENDING with step 1 recorded, report, and die by SIGKILL."""
    pending = (
        f"SELECT count(*) FROM {lib.schema}.workflow_status "
        "WHERE name = 'bench_blocking' AND status = 'PENDING'"
    )
    stepped = (
        f"SELECT count(*) FROM {lib.schema}.operation_outputs "
        "WHERE function_name = 'bench_step_one'"
    )
    conn = await asyncpg.connect(args.url)
    await lib.launch(args.settings())
    begin = time.perf_counter()
    await start_in_batches(lib, wl.blocking, args.n)

    async def ready() -> bool:
        return await count_rows(conn, pending) == args.n == await count_rows(conn, stepped)

    await wait_until(ready, 600, "all workflows pending with step 1 recorded")
    emit({"ready_after_s": time.perf_counter() - begin, "library_origin": lib.origin})
    _die()
    raise AssertionError("unreachable")


async def figure_recover(lib: Library, wl: Workload, args: WorkerArgs) -> dict[str, Any]:
    """Recovery, second process: seconds from the start of launch until every workflow
    the killed process left is SUCCESS (and checked for its result)."""
    counts = (
        "SELECT count(*) FILTER (WHERE status = 'SUCCESS'), "
        "count(*) FILTER (WHERE status NOT IN ('SUCCESS', 'PENDING', 'ENQUEUED')) "
        f"FROM {lib.schema}.workflow_status WHERE name = 'bench_blocking'"
    )
    conn = await asyncpg.connect(args.url)
    try:
        begin = time.perf_counter()
        await lib.launch(args.settings())
        launched = time.perf_counter() - begin

        async def done() -> bool:
            row = await conn.fetchrow(counts)
            assert row is not None
            if row[1]:
                raise RuntimeError(f"{row[1]} recovered workflows ended other than SUCCESS")
            return int(row[0]) == args.n

        await wait_until(done, 1200, "all recovered workflows SUCCESS")
        seconds = time.perf_counter() - begin
        await lib.destroy()
    finally:
        await conn.close()
    return {"seconds": seconds, "launch_s": launched}


# -- the queue figure ----------------------------------------------------------------------


async def figure_queue_register(lib: Library, wl: Workload, args: WorkerArgs) -> dict[str, Any]:
    """Queue, phase 1a: a short launch that declares the queue, so that the schema exists
    and the queue is registered in the database; destroyed at once, before anything is
    enqueued."""
    begin = time.perf_counter()
    await lib.launch(args.settings(ENQUEUER_EXECUTOR_ID), queues=(QUEUE_NAME,))
    await lib.destroy()
    return {"registration_s": time.perf_counter() - begin}


async def figure_queue_enqueue(lib: Library, wl: Workload, args: WorkerArgs) -> dict[str, Any]:
    """Queue, phase 1b (no DBOS launched anywhere): the library's client enqueues
    ``args.n`` workflows by name, ``START_BATCH`` concurrent enqueues at a time; the
    database must then show all of them ENQUEUED."""
    client = await lib.client(args.url)
    try:
        await client.enqueue(QUEUE_NAME, QUEUED_WORKFLOW, 0)  # connects the client
        begin = time.perf_counter()
        for first in range(1, args.n, START_BATCH):
            batch = range(first, min(first + START_BATCH, args.n))
            await asyncio.gather(*(client.enqueue(QUEUE_NAME, QUEUED_WORKFLOW, i) for i in batch))
        enqueue_s = time.perf_counter() - begin
    finally:
        await client.close()
    conn = await asyncpg.connect(args.url)
    try:
        enqueued = await count_rows(
            conn,
            f"SELECT count(*) FROM {lib.schema}.workflow_status "
            "WHERE name = $1 AND queue_name = $2 AND status = 'ENQUEUED'",
            QUEUED_WORKFLOW,
            QUEUE_NAME,
        )
    finally:
        await conn.close()
    if enqueued != args.n:
        raise AssertionError(f"{enqueued} workflows ENQUEUED after enqueueing {args.n}")
    return {
        "enqueue_s": enqueue_s,
        # The first enqueue (which connects the client) is not timed.
        "enqueue_rate": (args.n - 1) / enqueue_s,
    }


def _queue_sql(schema: str) -> dict[str, str]:
    ws, oo = f"{schema}.workflow_status", f"{schema}.operation_outputs"
    return {
        "unfinished": (
            "SELECT count(*) FILTER (WHERE status IN ('ENQUEUED', 'PENDING')), count(*) "
            f"FROM {ws} WHERE name = $1"
        ),
        "totals": (
            "SELECT count(*), count(*) FILTER (WHERE status = 'SUCCESS'), "
            "min(started_at_epoch_ms), max(started_at_epoch_ms), max(updated_at), "
            "min(updated_at) "
            f"FROM {ws} WHERE name = $1"
        ),
        # A claim stamps every row it takes with one started_at: the distinct values of
        # an executor are its claims (two claims in the same millisecond count once).
        "by_executor": (
            "SELECT executor_id, count(*), count(DISTINCT started_at_epoch_ms), "
            "min(started_at_epoch_ms), max(started_at_epoch_ms), max(updated_at) "
            f"FROM {ws} WHERE name = $1 GROUP BY executor_id ORDER BY executor_id"
        ),
        "claims": (
            "SELECT executor_id, started_at_epoch_ms, count(*) "
            f"FROM {ws} WHERE name = $1 GROUP BY executor_id, started_at_epoch_ms "
            "ORDER BY started_at_epoch_ms, executor_id"
        ),
        "steps": (
            "SELECT c, count(*) FROM (SELECT w.workflow_uuid, count(o.function_id) AS c "
            f"FROM {ws} w LEFT JOIN {oo} o ON o.workflow_uuid = w.workflow_uuid "
            "WHERE w.name = $1 GROUP BY w.workflow_uuid) per_workflow GROUP BY c ORDER BY c"
        ),
    }


async def queue_report(lib: Library, conn: asyncpg.Connection, n: int) -> dict[str, Any]:
    """What the database says about the drain (read once every workflow has ended):
    its window, the claims of each executor, and what is wrong, if anything."""
    sql = _queue_sql(lib.schema)
    totals = await conn.fetchrow(sql["totals"], QUEUED_WORKFLOW)
    assert totals is not None
    total, success, first_claim, last_claim, last_end, first_end = totals
    executors = [
        {
            "executor_id": r[0],
            "workflows": r[1],
            "claims": r[2],
            "first_claim_ms": r[3],
            "last_claim_ms": r[4],
            "last_end_ms": r[5],
        }
        for r in await conn.fetch(sql["by_executor"], QUEUED_WORKFLOW)
    ]
    claims = [
        {"executor_id": r[0], "at_ms": r[1] - first_claim, "workflows": r[2]}
        for r in await conn.fetch(sql["claims"], QUEUED_WORKFLOW)
    ]
    steps = {int(r[0]): int(r[1]) for r in await conn.fetch(sql["steps"], QUEUED_WORKFLOW)}
    problems = []
    if total != n or success != n:
        problems.append(f"{success} of {total} rows SUCCESS, expected {n} of {n}")
    if steps != {STEPS_PER_QUEUED_WORKFLOW: n}:
        problems.append(f"step rows per workflow {steps}, expected {{3: {n}}}")
    outcomes = await lib.list_outcomes(QUEUED_WORKFLOW)
    args = sorted(int(o.args[0]) for o in outcomes)
    if args != list(range(n)):
        problems.append(f"list_workflows shows {len(args)} workflows, not 0..{n - 1} once each")
    wrong = [o for o in outcomes if o.status != "SUCCESS" or o.output != expected(o.args[0])]
    if wrong:
        problems.append(f"{len(wrong)} workflows with a wrong status or output, e.g. {wrong[0]}")
    return {
        "rows": total,
        "success": success,
        "first_claim_ms": first_claim,
        "last_claim_ms": last_claim,
        "first_end_ms": first_end,
        "last_end_ms": last_end,
        "executors": executors,
        "claims": claims,
        "step_rows_per_workflow": steps,
        "problems": problems,
    }


def _note(message: str) -> None:
    """A progress note on stderr (the runner shows stderr's tail when a worker fails)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def dump_tasks() -> None:
    """Every asyncio task's stack, on stderr: what a stuck worker is waiting for."""
    tasks = asyncio.all_tasks()
    _note(f"{len(tasks)} asyncio tasks:")
    for task in tasks:
        print(f"--- {task!r}", file=sys.stderr)
        task.print_stack(file=sys.stderr)
    sys.stderr.flush()


async def _within(awaitable: Awaitable[Any], seconds: float, what: str) -> Any:
    """Await ``awaitable``; past ``seconds``, dump every task's stack and give up."""
    task = asyncio.ensure_future(awaitable)
    finished, _ = await asyncio.wait({task}, timeout=seconds)
    if not finished:
        _note(f"{what} has not returned after {seconds:g}s")
        dump_tasks()
        task.cancel()
        raise TimeoutError(f"{what} has not returned after {seconds:g}s")
    return task.result()


async def figure_queue_drain(lib: Library, wl: Workload, args: WorkerArgs) -> dict[str, Any]:
    """Queue, phase 2: one of the drain workers. Prints ``READY_LINE`` and waits for
    ``GO_LINE`` on stdin (the runner sends it once every worker is ready, so that they
    launch together), launches with the queue declared and its own executor ID, waits
    until the database shows every queued workflow ended, and (worker 0) reports.
    SIGUSR1 dumps every asyncio task's stack on stderr."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump_tasks)
    sql = _queue_sql(lib.schema)
    conn = await asyncpg.connect(args.url)
    try:
        print(READY_LINE, flush=True)
        if sys.stdin.readline().strip() != GO_LINE:
            raise RuntimeError("the runner did not say GO")
        go_ms = time.time() * 1000.0
        executor_id = f"{EXECUTOR_ID}-q{args.index}"
        await lib.launch(args.settings(executor_id), queues=(QUEUE_NAME,))
        launched_ms = time.time() * 1000.0
        _note(f"{executor_id} launched")

        async def done() -> bool:
            row = await conn.fetchrow(sql["unfinished"], QUEUED_WORKFLOW)
            assert row is not None
            return int(row[0]) == 0 and int(row[1]) == args.n

        try:
            await wait_until(done, 1200, "every queued workflow ended")
            done_seen_ms = time.time() * 1000.0
            _note(f"{executor_id} saw every workflow end; {len(EXECUTED)} ran here")
            report = await queue_report(lib, conn, args.n) if args.index == 0 else None
        finally:
            await _within(lib.destroy(), DESTROY_TIMEOUT_SECONDS, "destroy()")
            _note(f"{executor_id} destroyed")
    finally:
        await conn.close()
    return {
        "index": args.index,
        "executed": sorted(EXECUTED),
        "go_ms": go_ms,
        "launched_ms": launched_ms,
        "done_seen_ms": done_seen_ms,
        "report": report,
    }


Figure = Callable[[Library, Workload, WorkerArgs], Coroutine[Any, Any, dict[str, Any]]]
FIGURES: dict[str, Figure] = {
    "seq": figure_seq,
    "conc": figure_conc,
    "idle": figure_idle,
    "crash": figure_crash,
    "recover": figure_recover,
    "msg": figure_msg,
    "queue_register": figure_queue_register,
    "queue_enqueue": figure_queue_enqueue,
    "queue_drain": figure_queue_drain,
}


# -- the worker's command line -------------------------------------------------------------


def emit(result: dict[str, Any]) -> None:
    """Print a result line for the runner (the last such line of stdout wins)."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def parse_worker_args(argv: list[str] | None = None) -> WorkerArgs:
    parser = argparse.ArgumentParser(description="One benchmark figure for one library.")
    parser.add_argument("figure", choices=sorted(FIGURES))
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--n", type=int, required=True, help="workflows per run")
    parser.add_argument("--runs", type=int, default=5, help="measured runs after a warm-up")
    parser.add_argument("--pool-size", type=int, default=20)
    parser.add_argument("--index", type=int, default=0, help="which queue drain worker")
    ns = parser.parse_args(argv)
    return WorkerArgs(ns.figure, ns.db_url, ns.n, ns.runs, ns.pool_size, ns.index)


def worker_main(lib: Library, wl: Workload) -> None:
    """Entry point of a bench worker: run one figure, print its result line, exit."""
    args = parse_worker_args()
    result = asyncio.run(FIGURES[args.figure](lib, wl, args))
    emit({**result, "library_origin": lib.origin})
