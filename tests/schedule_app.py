"""A process for the multi-process schedule tests, run as a real process:

    python schedule_app.py DATABASE_URL WORKDIR NAME

It registers ``sa_tick(scheduled_at, context)``, launches DBOS (application version
"sapp"), writes WORKDIR/ready-NAME once launched, and runs until SIGTERM (a clean
``DBOS.destroy()`` that lets running workflows finish, exit 0). Each run of ``sa_tick``
appends a JSON line (its workflow ID, slot, context and PID) to WORKDIR/events-NAME.jsonl,
flushed and fsynced, so the test can tell which slots ran, how often and where.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from dbos_async import DBOS

EVENTS: Path | None = None


def record(line: str) -> None:
    assert EVENTS is not None
    with open(EVENTS, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@DBOS.workflow(name="sa_tick")
async def sa_tick(scheduled_at: datetime, context: Any) -> str:
    record(
        json.dumps(
            {
                "wf": DBOS.workflow_id,
                "slot": scheduled_at.isoformat(),
                "context": context,
                "pid": os.getpid(),
            }
        )
    )
    return scheduled_at.isoformat()


async def main(database_url: str, workdir: Path, name: str) -> None:
    global EVENTS
    EVENTS = workdir / f"events-{name}.jsonl"
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    DBOS({"database_url": database_url, "executor_id": name, "application_version": "sapp"})
    try:
        await DBOS.launch()
        ready = workdir / f"ready-{name}"
        tmp = ready.with_suffix(".tmp")
        tmp.write_text(str(os.getpid()))
        tmp.rename(ready)
        await stop.wait()
    finally:
        await DBOS.destroy(workflow_completion_timeout_sec=5)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), sys.argv[3]))
