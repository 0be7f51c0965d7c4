"""A queue worker for the multi-process queue tests, run as a real process:

    python queue_app.py DATABASE_URL WORKDIR EXECUTOR_ID [--queues a,b] [--scheduled]
        [--poll SECONDS]

It launches DBOS (application version "qapp"), declares the test queues (all of them, or
those named by ``--queues``), writes WORKDIR/ready-EXECUTOR_ID once launched, and runs
until SIGTERM (a clean ``DBOS.destroy()``, exit 0) or SIGKILL. The workflows run here
append JSON lines to WORKDIR/events-EXECUTOR_ID-PID.jsonl (flushed and fsynced), so the
test can tell what ran where and when. ``--scheduled`` also registers ``qp_sched``, a
workflow scheduled every second. ``--poll`` sets the queues' polling interval (default
0.1 s); a long one leaves only NOTIFY to wake the worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from dbos_async import DBOS, Queue

#: The test queues, by name: keyword arguments of ``Queue``.
QUEUES: dict[str, dict[str, Any]] = {
    # At most 2 running across all processes.
    "qp_conc2": {"concurrency": 2},
    # At most 1 running in each process.
    "qp_worker1": {"worker_concurrency": 1},
    # At most 2 claims in any 1 s.
    "qp_limited": {"limiter": {"limit": 2, "period": 1.0}},
    # Priority order, one at a time in each process.
    "qp_priority": {"worker_concurrency": 1, "priority_enabled": True},
    # No limits.
    "qp_free": {},
    # The crash test: 3 at a time in each process.
    "qp_crash": {"worker_concurrency": 3},
    # Partitioned: at most 1 running per partition key across all processes.
    "qp_part": {"concurrency": 1, "partition_queue": True},
}
POLLING_INTERVAL_SEC = 0.1

ARGS = argparse.Namespace()
EVENTS: Path | None = None


def record(event: str, **fields: Any) -> None:
    """Append one event line to this process's log, durably."""
    assert EVENTS is not None
    line = json.dumps(
        {"event": event, "wf": DBOS.workflow_id, "pid": os.getpid(), "t": time.time(), **fields}
    )
    with open(EVENTS, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@DBOS.workflow(name="qp_sleep")
async def qp_sleep(tag: str, seconds: float) -> str:
    record("start", tag=tag)
    await asyncio.sleep(seconds)
    record("end", tag=tag)
    return tag


@DBOS.step(name="qp_step_a")
async def qp_step_a(n: int) -> int:
    record("step_a")
    return n + 1


@DBOS.step(name="qp_step_b")
async def qp_step_b(n: int) -> int:
    record("step_b")
    return n * 10


@DBOS.workflow(name="qp_two_steps")
async def qp_two_steps(n: int, seconds: float) -> int:
    """Step A, a durable sleep, step B: killed in the sleep, it resumes after step A."""
    a = await qp_step_a(n)
    await DBOS.sleep(seconds)
    return await qp_step_b(a)


def register_schedule() -> None:
    """Register ``qp_sched`` (only when asked: a schedule runs in every launched DBOS)."""

    @DBOS.scheduled("* * * * * *")
    @DBOS.workflow(name="qp_sched")
    async def qp_sched(scheduled_time: datetime, actual_time: datetime) -> str:
        record("sched", slot=scheduled_time.isoformat(), actual=actual_time.isoformat())
        return scheduled_time.isoformat()


async def main() -> None:
    global EVENTS
    workdir = Path(ARGS.workdir)
    EVENTS = workdir / f"events-{ARGS.executor_id}-{os.getpid()}.jsonl"
    names = ARGS.queues.split(",") if ARGS.queues else list(QUEUES)
    for name in names:
        Queue(name, polling_interval_sec=ARGS.poll, **QUEUES[name])
    if ARGS.scheduled:
        register_schedule()

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    DBOS(
        {
            "database_url": ARGS.database_url,
            "executor_id": ARGS.executor_id,
            "application_version": "qapp",
        }
    )
    try:
        await DBOS.launch()
        ready = workdir / f"ready-{ARGS.executor_id}"
        tmp = ready.with_suffix(".tmp")
        tmp.write_text(str(os.getpid()))
        tmp.rename(ready)
        await stop.wait()
    finally:
        await DBOS.destroy()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("database_url")
    parser.add_argument("workdir")
    parser.add_argument("executor_id")
    parser.add_argument("--queues", default="", help="comma-separated queue names")
    parser.add_argument("--scheduled", action="store_true")
    parser.add_argument("--poll", type=float, default=POLLING_INTERVAL_SEC)
    parser.parse_args(namespace=ARGS)
    asyncio.run(main())
