"""The runtime behind ``DBOS``: settings, databases, codec, and workflows running here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from ._config import Settings
from ._context import WorkflowState
from ._errors import DBOSException
from ._journal import Journal
from ._notifier import Notifier
from ._registry import registry
from ._serialization import Codec
from .sysdb import ApplicationDatabase, SystemDatabase, open_databases

__all__ = ["Runtime", "Service", "get_runtime", "set_runtime"]

log = logging.getLogger("dbos_async")


class Service(Protocol):
    """A background part of the runtime, stopped before the databases close."""

    async def stop(self) -> None: ...


class Runtime:
    """One process's runtime: created by ``DBOS(config)``, connected by ``launch()``."""

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
        self.launched = False
        self.recovered = False
        #: Outcome futures of the workflows running in this process, by workflow ID.
        self.running: dict[str, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: The state and task of each workflow running here, by workflow ID.
        self.active: dict[str, tuple[WorkflowState, asyncio.Task[None]]] = {}
        self._connect_lock = asyncio.Lock()
        self.cancel_watcher: Any = None
        #: Called with each workflow launched here and its task (queue accounting).
        self.launch_listeners: list[Callable[[WorkflowState, asyncio.Task[None]], None]] = []
        #: Background services (queue workers, schedulers): stopped first on close.
        self.services: list[Service] = []

    async def connect(self) -> None:
        """Connect and migrate; concurrent calls connect once."""
        async with self._connect_lock:
            if not self.launched:
                await self._connect()

    async def _connect(self) -> None:
        await self.sysdb.connect()
        try:
            await self.appdb.connect()
        except BaseException:
            await self.sysdb.close()
            raise
        if not self.app_version:
            self.app_version = registry.source_hash()
        self.journal.start()
        await self.notifier.start()
        from ._management import CancelWatcher  # it needs the runner, which needs us

        self.cancel_watcher = CancelWatcher(self)
        self.cancel_watcher.start()
        self.launched = True

    def spawn(self, coro: Any) -> asyncio.Task[None]:
        """Run a workflow body as a task this runtime owns (and cancels on destroy)."""
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        """Stop every workflow task (they stay PENDING, to be recovered) and disconnect."""
        self.launched = False
        for service in reversed(self.services):
            try:
                await service.stop()
            except Exception as exc:
                log.warning("could not stop %r: %r", service, exc)
        self.services.clear()
        self.launch_listeners.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        for future in self.running.values():
            future.cancel()
        self.running.clear()
        self.active.clear()
        if self.cancel_watcher is not None:
            await self.cancel_watcher.stop()
        await self.journal.close()
        try:
            await self.notifier.stop()
        finally:
            await self._close_databases()

    async def _close_databases(self) -> None:
        try:
            await self.appdb.close()
        finally:
            await self.sysdb.close()


_current: Runtime | None = None


def get_runtime() -> Runtime:
    """The launched runtime, or a clear error when there is none."""
    if _current is None:
        raise DBOSException("no DBOS instance: create DBOS(config) and await DBOS.launch() first")
    if not _current.launched:
        raise DBOSException("DBOS is not launched: await DBOS.launch() first")
    return _current


def current_runtime() -> Runtime | None:
    return _current


def set_runtime(runtime: Runtime | None) -> None:
    global _current
    _current = runtime
