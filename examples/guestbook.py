"""The guestbook workflow of the founding document, on dbos_async.

A communicator step signs an external guestbook, then a transaction records the greeting
in the application database. Each step is checkpointed: if the process dies between the
two, a relaunch records the greeting without signing the guestbook again.

    python examples/guestbook.py [NAME]

Runs on SQLite (``guestbook.sqlite`` in the working directory), or on Postgres when
``DBOS_DATABASE_URL`` is set. The transaction uses ``DBOS.sql_session`` (SQLAlchemy):
install the ``sqlalchemy`` extra (``pip install 'dbos_async[sqlalchemy]'``; ``make run``
installs it).
"""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime

from sqlalchemy import text

from dbos_async import DBOS, run


@DBOS.communicator()
async def sign_guestbook(name: str) -> str:
    """Stands in for the call to a remote guestbook service: it returns a receipt."""
    receipt = f"guestbook-{uuid.uuid4().hex[:8]}"
    print(f"[{datetime.now(UTC):%H:%M:%S}] signed the guestbook for {name} ({receipt})")
    return receipt


@DBOS.transaction()
async def insert_greeting(name: str, note: str) -> int:
    """Record the greeting; returns how many greetings the guestbook now holds. The same
    SQLAlchemy code runs on SQLite and on Postgres, inside the transaction the runtime
    commits together with this function's recorded output."""
    session = DBOS.sql_session
    await session.execute(text("CREATE TABLE IF NOT EXISTS dbos_greetings (name TEXT, note TEXT)"))
    await session.execute(
        text("INSERT INTO dbos_greetings (name, note) VALUES (:name, :note)"),
        {"name": name, "note": note},
    )
    return int(await session.scalar(text("SELECT count(*) FROM dbos_greetings")))


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
