"""Queues declared at run time: registering, reading, listing and deleting them.

``DBOS.register_queue`` and ``DBOSClient.register_queue`` write a queue's row in the
queues table, marked database-backed: the row is the queue's configuration. Every
launched process runs a worker for it (``_queue_worker`` watches the table), and its
limits may change while it runs (``Queue.set_*``). A queue registered before launch is
written at launch, as a queue declared in code is registered then.

``on_conflict`` decides what happens to an existing run-time queue of the same name, as
in DBOS Transact: ``"always_update"`` replaces its settings, ``"never_update"`` leaves
them, and ``"update_if_latest_version"`` (a process's default) replaces them only if this
process runs the latest application version (``_versions``), so that an older version
still running in a rolling deploy does not undo the newer one's settings. A client has
no version: it defaults to ``"always_update"``.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Literal, get_args

from ._clock import now_ms
from ._errors import DBOSException
from ._ids import check_workflow_id
from ._queue import Queue, _RuntimeSource
from ._registry import registry
from ._runtime import Runtime
from ._versions import latest_version_name
from .sysdb import QueueInfo, notification_key

__all__ = [
    "QueueConflictResolution",
    "check_on_conflict",
    "delete_queue",
    "list_queues",
    "register_pending",
    "register_queue",
    "retrieve_queue",
]

log = logging.getLogger("dbos_async")

QueueConflictResolution = Literal["update_if_latest_version", "always_update", "never_update"]
"""What ``register_queue`` does to an existing queue of the same name."""

_CONFLICT_MODES = get_args(QueueConflictResolution)

#: Queues registered before their runtime launched, written when its workers start.
_pending: weakref.WeakKeyDictionary[Runtime, dict[str, tuple[QueueInfo, str]]] = (
    weakref.WeakKeyDictionary()
)


def check_on_conflict(on_conflict: object, *, client: bool) -> None:
    """Refuse an unknown ``on_conflict``, and ``update_if_latest_version`` from a client
    (it has no application version to compare)."""
    if on_conflict not in _CONFLICT_MODES:
        raise ValueError(
            f"on_conflict must be one of {', '.join(map(repr, _CONFLICT_MODES))}, "
            f"got {on_conflict!r}"
        )
    if client and on_conflict == "update_if_latest_version":
        raise DBOSException(
            "a client has no application version, so it cannot register a queue with "
            'on_conflict="update_if_latest_version": use "always_update" or "never_update"'
        )


async def _runs_latest_version(rt: Runtime) -> bool:
    """Whether this process runs the latest application version (True when none is
    recorded; see ``_versions``)."""
    latest = await latest_version_name(rt)
    return latest is None or latest == rt.app_version


async def _write(rt: Runtime, settings: QueueInfo, on_conflict: str) -> None:
    if on_conflict == "update_if_latest_version":
        update = await _runs_latest_version(rt)
    else:
        update = on_conflict == "always_update"
    await rt.sysdb.upsert_queue(settings, now_ms(), update_existing=update)
    # This process's workers hear of it now; others by NOTIFY (Postgres) or their watch.
    rt.notifier.notify(notification_key("queue", settings.name, ""))


async def register_queue(
    rt: Runtime,
    settings: QueueInfo,
    on_conflict: str,
    *,
    source: _RuntimeSource = None,
) -> Queue:
    """Write a run-time queue's row (per ``on_conflict``) and return it as stored. Before
    ``rt`` launches (a process's DBOS only), the row is written at launch."""
    if source is None and not rt.launched:
        _pending.setdefault(rt, {})[settings.name] = (settings, on_conflict)
        return Queue.from_row(settings)
    await _write(rt, settings, on_conflict)
    if source is None and settings.name in registry.queues:
        log.warning(
            "queue %r is declared in code in this process, which runs it with the code's "
            "settings, not the ones registered in the database",
            settings.name,
        )
    queue = await retrieve_queue(rt, settings.name, source=source)
    if queue is None:
        raise DBOSException(f"queue {settings.name!r} was deleted as it was registered")
    return queue


async def register_pending(rt: Runtime) -> None:
    """Write the queues registered before ``rt`` launched."""
    for settings, on_conflict in _pending.pop(rt, {}).values():
        await _write(rt, settings, on_conflict)


async def retrieve_queue(rt: Runtime, name: str, *, source: _RuntimeSource = None) -> Queue | None:
    """The run-time queue ``name`` as stored, or None."""
    check_workflow_id(name, "a queue name")
    info = await rt.sysdb.get_queue(name)
    if info is None or not info.database_backed:
        return None
    return Queue.from_row(info, source)


async def list_queues(rt: Runtime, *, source: _RuntimeSource = None) -> list[Queue]:
    """Every run-time queue, by name (queues declared in code are not listed)."""
    return [Queue.from_row(q, source) for q in await rt.sysdb.list_queues() if q.database_backed]


#: How a launched process stops its own worker of a queue it deletes (set by its queue
#: workers): once the poll in progress, if any, has ended, so nothing enqueued after
#: ``delete_queue`` returns is claimed here.
_local_stoppers: weakref.WeakKeyDictionary[Runtime, Callable[[str], Awaitable[None]]] = (
    weakref.WeakKeyDictionary()
)


def on_local_delete(rt: Runtime, stop_worker: Callable[[str], Awaitable[None]] | None) -> None:
    """Set (or, with None, clear) how ``rt``'s queue workers stop a deleted queue's worker."""
    if stop_worker is None:
        _local_stoppers.pop(rt, None)
    else:
        _local_stoppers[rt] = stop_worker


async def delete_queue(rt: Runtime, name: str) -> None:
    """Delete a run-time queue (nothing if there is none): this process's worker of it has
    stopped when this returns, every other process's stops at its next poll (one in
    progress may still start what it claims), and its ENQUEUED workflows wait until a
    queue of that name is registered again."""
    check_workflow_id(name, "a queue name")
    await rt.sysdb.delete_queue(name)
    stop_worker = _local_stoppers.get(rt)
    if stop_worker is not None:
        await stop_worker(name)
    rt.notifier.notify(notification_key("queue", name, ""))
