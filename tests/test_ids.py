"""Workflow IDs and other identifiers: one rule, checked at the API, the same on SQLite
and Postgres (``dbos_async._ids``). A refused identifier raises a plain ``ValueError`` or
``TypeError`` naming the parameter before anything is written; every accepted one works
end to end, and no topic or key can make two messages or two waiters collide.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from dbos_async import (
    DBOS,
    DBOSClient,
    DBOSConfigError,
    Queue,
    SetEnqueueOptions,
    SetWorkflowID,
    WorkflowStatusString,
)
from dbos_async._ids import MAX_ID_BYTES, check_text, check_workflow_id
from dbos_async._messaging import idempotent_message_id
from dbos_async.sysdb import notification_key, parse_notification_key

counts: Counter[str] = Counter()
gate = asyncio.Event()

ids_queue = Queue("ids_queue", polling_interval_sec=0.2)


@pytest.fixture(autouse=True)
def _reset_state() -> Iterator[None]:
    global gate
    counts.clear()
    gate = asyncio.Event()
    yield
    counts.clear()


@DBOS.step()
async def ids_one(x: str) -> str:
    counts["one"] += 1
    return f"one-{x}"


@DBOS.step()
async def ids_wait_gate() -> None:
    await gate.wait()


@DBOS.step()
async def ids_two(x: str) -> str:
    counts["two"] += 1
    return f"two-{x}"


@DBOS.workflow()
async def ids_gated(x: str) -> str:
    a = await ids_one(x)
    await ids_wait_gate()
    return f"{a}|{await ids_two(x)}"


@DBOS.workflow()
async def ids_echo(topic: str | None, key: str) -> Any:
    """Publishes its own ID under ``key``, then returns the first message on ``topic``."""
    await DBOS.set_event(key, DBOS.workflow_id)
    await DBOS.write_stream(key, DBOS.workflow_id)
    await DBOS.close_stream(key)
    return await DBOS.recv(topic, timeout_seconds=60)


@DBOS.workflow()
async def ids_inbox(topics: list[str], waits: list[float]) -> list[Any]:
    """Receives one message per topic, in order (None where none came in time)."""
    await DBOS.set_event("ready", True)
    return [await DBOS.recv(t, timeout_seconds=w) for t, w in zip(topics, waits, strict=True)]


@DBOS.workflow()
async def ids_bad_keys_inside() -> list[str]:
    raised = []
    for make in (
        lambda: DBOS.set_event("k\x00", 1),
        lambda: DBOS.write_stream("\ud800", 1),
        lambda: DBOS.close_stream("s" * 1001),
        lambda: DBOS.recv("t\x00", 0),
        lambda: DBOS.send("ids bad\x00", "m"),
    ):
        try:
            await make()
        except ValueError as exc:
            raised.append(str(exc).split(" ")[0])
    await DBOS.set_event("ok", 1)
    return raised


@DBOS.workflow()
async def ids_publisher(keys: list[str]) -> None:
    for i, key in enumerate(keys):
        await DBOS.set_event(key, i)


async def relaunch(db_url: str) -> None:
    await DBOS.destroy()
    DBOS({"database_url": db_url, "application_version": "test"})
    await DBOS.launch()


async def wait_until(predicate: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def call(make: Callable[[], Any]) -> Any:
    """Call an entry point: await a coroutine, drain an async iterator."""
    result = make()
    if inspect.isawaitable(result):
        return await result
    if isinstance(result, AsyncIterator):
        return [value async for value in result]
    return result


# -- the rule itself ------------------------------------------------------------------

BAD_IDS: list[tuple[Any, type[Exception]]] = [
    ("", ValueError),
    ("a\x00b", ValueError),
    ("a\ud800b", ValueError),  # a lone surrogate: not encodable as UTF-8
    ("\udfff", ValueError),
    ("a\x1fb", ValueError),  # the notification separator
    ("line\nbreak", ValueError),
    ("tab\there", ValueError),
    ("del\x7f", ValueError),
    ("c1\x85", ValueError),
    ("x" * (MAX_ID_BYTES + 1), ValueError),
    ("é" * (MAX_ID_BYTES // 2 + 1), ValueError),  # 1002 bytes, 501 characters
    (b"bytes-id", TypeError),
    (5, TypeError),
]
BAD_ID_NAMES = [
    "empty",
    "nul",
    "surrogate",
    "low-surrogate",
    "unit-separator",
    "newline",
    "tab",
    "del",
    "c1",
    "too-long",
    "too-long-utf8",
    "bytes",
    "int",
]

GOOD_IDS = [
    "order 7",
    'say "hi"',
    "it's",
    "100%",
    "%_",
    "a/b-c",
    "emoji 🎉🚀",
    "Ünïcødé 名前 ошибка",
    "  spaced  ",
    "semi;colon,comma:colon|pipe\\back",
    "x" * MAX_ID_BYTES,
    "é" * (MAX_ID_BYTES // 2),
]


@pytest.mark.parametrize(("bad", "error"), BAD_IDS, ids=BAD_ID_NAMES)
def test_rule__bad_ids_are_refused_with_a_message_naming_parameter_and_value(
    bad: Any, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        check_workflow_id(bad, "my_param")
    message = str(info.value)
    assert message.startswith("my_param must be")
    assert "UTF-8 bytes" in message and "control characters" in message
    shown = repr(bad) if len(repr(bad)) < 80 else repr(bad[:60])
    assert shown in message


@pytest.mark.parametrize("good", GOOD_IDS)
def test_rule__good_ids_are_accepted(good: str) -> None:
    assert check_workflow_id(good) == good


def test_rule__text_allows_separators_but_not_nul_surrogates_or_huge() -> None:
    check_text("a\x1fb\nc\x7f", "topic")
    check_text("", "topic")
    check_text(None, "topic", optional=True)
    for bad in ("a\x00", "\ud800", "k" * 1001):
        with pytest.raises(ValueError, match=r"^topic must be"):
            check_text(bad, "topic")
    with pytest.raises(TypeError, match="topic"):
        check_text(5, "topic")
    with pytest.raises(ValueError, match="non-empty"):
        check_text("", "dedup", non_empty=True)


def test_notification_keys__round_trip_whatever_the_key() -> None:
    seen: set[str] = set()
    for kind in ("msg", "event", "stream", "queue"):
        for wid in ("w", "w w", "é/%"):
            for key in ("", "k", "a\x1fb", "\x1f", "\x1f\x1f", "a\x1f"):
                made = notification_key(kind, wid, key)
                assert parse_notification_key(made) == (kind, wid, key)
                seen.add(made)
    assert len(seen) == 4 * 3 * 6  # no two triples share a key
    assert parse_notification_key("queue\x1fq\x1f") == ("queue", "q", "")  # Postgres' SQL
    assert parse_notification_key("*") is None


def test_message_ids__different_topic_and_key_pairs_never_share_an_id() -> None:
    pairs = [("a\x1fb", "c"), ("a", "b\x1fc"), ("a\x1fb\x1fc", ""), ("", "a\x1fb\x1fc")]
    made = {idempotent_message_id("dest", t, k) for t, k in pairs}
    assert len(made) == len(pairs)
    assert idempotent_message_id("dest", "a", "b") == idempotent_message_id("dest", "a", "b")
    assert idempotent_message_id("d1", "a", "b") != idempotent_message_id("d2", "a", "b")
    long_id = idempotent_message_id("x" * 1000, "t" * 1000, "k" * 1000)
    assert len(long_id.encode()) < 1100  # short enough for any index


# -- every entry point refuses bad IDs, the same way on both backends ----------------


def _dbos_entry_points(bad: Any) -> list[tuple[str, str, Callable[[], Any]]]:
    """(name, parameter named in the error, call) for every DBOS entry point."""
    return [
        ("SetWorkflowID", "SetWorkflowID(workflow_id)", lambda: SetWorkflowID(bad)),
        ("retrieve_workflow", "workflow_id", lambda: DBOS.retrieve_workflow(bad)),
        (
            "retrieve_workflow(existing_workflow=False)",
            "workflow_id",
            lambda: DBOS.retrieve_workflow(bad, existing_workflow=False),
        ),
        ("get_workflow_status", "workflow_id", lambda: DBOS.get_workflow_status(bad)),
        ("list_workflow_steps", "workflow_id", lambda: DBOS.list_workflow_steps(bad)),
        ("cancel_workflow", "workflow_id", lambda: DBOS.cancel_workflow(bad)),
        ("resume_workflow", "workflow_id", lambda: DBOS.resume_workflow(bad)),
        ("fork_workflow", "workflow_id", lambda: DBOS.fork_workflow(bad, 1)),
        ("send", "destination_id", lambda: DBOS.send(bad, "m")),
        (
            "send(idempotency_key)",
            "destination_id",
            lambda: DBOS.send(bad, "m", "t", idempotency_key="k"),
        ),
        ("get_event", "workflow_id", lambda: DBOS.get_event(bad, "k", 0)),
        ("get_all_events", "workflow_id", lambda: DBOS.get_all_events(bad)),
        ("read_stream", "workflow_id", lambda: DBOS.read_stream(bad, "k")),
        (
            "list_workflows(workflow_ids)",
            "workflow_ids[1]",
            lambda: DBOS.list_workflows(workflow_ids=["ok", bad]),
        ),
        (
            "list_workflows(parent_workflow_id)",
            "parent_workflow_id",
            lambda: DBOS.list_workflows(parent_workflow_id=bad),
        ),
    ]


def _client_entry_points(client: DBOSClient, bad: Any) -> list[tuple[str, str, Callable[[], Any]]]:
    return [
        ("client.retrieve_workflow", "workflow_id", lambda: client.retrieve_workflow(bad)),
        ("client.get_workflow_status", "workflow_id", lambda: client.get_workflow_status(bad)),
        ("client.list_workflow_steps", "workflow_id", lambda: client.list_workflow_steps(bad)),
        ("client.cancel_workflow", "workflow_id", lambda: client.cancel_workflow(bad)),
        ("client.resume_workflow", "workflow_id", lambda: client.resume_workflow(bad)),
        ("client.fork_workflow", "workflow_id", lambda: client.fork_workflow(bad, 1)),
        ("client.send", "destination_id", lambda: client.send(bad, "m", "t", "k")),
        ("client.get_event", "workflow_id", lambda: client.get_event(bad, "k", 0)),
        ("client.get_all_events", "workflow_id", lambda: client.get_all_events(bad)),
        ("client.read_stream", "workflow_id", lambda: client.read_stream(bad, "k")),
        (
            "client.list_workflows(workflow_ids)",
            "workflow_ids[0]",
            lambda: client.list_workflows(workflow_ids=[bad]),
        ),
        (
            "client.list_workflows(parent_workflow_id)",
            "parent_workflow_id",
            lambda: client.list_workflows(parent_workflow_id=bad),
        ),
        (
            "client.enqueue(workflow_id)",
            "options['workflow_id']",
            lambda: client.enqueue(
                {"queue_name": "ids_queue", "workflow_name": "ids_gated", "workflow_id": bad},
                "x",
            ),
        ),
    ]


async def _snapshot() -> tuple[list[str], int, dict[str, Any]]:
    rows = await DBOS.list_workflows()
    steps = await DBOS.list_workflow_steps("ids-target")
    return [r.workflow_id for r in rows], len(steps), await DBOS.get_all_events("ids-target")


async def test_entry_points__refuse_bad_ids_alike_and_write_nothing(
    dbos: DBOS, db_url: str
) -> None:
    with SetWorkflowID("ids-target"):
        target = await DBOS.start_workflow(ids_inbox, ["t"], [0.1])
    await target.get_result()
    before = await _snapshot()
    async with DBOSClient(db_url) as client:
        for bad, error in BAD_IDS:
            points = _dbos_entry_points(bad) + _client_entry_points(client, bad)
            for name, param, make in points:
                with pytest.raises(error) as info:
                    await call(make)
                # The validator's own message: it names the parameter, shows the value,
                # states the rule, and cannot depend on the backend.
                with pytest.raises(error) as expected:
                    check_workflow_id(bad, param)
                assert str(info.value) == str(expected.value), name
    assert await _snapshot() == before
    # A refused SetWorkflowID never leaked an ID into the next start.
    handle = await DBOS.start_workflow(ids_inbox, [], [])
    assert handle.workflow_id != "ids-target"
    await handle.get_result()


BAD_TEXTS: list[tuple[Any, type[Exception]]] = [
    ("a\x00b", ValueError),
    ("a\ud800b", ValueError),
    ("t" * 1001, ValueError),
    (7, TypeError),
]


def _text_entry_points(client: DBOSClient, bad: Any) -> list[tuple[str, Callable[[], Any]]]:
    """(parameter named in the error, call) for every place a text identifier enters."""
    tid = "ids-target"
    queued: Any = {"queue_name": "ids_queue", "workflow_name": "ids_gated"}
    return [
        ("topic", lambda: DBOS.send(tid, "m", bad)),
        ("idempotency_key", lambda: DBOS.send(tid, "m", "t", bad)),
        ("key", lambda: DBOS.get_event(tid, bad, 0)),
        ("key", lambda: DBOS.read_stream(tid, bad)),
        ("name", lambda: DBOS.list_workflows(name=bad)),
        ("queue_name", lambda: DBOS.list_workflows(queue_name=bad)),
        ("queue_name", lambda: DBOS.list_queued_workflows(bad)),
        ("application_version", lambda: DBOS.fork_workflow(tid, 1, application_version=bad)),
        ("topic", lambda: client.send(tid, "m", bad)),
        ("idempotency_key", lambda: client.send(tid, "m", None, bad)),
        ("key", lambda: client.get_event(tid, bad, 0)),
        ("key", lambda: client.read_stream(tid, bad)),
        ("name", lambda: client.list_workflows(name=bad)),
        ("queue_name", lambda: client.list_queued_workflows(bad)),
        ("options['workflow_name']", lambda: client.enqueue({**queued, "workflow_name": bad})),
        ("options['app_version']", lambda: client.enqueue({**queued, "app_version": bad})),
        ("deduplication_id", lambda: client.enqueue({**queued, "deduplication_id": bad})),
        ("queue_partition_key", lambda: client.enqueue({**queued, "queue_partition_key": bad})),
        ("deduplication_id", lambda: SetEnqueueOptions(deduplication_id=bad)),
        ("queue_partition_key", lambda: SetEnqueueOptions(queue_partition_key=bad)),
    ]


async def test_entry_points__refuse_bad_text_alike_and_write_nothing(
    dbos: DBOS, db_url: str
) -> None:
    with SetWorkflowID("ids-target"):
        target = await DBOS.start_workflow(ids_inbox, ["t"], [0.1])
    await target.get_result()
    before = await _snapshot()
    async with DBOSClient(db_url) as client:
        for bad, error in BAD_TEXTS:
            for param, make in _text_entry_points(client, bad):
                # (SetEnqueueOptions has always raised ValueError for a non-str.)
                legacy = param in ("deduplication_id", "queue_partition_key")
                expected = ValueError if legacy else error
                with pytest.raises(expected) as info:
                    await call(make)
                assert param in str(info.value), (param, str(info.value))
    assert await _snapshot() == before


async def test_inside_a_workflow__bad_keys_raise_before_the_step_is_taken(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(ids_bad_keys_inside)
    assert await handle.get_result() == ["key", "key", "key", "topic", "destination_id"]
    steps = await DBOS.list_workflow_steps(handle.workflow_id)
    assert [s.function_id for s in steps] == [1]  # refused calls took no step ID


def test_queue_names__refused_like_ids_with_a_config_error() -> None:
    for bad in ("a\x1fb", "q\x00", "\ud800", "q" * 1001, "tab\t"):
        with pytest.raises(DBOSConfigError, match="queue name"):
            Queue(bad)


# -- unusual but valid IDs work end to end -------------------------------------------


async def test_unusual_ids__start_retrieve_message_event_stream(dbos: DBOS, db_url: str) -> None:
    async with DBOSClient(db_url) as client:
        for i, wid in enumerate(GOOD_IDS):
            topic = f"topic {wid[:50]}"
            with SetWorkflowID(wid):
                handle = await DBOS.start_workflow(ids_echo, topic, "ready")
            assert handle.workflow_id == wid
            assert await DBOS.get_event(wid, "ready", 30) == wid
            assert [v async for v in DBOS.read_stream(wid, "ready")] == [wid]
            if i % 2:
                await client.send(wid, f"hello {i}", topic, idempotency_key=wid)
                await client.send(wid, "twice", topic, idempotency_key=wid)  # deduplicated
            else:
                await DBOS.send(wid, f"hello {i}", topic)
            retrieved = await DBOS.retrieve_workflow(wid)
            assert await asyncio.wait_for(retrieved.get_result(), 60) == f"hello {i}"
            status = await DBOS.get_workflow_status(wid)
            assert status is not None and status.workflow_id == wid
            assert status.status == WorkflowStatusString.SUCCESS
            assert await client.get_event(wid, "ready", 1) == wid
            assert await client.get_all_events(wid) == {"ready": wid}
            listed = await client.list_workflows(workflow_ids=[wid])
            assert [s.workflow_id for s in listed] == [wid]
            assert await client.retrieve_workflow(wid) is not None


async def test_unusual_id__cancel_resume_fork_here(dbos: DBOS) -> None:
    wid = 'it\'s 100% "odd" / 🎉 ü-1'
    with SetWorkflowID(wid):
        await DBOS.start_workflow(ids_gated, "x")
    await wait_until(lambda: counts["one"] == 1, "step one")
    await DBOS.cancel_workflow(wid)
    gate.set()
    status = await DBOS.get_workflow_status(wid)
    assert status is not None and status.status == WorkflowStatusString.CANCELLED
    resumed = await DBOS.resume_workflow(wid)
    assert await asyncio.wait_for(resumed.get_result(), 60) == "one-x|two-x"
    with SetWorkflowID(f"fork of {wid}"):
        fork = await DBOS.fork_workflow(wid, 3)
    assert fork.workflow_id == f"fork of {wid}"
    assert await asyncio.wait_for(fork.get_result(), 60) == "one-x|two-x"
    assert (counts["one"], counts["two"]) == (1, 2)
    fork_status = await DBOS.get_workflow_status(fork.workflow_id)
    assert fork_status is not None and fork_status.forked_from == wid


async def test_unusual_id__resumed_by_a_client_is_picked_up_and_finishes(
    dbos: DBOS, db_url: str, backend: str
) -> None:
    wid = "client 'resume' % / 🎉 ü:|;,"
    with SetWorkflowID(wid):
        await DBOS.start_workflow(ids_gated, "c")
    await wait_until(lambda: counts["one"] == 1, "step one")
    await DBOS.cancel_workflow(wid)
    gate.set()
    # (Internal: wait for the cancelled run to stop, so the resumed run is the only one.)
    await wait_until(lambda: wid not in dbos._runtime.live, "the cancelled run to stop")
    assert counts["two"] == 0
    async with DBOSClient(db_url) as client:
        resumed = await client.resume_workflow(wid)
        if backend == "sqlite":
            # No push notifications: the executor runs it at its next launch.
            await relaunch(db_url)
        assert await asyncio.wait_for(resumed.get_result(), 60) == "one-c|two-c"
        forked = await client.fork_workflow(wid, 3)
        if backend == "sqlite":
            await relaunch(db_url)
        assert await asyncio.wait_for(forked.get_result(), 60) == "one-c|two-c"
    assert (counts["one"], counts["two"]) == (1, 2)


async def test_client_enqueue__unusual_id_runs(dbos: DBOS, db_url: str) -> None:
    gate.set()
    wid = "enqueued 'by' client % 🎉"
    async with DBOSClient(db_url) as client:
        handle = await client.enqueue(
            {"queue_name": "ids_queue", "workflow_name": "ids_gated", "workflow_id": wid}, "q"
        )
        assert handle.workflow_id == wid
        assert await asyncio.wait_for(handle.get_result(), 60) == "one-q|two-q"


# -- topics and keys with separators never collide -----------------------------------

COLLIDING = [("a\x1fb", "c"), ("a", "b\x1fc")]  # one key under the old "key<US>..." format


async def test_sends__topic_key_pairs_that_used_to_collide_are_both_delivered(
    dbos: DBOS, db_url: str
) -> None:
    with SetWorkflowID("ids inbox"):
        handle = await DBOS.start_workflow(ids_inbox, ["a\x1fb", "a", "a"], [60, 60, 2])
    assert await DBOS.get_event("ids inbox", "ready", 30)
    await DBOS.send("ids inbox", "first", *COLLIDING[0])
    async with DBOSClient(db_url) as client:
        await client.send("ids inbox", "second", *COLLIDING[1])
        await client.send("ids inbox", "second again", *COLLIDING[1])  # same pair: once
    # The third recv waits its 2 s and gets nothing: the repeated send was deduplicated.
    assert await asyncio.wait_for(handle.get_result(), 60) == ["first", "second", None]


async def test_events_and_topics__separators_in_keys_wake_the_right_waiters(dbos: DBOS) -> None:
    keys = ["k", "k\x1f", "\x1fk", "k\x1fk", "\x1f", ""]
    with SetWorkflowID("ids publisher"):
        handle = await DBOS.start_workflow(ids_publisher, keys)
    got = await asyncio.gather(*(DBOS.get_event("ids publisher", k, 30) for k in keys))
    assert got == list(range(len(keys)))
    await handle.get_result()
    assert await DBOS.get_all_events("ids publisher") == {k: i for i, k in enumerate(keys)}

    topics = ["x\x1fy", "x", "x\x1f", "\x1f"]
    with SetWorkflowID("ids topics"):
        inbox = await DBOS.start_workflow(ids_inbox, topics, [60.0] * len(topics))
    assert await DBOS.get_event("ids topics", "ready", 30)
    for topic in reversed(topics):
        await DBOS.send("ids topics", f"to {topic!r}", topic)
    assert await asyncio.wait_for(inbox.get_result(), 60) == [f"to {t!r}" for t in topics]
