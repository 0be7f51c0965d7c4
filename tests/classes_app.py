"""Method workflows of a ``@DBOS.dbos_class()`` class for the crash tests of
``test_classes.py``: imported as a module (``crash_and_recover`` runs a bound method in
its child process), and run as a program in real processes:

    python classes_app.py ROLE DATABASE_URL WORKDIR

ROLE ``start`` launches and starts ``triple.run(5, log)`` under ``WORKFLOW_ID``; the test
sets ``DBOS_ASYNC_CRASH_AFTER_STEP`` so the process is killed (SIGKILL) after step 2.
ROLE ``recover`` launches, which recovers the workflow on the instance registered under
its name, awaits it and prints its outcome as one JSON line. ROLE ``recover-missing``
registers only the instance ``double``: the workflow is not run, and the line printed
says what the takeover logged. Every step appends ``<instance>:<step>`` to WORKDIR/log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from dbos_async import DBOS, DBOSConfiguredInstance, SetWorkflowID

WORKFLOW_ID = "classes-crash"


def append(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


@DBOS.dbos_class()
class Multiplier(DBOSConfiguredInstance):
    """Each instance multiplies by its own factor: the result tells which one ran."""

    def __init__(self, name: str, factor: int) -> None:
        super().__init__(name)
        self.factor = factor

    @DBOS.step()
    async def note(self, log: str, what: str) -> str:
        line = f"{self.config_name}:{what}"
        append(log, line)
        return line

    @DBOS.workflow()
    async def run(self, x: int, log: str) -> dict[str, Any]:
        steps = [await self.note(log, "step1"), await self.note(log, "step2")]
        steps.append(await self.note(log, "step3"))
        return {"instance": self.config_name, "value": x * self.factor, "steps": steps}

    @classmethod
    @DBOS.workflow()
    async def run_on_class(cls, x: int, log: str) -> str:
        await Multiplier.note_static(log, "class-step1")
        await Multiplier.note_static(log, "class-step2")
        return f"{cls.__name__}:{x}"

    @staticmethod
    @DBOS.step()
    async def note_static(log: str, what: str) -> str:
        append(log, what)
        return what


double = Multiplier("double", 2)
triple = None if os.environ.get("CLASSES_APP_ONLY") == "double" else Multiplier("triple", 3)


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def main(role: str, db_url: str, workdir: Path) -> None:
    config = {
        "database_url": db_url,
        "executor_id": "classes-executor",
        "application_version": "classes-v1",
    }
    captured = _Captured()
    logging.getLogger("dbos_async").addHandler(captured)
    async with DBOS(config):
        if role == "start":
            assert triple is not None
            with SetWorkflowID(WORKFLOW_ID):
                handle = await DBOS.start_workflow(triple.run, 5, str(workdir / "log"))
            await handle
            print(json.dumps({"finished_without_crash": True}), flush=True)
            return
        handle = await DBOS.retrieve_workflow(WORKFLOW_ID)
        if role == "recover-missing":
            for _ in range(100):  # the takeover at launch logs it, then every lease/3
                if captured.lines:
                    break
                await asyncio.sleep(0.1)
            status = await handle.get_status()
            print(json.dumps({"status": status.status.value, "logged": captured.lines}))
            return
        result = await handle
        status = await handle.get_status()
        outcome = {
            "result": result,
            "status": status.status.value,
            "class_name": status.class_name,
            "config_name": status.config_name,
            "recovery_attempts": status.recovery_attempts,
        }
        print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
