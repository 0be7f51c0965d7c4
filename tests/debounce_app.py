"""A program for the debouncer crash test: it starts a burst, waits until the debouncer
workflow has taken the burst's second call, and kills itself (SIGKILL) while the
debouncer still waits out its period.

    python debounce_app.py DATABASE_URL WORKDIR

It prints one JSON line (the debounced workflow's and the debouncer's IDs) before dying.
The test imports this module too, so the recovering process knows ``debounced_run``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from dbos_async import DBOS, Debouncer

APP_VERSION = "debounce-crash"
KEY = "crash-key"
#: Long enough that the debouncer is still waiting when the process dies.
PERIOD_SEC = 8.0


def log(workdir: Path, line: str) -> None:
    with open(workdir / "log", "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@DBOS.workflow()
async def debounced_run(x: int, workdir: str) -> int:
    log(Path(workdir), f"ran {x}")
    return x


async def start(db_url: str, workdir: Path) -> None:
    DBOS({"database_url": db_url, "application_version": APP_VERSION})
    await DBOS.launch()
    debouncer = Debouncer.create(debounced_run)
    first = await debouncer.debounce(KEY, PERIOD_SEC, 1, str(workdir))
    second = await debouncer.debounce(KEY, PERIOD_SEC, 2, str(workdir))
    assert first.workflow_id == second.workflow_id
    debouncer_id = second.debouncer_id  # type: ignore[attr-defined]
    # Die once the debouncer has taken the second call (its acknowledgement is an event).
    while not await DBOS.get_all_events(debouncer_id):  # noqa: ASYNC110 - a table, not an event
        await asyncio.sleep(0.02)
    print(json.dumps({"workflow_id": second.workflow_id, "debouncer_id": debouncer_id}))
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    asyncio.run(start(sys.argv[1], Path(sys.argv[2])))
