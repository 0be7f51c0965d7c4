"""Connection loss is a pause, not a failure: a workflow waiting in ``recv`` survives a
Postgres restart, and its LISTEN connection comes back to wake it."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dbos_async import DBOS, SetWorkflowID

from .conftest import IN_CI

pytestmark = pytest.mark.postgres

received_at: list[float] = []


@DBOS.workflow()
async def pgr_waiter() -> str:
    message = await DBOS.recv("t", timeout_seconds=60)
    received_at.append(time.time())
    return f"got {message}"


def restart_postgres() -> None:
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        if IN_CI:
            pytest.fail("pg_ctlcluster is needed to restart Postgres under CI=true")
        pytest.skip("no pg_ctlcluster here")
    version = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"],
        check=True,
        timeout=60,
    )
    subprocess.run(["pg_isready", "-h", "127.0.0.1", "-t", "30"], check=True, timeout=60)


SENDER = """
import asyncio, sys, time
from dbos_async import DBOSClient

async def main() -> None:
    client = DBOSClient(sys.argv[1])
    sent = time.time()
    await client.send("pgr-1", "after restart", "t")
    await client.destroy()
    print(sent)

asyncio.run(main())
"""


async def test_recv__waiter_survives_postgres_restart(fresh_pg: str, tmp_path: Path) -> None:
    received_at.clear()
    DBOS({"database_url": fresh_pg, "application_version": "test"})
    await DBOS.launch()
    try:
        with SetWorkflowID("pgr-1"):
            handle = await DBOS.start_workflow(pgr_waiter)
        await asyncio.sleep(0.5)  # in recv
        await asyncio.to_thread(restart_postgres)
        # Let the LISTEN connection notice and reconnect (it checks every 2 s).
        await asyncio.sleep(4)
        script = tmp_path / "sender.py"
        script.write_text(SENDER)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), fresh_pg, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        sent = float(out.decode().strip().splitlines()[-1])
        assert await asyncio.wait_for(handle.get_result(), 20) == "got after restart"
        # Woken by the restored LISTEN connection, not by the 2 s safety poll.
        assert received_at[0] - sent < 1.0
    finally:
        await DBOS.destroy()
