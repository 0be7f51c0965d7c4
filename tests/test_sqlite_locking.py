"""SQLite, one file for the application's and the runtime's tables: a transaction body
open past the busy timeout delays other workflows' checkpoints but never fails them, in
this process or another; and, on both backends, a DBOS call that writes to the system
database from inside a transaction body is refused at once (sysdb/_sqlite_connection.py,
_txguard.py).

No stopwatch assertions: conditions are awaited with generous bounds; the tests assert
orderings (nothing past a checkpoint while the body is open) and outcomes.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import aiosqlite
import pytest

from dbos_async import DBOS, DBOSException, Queue, WorkflowStatusString
from dbos_async.sysdb import TransactionConflict, _sqlite, _sqlite_connection

from .test_transactions import db_execute, db_fetch, pg_sql

WRITER_APP = Path(__file__).with_name("sqlite_writer_app.py")
#: A generous bound for anything that should happen "soon".
SOON = 30.0
#: The busy timeout the locking tests run with; the body stays open many times longer.
LOW_BUSY_TIMEOUT = 0.2

RUNS: Counter[tuple[str, int]] = Counter()
EVENTS: dict[str, asyncio.Event] = {}
CAUGHT: list[str] = []

lock_queue = Queue("lock_test_queue")


def event(name: str) -> asyncio.Event:
    if name not in EVENTS:
        EVENTS[name] = asyncio.Event()
    return EVENTS[name]


async def wait_until(condition: Callable[[], bool], what: str, bound: float = SOON) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def execute(conn: Any, sql: str, *args: Any) -> None:
    """Run ``sql`` (``?`` placeholders) on a transaction's connection, either backend."""
    if isinstance(conn, aiosqlite.Connection):
        await conn.execute(sql, args)
    else:
        await conn.execute(pg_sql(sql), *args)


def _backend(db_url: str) -> str:
    return "postgres" if db_url.startswith("postgresql") else "sqlite"


async def fetch(db_url: str, sql: str) -> list[tuple[Any, ...]]:
    """Read with a connection of our own, not the library's."""
    return await db_fetch(_backend(db_url), db_url, sql)


async def create_items_table(db_url: str) -> None:
    await db_execute(_backend(db_url), db_url, "CREATE TABLE lock_items (name TEXT NOT NULL)")


async def item_names(db_url: str) -> list[str]:
    return [r[0] for r in await fetch(db_url, "SELECT name FROM lock_items ORDER BY name")]


# -- workflows ------------------------------------------------------------------------


@DBOS.transaction(name="lock_hold_open")
async def hold_open(name: str) -> str:
    """Writes a row, then stays open until the test releases it."""
    await execute(DBOS.sql_connection, "INSERT INTO lock_items (name) VALUES (?)", name)
    event("open").set()
    await event("release").wait()
    return name


@DBOS.workflow(name="lock_hold_wf")
async def hold_wf(name: str) -> str:
    return await hold_open(name)


@DBOS.step(name="lock_counted_step")
async def counted_step(key: str, i: int) -> int:
    RUNS[(key, i)] += 1
    if i == 0:
        # Step 0's body runs while the transaction is open; its checkpoint must wait.
        await event("open").wait()
    return i


@DBOS.workflow(name="lock_stepper")
async def stepper(key: str, n: int) -> str:
    for i in range(n):
        await counted_step(key, i)
    return key


@DBOS.transaction(name="lock_insert_tx")
async def insert_tx(name: str) -> str:
    RUNS[(name, 0)] += 1
    await execute(DBOS.sql_connection, "INSERT INTO lock_items (name) VALUES (?)", name)
    return name


@DBOS.workflow(name="lock_late_tx_wf")
async def late_tx_wf(name: str) -> str:
    await event("open").wait()
    return await insert_tx(name)


@DBOS.workflow(name="lock_child")
async def child_wf() -> str:
    return "child"


def refused_calls() -> dict[str, Callable[[], Awaitable[Any]]]:
    """Each DBOS call that writes to the system database, by the name its error gives."""
    return {
        "DBOS.send()": lambda: DBOS.send(DBOS.workflow_id or "", "m"),
        "DBOS.recv()": lambda: DBOS.recv(timeout_seconds=0),
        "DBOS.set_event()": lambda: DBOS.set_event("k", "v"),
        "DBOS.write_stream()": lambda: DBOS.write_stream("s", 1),
        "DBOS.close_stream()": lambda: DBOS.close_stream("s"),
        "DBOS.start_workflow()": lambda: DBOS.start_workflow(child_wf),
        "calling the workflow 'lock_child'": lambda: child_wf(),
        "Queue.enqueue()": lambda: lock_queue.enqueue(child_wf),
        "DBOS.cancel_workflow()": lambda: DBOS.cancel_workflow("lock-any"),
        "DBOS.resume_workflow()": lambda: DBOS.resume_workflow("lock-any"),
        "DBOS.fork_workflow()": lambda: DBOS.fork_workflow("lock-any", 1),
    }


@DBOS.transaction(name="lock_guarded_tx")
async def guarded_tx(call: str, name: str) -> str:
    """Writes a row, then makes one refused call and lets its error end the body."""
    await execute(DBOS.sql_connection, "INSERT INTO lock_items (name) VALUES (?)", name)
    # Bounded: were the call not refused, it could wait for this transaction forever.
    await asyncio.wait_for(refused_calls()[call](), timeout=SOON)
    return "not refused"


@DBOS.workflow(name="lock_guarded_wf")
async def guarded_wf(call: str) -> str:
    return await guarded_tx(call, "raised")


@DBOS.transaction(name="lock_catching_tx")
async def catching_tx() -> str:
    """Writes a row, makes every refused call catching each error, and returns."""
    await execute(DBOS.sql_connection, "INSERT INTO lock_items (name) VALUES (?)", "caught")
    for make in refused_calls().values():
        try:
            await asyncio.wait_for(make(), timeout=SOON)
        except DBOSException as exc:
            CAUGHT.append(str(exc))
    # Reads stay allowed inside the body.
    workflow_id = DBOS.workflow_id or ""
    status = await DBOS.get_workflow_status(workflow_id)
    assert status is not None and status.status == WorkflowStatusString.PENDING
    assert await DBOS.get_event(workflow_id, "k", timeout_seconds=0) is None
    return "done"


@DBOS.workflow(name="lock_catching_wf")
async def catching_wf() -> str:
    return await catching_tx()


@DBOS.transaction(name="lock_cancel_tx")
async def cancel_inside_tx(workflow_id: str) -> None:
    # Straight to the storage layer, past the engine's guard (DBOS.cancel_workflow is
    # refused in a transaction body): the backend's own backstop must answer.
    from dbos_async._runtime import get_runtime

    sysdb = get_runtime().sysdb
    await asyncio.wait_for(sysdb.cancel_workflow(workflow_id, 0), timeout=SOON)


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _reset() -> None:
    RUNS.clear()
    EVENTS.clear()
    CAUGHT.clear()


@pytest.fixture
async def low_busy_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """A launched DBOS on a SQLite file whose busy timeout is 0.2 s; yields its URL."""
    monkeypatch.setattr(_sqlite_connection, "BUSY_TIMEOUT_SECONDS", LOW_BUSY_TIMEOUT)
    url = f"sqlite:///{tmp_path / 'lock.sqlite'}"
    await DBOS.destroy()
    DBOS({"database_url": url, "application_version": "test"})
    await DBOS.launch()
    try:
        await create_items_table(url)
        yield url
    finally:
        event("release").set()
        await DBOS.destroy()


# -- one process ----------------------------------------------------------------------


async def test_sqlite_lock__long_transaction_delays_but_never_fails_checkpoints(
    low_busy_sqlite: str,
) -> None:
    n_workflows, n_steps = 10, 3
    steppers = [await DBOS.start_workflow(stepper, f"w{k}", n_steps) for k in range(n_workflows)]
    holder = await DBOS.start_workflow(hold_wf, "held")
    await asyncio.wait_for(event("open").wait(), SOON)
    await wait_until(
        lambda: all(RUNS[(f"w{k}", 0)] == 1 for k in range(n_workflows)), "every step 0 to run"
    )
    # Hold the file well past the busy timeout. Meanwhile reads go on, and no workflow
    # gets past step 0: its checkpoint is waiting for the transaction.
    await asyncio.sleep(LOW_BUSY_TIMEOUT * 5)
    for handle in steppers:
        status = await handle.get_status()
        assert status is not None and status.status == WorkflowStatusString.PENDING
    assert all(RUNS[(f"w{k}", 1)] == 0 for k in range(n_workflows))
    assert await item_names(low_busy_sqlite) == []  # the body's row is not committed yet

    event("release").set()
    assert await asyncio.wait_for(holder.get_result(), SOON) == "held"
    results = await asyncio.wait_for(asyncio.gather(*(h.get_result() for h in steppers)), SOON)
    assert results == [f"w{k}" for k in range(n_workflows)]
    for handle in [*steppers, holder]:
        status = await handle.get_status()
        assert status is not None and status.status == WorkflowStatusString.SUCCESS
    expected = Counter({(f"w{k}", i): 1 for k in range(n_workflows) for i in range(n_steps)})
    assert expected == RUNS
    for handle in steppers:
        steps = await DBOS.list_workflow_steps(handle.workflow_id)
        assert [s.function_id for s in steps] == [1, 2, 3]
        assert all(s.error is None for s in steps)
    assert await item_names(low_busy_sqlite) == ["held"]


async def test_sqlite_lock__system_write_inside_transaction_raises_not_deadlocks(
    low_busy_sqlite: str,
) -> None:
    """A system write past the engine's guard (a cancel, straight to storage) reaching the file
    from a transaction body raises at once instead of waiting for its own lock."""
    handle = await DBOS.start_workflow(hold_wf, "other")
    await asyncio.wait_for(event("open").wait(), SOON)
    event("release").set()
    await asyncio.wait_for(handle.get_result(), SOON)
    with pytest.raises(DBOSException, match="from inside a transaction"):
        await cancel_inside_tx(handle.workflow_id)


async def test_sqlite_lock__memory_database_runs_reads_inside_transactions() -> None:
    await DBOS.destroy()
    DBOS({"database_url": "sqlite:///:memory:", "application_version": "test"})
    await DBOS.launch()
    try:
        conn = _sqlite_app_connection()
        await conn.execute("CREATE TABLE lock_items (name TEXT NOT NULL)")
        other = await DBOS.start_workflow(stepper, "m", 2)
        event("open").set()
        assert await asyncio.wait_for(other.get_result(), SOON) == "m"
        assert await asyncio.wait_for(catching_wf(), SOON) == "done"
        assert len(CAUGHT) == len(refused_calls())
        cur = await conn.execute("SELECT name FROM lock_items")
        assert [r[0] for r in await cur.fetchall()] == ["caught"]
    finally:
        await DBOS.destroy()


def _sqlite_app_connection() -> aiosqlite.Connection:
    from dbos_async._runtime import get_runtime

    appdb = get_runtime().appdb
    assert isinstance(appdb, _sqlite.SQLiteApplicationDatabase)
    return appdb._db.conn


async def test_sqlite_lock__foreign_lock_checkpoints_retried_until_commit(
    low_busy_sqlite: str,
) -> None:
    """A writer outside this process's lock (our own connection here, as another process
    would be) holds the file for many busy timeouts: the checkpoints fail inside SQLite
    again and again, are retried, and commit once it lets go."""
    steppers = [await DBOS.start_workflow(stepper, f"w{k}", 2) for k in range(5)]
    async with aiosqlite.connect(low_busy_sqlite[len("sqlite:///") :]) as other:
        await other.execute("BEGIN IMMEDIATE")
        event("open").set()
        await wait_until(lambda: all(RUNS[(f"w{k}", 0)] == 1 for k in range(5)), "step 0")
        await asyncio.sleep(LOW_BUSY_TIMEOUT * 5)
        for handle in steppers:
            status = await handle.get_status()
            assert status is not None and status.status == WorkflowStatusString.PENDING
        assert all(RUNS[(f"w{k}", 1)] == 0 for k in range(5))
        await other.execute("COMMIT")
    results = await asyncio.wait_for(asyncio.gather(*(h.get_result() for h in steppers)), SOON)
    assert results == [f"w{k}" for k in range(5)]
    for handle in steppers:
        status = await handle.get_status()
        assert status is not None and status.status == WorkflowStatusString.SUCCESS
    assert all(RUNS[(f"w{k}", i)] == 1 for k in range(5) for i in range(2))


async def test_sqlite_lock__foreign_lock_is_transaction_conflict_retried(
    low_busy_sqlite: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction that meets a foreign writer's lock is a TransactionConflict, which
    the engine retries; its body runs once, after the lock is gone, and commits once."""
    conflicts: list[str] = []
    run_transaction = _sqlite.SQLiteApplicationDatabase.run_transaction

    async def spy(self: Any, *args: Any) -> Any:
        try:
            return await run_transaction(self, *args)
        except TransactionConflict as exc:
            conflicts.append(str(exc))
            raise

    monkeypatch.setattr(_sqlite.SQLiteApplicationDatabase, "run_transaction", spy)
    late = await DBOS.start_workflow(late_tx_wf, "late")
    async with aiosqlite.connect(low_busy_sqlite[len("sqlite:///") :]) as other:
        await other.execute("BEGIN IMMEDIATE")
        event("open").set()
        await wait_until(lambda: len(conflicts) >= 2, "the transaction to meet the lock")
        status = await late.get_status()
        assert status is not None and status.status == WorkflowStatusString.PENDING
        assert RUNS[("late", 0)] == 0
        await other.execute("COMMIT")
    assert await asyncio.wait_for(late.get_result(), SOON) == "late"
    status = await late.get_status()
    assert status is not None and status.status == WorkflowStatusString.SUCCESS
    assert RUNS[("late", 0)] == 1
    assert all("locked" in c for c in conflicts)
    assert await item_names(low_busy_sqlite) == ["late"]


# -- two processes --------------------------------------------------------------------


def start_writer(db_url: str, workdir: Path) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """Start sqlite_writer_app.py on ``db_url``; its output goes to workdir/stderr.txt."""
    err = open(workdir / "stderr.txt", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, str(WRITER_APP), db_url, str(workdir)], stdout=err, stderr=err
    )
    return proc, err


async def test_sqlite_lock__other_process_writes_wait_for_transaction_and_succeed(
    low_busy_sqlite: str, tmp_path: Path
) -> None:
    workdir = tmp_path / "writer"
    workdir.mkdir()
    proc, err = start_writer(low_busy_sqlite, workdir)
    with err:
        try:
            await wait_until(lambda: (workdir / "ready").exists() or proc.poll() is not None, "up")
            assert proc.poll() is None, (workdir / "stderr.txt").read_text()

            holder = await DBOS.start_workflow(hold_wf, "held")
            await asyncio.wait_for(event("open").wait(), SOON)
            (workdir / "go").write_text("1")
            await wait_until(lambda: (workdir / "started").exists(), "the writer to start")
            # The writer's writes meet the lock for many of its busy timeouts.
            await asyncio.sleep(LOW_BUSY_TIMEOUT * 10)
            assert proc.poll() is None, (workdir / "stderr.txt").read_text()
            assert not (workdir / "result.json").exists()

            event("release").set()
            assert await asyncio.wait_for(holder.get_result(), SOON) == "held"
            await wait_until(
                lambda: (workdir / "result.json").exists() or proc.poll() is not None,
                "the writer's result",
            )
            assert (workdir / "result.json").exists(), (workdir / "stderr.txt").read_text()
            outcome = json.loads((workdir / "result.json").read_text())
            assert outcome == {"result": 0 + 1 + 2, "status": "SUCCESS", "steps": 3}
            assert (workdir / "steps.txt").read_text().split() == ["0", "1", "2"]
            assert await item_names(low_busy_sqlite) == ["held"]
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait, SOON)


# -- both backends: calls refused inside a transaction body ---------------------------


@pytest.fixture
async def items(dbos: DBOS, db_url: str) -> str:
    await create_items_table(db_url)
    return db_url


@pytest.mark.parametrize("call", list(refused_calls()))
async def test_transaction_guard__call_refused_and_transaction_rolled_back(
    items: str, call: str
) -> None:
    with pytest.raises(DBOSException) as info:
        await asyncio.wait_for(guarded_wf(call), SOON)
    message = str(info.value)
    assert message.startswith(call)
    assert "inside a @DBOS.transaction body" in message
    assert "after the transaction returns" in message
    # The body let the error out: its transaction rolled back, nothing else happened.
    assert await item_names(items) == []
    workflows = await DBOS.list_workflows()
    assert [w.name for w in workflows] == ["lock_guarded_wf"]
    assert workflows[0].status == WorkflowStatusString.ERROR
    assert await DBOS.get_all_events(workflows[0].workflow_id) == {}


async def test_transaction_guard__caught_refusals_leave_transaction_to_commit(
    items: str,
) -> None:
    assert await asyncio.wait_for(catching_wf(), SOON) == "done"
    assert len(CAUGHT) == len(refused_calls())
    for call, message in zip(refused_calls(), CAUGHT, strict=True):
        assert message.startswith(call) and "after the transaction returns" in message
    # The body caught every refusal and returned: its own write committed.
    assert await item_names(items) == ["caught"]
    workflows = await DBOS.list_workflows()
    assert [(w.name, w.status) for w in workflows] == [
        ("lock_catching_wf", WorkflowStatusString.SUCCESS)
    ]


async def test_transaction_guard__plain_transaction_call_refused(items: str) -> None:
    """Outside any workflow too: a transaction called plainly refuses the calls."""
    with pytest.raises(DBOSException, match=r"^DBOS.start_workflow\(\) cannot be used"):
        await asyncio.wait_for(guarded_tx("DBOS.start_workflow()", "plain"), SOON)
    assert await item_names(items) == []
