"""``DBOS.sql_session``: an SQLAlchemy ``AsyncSession`` on a ``@DBOS.transaction``'s own
connection, on both backends: Core and ORM code run unchanged, their writes commit with
the recorded output (once, even across a crash between the two), roll back with an
error, and the runtime's isolation level holds."""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from typing import Any

import pytest

if os.environ.get("CI") != "true":  # (CI installs the extra: there it must run)
    pytest.importorskip("greenlet", reason="the sqlalchemy extra is not installed")

from sqlalchemy import JSON, Column, String, Table, func, insert, literal, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dbos_async import DBOS, DBOSException, SetWorkflowID, WorkflowStatusString
from dbos_async._runtime import get_runtime

CALLS: Counter[str] = Counter()
GATES: dict[str, asyncio.Event] = {}
SEEN: dict[str, Any] = {}


def gate(name: str) -> asyncio.Event:
    if name not in GATES:
        GATES[name] = asyncio.Event()
    return GATES[name]


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "sqls_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(100), unique=True)


items = Table("sqls_items", Base.metadata, Column("name", String(100), nullable=False))


@DBOS.transaction()
async def tx_create_tables() -> None:
    connection = await DBOS.sql_session.connection()
    await connection.run_sync(Base.metadata.create_all)


@pytest.fixture
async def tables(dbos: DBOS) -> None:
    CALLS.clear()
    GATES.clear()
    SEEN.clear()
    await tx_create_tables()


# -- transactions ---------------------------------------------------------------------


@DBOS.transaction()
async def tx_core(name: str) -> int:
    """Core: a Table insert, a text() insert with a bound parameter, a select."""
    CALLS["tx_core"] += 1
    session = DBOS.sql_session
    SEEN["session"] = session
    await session.execute(insert(items).values(name=name))
    await session.execute(text("INSERT INTO sqls_items (name) VALUES (:n)"), {"n": name + "!"})
    return int((await session.execute(select(func.count()).select_from(items))).scalar_one())


@DBOS.workflow()
async def wf_core(name: str) -> int:
    return await tx_core(name)


@DBOS.transaction()
async def tx_orm_add(body: str) -> str:
    """ORM: add without flushing; the runtime flushes before it commits."""
    CALLS["tx_orm_add"] += 1
    DBOS.sql_session.add(Note(body=body))
    return body


@DBOS.transaction()
async def tx_orm_query() -> list[str]:
    rows = await DBOS.sql_session.scalars(select(Note).order_by(Note.body))
    return [n.body for n in rows]


@DBOS.workflow()
async def wf_orm(body: str) -> list[str]:
    await tx_orm_add(body)
    return await tx_orm_query()


class TxError(Exception):
    pass


@DBOS.transaction()
async def tx_add_then_fail(body: str, flush: bool) -> None:
    CALLS["tx_add_then_fail"] += 1
    session = DBOS.sql_session
    session.add(Note(body=body))
    await session.execute(insert(items).values(name=body))
    if flush:
        await session.flush()
        # Visible inside the transaction, through either handle on its connection.
        assert (await session.scalar(select(func.count()).select_from(Note))) == 1
    raise TxError(f"failed after adding {body}")


@DBOS.workflow()
async def wf_add_then_fail(body: str, flush: bool) -> str:
    try:
        await tx_add_then_fail(body, flush)
    except TxError as exc:
        return f"caught: {exc}"
    return "not raised"


@DBOS.transaction()
async def tx_pending_duplicate(body: str) -> str:
    """A pending duplicate: it fails only at the final flush, after the function."""
    session = DBOS.sql_session
    await session.execute(insert(items).values(name="before the duplicate"))
    session.add(Note(body=body))
    return "returned"


@DBOS.workflow()
async def wf_pending_duplicate(body: str) -> str:
    return await tx_pending_duplicate(body)


@DBOS.transaction(isolation_level="READ COMMITTED")
async def tx_isolation_rc() -> str:
    return str((await DBOS.sql_session.execute(text("SHOW transaction_isolation"))).scalar())


@DBOS.transaction()
async def tx_isolation_default() -> str:
    return str((await DBOS.sql_session.execute(text("SHOW transaction_isolation"))).scalar())


@DBOS.transaction()
async def tx_uncommitted_then_wait(name: str) -> int:
    """Writes through the session, then waits while the test looks from outside."""
    await DBOS.sql_session.execute(insert(items).values(name=name))
    gate("written").set()
    await asyncio.wait_for(gate("looked").wait(), timeout=30)
    return 1


@DBOS.transaction()
async def tx_commit_and_rollback() -> list[str]:
    session = DBOS.sql_session
    session.add(Note(body="committed early?"))
    await session.commit()  # only a flush: the transaction goes on
    outcome = ["commit flushed"]
    try:
        await session.rollback()
    except DBOSException as exc:
        outcome.append(str(exc))
    # A savepoint may roll back: only what follows it is undone.
    nested = await session.begin_nested()
    session.add(Note(body="undone by the savepoint"))
    await session.flush()
    await nested.rollback()
    outcome.append(str(await session.scalar(select(func.count()).select_from(Note))))
    return outcome


@DBOS.transaction()
async def tx_same_statement(n: int) -> int:
    session = DBOS.sql_session
    for i in range(3):
        await session.execute(insert(items).values(name=f"{n}-{i}"))
    return int((await session.execute(select(func.count()).select_from(items))).scalar_one())


@DBOS.transaction()
async def tx_increment(delay: float) -> int:
    """Read, wait, write: two at once conflict under SERIALIZABLE on Postgres."""
    CALLS["tx_increment"] += 1
    session = DBOS.sql_session
    count = int((await session.execute(select(func.count()).select_from(items))).scalar_one())
    await asyncio.sleep(delay)
    await session.execute(insert(items).values(name=f"n{count}"))
    return count + 1


@DBOS.transaction()
async def tx_engine_of() -> Any:
    return (await DBOS.sql_session.connection()).engine.sync_engine


@DBOS.transaction()
async def tx_one_transaction(postgres: bool) -> list[Any]:
    """What the session and the driver connection each see of the transaction, before
    and after a session commit() (a flush only: the transaction goes on)."""
    session, conn = DBOS.sql_session, DBOS.sql_connection
    await session.execute(insert(items).values(name="x"))
    seen: list[Any] = []
    for _ in range(2):
        if postgres:
            seen.append(await conn.fetchval("SELECT txid_current()"))
            seen.append((await session.execute(text("SELECT txid_current()"))).scalar())
        else:
            seen.append(conn.in_transaction)
        await session.commit()
    return seen


@DBOS.transaction()
async def tx_json_both_ways() -> list[Any]:
    """JSON through the driver connection, after the session used it, and through the
    session with the columns typed."""
    session, conn = DBOS.sql_session, DBOS.sql_connection
    query = """SELECT '{"a": 1}'::json AS a, '{"b": 2}'::jsonb AS b"""
    typed = list((await session.execute(text(query).columns(a=JSON, b=JSONB))).one())
    untyped = list((await session.execute(text(query))).one())
    bound = await session.scalar(select(literal({"c": [3]}, JSONB)))
    raw = list(await conn.fetchrow(query))
    return [typed, untyped, bound, raw, await conn.fetchval("SELECT $1::jsonb", '{"d": 4}')]


@DBOS.transaction()
async def tx_cut_once(name: str) -> str:
    """On its first run, its connection is cut (Postgres) between two statements."""
    CALLS["tx_cut_once"] += 1
    session = DBOS.sql_session
    await session.execute(insert(items).values(name=name))
    if CALLS["tx_cut_once"] == 1:
        import asyncpg

        pid = DBOS.sql_connection.get_server_pid()
        other = await asyncpg.connect(get_runtime().appdb.url)
        try:
            await other.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await other.close()
    await session.execute(select(func.count()).select_from(items))
    return name


@DBOS.workflow()
async def wf_cut_once(name: str) -> str:
    return await tx_cut_once(name)


@DBOS.transaction()
async def tx_select_one() -> int:
    return int((await DBOS.sql_session.execute(text("SELECT 1"))).scalar_one())


@DBOS.step()
async def step_reads_sql_session() -> str:
    try:
        DBOS.sql_session  # noqa: B018
    except DBOSException as exc:
        return str(exc)
    return "no error"


@DBOS.workflow()
async def wf_reads_sql_session() -> list[str]:
    outcomes = [await step_reads_sql_session()]
    try:
        DBOS.sql_session  # noqa: B018
    except DBOSException as exc:
        outcomes.append(str(exc))
    return outcomes


@DBOS.transaction()
async def tx_note_once(body: str) -> str:
    CALLS["tx_note_once"] += 1
    DBOS.sql_session.add(Note(body=body))
    return body.upper()


@DBOS.workflow()
async def wf_note_once(body: str) -> str:
    return await tx_note_once(body)


async def note_bodies() -> list[str]:
    return await tx_orm_query()


async def item_names() -> list[str]:
    @DBOS.transaction()
    async def tx_item_names() -> list[str]:
        rows = await DBOS.sql_session.scalars(select(items.c.name).order_by(items.c.name))
        return list(rows)

    return await tx_item_names()


# -- tests ----------------------------------------------------------------------------


async def test_sql_session__core_insert_and_select(tables: None) -> None:
    with SetWorkflowID("sqls-core"):
        assert await wf_core("alpha") == 2
    assert await wf_core("beta") == 4
    assert await item_names() == ["alpha", "alpha!", "beta", "beta!"]
    assert isinstance(SEEN["session"], AsyncSession)
    steps = await DBOS.list_workflow_steps("sqls-core")
    assert [(s.function_id, s.function_name, s.output) for s in steps] == [(1, "tx_core", 2)]
    # Run again under its ID: the recorded output, the body not run again.
    with SetWorkflowID("sqls-core"):
        assert await wf_core("alpha") == 2
    assert CALLS["tx_core"] == 2


async def test_sql_session__orm_add_is_flushed_and_committed(tables: None) -> None:
    assert await wf_orm("first") == ["first"]
    assert await wf_orm("second") == ["first", "second"]
    # Outside a workflow too: a plain transaction.
    assert await tx_orm_add("third") == "third"
    assert await note_bodies() == ["first", "second", "third"]


@pytest.mark.parametrize("flush", [True, False])
async def test_sql_session__exception_rolls_back(tables: None, flush: bool) -> None:
    with SetWorkflowID(f"sqls-fail-{flush}"):
        assert await wf_add_then_fail("gone", flush) == "caught: failed after adding gone"
    assert await note_bodies() == []
    assert await item_names() == []
    steps = await DBOS.list_workflow_steps(f"sqls-fail-{flush}")
    assert len(steps) == 1 and isinstance(steps[0].error, TxError)
    # The connection is fine afterwards.
    assert await tx_orm_add("after") == "after"
    assert await note_bodies() == ["after"]


async def test_sql_session__final_flush_failure_fails_the_transaction(tables: None) -> None:
    await tx_orm_add("taken")
    with SetWorkflowID("sqls-dup"), pytest.raises(IntegrityError):
        await wf_pending_duplicate("taken")
    # The flush ran before the commit, so nothing of the body committed.
    assert await item_names() == []
    assert await note_bodies() == ["taken"]


async def test_sql_session__output_commits_with_the_writes_once(
    tables: None, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the transaction committed and before its step row: the recovered
    workflow adopts the committed output; the body does not run (or write) again."""
    sysdb = get_runtime().sysdb
    original = sysdb.write_batch

    async def write_batch(writes: Any, **kwargs: Any) -> Any:
        names = {getattr(getattr(w, "step", None), "function_name", None) for w in writes}
        if "tx_note_once" in names:
            gate("committed").set()
            await asyncio.Event().wait()  # the "crash": never recorded in this run
        return await original(writes, **kwargs)

    monkeypatch.setattr(sysdb, "write_batch", write_batch)
    try:
        with SetWorkflowID("sqls-once"):
            await DBOS.start_workflow(wf_note_once, "once")
        await asyncio.wait_for(gate("committed").wait(), timeout=30)
        assert await note_bodies() == ["once"]  # committed, its step row not written
        await DBOS.destroy()

        DBOS({"database_url": db_url, "application_version": "test"})
        await DBOS.launch()
        handle = await DBOS.retrieve_workflow("sqls-once")
        assert await asyncio.wait_for(handle, timeout=30) == "ONCE"
        assert CALLS["tx_note_once"] == 1
        assert await note_bodies() == ["once"]
        status = await handle.get_status()
        assert status.status == WorkflowStatusString.SUCCESS
    finally:
        await DBOS.destroy()


async def test_sql_session__runs_inside_the_runtime_transaction(tables: None, backend: str) -> None:
    if backend == "postgres":
        assert await tx_isolation_rc() == "read committed"
        assert await tx_isolation_default() == "serializable"
    # Uncommitted until the function returns: another connection does not see it.
    task = asyncio.create_task(tx_uncommitted_then_wait("pending"))
    await asyncio.wait_for(gate("written").wait(), timeout=30)
    seen_meanwhile = await outside_count()
    gate("looked").set()
    assert await task == 1
    assert seen_meanwhile == 0
    assert await outside_count() == 1


async def outside_count() -> int:
    """The items count read on a connection of our own (not the transaction's)."""
    url = get_runtime().appdb.url
    if url.startswith("sqlite"):
        import aiosqlite

        async with aiosqlite.connect(url[len("sqlite:///") :]) as conn:
            cur = await conn.execute("SELECT count(*) FROM sqls_items")
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM sqls_items"))
    finally:
        await conn.close()


async def test_sql_session__sends_no_transaction_control(tables: None, backend: str) -> None:
    """SQLAlchemy neither begins nor ends a transaction: the session's statements and the
    driver connection's share one transaction, which a session commit() does not end."""
    seen = await tx_one_transaction(backend == "postgres")
    if backend == "postgres":
        assert len(set(seen)) == 1, seen
    else:
        assert seen == [True, True]


async def test_sql_session__driver_json_unchanged_on_postgres(tables: None, backend: str) -> None:
    """A session installs nothing on the asyncpg connection: ``DBOS.sql_connection``
    reads JSON as text, as asyncpg does, whether or not a session used the connection;
    the session decodes JSON-typed columns itself (untyped ones stay text)."""
    if backend != "postgres":
        pytest.skip("asyncpg only")
    typed, untyped, bound, raw, param = await tx_json_both_ways()
    assert typed == [{"a": 1}, {"b": 2}]
    assert untyped == ['{"a": 1}', '{"b": 2}']
    assert bound == {"c": [3]}
    assert raw == ['{"a": 1}', '{"b": 2}']
    assert param == '{"d": 4}'


async def test_sql_session__commit_flushes_rollback_refused_savepoints_work(
    tables: None,
) -> None:
    outcome = await tx_commit_and_rollback()
    assert outcome[0] == "commit flushed"
    assert "raise an exception from the @DBOS.transaction function" in outcome[1]
    assert outcome[2] == "1"
    assert await note_bodies() == ["committed early?"]


async def test_sql_session__many_transactions_one_engine(tables: None) -> None:
    """The same statements, transaction after transaction (on reused connections, whose
    earlier prepared statements asyncpg refuses), on one cached engine."""
    counts = [await tx_same_statement(n) for n in range(5)]
    assert counts == [3, 6, 9, 12, 15]
    results = await asyncio.gather(*(tx_same_statement(n) for n in range(5, 9)))
    assert sorted(results)[-1] == 27
    assert await tx_engine_of() is await tx_engine_of()


async def test_sql_session__serialization_conflict_is_retried(tables: None, backend: str) -> None:
    """A conflict raised through SQLAlchemy is still the driver's, so it is retried."""
    results = await asyncio.gather(tx_increment(0.3), tx_increment(0.3))
    assert sorted(results) == [1, 2]
    assert await item_names() == ["n0", "n1"]
    if backend == "postgres":
        assert CALLS["tx_increment"] >= 3  # one of the two ran again


async def test_sql_session__first_uses_at_once_share_one_engine(dbos: DBOS) -> None:
    """Transactions that all open the first sessions at once (the engine's one-time
    server probe runs once, the others wait for it on the event loop)."""
    assert await asyncio.gather(*(tx_select_one() for _ in range(6))) == [1] * 6
    assert await tx_engine_of() is await tx_engine_of()


async def test_sql_session__lost_connection_is_retried_on_a_new_one(
    tables: None, backend: str
) -> None:
    """A connection lost under a session statement (SQLAlchemy's error, around
    asyncpg's) is a lost connection to the runtime: the transaction runs again on
    another connection and commits once."""
    if backend != "postgres":
        pytest.skip("a cut Postgres connection")
    with SetWorkflowID("sqls-cut"):
        assert await wf_cut_once("cut") == "cut"
    assert CALLS["tx_cut_once"] == 2
    assert await item_names() == ["cut"]
    assert await tx_select_one() == 1  # the pool (and the session engine) go on


async def test_sql_session__outside_a_transaction_raises(tables: None) -> None:
    with pytest.raises(DBOSException, match=r"only available inside a @DBOS\.transaction"):
        DBOS.sql_session  # noqa: B018
    outcomes = await wf_reads_sql_session()
    assert all("only available inside a @DBOS.transaction" in o for o in outcomes), outcomes


async def test_sql_session__used_after_its_transaction_raises(tables: None) -> None:
    await tx_core("kept")
    session = SEEN["session"]
    with pytest.raises(DBOSException, match="has ended"):
        await session.execute(select(items))


async def test_sql_session__missing_extra_names_it(
    dbos: DBOS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)
    monkeypatch.delitem(sys.modules, "dbos_async.sysdb._sqlalchemy", raising=False)
    with pytest.raises(DBOSException, match=r"pip install 'dbos_async\[sqlalchemy\]'"):
        await tx_orm_query()
