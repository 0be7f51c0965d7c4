"""A program for the crash tests: run in real processes that kill themselves (SIGKILL)
at chosen points, and then in fresh processes that recover what they left.

    python crash_app.py SCENARIO ROLE DATABASE_URL WORKDIR

ROLE is ``start`` (launch, start the scenario's workflow, await it: it dies on the way)
or ``recover`` (launch, which recovers, then await the workflow and print its outcome as
one JSON line). Every step appends a line to WORKDIR/log, so the test sees what ran.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from dbos_async import DBOS, SetWorkflowID

SCENARIO, ROLE, DB_URL, WORKDIR = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
WORKFLOW_ID = f"crash-{SCENARIO}"


def log(line: str) -> None:
    with open(WORKDIR / "log", "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def armed(name: str) -> bool:
    """True once per marker file: the first run that reaches it dies."""
    marker = WORKDIR / f"armed-{name}"
    if marker.exists():
        marker.unlink()
        return True
    return False


# -- three_steps: killed at the start of step 3 -------------------------------------


@DBOS.step()
async def crash_step_one(x: int) -> int:
    log("step1")
    return x + 1


@DBOS.step()
async def crash_step_two(x: int) -> int:
    log("step2")
    return x * 10


@DBOS.step()
async def crash_step_three(x: int) -> int:
    log("step3")
    if armed("step3"):
        die()
    return x + 5


@DBOS.workflow()
async def crash_three_steps(x: int) -> int:
    a = await crash_step_one(x)
    b = await crash_step_two(a)
    return await crash_step_three(b)


# -- transaction: killed after the transaction commits, before its step row -----------


@DBOS.transaction()
async def crash_insert(value: str) -> str:
    log("transaction")
    conn = DBOS.sql_connection
    if DB_URL.startswith("sqlite"):
        await conn.execute("CREATE TABLE IF NOT EXISTS crash_rows (v TEXT)")
        await conn.execute("INSERT INTO crash_rows (v) VALUES (?)", (value,))
    else:
        await conn.execute("CREATE TABLE IF NOT EXISTS crash_rows (v TEXT)")
        await conn.execute("INSERT INTO crash_rows (v) VALUES ($1)", value)
    return f"inserted {value}"


@DBOS.workflow()
async def crash_transaction(value: str) -> str:
    out = await crash_insert(value)
    await crash_step_one(1)
    return out


def die_before_row(step_name: str, marker: str) -> None:
    """Die (once per ``marker``) when a batch holding the row of the step named
    ``step_name`` is about to be committed: nothing of that batch is durable."""
    from dbos_async._runtime import get_runtime

    sysdb = get_runtime().sysdb
    original = sysdb.write_batch

    async def write_batch(writes: Any, **kwargs: Any) -> Any:
        names = {getattr(getattr(w, "step", None), "function_name", None) for w in writes}
        if any(str(n).endswith(step_name) for n in names) and armed(marker):
            die()
        return await original(writes, **kwargs)

    sysdb.write_batch = write_batch  # type: ignore[method-assign]


# -- deferred: killed before a step's deferred row commits ----------------------------


@DBOS.step()
async def crash_deferred_one(x: int) -> int:
    log("step1")
    return x + 1


@DBOS.step()
async def crash_deferred_two(x: int) -> int:
    log("step2")
    return x * 10


@DBOS.workflow()
async def crash_deferred(x: int) -> int:
    a = await crash_deferred_one(x)
    log(f"between {a}")  # (the workflow went on before step 1's row committed)
    return await crash_deferred_two(a)


# -- max_recovery: dies on every run ---------------------------------------------------


@DBOS.step()
async def crash_always(x: int) -> int:
    log("always")
    die()
    return x


@DBOS.workflow(max_recovery_attempts=2)
async def crash_every_time(x: int) -> int:
    return await crash_always(x)


# -- sleep: killed from outside while sleeping -----------------------------------------


@DBOS.workflow()
async def crash_sleeper(seconds: float) -> float:
    await crash_step_one(0)
    log(f"sleeping {time.time()}")
    await DBOS.sleep(seconds)
    return time.time()


# -- recv / get_event: killed from outside while waiting out their timeout ------------


@DBOS.workflow()
async def crash_waiter(kind: str, seconds: float) -> list[Any]:
    await crash_step_one(0)  # step 1; the wait is step 2, its deadline step 3
    log(f"waiting {time.time()}")
    if kind == "recv":
        got = await DBOS.recv("crash-topic", timeout_seconds=seconds)
    else:
        got = await DBOS.get_event(WORKFLOW_ID, "never-set", timeout_seconds=seconds)
    return [got, time.time()]


# -- determinism: step 1 is another function after the code changed -------------------


@DBOS.step()
async def crash_old_first(x: int) -> int:
    log("old_first")
    return x


@DBOS.step()
async def crash_new_first(x: int) -> int:
    log("new_first")
    return x


@DBOS.workflow()
async def crash_changed(x: int) -> int:
    if os.environ.get("CRASH_CODE_VERSION") == "new":
        await crash_new_first(x)
    else:
        await crash_old_first(x)
    return await crash_step_three(x)


STARTS = {
    "three_steps": (crash_three_steps, (1,)),
    "transaction": (crash_transaction, ("once",)),
    "deferred": (crash_deferred, (1,)),
    "max_recovery": (crash_every_time, (7,)),
    "sleep": (crash_sleeper, (float(os.environ.get("CRASH_SLEEP", "4")),)),
    "recv": (crash_waiter, ("recv", float(os.environ.get("CRASH_WAIT", "4")))),
    "get_event": (crash_waiter, ("get_event", float(os.environ.get("CRASH_WAIT", "4")))),
    "determinism": (crash_changed, (3,)),
}


async def main() -> None:
    config = {
        "database_url": DB_URL,
        "executor_id": "crash-executor",
        "application_version": "crash-v1",
    }
    async with DBOS(config):
        if SCENARIO == "transaction":
            # Its own commit done, its checkpoint in the system database not.
            die_before_row("crash_insert", "transaction")
        if SCENARIO == "deferred":
            # Step 1's body ran and the workflow went on with its output; its row (and
            # anything after it) is not durable.
            die_before_row("crash_deferred_one", "deferred")
        if ROLE == "start":
            func, args = STARTS[SCENARIO]
            with SetWorkflowID(WORKFLOW_ID):
                handle = await DBOS.start_workflow(func, *args)
            log("started")
            await handle
            print(json.dumps({"finished_without_crash": True}), flush=True)
            return
        handle = await DBOS.retrieve_workflow(WORKFLOW_ID)
        try:
            result = await handle
            outcome: dict[str, Any] = {"result": result}
        except Exception as exc:
            outcome = {"error": type(exc).__name__, "message": str(exc)}
        status = await handle.get_status()
        outcome["status"] = status.status.value
        outcome["recovery_attempts"] = status.recovery_attempts
        outcome["finished_at"] = time.time()
        print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
