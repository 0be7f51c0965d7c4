"""``dbos_async.testing.crash_and_recover`` and the pytest plugin (API.md section 10).

The first part runs ``crash_and_recover`` against this repo's ``dbos`` fixture on both
backends: a child process is SIGKILLed after step N, this process recovers the workflow,
and the side effects (lines in a file, rows in a table) show that no step before the
crash ran twice. The second part is the acceptance test: a throwaway user project that
only installs the built wheel proves a crash-recovery property of its own workflow with
the plugin's ``dbos`` fixture and ``crash_and_recover``, run by pytest in a subprocess,
on SQLite and on Postgres (``--dbos-database-url``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiosqlite
import asyncpg
import pytest

from dbos_async import DBOS, DBOSException, SetWorkflowID
from dbos_async.testing import CrashReport, crash_and_recover
from tests.conftest import IN_CI, PG_SERVER

REPO = Path(__file__).resolve().parent.parent

# -- workflows the child process imports (by this module's name) ---------------------


@DBOS.step()
def mark(path: str, label: str) -> int:
    """Append ``label pid`` to the file: one line per time the step's body ran."""
    with open(path, "a") as f:
        f.write(f"{label} {os.getpid()}\n")
    return os.getpid()


@DBOS.workflow()
async def child_wf(path: str) -> str:
    await mark(path, "child")
    return "child done"


@DBOS.workflow()
async def mixed(path: str) -> str:
    """Step 1 a step, 2 DBOS.sleep, 3 a child workflow's start, 4 a step."""
    await mark(path, "a")
    await DBOS.sleep(0.01)
    handle = await DBOS.start_workflow(child_wf, path)
    out = await handle.get_result()
    await mark(path, "b")
    return out


@DBOS.transaction()
async def insert_order(order: str) -> None:
    conn = DBOS.sql_connection
    if isinstance(conn, aiosqlite.Connection):
        await conn.execute("CREATE TABLE IF NOT EXISTS orders (id TEXT)")
        await conn.execute("INSERT INTO orders (id) VALUES (?)", (order,))
    else:
        await conn.execute("CREATE TABLE IF NOT EXISTS orders (id TEXT)")
        await conn.execute("INSERT INTO orders (id) VALUES ($1)", order)


@DBOS.transaction()
async def count_orders(order: str) -> int:
    conn = DBOS.sql_connection
    if isinstance(conn, aiosqlite.Connection):
        cursor = await conn.execute("SELECT count(*) FROM orders WHERE id = ?", (order,))
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])
    return int(await conn.fetchval("SELECT count(*) FROM orders WHERE id = $1", order))


@dataclass
class Order:
    id: str
    amount: int


@DBOS.workflow()
async def place(order: Order, path: str, *, note: str = "") -> str:
    """Step 1 a transaction, 2 a step."""
    await insert_order(order.id)
    await mark(path, f"placed-{order.id}")
    return f"{order.id}:{order.amount}:{note}"


@DBOS.workflow()
async def fails_after_first_step(path: str) -> str:
    await mark(path, "first")
    raise ValueError(f"bad order in {path}")


@DBOS.step()
async def not_a_workflow() -> None:
    """A step, to hand crash_and_recover something that is not a workflow."""


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# -- crash_and_recover on both backends ------------------------------------------------


@pytest.mark.parametrize("step", [1, 2, 3, 4])
async def test_crash_and_recover__no_step_before_the_crash_runs_again(
    dbos: DBOS, tmp_path: Path, step: int
) -> None:
    """Crashed after each kind of step (a step, DBOS.sleep, a child workflow's start, the
    last step): each side effect happened exactly once, those up to the crash in the
    killed child, the rest in this process, and the result is the workflow's."""
    path = tmp_path / "marks.txt"
    report = await crash_and_recover(mixed, str(path), crash_after_step=step)

    assert isinstance(report, CrashReport)
    assert report.result == "child done"
    assert report.crash_after_step == step
    assert report.exit_signal == 9
    assert report.child_pid != os.getpid()
    assert [s.function_id for s in report.steps_at_crash] == list(range(1, step + 1))
    assert [(s.function_id, s.function_name) for s in report.steps] == [
        (1, "mark"),
        (2, "DBOS.sleep"),
        (3, "child_wf"),
        (4, "mark"),
    ]
    assert report.step(3).child_workflow_id == f"{report.workflow_id}-3"
    assert report.status.status == "SUCCESS"
    # (The last step's row commits with the outcome: killed after it, the workflow had
    # finished, and there was nothing to recover.)
    assert report.status.recovery_attempts >= (0 if step == 4 else 1)
    if step == 4:
        assert report.status.recovery_attempts == 0
    # Every body ran once; step 1 in the child, step 4 here unless the crash came after it.
    ran = [line.split() for line in lines(path)]
    assert [label for label, _ in ran] == ["a", "child", "b"]
    pids = {label: int(pid) for label, pid in ran}
    assert pids["a"] == report.child_pid
    # The child workflow ran where its parent was when it started: in the killed process
    # only if the crash came after the parent had awaited it.
    assert pids["child"] == (report.child_pid if step == 4 else os.getpid())
    assert pids["b"] == (report.child_pid if step == 4 else os.getpid())
    assert report.step(1).output == report.child_pid


async def test_crash_and_recover__a_committed_transaction_is_not_run_again(
    dbos: DBOS, tmp_path: Path
) -> None:
    """Crash right after a transaction committed: its row is in the table once; the
    arguments (a dataclass, a keyword) crossed to the child through the serializer."""
    path = tmp_path / "marks.txt"
    report = await crash_and_recover(
        place, Order("o-7", 30), str(path), note="gift", crash_after_step=1
    )
    assert report.result == "o-7:30:gift"
    assert await count_orders("o-7") == 1
    assert lines(path) == [f"placed-o-7 {os.getpid()}"]
    assert [s.function_name for s in report.steps] == ["insert_order", "mark"]


async def test_crash_and_recover__with_an_encrypted_serializer(db_url: str, tmp_path: Path) -> None:
    """The child process gets the same EncryptedSerializer (its keys, its context)."""
    from dbos_async.encryption import EncryptedSerializer

    serializer = EncryptedSerializer(EncryptedSerializer.generate_key(), context="tests")
    await DBOS.destroy()
    DBOS({"database_url": db_url, "application_version": "test", "serializer": serializer})
    try:
        await DBOS.launch()
        path = tmp_path / "marks.txt"
        report = await crash_and_recover(place, Order("o-9", 5), str(path), crash_after_step=1)
        assert report.result == "o-9:5:"
        assert await count_orders("o-9") == 1
        assert [s.function_name for s in report.steps] == ["insert_order", "mark"]
    finally:
        await DBOS.destroy()


async def test_crash_and_recover__uses_the_workflow_id_set_around_it(
    dbos: DBOS, tmp_path: Path
) -> None:
    with SetWorkflowID("crash-me-1"):
        report = await crash_and_recover(mixed, str(tmp_path / "m.txt"), crash_after_step=1)
    assert report.workflow_id == "crash-me-1"
    status = await DBOS.get_workflow_status("crash-me-1")
    assert status is not None and status.status == "SUCCESS"
    # Its ID is now taken: a second run under it would not run, so it is refused.
    with SetWorkflowID("crash-me-1"), pytest.raises(DBOSException, match="already exists"):
        await crash_and_recover(mixed, str(tmp_path / "m.txt"), crash_after_step=1)


async def test_crash_and_recover__the_recovered_workflows_error_is_raised(
    dbos: DBOS, tmp_path: Path
) -> None:
    path = tmp_path / "marks.txt"
    with pytest.raises(ValueError, match="bad order in"):
        await crash_and_recover(fails_after_first_step, str(path), crash_after_step=1)
    assert [line.split()[0] for line in lines(path)] == ["first"]


async def test_crash_and_recover__a_step_never_reached_is_a_clear_error(
    dbos: DBOS, tmp_path: Path
) -> None:
    with pytest.raises(DBOSException, match=r"never reached step 5: .*SUCCESS after 4 steps"):
        await crash_and_recover(mixed, str(tmp_path / "a.txt"), crash_after_step=5)
    with pytest.raises(DBOSException, match=r"never reached step 2: .*ERROR after 1 step \("):
        await crash_and_recover(fails_after_first_step, str(tmp_path / "b.txt"), crash_after_step=2)


async def test_crash_and_recover__bad_workflows_and_steps_are_refused(
    dbos: DBOS, tmp_path: Path
) -> None:
    @DBOS.workflow(name="test_testing_plugin.nested")
    async def nested() -> None:
        await mark(str(tmp_path / "n.txt"), "nested")

    with pytest.raises(DBOSException, match="defined inside a function"):
        await crash_and_recover(nested, crash_after_step=1)
    with pytest.raises(DBOSException, match="is not a @DBOS\\.workflow"):
        await crash_and_recover(not_a_workflow, crash_after_step=1)
    for bad in (0, -1, True, "1"):
        with pytest.raises(ValueError, match="crash_after_step must be a step ID"):
            await crash_and_recover(mixed, "x", crash_after_step=bad)  # type: ignore[arg-type]
    assert not (tmp_path / "n.txt").exists()


async def test_crash_and_recover__a_child_that_cannot_import_the_workflow_says_why(
    dbos: DBOS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module that exists only in this process (built at run time): the child's import
    fails, and the error carries the child's own explanation."""
    module = types.ModuleType("ghost_workflows")
    exec(
        "from dbos_async import DBOS\n"
        "@DBOS.workflow(name='ghost_wf')\n"
        "async def ghost_wf() -> int:\n"
        "    return 1\n",
        module.__dict__,
    )
    monkeypatch.setitem(sys.modules, "ghost_workflows", module)
    with pytest.raises(DBOSException, match="cannot import module 'ghost_workflows'"):
        await crash_and_recover(module.ghost_wf, crash_after_step=1)
    assert await DBOS.list_workflows() == []


async def test_crash_and_recover__needs_a_launched_dbos(tmp_path: Path) -> None:
    await DBOS.destroy()
    with pytest.raises(DBOSException, match="needs a launched DBOS"):
        await crash_and_recover(mixed, str(tmp_path / "m.txt"), crash_after_step=1)
    DBOS({"database_url": f"sqlite:///{tmp_path / 'x.sqlite'}"})
    try:
        with pytest.raises(DBOSException, match="needs a launched DBOS"):
            await crash_and_recover(mixed, str(tmp_path / "m.txt"), crash_after_step=1)
    finally:
        await DBOS.destroy()


async def test_crash_and_recover__an_in_memory_database_cannot_be_shared(tmp_path: Path) -> None:
    await DBOS.destroy()
    async with DBOS({"database_url": "sqlite:///:memory:", "application_version": "test"}):
        with pytest.raises(DBOSException, match=r"'database_url' is sqlite:///:memory:"):
            await crash_and_recover(mixed, str(tmp_path / "m.txt"), crash_after_step=1)
    assert not (tmp_path / "m.txt").exists()


# -- the acceptance test: a user project with only the installed wheel -----------------

SHOP = '''\
"""A user's application: checkout charges a card, then ships the order."""

from dbos_async import DBOS


@DBOS.step()
def charge(ledger: str, order: str, amount: int) -> str:
    with open(ledger, "a") as f:  # stands for a payment API: must not happen twice
        f.write(f"charge {order} {amount}\\n")
    return f"ch_{order}"


@DBOS.step()
def ship(ledger: str, order: str) -> None:
    with open(ledger, "a") as f:
        f.write(f"ship {order}\\n")


@DBOS.workflow()
async def checkout(ledger: str, order: str, amount: int) -> str:
    charge_id = await charge(ledger, order, amount)
    await ship(ledger, order)
    return f"{order}: {charge_id} shipped"
'''

TEST_SHOP = """\
import pytest

from dbos_async.testing import crash_and_recover

import shop


@pytest.mark.parametrize("step", [1, 2])
async def test_checkout_charges_once_across_a_crash(dbos, tmp_path, step):
    ledger = tmp_path / "ledger.txt"
    report = await crash_and_recover(
        shop.checkout, str(ledger), "o-1", 30, crash_after_step=step
    )
    assert report.result == "o-1: ch_o-1 shipped"
    assert ledger.read_text().splitlines() == ["charge o-1 30", "ship o-1"]
    assert [s.function_name for s in report.steps] == ["charge", "ship"]
"""

TEST_PLAIN = """\
from dbos_async import DBOS

import shop


async def test_checkout_returns_the_charge(dbos, tmp_path):
    assert await shop.checkout(str(tmp_path / "ledger.txt"), "o-1", 30) == "o-1: ch_o-1 shipped"
    [status] = await DBOS.list_workflows()
    assert status.status == "SUCCESS"
"""

CONFTEST = """\
import pytest


@pytest.fixture
def dbos_config(dbos_config):
    return {**dbos_config, "name": "shop"}
"""

# Not part of the user's example: what the outer test checks about the environment.
TEST_ENVIRONMENT = '''\
import json
import os
import re
import sys
import textwrap
import types
from pathlib import Path

import dbos_async
from dbos_async import DBOS


async def test_environment(request, dbos, dbos_config):
    """The package is the installed wheel, the plugin came in through its entry point,
    the conftest's dbos_config override counts, and the fixture's DBOS is launched."""
    assert request.config.pluginmanager.hasplugin("dbos_async")
    assert dbos_config["name"] == "shop"
    assert await DBOS.list_workflows() == []
    Path(os.environ["RECORD"]).write_text(
        json.dumps(
            {
                "file": dbos_async.__file__,
                "prefix": sys.prefix,
                "url": dbos_config["database_url"],
            }
        )
    )
'''

PYPROJECT = """\
[project]
name = "shop"
version = "0"
dependencies = ["dbos_async"]

[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
filterwarnings = ["error"]
"""


def _site_packages(prefix: Path) -> Path:
    return (
        prefix
        / "lib"
        / f"python{sys.version_info.major}.{sys.version_info.minor}"
        / ("site-packages")
    )


@dataclass
class UserProject:
    root: Path
    python: Path
    record: Path

    def pytest(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env.pop("DBOS_TEST_DATABASE_URL", None)
        env.pop("DBOS_DATABASE_URL", None)
        env["RECORD"] = str(self.record)
        self.record.unlink(missing_ok=True)
        return subprocess.run(
            [str(self.python), "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )


@pytest.fixture(scope="module")
def user_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UserProject]:
    """A wheel of this checkout installed (without dependencies) in a new venv that sees
    the test venv's site-packages only through a plain path (so not this repo's editable
    install), and a user project with its own pytest config. Built once per module."""
    base = tmp_path_factory.mktemp("user")
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "dbos_async", source / "dbos_async", ignore=shutil.ignore_patterns("__pycache__")
    )
    wheels = base / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if build.returncode != 0:
        message = f"cannot build the wheel (its build backend is fetched by pip):\n{build.stderr}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    (wheel,) = wheels.glob("dbos_async-*.whl")

    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    subprocess.run(
        [*pip, "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    # pytest, pytest-asyncio, asyncpg, pydantic, aiosqlite: from the test venv, as a plain
    # sys.path entry after the new venv's own site-packages (its .pth files, among them
    # the editable install of dbos_async, are not run).
    test_site = Path(pytest.__file__).resolve().parent.parent
    (_site_packages(venv) / "test_venv.pth").write_text(f"{test_site}\n")

    root = base / "project"
    root.mkdir()
    for name, text in {
        "pyproject.toml": PYPROJECT,
        "shop.py": SHOP,
        "conftest.py": CONFTEST,
        "test_shop.py": TEST_SHOP,
        "test_plain.py": TEST_PLAIN,
        "test_environment.py": TEST_ENVIRONMENT,
    }.items():
        (root / name).write_text(text)
    yield UserProject(root, python, base / "record.json")


def _database_exists(name: str) -> bool:
    async def check() -> bool:
        conn = await asyncpg.connect(f"{PG_SERVER}/postgres", timeout=5)
        try:
            return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
        finally:
            await conn.close()

    return asyncio.run(check())


@pytest.mark.crash
def test_plugin__a_user_project_proves_its_workflow_survives_a_crash(
    user_project: UserProject, backend: str, request: pytest.FixtureRequest
) -> None:
    """The user's project proves "a crash never charges twice" in a few lines, with the
    plugin's ``dbos`` fixture and ``crash_and_recover``, on the installed wheel."""
    args: list[str] = []
    if backend == "postgres":
        request.getfixturevalue("postgres_template")  # skips or fails as conftest says
        args = ["--dbos-database-url", PG_SERVER]
    run = user_project.pytest(*args)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "4 passed" in output, output
    where = "created on" if backend == "postgres" else "SQLite files in tmp_path"
    assert f"dbos_async: fixture databases are {where}" in output, output

    record = json.loads(user_project.record.read_text())
    package = Path(record["file"]).resolve()
    assert package.is_relative_to(_site_packages(Path(record["prefix"]).resolve())), record
    assert not package.is_relative_to(REPO), record
    if backend == "postgres":
        assert record["url"].startswith(f"{PG_SERVER}/dbos_async_test_"), record
        assert not _database_exists(record["url"].rsplit("/", 1)[1]), "not dropped"
    else:
        assert record["url"].startswith("sqlite:///") and record["url"].endswith(".sqlite")


def test_plugin__a_database_url_that_is_no_postgres_server_is_a_usage_error(
    user_project: UserProject,
) -> None:
    run = user_project.pytest("--dbos-database-url", "sqlite:///x.sqlite", "test_environment.py")
    assert run.returncode == 4, run.stdout + run.stderr
    assert "--dbos-database-url / DBOS_TEST_DATABASE_URL must name a Postgres server" in (
        run.stderr
    )


def test_plugin__defines_no_autouse_fixture() -> None:
    """The plugin is loaded in every pytest run of a project that installs the package
    (this repo's too): its fixtures run only where a test asks for them."""
    import dbos_async._pytest_plugin as plugin

    for name in ("dbos", "dbos_config", "dbos_database_url"):
        marker = getattr(plugin, name)._fixture_function_marker
        assert not marker.autouse, name


def test_docs__the_examples_are_the_project_the_acceptance_test_runs() -> None:
    """docs/testing.md shows the user project above, file for file, so its example runs."""
    text = (REPO / "docs" / "testing.md").read_text()
    blocks = {
        textwrap.dedent(block)
        for block in re.findall(r"^ *```python\n(.*?)^ *```$", text, re.S | re.M)
    }
    for name, source in {
        "shop.py": SHOP,
        "test_shop.py": TEST_SHOP,
        "test_plain.py": TEST_PLAIN,
        "conftest.py": CONFTEST,
    }.items():
        assert source in blocks, f"docs/testing.md does not show {name} as the test runs it"
