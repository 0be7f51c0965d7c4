"""SQLite: a system-database read or write is one trip to the connection's thread
(sysdb/_sqlite_thread.py), and the rules of a write hold within that trip: rollback on any
failure, on cancellation before COMMIT, and the file's write lock held until the thread
is done; a trip never lands inside a multi-trip transaction of its connection.

No stopwatch assertions: orderings and outcomes only.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from dbos_async.sysdb import _sqlite_connection
from dbos_async.sysdb._rows import InsertWorkflow, RecordStep, StepRow, WorkflowRow, Write
from dbos_async.sysdb._sqlite import SQLiteSystemDatabase
from dbos_async.sysdb._sqlite_connection import SQLiteConnection

SOON = 30.0
OWNER = "owner-1"


@pytest.fixture
async def sysdb(tmp_path: Path) -> AsyncIterator[SQLiteSystemDatabase]:
    db = SQLiteSystemDatabase(SQLiteConnection(f"sqlite:///{tmp_path / 'trips.sqlite'}"))
    db.owner = OWNER
    await sysdb_connect(db)
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every callable sent to a connection's thread from now on."""
    sent: list[str] = []
    original: Callable[..., Any] = aiosqlite.Connection._execute

    async def counting(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)
    return sent


async def sysdb_connect(db: SQLiteSystemDatabase) -> None:
    await db.connect()
    await db._db.write(lambda conn: conn.execute("CREATE TABLE scratch (x INTEGER)"))


def workflow(workflow_id: str) -> WorkflowRow:
    return WorkflowRow(
        workflow_id, "PENDING", "wf", None, None, None, "ex", "v1", 1, 1, owner=OWNER
    )


def count_rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


async def test_sqlite_thread__a_batch_of_writes_is_one_trip(
    sysdb: SQLiteSystemDatabase, trips: list[str]
) -> None:
    ids = [f"wf-{i}" for i in range(50)]
    writes: list[Write] = [InsertWorkflow(workflow(wid)) for wid in ids]
    writes += [RecordStep(StepRow(wid, 1, "step", output="1")) for wid in ids]
    results = await sysdb.write_batch(writes)
    assert results[:50] == [None] * 50
    assert all(isinstance(r, StepRow) for r in results[50:])
    assert len(trips) == 1

    trips.clear()
    assert (await sysdb.get_workflow("wf-7")) is not None
    assert [s.function_id for s in await sysdb.load_steps("wf-7")] == [1]
    assert len(trips) == 2


async def test_sqlite_thread__a_failing_write_leaves_nothing(
    sysdb: SQLiteSystemDatabase, tmp_path: Path
) -> None:
    def work(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO scratch VALUES (1)")
        raise ValueError("fails after the insert")

    with pytest.raises(ValueError, match="fails after"):
        await sysdb._db.write(work)
    assert count_rows(tmp_path / "trips.sqlite", "scratch") == 0
    # Not left inside a transaction: the next write commits.
    await sysdb.write_batch([InsertWorkflow(workflow("after"))])
    assert count_rows(tmp_path / "trips.sqlite", "dbos_workflow_status") == 1


async def test_sqlite_thread__a_cancelled_write_rolls_back_and_keeps_the_lock_until_done(
    sysdb: SQLiteSystemDatabase, tmp_path: Path
) -> None:
    inside = threading.Event()
    release = threading.Event()

    def work(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO scratch VALUES (1)")
        inside.set()
        assert release.wait(SOON)

    task = asyncio.ensure_future(sysdb._db.write(work))
    assert await asyncio.to_thread(inside.wait, SOON)
    task.cancel()
    await asyncio.sleep(0.05)
    # The thread is still in the transaction: the caller waits for it, lock held.
    assert not task.done()
    assert _sqlite_connection._file_lock(sysdb._db.file_key).locked()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not _sqlite_connection._file_lock(sysdb._db.file_key).locked()
    assert count_rows(tmp_path / "trips.sqlite", "scratch") == 0
    await sysdb.write_batch([InsertWorkflow(workflow("after"))])
    assert count_rows(tmp_path / "trips.sqlite", "dbos_workflow_status") == 1


async def test_sqlite_thread__a_read_waits_for_a_multi_trip_transaction_to_end(
    tmp_path: Path,
) -> None:
    """A one-trip read on a connection whose transaction body is open (``:memory:``, or
    the application connection) runs after that transaction, never inside it."""
    db = SQLiteConnection(f"sqlite:///{tmp_path / 'body.sqlite'}")
    await db.open()
    try:
        await db.write(lambda conn: conn.execute("CREATE TABLE t (x INTEGER)"))
        opened = asyncio.Event()
        finish = asyncio.Event()

        async def body(conn: aiosqlite.Connection) -> None:
            await conn.execute("INSERT INTO t VALUES (1)")
            opened.set()
            await finish.wait()
            await conn.execute("INSERT INTO t VALUES (2)")

        transaction = asyncio.ensure_future(db.transaction(body))
        await asyncio.wait_for(opened.wait(), SOON)

        def count(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])

        read = asyncio.ensure_future(db.read(count))
        await asyncio.sleep(0.05)
        assert not read.done()
        finish.set()
        await asyncio.wait_for(transaction, SOON)
        assert await asyncio.wait_for(read, SOON) == 2
    finally:
        await db.close()


async def test_sqlite_thread__reads_go_out_together(
    sysdb: SQLiteSystemDatabase, trips: list[str]
) -> None:
    """Many reads at once are all queued on the thread at once (none waits for another's
    round trip on the event loop)."""
    await sysdb.write_batch([InsertWorkflow(workflow(f"r-{i}")) for i in range(20)])
    trips.clear()
    reads = [asyncio.ensure_future(sysdb.get_workflow(f"r-{i}")) for i in range(20)]
    await asyncio.sleep(0)
    assert len(trips) == 20
    rows = await asyncio.gather(*reads)
    assert [r.workflow_id for r in rows if r is not None] == [f"r-{i}" for i in range(20)]
