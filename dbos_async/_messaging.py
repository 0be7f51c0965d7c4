"""Workflow communication: messages (send/recv), events, and streams.

Inside a workflow each call is a step: it takes the next step ID when called, and its
write and its step row commit together, so a re-executed workflow gets the recorded
result back and never sends, consumes or publishes twice.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from ._context import WorkflowState, current_step, current_workflow
from ._errors import DBOSException, DBOSNonExistentWorkflowError
from ._ids import check_text, check_workflow_id
from ._runtime import Runtime, get_runtime
from ._status import WorkflowStatusString
from ._steps import record_step_outcome, replay_step
from ._txguard import refuse_in_transaction
from .sysdb import MessageRow, StepRow, notification_key

__all__ = [
    "close_stream",
    "get_all_events",
    "get_event",
    "read_stream",
    "recv",
    "send",
    "set_event",
    "write_stream",
]

NULL_TOPIC = "__null__topic__"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _check_timeout(timeout_seconds: object) -> float:
    if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, (int, float)):
        raise TypeError(f"timeout_seconds must be a number, got {timeout_seconds!r}")
    return max(0.0, float(timeout_seconds))


def _topic(topic: str | None) -> str:
    check_text(topic, "topic", optional=True)
    return NULL_TOPIC if topic is None else topic


def _workflow_step(as_step: bool) -> tuple[WorkflowState, int] | None:
    """Inside a workflow's own code (not a step): the workflow and the step ID taken now."""
    if not as_step:
        return None
    state = current_workflow.get()
    if state is None or current_step.get() is not None:
        return None
    return state, state.take_step_id()


def _writer_id(what: str) -> str:
    """The workflow a set_event / write_stream belongs to (from a workflow or its step)."""
    frame = current_step.get()
    if frame is not None and frame.workflow_id is not None:
        return frame.workflow_id
    state = current_workflow.get()
    if state is None:
        raise DBOSException(f"DBOS.{what}() can only be called from a workflow or its steps")
    return state.workflow_id


def _step_row(placed: tuple[WorkflowState, int], name: str, output: str) -> StepRow:
    state, step_id = placed
    now = _now_ms()
    return StepRow(
        state.workflow_id,
        step_id,
        name,
        output=output,
        started_at_epoch_ms=now,
        completed_at_epoch_ms=now,
    )


# -- messages ---------------------------------------------------------------------------


def send(
    destination_id: str,
    message: Any,
    topic: str | None = None,
    idempotency_key: str | None = None,
    *,
    runtime: Runtime | None = None,
) -> Coroutine[Any, Any, None]:
    if runtime is None:
        refuse_in_transaction("DBOS.send()")
    check_workflow_id(destination_id, "destination_id")
    topic_key = _topic(topic)
    check_text(idempotency_key, "idempotency_key", optional=True)
    placed = _workflow_step(as_step=runtime is None)
    return _send(runtime, placed, destination_id, message, topic_key, idempotency_key)


async def _send(
    runtime: Runtime | None,
    placed: tuple[WorkflowState, int] | None,
    destination_id: str,
    message: Any,
    topic: str,
    idempotency_key: str | None,
) -> None:
    rt = runtime or get_runtime()
    name = "DBOS.send"
    if placed is not None and placed[1] in placed[0].recorded:
        replay_step(rt, placed[0], placed[1], name, Any)
        return
    data = rt.codec.dumps(message, "message")
    step = _step_row(placed, name, "null") if placed else None
    if placed is not None:
        message_uuid = f"wf\x1f{placed[0].workflow_id}\x1f{placed[1]}"
    elif idempotency_key is not None:
        message_uuid = idempotent_message_id(destination_id, topic, idempotency_key)
    else:
        message_uuid = str(uuid.uuid4())
    row = MessageRow(message_uuid, destination_id, topic, data, _now_ms())
    try:
        await rt.sysdb.send_message(row, step)
    except DBOSNonExistentWorkflowError as exc:
        if placed is None:
            raise
        # The missing destination is this step's outcome: a re-run raises it again.
        failed = StepRow(
            placed[0].workflow_id,
            placed[1],
            name,
            error=rt.codec.dump_error(exc),
            started_at_epoch_ms=row.created_at,
            completed_at_epoch_ms=_now_ms(),
        )
        await record_step_outcome(rt, placed[0], failed, None)
        raise
    if placed is not None and step is not None:
        placed[0].recorded[step.function_id] = step
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
    refuse_in_transaction("DBOS.recv()")
    topic_key = _topic(topic)
    timeout = _check_timeout(timeout_seconds)
    placed = _workflow_step(as_step=True)
    if placed is None:
        raise DBOSException(
            "DBOS.recv() can only be called from a workflow, not from a step or outside workflows"
        )
    return _recv(placed, topic_key, timeout)


async def _recv(placed: tuple[WorkflowState, int], topic: str, seconds: float) -> Any:
    rt = get_runtime()
    state, step_id = placed
    name = "DBOS.recv"
    if step_id in state.recorded:
        return replay_step(rt, state, step_id, name, Any)
    deadline = time.monotonic() + seconds
    notifier = rt.notifier
    with notifier.subscribe(notification_key("msg", state.workflow_id, topic)) as woken:
        attempt = 0
        while True:
            step = _step_row(placed, name, "null")
            got = await rt.sysdb.receive_message(state.workflow_id, topic, step)
            if got is not None:
                # (The stored row, if another run of this step recorded it first.)
                state.recorded[step_id] = got
                return replay_step(rt, state, step_id, name, Any)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await notifier.wait(woken, min(remaining, notifier.poll_interval(attempt)))
            attempt += 1
    return await record_step_outcome(rt, state, _step_row(placed, name, "null"), None)


# -- events -----------------------------------------------------------------------------


def set_event(key: str, value: Any) -> Coroutine[Any, Any, None]:
    refuse_in_transaction("DBOS.set_event()")
    check_text(key, "key")
    workflow_id = _writer_id("set_event")
    placed = _workflow_step(as_step=True)
    return _set_event(placed, workflow_id, key, value)


async def _set_event(
    placed: tuple[WorkflowState, int] | None, workflow_id: str, key: str, value: Any
) -> None:
    rt = get_runtime()
    name = "DBOS.setEvent"
    if placed is not None and placed[1] in placed[0].recorded:
        replay_step(rt, placed[0], placed[1], name, Any)
        return
    data = rt.codec.dumps(value, f"value of event {key!r}")
    step = _step_row(placed, name, "null") if placed else None
    await rt.sysdb.set_event(workflow_id, key, data, step)
    if placed is not None and step is not None:
        placed[0].recorded[step.function_id] = step
    rt.notifier.notify(notification_key("event", workflow_id, key))


def get_event(
    workflow_id: str, key: str, timeout_seconds: float = 60, *, runtime: Runtime | None = None
) -> Coroutine[Any, Any, Any]:
    check_workflow_id(workflow_id)
    check_text(key, "key")
    timeout = _check_timeout(timeout_seconds)
    placed = _workflow_step(as_step=runtime is None)
    return _get_event(runtime, placed, workflow_id, key, timeout)


async def _get_event(
    runtime: Runtime | None,
    placed: tuple[WorkflowState, int] | None,
    workflow_id: str,
    key: str,
    seconds: float,
) -> Any:
    rt = runtime or get_runtime()
    name = "DBOS.getEvent"
    if placed is not None and placed[1] in placed[0].recorded:
        return replay_step(rt, placed[0], placed[1], name, Any)
    deadline = time.monotonic() + seconds
    notifier = rt.notifier
    data: str | None = None
    with notifier.subscribe(notification_key("event", workflow_id, key)) as woken:
        attempt = 0
        while True:
            data = await rt.sysdb.get_event(workflow_id, key)
            remaining = deadline - time.monotonic()
            if data is not None or remaining <= 0:
                break
            await notifier.wait(woken, min(remaining, notifier.poll_interval(attempt)))
            attempt += 1
    value = rt.codec.loads(data)
    if placed is None:
        return value
    row = _step_row(placed, name, data if data is not None else "null")
    return await record_step_outcome(rt, placed[0], row, value)


def get_all_events(
    workflow_id: str, *, runtime: Runtime | None = None
) -> Coroutine[Any, Any, dict[str, Any]]:
    check_workflow_id(workflow_id)
    placed = _workflow_step(as_step=runtime is None)
    return _get_all_events(runtime, placed, workflow_id)


async def _get_all_events(
    runtime: Runtime | None, placed: tuple[WorkflowState, int] | None, workflow_id: str
) -> dict[str, Any]:
    rt = runtime or get_runtime()
    name = "DBOS.getAllEvents"
    if placed is not None and placed[1] in placed[0].recorded:
        recorded: dict[str, Any] = replay_step(rt, placed[0], placed[1], name, Any)
        return recorded
    raw = await rt.sysdb.get_all_events(workflow_id)
    events = {k: rt.codec.loads(v) for k, v in raw.items()}
    if placed is None:
        return events
    row = _step_row(placed, name, rt.codec.dumps(events, "events"))
    result: dict[str, Any] = await record_step_outcome(rt, placed[0], row, events)
    return result


# -- streams ----------------------------------------------------------------------------


def write_stream(key: str, value: Any) -> Coroutine[Any, Any, None]:
    refuse_in_transaction("DBOS.write_stream()")
    check_text(key, "key")
    workflow_id = _writer_id("write_stream")
    return _write_stream(_workflow_step(as_step=True), workflow_id, key, value, False)


def close_stream(key: str) -> Coroutine[Any, Any, None]:
    refuse_in_transaction("DBOS.close_stream()")
    check_text(key, "key")
    workflow_id = _writer_id("close_stream")
    return _write_stream(_workflow_step(as_step=True), workflow_id, key, None, True)


async def _write_stream(
    placed: tuple[WorkflowState, int] | None,
    workflow_id: str,
    key: str,
    value: Any,
    closed: bool,
) -> None:
    rt = get_runtime()
    name = "DBOS.closeStream" if closed else "DBOS.writeStream"
    if placed is not None and placed[1] in placed[0].recorded:
        replay_step(rt, placed[0], placed[1], name, Any)
        return
    data = None if closed else rt.codec.dumps(value, f"value of stream {key!r}")
    step = _step_row(placed, name, "null") if placed else None
    await rt.sysdb.write_stream(workflow_id, key, data, closed, step)
    if placed is not None and step is not None:
        placed[0].recorded[step.function_id] = step
    rt.notifier.notify(notification_key("stream", workflow_id, key))


async def read_stream(
    workflow_id: str, key: str, *, runtime: Runtime | None = None
) -> AsyncIterator[Any]:
    """Every value of the stream, in order, live: it ends when the stream is closed or
    the writing workflow has ended."""
    check_workflow_id(workflow_id)
    check_text(key, "key")
    rt = runtime or get_runtime()
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
