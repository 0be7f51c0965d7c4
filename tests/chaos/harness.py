"""The chaos harness: bank transfers on three worker processes while faults rain down.

    python -m tests.chaos.harness --backend postgres|sqlite --seconds N [--seed S]

1. It creates a fresh database (Postgres: a new database on ``DBOS_TEST_POSTGRES``, default
   ``postgresql://postgres@127.0.0.1:5432``; SQLite: a file in a temporary directory) with
   the accounts (a known total) and an empty ledger, and starts three workers
   (``bank_app.py``, ``executor_lease_seconds`` 2).
2. For N seconds it enqueues transfers through a ``DBOSClient``, has random workers start
   some directly, and injects faults at random: SIGKILL (some workers never come back,
   others restart, mostly under a new executor ID, some with failpoints armed), SIGSTOP
   for longer than the lease then SIGCONT, SIGTERM (a graceful hand-back), a twin (a
   second process launched under a live worker's executor ID), and on Postgres restarts
   of the server (where it is the local pg_ctlcluster cluster) and
   ``pg_terminate_backend`` of every connection to the database or of one worker's. New
   workers join when the fleet has shrunk. At least one worker is always running,
   unpaused and free of failpoints.
3. Then no new faults: the workers still alive must finish every transfer before a
   deadline, and the harness checks what the database and the workers' event files hold:
   every transfer SUCCESS with its output; money conserved, account by account; exactly
   one debit and one credit ledger row per transfer; exactly the three expected step rows
   and the two transaction rows per transfer; every plain step run at least once; no
   transaction committed by a process after another one's proven execution of that
   workflow began (fencing); no worker crashed; ``list_executors()`` (where the library
   has it) agrees with the processes.

It prints one summary line (``survived/total``, lost, duplicated transaction effects,
plain-step re-executions, takeover latency p50/p95, executions taken from live
processes, faults) and a ``CHAOS_RESULT {json}`` line, and exits 1 if an invariant
failed (0 otherwise, 2 on a harness error). ``--same-ids`` is a baseline that needs no
lease: restarts reuse the executor ID, so the recovery at launch takes the work back.

Takeover latency: for every fault that takes a worker out (kill, stop, term, failpoint
exit), the workflows its process owned then (PENDING rows it owns, plus those whose
latest execution began there and had not ended) and, for each, the time from the fault
to the next ``begin`` of that workflow in another process.

Every child runs in its own process group; whatever happens, the harness SIGCONTs and
SIGKILLs them all at the end, drops the database and removes its directory (``--keep``
keeps both). The workers also die with the harness (PR_SET_PDEATHSIG, stdin EOF).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from dbos_async import DBOSClient

from .common import (
    FAILPOINT_EXIT,
    QUEUE_NAME,
    STEP_NAMES,
    TRANSACTION_STEPS,
    WORKFLOW_NAME,
    app_name,
    transfer_output,
)

REPO = Path(__file__).resolve().parents[2]
APP = Path(__file__).with_name("bank_app.py")
PG_SERVER = os.environ.get("DBOS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
LOCAL_HOSTS = ("127.0.0.1", "localhost")
LOCAL_PORT = 5432

#: Failpoints armed in some restarted workers: each process dies within seconds to a
#: minute under this load, at a precise point of the durability protocol.
FAILPOINTS = (
    "after_step_body@0.004,before_flush@0.002,after_flush@0.002,"
    "after_transaction_commit@0.004,after_claim@0.01"
)
LAUNCH_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
DB_TIMEOUT = 10.0

#: The kinds of fault that take a worker out, so its workflows must move.
WORKER_FAULTS = ("kill", "stop", "term", "failpoint", "crash")


def log(message: str) -> None:
    sys.stdout.write(f"[chaos {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stdout.flush()


# -- the database under test -------------------------------------------------------------


def local_cluster() -> str | None:
    """The version of the pg_ctlcluster cluster "main" on port 5432, if there is one."""
    if shutil.which("pg_lsclusters") is None or shutil.which("pg_ctlcluster") is None:
        return None
    out = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, timeout=30
    ).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == "main" and fields[2] == str(LOCAL_PORT):
            return fields[0]
    return None


def restartable_cluster(server: str = PG_SERVER) -> str | None:
    """The local cluster's version if ``server`` is that cluster (the harness restarts
    only a server it owns, as tests/test_pg_restart.py does), else None."""
    parts = urlsplit(server)
    if parts.hostname not in LOCAL_HOSTS or (parts.port or LOCAL_PORT) != LOCAL_PORT:
        return None
    return local_cluster()


def restart_postgres(version: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"],
        check=True,
        timeout=90,
        capture_output=True,
    )
    subprocess.run(
        ["pg_isready", "-h", "127.0.0.1", "-p", str(LOCAL_PORT), "-t", "60"],
        check=True,
        timeout=90,
        capture_output=True,
    )


class Database:
    """The database of one run: its URLs, and the queries the harness reads it with."""

    def __init__(self, backend: str, workdir: Path) -> None:
        self.backend = backend
        if backend == "postgres":
            self.name = f"chaos_{uuid.uuid4().hex[:12]}"
            self.url = f"{PG_SERVER}/{self.name}"
            self.path = None
        else:
            self.name = "bank.sqlite"
            self.path = workdir / "bank.sqlite"
            self.url = f"sqlite:///{self.path}"
        self.created = False

    @property
    def pg(self) -> bool:
        return self.backend == "postgres"

    def worker_url(self, executor_id: str) -> str:
        """The URL a worker gets: on Postgres its connections carry its name."""
        if self.pg:
            return f"{self.url}?application_name={app_name(executor_id)}"
        return self.url

    def table(self, name: str) -> str:
        """A runtime table's name on this backend (``workflow_status`` ...)."""
        return f"dbos_async.{name}" if self.pg else f"dbos_{name}"

    async def admin(self, sql: str, *args: Any) -> Any:
        conn = await asyncpg.connect(f"{PG_SERVER}/postgres", timeout=DB_TIMEOUT)
        try:
            return await conn.fetchval(sql, *args, timeout=DB_TIMEOUT)
        finally:
            await conn.close(timeout=DB_TIMEOUT)

    async def create(self, accounts: int, balance: int) -> None:
        ddl = [
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance BIGINT NOT NULL)",
            # No unique key: a transaction applied twice leaves two rows to count.
            "CREATE TABLE ledger (transfer_id TEXT NOT NULL, kind TEXT NOT NULL,"
            " account INTEGER NOT NULL, amount BIGINT NOT NULL, pid INTEGER NOT NULL,"
            " at DOUBLE PRECISION NOT NULL)",
            "CREATE INDEX ledger_transfer ON ledger (transfer_id)",
        ]
        rows = [(i, balance) for i in range(accounts)]
        if self.pg:
            await self.admin(f"CREATE DATABASE {self.name}")
            self.created = True
            conn = await asyncpg.connect(self.url, timeout=DB_TIMEOUT)
            try:
                for statement in ddl:
                    await conn.execute(statement)
                await conn.executemany("INSERT INTO accounts VALUES ($1, $2)", rows)
            finally:
                await conn.close()
        else:
            assert self.path is not None
            lite = sqlite3.connect(self.path)
            try:
                lite.execute("PRAGMA journal_mode=WAL")
                for statement in ddl:
                    lite.execute(statement)
                lite.executemany("INSERT INTO accounts VALUES (?, ?)", rows)
                lite.commit()
            finally:
                lite.close()
            self.created = True

    async def fetch(self, pg_sql: str, lite_sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of a query (``$n`` parameters on Postgres, ``?`` on SQLite)."""
        if self.pg:
            conn = await asyncpg.connect(self.url, timeout=DB_TIMEOUT)
            try:
                records = await conn.fetch(pg_sql, *args, timeout=60)
                return [tuple(r) for r in records]
            finally:
                await conn.close(timeout=DB_TIMEOUT)

        def read() -> list[tuple[Any, ...]]:
            assert self.path is not None
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=60)
            try:
                return conn.execute(lite_sql, args).fetchall()
            finally:
                conn.close()

        return await asyncio.to_thread(read)

    async def owned_by(self, executor_id: str, pid: int, shared: bool) -> set[str] | None:
        """The PENDING workflows owned by process ``pid`` (where workflows have an owner
        process and processes a lease row); else those whose row names ``executor_id``,
        or None if another live process shares it (``shared``)."""
        status, executors = self.table("workflow_status"), self.table("executors")
        try:
            rows = await self.fetch(
                f"SELECT w.workflow_uuid FROM {status} w JOIN {executors} e"
                " ON e.process_id = w.owner WHERE w.status = 'PENDING' AND e.pid = $1",
                f"SELECT w.workflow_uuid FROM {status} w JOIN {executors} e"
                " ON e.process_id = w.owner WHERE w.status = 'PENDING' AND e.pid = ?",
                pid,
            )
        except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):
            pass  # a library without owners
        except sqlite3.OperationalError as exc:
            if "no such" not in str(exc):
                raise
        else:
            return {r[0] for r in rows}
        if shared:
            return None
        rows = await self.fetch(
            f"SELECT workflow_uuid FROM {status} WHERE status = 'PENDING' AND executor_id = $1",
            f"SELECT workflow_uuid FROM {status} WHERE status = 'PENDING' AND executor_id = ?",
            executor_id,
        )
        return {r[0] for r in rows}

    async def terminate(self, application: str | None) -> int:
        """``pg_terminate_backend`` every connection to this database, or only those of
        one application name; returns how many."""
        sql = (
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()"
        )
        if application is None:
            return int(await self.admin(sql, self.name))
        return int(await self.admin(sql + " AND application_name = $2", self.name, application))

    async def drop(self) -> None:
        if self.pg and self.created:
            for attempt in range(10):
                try:
                    await self.admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
                    return
                except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                    if attempt == 9:
                        log(f"could not drop database {self.name}: {exc!r}")
                    await asyncio.sleep(1.0)


# -- worker processes --------------------------------------------------------------------


@dataclass(eq=False)
class Worker:
    """One worker process (one executor ID: a restart is a new Worker)."""

    executor_id: str
    slot: int
    failpoints: str | None
    proc: asyncio.subprocess.Process
    stderr_path: Path
    launched: asyncio.Event = field(default_factory=asyncio.Event)
    lease: bool | None = None
    stopped: bool = False
    #: Killed or told to stop: no longer counted as running, even before it exits.
    leaving: bool = False
    #: The harness killed or stopped it on purpose: its exit is no surprise.
    expected_exit: bool = False
    exit_code: int | None = None
    exited_at: float | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.exit_code is None and self.proc.returncode is None

    @property
    def running(self) -> bool:
        """Alive, launched and not paused."""
        return self.alive and self.launched.is_set() and not self.stopped and not self.leaving

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)


@dataclass
class Fault:
    kind: str
    at: float
    executor_id: str | None = None
    pid: int | None = None
    detail: str = ""
    #: The workflows the victim owned at the fault.
    owned: set[str] = field(default_factory=set)
    #: When a fault that lasts ended (a stop's SIGCONT, Postgres back).
    until: float | None = None


@dataclass
class Options:
    backend: str
    seconds: float
    seed: int
    workers: int = 3
    lease: float = 2.0
    accounts: int = 40
    balance: int = 1000
    rate: float = 8.0
    direct_rate: float = 1.0
    fault_gap: tuple[float, float] = (2.0, 5.0)
    drain: float = 60.0
    pg_restarts: int | None = None
    pg_restart_gap: float = 120.0
    failpoint_chance: float = 0.35
    worker_concurrency: int = 6
    step_delay: float = 1.0
    keep: bool = False
    keep_on_failure: bool = False
    #: Restart a worker under its first executor ID (the recovery at launch, which
    #: needs no lease, takes its workflows back): a baseline for the harness itself.
    same_ids: bool = False
    #: Otherwise, the chance that a restart reuses its predecessor's executor ID.
    same_id_chance: float = 0.25


class Harness:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.rng = random.Random(opts.seed)
        self.load_rng = random.Random(opts.seed + 1)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"chaos-{opts.backend}-"))
        self.db = Database(opts.backend, self.workdir)
        self.workers: list[Worker] = []
        self.generations: Counter[int] = Counter()
        self.faults: list[Fault] = []
        self.plan: dict[str, tuple[int, int, int]] = {}
        self.acked: set[str] = set()
        self.direct_requested: set[str] = set()
        self.enqueue_errors: list[str] = []
        self.start_errors: list[str] = []
        self.surprises: list[str] = []
        self.background: set[asyncio.Task[Any]] = set()
        self.chaos_over = False
        self.cluster: str | None = None
        self.client: DBOSClient | None = None
        self.t0 = time.time()

    # -- processes ---------------------------------------------------------------------

    def spawn_task(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def start_worker(
        self, slot: int, failpoints: str | None = None, executor_id: str | None = None
    ) -> Worker:
        gen = self.generations[slot]
        self.generations[slot] += 1
        executor_id = executor_id or f"w{slot}-{0 if self.opts.same_ids else gen}"
        stderr_path = self.workdir / f"stderr-w{slot}-{gen}.txt"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env.pop("DBOS_ASYNC_FAILPOINTS", None)
        if failpoints:
            env["DBOS_ASYNC_FAILPOINTS"] = failpoints
        cmd = [
            sys.executable,
            str(APP),
            self.db.worker_url(executor_id),
            executor_id,
            str(self.workdir),
            "--lease",
            str(self.opts.lease),
            "--worker-concurrency",
            str(self.opts.worker_concurrency),
            "--step-delay",
            str(self.opts.step_delay),
        ]
        err = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env=env,
                start_new_session=True,
            )
        finally:
            os.close(err)
        worker = Worker(executor_id, slot, failpoints, proc, stderr_path)
        self.workers.append(worker)
        worker.tasks.append(asyncio.create_task(self.read_stdout(worker)))
        worker.tasks.append(asyncio.create_task(self.monitor(worker)))
        armed = f" with failpoints {failpoints}" if failpoints else ""
        log(f"started {executor_id} pid {proc.pid}{armed}")
        return worker

    async def wait_launched(self, worker: Worker) -> None:
        """Until the worker says it launched, or exits (a failpoint may end it first);
        one that does neither in time is killed."""
        launched = asyncio.ensure_future(worker.launched.wait())
        exited = asyncio.ensure_future(worker.proc.wait())
        try:
            await asyncio.wait(
                [launched, exited], timeout=LAUNCH_TIMEOUT, return_when="FIRST_COMPLETED"
            )
        finally:
            launched.cancel()
            exited.cancel()
        if worker.alive and not worker.launched.is_set():
            self.surprises.append(f"{worker.executor_id} not launched in {LAUNCH_TIMEOUT}s")
            worker.expected_exit = True
            worker.signal(signal.SIGKILL)

    async def read_stdout(self, worker: Worker) -> None:
        assert worker.proc.stdout is not None
        async for raw in worker.proc.stdout:
            words = raw.decode(errors="replace").split()
            if not words:
                continue
            if words[0] == "launched":
                worker.lease = words[-1] == "lease=yes"
                worker.launched.set()
            elif words[0] == "started" and len(words) == 2:
                self.acked.add(words[1])
            elif words[0] == "error":
                self.start_errors.append(f"{worker.executor_id}: {' '.join(words[1:])}")

    async def monitor(self, worker: Worker) -> None:
        """Notice a worker's exit; an unexpected one is a fault (a failpoint's) or a
        crash; keep a worker running while the chaos lasts."""
        code = await worker.proc.wait()
        worker.exit_code = code
        worker.exited_at = time.time()
        if worker.expected_exit:
            return
        if code == FAILPOINT_EXIT and worker.failpoints:
            kind = "failpoint"
        else:
            kind = "crash"
            self.surprises.append(
                f"{worker.executor_id} (pid {worker.pid}) exited with {code}: "
                f"{tail(worker.stderr_path, 5)}"
            )
        await self.record(kind, worker, f"exit {code}", at=worker.exited_at)
        if not self.chaos_over:
            self.spawn_task(self.restart(worker, self.rng.uniform(0.5, 2.0)))
        elif not self.clean_running():
            self.spawn_task(self.restart(None, 0.0, clean=True))

    def running(self) -> list[Worker]:
        return [w for w in self.workers if w.running]

    def clean_running(self) -> list[Worker]:
        return [w for w in self.running() if not w.failpoints]

    def alive_count(self) -> int:
        return sum(1 for w in self.workers if w.alive)

    async def restart(self, previous: Worker | None, delay: float, clean: bool = False) -> None:
        """Start a worker in the place of ``previous`` (None: a new place) after
        ``delay``: mostly under a new executor ID, sometimes under the same one (its
        launch then recovers what its predecessor left at once), sometimes with
        failpoints armed; ``clean``: none, even once the chaos is over."""
        await asyncio.sleep(delay)
        if self.chaos_over and not clean:
            return
        slot = previous.slot if previous else 0
        executor_id = None
        if previous is not None and self.rng.random() < self.opts.same_id_chance:
            executor_id = previous.executor_id
        armed = None
        if (
            not clean
            and not self.chaos_over
            and self.clean_running()
            and self.rng.random() < self.opts.failpoint_chance
        ):
            armed = FAILPOINTS
        worker = await self.start_worker(slot, armed, executor_id)
        await self.wait_launched(worker)

    # -- faults ------------------------------------------------------------------------

    async def owned_now(self, worker: Worker) -> set[str]:
        """The PENDING workflows the worker's process owns (where the library cannot
        say, and another live process shares its executor ID, none: its events alone
        will say what it ran)."""
        try:
            owned = await asyncio.wait_for(
                self.db.owned_by(
                    worker.executor_id, worker.pid, worker.executor_id in self.shared_ids()
                ),
                DB_TIMEOUT,
            )
        except (OSError, asyncpg.PostgresError, TimeoutError, sqlite3.Error) as exc:
            log(f"could not read what {worker.executor_id} owned: {exc!r}")
            return set()
        return owned or set()

    def shared_ids(self) -> set[str]:
        """The executor IDs that more than one live process has (twins)."""
        ids = Counter(w.executor_id for w in self.workers if w.alive)
        return {executor_id for executor_id, n in ids.items() if n > 1}

    async def record(
        self,
        kind: str,
        worker: Worker | None,
        detail: str = "",
        at: float | None = None,
        owned: set[str] | None = None,
    ) -> Fault:
        """Log a fault; for one that takes a worker out, with what it owned then (read
        now, unless ``owned`` was read before the fault)."""
        fault = Fault(kind, at or time.time(), detail=detail)
        if worker is not None:
            fault.executor_id, fault.pid = worker.executor_id, worker.pid
            fault.owned = await self.owned_now(worker) if owned is None else owned
        self.faults.append(fault)
        words = [f"fault {kind}"]
        if worker is not None:
            words.append(f"{worker.executor_id} (pid {worker.pid})")
        if detail:
            words.append(detail)
        if worker is not None:
            words.append(f"owning {len(fault.owned)} pending")
        log(" ".join(words))
        return fault

    def victims(self) -> list[Worker]:
        """Workers that may be taken out now: after it, a worker free of failpoints must
        still be running."""
        return [w for w in self.running() if any(o is not w for o in self.clean_running())]

    async def kill(self, worker: Worker) -> None:
        worker.expected_exit = worker.leaving = True
        worker.signal(signal.SIGKILL)
        await self.record("kill", worker)
        # Some never come back (if enough others are running); others restart under a
        # new executor ID.
        if not self.opts.same_ids and len(self.running()) >= 3 and self.rng.random() < 0.3:
            log(f"{worker.executor_id} stays dead")
            return
        self.spawn_task(self.restart(worker, self.rng.uniform(0.5, 3.0)))

    async def stop(self, worker: Worker) -> None:
        seconds = self.opts.lease * self.rng.uniform(1.5, 3.0)
        worker.signal(signal.SIGSTOP)
        worker.stopped = True
        fault: Fault | None = None
        try:
            fault = await self.record("stop", worker, f"for {seconds:.1f}s")
            await asyncio.sleep(seconds)
        finally:
            worker.signal(signal.SIGCONT)
            worker.stopped = False
            if fault is not None:
                fault.until = time.time()

    async def term(self, worker: Worker) -> None:
        # What it owns, read first: it hands its workflows back as it stops.
        owned = await self.owned_now(worker)
        worker.expected_exit = worker.leaving = True
        worker.signal(signal.SIGTERM)
        await self.record("term", worker, owned=owned)
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await worker.proc.wait()
        except TimeoutError:
            self.surprises.append(f"{worker.executor_id} ignored SIGTERM for {STOP_TIMEOUT}s")
            worker.signal(signal.SIGKILL)
        self.spawn_task(self.restart(worker, self.rng.uniform(0.5, 2.0)))

    async def join(self) -> None:
        """A new worker joins in a new place (not a fault: the fleet grows back)."""
        slot = max(w.slot for w in self.workers) + 1
        log(f"a new worker joins: w{slot}")
        worker = await self.start_worker(slot)
        await self.wait_launched(worker)

    async def twin(self, worker: Worker) -> None:
        """Launch a second process under a running worker's executor ID: it must take
        nothing from the live one (API.md section 9)."""
        twin = await self.start_worker(worker.slot, executor_id=worker.executor_id)
        await self.record("twin", None, f"of {worker.executor_id} (pid {worker.pid}): {twin.pid}")
        await self.wait_launched(twin)

    async def pg_restart(self) -> None:
        assert self.cluster is not None
        fault = await self.record("pg_restart", None)
        started = time.monotonic()
        try:
            await asyncio.to_thread(restart_postgres, self.cluster)
        finally:
            fault.until = time.time()
        fault.detail = f"took {time.monotonic() - started:.1f}s"
        log(f"postgres is back after {fault.detail[5:]}")

    async def pg_terminate(self, worker: Worker | None) -> None:
        name = app_name(worker.executor_id) if worker else None
        n = await self.db.terminate(name)
        await self.record("pg_terminate", None, f"{n} connections of {name or 'everyone'}")

    def pg_restart_budget(self) -> bool:
        if self.cluster is None:
            return False
        done = [f for f in self.faults if f.kind == "pg_restart"]
        limit = self.opts.pg_restarts
        if limit is None:
            limit = max(1, int(self.opts.seconds // self.opts.pg_restart_gap))
        if len(done) >= limit:
            return False
        # Spread them: none in the first fifth of the run, then one per share of it.
        share = self.opts.seconds / (limit + 1)
        return time.time() - self.t0 >= share * (len(done) + 1)

    async def one_fault(self) -> None:
        victims = self.victims()
        choices: list[tuple[str, float]] = []
        if victims:
            choices += [("kill", 3.0), ("stop", 2.0), ("term", 1.0)]
        if not self.opts.same_ids and self.alive_count() <= self.opts.workers and self.running():
            choices.append(("twin", 0.5))
        if self.alive_count() < self.opts.workers:
            choices.append(("join", 2.0))  # the fleet grows back after deaths
        if self.db.pg:
            choices += [("pg_terminate_all", 1.0), ("pg_terminate_one", 1.0)]
            if self.pg_restart_budget():
                choices.append(("pg_restart", 4.0))
        if not choices:
            return
        kind = self.rng.choices([c for c, _ in choices], [w for _, w in choices])[0]
        if kind == "kill":
            await self.kill(self.rng.choice(victims))
        elif kind == "stop":
            self.spawn_task(self.stop(self.rng.choice(victims)))
        elif kind == "term":
            self.spawn_task(self.term(self.rng.choice(victims)))
        elif kind == "join":
            self.spawn_task(self.join())
        elif kind == "twin":
            self.spawn_task(self.twin(self.rng.choice(self.running())))
        elif kind == "pg_restart":
            await self.pg_restart()
        elif kind == "pg_terminate_all":
            await self.pg_terminate(None)
        else:
            alive = [w for w in self.workers if w.alive and w.launched.is_set()]
            if alive:
                await self.pg_terminate(self.rng.choice(alive))

    async def inject(self, until: float) -> None:
        low, high = self.opts.fault_gap
        while True:
            await asyncio.sleep(self.rng.uniform(low, high))
            if time.monotonic() >= until:
                return
            try:
                await self.one_fault()
            except (OSError, asyncpg.PostgresError, TimeoutError, subprocess.SubprocessError) as e:
                log(f"a fault could not be injected: {e!r}")

    # -- load --------------------------------------------------------------------------

    def new_transfer(self, prefix: str) -> tuple[str, int, int, int]:
        n = len(self.plan)
        src, dst = self.load_rng.sample(range(self.opts.accounts), 2)
        amount = self.load_rng.randint(1, 100)
        transfer_id = f"{prefix}{n:06d}"
        self.plan[transfer_id] = (src, dst, amount)
        return transfer_id, src, dst, amount

    async def enqueue(self, until: float) -> None:
        assert self.client is not None
        while time.monotonic() < until:
            transfer_id, src, dst, amount = self.new_transfer("q")
            options: Any = {
                "queue_name": QUEUE_NAME,
                "workflow_name": WORKFLOW_NAME,
                "workflow_id": transfer_id,
            }
            try:
                await asyncio.wait_for(
                    self.client.enqueue(options, src, dst, amount, transfer_id), 60
                )
                self.acked.add(transfer_id)
            except Exception as exc:  # an unknown outcome: the database says at the end
                self.enqueue_errors.append(f"{transfer_id}: {exc!r}")
            await asyncio.sleep(1.0 / self.opts.rate)

    async def start_directly(self, until: float) -> None:
        while time.monotonic() < until:
            await asyncio.sleep(self.load_rng.expovariate(self.opts.direct_rate))
            running = self.running()
            if not running:
                continue
            worker = self.load_rng.choice(running)
            transfer_id, src, dst, amount = self.new_transfer(f"d{worker.slot}-")
            self.direct_requested.add(transfer_id)
            assert worker.proc.stdin is not None
            try:
                worker.proc.stdin.write(f"start {transfer_id} {src} {dst} {amount}\n".encode())
                await asyncio.wait_for(worker.proc.stdin.drain(), 5)
            except (OSError, TimeoutError):
                pass  # it died meanwhile: the transfer exists only if its row does

    # -- the run -----------------------------------------------------------------------

    async def status_counts(self) -> Counter[str]:
        status = self.db.table("workflow_status")
        rows = await self.db.fetch(
            f"SELECT status, count(*) FROM {status} WHERE name = $1 GROUP BY status",
            f"SELECT status, count(*) FROM {status} WHERE name = ? GROUP BY status",
            WORKFLOW_NAME,
        )
        return Counter({r[0]: int(r[1]) for r in rows})

    async def progress(self) -> None:
        while True:
            await asyncio.sleep(10)
            with contextlib.suppress(Exception):
                counts = await asyncio.wait_for(self.status_counts(), DB_TIMEOUT)
                running = self.running()
                log(
                    f"t={time.time() - self.t0:.0f}s planned {len(self.plan)} "
                    f"{dict(sorted(counts.items()))} workers running "
                    f"{[w.executor_id for w in running]} faults {len(self.faults)}"
                )

    async def run(self) -> Report:
        opts = self.opts
        await self.db.create(opts.accounts, opts.balance)
        log(f"{opts.backend} database {self.db.url}, work directory {self.workdir}")
        if self.db.pg:
            self.cluster = await asyncio.to_thread(restartable_cluster)
            if self.cluster is None or opts.pg_restarts == 0:
                self.cluster = None
                log("no Postgres restarts in this run (not the local pg_ctlcluster cluster)")
        first = [await self.start_worker(slot) for slot in range(1, opts.workers + 1)]
        await asyncio.gather(*(self.wait_launched(w) for w in first))
        if not all(w.launched.is_set() for w in first):
            raise HarnessError("the first workers did not launch:\n" + self.stderr_tails())
        lease = first[0].lease
        log(f"workers launched; lease support: {'yes' if lease else 'NO (pre-lease library)'}")
        self.client = DBOSClient(self.db.url)
        self.t0 = time.time()
        until = time.monotonic() + opts.seconds
        progress = self.spawn_task(self.progress())
        await asyncio.gather(self.enqueue(until), self.start_directly(until), self.inject(until))
        self.chaos_over = True
        log("chaos over: no new faults; draining")
        # Every paused worker resumes; restarts under way finish launching.
        pending = [t for t in self.background if t is not progress]
        if pending:
            await asyncio.wait(pending, timeout=STOP_TIMEOUT + LAUNCH_TIMEOUT)
        if not self.clean_running():
            await self.restart(None, 0.0, clean=True)
        drained_at = time.monotonic()
        deadline = drained_at + opts.drain
        expected: set[str] = set()
        counts: Counter[str] = Counter()
        while True:
            await asyncio.sleep(1.0)
            if time.monotonic() > deadline:
                log(f"drain deadline ({opts.drain:.0f}s) passed: {dict(counts)}")
                break
            try:
                expected = await self.expected()
                counts = await self.status_counts()
            except (OSError, asyncpg.PostgresError, TimeoutError, sqlite3.Error) as exc:
                log(f"could not read the statuses: {exc!r}")
                continue
            unfinished = counts.get("PENDING", 0) + counts.get("ENQUEUED", 0)
            if not unfinished and sum(counts.values()) >= len(expected):
                log(
                    f"all {len(expected)} transfers ended {time.monotonic() - drained_at:.1f}s"
                    f" into the drain: {dict(counts)}"
                )
                break
        expected = await self.expected()
        progress.cancel()
        return await self.check(expected, lease)

    async def expected(self) -> set[str]:
        """Every transfer that must finish: the acknowledged ones, and every planned one
        the database holds (an enqueue or start whose reply was lost may have worked)."""
        status = self.db.table("workflow_status")
        rows = await self.db.fetch(
            f"SELECT workflow_uuid FROM {status} WHERE name = $1",
            f"SELECT workflow_uuid FROM {status} WHERE name = ?",
            WORKFLOW_NAME,
        )
        return self.acked | ({r[0] for r in rows} & set(self.plan))

    # -- the verdict -------------------------------------------------------------------

    async def check(self, expected: set[str], lease: bool | None) -> Report:
        db = self.db
        status, steps, txs = (
            db.table("workflow_status"),
            db.table("operation_outputs"),
            db.table("transaction_outputs"),
        )
        report = Report(self.opts, lease, commit())
        report.total = len(expected)
        rows = await db.fetch(
            f"SELECT workflow_uuid, status, output, executor_id, recovery_attempts"
            f" FROM {status} WHERE name = $1",
            f"SELECT workflow_uuid, status, output, executor_id, recovery_attempts"
            f" FROM {status} WHERE name = ?",
            WORKFLOW_NAME,
        )
        by_id = {r[0]: r for r in rows}
        report.unknown = sorted(set(by_id) - set(self.plan))
        report.max_recovery_attempts = max((int(r[4]) for r in rows), default=0)
        decode = json.loads
        for transfer_id in sorted(expected):
            row = by_id.get(transfer_id)
            if row is None or row[1] != "SUCCESS":
                where = f"{row[1]} on {row[3]}" if row else "no row"
                report.lost.append(f"{transfer_id} ({where})")
                continue
            want = transfer_output(transfer_id, *self.plan[transfer_id])
            try:
                got = decode(row[2]) if row[2] is not None else None
            except ValueError:
                got = row[2]
            if got != want:
                report.wrong_output.append(f"{transfer_id}: {got!r} != {want!r}")
        report.survived = report.total - len(report.lost)

        # Money: in total, and account by account against the transfers that finished.
        balances = dict(
            await db.fetch("SELECT id, balance FROM accounts", "SELECT id, balance FROM accounts")
        )
        report.money = sum(balances.values())
        report.initial_money = self.opts.accounts * self.opts.balance
        want_balances = {i: self.opts.balance for i in range(self.opts.accounts)}
        ledger = await db.fetch(
            "SELECT transfer_id, kind, account, amount, pid, at FROM ledger",
            "SELECT transfer_id, kind, account, amount, pid, at FROM ledger",
        )
        applied: Counter[tuple[str, str]] = Counter((r[0], r[1]) for r in ledger)
        for (transfer_id, kind), n in applied.items():
            if transfer_id not in expected:
                report.ledger_unknown.append(f"{transfer_id}/{kind} x{n}")
                continue
            src, dst, amount = self.plan[transfer_id]
            if kind == "debit":
                want_balances[src] -= amount * n
            else:
                want_balances[dst] += amount * n
            if n > 1:
                report.duplicated_tx += n - 1
                report.duplicates.append(f"{transfer_id}/{kind} x{n}")
        for transfer_id in sorted(expected):
            for kind in ("debit", "credit"):
                if applied[(transfer_id, kind)] == 0 and transfer_id not in report.lost_ids:
                    report.missing_tx.append(f"{transfer_id}/{kind}")
        report.bad_balances = [
            f"account {i}: {balances.get(i)} != {b}"
            for i, b in sorted(want_balances.items())
            if balances.get(i) != b
        ]

        # Step rows: exactly the three steps, by ID and name, no errors; transaction rows:
        # exactly the two transactions.
        step_rows = await db.fetch(
            f"SELECT s.workflow_uuid, s.function_id, s.function_name, s.error FROM {steps} s"
            f" JOIN {status} w ON w.workflow_uuid = s.workflow_uuid WHERE w.name = $1",
            f"SELECT s.workflow_uuid, s.function_id, s.function_name, s.error FROM {steps} s"
            f" JOIN {status} w ON w.workflow_uuid = s.workflow_uuid WHERE w.name = ?",
            WORKFLOW_NAME,
        )
        recorded: defaultdict[str, list[tuple[int, str]]] = defaultdict(list)
        for workflow_id, function_id, name, error in step_rows:
            recorded[workflow_id].append((int(function_id), name))
            if error is not None:
                report.step_errors.append(f"{workflow_id}#{function_id} {name}: {error[:200]}")
        want_steps = sorted(STEP_NAMES.items())
        for transfer_id in sorted(expected - report.lost_ids):
            if sorted(recorded[transfer_id]) != want_steps:
                report.bad_steps.append(f"{transfer_id}: {sorted(recorded[transfer_id])}")
        tx_rows = await db.fetch(
            f"SELECT workflow_uuid, function_id FROM {txs}",
            f"SELECT workflow_uuid, function_id FROM {txs}",
        )
        tx_recorded: defaultdict[str, list[int]] = defaultdict(list)
        for workflow_id, function_id in tx_rows:
            tx_recorded[workflow_id].append(int(function_id))
        for transfer_id in sorted(expected - report.lost_ids):
            if sorted(tx_recorded[transfer_id]) != list(TRANSACTION_STEPS):
                report.bad_tx_rows.append(f"{transfer_id}: {sorted(tx_recorded[transfer_id])}")

        # The plain step: at least once per finished transfer; beyond once is a
        # re-execution (allowed: a step is at least once).
        events = self.events()
        effects = Counter(e.transfer_id for e in events if e.kind == "effect")
        report.step_reexecutions = sum(n - 1 for t, n in effects.items() if t in expected)
        report.missing_effects = [t for t in sorted(expected - report.lost_ids) if effects[t] == 0]
        report.executions = Counter(e.transfer_id for e in events if e.kind == "begin")
        self.takeovers(events, report)
        # Who recorded each plain step (its output is the PID of the process that ran
        # it) and when it began there: with the ledger, what proves ownership.
        effect_rows = await db.fetch(
            f"SELECT s.workflow_uuid, s.output, s.started_at_epoch_ms FROM {steps} s"
            f" JOIN {status} w ON w.workflow_uuid = s.workflow_uuid"
            " WHERE w.name = $1 AND s.function_id = 2",
            f"SELECT s.workflow_uuid, s.output, s.started_at_epoch_ms FROM {steps} s"
            f" JOIN {status} w ON w.workflow_uuid = s.workflow_uuid"
            " WHERE w.name = ? AND s.function_id = 2",
            WORKFLOW_NAME,
        )
        proofs = [(str(r[0]), int(r[4]), float(r[5])) for r in ledger]
        for workflow_id, output, started in effect_rows:
            with contextlib.suppress(TypeError, ValueError):
                proofs.append((workflow_id, int(json.loads(output)), int(started) / 1000))
        executions = self.executions(events, proofs)
        self.fencing(executions, ledger, report)
        self.steals(executions, report)
        self.timelines(events, ledger, report)
        report.faults = Counter(f.kind for f in self.faults)
        report.surprises = list(self.surprises)
        report.start_errors = list(self.start_errors)
        report.acked_direct = len(self.acked & self.direct_requested)
        report.enqueue_errors = len(self.enqueue_errors)
        report.abandoned = sum(
            tail(w.stderr_path, 10**6).count("was taken over by another process")
            for w in self.workers
        )
        await self.check_executors(report)
        return report

    async def check_executors(self, report: Report) -> None:
        """Where the library has ``list_executors``: every worker still running is
        listed alive, every process gone for more than two leases is listed dead, and
        once every transfer ended nobody owns a PENDING workflow."""
        lister = getattr(self.client, "list_executors", None)
        if lister is None:
            return
        try:
            entries = [as_dict(e) for e in await asyncio.wait_for(lister(), DB_TIMEOUT)]
        except Exception as exc:
            report.executor_errors.append(f"list_executors() raised {exc!r}")
            return
        report.executors = len(entries)
        by_pid = {int(e["pid"]): e for e in entries if e.get("pid") is not None}
        now, lease = time.time(), self.opts.lease
        for worker in self.workers:
            entry = by_pid.get(worker.pid)
            name = f"{worker.executor_id} (pid {worker.pid})"
            if worker.running:
                if entry is None or not entry.get("alive"):
                    report.executor_errors.append(f"{name} runs but is listed as {entry}")
                elif entry.get("executor_id") != worker.executor_id:
                    report.executor_errors.append(f"{name} is listed as {entry}")
                continue
            gone_long = worker.exited_at is not None and now - worker.exited_at > 2 * lease
            if gone_long and entry is not None and entry.get("alive"):
                report.executor_errors.append(f"{name} is gone but listed alive: {entry}")
        if not report.lost:
            for entry in entries:
                if entry.get("workflows"):
                    report.executor_errors.append(f"owns PENDING workflows at the end: {entry}")

    def events(self) -> list[Event]:
        out = []
        for path in sorted(self.workdir.glob("events-*.log")):
            for line in path.read_text().splitlines():
                words = line.split()
                if len(words) == 4:
                    out.append(Event(words[0], words[1], int(words[2]), float(words[3])))
        return out

    def executions(
        self, events: list[Event], proofs: list[tuple[str, int, float]]
    ) -> dict[str, list[Execution]]:
        """Each transfer's executions, by their ``begin``, with whether each is proven
        real: a process that claimed a workflow and was paused before its body began may
        begin it after losing it (its writes are then fenced off; it may even replay every
        step the new owner recorded and reach the body's end), so only an execution that
        committed something (``proofs``: its ledger rows and its recorded plain step, by
        transfer, PID and time) owned the workflow for sure."""
        out: defaultdict[str, list[Execution]] = defaultdict(list)
        for e in sorted(events, key=lambda e: e.t):
            if e.kind == "begin":
                mine = [x for x in out[e.transfer_id] if x.pid == e.pid and x.until is None]
                for x in mine:
                    x.until = e.t
                out[e.transfer_id].append(Execution(e.pid, e.t))
        for transfer_id, pid, t in proofs:
            for x in out.get(transfer_id, []):
                if x.pid == pid and x.began <= t < (x.until or math.inf):
                    x.proven = True
        return out

    def fencing(
        self, executions: dict[str, list[Execution]], ledger: list[tuple[Any, ...]], report: Report
    ) -> None:
        """A transaction a process committed for a workflow after another process's
        proven execution of it began, with no new execution of its own since: a process
        that had lost the workflow committed for it. (The ledger row's time is when the
        body began, before the commit, so a commit racing the takeover goes unseen: a
        lower bound.)"""
        for transfer_id, kind, _, _, pid, at in ledger:
            runs = executions.get(transfer_id, [])
            mine = max((x.began for x in runs if x.pid == pid and x.began < at), default=None)
            for x in runs:
                if x.pid != pid and x.proven and x.began < at and (mine is None or mine < x.began):
                    report.fenced_commits.append(
                        f"{transfer_id}/{kind} by pid {pid} at {at - self.t0:.2f}s, after pid "
                        f"{x.pid} began it at {x.began - self.t0:.2f}s"
                    )
                    break

    def timelines(self, events: list[Event], ledger: list[tuple[Any, ...]], report: Report) -> None:
        """What happened to a few transfers that failed a check (or were taken from a
        live process), for the reader."""
        flagged: list[str] = []
        for entry in (
            report.fenced_commits
            + report.duplicates
            + report.lost
            + report.bad_steps
            + report.bad_tx_rows
            + report.wrong_output
            + report.steals
        ):
            transfer_id = entry.replace("/", " ").replace(":", " ").split()[0]
            if transfer_id not in flagged:
                flagged.append(transfer_id)
        names = {w.pid: w.executor_id for w in self.workers}
        for transfer_id in flagged[:3]:
            items = [(e.t, e.kind, e.pid) for e in events if e.transfer_id == transfer_id]
            items += [
                (float(r[5]), f"commit {r[1]}", int(r[4])) for r in ledger if r[0] == transfer_id
            ]
            items += [
                (f.at, f"fault {f.kind}", f.pid or 0)
                for f in self.faults
                if f.kind not in ("twin", "pg_terminate") and transfer_id in f.owned
            ]
            shown = "; ".join(
                f"+{t - self.t0:.2f}s {what} {names.get(pid, '?')}({pid})"
                for t, what, pid in sorted(items)
            )
            report.timelines.append(f"{transfer_id}: {shown}")

    def steals(self, executions: dict[str, list[Execution]], report: Report) -> None:
        """Proven executions that began while the process of the one before was alive,
        unpaused and not leaving: taken from a live process. Excused: a takeover during
        or within two leases after the owner's pause, a Postgres restart, or (on SQLite,
        whose file lock a paused process may hold) anyone's pause. A figure, not an
        invariant: a starved process may miss its lease."""
        slack = 2 * self.opts.lease
        workers = {w.pid: w for w in self.workers}
        paused: defaultdict[int, list[tuple[float, float]]] = defaultdict(list)
        everyone: list[tuple[float, float]] = []
        leaving: dict[int, float] = {}
        for f in self.faults:
            window = (f.at, (f.until or f.at) + slack)
            if f.kind == "stop" and f.pid is not None:
                paused[f.pid].append(window)
                if not self.db.pg:
                    everyone.append(window)
            elif f.kind == "pg_restart":
                everyone.append(window)
            elif f.kind in WORKER_FAULTS and f.pid is not None:
                leaving.setdefault(f.pid, f.at)
        for transfer_id, runs in executions.items():
            proven = [x for x in runs if x.proven]
            for previous, x in itertools.pairwise(proven):
                if previous.pid == x.pid or previous.pid not in workers:
                    continue
                owner = workers[previous.pid]
                gone = min(leaving.get(owner.pid, math.inf), owner.exited_at or math.inf)
                excused = paused[owner.pid] + everyone
                if x.began >= gone or any(a <= x.began <= b for a, b in excused):
                    continue
                report.steals.append(
                    f"{transfer_id}: pid {x.pid} began it at {x.began - self.t0:.2f}s while "
                    f"pid {owner.pid} ({owner.executor_id}) ran it"
                )

    def takeovers(self, events: list[Event], report: Report) -> None:
        """For every fault that took a worker out: each workflow it owned then, and when
        another process next began running it."""
        by_transfer: defaultdict[str, list[Event]] = defaultdict(list)
        for e in sorted(events, key=lambda e: e.t):
            by_transfer[e.transfer_id].append(e)
        for fault in self.faults:
            if fault.kind not in WORKER_FAULTS:
                continue
            owned = set(fault.owned)
            for transfer_id, evs in by_transfer.items():
                before = [e for e in evs if e.t <= fault.at and e.kind in ("begin", "end")]
                if before and before[-1].kind == "begin" and before[-1].pid == fault.pid:
                    owned.add(transfer_id)
            for transfer_id in owned:
                evs = by_transfer.get(transfer_id, [])
                later = [e for e in evs if e.t > fault.at and e.kind == "begin"]
                elsewhere = [e for e in later if e.pid != fault.pid]
                if elsewhere:
                    report.latencies[fault.kind].append(elsewhere[0].t - fault.at)
                elif any(e.t > fault.at and e.pid == fault.pid for e in evs):
                    report.resumed_by_owner += 1
                elif any(e.kind == "end" for e in evs):
                    pass  # it had finished, only its status was still being written
                else:
                    report.not_taken_over.append(f"{transfer_id} (after {fault.kind})")

    # -- cleanup -----------------------------------------------------------------------

    def stderr_tails(self, only_interesting: bool = False) -> str:
        parts = []
        for worker in self.workers:
            text = tail(worker.stderr_path, 25)
            if not text:
                continue
            if only_interesting and "Traceback" not in text and "ERROR" not in text:
                continue
            parts.append(
                f"--- {worker.executor_id} (pid {worker.pid}, exit {worker.exit_code})\n{text}"
            )
        return "\n".join(parts)

    async def close(self) -> None:
        for task in list(self.background):
            task.cancel()
        for worker in self.workers:
            if worker.proc.returncode is None:
                worker.expected_exit = True
                worker.signal(signal.SIGCONT)
                worker.signal(signal.SIGKILL)
        for worker in self.workers:
            with contextlib.suppress(TimeoutError, ProcessLookupError):
                await asyncio.wait_for(worker.proc.wait(), 10)
            for task in worker.tasks:
                task.cancel()
            if worker.proc.stdin is not None:
                worker.proc.stdin.close()
        await asyncio.gather(*self.background, return_exceptions=True)
        for worker in self.workers:
            await asyncio.gather(*worker.tasks, return_exceptions=True)
        if self.client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.destroy(), 15)
        if self.opts.keep:
            log(f"kept database {self.db.url} and directory {self.workdir}")
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.db.drop(), 30)
        shutil.rmtree(self.workdir, ignore_errors=True)


class HarnessError(Exception):
    """The harness could not run the experiment (not an invariant failure)."""


@dataclass
class Execution:
    """One run of a transfer's body in one process, from its ``begin`` until that
    process's next ``begin`` of it (None: none)."""

    pid: int
    began: float
    until: float | None = None
    proven: bool = False


@dataclass
class Event:
    kind: str
    transfer_id: str
    pid: int
    t: float


def as_dict(entry: Any) -> dict[str, Any]:
    """An entry of ``list_executors()`` (a dict, a dataclass or an object) as a dict."""
    if isinstance(entry, dict):
        return entry
    if dataclasses.is_dataclass(entry) and not isinstance(entry, type):
        return dataclasses.asdict(entry)
    fields = ("executor_id", "hostname", "pid", "application_version", "alive", "workflows")
    return {name: getattr(entry, name, None) for name in fields}


def tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def commit() -> str:
    """The last commit that changed the library (``+dirty``: with changes on top)."""

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip()

    last = git("log", "-1", "--format=%h", "--", "dbos_async") or "unknown"
    return last + ("+dirty" if git("status", "--porcelain", "--", "dbos_async") else "")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile (q in 0..100) of ``values``, or None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Report:
    opts: Options
    lease: bool | None
    commit: str
    total: int = 0
    survived: int = 0
    lost: list[str] = field(default_factory=list)
    wrong_output: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    money: int = 0
    initial_money: int = 0
    bad_balances: list[str] = field(default_factory=list)
    duplicated_tx: int = 0
    duplicates: list[str] = field(default_factory=list)
    missing_tx: list[str] = field(default_factory=list)
    ledger_unknown: list[str] = field(default_factory=list)
    fenced_commits: list[str] = field(default_factory=list)
    steals: list[str] = field(default_factory=list)
    timelines: list[str] = field(default_factory=list)
    #: Runs the library logged as abandoned after a takeover (fenced off).
    abandoned: int = 0
    executors: int | None = None
    executor_errors: list[str] = field(default_factory=list)
    step_errors: list[str] = field(default_factory=list)
    bad_steps: list[str] = field(default_factory=list)
    bad_tx_rows: list[str] = field(default_factory=list)
    step_reexecutions: int = 0
    missing_effects: list[str] = field(default_factory=list)
    executions: Counter[str] = field(default_factory=Counter)
    latencies: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    resumed_by_owner: int = 0
    not_taken_over: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    surprises: list[str] = field(default_factory=list)
    start_errors: list[str] = field(default_factory=list)
    acked_direct: int = 0
    enqueue_errors: int = 0
    max_recovery_attempts: int = 0

    @property
    def lost_ids(self) -> set[str]:
        return {entry.split(" ", 1)[0] for entry in self.lost}

    def failures(self) -> dict[str, list[str]]:
        """Every invariant that failed, with examples."""
        checks: dict[str, list[str]] = {
            "lost (not SUCCESS at the deadline)": self.lost,
            "wrong output": self.wrong_output,
            "workflows nobody planned": self.unknown,
            "money not conserved": (
                [f"total {self.money} != {self.initial_money}"]
                if self.money != self.initial_money
                else []
            ),
            "balances that disagree with the ledger": self.bad_balances,
            "transactions applied more than once": self.duplicates,
            "transactions of finished transfers never applied": self.missing_tx,
            "ledger rows of no transfer": self.ledger_unknown,
            "commits by a process that had lost the workflow": self.fenced_commits,
            "recorded step errors": self.step_errors,
            "step rows other than the three steps": self.bad_steps,
            "transaction rows other than the two transactions": self.bad_tx_rows,
            "finished transfers whose plain step never ran": self.missing_effects,
            "worker crashes and harness surprises": self.surprises,
            "direct starts that failed": self.start_errors,
            "list_executors() disagrees with the processes": self.executor_errors,
        }
        return {name: items for name, items in checks.items() if items}

    def all_latencies(self) -> list[float]:
        return [v for values in self.latencies.values() for v in values]

    def summary(self) -> str:
        latencies = self.all_latencies()

        def fmt(q: float) -> str:
            v = percentile(latencies, q)
            return "-" if v is None else f"{v:.2f}s"

        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        verdict = "FAILED: " + "; ".join(self.failures()) if self.failures() else "OK"
        return (
            f"chaos {self.opts.backend} seed={self.opts.seed} {self.opts.seconds:.0f}s "
            f"commit={self.commit} lease={'yes' if self.lease else 'no'}: "
            f"survived {self.survived}/{self.total}, lost {len(self.lost)}, "
            f"duplicated transaction effects {self.duplicated_tx}, "
            f"plain-step re-executions {self.step_reexecutions}, "
            f"takeover p50 {fmt(50)} p95 {fmt(95)} (n={len(latencies)}), "
            f"taken from live processes {len(self.steals)}, "
            f"faults {sum(self.faults.values())} ({faults}) -> {verdict}"
        )

    def as_json(self) -> dict[str, Any]:
        latencies = self.all_latencies()
        return {
            "backend": self.opts.backend,
            "seed": self.opts.seed,
            "seconds": self.opts.seconds,
            "commit": self.commit,
            "lease": self.lease,
            "total": self.total,
            "survived": self.survived,
            "lost": len(self.lost),
            "duplicated_tx": self.duplicated_tx,
            "step_reexecutions": self.step_reexecutions,
            "takeover_p50": percentile(latencies, 50),
            "takeover_p95": percentile(latencies, 95),
            "takeover_max": max(latencies, default=None),
            "takeovers": len(latencies),
            "takeover_by_fault": {
                k: {"n": len(v), "p50": percentile(v, 50), "p95": percentile(v, 95)}
                for k, v in sorted(self.latencies.items())
            },
            "fenced_commits": len(self.fenced_commits),
            "steals": len(self.steals),
            "executors_listed": self.executors,
            "resumed_by_owner": self.resumed_by_owner,
            "abandoned_runs_logged": self.abandoned,
            "not_taken_over": len(self.not_taken_over),
            "max_executions": max(self.executions.values(), default=0),
            "max_recovery_attempts": self.max_recovery_attempts,
            "direct_started": self.acked_direct,
            "enqueue_errors": self.enqueue_errors,
            "faults": dict(self.faults),
            "failures": {k: len(v) for k, v in self.failures().items()},
            "ok": not self.failures(),
        }

    def details(self) -> str:
        lines = []
        for name, items in self.failures().items():
            shown = ", ".join(items[:8]) + (f" ... ({len(items)} in all)" if len(items) > 8 else "")
            lines.append(f"  {name}: {shown}")
        for name, items in (
            ("owned by a faulted worker and never run elsewhere", self.not_taken_over),
            ("taken from a live process (a figure)", self.steals),
        ):
            if items:
                lines.append(f"  {name}: {', '.join(items[:8])} ({len(items)} in all)")
        lines += [f"  timeline of {line}" for line in self.timelines]
        return "\n".join(lines)


# -- entry point -------------------------------------------------------------------------


async def run(opts: Options) -> int:
    harness = Harness(opts)
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, main.cancel)
    log(
        f"{opts.backend}: {opts.seconds:.0f}s of chaos, seed {opts.seed}, {opts.workers} "
        f"workers, lease {opts.lease}s, {opts.rate}/s enqueued + {opts.direct_rate}/s direct"
    )
    report: Report | None = None
    try:
        async with asyncio.timeout(opts.seconds + opts.drain + 300):
            report = await harness.run()
    except HarnessError as exc:
        log(f"harness error: {exc}")
        return 2
    finally:
        # A second SIGTERM during the cleanup kills the harness outright; its workers die
        # with it (PR_SET_PDEATHSIG).
        loop.remove_signal_handler(signal.SIGTERM)
        if opts.keep_on_failure and (report is None or report.failures() or report.steals):
            harness.opts.keep = True
        failed_tails = harness.stderr_tails(only_interesting=True)
        await harness.close()
    print(report.summary(), flush=True)
    print("CHAOS_RESULT " + json.dumps(report.as_json(), sort_keys=True), flush=True)
    details = report.details()
    if details:
        print(details, flush=True)
    if report.failures():
        if failed_tails:
            print("workers' stderr (those with errors):\n" + failed_tails, flush=True)
        return 1
    return 0


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos.harness", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--backend", choices=("postgres", "sqlite"), required=True)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long faults rain")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--lease", type=float, default=2.0, help="executor_lease_seconds")
    parser.add_argument("--rate", type=float, default=8.0, help="transfers enqueued per second")
    parser.add_argument("--direct-rate", type=float, default=1.0, help="direct starts per second")
    parser.add_argument(
        "--fault-gap",
        type=float,
        nargs=2,
        default=(2.0, 5.0),
        metavar=("MIN", "MAX"),
        help="seconds between faults, drawn uniformly",
    )
    parser.add_argument("--drain", type=float, default=None, help="seconds to finish at the end")
    parser.add_argument(
        "--pg-restarts",
        type=int,
        default=None,
        help="Postgres restarts at most (default: one per 120 s of chaos; 0: none)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and the files")
    parser.add_argument(
        "--keep-on-failure",
        action="store_true",
        help="keep them if a check failed or a workflow was taken from a live process",
    )
    parser.add_argument(
        "--same-ids",
        action="store_true",
        help="restart workers under their first executor ID, always, and launch no twins"
        " (the recovery at launch takes their workflows back: a baseline that needs no"
        " lease)",
    )
    args = parser.parse_args(argv)
    if args.workers < 2:
        parser.error("--workers must be at least 2")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    drain = args.drain if args.drain is not None else max(60.0, 30 * args.lease)
    return Options(
        backend=args.backend,
        seconds=args.seconds,
        seed=seed,
        workers=args.workers,
        lease=args.lease,
        rate=args.rate,
        direct_rate=args.direct_rate,
        fault_gap=tuple(args.fault_gap),
        drain=drain,
        pg_restarts=args.pg_restarts,
        keep=args.keep,
        keep_on_failure=args.keep_on_failure,
        same_ids=args.same_ids,
    )


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        return asyncio.run(run(opts))
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:  # SIGTERM
        return 143


if __name__ == "__main__":
    sys.exit(main())
