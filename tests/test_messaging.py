"""Workflow communication (API.md section 5, and DBOSClient's send/get_event from section 7):
messages, events and streams, on both backends."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from dbos_async import (
    DBOS,
    DBOSClient,
    DBOSConnectionError,
    DBOSException,
    DBOSNonExistentWorkflowError,
    DBOSSerializationError,
    SetWorkflowID,
    WorkflowStatusString,
)
from dbos_async._notifier import Notifier

# Module-level state the workflows below report into; reset before every test.
GATES: dict[str, asyncio.Event] = {}
CALLS: Counter[str] = Counter()
#: When (``time.time()``) each run of ``msg_wait_durably`` reached its waiting call.
REACHED: list[float] = []


@pytest.fixture(autouse=True)
def _reset_state() -> Iterator[None]:
    GATES.clear()
    CALLS.clear()
    REACHED.clear()
    yield
    GATES.clear()


#: How long a waiter may take to be woken. Generous: only a notification can wake it
#: this early when the re-check timer is an hour (see ``only_notifications_wake``).
WOKEN_WITHIN = 20.0


def only_notifications_wake(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set every waiter's re-check timer to an hour: a waiter woken within the test's
    bound was woken by a notification, not by polling."""
    monkeypatch.setattr(Notifier, "poll_interval", lambda self, attempt: 3600.0)


@pytest.fixture
def notified_only(monkeypatch: pytest.MonkeyPatch) -> None:
    only_notifications_wake(monkeypatch)


def gate(name: str) -> asyncio.Event:
    if name not in GATES:
        GATES[name] = asyncio.Event()
    return GATES[name]


async def relaunch(db_url: str) -> None:
    """Simulate a process restart: destroy the runtime and launch a new one."""
    await DBOS.destroy()
    DBOS({"database_url": db_url, "application_version": "test"})
    await DBOS.launch()


async def steps_of(workflow_id: str) -> list[tuple[int, str, Any]]:
    return [
        (s.function_id, s.function_name, s.output)
        for s in await DBOS.list_workflow_steps(workflow_id)
    ]


# -- workflows and steps used by the tests ------------------------------------------


@DBOS.workflow()
async def msg_ordering_recipient() -> str:
    m1 = await DBOS.recv("t")
    m2 = await DBOS.recv("t")
    m3 = await DBOS.recv()
    return f"{m2}-{m1}-{m3}"


@DBOS.workflow()
async def msg_ordering_sender(destination_id: str) -> None:
    await DBOS.send(destination_id, "test1", "t")
    await DBOS.send(destination_id, "test2", "t")
    await DBOS.send(destination_id, "test3")


@DBOS.workflow()
async def msg_recv_n(topic: str | None, count: int, wait_s: float) -> list[Any]:
    return [await DBOS.recv(topic, timeout_seconds=wait_s) for _ in range(count)]


@DBOS.workflow()
async def msg_recv_then_none(topic: str) -> list[Any]:
    """One message expected (waits for it), then nothing more (a short second wait)."""
    first = await DBOS.recv(topic, timeout_seconds=10)
    second = await DBOS.recv(topic, timeout_seconds=0.5)
    return [first, second]


@DBOS.workflow()
async def msg_recv_after_gate(topic: str, count: int) -> list[Any]:
    await gate("recv-go").wait()
    return [await DBOS.recv(topic, timeout_seconds=30) for _ in range(count)]


@DBOS.workflow()
async def msg_recv_timed(wait_s: float) -> Any:
    return await DBOS.recv("nothing", timeout_seconds=wait_s)


@DBOS.workflow()
async def msg_send_one(destination_id: str, message: Any, topic: str | None) -> str:
    CALLS["msg_send_one"] += 1
    await DBOS.send(destination_id, message, topic)
    return "sent"


@DBOS.workflow()
async def msg_send_then_block(destination_id: str) -> str:
    await DBOS.send(destination_id, "once", "t")
    gate("sender-reached").set()
    await gate("sender-release").wait()
    return "done"


@DBOS.workflow()
async def msg_send_to_unknown(destination_id: str) -> str:
    try:
        await DBOS.send(destination_id, "hello")
    except DBOSNonExistentWorkflowError:
        return "raised"
    return "sent"


@DBOS.workflow()
async def msg_recv_gate_recv(topic: str) -> list[Any]:
    first = await DBOS.recv(topic, timeout_seconds=10)
    await DBOS.set_event("got-first", first)
    await gate("second-recv").wait()
    second = await DBOS.recv(topic, timeout_seconds=0.5)
    return [first, second]


@DBOS.workflow()
async def msg_set_event(key: str, value: Any) -> str:
    await DBOS.set_event(key, value)
    return "set"


@DBOS.workflow()
async def msg_set_events(pairs: list[list[Any]]) -> None:
    for key, value in pairs:
        await DBOS.set_event(key, value)


@DBOS.step()
async def msg_step_sets_event(value: int) -> str:
    await DBOS.set_event("from_step", value)
    return "ok"


@DBOS.workflow()
async def msg_event_from_step(value: int) -> str:
    return await msg_step_sets_event(value)


@DBOS.workflow()
async def msg_get_event_in_workflow(workflow_id: str, key: str, wait_s: float) -> Any:
    return await DBOS.get_event(workflow_id, key, timeout_seconds=wait_s)


@DBOS.workflow()
async def msg_many_waiter() -> Any:
    # Long: on SQLite, starting the thousand of them one by one takes 15-35 s on a busy
    # 2-core machine, and the first must still be waiting when the sends come.
    return await DBOS.recv("go", timeout_seconds=90)


@DBOS.workflow()
async def msg_stream_writer(key: str, values: list[Any], close: bool) -> int:
    await gate("writer-go").wait()
    for value in values:
        await DBOS.write_stream(key, value)
        await asyncio.sleep(0.01)
    if close:
        await DBOS.close_stream(key)
    return len(values)


@DBOS.workflow()
async def msg_stream_close_then_block(key: str, values: list[Any]) -> str:
    for value in values:
        await DBOS.write_stream(key, value)
    await DBOS.close_stream(key)
    await gate("after-close").wait()
    return "done"


@DBOS.workflow()
async def msg_stream_write_then_block(key: str, values: list[Any]) -> str:
    for value in values:
        await DBOS.write_stream(key, value)
    await gate("end-writer").wait()
    return "done"


@DBOS.step()
async def msg_step_writes_stream(key: str, values: list[Any]) -> int:
    for value in values:
        await DBOS.write_stream(key, value)
    return len(values)


@DBOS.workflow()
async def msg_stream_from_step(key: str, values: list[Any]) -> int:
    written = await msg_step_writes_stream(key, values)
    await DBOS.close_stream(key)
    return written


@DBOS.workflow()
async def msg_replayed(source_id: str) -> dict[str, Any]:
    CALLS["msg_replayed"] += 1
    got = await DBOS.recv("t", timeout_seconds=10)  # step 1 (its deadline: 2)
    event = await DBOS.get_event(source_id, "k", timeout_seconds=0.3)  # step 3 (4)
    await DBOS.set_event("mine", got)  # step 5
    await DBOS.write_stream("s", got)  # step 6
    idle = await DBOS.recv("never", timeout_seconds=0.4)  # step 7 (8)
    unset = await DBOS.get_event(source_id, "never", timeout_seconds=0.4)  # step 9 (10)
    gate("replay-reached").set()
    await gate("replay-release").wait()
    after = await DBOS.recv("t", timeout_seconds=30)  # step 11 (12)
    await DBOS.close_stream("s")  # step 13
    return {"got": got, "event": event, "idle": idle, "unset": unset, "after": after}


@DBOS.workflow()
async def msg_wait_durably(kind: str, wait_s: float) -> list[Any]:
    """Wait in recv (topic "durable") or get_event (an event no one sets) for ``wait_s``;
    return what came and when (``time.time()``) the wait ended."""
    REACHED.append(time.time())
    if kind == "recv":
        got = await DBOS.recv("durable", timeout_seconds=wait_s)
    else:
        got = await DBOS.get_event(DBOS.workflow_id or "", "never", timeout_seconds=wait_s)
    return [got, time.time()]


@DBOS.step()
async def msg_counted_step() -> str:
    CALLS["msg_counted_step"] += 1
    return "stepped"


@DBOS.workflow()
async def msg_recv_pair_then_step() -> list[Any]:
    """Two recvs at once (a's message comes later, b's is there), then a step."""
    await gate("pair-go").wait()
    got = await asyncio.gather(
        DBOS.recv("a", timeout_seconds=30),  # step 1, deadline 2
        DBOS.recv("b", timeout_seconds=30),  # step 3, deadline 4
    )
    polled = await DBOS.recv("b", timeout_seconds=0)  # step 5, deadline 6
    stepped = await msg_counted_step()  # step 7
    gate("pair-reached").set()
    await gate("pair-release").wait()
    return [*got, polled, stepped]


@DBOS.workflow()
async def msg_timeout_then_recv() -> list[Any]:
    first = await DBOS.recv("late", timeout_seconds=0.3)  # step 1, deadline 2
    gate("timed-out").set()
    await gate("timed-out-release").wait()
    second = await DBOS.recv("late", timeout_seconds=30)  # step 3, deadline 4
    return [first, second]


@DBOS.workflow()
async def msg_send_unknown_then_block(destination_id: str) -> str:
    try:
        await DBOS.send(destination_id, "late", "t")  # step 1
        outcome = "sent"
    except DBOSNonExistentWorkflowError:
        outcome = "raised"
    gate("unknown-reached").set()
    await gate("unknown-release").wait()
    return outcome


@DBOS.workflow()
async def msg_typed_values(count: int) -> list[Any]:
    received = [await DBOS.recv("typed", timeout_seconds=30) for _ in range(count)]
    for i, value in enumerate(received):
        await DBOS.set_event(f"e{i}", value)
        await DBOS.write_stream("typed", value)
    await DBOS.close_stream("typed")
    return received


@DBOS.workflow()
async def msg_async_aliases(peer_id: str) -> list[Any]:
    await DBOS.send_async(peer_id, "via-alias", "a")
    got = await DBOS.recv_async("a", timeout_seconds=30)
    await DBOS.set_event_async("k", got)
    await DBOS.write_stream_async("s", got)
    await DBOS.close_stream_async("s")
    wid = DBOS.workflow_id
    assert wid is not None
    return [await DBOS.get_event_async(wid, "k", 1), await DBOS.get_all_events_async(wid)]


@DBOS.workflow()
async def msg_client_partner() -> str:
    message = await DBOS.recv("ask", timeout_seconds=10)
    await DBOS.set_event("answer", f"re:{message}")
    return f"done:{message}"


@DBOS.workflow()
async def msg_bad_keys() -> dict[str, str]:
    outcomes: dict[str, str] = {}
    calls: dict[str, Any] = {
        "send": lambda: DBOS.send(DBOS.workflow_id, "m", 5),  # type: ignore[arg-type]
        "recv": lambda: DBOS.recv(5, timeout_seconds=0.1),  # type: ignore[arg-type]
        "set_event": lambda: DBOS.set_event(5, "v"),  # type: ignore[arg-type]
        "get_event": lambda: DBOS.get_event(DBOS.workflow_id, 5, 0.1),  # type: ignore[arg-type]
        "write_stream": lambda: DBOS.write_stream(5, "v"),  # type: ignore[arg-type]
    }
    for name, call in calls.items():
        try:
            await call()
            outcomes[name] = "no error"
        except Exception as exc:
            outcomes[name] = type(exc).__name__
    return outcomes


@DBOS.workflow()
async def msg_send_unserializable(destination_id: str) -> str:
    try:
        await DBOS.send(destination_id, object(), "t")
    except DBOSSerializationError:
        return "raised"
    return "sent"


@DBOS.step()
async def msg_step_recv() -> Any:
    return await DBOS.recv("t", timeout_seconds=0.1)


@DBOS.workflow()
async def msg_recv_in_step() -> str:
    try:
        await msg_step_recv()
    except DBOSException:
        return "raised"
    return "no error"


# -- send / recv ------------------------------------------------------------------------


async def test_recv__topics_fifo_and_independent(dbos: DBOS) -> None:
    recipient = await DBOS.start_workflow(msg_ordering_recipient)
    await msg_ordering_sender(recipient.workflow_id)
    assert await asyncio.wait_for(recipient, timeout=10) == "test2-test1-test3"


async def test_recv__messages_sent_before_recv_wait_in_order(dbos: DBOS) -> None:
    recipient = await DBOS.start_workflow(msg_recv_after_gate, "q", 3)
    for i in range(3):
        await DBOS.send(recipient.workflow_id, i, "q")
    gate("recv-go").set()
    assert await asyncio.wait_for(recipient, timeout=10) == [0, 1, 2]


async def test_recv__timeout_returns_none_and_is_recorded(dbos: DBOS) -> None:
    start = time.monotonic()
    called = time.time()
    handle = await DBOS.start_workflow(msg_recv_timed, 0.5)
    assert await asyncio.wait_for(handle, timeout=30) is None
    assert time.monotonic() - start >= 0.5  # it waited its timeout (a lower bound only)
    # Its outcome at its own step ID, and at the next one the deadline it waited for.
    [outcome, (deadline_id, deadline_name, wake_at)] = await steps_of(handle.workflow_id)
    assert outcome == (1, "DBOS.recv", None)
    assert (deadline_id, deadline_name) == (2, "DBOS.sleep")
    assert called + 0.5 <= wake_at <= time.time()


async def test_recv__outside_workflow_raises(dbos: DBOS) -> None:
    with pytest.raises(DBOSException):
        await DBOS.recv("t", timeout_seconds=0.1)


async def test_recv__inside_step_raises(dbos: DBOS) -> None:
    assert await msg_recv_in_step() == "raised"


async def test_send__unknown_destination_raises_outside_workflow(dbos: DBOS) -> None:
    with pytest.raises(DBOSNonExistentWorkflowError):
        await DBOS.send("msg-no-such-workflow", "hello")


async def test_send__unknown_destination_raises_inside_workflow(dbos: DBOS) -> None:
    assert await msg_send_to_unknown("msg-no-such-workflow") == "raised"


async def test_send__rerun_under_same_id_delivers_once(dbos: DBOS) -> None:
    recipient = await DBOS.start_workflow(msg_recv_then_none, "t")
    for _ in range(2):
        with SetWorkflowID("msg-sender-once"):
            assert await msg_send_one(recipient.workflow_id, "x", "t") == "sent"
    assert await asyncio.wait_for(recipient, timeout=10) == ["x", None]
    assert CALLS["msg_send_one"] == 1


async def test_send__recovered_sender_does_not_send_again(dbos: DBOS, db_url: str) -> None:
    try:
        with SetWorkflowID("msg-recipient"):
            await DBOS.start_workflow(msg_recv_gate_recv, "t")
        with SetWorkflowID("msg-sender"):
            await DBOS.start_workflow(msg_send_then_block, "msg-recipient")
        await asyncio.wait_for(gate("sender-reached").wait(), timeout=30)
        gate("sender-reached").clear()
        await relaunch(db_url)
        # The recovered sender replays its send step, then blocks again.
        await asyncio.wait_for(gate("sender-reached").wait(), timeout=30)
        gate("sender-release").set()
        gate("second-recv").set()
        sender = await DBOS.retrieve_workflow("msg-sender")
        assert await asyncio.wait_for(sender, timeout=30) == "done"
        recipient = await DBOS.retrieve_workflow("msg-recipient")
        assert await asyncio.wait_for(recipient, timeout=15) == ["once", None]
        assert await steps_of("msg-sender") == [(1, "DBOS.send", None)]
    finally:
        await DBOS.destroy()


async def test_send__idempotency_key_delivers_once(dbos: DBOS) -> None:
    recipient = await DBOS.start_workflow(msg_recv_then_none, "t")
    await DBOS.send(recipient.workflow_id, "a", "t", idempotency_key="k1")
    await DBOS.send(recipient.workflow_id, "a", "t", idempotency_key="k1")
    assert await asyncio.wait_for(recipient, timeout=10) == ["a", None]


async def test_send__idempotency_key_after_consumed_delivers_once(dbos: DBOS) -> None:
    recipient = await DBOS.start_workflow(msg_recv_gate_recv, "t")
    await DBOS.send(recipient.workflow_id, "a", "t", idempotency_key="k1")
    got = await DBOS.get_event(recipient.workflow_id, "got-first", timeout_seconds=30)
    assert got == "a"
    await DBOS.send(recipient.workflow_id, "a", "t", idempotency_key="k1")
    gate("second-recv").set()
    assert await asyncio.wait_for(recipient, timeout=10) == ["a", None]


async def test_send__different_idempotency_keys_both_deliver(dbos: DBOS) -> None:
    recipient = await DBOS.start_workflow(msg_recv_n, "t", 2, 30)
    await DBOS.send(recipient.workflow_id, "a", "t", idempotency_key="k1")
    await DBOS.send(recipient.workflow_id, "b", "t", idempotency_key="k2")
    assert await asyncio.wait_for(recipient, timeout=10) == ["a", "b"]


async def test_recv__thousand_waiters_all_receive(dbos: DBOS) -> None:
    count = 1000
    handles = [await DBOS.start_workflow(msg_many_waiter) for _ in range(count)]
    await asyncio.sleep(0.2)  # let them reach recv
    await asyncio.gather(*(DBOS.send(h.workflow_id, i, "go") for i, h in enumerate(handles)))
    results = await asyncio.wait_for(asyncio.gather(*handles), timeout=30)
    assert results == list(range(count))


# -- events -------------------------------------------------------------------------------


async def test_get_event__waiter_wakes_promptly_same_process(
    dbos: DBOS, backend: str, notified_only: None
) -> None:
    """The write wakes the waiter: with the re-check timer at an hour, nothing else can
    within the test's bound (on both backends a write in this process wakes its local
    waiters directly)."""

    async def waiter() -> Any:
        return await DBOS.get_event("msg-setter", "ready", timeout_seconds=60)

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0.5)  # long enough to be waiting
    assert not task.done()
    with SetWorkflowID("msg-setter"):
        assert await msg_set_event("ready", {"v": 1}) == "set"
    assert await asyncio.wait_for(task, timeout=WOKEN_WITHIN) == {"v": 1}


SETTER_SCRIPT = """
import asyncio
import json
import sys
import time

from dbos_async import DBOS, SetWorkflowID


@DBOS.workflow()
async def msg_remote_setter(key: str, value: str) -> dict:
    before = time.time()
    await DBOS.set_event(key, value)
    return {"before": before, "after": time.time()}


async def main() -> None:
    url, workflow_id, key, value = sys.argv[1:5]
    DBOS({"database_url": url, "application_version": "remote", "executor_id": "remote"})
    await DBOS.launch()
    try:
        with SetWorkflowID(workflow_id):
            times = await msg_remote_setter(key, value)
    finally:
        await DBOS.destroy()
    print(json.dumps(times))


asyncio.run(main())
"""


async def test_get_event__waiter_wakes_promptly_cross_process(
    dbos: DBOS, db_url: str, backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Postgres another process's write wakes the waiter by NOTIFY: the re-check
    timer is set to an hour, so nothing else can within the bound. On SQLite (no
    notifications across processes) the waiter's timer finds the value."""
    if backend == "postgres":
        only_notifications_wake(monkeypatch)
    script = tmp_path / "setter.py"
    script.write_text(textwrap.dedent(SETTER_SCRIPT))

    async def waiter() -> tuple[Any, float]:
        value = await DBOS.get_event("msg-remote", "ready", timeout_seconds=60)
        return value, time.time()

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0.1)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        db_url,
        "msg-remote",
        "ready",
        "remote-value",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
    times = json.loads(out.decode().strip().splitlines()[-1])
    value, woke_at = await asyncio.wait_for(task, timeout=WOKEN_WITHIN)
    assert value == "remote-value"
    assert woke_at >= times["before"]


async def test_get_event__timeout_returns_none(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(msg_set_events, [["a", 1]])
    await handle
    start = time.monotonic()
    waiting = DBOS.get_event(handle.workflow_id, "missing", timeout_seconds=0.3)
    assert await asyncio.wait_for(waiting, timeout=30) is None
    assert time.monotonic() - start >= 0.3  # it waited its timeout (a lower bound only)


async def test_get_event__inside_workflow_is_recorded(dbos: DBOS) -> None:
    source = await DBOS.start_workflow(msg_set_events, [["k", [1, "two"]]])
    await source
    reader = await DBOS.start_workflow(msg_get_event_in_workflow, source.workflow_id, "k", 1)
    assert await reader == [1, "two"]
    # Found at once: no deadline recorded at step 2 (its ID is taken all the same).
    assert await steps_of(reader.workflow_id) == [(1, "DBOS.getEvent", [1, "two"])]


async def test_get_all_events__latest_value_per_key(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(
        msg_set_events, [["a", 1], ["b", {"x": [None]}], ["a", 3], ["c", None]]
    )
    await handle
    assert await DBOS.get_all_events(handle.workflow_id) == {"a": 3, "b": {"x": [None]}, "c": None}
    assert await DBOS.get_event(handle.workflow_id, "a", timeout_seconds=0) == 3


async def test_set_event__from_step(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(msg_event_from_step, 42)
    assert await handle == "ok"
    assert await DBOS.get_event(handle.workflow_id, "from_step", timeout_seconds=1) == 42


async def test_set_event__outside_workflow_raises(dbos: DBOS) -> None:
    with pytest.raises(DBOSException):
        await DBOS.set_event("k", "v")


# -- streams -------------------------------------------------------------------------------

STREAM_VALUES: list[Any] = [
    None,
    {"a": [1, {"b": None}], "c": "d"},
    [1, "x", [True, False, None], {}],
    "text",
    "",
    "ünïcødé",
    0,
    -7,
    2.5,
    True,
    False,
    [],
    {"nested": {"deeper": {"deepest": [1, 2, 3]}}},
]


async def read_all(workflow_id: str, key: str, within: float = 30.0) -> list[Any]:
    """The whole stream; fails if it has not ended ``within`` seconds."""
    async with asyncio.timeout(within):
        return [value async for value in DBOS.read_stream(workflow_id, key)]


async def test_stream__values_round_trip_for_live_and_late_readers(dbos: DBOS) -> None:
    writer = await DBOS.start_workflow(msg_stream_writer, "s", STREAM_VALUES, True)
    live = asyncio.create_task(read_all(writer.workflow_id, "s"))
    await asyncio.sleep(0.2)
    assert not live.done()
    gate("writer-go").set()
    assert await asyncio.wait_for(writer, timeout=10) == len(STREAM_VALUES)
    assert await asyncio.wait_for(live, timeout=30) == STREAM_VALUES
    late = await read_all(writer.workflow_id, "s")
    assert late == STREAM_VALUES


async def test_stream__keys_are_independent(dbos: DBOS) -> None:
    writer = await DBOS.start_workflow(msg_stream_writer, "s1", [1, 2], True)
    gate("writer-go").set()
    await writer
    assert await read_all(writer.workflow_id, "s1") == [1, 2]
    assert await read_all(writer.workflow_id, "s2") == []


async def test_stream__reader_ends_at_close_while_writer_runs(dbos: DBOS) -> None:
    writer = await DBOS.start_workflow(msg_stream_close_then_block, "s", ["a", "b"])
    values = await read_all(writer.workflow_id, "s")
    assert values == ["a", "b"]
    status = await writer.get_status()
    assert status.status == WorkflowStatusString.PENDING
    gate("after-close").set()
    assert await asyncio.wait_for(writer, timeout=30) == "done"


async def test_stream__reader_ends_when_writer_ends_without_close(dbos: DBOS) -> None:
    writer = await DBOS.start_workflow(msg_stream_write_then_block, "s", [1, None, 3])
    live = asyncio.create_task(read_all(writer.workflow_id, "s"))
    await asyncio.sleep(0.3)
    assert not live.done()
    gate("end-writer").set()
    assert await asyncio.wait_for(writer, timeout=30) == "done"
    assert await asyncio.wait_for(live, timeout=30) == [1, None, 3]
    late = await read_all(writer.workflow_id, "s")
    assert late == [1, None, 3]


async def test_stream__write_from_step(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(msg_stream_from_step, "s", ["x", {"y": 1}])
    assert await handle == 2
    assert await read_all(handle.workflow_id, "s") == [
        "x",
        {"y": 1},
    ]


async def test_stream__unknown_workflow_raises(dbos: DBOS) -> None:
    with pytest.raises(DBOSNonExistentWorkflowError):
        await read_all("msg-no-such-workflow", "s")


# -- replay -----------------------------------------------------------------------------


async def test_replay__recorded_communication_returns_at_once(
    dbos: DBOS, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    try:
        with SetWorkflowID("msg-replayed"):
            await DBOS.start_workflow(msg_replayed, "msg-replay-source")
        await DBOS.send("msg-replayed", "first", "t")
        await asyncio.wait_for(gate("replay-reached").wait(), timeout=10)
        # While it is blocked, what it already read changes: none of it may be read again.
        await DBOS.send("msg-replayed", "second", "t")
        with SetWorkflowID("msg-replay-source"):
            await msg_set_events([["k", "late"]])
        steps_before = await steps_of("msg-replayed")
        # (The first recv may have found its message at once, and recorded no deadline.)
        assert [s for s in steps_before if s[1] != "DBOS.sleep"] == [
            (1, "DBOS.recv", "first"),
            (3, "DBOS.getEvent", None),
            (5, "DBOS.setEvent", None),
            (6, "DBOS.writeStream", None),
            (7, "DBOS.recv", None),
            (9, "DBOS.getEvent", None),
        ]
        # The three calls that timed out waited, so they recorded their deadlines.
        assert {4, 8, 10} <= {s[0] for s in steps_before if s[1] == "DBOS.sleep"} <= {2, 4, 8, 10}

        gate("replay-reached").clear()
        await DBOS.destroy()
        # Every wait of recv/get_event/read_stream asks the notifier how long to wait
        # before re-checking: count those requests while the recorded steps replay.
        waits: list[int] = []
        real_interval = Notifier.poll_interval

        def counting_interval(self: Notifier, attempt: int) -> float:
            waits.append(attempt)
            return real_interval(self, attempt)

        monkeypatch.setattr(Notifier, "poll_interval", counting_interval)
        DBOS({"database_url": db_url, "application_version": "test"})
        await DBOS.launch()
        await asyncio.wait_for(gate("replay-reached").wait(), timeout=30)
        assert waits == [], "a recorded recv or get_event waited again on replay"
        monkeypatch.setattr(Notifier, "poll_interval", real_interval)
        assert CALLS["msg_replayed"] == 2
        assert await steps_of("msg-replayed") == steps_before

        gate("replay-release").set()
        handle = await DBOS.retrieve_workflow("msg-replayed")
        result = await asyncio.wait_for(handle, timeout=10)
        assert result == {
            "got": "first",
            "event": None,
            "idle": None,
            "unset": None,
            "after": "second",
        }
        assert await DBOS.get_event("msg-replayed", "mine", timeout_seconds=0) == "first"
        assert await read_all("msg-replayed", "s") == ["first"]
    finally:
        await DBOS.destroy()


async def test_replay__failed_send_to_unknown_workflow_fails_again(dbos: DBOS, db_url: str) -> None:
    """A send that raised DBOSNonExistentWorkflowError is a step: its error is part of the
    workflow's history, so re-execution raises it again even if the ID exists by then."""
    try:
        with SetWorkflowID("msg-unknown-sender"):
            await DBOS.start_workflow(msg_send_unknown_then_block, "msg-late-destination")
        await asyncio.wait_for(gate("unknown-reached").wait(), timeout=30)
        with SetWorkflowID("msg-late-destination"):
            assert await msg_recv_n("t", 0, 0) == []
        gate("unknown-reached").clear()
        await relaunch(db_url)
        await asyncio.wait_for(gate("unknown-reached").wait(), timeout=30)
        gate("unknown-release").set()
        handle = await DBOS.retrieve_workflow("msg-unknown-sender")
        assert await asyncio.wait_for(handle, timeout=30) == "raised"
    finally:
        await DBOS.destroy()


# -- durable timeouts ---------------------------------------------------------------------


async def recorded_deadline(workflow_id: str, within: float = 30.0) -> float:
    """The wake-up time a waiting call of the workflow recorded at step 2, once it has."""
    deadline = time.monotonic() + within
    while True:
        for step_id, name, output in await steps_of(workflow_id):
            if step_id == 2:
                assert name == "DBOS.sleep"
                return float(output)
        assert time.monotonic() < deadline, "no deadline was recorded"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("kind", ["recv", "get_event"])
async def test_timeout__recovered_wait_waits_only_what_remains(
    dbos: DBOS, db_url: str, kind: str
) -> None:
    """A workflow stopped while it waits (here by a restart of its runtime) and recovered
    waits until the deadline its first run recorded, not its whole timeout again."""
    wait_s = 3.0
    try:
        with SetWorkflowID("msg-durable"):
            await DBOS.start_workflow(msg_wait_durably, kind, wait_s)
        wake_at = await recorded_deadline("msg-durable")
        assert REACHED[0] + wait_s <= wake_at < REACHED[0] + wait_s + 5
        await asyncio.sleep(1.5)
        await relaunch(db_url)
        handle = await DBOS.retrieve_workflow("msg-durable")
        got, woke_at = await asyncio.wait_for(handle, timeout=30)
        assert got is None
        assert len(REACHED) == 2, "the workflow was not recovered"
        assert woke_at >= wake_at  # not before the first run's deadline ...
        # ... and not the whole timeout again from where the recovered run reached it.
        assert woke_at < REACHED[1] + wait_s, (REACHED, wake_at, woke_at)
        name = "DBOS.recv" if kind == "recv" else "DBOS.getEvent"
        assert await steps_of("msg-durable") == [(1, name, None), (2, "DBOS.sleep", wake_at)]
    finally:
        await DBOS.destroy()


@pytest.mark.parametrize("kind", ["recv", "get_event"])
async def test_timeout__recovered_after_its_deadline_gives_up_at_once(
    dbos: DBOS, db_url: str, kind: str
) -> None:
    wait_s = 2.0
    try:
        with SetWorkflowID("msg-durable"):
            await DBOS.start_workflow(msg_wait_durably, kind, wait_s)
        wake_at = await recorded_deadline("msg-durable")
        await DBOS.destroy()  # it stops waiting, and records nothing more
        await asyncio.sleep(max(0.0, wake_at - time.time()) + 0.2)
        await relaunch(db_url)
        handle = await DBOS.retrieve_workflow("msg-durable")
        got, woke_at = await asyncio.wait_for(handle, timeout=30)
        assert got is None
        assert len(REACHED) == 2, "the workflow was not recovered"
        assert woke_at - REACHED[1] < wait_s / 2, (REACHED, woke_at)
    finally:
        await DBOS.destroy()


async def test_timeout__recv_recovered_after_its_deadline_takes_a_message_that_came(
    dbos: DBOS, db_url: str
) -> None:
    """A recv whose deadline passed while nothing ran has recorded no outcome yet: a
    message sent meanwhile is there when it looks again, and it takes it (as DBOS)."""
    try:
        with SetWorkflowID("msg-durable"):
            await DBOS.start_workflow(msg_wait_durably, "recv", 2.0)
        wake_at = await recorded_deadline("msg-durable")
        await DBOS.destroy()
        await asyncio.sleep(max(0.0, wake_at - time.time()) + 0.2)
        async with DBOSClient(db_url) as client:
            await client.send("msg-durable", "while down", "durable")
        await relaunch(db_url)
        handle = await DBOS.retrieve_workflow("msg-durable")
        got, woke_at = await asyncio.wait_for(handle, timeout=30)
        assert got == "while down"
        assert woke_at - REACHED[1] < 1.0  # it took it at once
    finally:
        await DBOS.destroy()


async def test_timeout__recorded_timeout_replays_none_and_leaves_the_message(
    dbos: DBOS, db_url: str
) -> None:
    """A recv that timed out recorded None: a re-run gets None again, at once, and the
    message sent after it stays for the next recv."""
    try:
        with SetWorkflowID("msg-timed-out"):
            await DBOS.start_workflow(msg_timeout_then_recv)
        await asyncio.wait_for(gate("timed-out").wait(), timeout=30)
        await DBOS.send("msg-timed-out", "after", "late")
        gate("timed-out").clear()
        await relaunch(db_url)
        await asyncio.wait_for(gate("timed-out").wait(), timeout=30)
        gate("timed-out-release").set()
        handle = await DBOS.retrieve_workflow("msg-timed-out")
        assert await asyncio.wait_for(handle, timeout=30) == [None, "after"]
        steps = await steps_of("msg-timed-out")
        # The second recv found its message at once: no deadline at step 4.
        assert [(i, name) for i, name, _ in steps] == [
            (1, "DBOS.recv"),
            (2, "DBOS.sleep"),
            (3, "DBOS.recv"),
        ]
        assert steps[2][2] == "after"
    finally:
        await DBOS.destroy()


async def test_timeout__every_call_takes_its_deadline_step_even_if_unused(
    dbos: DBOS, db_url: str
) -> None:
    """Step IDs do not depend on whether a call had to wait: a recv that found its
    message at once (or has no timeout) leaves its deadline's ID unused, and a recovered
    run, which replays without looking, numbers its steps the same."""
    try:
        with SetWorkflowID("msg-pair"):
            await DBOS.start_workflow(msg_recv_pair_then_step)
        for message in ("b1", "b2"):
            await DBOS.send("msg-pair", message, "b")
        gate("pair-go").set()
        await recorded_deadline("msg-pair")  # recv a waits ...
        await DBOS.send("msg-pair", "a1", "a")  # ... until this comes
        await asyncio.wait_for(gate("pair-reached").wait(), timeout=30)
        # (The step's row may still be committing: the workflow goes on while it does.)
        steps = await steps_of("msg-pair")
        for _ in range(300):
            if steps and steps[-1][0] == 7:
                break
            await asyncio.sleep(0.1)
            steps = await steps_of("msg-pair")
        assert [(i, name, out) for i, name, out in steps if i != 2] == [
            (1, "DBOS.recv", "a1"),
            (3, "DBOS.recv", "b1"),
            (5, "DBOS.recv", "b2"),
            (7, "msg_counted_step", "stepped"),
        ]
        assert steps[1][:2] == (2, "DBOS.sleep")

        gate("pair-reached").clear()
        await relaunch(db_url)
        gate("pair-go").set()
        await asyncio.wait_for(gate("pair-reached").wait(), timeout=30)
        gate("pair-release").set()
        handle = await DBOS.retrieve_workflow("msg-pair")
        assert await asyncio.wait_for(handle, timeout=30) == ["a1", "b1", "b2", "stepped"]
        assert CALLS["msg_counted_step"] == 1  # replayed at step 7, not run again
        assert await steps_of("msg-pair") == steps
    finally:
        await DBOS.destroy()


# -- DBOSClient ---------------------------------------------------------------------------


async def test_client__send_get_event_retrieve_and_status(dbos: DBOS, db_url: str) -> None:
    with SetWorkflowID("msg-partner"):
        await DBOS.start_workflow(msg_client_partner)
    client = DBOSClient(db_url)
    try:
        await client.send("msg-partner", "hi", "ask")
        assert await client.get_event("msg-partner", "answer", timeout_seconds=30) == "re:hi"
        handle = await client.retrieve_workflow("msg-partner")
        assert await asyncio.wait_for(handle, timeout=30) == "done:hi"
        status = await client.get_workflow_status("msg-partner")
        assert status is not None
        assert status.status == WorkflowStatusString.SUCCESS
        assert status.output == "done:hi"
        assert await client.get_workflow_status("msg-unknown") is None
        with pytest.raises(DBOSNonExistentWorkflowError):
            await client.send("msg-unknown", "hi")
        with pytest.raises(DBOSNonExistentWorkflowError):
            await client.retrieve_workflow("msg-unknown")
    finally:
        await client.destroy()


async def test_client__get_event_waiter_wakes_on_set(
    dbos: DBOS, db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client has its own connections: on Postgres it is woken by NOTIFY (the
    re-check timer is set to an hour, so nothing else can within the bound); on SQLite
    its timer finds the value."""
    if backend == "postgres":
        only_notifications_wake(monkeypatch)
    client = DBOSClient(db_url)

    async def waiter() -> Any:
        return await client.get_event("msg-setter", "ready", timeout_seconds=60)

    try:
        task = asyncio.create_task(waiter())
        await asyncio.sleep(0.5)
        assert not task.done()
        with SetWorkflowID("msg-setter"):
            await msg_set_event("ready", 7)
        assert await asyncio.wait_for(task, timeout=WOKEN_WITHIN) == 7
    finally:
        await client.destroy()


async def test_client__get_all_events_latest_value_per_key(dbos: DBOS, db_url: str) -> None:
    with SetWorkflowID("msg-client-events"):
        await msg_set_events([["a", 1], ["b", {"x": [None]}], ["a", 3], ["c", None]])
    with SetWorkflowID("msg-client-no-events"):
        await msg_set_events([])
    async with DBOSClient(db_url) as client:
        assert await client.get_all_events("msg-client-events") == {
            "a": 3,
            "b": {"x": [None]},
            "c": None,
        }
        assert await client.get_all_events_async("msg-client-no-events") == {}
        # What the client reads is what DBOS reads.
        assert await client.get_all_events("msg-client-events") == await DBOS.get_all_events(
            "msg-client-events"
        )


async def test_client__read_stream_live_and_late(dbos: DBOS, db_url: str) -> None:
    """A client reads a stream while it is written (its own connections: woken by NOTIFY
    on Postgres, by its timer on SQLite) and after; it ends at the close."""
    writer = await DBOS.start_workflow(msg_stream_writer, "s", STREAM_VALUES, True)
    async with DBOSClient(db_url) as client:
        live = asyncio.create_task(read_all_client(client, writer.workflow_id, "s"))
        await asyncio.sleep(0.2)
        assert not live.done()  # nothing written yet, the stream is open
        gate("writer-go").set()
        assert await asyncio.wait_for(writer, timeout=30) == len(STREAM_VALUES)
        assert await live == STREAM_VALUES
        assert await read_all_client(client, writer.workflow_id, "s") == STREAM_VALUES
        # The writer has ended: a stream it never wrote is empty, and ends.
        assert await read_all_client(client, writer.workflow_id, "other") == []
        with pytest.raises(DBOSNonExistentWorkflowError):
            await read_all_client(client, "msg-no-such-workflow", "s")


async def read_all_client(client: DBOSClient, workflow_id: str, key: str) -> list[Any]:
    async with asyncio.timeout(30):
        return [v async for v in client.read_stream(workflow_id, key)]


async def test_client__send_idempotency_key_delivers_once(dbos: DBOS, db_url: str) -> None:
    recipient = await DBOS.start_workflow(msg_recv_then_none, "t")
    client = DBOSClient(db_url)
    try:
        await client.send(recipient.workflow_id, "c", "t", idempotency_key="ck")
        await client.send(recipient.workflow_id, "c", "t", idempotency_key="ck")
    finally:
        await client.destroy()
    assert await asyncio.wait_for(recipient, timeout=10) == ["c", None]


async def pg_connections(db_url: str) -> int:
    """Connections to the test database other than the one asking."""
    conn = await asyncpg.connect(db_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return count
    finally:
        await conn.close()


async def test_client__destroy_closes_connections(db_url: str, backend: str) -> None:
    # The database exists (a client never creates one): launch once to make it.
    DBOS({"database_url": db_url, "application_version": "test"})
    await DBOS.launch()
    await DBOS.destroy()
    client = DBOSClient(db_url)
    assert await client.get_workflow_status("msg-unknown") is None
    if backend == "postgres":
        assert await pg_connections(db_url) > 0
    await client.destroy()
    if backend == "postgres":
        for _ in range(40):  # a closed connection leaves pg_stat_activity shortly after
            if await pg_connections(db_url) == 0:
                break
            await asyncio.sleep(0.05)
        assert await pg_connections(db_url) == 0
    await client.destroy()  # a second destroy is a no-op


async def test_client__missing_database_is_an_error_not_created(
    db_url: str, backend: str, tmp_path: Path
) -> None:
    if backend == "sqlite":
        missing_url = f"sqlite:///{tmp_path / 'never-created.sqlite'}"
    else:
        missing_url = db_url.rsplit("/", 1)[0] + "/dbos_test_never_created"
    client = DBOSClient(missing_url, connect_timeout=2)
    try:
        with pytest.raises(DBOSConnectionError, match="does not exist"):
            await client.list_workflows()
    finally:
        await client.destroy()
    if backend == "sqlite":
        assert not (tmp_path / "never-created.sqlite").exists()


# -- value types and spellings ------------------------------------------------------------


async def test_values__tagged_types_round_trip_through_messages_events_streams(
    dbos: DBOS,
) -> None:
    values: list[Any] = [
        dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        decimal.Decimal("3.14159265358979323846"),
        b"\x00\xffbytes",
        (1, "two", None),
        {"when": dt.date(2024, 1, 2), "ids": {3, 4}},
    ]
    handle = await DBOS.start_workflow(msg_typed_values, len(values))
    for value in values:
        await DBOS.send(handle.workflow_id, value, "typed")
    assert await asyncio.wait_for(handle, timeout=10) == values
    events = await DBOS.get_all_events(handle.workflow_id)
    assert events == {f"e{i}": v for i, v in enumerate(values)}
    assert await DBOS.get_event(handle.workflow_id, "e0", timeout_seconds=0) == values[0]
    assert await read_all(handle.workflow_id, "typed") == values


async def test_async_aliases__communication_calls(dbos: DBOS, db_url: str) -> None:
    # The workflow sends to itself, then receives that message.
    with SetWorkflowID("msg-alias"):
        alias = await DBOS.start_workflow(msg_async_aliases, "msg-alias")
    assert await asyncio.wait_for(alias, timeout=10) == ["via-alias", {"k": "via-alias"}]
    assert [v async for v in DBOS.read_stream_async("msg-alias", "s")] == ["via-alias"]
    client = DBOSClient(db_url)
    try:
        await client.send_async("msg-alias", "x")
        assert await client.get_event_async("msg-alias", "k", 1) == "via-alias"
        status = await client.get_workflow_status_async("msg-alias")
        assert status is not None
        assert status.status == WorkflowStatusString.SUCCESS
        other = await client.retrieve_workflow_async("msg-alias")
        assert await other == ["via-alias", {"k": "via-alias"}]
    finally:
        await client.destroy_async()


# -- bad input --------------------------------------------------------------------------


async def test_send__unserializable_message_raises_and_stores_nothing(dbos: DBOS) -> None:
    recipient = await DBOS.start_workflow(msg_recv_n, "t", 1, 0.5)
    with pytest.raises(DBOSSerializationError):
        await DBOS.send(recipient.workflow_id, object(), "t")
    assert await msg_send_unserializable(recipient.workflow_id) == "raised"
    assert await asyncio.wait_for(recipient, timeout=10) == [None]


async def test_bad_key__non_string_topic_or_key_raises_type_error(dbos: DBOS) -> None:
    outcomes = await msg_bad_keys()
    assert outcomes == {
        "send": "TypeError",
        "recv": "TypeError",
        "set_event": "TypeError",
        "get_event": "TypeError",
        "write_stream": "TypeError",
    }
    target = await DBOS.start_workflow(msg_set_events, [])
    await target
    with pytest.raises(TypeError):
        await DBOS.send(target.workflow_id, "m", 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await DBOS.get_event(target.workflow_id, 5, 0.1)  # type: ignore[arg-type]
