"""Sending many messages at once: ``SendMessage`` and ``DBOS.send_bulk``.

A bulk send stores all its messages in one transaction, or none of them: one unknown
destination fails the whole send. From a workflow's own code it is one step
(``DBOS.send_bulk``): its messages and its step row commit together, so a re-run gets the
recorded outcome back and sends nothing twice. Elsewhere (outside workflows, inside a
step, ``DBOSClient.send_bulk``) it is a plain send.

Idempotency: a message with an ``idempotency_key`` is delivered once per (destination,
topic, key), whoever sends it and however often, as ``DBOS.send`` from outside a workflow
does; one without a key sent from a workflow is keyed by the workflow's step and its place
in the list, so only a re-run of that step could send it again (and a re-run replays).
Two messages of one bulk send may not share a key.
"""

from __future__ import annotations

import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from ._checkpoint import Checkpoint, next_checkpoint
from ._clock import now_ms
from ._errors import DBOSException, DBOSNonExistentWorkflowError
from ._ids import check_text, check_workflow_id
from ._messaging import NULL_TOPIC, idempotent_message_id
from ._runtime import Runtime, get_runtime
from ._txguard import refuse_in_transaction
from .sysdb import MessageRow, notification_key

__all__ = ["SEND_BULK_STEP_NAME", "SendMessage", "send_bulk", "send_bulk_message_rows"]

#: The step a bulk send from a workflow records (DBOS Transact's name).
SEND_BULK_STEP_NAME = "DBOS.send_bulk"


@dataclass
class SendMessage:
    """One message of ``DBOS.send_bulk`` (or ``DBOSClient.send_bulk``): ``message`` for
    the workflow ``destination_id``, on ``topic`` (None: the default topic), delivered
    once per ``idempotency_key`` if one is given."""

    destination_id: str
    """The ID of the workflow that receives the message."""
    message: Any
    """The message (any serializable value)."""
    topic: str | None = None
    """The topic its ``DBOS.recv(topic)`` reads (None: the default topic)."""
    idempotency_key: str | None = None
    """Deliver it once per (destination, topic, key), however often it is sent."""


def _checked(messages: Sequence[SendMessage], what: str) -> list[SendMessage]:
    """The messages, validated before anything is sent (bad input raises, sends nothing)."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TypeError(f"{what} takes a list of SendMessage, got {messages!r}")
    checked = list(messages)
    for message in checked:
        if not isinstance(message, SendMessage):
            raise TypeError(f"{what} takes SendMessage items, got {message!r}")
        check_workflow_id(message.destination_id, "destination_id")
        check_text(message.topic, "topic", optional=True)
        check_text(message.idempotency_key, "idempotency_key", optional=True)
    keys = [m.idempotency_key for m in checked if m.idempotency_key is not None]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise DBOSException(
            f"{what} received duplicate idempotency keys: {', '.join(duplicates)} (each "
            "message of one bulk send needs its own key; nothing was sent)"
        )
    return checked


def send_bulk_message_rows(
    rt: Runtime, messages: Sequence[SendMessage], sender: tuple[str, int] | None
) -> list[MessageRow]:
    """The rows to store: values serialized, IDs made (``sender``: the sending workflow's
    ID and step ID, or None outside workflows)."""
    rows = []
    created = now_ms()
    for index, m in enumerate(messages):
        topic = NULL_TOPIC if m.topic is None else m.topic
        if m.idempotency_key is not None:
            message_uuid = idempotent_message_id(m.destination_id, topic, m.idempotency_key)
        elif sender is not None:
            # (A workflow ID has no U+001F and step IDs and indices are numbers.)
            message_uuid = f"wf\x1f{sender[0]}\x1f{sender[1]}\x1f{index}"
        else:
            message_uuid = str(uuid.uuid4())
        data = rt.codec.dumps(m.message, "message")
        rows.append(MessageRow(message_uuid, m.destination_id, topic, data, created))
    return rows


def _wake(rt: Runtime, rows: Sequence[MessageRow]) -> None:
    for key in {notification_key("msg", r.destination_id, r.topic) for r in rows}:
        rt.notifier.notify(key)


def send_bulk(
    messages: Sequence[SendMessage], *, what: str = "DBOS.send_bulk()"
) -> Coroutine[Any, Any, None]:
    """``DBOS.send_bulk``: from a workflow's own code one step (the step ID is taken now);
    elsewhere a plain send."""
    refuse_in_transaction(what)
    checked = _checked(messages, what)
    checkpoint = next_checkpoint(SEND_BULK_STEP_NAME)
    if checkpoint is None:
        return _send_plain(None, checked)
    return checkpoint.traced(lambda: _send_step(checkpoint, checked))


async def send_bulk_from(rt: Runtime, messages: Sequence[SendMessage]) -> None:
    """A plain bulk send with ``rt`` (``DBOSClient.send_bulk``)."""
    await _send_plain(rt, _checked(messages, "DBOSClient.send_bulk()"))


async def _send_plain(rt: Runtime | None, messages: list[SendMessage]) -> None:
    rt = rt or get_runtime()
    if not messages:
        return
    rows = send_bulk_message_rows(rt, messages, None)
    await rt.sysdb.send_messages(rows, None)
    _wake(rt, rows)


async def _send_step(checkpoint: Checkpoint, messages: list[SendMessage]) -> None:
    rt = get_runtime()
    if checkpoint.recorded:
        checkpoint.replay(rt)
        return
    started = now_ms()
    if not messages:
        await checkpoint.record(rt, "null", None, started)
        return
    rows = send_bulk_message_rows(rt, messages, (checkpoint.state.workflow_id, checkpoint.step_id))
    step = checkpoint.row(output="null", started_ms=started)
    try:
        await rt.sysdb.send_messages(rows, step)
    except DBOSNonExistentWorkflowError as exc:
        # An unknown destination is this step's outcome: a re-run raises it again.
        await checkpoint.record_error(rt, exc, started_ms=started)
        return
    checkpoint.adopt(step)
    _wake(rt, rows)
