"""What other processes ask of this one: stop a workflow they cancelled, and give up one
another process took over.

Woken by notifications where the backend has them (Postgres LISTEN); both are also
checked on a timer, so a missed notification (or SQLite, which has none) costs latency,
never correctness. (Workflows a client resumes or forks are taken over by ``_recovery``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ._runtime import Runtime

__all__ = ["RequestWatcher"]

log = logging.getLogger("dbos_async")


class RequestWatcher:
    """Stops the runs of this process whose workflow another process cancelled or took
    over."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        self._rt.notifier.hooks["cancel"] = self._on_cancel
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="dbos_async request watcher"
        )

    async def stop(self) -> None:
        if self._rt.notifier.hooks.get("cancel") == self._on_cancel:
            del self._rt.notifier.hooks["cancel"]
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _on_cancel(self, workflow_id: str | None) -> None:
        if workflow_id is None or workflow_id in self._rt.live:
            self._wake.set()

    async def _run(self) -> None:
        interval = 2.0 if self._rt.notifier.push else 1.0
        while True:
            await self._rt.notifier.wait(self._wake, interval)
            live = self._rt.live
            runs = {wid: live.get(wid) for wid in live}
            if not runs:
                continue
            try:
                cancelled = await self._rt.sysdb.cancelled_among(list(runs))
                lost = await self._rt.sysdb.not_owned_among(list(runs))
            except Exception as exc:  # a lost connection: try again next time
                log.warning("could not check for cancelled workflows: %r", exc)
                continue
            # Only the runs that were looked at: one resumed here while the statements ran
            # (the cancelled run stopped, a new one started under its ID) is not cancelled.
            for workflow_id in cancelled:
                if live.get(workflow_id) is runs[workflow_id]:
                    live.stop(workflow_id)
            for workflow_id in lost:
                if workflow_id not in cancelled and live.get(workflow_id) is runs[workflow_id]:
                    live.lose(workflow_id)
