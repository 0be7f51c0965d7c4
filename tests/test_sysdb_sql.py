"""The storage layer's plumbing: the named query files, the column lists the row mappers
rely on, the one definition of a queue's notification key (Python and the SQL built from
it agree, on a real Postgres), and the database URL helpers."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import fields
from pathlib import Path

import asyncpg
import pytest

from dbos_async._urls import is_sqlite_url, redact_url, sqlite_path
from dbos_async.sysdb import FinishWorkflow, QueueClaim, WorkflowRow, notification_key
from dbos_async.sysdb._columns import QUEUE_COLUMNS, STEP_COLUMNS, WORKFLOW_COLUMNS
from dbos_async.sysdb._keys import CHANNEL
from dbos_async.sysdb._pg_batch import _write_many, write_batch
from dbos_async.sysdb._pg_pool import PostgresPool
from dbos_async.sysdb._postgres import PostgresSystemDatabase
from dbos_async.sysdb._queries import load_queries, parse_queries, sql_text
from dbos_async.sysdb._rows import (
    Fenced,
    InsertWorkflow,
    QueueInfo,
    RecordStep,
    StepRow,
    Write,
    WriteResult,
)
from dbos_async.sysdb._sqlite_connection import SQLiteConnection

BACKENDS = ("postgres", "sqlite")
QUEUE_NAMES = ["q", "orders-eu.1", "with space", "it's", "ünïcode"]


# -- query files -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_queries__every_statement_is_named_documented_and_filled(backend: str) -> None:
    queries = load_queries(backend)
    assert "get_workflow" in queries and "list_workflows" in queries
    for name, statement in queries.items():
        assert queries.doc(name), name
        assert "{" not in statement and "}" not in statement, name
        assert not statement.rstrip().endswith(";"), name
    assert load_queries(backend) is queries  # parsed once


@pytest.mark.parametrize("backend", BACKENDS)
def test_queries__one_select_of_a_workflow_by_id(backend: str) -> None:
    select = "SELECT " + ", ".join(WORKFLOW_COLUMNS) + " FROM "
    where = " WHERE workflow_uuid = " + ("$1" if backend == "postgres" else "?")
    queries = load_queries(backend)
    by_id = [
        name
        for name, sql in queries.items()
        if sql.startswith(select) and " ".join(sql.split()).endswith(where)
    ]
    assert by_id == ["get_workflow"]


def test_queries__parse_errors_are_reported() -> None:
    block = "-- name: a\n-- Does a.\nSELECT 1;\n"
    assert parse_queries(block, "postgres", "x.sql") == {"a": ("SELECT 1", "Does a.")}
    with pytest.raises(ValueError, match="defined twice"):
        parse_queries(block + block, "postgres", "x.sql")
    with pytest.raises(ValueError, match="unknown placeholder"):
        parse_queries("-- name: a\n-- Does a.\nSELECT {nope};", "postgres", "x.sql")
    with pytest.raises(ValueError, match="comment line"):
        parse_queries("-- name: a\nSELECT 1;", "postgres", "x.sql")
    with pytest.raises(ValueError, match="outside"):
        parse_queries("SELECT 1;\n" + block, "postgres", "x.sql")
    # A comment between blocks belongs to no statement.
    two = block + "\n-- About b.\n\n-- name: b\n-- Does b.\nSELECT 2\n"
    assert parse_queries(two, "sqlite", "x.sql")["a"] == ("SELECT 1", "Does a.")


def test_queries__placeholders() -> None:
    ((sql, _),) = parse_queries(
        "-- name: a\n-- A.\nSELECT {w.step_columns}, {channel}, {queue_key:w.queue_name};",
        "postgres",
        "x.sql",
    ).values()
    assert sql == (
        "SELECT " + ", ".join("w." + c for c in STEP_COLUMNS) + ", 'dbos_async_notify', "
        "'queue' || chr(31) || w.queue_name || chr(31)"
    )


# -- columns and mappers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("columns", "row_type"),
    [(WORKFLOW_COLUMNS, WorkflowRow), (STEP_COLUMNS, StepRow), (QUEUE_COLUMNS, QueueInfo)],
)
def test_columns__follow_the_fields_of_their_row(columns: tuple[str, ...], row_type: type) -> None:
    for column, field in zip(columns, fields(row_type), strict=True):
        assert column == field.name or (column, field.name) == ("workflow_uuid", "workflow_id")


async def test_columns__exist_in_the_sqlite_schema(tmp_path: Path) -> None:
    db = SQLiteConnection(f"sqlite:///{tmp_path / 'cols.sqlite'}")
    await db.open()
    try:
        await db.migrate("system")
    finally:
        await db.close()
    with sqlite3.connect(tmp_path / "cols.sqlite") as conn:
        for table, columns in (
            ("dbos_workflow_status", WORKFLOW_COLUMNS),
            ("dbos_operation_outputs", STEP_COLUMNS),
            ("dbos_queues", QUEUE_COLUMNS),
        ):
            names = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
            assert set(columns) <= names, table


# -- the queue notification key: one definition ----------------------------------------


def test_queue_key__sqlite_renders_the_python_key() -> None:
    with sqlite3.connect(":memory:") as conn:
        for name in QUEUE_NAMES:
            expression = sql_text(notification_key("queue", name, ""), "sqlite")
            assert conn.execute("SELECT " + expression).fetchone()[0] == notification_key(
                "queue", name, ""
            )


async def test_queue_key__postgres_sql_equals_python(fresh_pg: str) -> None:
    """The expression the statements use to wake a queue's workers, run on Postgres."""
    ((sql, _),) = parse_queries(
        "-- name: k\n-- The key.\nSELECT {queue_key:$1::text};", "postgres", "x.sql"
    ).values()
    conn = await asyncpg.connect(fresh_pg)
    try:
        for name in QUEUE_NAMES:
            assert await conn.fetchval(sql, name) == notification_key("queue", name, "")
    finally:
        await conn.close()


def _queued(workflow_id: str, queue: str) -> WorkflowRow:
    return WorkflowRow(
        workflow_id, "ENQUEUED", "wf", None, None, None, None, None, 1, 1, queue_name=queue
    )


async def test_queue_key__postgres_statements_wake_with_the_python_key(fresh_pg: str) -> None:
    """Finishing (alone and in a batch) and resuming a queued workflow notify the key
    ``notification_key`` makes for its queue, as the queue workers wait on it."""
    pool = PostgresPool(fresh_pg, 2, 5.0, reset_sessions=False)
    sysdb = PostgresSystemDatabase(pool)
    sysdb.owner = "test-process"  # (its claims are its own: it may finish them)
    await sysdb.connect()
    got: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(fresh_pg)
    await listener.add_listener(CHANNEL, lambda *args: got.put_nowait(str(args[3])))

    async def heard(key: str) -> None:
        async with asyncio.timeout(10):
            while await got.get() != key:
                pass

    try:
        queue = "orders-eu.1"
        wake = notification_key("queue", queue, "")
        for wid in ("k1", "k2", "k3"):
            assert await sysdb.enqueue_workflow(_queued(wid, queue)) is None
            await heard(wake)
        claim = QueueClaim(queue, None, "exec", "v", 2, max_count=3)
        assert len(await sysdb.claim_queued(claim)) == 3

        assert await sysdb.write_batch([FinishWorkflow("k1", "SUCCESS", "1", None, 3)]) == [True]
        await heard(wake)
        finishes = [FinishWorkflow(w, "SUCCESS", "1", None, 3) for w in ("k2", "k3")]
        assert await sysdb.write_batch(finishes) == [True, True]
        await heard(wake)

        assert await sysdb.enqueue_workflow(_queued("k4", queue)) is None
        await heard(wake)
        assert (await sysdb.cancel_workflow("k4", 5)) is not None
        await heard(notification_key("cancel", "k4", ""))
        changed, row = await sysdb.resume_workflow("k4", "exec", 6)
        assert changed and row is not None and row.status == "ENQUEUED"
        await heard(wake)
    finally:
        await listener.close()
        await sysdb.close()


async def test_journal_session__every_statement_finds_rows_by_key(fresh_pg: str) -> None:
    """On the journal's connection (``journal_session``) every statement of a batch,
    single or combined, and the reads it falls back to, is planned to find each row by its
    key: never a scan of the table or of an index of every PENDING row, which is what a
    plan made on a young table's statistics chose before (and kept as the table grew).
    The plans are read through auto_explain, sent to this client as notices."""
    pool = PostgresPool(fresh_pg, 2, 5.0, reset_sessions=False)
    sysdb = PostgresSystemDatabase(pool)
    await sysdb.connect()  # (migrates)
    await sysdb.close()
    owner = "test-process"
    plans: list[str] = []
    conn = await asyncpg.connect(fresh_pg)
    conn.add_log_listener(lambda _c, msg: plans.append(str(msg)))
    try:
        await conn.execute(load_queries("postgres")["journal_session"])
        await conn.execute(
            "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0;"
            " SET auto_explain.log_level = notice; SET auto_explain.log_nested_statements = on"
        )

        def pending(wid: str) -> InsertWorkflow:
            return InsertWorkflow(
                WorkflowRow(wid, "PENDING", "wf", None, None, None, None, None, 1, 1, owner=owner)
            )

        def step(wid: str, n: int) -> RecordStep:
            return RecordStep(StepRow(wid, n, "s", "1"))

        def finish(wid: str) -> FinishWorkflow:
            return FinishWorkflow(wid, "SUCCESS", "1", None, 2)

        batches: list[list[Write]] = [
            [pending("a")],  # one insert, one step, one finish: their own statements
            [step("a", 1)],
            [finish("a")],
            [pending(f"w{i}") for i in range(30)],  # rows this process owns (PENDING)
            [pending("b"), step("w1", 1), step("w2", 1), finish("w3"), finish("w4")],
            [step("w1", 1), finish("w3"), step("nobody", 1)],  # stored, done, unowned
            [step("w1", 1)],
            [finish("w3")],
            [step("nobody", 1)],
            [step("w5", 1), finish("w5")],  # a last step with its outcome: its own statement
            [step("w5", 2), finish("w5")],  # (finished already: falls back to reads)
        ]
        for writes in batches:
            await write_batch(conn, writes, False, owner)
    finally:
        await conn.close()
    assert len(plans) >= len(batches) + 4, plans  # (every statement, fall-backs included)
    for plan in plans:
        assert "Seq Scan" not in plan, plan
        assert "workflow_status_owner_idx" not in plan, plan
        assert "workflow_status_pending_idx" not in plan, plan


#: (state of the step's workflow, state of the finished one, step row stored at the ID)
#: for the pair batch [step, finish]: "ours" is PENDING and owned by the writer, "other"
#: owned by another process, "done" finished by this write before (a retry), "cancelled"
#: finished by someone else, "none" no row.
PAIR_CASES = [
    ("ours", "same", None),  # the usual case: both written
    ("ours", "same", "equal"),  # a retry whose first commit went through
    ("ours", "same", "different"),  # another run recorded the step first
    ("other", "same", None),  # taken over: both fenced
    ("done", "same", "equal"),  # a retry: outcome and row both already there
    ("cancelled", "same", None),  # someone else decided the outcome
    ("none", "same", None),  # the workflow is gone
    ("ours", "ours", None),  # two workflows
    ("ours", "other", None),
    ("other", "ours", "different"),
]


async def _pair_state(
    conn: asyncpg.Connection, owner: str, prefix: str, case: tuple[str, str, str | None]
) -> tuple[RecordStep, FinishWorkflow]:
    step_state, finish_state, stored = case
    step_wf = f"{prefix}-a"
    finish_wf = step_wf if finish_state == "same" else f"{prefix}-b"
    states = {step_wf: step_state}
    if finish_state != "same":
        states[finish_wf] = finish_state
    for wid, state in states.items():
        if state == "none":
            continue
        status = {"done": "SUCCESS", "cancelled": "CANCELLED"}.get(state, "PENDING")
        row = WorkflowRow(
            wid,
            status,
            "wf",
            None,
            "9" if state == "done" else None,
            None,
            None,
            None,
            1,
            1,
            owner="someone-else" if state == "other" else owner,
        )
        assert await write_batch(conn, [InsertWorkflow(row)], False, owner) == [None]
    step = StepRow(step_wf, 1, "s", "1")
    if stored is not None:
        there = step if stored == "equal" else StepRow(step_wf, 1, "s", "2")
        await conn.execute(
            "INSERT INTO dbos_async.operation_outputs (workflow_uuid, function_id,"
            " function_name, output) VALUES ($1, $2, $3, $4)",
            there.workflow_id,
            there.function_id,
            there.function_name,
            there.output,
        )
    return RecordStep(step), FinishWorkflow(finish_wf, "SUCCESS", "9", None, 2)


def _renamed(results: list[WriteResult], prefix: str) -> list[object]:
    """Results with the workflow IDs' prefix taken out, to compare two runs."""
    out: list[object] = []
    for r in results:
        if isinstance(r, StepRow):
            out.append(("step", r.workflow_id.removeprefix(prefix), r.output))
        elif isinstance(r, Fenced):
            out.append(("fenced", r.workflow_id.removeprefix(prefix)))
        else:
            out.append(r)
    return out


@pytest.mark.parametrize("case", PAIR_CASES, ids=lambda c: "-".join(map(str, c)))
async def test_pair_batch__answers_as_the_general_batch_statement(
    fresh_pg: str, case: tuple[str, str, str | None]
) -> None:
    """A batch of [step, finish] (a sequential workflow's last step row with its outcome)
    runs its own statement, ``record_step_and_finish``: in every state of the two
    workflows it writes and answers exactly as the general ``write_batch`` statement does
    for the same two writes, fencing included, and stores the same rows."""
    owner = "test-process"
    conn = await asyncpg.connect(fresh_pg)
    try:
        await conn.execute(load_queries("postgres")["journal_session"])
        answers = []
        for prefix, run in (("pair", write_batch), ("many", _write_many)):
            step, finish = await _pair_state(conn, owner, prefix, case)
            retry = case[2] == "equal"
            results = await run(conn, [step, finish], retry, owner)
            stored = await conn.fetch(
                "SELECT w.workflow_uuid, w.status, w.output, o.function_id, o.output"
                " FROM dbos_async.workflow_status AS w LEFT JOIN dbos_async.operation_outputs"
                " AS o USING (workflow_uuid) WHERE w.workflow_uuid LIKE $1 || '-%'"
                " ORDER BY 1",
                prefix,
            )
            rows = [(r[0].removeprefix(prefix), *tuple(r)[1:]) for r in stored]
            answers.append((_renamed(results, prefix), rows))
    finally:
        await conn.close()
    assert answers[0] == answers[1]
    if case == PAIR_CASES[0]:
        assert answers[0][0] == [("step", "-a", "1"), True]
    if case[0] == "other" and case[1] == "same":
        assert answers[0][0] == [("fenced", "-a"), ("fenced", "-a")]


# -- URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u:p@ss@h/db?x=:p@ss@", "postgresql://u:***@h/db?x=:p@ss@"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://u:@h/db", "postgresql://u:@h/db"),
        ("postgresql://u:x@h:notaport/db", "postgresql://u:***@h:notaport/db"),
        ("postgresql://[::1/db", "postgresql://[::1/db"),
        ("sqlite:///x.sqlite", "sqlite:///x.sqlite"),
    ],
)
def test_urls__redact(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_urls__sqlite() -> None:
    assert is_sqlite_url("sqlite:///a.sqlite") and is_sqlite_url("sqlite:bad")
    assert not is_sqlite_url("postgresql://h/db")
    assert sqlite_path("sqlite:///rel/a.sqlite") == "rel/a.sqlite"
    assert sqlite_path("sqlite:////abs/a.sqlite") == "/abs/a.sqlite"
    assert sqlite_path("sqlite:///:memory:") == ":memory:"
