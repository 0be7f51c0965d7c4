"""The chaos suite's workload: a bank-transfer worker, run as a real process by the harness.

    python tests/chaos/bank_app.py DB_URL EXECUTOR_ID WORKDIR [--lease SECONDS]
        [--worker-concurrency N] [--poll SECONDS] [--step-delay SECONDS]

A transfer is the workflow ``bank_transfer(src, dst, amount, transfer_id)``:

1. ``bank_debit``, a transaction: takes ``amount`` from account ``src`` and inserts the
   ledger row ``(transfer_id, 'debit')``;
2. ``bank_effect``, a plain step with a visible effect outside any database: it appends the
   line ``effect TRANSFER_ID PID TIME`` to this process's event file (fsynced), so every
   execution of the step can be counted; it returns the PID, so its recorded output says
   which process recorded it;
3. ``bank_credit``, a transaction: gives ``amount`` to account ``dst`` and inserts the ledger
   row ``(transfer_id, 'credit')``.

The ledger has no unique key on purpose: a transaction applied twice leaves two rows, so
the harness can count duplicates instead of seeing an error. Each ledger row also holds
the PID of the process that committed it and the time.

The workflow body (not a step: it runs again on every execution) also appends ``begin``
and ``end`` lines to the event file; the harness measures takeovers with them.

Transfers come two ways: enqueued on the queue ``bank`` (by the harness's ``DBOSClient``;
workers claim them), or started directly here when the harness writes
``start TRANSFER_ID SRC DST AMOUNT`` on this process's stdin (answered by ``started
TRANSFER_ID`` on stdout once the workflow's status row is durable).

The process prints ``launched EXECUTOR_ID PID lease=yes|no`` once launched; ``lease=no``
means this version of the library does not know ``executor_lease_seconds`` yet and the
process runs without it. SIGTERM destroys DBOS, handing running workflows back at once
(``workflow_completion_timeout_sec=0`` where supported), then exits 0. It exits at once
when its stdin closes or its parent dies, so it never outlives the harness.

The accounts and ledger tables are created by the harness before any worker starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import inspect
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: make ``tests.chaos`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dbos_async import DBOS, DBOSConfigError, Queue, SetWorkflowID
from tests.chaos.common import APP_VERSION, QUEUE_NAME, WORKFLOW_NAME, transfer_output

ARGS = argparse.Namespace()
PG = False
_events_fd = -1


def trace(kind: str, transfer_id: str, *, sync: bool = False) -> None:
    """Append one line to this process's event file. One ``write`` on an ``O_APPEND``
    descriptor: it survives SIGKILL (the kernel holds it); ``sync`` also fsyncs."""
    line = f"{kind} {transfer_id} {os.getpid()} {time.time():.6f}\n".encode()
    os.write(_events_fd, line)
    if sync:
        os.fsync(_events_fd)


async def _apply(account: int, delta: int, kind: str, transfer_id: str) -> int:
    conn: Any = DBOS.sql_connection
    now, pid = time.time(), os.getpid()
    if PG:
        await conn.execute(
            "UPDATE accounts SET balance = balance + $1 WHERE id = $2", delta, account
        )
        await conn.execute(
            "INSERT INTO ledger (transfer_id, kind, account, amount, pid, at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            transfer_id,
            kind,
            account,
            abs(delta),
            pid,
            now,
        )
    else:
        await conn.execute(
            "UPDATE accounts SET balance = balance + ? WHERE id = ?", (delta, account)
        )
        await conn.execute(
            "INSERT INTO ledger (transfer_id, kind, account, amount, pid, at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (transfer_id, kind, account, abs(delta), pid, now),
        )
    return pid


@DBOS.transaction(name="bank_debit")
async def debit(account: int, amount: int, transfer_id: str) -> int:
    return await _apply(account, -amount, "debit", transfer_id)


@DBOS.transaction(name="bank_credit")
async def credit(account: int, amount: int, transfer_id: str) -> int:
    return await _apply(account, amount, "credit", transfer_id)


@DBOS.step(name="bank_effect")
async def effect(transfer_id: str) -> int:
    """The plain step: some work, then an effect no database transaction covers."""
    await asyncio.sleep(random.uniform(0.5, 1.5) * ARGS.step_delay)
    await asyncio.to_thread(trace, "effect", transfer_id, sync=True)
    await asyncio.sleep(random.uniform(0.0, 0.5) * ARGS.step_delay)
    return os.getpid()


@DBOS.workflow(name=WORKFLOW_NAME)
async def transfer(src: int, dst: int, amount: int, transfer_id: str) -> str:
    trace("begin", transfer_id)
    await debit(src, amount, transfer_id)
    await effect(transfer_id)
    await credit(dst, amount, transfer_id)
    trace("end", transfer_id)
    return transfer_output(transfer_id, src, dst, amount)


# -- the process -------------------------------------------------------------------------


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (even while it is stopped);
    elsewhere the stdin watch below is the only guard."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def make_dbos() -> bool:
    """Create DBOS with a short lease; returns whether the library took the lease key."""
    config: dict[str, Any] = {
        "name": "chaos_bank",
        "database_url": ARGS.database_url,
        "executor_id": ARGS.executor_id,
        "application_version": APP_VERSION,
        "executor_lease_seconds": ARGS.lease,
    }
    try:
        DBOS(config)
        return True
    except DBOSConfigError as exc:
        if "executor_lease_seconds" not in str(exc):
            raise
    del config["executor_lease_seconds"]
    DBOS(config)
    return False


async def start_direct(transfer_id: str, src: int, dst: int, amount: int) -> None:
    try:
        with SetWorkflowID(transfer_id):
            await DBOS.start_workflow(transfer, src, dst, amount, transfer_id)
    except Exception as exc:
        say(f"error {transfer_id} {type(exc).__name__}: {exc}".replace("\n", " "))
    else:
        say(f"started {transfer_id}")


async def serve_stdin(stop: asyncio.Event) -> None:
    """Run the harness's commands until stdin closes (the harness is gone: exit now)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    starts: set[asyncio.Task[None]] = set()
    while not stop.is_set():
        line = await reader.readline()
        if not line:
            sys.stderr.write("stdin closed: the harness is gone, exiting\n")
            sys.stderr.flush()
            os._exit(3)
        words = line.decode().split()
        if len(words) == 5 and words[0] == "start":
            task = asyncio.create_task(
                start_direct(words[1], int(words[2]), int(words[3]), int(words[4]))
            )
            starts.add(task)
            task.add_done_callback(starts.discard)


async def watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(3)
        await asyncio.sleep(0.5)


async def main() -> None:
    global PG, _events_fd
    parent = os.getppid()
    die_with_parent()
    PG = not ARGS.database_url.startswith("sqlite")
    workdir = Path(ARGS.workdir)
    _events_fd = os.open(
        workdir / f"events-{ARGS.executor_id}-{os.getpid()}.log",
        os.O_WRONLY | os.O_CREAT | os.O_APPEND,
        0o644,
    )
    Queue(
        QUEUE_NAME,
        worker_concurrency=ARGS.worker_concurrency,
        polling_interval_sec=ARGS.poll,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    watcher = asyncio.create_task(watch_parent(parent))
    lease = make_dbos()
    try:
        await DBOS.launch()
        say(f"launched {ARGS.executor_id} {os.getpid()} lease={'yes' if lease else 'no'}")
        server = asyncio.create_task(serve_stdin(stop))
        await stop.wait()
        server.cancel()
    finally:
        watcher.cancel()
        # Hand running workflows back at once (a library without the hand-back: none).
        hand_back: dict[str, Any] = {}
        if "workflow_completion_timeout_sec" in inspect.signature(DBOS.destroy).parameters:
            hand_back["workflow_completion_timeout_sec"] = 0
        await DBOS.destroy(**hand_back)
    say(f"stopped {ARGS.executor_id} {os.getpid()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("database_url")
    parser.add_argument("executor_id")
    parser.add_argument("workdir")
    parser.add_argument("--lease", type=float, default=2.0, help="executor_lease_seconds")
    parser.add_argument("--worker-concurrency", type=int, default=6)
    parser.add_argument("--poll", type=float, default=0.2, help="queue polling interval")
    parser.add_argument(
        "--step-delay", type=float, default=1.0, help="mean seconds the plain step works"
    )
    parser.parse_args(namespace=ARGS)
    asyncio.run(main())
