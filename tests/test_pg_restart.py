"""Connection loss is a pause, not a failure: a workflow waiting in ``recv`` survives a
Postgres restart, and its LISTEN connection comes back to wake it.

The test restarts a Postgres cluster, so it runs only when the test server
(``DBOS_TEST_POSTGRES``) is the local cluster on 127.0.0.1:5432 that ``pg_ctlcluster``
manages; against any other server it skips."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from dbos_async import DBOS, SetWorkflowID
from dbos_async._notifier import Notifier

from .conftest import IN_CI, PG_SERVER

# serial: it restarts the server every other test talks to (make test runs it alone).
pytestmark = [pytest.mark.postgres, pytest.mark.serial]

LOCAL_HOSTS = ("127.0.0.1", "localhost")
LOCAL_PORT = 5432


@DBOS.workflow()
async def pgr_waiter() -> str:
    message = await DBOS.recv("t", timeout_seconds=120)
    return f"got {message}"


def local_cluster() -> str | None:
    """The version of the pg_ctlcluster cluster "main" listening on port 5432, or None
    (no such tool or cluster)."""
    if shutil.which("pg_lsclusters") is None or shutil.which("pg_ctlcluster") is None:
        return None
    out = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=True
    ).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == "main" and fields[2] == str(LOCAL_PORT):
            return fields[0]
    return None


@pytest.fixture
def restartable_cluster() -> str:
    """The local cluster's version, if the test server is that cluster; else skip."""
    parts = urlsplit(PG_SERVER)
    if parts.hostname not in LOCAL_HOSTS or (parts.port or LOCAL_PORT) != LOCAL_PORT:
        pytest.skip(
            f"DBOS_TEST_POSTGRES is {parts.hostname}:{parts.port}, not the local cluster at "
            f"127.0.0.1:{LOCAL_PORT}: this test restarts Postgres and will not restart "
            "a server it does not own"
        )
    version = local_cluster()
    if version is None:
        if IN_CI:
            pytest.fail("pg_ctlcluster and a 'main' cluster on port 5432 are needed under CI")
        pytest.skip("no pg_ctlcluster cluster 'main' on port 5432 here")
    return version


def restart_postgres(version: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"],
        check=True,
        timeout=60,
    )
    subprocess.run(
        ["pg_isready", "-h", "127.0.0.1", "-p", str(LOCAL_PORT), "-t", "30"],
        check=True,
        timeout=60,
    )


SENDER = """
import asyncio, sys
from dbos_async import DBOSClient

async def main() -> None:
    client = DBOSClient(sys.argv[1])
    await client.send("pgr-1", "after restart", "t")
    await client.destroy()

asyncio.run(main())
"""

#: How long the waiter may take to wake after the send. Its re-check timer is an hour
#: (below), so within this bound only a notification can wake it.
WOKEN_WITHIN = 20.0


async def test_recv__waiter_survives_postgres_restart(
    restartable_cluster: str, fresh_pg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Waiters re-check only once an hour: a wake-up within the bound is a notification.
    monkeypatch.setattr(Notifier, "poll_interval", lambda self, attempt: 3600.0)
    # The listener delivers to Notifier.notify; "*" is what it announces once it has
    # reconnected.
    reconnected = asyncio.Event()
    real_notify = Notifier.notify

    def notify(self: Notifier, key: str) -> None:
        if key == "*":
            reconnected.set()
        real_notify(self, key)

    monkeypatch.setattr(Notifier, "notify", notify)

    DBOS({"database_url": fresh_pg, "application_version": "test"})
    await DBOS.launch()
    try:
        with SetWorkflowID("pgr-1"):
            handle = await DBOS.start_workflow(pgr_waiter)
        # In recv: it recorded only its deadline (a DBOS.sleep row) and is still running.
        await asyncio.sleep(0.5)
        steps = await DBOS.list_workflow_steps("pgr-1")
        assert [s.function_name for s in steps] == ["DBOS.sleep"]

        await asyncio.to_thread(restart_postgres, restartable_cluster)
        # Wait for the LISTEN connection to be back (it checks every 2 s, then
        # reconnects with backoff, then announces "*").
        await asyncio.wait_for(reconnected.wait(), timeout=60)

        # Another process sends: only the restored LISTEN connection can bring its
        # NOTIFY here within the bound.
        script = tmp_path / "sender.py"
        script.write_text(SENDER)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), fresh_pg, stderr=asyncio.subprocess.PIPE
        )
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, err.decode()
        result = await asyncio.wait_for(handle.get_result(), WOKEN_WITHIN)
        assert result == "got after restart"
    finally:
        await DBOS.destroy()


RAN: dict[str, int] = {}


@DBOS.step()
async def pgr_step(i: int) -> int:
    RAN[f"step-{i}"] = RAN.get(f"step-{i}", 0) + 1
    await asyncio.sleep(0.05)
    return i


@DBOS.transaction()
async def pgr_count(i: int) -> int:
    await DBOS.sql_connection.execute("INSERT INTO pgr_applied (i) VALUES ($1)", i)
    return i


@DBOS.workflow()
async def pgr_steps(n: int) -> int:
    total = 0
    for i in range(n):
        total += await pgr_step(i)
        total += await pgr_count(i)
    return total


async def test_restart__running_workflows_carry_on_and_lose_nothing(
    restartable_cluster: str, fresh_pg: str
) -> None:
    """Steps and transactions run on through a Postgres restart, in the same process: each
    step runs once, each transaction applies once, and every workflow ends SUCCESS."""
    RAN.clear()
    n = 40
    # (Created up front: concurrent CREATE TABLE IF NOT EXISTS can collide in Postgres's
    # catalog, which failed a workflow's transaction once.)
    conn = await asyncpg.connect(fresh_pg)
    try:
        await conn.execute("CREATE TABLE pgr_applied (i INTEGER)")
    finally:
        await conn.close()
    DBOS({"database_url": fresh_pg, "application_version": "test"})
    await DBOS.launch()
    try:
        handles = []
        for w in range(4):
            with SetWorkflowID(f"pgr-steps-{w}"):
                handles.append(await DBOS.start_workflow(pgr_steps, n))
        while len(RAN) < 5:  # noqa: ASYNC110 - a counter, not an event
            await asyncio.sleep(0.01)
        await asyncio.to_thread(restart_postgres, restartable_cluster)
        results = await asyncio.wait_for(asyncio.gather(*handles), 120)
        assert results == [2 * sum(range(n))] * 4
        assert all(count == 4 for count in RAN.values()), RAN  # once per workflow
        conn = await asyncpg.connect(fresh_pg)
        try:
            applied = await conn.fetch("SELECT i, count(*) FROM pgr_applied GROUP BY i")
        finally:
            await conn.close()
        assert sorted((r[0], r[1]) for r in applied) == [(i, 4) for i in range(n)]
        for w in range(4):
            steps = await DBOS.list_workflow_steps(f"pgr-steps-{w}")
            assert [s.function_id for s in steps] == list(range(1, 2 * n + 1))
    finally:
        await DBOS.destroy()
