"""Lost replies (issue 10): a statement commits, then its connection dies before the
answer arrives. Every statement the runtime retries must be safe to repeat: the retry
returns what the first attempt did, and nothing is consumed, written, claimed or applied
twice, nor left half done."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from dbos_async import DBOS, Queue, SetWorkflowID, WorkflowStatusString

from .lost_replies import LostReplies, lost_replies

pytestmark = pytest.mark.postgres

RUNS: Counter[str] = Counter()
BLOCK: dict[str, asyncio.Event] = {}

lr_queue = Queue("lost-reply-queue", concurrency=1)


@pytest.fixture
def injector(monkeypatch: pytest.MonkeyPatch) -> Iterator[LostReplies]:
    with lost_replies(monkeypatch) as inj:
        yield inj


@pytest.fixture
async def pg(fresh_pg: str, injector: LostReplies) -> AsyncIterator[str]:
    RUNS.clear()
    BLOCK.clear()
    await DBOS.destroy()
    DBOS({"database_url": fresh_pg, "application_version": "test"})
    await DBOS.launch()
    try:
        yield fresh_pg
    finally:
        await DBOS.destroy()


async def fetch(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


@DBOS.workflow()
async def lr_receiver(count: int) -> list[object]:
    return [await DBOS.recv("t", timeout_seconds=30) for _ in range(count)]


async def test_lost_reply__recv_consumes_each_message_once(pg: str, injector: LostReplies) -> None:
    with SetWorkflowID("lr-recv"):
        handle = await DBOS.start_workflow(lr_receiver, 3)
    injector.arm("receive_message", only_rows=True)
    for n in range(3):
        await DBOS.send("lr-recv", n, "t")
    assert await asyncio.wait_for(handle.get_result(), 30) == [0, 1, 2]
    assert injector.dropped and not injector.pending()
    unconsumed = await fetch(pg, "SELECT count(*) FROM dbos_async.notifications WHERE NOT consumed")
    assert unconsumed[0][0] == 0


@DBOS.step()
async def lr_stream_step(n: int) -> None:
    await DBOS.write_stream("from-step", n)


@DBOS.workflow()
async def lr_streamer() -> None:
    for n in range(3):
        await DBOS.write_stream("s", n)
        await lr_stream_step(n)
    await DBOS.close_stream("s")
    await DBOS.close_stream("from-step")


async def test_lost_reply__stream_values_appear_once(pg: str, injector: LostReplies) -> None:
    injector.arm("INSERT INTO dbos_async.streams", times=3)
    with SetWorkflowID("lr-stream"):
        await (await DBOS.start_workflow(lr_streamer))
    assert len(injector.dropped) == 3
    assert [v async for v in DBOS.read_stream("lr-stream", "s")] == [0, 1, 2]
    assert [v async for v in DBOS.read_stream("lr-stream", "from-step")] == [0, 1, 2]


@DBOS.workflow()
async def lr_queued(n: int) -> int:
    RUNS[f"queued-{n}"] += 1
    await asyncio.sleep(0.01)
    return n


async def test_lost_reply__queue_claim_runs_what_it_took(pg: str, injector: LostReplies) -> None:
    injector.arm("claim_queued", times=2, only_rows=True)
    handles = [await lr_queue.enqueue(lr_queued, n) for n in range(4)]
    results = await asyncio.wait_for(asyncio.gather(*handles), 30)
    assert results == [0, 1, 2, 3]
    assert len(injector.dropped) == 2
    assert all(RUNS[f"queued-{n}"] == 1 for n in range(4))


async def test_lost_reply__enqueue_is_stored_once(pg: str, injector: LostReplies) -> None:
    injector.arm("nextval('dbos_async.enqueue_seq')")
    with SetWorkflowID("lr-enqueued"):
        handle = await lr_queue.enqueue(lr_queued, 7)
    assert await asyncio.wait_for(handle.get_result(), 30) == 7
    assert injector.dropped
    rows = await fetch(pg, "SELECT count(*) FROM dbos_async.workflow_status")
    assert rows[0][0] == 1


@DBOS.step()
async def lr_blocking_step(name: str) -> str:
    RUNS[name] += 1
    if name in BLOCK:
        await BLOCK[name].wait()
    return name


@DBOS.workflow()
async def lr_recoverable(name: str) -> str:
    return await lr_blocking_step(name)


async def test_lost_reply__recovery_claim_still_recovers(
    fresh_pg: str, injector: LostReplies
) -> None:
    RUNS.clear()
    await DBOS.destroy()
    config = {"database_url": fresh_pg, "application_version": "test"}
    DBOS(config)
    await DBOS.launch()
    names = [f"lr-rec-{n}" for n in range(3)]
    for name in names:
        BLOCK[name] = asyncio.Event()
        with SetWorkflowID(name):
            await DBOS.start_workflow(lr_recoverable, name)
    async with asyncio.timeout(30):
        while sum(RUNS.values()) < 3:  # noqa: ASYNC110 - a counter, not an event
            await asyncio.sleep(0.01)
    await DBOS.destroy()  # they stay PENDING
    BLOCK.clear()
    injector.arm("claim_token = $8", only_rows=True)  # (the takeover)
    DBOS(config)
    await DBOS.launch()
    try:
        results = [
            await asyncio.wait_for((await DBOS.retrieve_workflow(n)).get_result(), 30)
            for n in names
        ]
        assert results == names
        assert injector.dropped
        rows = await fetch(fresh_pg, "SELECT recovery_attempts FROM dbos_async.workflow_status")
        assert [r[0] for r in rows] == [1, 1, 1]
    finally:
        await DBOS.destroy()


@DBOS.step()
async def lr_counted(name: str) -> str:
    RUNS[name] += 1
    return name


@DBOS.workflow()
async def lr_two_steps() -> list[str]:
    return [await lr_counted("first"), await lr_counted("second")]


async def test_lost_reply__fork_is_inserted_once_and_runs(pg: str, injector: LostReplies) -> None:
    with SetWorkflowID("lr-source"):
        await (await DBOS.start_workflow(lr_two_steps))
    injector.arm("COMMIT")
    with SetWorkflowID("lr-fork"):
        handle = await DBOS.fork_workflow("lr-source", 2)
    assert await asyncio.wait_for(handle.get_result(), 30) == ["first", "second"]
    assert injector.dropped
    assert Counter({"first": 1, "second": 2}) == RUNS


@DBOS.transaction()
async def lr_insert(tag: str) -> str:
    await DBOS.sql_connection.execute("INSERT INTO lr_applied (tag) VALUES ($1)", tag)
    return tag


@DBOS.workflow()
async def lr_tx_workflow(tag: str) -> str:
    return await lr_insert(tag)


async def test_lost_reply__transaction_commit_applies_once(pg: str, injector: LostReplies) -> None:
    await fetch(pg, "CREATE TABLE lr_applied (tag TEXT NOT NULL)")
    injector.arm("COMMIT")
    with SetWorkflowID("lr-tx"):
        assert await (await DBOS.start_workflow(lr_tx_workflow, "in-workflow")) == "in-workflow"
    injector.arm("COMMIT")
    assert await lr_insert("outside") == "outside"  # a plain call outside workflows
    assert len(injector.dropped) == 2
    rows = await fetch(pg, "SELECT tag, count(*) FROM lr_applied GROUP BY tag ORDER BY tag")
    assert [tuple(r) for r in rows] == [("in-workflow", 1), ("outside", 1)]
    status = await DBOS.get_workflow_status("lr-tx")
    assert status is not None and status.status == WorkflowStatusString.SUCCESS


async def test_lost_reply__send_and_events_from_outside(pg: str, injector: LostReplies) -> None:
    with SetWorkflowID("lr-dest"):
        handle = await DBOS.start_workflow(lr_receiver, 2)
    injector.arm("INSERT INTO dbos_async.notifications", times=2)
    await DBOS.send("lr-dest", "a", "t")
    await DBOS.send("lr-dest", "b", "t")
    assert await asyncio.wait_for(handle.get_result(), 30) == ["a", "b"]
    assert len(injector.dropped) == 2
    rows = await fetch(pg, "SELECT count(*) FROM dbos_async.notifications")
    assert rows[0][0] == 2


async def test_lost_reply__cancel(pg: str, injector: LostReplies) -> None:
    BLOCK["lr-cancel"] = asyncio.Event()
    with SetWorkflowID("lr-cancel"):
        await DBOS.start_workflow(lr_recoverable, "lr-cancel")
    injector.arm("SET status = 'CANCELLED'")
    await DBOS.cancel_workflow("lr-cancel")
    BLOCK["lr-cancel"].set()
    assert injector.dropped
    status = await DBOS.get_workflow_status("lr-cancel")
    assert status is not None and status.status == WorkflowStatusString.CANCELLED


async def test_lost_reply__commit_that_never_arrived_is_ended_and_counts_as_aborted(
    fresh_pg: str,
) -> None:
    """A COMMIT lost on the way (the server still holds the transaction open, as after a
    network partition) is not waited for forever: its server process is ended, and the
    transaction counts as not committed, so the body may run again."""
    from dbos_async.sysdb._postgres import PostgresApplicationDatabase, PostgresPool

    app = PostgresApplicationDatabase(PostgresPool(fresh_pg, 2, 5.0))
    await app.connect()
    orphan = await asyncpg.connect(fresh_pg)
    try:
        await orphan.execute("CREATE TABLE lr_orphan (n INT)")
        await orphan.execute("BEGIN")
        await orphan.execute("INSERT INTO lr_orphan VALUES (1)")
        xid, pid = await orphan.fetchrow("SELECT txid_current(), pg_backend_pid()")
        assert await asyncio.wait_for(app._committed(xid, pid), 30) is False
        rows = await fetch(fresh_pg, "SELECT count(*) FROM lr_orphan")
        assert rows[0][0] == 0
    finally:
        orphan.terminate()
        await app.close()


async def test_lost_reply__resume_runs_the_workflow(pg: str, injector: LostReplies) -> None:
    BLOCK["lr-resume"] = asyncio.Event()
    with SetWorkflowID("lr-resume"):
        handle = await DBOS.start_workflow(lr_recoverable, "lr-resume")
    await DBOS.cancel_workflow("lr-resume")
    BLOCK["lr-resume"].set()
    injector.arm("claim_token = $4")
    resumed = await DBOS.resume_workflow("lr-resume")
    assert await asyncio.wait_for(resumed.get_result(), 30) == "lr-resume"
    assert await asyncio.wait_for(handle.get_result(), 30) == "lr-resume"
    assert injector.dropped


async def test_lost_reply__resume_of_a_queued_workflow_runs_it(
    pg: str, injector: LostReplies
) -> None:
    BLOCK["lr-qresume"] = asyncio.Event()
    with SetWorkflowID("lr-qresume"):
        await lr_queue.enqueue(lr_recoverable, "lr-qresume")
    while RUNS["lr-qresume"] == 0:  # noqa: ASYNC110 - a counter, not an event
        await asyncio.sleep(0.01)
    await DBOS.cancel_workflow("lr-qresume")
    BLOCK["lr-qresume"].set()
    injector.arm("claim_token = $4")
    resumed = await DBOS.resume_workflow("lr-qresume")
    assert await asyncio.wait_for(resumed.get_result(), 30) == "lr-qresume"
    assert injector.dropped


async def test_txid_status__a_transaction_id_the_server_never_saw_did_not_commit(
    fresh_pg: str,
) -> None:
    """After a failover to a replica that never saw the transaction, Postgres says its ID
    is "in the future": it did not commit there."""
    from dbos_async.sysdb._postgres import PostgresApplicationDatabase, PostgresPool

    app = PostgresApplicationDatabase(PostgresPool(fresh_pg, 2, 5.0))
    await app.connect()
    try:
        current = (await fetch(fresh_pg, "SELECT txid_current()"))[0][0]
        assert await asyncio.wait_for(app._committed(current + 1_000_000, 0), 30) is False
    finally:
        await app.close()


@DBOS.transaction()
async def lr_read_only() -> int:
    RUNS["read-only"] += 1
    value: int = await DBOS.sql_connection.fetchval("SELECT 41 + 1")
    return value


async def test_lost_reply__read_only_plain_transaction_runs_again(
    pg: str, injector: LostReplies
) -> None:
    """A plain transaction that wrote nothing has no transaction ID: its lost COMMIT is
    simply retried (harmless), with no ID forced on it."""
    injector.arm("COMMIT")
    assert await lr_read_only() == 42
    assert injector.dropped
    assert RUNS["read-only"] == 2


#: The injector, for transaction bodies that arm it themselves (at the exact attempt).
ARMED: list[LostReplies] = []

_SERIALIZATION_FAILURE = (
    "DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = 'serialization_failure'; END $$"
)


@DBOS.transaction()
async def lr_conflict_then_insert(tag: str) -> str:
    RUNS[tag] += 1
    conn = DBOS.sql_connection
    await conn.execute("INSERT INTO lr_applied (tag) VALUES ($1)", tag)
    if RUNS[tag] == 1:
        # The connection is cut while the pool resets it after this failed attempt.
        ARMED[0].arm("RESET ALL")
        await conn.execute(_SERIALIZATION_FAILURE)
    return tag


@DBOS.workflow()
async def lr_conflict_workflow(tag: str) -> str:
    return await lr_conflict_then_insert(tag)


async def test_lost_reset__after_a_serialization_failure_the_transaction_is_retried(
    pg: str, injector: LostReplies
) -> None:
    """A serialization failure is retried even when the connection is cut while the pool
    resets it on release: the release's ConnectionDoesNotExistError is not the
    transaction's outcome (it once replaced the failure and ended the workflow ERROR)."""
    ARMED[:] = [injector]
    await fetch(pg, "CREATE TABLE lr_applied (tag TEXT NOT NULL)")
    with SetWorkflowID("lr-reset"):
        handle = await DBOS.start_workflow(lr_conflict_workflow, "conflict")
    assert await asyncio.wait_for(handle.get_result(), 30) == "conflict"
    assert injector.dropped and not injector.pending()
    assert RUNS["conflict"] == 2
    rows = await fetch(pg, "SELECT count(*) FROM lr_applied")
    assert rows[0][0] == 1
    status = await DBOS.get_workflow_status("lr-reset")
    assert status is not None and status.status == WorkflowStatusString.SUCCESS


class LrBodyError(Exception):
    pass


@DBOS.transaction()
async def lr_failing_body() -> None:
    ARMED[0].arm("RESET ALL")
    await DBOS.sql_connection.execute("SELECT 1")
    raise LrBodyError("the body's own error")


@DBOS.workflow()
async def lr_failing_workflow() -> None:
    await lr_failing_body()


async def test_lost_reset__the_body_error_is_the_outcome(pg: str, injector: LostReplies) -> None:
    """A body's own error stays the outcome when the connection is then cut during the
    pool's reset."""
    ARMED[:] = [injector]
    with SetWorkflowID("lr-body-error"):
        handle = await DBOS.start_workflow(lr_failing_workflow)
    with pytest.raises(LrBodyError):
        await asyncio.wait_for(handle.get_result(), 30)
    assert injector.dropped and not injector.pending()
    status = await DBOS.get_workflow_status("lr-body-error")
    assert status is not None and status.status == WorkflowStatusString.ERROR
