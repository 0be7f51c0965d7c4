"""The guestbook workflow of the founding document, on dbos_async.

A communicator step signs an external guestbook, then a transaction records the greeting
in the application database. Each step is checkpointed: if the process dies between the
two, a relaunch records the greeting without signing the guestbook again.

    python examples/guestbook.py [NAME]

Runs on SQLite (``guestbook.sqlite`` in the working directory) with nothing else
installed, or on Postgres when ``DBOS_DATABASE_URL`` is set.
"""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime

from dbos_async import DBOS, run


@DBOS.communicator()
async def sign_guestbook(name: str) -> str:
    """Stands in for the call to a remote guestbook service: it returns a receipt."""
    receipt = f"guestbook-{uuid.uuid4().hex[:8]}"
    print(f"[{datetime.now(UTC):%H:%M:%S}] signed the guestbook for {name} ({receipt})")
    return receipt


@DBOS.transaction()
async def insert_greeting(name: str, note: str) -> int:
    """Record the greeting; returns how many greetings the guestbook now holds."""
    conn = DBOS.sql_connection
    await conn.execute("CREATE TABLE IF NOT EXISTS dbos_greetings (name TEXT, note TEXT)")
    if hasattr(conn, "fetchval"):  # asyncpg on Postgres: $1 parameters
        await conn.execute("INSERT INTO dbos_greetings (name, note) VALUES ($1, $2)", name, note)
        return int(await conn.fetchval("SELECT count(*) FROM dbos_greetings"))
    # aiosqlite on SQLite: ? parameters
    await conn.execute("INSERT INTO dbos_greetings (name, note) VALUES (?, ?)", (name, note))
    cursor = await conn.execute("SELECT count(*) FROM dbos_greetings")
    row = await cursor.fetchone()
    return int(row[0])


@DBOS.workflow()
async def greeting_workflow(name: str, note: str) -> str:
    receipt = await sign_guestbook(name)
    count = await insert_greeting(name, note)
    return f"Thank you for being awesome, {name}! (receipt {receipt}, greeting #{count})"


async def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "dbos"
    async with DBOS({"name": "guestbook"}):
        handle = await DBOS.start_workflow(greeting_workflow, name, "hello from dbos_async")
        print(await handle)
        status = await handle.get_status()
        steps = await DBOS.list_workflow_steps(handle.workflow_id)
        print(
            f"workflow {handle.workflow_id}: {status.status}, steps: "
            + ", ".join(f"{s.function_id}={s.function_name}" for s in steps)
        )


if __name__ == "__main__":
    run(main())
