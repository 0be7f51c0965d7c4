"""Taking over the workflows no live process runs: at launch (recovery) and from then on.

A PENDING workflow is orphaned when no live process runs it: its owner's lease has
expired (the process died, or was paused or cut off from the database past its lease),
it has no owner (its process stopped and handed it back, or a client resumed or forked
it), or this process owns it but nothing here runs it (a claim whose reply was lost).
Every live process looks for the orphans of its application version at launch, then
every few seconds, and at once when another process's lease ends (a Postgres
notification). One conditional update per chunk gives each to exactly one process,
counting a recovery attempt (past ``max_recovery_attempts`` the workflow is marked
MAX_RECOVERY_ATTEMPTS_EXCEEDED instead); the winner loads the recorded steps of the chunk
at once and runs each workflow again, its recorded steps returning their outputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any

from ._classes import stored_receiver
from ._clock import now_ms
from ._errors import DBOSException
from ._handle import WorkflowHandle
from ._registry import registry
from ._runner import launch_recorded
from ._runtime import Runtime
from ._status import WorkflowStatusString
from .sysdb import RecoveryRequest, WorkflowRow

__all__ = ["Takeover", "take_over_orphans"]

log = logging.getLogger("dbos_async")

_CHUNK = 500

#: Per runtime, the workflows already reported as lacking their class or instance here.
_reported: weakref.WeakKeyDictionary[Runtime, set[str]] = weakref.WeakKeyDictionary()


def _runnable(rt: Runtime, row: WorkflowRow) -> bool:
    """Whether this process has what the workflow runs as: its function, and for a method
    the class or instance registered under the names on its row. One without is left
    PENDING, for a process that has them (or this one, once they are registered)."""
    info = registry.workflows.get(row.name)
    if info is None:
        return False
    _, missing = stored_receiver(info, row.class_name, row.config_name)
    if missing is None:
        return True
    reported = _reported.setdefault(rt, set())
    if row.workflow_id not in reported:
        reported.add(row.workflow_id)
        log.warning("cannot recover workflow %s (%s) here: %s", row.workflow_id, row.name, missing)
    return False


async def take_over_orphans(rt: Runtime) -> list[WorkflowHandle[Any]]:
    """Take over and run the orphaned workflows of this application version (those of
    the workflow functions registered here), a chunk at a time; handles to those this
    process won."""
    lease_ms = int(rt.settings.executor_lease_seconds * 1000)
    names = list(registry.workflows)
    handles: list[WorkflowHandle[Any]] = []
    while True:
        rows = await rt.sysdb.orphaned_workflows(
            rt.app_version, names, now_ms() - lease_ms, list(rt.live), _CHUNK
        )
        requests = [
            RecoveryRequest(
                row.workflow_id,
                row.recovery_attempts,
                registry.workflows[row.name].workflow_options.max_recovery_attempts,
                row.owner,
            )
            for row in rows
            if row.workflow_id not in rt.live and _runnable(rt, row)
        ]
        if not requests:
            return handles
        claims = await rt.sysdb.take_over(requests, rt.executor_id, now_ms())
        for claim in claims:
            if claim.exceeded:
                log.warning(
                    "workflow %s exceeded its %d recovery attempts and is now %s",
                    claim.row.workflow_id,
                    registry.workflows[claim.row.name].workflow_options.max_recovery_attempts,
                    WorkflowStatusString.MAX_RECOVERY_ATTEMPTS_EXCEEDED.value,
                )
        live = [c.row for c in claims if not c.exceeded]
        steps = await rt.sysdb.load_steps_many([r.workflow_id for r in live]) if live else {}
        for row in live:
            try:
                launch_recorded(rt, row, steps.get(row.workflow_id, []))
            except DBOSException as exc:
                log.error("cannot run workflow %s: %s", row.workflow_id, exc)
                continue
            handles.append(WorkflowHandle(rt, row.workflow_id))
        if len(rows) < _CHUNK or not claims:
            return handles


class Takeover:
    """Looks for orphaned workflows at launch and then in the background: every third of
    a lease (at most a second apart without push notifications, so a client's resume or
    fork on SQLite is run within that), and at once when another process's lease ends or
    a client asks."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._rt.notifier.hooks["run"] = self._on_request
        await take_over_orphans(self._rt)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="dbos_async takeover")

    async def stop(self) -> None:
        if self._rt.notifier.hooks.get("run") == self._on_request:
            del self._rt.notifier.hooks["run"]
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _on_request(self, workflow_id: str | None) -> None:
        self._wake.set()

    async def _run(self) -> None:
        lease = self._rt.settings.executor_lease_seconds
        while True:
            interval = lease / 3 if self._rt.notifier.push else min(lease / 3, 1.0)
            await self._rt.notifier.wait(self._wake, interval)
            try:
                await take_over_orphans(self._rt)
            except Exception as exc:  # the database is away: try again next time
                log.warning("could not look for workflows to take over: %r", exc)
