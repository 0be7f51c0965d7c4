"""The ``dbos-async`` command line (API.md section 7 from a shell), on both backends.

Workflows are run in this process with the ``dbos`` fixture; the CLI then runs as a real
subprocess (``python -m dbos_async.cli``, or the ``dbos-async`` console script) against
the same database, and its output is parsed back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from dbos_async import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSNonExistentWorkflowError,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
    WorkflowStatusString,
)
from dbos_async._registry import registry
from tests.conftest import drop_pg_database, make_pg_database, pg_url

SCRIPT = Path(sys.executable).with_name("dbos-async")

# -- workflows the CLI inspects ------------------------------------------------------


@DBOS.step()
async def cli_step(i: int) -> int:
    return i * 10


@DBOS.workflow()
async def cli_three_steps(x: int) -> int:
    total = 0
    for i in range(1, 4):
        total += await cli_step(x + i)
    return total


@DBOS.workflow()
async def cli_fails(message: str) -> None:
    await cli_step(0)
    raise ValueError(message)


@DBOS.workflow()
async def cli_blocks() -> str:
    await DBOS.sleep(30)
    return "woke"


# -- running the CLI -----------------------------------------------------------------


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DBOS_DATABASE_URL"}
    env.update(extra or {})
    return env


async def cli(
    *args: str,
    url: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    script: bool = False,
) -> Run:
    """Run the CLI in a subprocess without blocking this process's event loop."""
    command = [str(SCRIPT)] if script else [sys.executable, "-m", "dbos_async.cli"]
    if url is not None:
        command += ["--database-url", url]
    proc = await asyncio.create_subprocess_exec(
        *command,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(env),
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def assert_error(run: Run, code: int, *fragments: str) -> None:
    """One ``error:`` line on stderr naming ``fragments``, nothing on stdout."""
    assert run.code == code, (run.code, run.out, run.err)
    assert run.err.startswith("error:"), run.err
    assert len(run.err.strip().splitlines()) == 1, run.err
    assert "Traceback" not in run.err
    assert run.out == ""
    for fragment in fragments:
        assert fragment in run.err, (fragment, run.err)


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["workflow_id"] for row in rows]


async def run_three(workflow_id: str, x: int = 1) -> None:
    with SetWorkflowID(workflow_id):
        assert await cli_three_steps(x) == 10 * (3 * x + 6)
    await asyncio.sleep(0.005)  # distinct created_at for the ordering checks


async def run_failing(workflow_id: str) -> None:
    with SetWorkflowID(workflow_id), pytest.raises(ValueError, match="cli boom"):
        await cli_fails("cli boom")
    await asyncio.sleep(0.005)


# -- tests ---------------------------------------------------------------------------


async def test_cli__list_json_filters_paging_and_order(dbos: DBOS, db_url: str) -> None:
    await run_three("cli-a")
    await run_three("cli-b")
    await run_failing("cli-err")
    await run_three("cli-c")
    b_status = await DBOS.get_workflow_status("cli-b")
    assert b_status is not None

    rows = (await cli("workflow", "list", "--json", url=db_url)).json()
    assert ids(rows) == ["cli-a", "cli-b", "cli-err", "cli-c"]
    assert [r["status"] for r in rows] == ["SUCCESS", "SUCCESS", "ERROR", "SUCCESS"]
    assert rows[0]["name"] == "cli_three_steps" and rows[0]["executor_id"] == "local"
    assert isinstance(rows[0]["created_at"], int) and rows[0]["app_version"] == "test"
    assert rows[0]["input"] is None and rows[0]["output"] is None  # not loaded by default

    errors = (await cli("workflow", "list", "--status", "ERROR", "--json", url=db_url)).json()
    assert ids(errors) == ["cli-err"]

    paged = await cli(
        "workflow", "list", "--json", "--name", "cli_three_steps", "--sort-desc",
        "--limit", "2", "--offset", "1", url=db_url,
    )  # fmt: skip
    assert ids(paged.json()) == ["cli-b", "cli-a"]

    start = dt.datetime.fromtimestamp(b_status.created_at / 1000, dt.UTC).isoformat()
    since = await cli(
        "workflow", "list", "--json", "--start-time", start, "--status", "SUCCESS",
        "--status", "ERROR", "--load-input", "--load-output", url=db_url,
    )  # fmt: skip
    loaded = since.json()
    assert ids(loaded) == ["cli-b", "cli-err", "cli-c"]
    assert loaded[0]["input"] == {"args": [1], "kwargs": {}}
    assert loaded[0]["output"] == 10 * (3 + 6)
    assert loaded[1]["error"] == {"type": "ValueError", "message": "cli boom"}


async def test_cli__table_output_via_console_script(dbos: DBOS, db_url: str) -> None:
    await run_three("cli-table-ok")
    await run_failing("cli-table-err")
    assert SCRIPT.exists(), f"console script missing: {SCRIPT}"

    run = await cli("workflow", "list", env={"DBOS_DATABASE_URL": db_url}, script=True)
    assert run.code == 0, run.err
    header, *lines = run.out.splitlines()
    for column in ("ID", "STATUS", "NAME", "CREATED", "UPDATED", "EXECUTOR"):
        assert column in header.split()
    assert "RECOVERY ATTEMPTS" in header
    assert len(lines) == 2
    assert lines[0].split()[:3] == ["cli-table-ok", "SUCCESS", "cli_three_steps"]
    assert lines[1].split()[:3] == ["cli-table-err", "ERROR", "cli_fails"]
    assert header.index("STATUS") == lines[0].index("SUCCESS")  # aligned columns
    created = lines[0].split()[3]
    assert dt.datetime.fromisoformat(created.replace("Z", "+00:00")).tzinfo is not None


async def test_cli__get_and_steps(dbos: DBOS, db_url: str) -> None:
    await run_three("cli-get", x=2)

    status = (await cli("workflow", "get", "cli-get", "--json", url=db_url)).json()
    assert status["workflow_id"] == "cli-get" and status["status"] == "SUCCESS"
    assert status["name"] == "cli_three_steps"
    assert status["input"] == {"args": [2], "kwargs": {}}
    assert status["output"] == 10 * (3 * 2 + 6) and status["error"] is None
    assert status["created_at"] <= status["updated_at"]

    steps = (await cli("workflow", "steps", "cli-get", "--json", url=db_url)).json()
    assert [s["function_id"] for s in steps] == [1, 2, 3]
    assert all(s["function_name"].endswith("cli_step") for s in steps)
    assert [s["output"] for s in steps] == [30, 40, 50]

    described = await cli("workflow", "get", "cli-get", url=db_url)
    assert described.code == 0, described.err
    assert "cli-get" in described.out and "SUCCESS" in described.out
    table = await cli("workflow", "steps", "cli-get", url=db_url)
    assert table.code == 0, table.err
    assert table.out.splitlines()[0].split()[:2] == ["STEP", "NAME"]
    assert [line.split()[0] for line in table.out.splitlines()[1:]] == ["1", "2", "3"]


async def test_cli__cancel_then_resume(dbos: DBOS, db_url: str) -> None:
    with SetWorkflowID("cli-blocked"):
        handle = await DBOS.start_workflow(cli_blocks)
    status = await DBOS.get_workflow_status("cli-blocked")
    assert status is not None and status.status == WorkflowStatusString.PENDING

    cancelled = await cli("workflow", "cancel", "cli-blocked", url=db_url)
    assert cancelled.code == 0, cancelled.err
    assert "cancelled" in cancelled.out
    status = await DBOS.get_workflow_status("cli-blocked")
    assert status is not None and status.status == WorkflowStatusString.CANCELLED
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(handle.get_result(), 10)

    resumed = (await cli("workflow", "resume", "cli-blocked", "--json", url=db_url)).json()
    assert resumed["workflow_id"] == "cli-blocked" and resumed["status"] == "PENDING"
    status = await DBOS.get_workflow_status("cli-blocked")
    assert status is not None and status.status == WorkflowStatusString.PENDING


async def test_cli__delete(dbos: DBOS, db_url: str) -> None:
    await run_three("cli-del")
    deleted = (await cli("workflow", "delete", "cli-del", "--json", url=db_url)).json()
    assert deleted == {"workflow_id": "cli-del", "deleted": True, "delete_children": False}
    assert await DBOS.get_workflow_status("cli-del") is None
    assert await DBOS.list_workflow_steps("cli-del") == []
    gone = await cli("workflow", "get", "cli-del", url=db_url)
    assert_error(gone, 1, "cli-del", "Non-existent target workflow ID")

    with SetWorkflowID("cli-del-running"):
        handle = await DBOS.start_workflow(cli_blocks)
    text_run = await cli("workflow", "delete", "cli-del-running", "--delete-children", url=db_url)
    assert text_run.code == 0, text_run.err
    assert "deleted" in text_run.out and "child workflows" in text_run.out
    assert await DBOS.get_workflow_status("cli-del-running") is None
    with pytest.raises((DBOSAwaitedWorkflowCancelledError, DBOSNonExistentWorkflowError)):
        await asyncio.wait_for(handle.get_result(), 10)
    assert_error(await cli("workflow", "delete", "cli-del", url=db_url), 1, "Non-existent")


async def test_cli__fork_and_step_out_of_range(dbos: DBOS, db_url: str) -> None:
    await run_three("cli-fork-src")

    fork = await cli(
        "workflow", "fork", "cli-fork-src", "--step", "2", "--application-version", "v2",
        "--json", url=db_url,
    )  # fmt: skip
    forked = fork.json()
    new_id = forked["workflow_id"]
    assert new_id != "cli-fork-src" and forked["forked_from"] == "cli-fork-src"
    status = await DBOS.get_workflow_status(new_id)
    assert status is not None
    assert status.forked_from == "cli-fork-src" and status.name == "cli_three_steps"
    assert status.status == WorkflowStatusString.PENDING and status.app_version == "v2"
    copied = (await cli("workflow", "steps", new_id, "--json", url=db_url)).json()
    assert [s["function_id"] for s in copied] == [1]  # steps before 2 are reused

    out_of_range = await cli("workflow", "fork", "cli-fork-src", "--step", "0", url=db_url)
    assert_error(out_of_range, 1, "cli-fork-src", "0")
    listed = await DBOS.list_workflows(name="cli_three_steps")
    assert len(listed) == 2  # the failed fork created nothing


async def test_cli__queue_list(dbos: DBOS, db_url: str) -> None:
    await run_three("cli-not-queued")
    queued = (await cli("queue", "list", "--json", url=db_url)).json()
    assert queued == []  # a workflow run directly is on no queue
    named = await cli("queue", "list", "--queue", "cli-q", url=db_url)
    assert named.code == 0, named.err
    assert "cli-not-queued" not in named.out


async def test_cli__executor_list(dbos: DBOS, db_url: str) -> None:
    (me,) = (await cli("executor", "list", "--json", url=db_url)).json()
    assert me["alive"] is True and me["executor_id"] == "local" and me["pid"] == os.getpid()
    assert me["application_version"] == "test" and me["workflows"] == 0
    table = await cli("executor", "list", url=db_url)
    assert table.code == 0, table.err
    assert "EXECUTOR" in table.out and "local" in table.out and "yes" in table.out


@DBOS.workflow()
async def cli_queued_blocks(tag: str) -> str:
    await DBOS.sleep(60)
    return tag


async def test_cli__queue_list_shows_enqueued_and_pending_rows(db_url: str) -> None:
    """Two queues hold an ENQUEUED (delayed) and a PENDING (running) workflow each; a
    finished queued workflow and a workflow on no queue are not listed."""
    await DBOS.destroy()
    first = Queue("cli_q1", polling_interval_sec=0.1)
    second = Queue("cli_q2", polling_interval_sec=0.1)
    DBOS({"database_url": db_url, "application_version": "cli-v"})
    await DBOS.launch()
    try:
        await run_three("cli-q-direct")
        with SetWorkflowID("cli-q1-done"):
            done = await first.enqueue(cli_three_steps, 0)
        assert await asyncio.wait_for(done.get_result(), 30) == 60
        running = {}
        for name, queue in (("cli-q1-run", first), ("cli-q2-run", second)):
            with SetWorkflowID(name):
                running[name] = await queue.enqueue(cli_queued_blocks, name)
        for name, queue in (("cli-q1-later", first), ("cli-q2-later", second)):
            with SetWorkflowID(name), SetEnqueueOptions(delay_seconds=600):
                await queue.enqueue(cli_queued_blocks, name)
        for handle in running.values():  # claimed: PENDING in this process (30 s bound)
            for _ in range(1500):
                if (await handle.get_status()).status == WorkflowStatusString.PENDING:
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail(f"{handle.workflow_id} was never claimed")
        expected = {
            "cli-q1-run": ("PENDING", "cli_q1", "local"),
            "cli-q2-run": ("PENDING", "cli_q2", "local"),
            "cli-q1-later": ("ENQUEUED", "cli_q1", "-"),
            "cli-q2-later": ("ENQUEUED", "cli_q2", "-"),
        }

        # JSON: exactly the four, with their status, queue and name.
        rows = (await cli("queue", "list", "--json", url=db_url)).json()
        assert sorted(ids(rows)) == sorted(expected)
        for row in rows:
            status, queue_name, _ = expected[row["workflow_id"]]
            assert (row["status"], row["queue_name"]) == (status, queue_name)
            assert row["name"] == "cli_queued_blocks"

        # The table: the header's columns, then one aligned row per workflow.
        run = await cli("queue", "list", url=db_url)
        assert run.code == 0, run.err
        header, *lines = run.out.splitlines()
        assert header.split()[:8] == [
            "ID", "STATUS", "NAME", "CREATED", "UPDATED", "QUEUE", "EXECUTOR", "VERSION"
        ]  # fmt: skip
        assert header.rstrip().endswith("RECOVERY ATTEMPTS")
        assert len(lines) == len(expected), run.out
        for line in lines:
            cells = line.split()
            status, queue_name, executor = expected[cells[0]]
            assert cells[1:3] == [status, "cli_queued_blocks"], line
            assert cells[5:9] == [queue_name, executor, "cli-v", "0"], line
            assert line.index(status) == header.index("STATUS")
            assert line.index(queue_name) == header.index("QUEUE")

        # Filters: one queue, one status.
        only_q2 = (await cli("queue", "list", "--queue", "cli_q2", "--json", url=db_url)).json()
        assert sorted(ids(only_q2)) == ["cli-q2-later", "cli-q2-run"]
        enqueued = (await cli("queue", "list", "--status", "ENQUEUED", "--json", url=db_url)).json()
        assert sorted(ids(enqueued)) == ["cli-q1-later", "cli-q2-later"]
    finally:
        await DBOS.destroy()
        for name in ("cli_q1", "cli_q2"):
            registry.queues.pop(name, None)


async def test_cli__unknown_workflow(dbos: DBOS, db_url: str) -> None:
    await run_three("cli-known")
    for command in ("get", "cancel"):
        run = await cli("workflow", command, "cli-no-such-id", url=db_url)
        assert_error(run, 1, "cli-no-such-id", "Non-existent target workflow ID")


@pytest.fixture
def empty_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database with no tables yet: a new SQLite path, or an empty Postgres database."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'brand-new.sqlite'}"
        return
    request.getfixturevalue("postgres_template")  # skips (or fails in CI) without Postgres
    name = make_pg_database(None)
    try:
        yield pg_url(name)
    finally:
        drop_pg_database(name)


def sqlite_tables(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {r[0].removeprefix("dbos_") for r in rows}


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def dbos_tables(url: str) -> set[str]:
    """The runtime's tables in a database, without the backend's prefix or schema."""
    if url.startswith("sqlite:"):
        return sqlite_tables(Path(url[len("sqlite:///") :]))
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'dbos_async'"
        )
        return {r[0] for r in rows}
    finally:
        await conn.close()


async def test_cli__migrate_creates_schema(empty_url: str) -> None:
    assert await dbos_tables(empty_url) == set()
    run = await cli("migrate", url=empty_url)
    assert run.code == 0, run.err
    assert "up to date" in run.out and empty_url in run.out
    expected = {"workflow_status", "operation_outputs", "transaction_outputs"}
    assert expected <= await dbos_tables(empty_url)
    again = (await cli("migrate", "--json", url=empty_url)).json()
    assert again["up_to_date"] is True
    assert {d["role"] for d in again["databases"]} == {"system", "application"}


async def test_cli__missing_database_url(tmp_path: Path) -> None:
    run = await cli("workflow", "list", cwd=tmp_path)
    assert_error(run, 1, "--database-url", "DBOS_DATABASE_URL")
    assert files_in(tmp_path) == []  # no default SQLite file was created


async def test_cli__malformed_url(tmp_path: Path) -> None:
    run = await cli("workflow", "list", url="sqlite:/not-three-slashes", cwd=tmp_path)
    assert_error(run, 1, "sqlite:/not-three-slashes")
    run = await cli("migrate", env={"DBOS_DATABASE_URL": "mysql://h/db"}, cwd=tmp_path)
    assert_error(run, 1, "mysql://h/db", "DBOS_DATABASE_URL")
    assert files_in(tmp_path) == []


CLI_KEY = "q1m0u3B1Xb9e2yX2uH3VJz0rXbqC8y5b2J1zY7cK9nA="  # 32 bytes, for this test only


async def test_cli__reads_an_encrypted_database_with_the_apps_serializer(
    db_url: str, tmp_path: Path
) -> None:
    """``--serializer module:name`` (or $DBOS_ASYNC_SERIALIZER) gives the CLI the
    application's serializer; without it, values it cannot read are a clear error."""
    from dbos_async.encryption import EncryptedSerializer

    (tmp_path / "cli_keys.py").write_text(
        "from dbos_async.encryption import EncryptedSerializer\n"
        "def serializer():\n"
        f"    return EncryptedSerializer({CLI_KEY!r})\n"
        "NOT_ONE = 42\n"
    )
    await DBOS.destroy()
    DBOS({"database_url": db_url, "serializer": EncryptedSerializer(CLI_KEY)})
    try:
        await DBOS.launch()
        await run_three("cli-enc", x=1)
    finally:
        await DBOS.destroy()

    given = await cli(
        "workflow",
        "get",
        "cli-enc",
        "--json",
        "--serializer",
        "cli_keys:serializer",
        url=db_url,
        cwd=tmp_path,
    )
    assert given.code == 0, given.err
    assert given.json()["output"] == 90 and given.json()["input"] == {"args": [1], "kwargs": {}}
    by_env = await cli(
        "workflow",
        "steps",
        "cli-enc",
        "--json",
        url=db_url,
        cwd=tmp_path,
        env={"DBOS_ASYNC_SERIALIZER": "cli_keys:serializer"},
    )
    assert by_env.code == 0, by_env.err
    assert [s["output"] for s in by_env.json()] == [20, 30, 40]

    plain = await cli("workflow", "get", "cli-enc", url=db_url, cwd=tmp_path)
    assert_error(plain, 1, "cannot deserialize", "pass --serializer module:name")
    for spec, fragment in [
        ("cli_keys", "json, pickle or module:name"),
        ("no_such_module:x", "cannot import it"),
        ("cli_keys:NOT_ONE", "is not a serializer"),
    ]:
        bad = await cli(
            "workflow", "get", "cli-enc", "--serializer", spec, url=db_url, cwd=tmp_path
        )
        assert_error(bad, 1, "--serializer", fragment)


async def test_cli__missing_sqlite_file_and_usage_errors(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'typo.sqlite'}"
    run = await cli("workflow", "list", url=missing)
    assert_error(run, 1, "typo.sqlite", "does not exist")
    assert not (tmp_path / "typo.sqlite").exists()
    usage = await cli("workflow", "list", "--status", "BOGUS", url=missing)
    assert_error(usage, 2, "BOGUS")


async def test_cli__dashboard_serves_the_database(dbos: DBOS, db_url: str) -> None:
    import httpx

    from tests.dashboard_app import dashboard_process

    await run_three("dash-cli-1")
    async with dashboard_process(db_url) as base, httpx.AsyncClient() as http:
        page = await http.get(f"{base}/")
        assert page.status_code == 200 and 'data-workflow-id="dash-cli-1"' in page.text
        steps = await http.get(f"{base}/workflow", params={"id": "dash-cli-1"})
        assert steps.text.count('class="tl-row"') == 3
        refused = await http.post(f"{base}/actions/cancel", data={"id": "dash-cli-1"})
        assert refused.status_code == 403  # no token: read-only
    bad_port = await cli("dashboard", "--port", "99999", url=db_url)
    assert_error(bad_port, 2, "--port", "99999")
    bad = await cli("dashboard", "--refresh", "0", url=db_url)
    assert_error(bad, 2, "--refresh")
