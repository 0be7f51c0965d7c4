"""What waiters wait on: notification keys, and the Postgres channel that carries them.

The one definition of a key's shape. Postgres statements that wake a queue's workers build
the key from a row's queue name inside SQL: ``_queries`` renders that SQL expression from
``notification_key`` itself, and a test runs it on Postgres against this function.
"""

from __future__ import annotations

__all__ = ["CHANNEL", "SEPARATOR", "notification_key", "parse_notification_key"]

#: The Postgres ``LISTEN``/``NOTIFY`` channel; each notification's payload is one key.
CHANNEL = "dbos_async_notify"

#: The separator of a key's parts (ASCII Unit Separator, U+001F).
SEPARATOR = "\x1f"


def notification_key(kind: str, workflow_id: str, key: str) -> str:
    """What waiters wait on: ``f"{kind}<US>{workflow_id}<US>{key}"`` (US is U+001F).
    ``kind`` is "msg" (key: the topic), "event" or "stream" (key: the event or stream
    key), "end", "cancel" or "run" (no key), "schedule" (a schedule changed: no workflow
    ID, no key), or "queue" (a queue name in the workflow ID's place, no key; Postgres
    statements build that one in SQL, from this function: see the module docstring).

    Unambiguous: kinds are fixed words and workflow IDs and queue names have no control
    characters (``dbos_async._ids``), so the first two separators are always these two,
    and the key, which may contain anything, is the rest (``parse_notification_key``)."""
    return f"{kind}{SEPARATOR}{workflow_id}{SEPARATOR}{key}"


def parse_notification_key(value: str) -> tuple[str, str, str] | None:
    """``(kind, workflow_id, key)`` of a key ``notification_key`` made; None if ``value``
    is not one."""
    kind, sep, rest = value.partition(SEPARATOR)
    workflow_id, sep2, key = rest.partition(SEPARATOR)
    if not sep or not sep2:
        return None
    return kind, workflow_id, key
