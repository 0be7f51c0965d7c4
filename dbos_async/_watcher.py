"""What other processes ask of this one: stop a workflow they cancelled, and run one a
client resumed or forked for this executor.

Woken by notifications where the backend has them (Postgres LISTEN); cancellations are
also checked on a timer, so a missed notification (or SQLite, which has none) costs
latency, never correctness. A run request that is missed leaves the workflow PENDING on
this executor, so it runs at the executor's next launch (recovery).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ._clock import now_ms
from ._registry import registry
from ._runner import launch_recorded
from ._runtime import Runtime
from ._status import WorkflowStatusString
from .sysdb import RecoveryRequest

__all__ = ["RequestWatcher"]

log = logging.getLogger("dbos_async")


class RequestWatcher:
    """Stops workflows of this process that another process cancelled, and runs those a
    client resumed or forked for it."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        self._rt.notifier.hooks["cancel"] = self._on_cancel
        self._rt.notifier.hooks["run"] = self._on_run_request
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name="dbos_async request watcher"
        )

    async def stop(self) -> None:
        for kind, hook in (("cancel", self._on_cancel), ("run", self._on_run_request)):
            if self._rt.notifier.hooks.get(kind) == hook:
                del self._rt.notifier.hooks[kind]
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _on_cancel(self, workflow_id: str | None) -> None:
        if workflow_id is None or workflow_id in self._rt.live:
            self._wake.set()

    def _on_run_request(self, workflow_id: str | None) -> None:
        if workflow_id is not None:
            self._rt.spawn(self._take_over(workflow_id))

    async def _take_over(self, workflow_id: str) -> None:
        try:
            await take_over(self._rt, workflow_id)
        except Exception as exc:  # it stays PENDING for this executor's next launch
            log.warning("could not take over workflow %s: %r", workflow_id, exc)

    async def _run(self) -> None:
        interval = 2.0 if self._rt.notifier.push else 1.0
        while True:
            await self._rt.notifier.wait(self._wake, interval)
            running = list(self._rt.live)
            if not running:
                continue
            try:
                cancelled = await self._rt.sysdb.cancelled_among(running)
            except Exception as exc:  # a lost connection: try again next time
                log.warning("could not check for cancelled workflows: %r", exc)
                continue
            for workflow_id in cancelled:
                self._rt.live.stop(workflow_id)


async def take_over(rt: Runtime, workflow_id: str) -> None:
    """Run a workflow that a client resumed or forked for this executor: claimed with the
    recovery claim, so of several processes sharing an executor ID only one runs it. A
    cancelled run of it still finishing a step here ends first."""
    previous = rt.live.get(workflow_id)
    if previous is not None:
        if not previous.state.cancelled:
            return
        await rt.live.ended(workflow_id)
    row = await rt.sysdb.get_workflow(workflow_id)
    if (
        row is None
        or row.status != WorkflowStatusString.PENDING
        or row.executor_id != rt.executor_id
        or row.application_version != rt.app_version
        or workflow_id in rt.live
    ):
        return
    info = registry.workflows.get(row.name)
    if info is None:
        return
    limit = info.workflow_options.max_recovery_attempts
    claims = await rt.sysdb.claim_for_recovery(
        [RecoveryRequest(workflow_id, row.recovery_attempts, limit)], now_ms()
    )
    for claim in claims:
        if not claim.exceeded and workflow_id not in rt.live:
            launch_recorded(rt, claim.row, await rt.sysdb.load_steps(workflow_id))
