"""A program for the fleet tests: several of these share one database, as replicas of one
app do, and the tests kill, pause and stop them.

    python fleet_app.py ROLE DATABASE_URL WORKDIR EXECUTOR_ID LEASE_SECONDS

ROLE is ``start`` (launch, start the workflow ``fleet-wf``, then stay up), ``enqueue``
(launch, enqueue ``fleet-q-0..3`` on a queue with a global concurrency of 2, stay up),
``handover`` (as ``start``, then ``DBOS.destroy()`` once its first step has run, and stay
up without a runtime), or ``worker`` (launch and stay up: it takes over what others
leave). Every step appends "EXECUTOR PID step WORKFLOW I" to WORKDIR/log and returns its
process's PID, so a test sees who ran and who recorded what. Lines "ready" and
"destroyed" on stdout tell the test where the process is.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from dbos_async import DBOS, Queue, SetWorkflowID

ROLE, DB_URL, WORKDIR, EXECUTOR = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
LEASE = float(sys.argv[5])
STEPS = 8
PAUSE = 0.4

queue = Queue("fleet_queue", concurrency=2)


def log(line: str) -> None:
    with open(WORKDIR / "log", "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@DBOS.step()
async def fleet_step(workflow_id: str, i: int) -> int:
    log(f"{EXECUTOR} {os.getpid()} step {workflow_id} {i}")
    await asyncio.sleep(PAUSE)
    return os.getpid()


@DBOS.workflow()
async def fleet_steps(n: int) -> list[int]:
    workflow_id = DBOS.workflow_id or ""
    return [await fleet_step(workflow_id, i) for i in range(n)]


def said(line: str) -> None:
    print(line, flush=True)


async def main() -> None:
    DBOS(
        {
            "name": "fleet",
            "database_url": DB_URL,
            "executor_id": EXECUTOR,
            "application_version": "fleet-v1",
            "executor_lease_seconds": LEASE,
        }
    )
    await DBOS.launch()
    if ROLE in ("start", "handover"):
        with SetWorkflowID("fleet-wf"):
            await DBOS.start_workflow(fleet_steps, STEPS)
    elif ROLE == "enqueue":
        for i in range(4):
            with SetWorkflowID(f"fleet-q-{i}"):
                await queue.enqueue(fleet_steps, STEPS)
    said("ready")
    if ROLE == "handover":
        while not (WORKDIR / "log").exists():  # noqa: ASYNC110 (another process writes it)
            await asyncio.sleep(0.05)
        await DBOS.destroy()
        said("destroyed")
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main())
