"""The runtime behind ``DBOS`` and ``DBOSClient``: settings, databases, codec, journal,
notifier, the workflows running here, and the one place that starts and stops them.

What a launch starts, and in which order, is listed in ``_lifecycle``; the runtime runs
that list: ``start(parts)`` starts each part in order (and, if one fails, stops those
already started, in reverse), ``close()`` stops them in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from ._clock import now_ms
from ._config import Settings
from ._errors import DBOSException
from ._journal import Journal
from ._live import LiveWorkflows
from ._notifier import Notifier
from ._registry import registry
from ._serialization import Codec
from ._tracing import install_log_fields
from .sysdb import ApplicationDatabase, SystemDatabase, VersionRow, open_databases

__all__ = ["Part", "Runtime", "current_runtime", "get_runtime", "set_runtime"]

log = logging.getLogger("dbos_async")


@dataclass(frozen=True)
class Part:
    """One part of a running runtime (the journal, the queue workers...): started in
    order at launch, stopped in reverse order at close."""

    name: str
    start: Callable[[], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]


class Runtime:
    """One process's runtime (or a client's): created by ``DBOS(config)`` or
    ``DBOSClient(...)``, started by ``start()`` with the parts ``_lifecycle`` lists."""

    def __init__(self, settings: Settings, *, create_missing: bool = True) -> None:
        self.settings = settings
        self.codec = Codec(settings.serializer)
        self.sysdb: SystemDatabase
        self.appdb: ApplicationDatabase
        self.sysdb, self.appdb = open_databases(
            settings.system_database_url,
            settings.database_url,
            pool_size=settings.pool_size,
            connect_timeout=settings.connect_timeout,
            create_missing=create_missing,
        )
        self.journal = Journal(self.sysdb)
        self.notifier = Notifier(self.sysdb)
        self.executor_id = settings.executor_id
        self.app_version = settings.application_version or ""
        #: This runtime's identity in the fleet: the key of its lease, and the owner of
        #: the workflows it runs (one per launch; see ``_leases``).
        self.process_id = uuid.uuid4().hex
        #: The workflows running in this process.
        self.live = LiveWorkflows()
        #: True while workflows may run here: from the start of the workflows part (before
        #: recovery runs any) until close.
        self.launched = False
        #: The queues this process runs workers for (``DBOS.listen_queues``); None: all.
        self.listening_queues: frozenset[str] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._parts: list[Part] = []
        self._lock = asyncio.Lock()
        #: How long a closing runtime lets its running workflows go on (``close``).
        self._grace = 0.0

    # -- the parts every runtime has ----------------------------------------------------

    def databases(self, *, system_only: bool = False) -> Part:
        """Connect (creating or migrating the schema) and, last of all, disconnect."""

        async def connect() -> None:
            await self.sysdb.connect()
            if system_only:
                return
            try:
                await self.appdb.connect()
            except BaseException:
                await self.sysdb.close()
                raise
            if not self.app_version:
                self.app_version = registry.source_hash()
            try:
                await self._register_version()
            except BaseException:
                await self.appdb.close()
                await self.sysdb.close()
                raise

        async def close() -> None:
            try:
                if not system_only:
                    await self.appdb.close()
            finally:
                await self.sysdb.close()

        return Part("databases", connect, close)

    async def _register_version(self) -> None:
        """Record this process's application version (at its first launch it becomes the
        latest), and warn when a newer one is the latest: queued workflows that name no
        version are then left to that version's processes."""
        now = now_ms()
        await self.sysdb.register_version(
            VersionRow(uuid.uuid4().hex, self.app_version, now, now, self.settings.name)
        )
        versions = await self.sysdb.list_versions()
        if versions and versions[0].version_name != self.app_version:
            log.warning(
                "application version %r is not the latest; the latest is %r",
                self.app_version,
                versions[0].version_name,
            )

    def journal_part(self) -> Part:
        async def start() -> None:
            self.journal.start()

        return Part("journal", start, self.journal.close)

    def notifier_part(self) -> Part:
        return Part("notifier", self.notifier.start, self.notifier.stop)

    def workflows_part(self) -> Part:
        """From its start workflows may run here; at close, once the running ones have
        ended or the grace period ``close`` was given is over, every workflow task and
        background task of this runtime is cancelled (the workflows stay PENDING, for a
        live process to take over) and their awaiters here are told."""

        async def open_() -> None:
            install_log_fields()
            self.launched = True

        return Part("workflows", open_, self._stop_tasks)

    # -- starting and stopping --------------------------------------------------------

    async def start(self, parts: Sequence[Part]) -> None:
        """Start ``parts`` in order; concurrent or repeated calls start them once. If one
        fails, those started are stopped in reverse order and the error is raised."""
        async with self._lock:
            if self._parts:
                return
            started: list[Part] = []
            try:
                for part in parts:
                    await part.start()
                    started.append(part)
            except BaseException:
                await self._stop(started)
                raise
            self._parts = started

    async def close(self, grace: float = 0.0) -> None:
        """Stop every part in reverse order, each even if one before it failed; then
        raise the first failure, if any. With a ``grace`` period (seconds), the parts that
        take new work stop first and the running workflows may go on that long (they may
        start children meanwhile) before they are cancelled."""
        async with self._lock:  # (a start under way finishes first, then is undone)
            self._grace = grace
            if grace <= 0:
                self.launched = False
            parts, self._parts = self._parts, []
            await self._stop(parts, raise_first=True)

    @staticmethod
    async def _stop(parts: Sequence[Part], *, raise_first: bool = False) -> None:
        first: Exception | None = None
        for part in reversed(parts):
            try:
                await part.stop()
            except Exception as exc:
                log.warning("could not stop the %s: %r", part.name, exc)
                first = first or exc
        if raise_first and first is not None:
            raise first

    def spawn(
        self, coro: Coroutine[Any, Any, Any], on_done: Callable[[], None] | None = None
    ) -> asyncio.Task[None]:
        """Run a workflow body or a background job as a task this runtime owns (and
        cancels at close); ``on_done`` is called when the task ends, even if it was
        cancelled before it started."""
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        if on_done is None:
            task.add_done_callback(self._tasks.discard)
        else:  # (one callback, not two: each costs the event loop a turn)

            def done(ended: asyncio.Task[None]) -> None:
                self._tasks.discard(ended)
                on_done()

            task.add_done_callback(done)
        return task

    async def _stop_tasks(self) -> None:
        if self._grace > 0 and self.launched and not await self.live.drained(self._grace):
            log.info(
                "%d workflows still running after %.1fs; handing them over",
                len(self.live),
                self._grace,
            )
        self.launched = False
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self.live.abandon()


_current: Runtime | None = None


def get_runtime() -> Runtime:
    """The launched runtime, or a clear error when there is none."""
    if _current is None:
        raise DBOSException(
            "no DBOS instance: create DBOS(config) and await DBOS.launch() first. "
            "In a FastAPI or Starlette app, pass lifespan=dbos_async.asgi.lifespan(config) "
            "to the app (FastAPI(lifespan=...)): it launches DBOS at startup and destroys it "
            "at shutdown. In tests, use TestClient as a context manager "
            "(with TestClient(app) as client: ...), since lifespans run only then"
        )
    if not _current.launched:
        raise DBOSException("DBOS is not launched: await DBOS.launch() first")
    return _current


def current_runtime() -> Runtime | None:
    return _current


def set_runtime(runtime: Runtime | None) -> None:
    global _current
    _current = runtime
