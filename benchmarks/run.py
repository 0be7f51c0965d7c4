"""Benchmark runner: dbos_async against DBOS Transact, on identical workloads.

    python benchmarks/run.py [--runs 5] [--only seq,conc,...] [--quick]

Figures: seq, conc, commits (measured during conc), idle, recovery, msg, queue, floor,
sqlite.
Each library runs in its own worker subprocess (bench_dbos_async.py, bench_dbos.py),
on its own freshly created Postgres database per figure. Prints one table to stdout
(progress goes to stderr) and writes the raw results to benchmarks/results/latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from _common import (
    GO_LINE,
    READY_LINE,
    RECOVERING_ENV,
    RESULT_PREFIX,
    Summary,
    create_database,
    drop_database,
    floor_p50_ms,
    server_version,
)

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_FILE = BENCH_DIR / "results" / "latest.json"
FIGURES = ("seq", "conc", "commits", "idle", "recovery", "floor", "sqlite", "msg", "queue")
WORKER_TIMEOUT_SECONDS = 3600
#: Commits one `seq` workflow waits for in a row: the status insert, steps 1 and 2, and
#: step 3 with the final status (a step's row commits before the next effect, not before
#: the workflow goes on: docs/architecture.md rule 1).
COMMITS_PER_SEQ_WORKFLOW = 4
#: The queue figure drains its queue with this many worker processes, each in turn.
QUEUE_WORKER_COUNTS = (1, 2)


@dataclass(frozen=True)
class System:
    name: str  # as shown in the table
    slug: str  # in database names
    script: str


DBOS_ASYNC = System("dbos_async", "dbos_async", "bench_dbos_async.py")
DBOS = System("DBOS", "dbos", "bench_dbos.py")


@dataclass(frozen=True)
class Sizes:
    seq: int
    conc: int
    idle: int
    recovery: int
    floor: int
    msg: int
    queue: int


FULL = Sizes(seq=500, conc=2000, idle=10_000, recovery=2000, floor=2000, msg=200, queue=2000)
QUICK = Sizes(seq=50, conc=200, idle=500, recovery=200, floor=500, msg=30, queue=200)


@dataclass
class Config:
    sizes: Sizes
    runs: int
    pool_size: int
    figures: set[str]
    systems: list[System]
    #: Prepended to PYTHONPATH of the dbos_async workers: the snapshot of its source.
    source_path: str | None = None


@dataclass
class Results:
    """Per-run values by system and metric, plus every worker's raw output."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: dict[str, dict[str, str]] = field(default_factory=dict)

    def put(self, system: str, metric: str, values: list[float]) -> None:
        self.values.setdefault(system, {})[metric] = values

    def get(self, system: str, metric: str) -> list[float] | None:
        return self.values.get(system, {}).get(metric)

    def keep_raw(self, system: str, figure: str, output: Any) -> None:
        self.raw.setdefault(system, {})[figure] = output

    def fail(self, system: str, figure: str, message: str) -> None:
        self.errors.setdefault(system, {})[figure] = message


class WorkerError(RuntimeError):
    pass


def progress(message: str) -> None:
    print(f"[bench {datetime.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# -- workers and databases -------------------------------------------------------------


@contextmanager
def fresh_database(name: str) -> Iterator[str]:
    url = asyncio.run(create_database(name))
    try:
        yield url
    finally:
        asyncio.run(drop_database(name))


def _result_line(stdout: str) -> dict[str, Any] | None:
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    return json.loads(lines[-1][len(RESULT_PREFIX) :]) if lines else None


def _worker_env(system: System, cfg: Config, recovering: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != RECOVERING_ENV}
    if recovering:
        env[RECOVERING_ENV] = "1"
    if system is DBOS_ASYNC and cfg.source_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [cfg.source_path, env.get("PYTHONPATH")]))
    return env


def _worker_cmd(system: System, figure: str, url: str, n: int, cfg: Config) -> list[str]:
    cmd = [sys.executable, str(BENCH_DIR / system.script), figure, "--db-url", url]
    return [*cmd, "--n", str(n), "--runs", str(cfg.runs), "--pool-size", str(cfg.pool_size)]


def run_worker(
    system: System,
    figure: str,
    url: str,
    n: int,
    cfg: Config,
    *,
    recovering: bool = False,
    killed: bool = False,
) -> dict[str, Any]:
    """Run one worker figure; ``killed`` means the worker must end by SIGKILL."""
    env = _worker_env(system, cfg, recovering)
    cmd = _worker_cmd(system, figure, url, n, cfg)
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT_SECONDS
    )
    result = _result_line(proc.stdout)
    expected_rc = -9 if killed else 0
    if proc.returncode != expected_rc or result is None:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise WorkerError(
            f"{system.script} {figure} exited with {proc.returncode} "
            f"(expected {expected_rc}), result {result!r}; stderr tail:\n{tail}"
        )
    return result


def run_together(
    system: System, figure: str, url: str, n: int, cfg: Config, count: int
) -> list[dict[str, Any]]:
    """Run ``count`` workers of one figure (``--index 0..count-1``) at once. Each prints
    ``READY_LINE`` when it has imported its library and connected; once all have, each
    is sent ``GO_LINE`` on stdin, so that they launch together."""
    env = _worker_env(system, cfg)
    procs: list[tuple[subprocess.Popen[str], IO[str]]] = []
    with ExitStack() as stack:
        try:
            for index in range(count):
                stderr = stack.enter_context(tempfile.TemporaryFile(mode="w+"))
                proc = subprocess.Popen(
                    [*_worker_cmd(system, figure, url, n, cfg), "--index", str(index)],
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    text=True,
                )
                procs.append((proc, stderr))
            early: list[str] = []
            for proc, _ in procs:
                assert proc.stdout is not None
                lines = []
                for line in iter(proc.stdout.readline, ""):
                    if line.strip() == READY_LINE:
                        break
                    lines.append(line)
                early.append("".join(lines))
            for proc, _ in procs:
                assert proc.stdin is not None
                with contextlib.suppress(BrokenPipeError):  # died before READY: see below
                    proc.stdin.write(GO_LINE + "\n")
                    proc.stdin.close()
            outs: list[dict[str, Any]] = []
            for (proc, err), before in zip(procs, early, strict=True):
                assert proc.stdout is not None
                stdout = before + proc.stdout.read()
                proc.wait(timeout=WORKER_TIMEOUT_SECONDS)
                result = _result_line(stdout)
                if proc.returncode != 0 or result is None:
                    err.seek(0)
                    tail = "\n".join(err.read().strip().splitlines()[-80:])
                    raise WorkerError(
                        f"{system.script} {figure} #{len(outs)} exited with "
                        f"{proc.returncode}, result {result!r}; stderr tail:\n{tail}"
                    )
                outs.append(result)
            return outs
        finally:
            for proc, _ in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()


def guarded(results: Results, system: System, figure: str, body: Callable[[], None]) -> None:
    """Run one system's figure; a failure is recorded and reported, not fatal."""
    progress(f"{figure}: {system.name}")
    try:
        body()
    except (WorkerError, subprocess.TimeoutExpired, AssertionError, OSError) as exc:
        progress(f"{figure}: {system.name} FAILED: {exc}")
        results.fail(system.name, figure, str(exc))


# -- figures -------------------------------------------------------------------------------


def _column(runs: list[dict[str, float]], key: str) -> list[float]:
    return [run[key] for run in runs]


def figure_seq(cfg: Config, results: Results, system: System, url: str, prefix: str) -> None:
    out = run_worker(system, "seq", url, cfg.sizes.seq, cfg)
    results.keep_raw(system.name, f"{prefix}seq", out)
    results.put(system.name, f"{prefix}seq_throughput", _column(out["runs"], "throughput"))
    results.put(system.name, f"{prefix}seq_p50_ms", _column(out["runs"], "p50_ms"))
    results.put(system.name, f"{prefix}seq_p99_ms", _column(out["runs"], "p99_ms"))
    if all("journal_commits_per_workflow" in run for run in out["runs"]):
        commits = _column(out["runs"], "journal_commits_per_workflow")
        results.put(system.name, f"{prefix}seq_journal_commits", commits)


def figure_conc(cfg: Config, results: Results, system: System, url: str, prefix: str) -> None:
    out = run_worker(system, "conc", url, cfg.sizes.conc, cfg)
    results.keep_raw(system.name, f"{prefix}conc", out)
    results.put(system.name, f"{prefix}conc_throughput", _column(out["runs"], "throughput"))
    results.put(system.name, f"{prefix}conc_cpu_us", _column(out["runs"], "cpu_us_per_workflow"))
    if not prefix:
        commits = _column(out["runs"], "commits_per_workflow")
        results.put(system.name, "commits_per_workflow", commits)


def figure_msg(cfg: Config, results: Results, system: System, url: str, prefix: str) -> None:
    out = run_worker(system, "msg", url, cfg.sizes.msg, cfg)
    results.keep_raw(system.name, f"{prefix}msg", out)
    results.put(system.name, f"{prefix}msg_p50_ms", _column(out["runs"], "p50_ms"))
    results.put(system.name, f"{prefix}msg_p99_ms", _column(out["runs"], "p99_ms"))


def on_postgres(
    cfg: Config,
    results: Results,
    figure: str,
    measure: Callable[[Config, Results, System, str, str], None],
) -> None:
    for system in cfg.systems:

        def body(system: System = system) -> None:
            with fresh_database(f"bench_{system.slug}_{figure}") as url:
                measure(cfg, results, system, url, "")

        guarded(results, system, figure, body)


def per_run(
    cfg: Config,
    results: Results,
    figure: str,
    once: Callable[[System, str], dict[str, Any]],
    key: str,
) -> None:
    """Figures that need a fresh process (and database) per run: a warm-up, then runs."""
    for system in cfg.systems:

        def body(system: System = system) -> None:
            outs = []
            for index in range(cfg.runs + 1):
                with fresh_database(f"bench_{system.slug}_{figure}_{index}") as url:
                    outs.append(once(system, url))
            results.keep_raw(system.name, figure, {"warmup": outs[0], "runs": outs[1:]})
            results.put(system.name, key, _column(outs[1:], key))

        guarded(results, system, figure, body)


def idle_once(cfg: Config, system: System, url: str) -> dict[str, Any]:
    out = run_worker(system, "idle", url, cfg.sizes.idle, cfg)
    out["idle_rss_mb"] = out["rss_growth_mb"]
    return out


def recovery_once(cfg: Config, system: System, url: str) -> dict[str, Any]:
    n = cfg.sizes.recovery
    crashed = run_worker(system, "crash", url, n, cfg, killed=True)
    out = run_worker(system, "recover", url, n, cfg, recovering=True)
    out["ready_after_s"] = crashed["ready_after_s"]
    out["recovery_s"] = out["seconds"]
    return out


def queue_once(cfg: Config, system: System, url: str, workers: int) -> dict[str, Any]:
    """Enqueue ``cfg.sizes.queue`` workflows with no worker running, then drain them with
    ``workers`` worker processes; the drain is timed in the database, from the first
    claim to the last workflow's end."""
    n = cfg.sizes.queue
    registered = run_worker(system, "queue_register", url, n, cfg)
    enqueued = run_worker(system, "queue_enqueue", url, n, cfg)
    enqueued["registration_s"] = registered["registration_s"]
    drains = run_together(system, "queue_drain", url, n, cfg, workers)
    report = drains[0]["report"]
    problems = list(report["problems"])
    runs_of: collections.Counter[int] = collections.Counter()
    for d in drains:
        executed = d.pop("executed")  # not kept in the JSON: n numbers per run
        d["ran_here"] = len(executed)
        runs_of.update(executed)
    twice = sum(1 for c in runs_of.values() if c > 1)
    if twice or set(runs_of) != set(range(n)):
        missing = len(set(range(n)) - set(runs_of))
        problems.append(f"workflow bodies: {twice} ran more than once, {missing} never ran")
    drain_s = (report["last_end_ms"] - report["first_claim_ms"]) / 1000.0
    seen_s = (max(d["done_seen_ms"] for d in drains) - report["first_claim_ms"]) / 1000.0
    busiest = max(e["workflows"] for e in report["executors"])
    out = {
        "workers": workers,
        "enqueue": enqueued,
        "drainers": drains,
        "drain_s": drain_s,
        "throughput": n / drain_s,
        # The same window, but ending when a worker saw the last end (polled every 20 ms).
        "drain_seen_s": seen_s,
        "busiest_worker_share": busiest / n,
        "first_claim_after_go_s": (report["first_claim_ms"] - min(d["go_ms"] for d in drains))
        / 1000.0,
    }
    if problems:
        raise AssertionError(f"queue figure, {workers} worker(s): {'; '.join(problems)}")
    return out


def figure_queue(cfg: Config, results: Results) -> None:
    """Per run (a warm-up first), for 1 and for 2 workers: a fresh database, enqueue,
    drain."""
    for system in cfg.systems:

        def body(system: System = system) -> None:
            outs: dict[int, list[dict[str, Any]]] = {w: [] for w in QUEUE_WORKER_COUNTS}
            for index in range(cfg.runs + 1):
                for workers in QUEUE_WORKER_COUNTS:
                    name = f"bench_{system.slug}_queue_{workers}w_{index}"
                    with fresh_database(name) as url:
                        out = queue_once(cfg, system, url, workers)
                    kind = "warm-up" if index == 0 else "measured"
                    progress(
                        f"queue: {system.name} run {index} ({kind}), "
                        f"{workers} worker(s): {out['throughput']:.0f} workflows/s, "
                        f"busiest worker ran {out['busiest_worker_share']:.0%}"
                    )
                    outs[workers].append(out)
            results.keep_raw(
                system.name,
                "queue",
                {f"{w}w": {"warmup": o[0], "runs": o[1:]} for w, o in outs.items()},
            )
            for workers, o in outs.items():
                results.put(
                    system.name, f"queue_{workers}w_throughput", _column(o[1:], "throughput")
                )
            results.put(
                system.name, "queue_2w_busiest_share", _column(outs[2][1:], "busiest_worker_share")
            )
            rates = [r["enqueue"]["enqueue_rate"] for w in QUEUE_WORKER_COUNTS for r in outs[w][1:]]
            results.put(system.name, "queue_enqueue_rate", rates)

        guarded(results, system, "queue", body)


def figure_floor(cfg: Config, results: Results) -> None:
    progress("floor: plain asyncpg")
    with fresh_database("bench_floor") as url:
        p50s = [asyncio.run(floor_p50_ms(url, cfg.sizes.floor)) for _ in range(cfg.runs + 1)]
    results.keep_raw("floor", "floor", {"warmup_p50_ms": p50s[0], "runs_p50_ms": p50s[1:]})
    for system in cfg.systems:
        results.put(system.name, "floor_p50_ms", p50s[1:])


def figure_sqlite(cfg: Config, results: Results) -> None:
    system = DBOS_ASYNC

    def body() -> None:
        with tempfile.TemporaryDirectory(prefix="bench_sqlite_") as tmp:
            figure_seq(cfg, results, system, f"sqlite:///{tmp}/seq.sqlite", "sqlite_")
            figure_conc(cfg, results, system, f"sqlite:///{tmp}/conc.sqlite", "sqlite_")

    guarded(results, system, "sqlite", body)


def derive_seq_vs_floor(cfg: Config, results: Results) -> None:
    for system in cfg.systems:
        seq = results.get(system.name, "seq_p50_ms")
        floor = results.get(system.name, "floor_p50_ms")
        if seq and floor:
            unit = COMMITS_PER_SEQ_WORKFLOW * Summary.of(floor).median
            results.put(system.name, "seq_vs_floor", [p / unit for p in seq])


def run_all(cfg: Config) -> Results:
    results = Results()
    wanted = cfg.figures
    if "seq" in wanted:
        on_postgres(cfg, results, "seq", figure_seq)
    if wanted & {"conc", "commits"}:
        on_postgres(cfg, results, "conc", figure_conc)
    if "idle" in wanted:
        per_run(cfg, results, "idle", lambda s, u: idle_once(cfg, s, u), "idle_rss_mb")
    if "recovery" in wanted:
        per_run(cfg, results, "recovery", lambda s, u: recovery_once(cfg, s, u), "recovery_s")
    if "msg" in wanted:
        on_postgres(cfg, results, "msg", figure_msg)
    if "queue" in wanted:
        figure_queue(cfg, results)
    if "floor" in wanted:
        figure_floor(cfg, results)
    if "sqlite" in wanted:
        figure_sqlite(cfg, results)
    derive_seq_vs_floor(cfg, results)
    return results


# -- the code under test ---------------------------------------------------------------


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@contextmanager
def snapshot_dbos_async() -> Iterator[tuple[str, dict[str, Any]]]:
    """Copy dbos_async's source to a temporary directory for the whole run, so that an
    edit made while the suite runs cannot change the code under test between figures."""
    spec = importlib.util.find_spec("dbos_async")
    if spec is None or spec.origin is None:
        raise SystemExit("dbos_async is not importable: pip install -e . first")
    source = Path(spec.origin).parent
    with tempfile.TemporaryDirectory(prefix="bench_src_") as tmp:
        copy = Path(tmp) / "dbos_async"
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__"))
        info = {
            "dbos_async_source": str(source),
            "dbos_async_commit": _git("rev-parse", "--short", "HEAD"),
            "dbos_async_uncommitted_changes": bool(_git("status", "--porcelain", "dbos_async")),
            "dbos_async_tree_sha256": _tree_digest(copy),
        }
        yield tmp, info


# -- the table -------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    metric: str
    label: str
    higher_is_better: bool | None  # None: the same for both, no ratio


def table_rows(sizes: Sizes) -> list[Row]:
    return [
        Row("seq_throughput", f"seq: {sizes.seq} sequential, workflows/s", True),
        Row("seq_p50_ms", "seq: p50 latency (ms)", False),
        Row("seq_p99_ms", "seq: p99 latency (ms)", False),
        Row("seq_journal_commits", "seq: journal commits awaited per workflow", False),
        Row("conc_throughput", f"conc: {sizes.conc} at once, workflows/s", True),
        Row("conc_cpu_us", "conc: process CPU per workflow (us)", False),
        Row("commits_per_workflow", "commits: Postgres commits per workflow (conc)", False),
        Row("idle_rss_mb", f"idle: RSS growth, {sizes.idle} sleeping (MB)", False),
        Row("recovery_s", f"recovery: {sizes.recovery} workflows (s)", False),
        Row("msg_p50_ms", f"msg: send-to-recv latency p50 (ms), {sizes.msg} sends", False),
        Row("msg_p99_ms", "msg: send-to-recv latency p99 (ms)", False),
        Row("queue_1w_throughput", f"queue: {sizes.queue} drained by 1 worker, workflows/s", True),
        Row("queue_2w_throughput", f"queue: {sizes.queue} drained by 2 workers, workflows/s", True),
        Row("queue_2w_busiest_share", "queue: 2 workers, share run by the busier one", None),
        Row("queue_enqueue_rate", f"queue: client enqueue of {sizes.queue}, workflows/s", True),
        Row("floor_p50_ms", "floor: asyncpg INSERT commit p50 (ms)", None),
        Row("seq_vs_floor", "seq p50 / (4 x floor p50)", False),
        Row("sqlite_seq_throughput", f"SQLite seq: {sizes.seq} sequential, workflows/s", True),
        Row("sqlite_seq_p50_ms", "SQLite seq: p50 latency (ms)", False),
        Row("sqlite_seq_p99_ms", "SQLite seq: p99 latency (ms)", False),
        Row("sqlite_conc_throughput", f"SQLite conc: {sizes.conc} at once, workflows/s", True),
        Row("sqlite_conc_cpu_us", "SQLite conc: process CPU per workflow (us)", False),
    ]


def fmt(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude >= 0.1:
        return f"{value:.3f}"
    return f"{value:.2g}"


def cell(values: list[float] | None) -> str:
    if not values:
        return "n/a"
    s = Summary.of(values)
    return f"{fmt(s.median)} ({fmt(s.low)}-{fmt(s.high)})"


def ratio(row: Row, ours: list[float] | None, theirs: list[float] | None) -> str:
    if row.higher_is_better is None or not ours or not theirs:
        return "-" if row.higher_is_better is None else "n/a"
    a, b = Summary.of(ours).median, Summary.of(theirs).median
    top, bottom = (a, b) if row.higher_is_better else (b, a)
    if bottom == 0:
        return "n/a (a zero median)"
    return f"{top / bottom:.2f}"


def render_table(cfg: Config, results: Results) -> str:
    header = "| figure | dbos_async | DBOS | ratio (>1: dbos_async better) |"
    lines = [header, "|---|---|---|---|"]
    for row in table_rows(cfg.sizes):
        ours = results.get(DBOS_ASYNC.name, row.metric)
        theirs = results.get(DBOS.name, row.metric)
        if ours is None and theirs is None:
            continue
        cells = [row.label, cell(ours), cell(theirs), ratio(row, ours, theirs)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- the JSON record ---------------------------------------------------------------------


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git(*args: str) -> str:
    proc = subprocess.run(["git", "-C", str(REPO_DIR), *args], capture_output=True, text=True)
    return proc.stdout.strip()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "postgres": asyncio.run(server_version()),
        "python": platform.python_version(),
        "dbos_version": _version("dbos"),
        "dbos_async_version": _version("dbos_async"),
    }


def summaries(results: Results) -> dict[str, dict[str, dict[str, float]]]:
    return {
        system: {metric: asdict(Summary.of(vals)) for metric, vals in metrics.items() if vals}
        for system, metrics in results.values.items()
    }


def write_json(cfg: Config, results: Results, env: dict[str, Any], table: str) -> None:
    record = {
        "environment": env,
        "config": {
            "sizes": asdict(cfg.sizes),
            "runs": cfg.runs,
            "warmup_runs": 1,
            "pool_size": cfg.pool_size,
            "figures": sorted(cfg.figures),
            "systems": [s.name for s in cfg.systems],
        },
        "summary": summaries(results),
        "values": results.values,
        "raw": results.raw,
        "errors": results.errors,
        "table": table,
    }
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(json.dumps(record, indent=2) + "\n")


# -- command line ------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=None, help="measured runs (default 5)")
    parser.add_argument("--only", default=",".join(FIGURES), help="comma-separated figures")
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 run: a smoke test")
    parser.add_argument(
        "--pool-size", type=int, default=20, help="Postgres pool size, the same for both"
    )
    ns = parser.parse_args(argv)
    figures = {f.strip() for f in ns.only.split(",") if f.strip()}
    unknown = figures - set(FIGURES)
    if unknown:
        parser.error(f"unknown figure(s) {sorted(unknown)}; choose from {', '.join(FIGURES)}")
    runs = ns.runs if ns.runs is not None else (1 if ns.quick else 5)
    if runs < 1:
        parser.error("--runs must be at least 1")
    if ns.pool_size < 1:
        parser.error("--pool-size must be at least 1")
    systems = [DBOS_ASYNC]
    if importlib.util.find_spec("dbos") is not None:
        systems.append(DBOS)
    else:
        progress("DBOS (package dbos) is not installed: its column will read n/a")
    return Config(QUICK if ns.quick else FULL, runs, ns.pool_size, figures, systems)


def main() -> None:
    cfg = parse_args()
    env = environment()
    progress(f"runs={cfg.runs} (+1 warm-up), sizes={asdict(cfg.sizes)}, pool={cfg.pool_size}")
    with snapshot_dbos_async() as (cfg.source_path, code):
        env.update(code)
        progress(f"dbos_async under test: {code}")
        results = run_all(cfg)
    table = render_table(cfg, results)
    write_json(cfg, results, env, table)
    print(table)
    if results.errors:
        print("\nFailures (details in stderr and results/latest.json):")
        for system, figures in results.errors.items():
            for figure, message in figures.items():
                lines = message.splitlines()
                print(f"- {system} {figure}: {lines[0]} ... {lines[-1]}")


if __name__ == "__main__":
    main()
