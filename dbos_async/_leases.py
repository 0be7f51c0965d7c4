"""This process's lease: what makes it the owner of the workflows it runs.

A launched process registers a lease in the system database (its ``process_id``, executor
ID, host name, PID, application version) and renews it several times per
``executor_lease_seconds``. While the lease is live no other process takes its workflows;
once it has expired (the process died, or was paused or cut off from the database for
longer than a lease) a live process of the same application version takes them over
(``_recovery``), and anything this process still tries to write for them is refused
(fencing, in ``sysdb``). At close the lease is ended, so live processes take over at once
what this one leaves running.

A process of this machine (and PID namespace: see ``_host``) whose lease is live but
whose PID is gone (a crash, then a restart) has its lease ended here at once, so a
restarted process recovers its predecessor's workflows within seconds, not a lease later.

The lease costs each process one small update every third of a lease (and one read of
the lease table), never a round trip on a workflow's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from . import _host
from ._runtime import Runtime
from .sysdb import LeaseHolder

__all__ = ["Lease"]

log = logging.getLogger("dbos_async")

#: Renewals per lease period: a lease survives two lost or late renewals.
RENEWALS_PER_LEASE = 3


class Lease:
    """The lease of one launched runtime: registered at start, renewed in the background,
    ended at stop."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._lease_ms = int(rt.settings.executor_lease_seconds * 1000)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @property
    def renew_interval(self) -> float:
        return self._rt.settings.executor_lease_seconds / RENEWALS_PER_LEASE

    async def start(self) -> None:
        rt = self._rt
        # From here on this process's writes are fenced on its ownership.
        rt.sysdb.owner = rt.appdb.owner = rt.process_id
        pid = os.getpid()
        self._holder = LeaseHolder(
            process_id=rt.process_id,
            executor_id=rt.executor_id,
            hostname=_host.hostname(),
            pid=pid,
            process_tag=_host.process_tag(pid),
            application_version=rt.app_version,
        )
        await rt.sysdb.register_lease(self._holder, self._lease_ms)
        await self.end_dead_neighbours()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="dbos_async lease")

    async def stop(self) -> None:
        if self._task is not None:
            # A renewal under way finishes first (cancelled mid-statement, it could
            # still commit after the lease ends below, and extend it); one stuck on a
            # database that is away is cancelled after a while.
            self._stopping.set()
            done, _ = await asyncio.wait({self._task}, timeout=5.0)
            if not done:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        # What is still PENDING here is handed over now, not a lease from now.
        try:
            await self._rt.sysdb.end_lease(self._rt.process_id)
        except Exception as exc:
            log.warning("could not end this process's lease (it expires by itself): %r", exc)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.renew_interval):
                    await self._stopping.wait()
            if self._stopping.is_set():
                return
            try:
                if not await self._rt.sysdb.renew_lease(self._rt.process_id, self._lease_ms):
                    await self._rt.sysdb.register_lease(self._holder, self._lease_ms)
                await self.end_dead_neighbours()
            except Exception as exc:  # the database is away: try again next time
                log.warning("could not renew this process's lease: %r", exc)

    async def end_dead_neighbours(self) -> None:
        """End the live leases of processes of this machine whose PID is gone."""
        here = self._holder.hostname
        for executor in await self._rt.sysdb.list_executors():
            if (
                executor.alive
                and executor.hostname == here
                and executor.process_id != self._rt.process_id
                and not _host.pid_alive(executor.pid, executor.process_tag)
            ):
                log.info(
                    "process %d of executor %r on this machine is gone; its workflows "
                    "are taken over now",
                    executor.pid,
                    executor.executor_id,
                )
                await self._rt.sysdb.end_lease(executor.process_id)
