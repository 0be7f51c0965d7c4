"""A second process writing to a SQLite file that the test process holds locked:

    python sqlite_writer_app.py DATABASE_URL WORKDIR

It lowers the busy timeout to 0.2 s (so a lock held longer makes its writes fail with
"database is locked" inside SQLite, again and again), launches DBOS (executor "writer"),
writes WORKDIR/ready, waits for WORKDIR/go, writes WORKDIR/started, then runs a
three-step workflow and writes WORKDIR/result.json with its result and status. Each
step body appends its index to WORKDIR/steps.txt (fsynced), so the test can count runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from dbos_async import DBOS
from dbos_async.sysdb import _sqlite_connection

_sqlite_connection.BUSY_TIMEOUT_SECONDS = 0.2

DB_URL = sys.argv[1]
WORKDIR = Path(sys.argv[2])


def note(name: str, text: str) -> None:
    with open(WORKDIR / name, "a") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def exists(path: Path) -> bool:
    return path.exists()


async def wait_for_file(path: Path) -> None:
    for _ in range(6000):  # one minute
        if exists(path):
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{path} never appeared")


@DBOS.step(name="writer_step")
async def writer_step(i: int) -> int:
    note("steps.txt", f"{i}\n")
    return i


@DBOS.workflow(name="writer_wf")
async def writer_wf(n: int) -> int:
    total = 0
    for i in range(n):
        total += await writer_step(i)
    return total


async def main() -> None:
    config = {"database_url": DB_URL, "application_version": "writer", "executor_id": "writer"}
    async with DBOS(config):
        note("ready", str(os.getpid()))
        await wait_for_file(WORKDIR / "go")
        note("started", "1")
        handle = await DBOS.start_workflow(writer_wf, 3)
        result = await handle.get_result()
        status = await handle.get_status()
        assert status is not None
        steps = await DBOS.list_workflow_steps(handle.workflow_id)
        note(
            "result.json",
            json.dumps({"result": result, "status": str(status.status.value), "steps": len(steps)}),
        )


if __name__ == "__main__":
    asyncio.run(main())
