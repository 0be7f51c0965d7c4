"""How long other workflows' checkpoints wait while a transaction body is open on SQLite.

    PYTHONPATH=. python benchmarks/sqlite_lock_wait.py [--hold 2.0] [--workflows 20]

One process, one SQLite file (app and system tables together, the default). WORKFLOWS
workflows run steps in a loop (each body sleeps 50 ms); after 0.5 s a workflow runs a
``@DBOS.transaction`` whose body writes a row and then sleeps HOLD seconds. For every
step we take the time from the end of its body to the workflow seeing its result (the
checkpoint wait, its row committed). Printed: the waits of steps whose body ended
before/while/after the body was open, the gap between the body's commit and the first
checkpoint after it, and the workflows' final statuses and step counts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from dbos_async import DBOS

WAITS: list[tuple[float, float]] = []  # (body end, checkpoint wait)
RUNS: Counter[tuple[int, int]] = Counter()
TX: dict[str, float] = {}
STEPS = 60


@DBOS.step(name="bench_step")
async def bench_step(k: int, i: int) -> float:
    RUNS[(k, i)] += 1
    await asyncio.sleep(0.05)
    return time.monotonic()


@DBOS.workflow(name="bench_stepper")
async def stepper(k: int) -> int:
    for i in range(STEPS):
        body_end = await bench_step(k, i)
        WAITS.append((body_end, time.monotonic() - body_end))
    return k


@DBOS.transaction(name="bench_hold")
async def hold(seconds: float) -> None:
    await DBOS.sql_connection.execute("INSERT INTO bench_items (x) VALUES (1)")
    TX["open"] = time.monotonic()
    await asyncio.sleep(seconds)
    TX["end"] = time.monotonic()


@DBOS.workflow(name="bench_holder")
async def holder(seconds: float) -> None:
    await hold(seconds)
    TX["committed"] = time.monotonic()


def summary(waits: list[float]) -> str:
    if not waits:
        return "none"
    waits = sorted(waits)
    p50 = statistics.median(waits)
    return (
        f"n={len(waits)} median={p50 * 1000:.1f} ms max={waits[-1] * 1000:.1f} ms"
        f" min={waits[0] * 1000:.1f} ms"
    )


async def main(hold_s: float, n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'lock.sqlite'}"
        async with DBOS({"database_url": url, "application_version": "bench"}):
            import aiosqlite

            async with aiosqlite.connect(url[len("sqlite:///") :]) as db:
                await db.execute("CREATE TABLE bench_items (x INTEGER)")
                await db.commit()
            handles = [await DBOS.start_workflow(stepper, k) for k in range(n)]
            await asyncio.sleep(0.5)
            await holder(hold_s)
            await asyncio.gather(*(h.get_result() for h in handles))
            statuses: Counter[str] = Counter()
            for h in handles:
                status = await h.get_status()
                statuses[str(status.status.value) if status else "missing"] += 1
            counts = [len(await DBOS.list_workflow_steps(h.workflow_id)) for h in handles]
    opened, end = TX["open"], TX["end"]
    before = [w for t, w in WAITS if t < opened]
    during = [w for t, w in WAITS if opened <= t < end]
    after = [w for t, w in WAITS if t >= end]
    first_after = min(t + w for t, w in WAITS if t + w >= end) - end
    print(f"transaction body held the file {end - opened:.2f} s; {n} workflows x {STEPS} steps")
    print(f"checkpoint wait, body ended before the transaction: {summary(before)}")
    print(f"checkpoint wait, body ended while it was open:      {summary(during)}")
    print(f"checkpoint wait, body ended after it committed:     {summary(after)}")
    print(f"first checkpoint seen {first_after * 1000:.1f} ms after the body ended")
    print(f"statuses: {dict(statuses)}; steps recorded per workflow: {sorted(set(counts))}")
    print(f"each step ran once: {set(RUNS.values()) == {1} and len(RUNS) == n * STEPS}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--hold", type=float, default=2.0)
    parser.add_argument("--workflows", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.hold, args.workflows))
