"""A program for the patching crash test: one workflow in two versions of its code.

    python patch_app.py CODE ROLE DATABASE_URL WORKDIR WORKFLOW_ID

CODE is ``old`` (three steps) or ``new`` (the second step is patched: ``DBOS.patch("fix")``
guards a new version of it). ROLE is ``start`` (launch, run the workflow under
WORKFLOW_ID: with ``DBOS_ASYNC_CRASH_AFTER_STEP`` set it dies on the way) or ``recover``
(launch, which takes over what a dead process left, then await WORKFLOW_ID). The last
line printed is ``result=<output> steps=<recorded step names>``. Every step body appends
``<CODE>:<step>`` to WORKDIR/log, so the test sees what ran where.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from dbos_async import DBOS, SetWorkflowID

CODE, ROLE, DB_URL, WORKDIR, WORKFLOW_ID = sys.argv[1:6]


def log(line: str) -> None:
    with open(Path(WORKDIR) / "log", "a") as f:
        f.write(f"{CODE}:{line}\n")
        f.flush()
        os.fsync(f.fileno())


@DBOS.step(name="patch_one")
async def one() -> int:
    log("one")
    return 1


@DBOS.step(name="patch_two")
async def two() -> int:
    log("two")
    return 10


@DBOS.step(name="patch_two_fixed")
async def two_fixed() -> int:
    log("two_fixed")
    return 1000


@DBOS.step(name="patch_three")
async def three() -> int:
    log("three")
    return 100


if CODE == "old":

    @DBOS.workflow(name="patch_workflow")
    async def workflow() -> int:
        a = await one()
        b = await two()
        return a + b + await three()

else:

    @DBOS.workflow(name="patch_workflow")
    async def workflow() -> int:
        a = await one()
        b = await two_fixed() if await DBOS.patch("fix") else await two()
        return a + b + await three()


async def main() -> None:
    # (No application version given: with enable_patching both codes are the version
    # "PATCHING_ENABLED", so the new code recovers what the old code left.)
    async with DBOS({"database_url": DB_URL, "enable_patching": True}):
        if ROLE == "start":
            with SetWorkflowID(WORKFLOW_ID):
                handle = await DBOS.start_workflow(workflow)
        else:
            handle = await DBOS.retrieve_workflow(WORKFLOW_ID)
        result = await asyncio.wait_for(handle.get_result(), 30)
        steps = ",".join(s.function_name for s in await DBOS.list_workflow_steps(WORKFLOW_ID))
        print(f"result={result} steps={steps}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
