"""Where a SQLite workflow's time goes: trips to the connection's thread, and commits.

    PYTHONPATH=. python benchmarks/sqlite_trips.py [--seq 500] [--conc 2000]

The workload of ``run.py``'s SQLite ``seq`` and ``conc`` (three-step workflows, started
and awaited one at a time, then all at once) on a SQLite file in a temporary directory,
after 50 warm-up workflows. Every call aiosqlite sends to a connection's thread is
counted (a "trip": a queue put, the thread waking, the event loop waking for the
result), and named by what it ran. Printed per figure: workflows/s, the process's CPU
time per workflow (user and system, which the machine's other load disturbs less than
the wall clock), trips per workflow, and the most frequent kinds of trip. Then the floor
under ``seq``: a bare ``BEGIN IMMEDIATE`` / ``INSERT`` / ``COMMIT`` with the system
database's settings (WAL, ``synchronous = FULL``), mostly the ``fsync`` of the WAL, of
which a ``seq`` workflow needs five in sequence (a status insert, three steps, a finish).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sqlite3
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite

from dbos_async import DBOS

TRIPS: Counter[str] = Counter()
_send: Callable[..., Any] = aiosqlite.Connection._execute


async def _counting(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
    name = getattr(fn, "__name__", type(fn).__name__)
    if args and isinstance(args[0], str):  # a statement: its first words
        name += ": " + " ".join(args[0].split()[:3])
    elif name == "_transaction" and len(args) > 1:  # a one-trip write: what it wrote
        name += ": " + getattr(args[1], "__qualname__", "?").split(".<locals>")[0]
    elif args and isinstance(args[0], sqlite3.Connection):  # a one-trip read
        name = "read: " + getattr(fn, "__qualname__", "?").split(".<locals>")[0]
    TRIPS[name] += 1
    return await _send(self, fn, *args, **kwargs)


@DBOS.step(name="trips_one")
async def one(x: int) -> int:
    return x + 1


@DBOS.step(name="trips_two")
async def two(x: int) -> int:
    return x * 2


@DBOS.step(name="trips_three")
async def three(x: int) -> int:
    return x - 1


@DBOS.workflow(name="trips_workflow")
async def three_steps(x: int) -> int:
    return await three(await two(await one(x)))


async def _seq(n: int) -> None:
    for i in range(n):
        await (await DBOS.start_workflow(three_steps, i)).get_result()


async def _conc(n: int) -> None:
    handles = await asyncio.gather(*(DBOS.start_workflow(three_steps, i) for i in range(n)))
    await asyncio.gather(*(h.get_result() for h in handles))


async def measure(label: str, n: int, run: Callable[[int], Any]) -> None:
    TRIPS.clear()
    before = resource.getrusage(resource.RUSAGE_SELF)
    begin = time.perf_counter()
    await run(n)
    elapsed = time.perf_counter() - begin
    after = resource.getrusage(resource.RUSAGE_SELF)
    user = (after.ru_utime - before.ru_utime) / n * 1e6
    system = (after.ru_stime - before.ru_stime) / n * 1e6
    total = sum(TRIPS.values())
    print(
        f"{label}: {n} workflows, {n / elapsed:.0f} workflows/s, CPU {user:.0f} us user + "
        f"{system:.0f} us system per workflow, {total / n:.3f} trips per workflow"
    )
    for name, count in TRIPS.most_common(6):
        print(f"    {count / n:8.3f}  {name}")


def commit_floor_us(directory: str, n: int = 1000) -> float:
    conn = sqlite3.connect(Path(directory) / "floor.sqlite", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    begin = time.perf_counter()
    for _ in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (v) VALUES (?)", ("x" * 100,))
        conn.execute("COMMIT")
    conn.close()
    return (time.perf_counter() - begin) / n * 1e6


async def main(seq: int, conc: int) -> None:
    with tempfile.TemporaryDirectory(prefix="sqlite_trips_") as tmp:
        DBOS(
            {
                "name": "sqlite_trips",
                "database_url": f"sqlite:///{tmp}/trips.sqlite",
                "executor_id": "trips",
                "application_version": "trips",
            }
        )
        await DBOS.launch()
        try:
            await _seq(50)
            aiosqlite.Connection._execute = _counting  # type: ignore[method-assign]
            await measure("seq", seq, _seq)
            await measure("conc", conc, _conc)
        finally:
            aiosqlite.Connection._execute = _send  # type: ignore[method-assign]
            await DBOS.destroy()
        floor = commit_floor_us(tmp)
        print(f"floor: one BEGIN IMMEDIATE/INSERT/COMMIT {floor:.0f} us (x5 = {5 * floor:.0f} us)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=500)
    parser.add_argument("--conc", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.seq, args.conc))
