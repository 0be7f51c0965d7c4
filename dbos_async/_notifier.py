"""Waking waiters (``recv``, ``get_event``, ``read_stream``) when what they wait for is
written. Writes in this process wake local waiters directly; on Postgres, writes in other
processes arrive through LISTEN/NOTIFY. Every waiter also re-checks on a timer, so a
missed notification (or SQLite, which has none) costs latency, never correctness. A
waiting workflow holds no connection and no thread: only an ``asyncio.Event``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

from .sysdb import MessagingDatabase, parse_notification_key

__all__ = ["Notifier"]


class Notifier:
    def __init__(self, db: MessagingDatabase) -> None:
        self._db = db
        self._waiters: dict[str, set[asyncio.Event]] = {}
        #: True when another process's writes are pushed to us (Postgres LISTEN).
        self.push = False
        #: Called with a workflow ID when an announcement of their kind ("cancel", "run")
        #: arrives; with None after a reconnect, when announcements may have been missed.
        self.hooks: dict[str, Callable[[str | None], None]] = {}

    async def start(self) -> None:
        self.push = await self._db.listen(self.notify)

    async def stop(self) -> None:
        await self._db.unlisten()
        self.push = False

    def notify(self, key: str) -> None:
        """Wake the waiters on ``key`` and call the hook of its kind; "*" (after a
        reconnect, when anything may have been missed) wakes every waiter and hook."""
        if key == "*":
            for each_hook in self.hooks.values():
                each_hook(None)
            for events in self._waiters.values():
                for event in events:
                    event.set()
            return
        parsed = parse_notification_key(key)
        if parsed is not None:
            hook = self.hooks.get(parsed[0])
            if hook is not None:
                hook(parsed[1])
        for event in self._waiters.get(key, ()):
            event.set()

    @contextlib.contextmanager
    def subscribe(self, *keys: str) -> Iterator[asyncio.Event]:
        """An event set when any of ``keys`` is notified. Subscribe before checking the
        database, so a write between the check and the wait is not missed."""
        event = asyncio.Event()
        for key in keys:
            self._waiters.setdefault(key, set()).add(event)
        try:
            yield event
        finally:
            for key in keys:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del self._waiters[key]

    def poll_interval(self, attempt: int) -> float:
        """How long to wait before re-checking without a notification: long with push
        notifications (a safety net), short and growing without."""
        if self.push:
            return 2.0
        return min(0.02 * 2.0 ** min(attempt, 10), 1.0)

    async def wait(self, event: asyncio.Event, seconds: float) -> None:
        """Wait for ``event`` at most ``seconds``, then clear it."""
        # Not asyncio.wait_for: on Python 3.11 it drops a cancellation that arrives as
        # the event is set, and the waiting loop would never stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await event.wait()
        event.clear()
