"""Workflow communication: messages (send/recv), events, and streams.

Inside a workflow each call is a step: it takes the next step ID when called, and its
write and its step row commit together, so a re-executed workflow gets the recorded
result back and never sends, consumes or publishes twice (``_checkpoint``).

The calls that wait (``recv``, and ``get_event`` in a workflow) take two step IDs: their
own, then one for their deadline, which is recorded there (as DBOS does, a ``DBOS.sleep``
row holding the wake-up time) once the call finds it has to wait. A workflow recovered
after a crash waits only what was left of the first run's timeout (``_wait``).

``DBOSClient`` is never in a workflow: it calls the plain functions (``send_message``,
``wait_for_event``, ``read_all_events``, ``stream_values``) with its runtime; ``DBOS.*``
calls the workflow-facing ones, which are steps only in a workflow's own code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

from ._checkpoint import Checkpoint, next_checkpoint
from ._clock import now_ms
from ._context import current_step, current_workflow
from ._errors import DBOSException, DBOSNonExistentWorkflowError
from ._ids import check_text, check_workflow_id
from ._runtime import Runtime, get_runtime
from ._status import WorkflowStatusString
from ._steps import SLEEP_STEP_NAME
from ._txguard import refuse_in_transaction
from .sysdb import MessageRow, StepRow, notification_key

__all__ = [
    "close_stream",
    "get_all_events",
    "get_event",
    "read_all_events",
    "read_stream",
    "recv",
    "send",
    "send_message",
    "set_event",
    "stream_values",
    "wait_for_event",
    "write_stream",
]

NULL_TOPIC = "__null__topic__"

P = ParamSpec("P")
T = TypeVar("T")


def _check_timeout(timeout_seconds: object) -> float:
    if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, (int, float)):
        raise TypeError(f"timeout_seconds must be a number, got {timeout_seconds!r}")
    return max(0.0, float(timeout_seconds))


def _topic(topic: str | None) -> str:
    check_text(topic, "topic", optional=True)
    return NULL_TOPIC if topic is None else topic


def _writer_id(what: str) -> str:
    """The workflow a set_event / write_stream belongs to (from a workflow or its step)."""
    frame = current_step.get()
    if frame is not None and frame.workflow_id is not None:
        return frame.workflow_id
    state = current_workflow.get()
    if state is None:
        raise DBOSException(f"DBOS.{what}() must be called from within a workflow or step")
    return state.workflow_id


async def _with_runtime(
    call: Callable[Concatenate[Runtime, P], Awaitable[T]], *args: P.args, **kwargs: P.kwargs
) -> T:
    """``call`` with the launched runtime, looked up when awaited (as for every DBOS call)."""
    return await call(get_runtime(), *args, **kwargs)


# -- messages ---------------------------------------------------------------------------


def send(
    destination_id: str, message: Any, topic: str | None = None, idempotency_key: str | None = None
) -> Coroutine[Any, Any, None]:
    """``DBOS.send``: from a workflow's own code a step (sent once, keyed by the step);
    from a step or outside workflows a plain send (``send_message``)."""
    refuse_in_transaction("DBOS.send()")
    check_workflow_id(destination_id, "destination_id")
    topic_key = _topic(topic)
    check_text(idempotency_key, "idempotency_key", optional=True)
    checkpoint = next_checkpoint("DBOS.send")
    if checkpoint is None:
        return _with_runtime(_send, destination_id, message, topic_key, idempotency_key)
    return checkpoint.traced(lambda: _send_step(checkpoint, destination_id, message, topic_key))


def send_message(
    rt: Runtime,
    destination_id: str,
    message: Any,
    topic: str | None = None,
    idempotency_key: str | None = None,
) -> Coroutine[Any, Any, None]:
    """Send a message, not as a step (``DBOSClient.send``): ``idempotency_key`` makes
    repeated sends deliver once."""
    check_workflow_id(destination_id, "destination_id")
    topic_key = _topic(topic)
    check_text(idempotency_key, "idempotency_key", optional=True)
    return _send(rt, destination_id, message, topic_key, idempotency_key)


async def _send(
    rt: Runtime, destination_id: str, message: Any, topic: str, idempotency_key: str | None
) -> None:
    data = rt.codec.dumps(message, "message")
    if idempotency_key is not None:
        message_uuid = idempotent_message_id(destination_id, topic, idempotency_key)
    else:
        message_uuid = str(uuid.uuid4())
    await rt.sysdb.send_message(
        MessageRow(message_uuid, destination_id, topic, data, now_ms()), None
    )
    rt.notifier.notify(notification_key("msg", destination_id, topic))


async def _send_step(checkpoint: Checkpoint, destination_id: str, message: Any, topic: str) -> None:
    rt = get_runtime()
    if checkpoint.recorded:
        checkpoint.replay(rt)
        return
    data = rt.codec.dumps(message, "message")
    step = checkpoint.row(output="null")
    message_uuid = f"wf\x1f{checkpoint.state.workflow_id}\x1f{checkpoint.step_id}"
    row = MessageRow(message_uuid, destination_id, topic, data, now_ms())
    try:
        await rt.sysdb.send_message(row, step)
    except DBOSNonExistentWorkflowError as exc:
        # The missing destination is this step's outcome: a re-run raises it again.
        # (If another run recorded this step first, its outcome stands: sent, or an error.)
        await checkpoint.record_error(rt, exc, started_ms=row.created_at)
        return
    checkpoint.adopt(step)
    rt.notifier.notify(notification_key("msg", destination_id, topic))


def idempotent_message_id(destination_id: str, topic: str, idempotency_key: str) -> str:
    """The ID of the message an idempotent send from outside a workflow delivers: the
    same for the same (destination, topic, key), different for any other triple.

    The destination cannot contain U+001F (a workflow ID has no control characters), but
    topics and keys can, so they are not joined with a separator: their JSON array is
    hashed, which also keeps the ID short enough for any index however long they are. (A
    send from a workflow is keyed ``wf<US>{workflow_id}<US>{step_id}``: a workflow ID has
    no U+001F and a step ID is a number, so that key is unambiguous too.)
    """
    parts = json.dumps([topic, idempotency_key], ensure_ascii=True)
    digest = hashlib.sha256(parts.encode("ascii")).hexdigest()
    return f"key\x1f{destination_id}\x1f{digest}"


def recv(topic: str | None = None, timeout_seconds: float = 60) -> Coroutine[Any, Any, Any]:
    """``DBOS.recv`` (workflows only): consume the oldest unconsumed message on the topic,
    waiting for one up to ``timeout_seconds``; None if none came.

    It takes two step IDs when called: its own, where the outcome is recorded (the
    message, or None once timed out), and the next one, where its deadline is recorded
    as a durable sleep's wake-up time if it has to wait (``_wait``). A recovered run
    waits only what remains of the first run's deadline; a recorded outcome replays,
    and a recorded None never consumes a message that came later."""
    refuse_in_transaction("DBOS.recv()")
    topic_key = _topic(topic)
    timeout = _check_timeout(timeout_seconds)
    checkpoint = next_checkpoint("DBOS.recv")
    if checkpoint is None:
        raise DBOSException(
            "DBOS.recv() must be called from within a workflow, not from a step or outside "
            "workflows"
        )
    deadline = _deadline_checkpoint(checkpoint)
    return checkpoint.traced(lambda: _recv(checkpoint, deadline, topic_key, timeout))


async def _recv(checkpoint: Checkpoint, deadline: Checkpoint, topic: str, seconds: float) -> Any:
    rt = get_runtime()
    if checkpoint.recorded:
        return checkpoint.replay(rt)
    workflow_id = checkpoint.state.workflow_id

    def take() -> Awaitable[StepRow | None]:
        # Consumes a message and records it as this step, atomically; or answers with
        # the row another run of this step recorded first (a message, or None).
        return rt.sysdb.receive_message(workflow_id, topic, checkpoint.row(output="null"))

    got = await _wait(rt, notification_key("msg", workflow_id, topic), take, seconds, deadline)
    if got is not None:
        checkpoint.adopt(got)
        return checkpoint.replay(rt)
    # Timed out. (A message sent from here on stays for the next recv; if another run
    # recorded this step first, its outcome stands.)
    return await checkpoint.record(rt, "null", None)


# -- waiting ----------------------------------------------------------------------------


def _deadline_checkpoint(checkpoint: Checkpoint) -> Checkpoint:
    """The step after a waiting call's own (``recv``, ``get_event`` in a workflow), taken
    at call time with it: where the call's deadline is recorded, named as DBOS names it
    (``DBOS.sleep``, its output the wake-up time as seconds since the epoch).

    The ID is taken whether or not the deadline is ever written there: whether the call
    has to wait is known only once it has looked, after its step IDs are taken, and
    every run of the workflow must number its steps the same way (rule 4 of
    docs/architecture.md)."""
    return Checkpoint(checkpoint.state, checkpoint.state.take_step_id(), SLEEP_STEP_NAME, float)


async def _wait(
    rt: Runtime,
    key: str,
    check: Callable[[], Awaitable[T | None]],
    seconds: float,
    deadline: Checkpoint | None,
) -> T | None:
    """``check()`` until it finds something (returned) or ``seconds`` have passed (None),
    re-checking when ``key`` is notified or the notifier's timer fires.

    With ``deadline`` (a workflow's call) the wait is durable: if the first check finds
    nothing, the wake-up time is recorded at ``deadline`` through the journal (one group
    commit) before waiting, and a run that finds one recorded by an earlier run waits
    only until then: once it has passed, it checks once more and gives up. A call that
    finds what it wants at once, or has a zero timeout, records no deadline."""
    called_at = time.time()
    ends = time.monotonic() + seconds
    notifier = rt.notifier
    with notifier.subscribe(key) as woken:
        found = await check()
        if found is not None:
            return found
        if deadline is not None and (deadline.recorded or seconds > 0):
            ends = await _durable_end(rt, deadline, called_at + seconds)
        attempt = 0
        while (remaining := ends - time.monotonic()) > 0:
            await notifier.wait(woken, min(remaining, notifier.poll_interval(attempt)))
            attempt += 1
            found = await check()
            if found is not None:
                return found
    return None


async def _durable_end(rt: Runtime, deadline: Checkpoint, wake_at: float) -> float:
    """When (on ``time.monotonic``) a workflow's wait ends: at the wake-up time an earlier
    run recorded at ``deadline``; else at ``wake_at`` (seconds since the epoch), recorded
    there now, or at the one another run recorded first, if one did."""
    if deadline.recorded:
        wake_at = float(deadline.replay(rt))
    else:
        output = rt.codec.dumps(wake_at, "wake time")
        wake_at = float(await deadline.record(rt, output, wake_at))
    return time.monotonic() + max(0.0, wake_at - time.time())


# -- events -----------------------------------------------------------------------------


def set_event(key: str, value: Any) -> Coroutine[Any, Any, None]:
    """``DBOS.set_event``: from a workflow's own code a step; from its step a plain write."""
    refuse_in_transaction("DBOS.set_event()")
    check_text(key, "key")
    workflow_id = _writer_id("set_event")
    checkpoint = next_checkpoint("DBOS.setEvent")
    if checkpoint is None:
        return _set_event(None, workflow_id, key, value)
    return checkpoint.traced(lambda: _set_event(checkpoint, workflow_id, key, value))


async def _set_event(checkpoint: Checkpoint | None, workflow_id: str, key: str, value: Any) -> None:
    """Publish the event; with ``checkpoint`` its step row commits with it."""
    rt = get_runtime()
    if checkpoint is not None and checkpoint.recorded:
        checkpoint.replay(rt)
        return
    data = rt.codec.dumps(value, f"value of event {key!r}")
    step = checkpoint.row(output="null") if checkpoint is not None else None
    await rt.sysdb.set_event(workflow_id, key, data, step)
    if checkpoint is not None and step is not None:
        checkpoint.adopt(step)
    rt.notifier.notify(notification_key("event", workflow_id, key))


def get_event(workflow_id: str, key: str, timeout_seconds: float = 60) -> Coroutine[Any, Any, Any]:
    """``DBOS.get_event``: from a workflow's own code a step (a re-run gets the value this
    run got), taking a second step ID for its durable deadline as ``recv`` does; from a
    step or outside workflows a plain wait (``wait_for_event``)."""
    check_workflow_id(workflow_id)
    check_text(key, "key")
    timeout = _check_timeout(timeout_seconds)
    checkpoint = next_checkpoint("DBOS.getEvent")
    if checkpoint is None:
        return _with_runtime(_get_event, workflow_id, key, timeout)
    deadline = _deadline_checkpoint(checkpoint)
    return checkpoint.traced(
        lambda: _get_event_step(checkpoint, deadline, workflow_id, key, timeout)
    )


def wait_for_event(
    rt: Runtime, workflow_id: str, key: str, timeout_seconds: float = 60
) -> Coroutine[Any, Any, Any]:
    """The latest value of a workflow's event, waiting for it up to ``timeout_seconds``
    (None on timeout); not a step (``DBOSClient.get_event``)."""
    check_workflow_id(workflow_id)
    check_text(key, "key")
    return _get_event(rt, workflow_id, key, _check_timeout(timeout_seconds))


async def _get_event(rt: Runtime, workflow_id: str, key: str, seconds: float) -> Any:
    return rt.codec.loads(await _event_data(rt, workflow_id, key, seconds, None))


async def _get_event_step(
    checkpoint: Checkpoint, deadline: Checkpoint, workflow_id: str, key: str, seconds: float
) -> Any:
    rt = get_runtime()
    if checkpoint.recorded:
        return checkpoint.replay(rt)
    data = await _event_data(rt, workflow_id, key, seconds, deadline)
    value = rt.codec.loads(data)
    return await checkpoint.record(rt, data if data is not None else "null", value)


def _event_data(
    rt: Runtime, workflow_id: str, key: str, seconds: float, deadline: Checkpoint | None
) -> Awaitable[str | None]:
    """The event's stored value, waiting up to ``seconds`` for one (durably with
    ``deadline``: ``_wait``); None if none came."""
    return _wait(
        rt,
        notification_key("event", workflow_id, key),
        lambda: rt.sysdb.get_event(workflow_id, key),
        seconds,
        deadline,
    )


def get_all_events(workflow_id: str) -> Coroutine[Any, Any, dict[str, Any]]:
    """``DBOS.get_all_events``: from a workflow's own code a step; elsewhere a plain read
    (``read_all_events``)."""
    check_workflow_id(workflow_id)
    checkpoint = next_checkpoint("DBOS.getAllEvents")
    if checkpoint is None:
        return _with_runtime(_get_all_events, workflow_id)
    return checkpoint.traced(lambda: _get_all_events_step(checkpoint, workflow_id))


def read_all_events(rt: Runtime, workflow_id: str) -> Coroutine[Any, Any, dict[str, Any]]:
    """Every event a workflow has published, by key; not a step
    (``DBOSClient.get_all_events``)."""
    check_workflow_id(workflow_id)
    return _get_all_events(rt, workflow_id)


async def _get_all_events(rt: Runtime, workflow_id: str) -> dict[str, Any]:
    raw = await rt.sysdb.get_all_events(workflow_id)
    return {k: rt.codec.loads(v) for k, v in raw.items()}


async def _get_all_events_step(checkpoint: Checkpoint, workflow_id: str) -> dict[str, Any]:
    rt = get_runtime()
    if checkpoint.recorded:
        recorded: dict[str, Any] = checkpoint.replay(rt)
        return recorded
    events = await _get_all_events(rt, workflow_id)
    result: dict[str, Any] = await checkpoint.record(rt, rt.codec.dumps(events, "events"), events)
    return result


# -- streams ----------------------------------------------------------------------------


def write_stream(key: str, value: Any) -> Coroutine[Any, Any, None]:
    refuse_in_transaction("DBOS.write_stream()")
    check_text(key, "key")
    workflow_id = _writer_id("write_stream")
    checkpoint = next_checkpoint("DBOS.writeStream")
    if checkpoint is None:
        return _write_stream(None, workflow_id, key, value, False)
    return checkpoint.traced(lambda: _write_stream(checkpoint, workflow_id, key, value, False))


def close_stream(key: str) -> Coroutine[Any, Any, None]:
    refuse_in_transaction("DBOS.close_stream()")
    check_text(key, "key")
    workflow_id = _writer_id("close_stream")
    checkpoint = next_checkpoint("DBOS.closeStream")
    if checkpoint is None:
        return _write_stream(None, workflow_id, key, None, True)
    return checkpoint.traced(lambda: _write_stream(checkpoint, workflow_id, key, None, True))


async def _write_stream(
    checkpoint: Checkpoint | None, workflow_id: str, key: str, value: Any, closed: bool
) -> None:
    """Append the value (or the closing mark); with ``checkpoint`` its step row commits
    with it."""
    rt = get_runtime()
    if checkpoint is not None and checkpoint.recorded:
        checkpoint.replay(rt)
        return
    data = None if closed else rt.codec.dumps(value, f"value of stream {key!r}")
    step = checkpoint.row(output="null") if checkpoint is not None else None
    await rt.sysdb.write_stream(workflow_id, key, data, closed, step)
    if checkpoint is not None and step is not None:
        checkpoint.adopt(step)
    rt.notifier.notify(notification_key("stream", workflow_id, key))


async def read_stream(workflow_id: str, key: str) -> AsyncIterator[Any]:
    """``DBOS.read_stream``: ``stream_values`` of the launched runtime."""
    async with contextlib.aclosing(stream_values(get_runtime(), workflow_id, key)) as values:
        async for value in values:
            yield value


async def stream_values(rt: Runtime, workflow_id: str, key: str) -> AsyncGenerator[Any, None]:
    """Every value of the stream, in order, live: it ends when the stream is closed or
    the writing workflow has ended. Not a step (reads are never recorded)."""
    check_workflow_id(workflow_id)
    check_text(key, "key")
    notifier = rt.notifier
    offset = 0
    wake_keys = (
        notification_key("stream", workflow_id, key),
        notification_key("end", workflow_id, ""),
    )
    with notifier.subscribe(*wake_keys) as woken:
        attempt = 0
        writer_done = False
        while True:
            entries = await rt.sysdb.read_stream(workflow_id, key, offset)
            for entry in entries:
                if entry.closed:
                    return
                offset = entry.offset + 1
                yield rt.codec.loads(entry.value)
            if entries:
                attempt = 0
                continue
            if writer_done:
                return  # the writer had ended, and nothing came after: the stream is over
            row = await rt.sysdb.get_workflow(workflow_id)
            if row is None:
                raise DBOSNonExistentWorkflowError(workflow_id)
            if WorkflowStatusString(row.status).is_terminal:
                writer_done = True  # read once more: its last values committed before it ended
                continue
            await notifier.wait(woken, notifier.poll_interval(attempt))
            attempt += 1
