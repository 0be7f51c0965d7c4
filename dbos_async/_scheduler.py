"""Scheduled workflows: ``@DBOS.scheduled(cron)`` and the loop that starts them.

Every process that registers a scheduled workflow runs its loop; at each cron slot each
of them starts the workflow under one ID derived from its name and the slot. Starting a
workflow under an existing ID never runs it again, so the slot runs exactly once however
many processes share the database. Slots that passed while no process ran are not run
later, unless asked for with ``DBOS.backfill_schedule``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from ._context import SetWorkflowID
from ._cron import CronSchedule
from ._decorators import function_info
from ._errors import DBOSConfigError
from ._handle import WorkflowHandle
from ._registry import FunctionInfo, registry
from ._runner import start_workflow
from ._runtime import Runtime

__all__ = ["Scheduler", "backfill", "scheduled", "slot_workflow_id"]

log = logging.getLogger("dbos_async")

F = TypeVar("F", bound=Callable[..., Coroutine[Any, Any, Any]])

#: A loop that fell further behind than this (a suspended machine) skips to the present
#: instead of running every slot it slept through.
_MAX_LAG = timedelta(seconds=60)


@dataclass(frozen=True)
class ScheduledWorkflow:
    info: FunctionInfo
    schedule: CronSchedule


def scheduled(cron: str) -> Callable[[F], F]:
    """``@DBOS.scheduled("*/5 * * * * *")`` above ``@DBOS.workflow()``: run the workflow
    at every slot of the cron expression (5 fields, or 6 with seconds first; UTC) as
    ``wf(scheduled_time, actual_time)``, exactly once per slot across all processes."""
    if not isinstance(cron, str):
        raise TypeError(f"@DBOS.scheduled() needs a cron expression str, got {cron!r}")
    try:
        schedule = CronSchedule.parse(cron)
    except ValueError as exc:
        raise DBOSConfigError(f"@DBOS.scheduled(): {exc}") from None

    def decorator(func: F) -> F:
        info = function_info(func)
        if info is None or info.kind != "workflow":
            raise TypeError(
                "@DBOS.scheduled() must be stacked above @DBOS.workflow(), got "
                f"{getattr(func, '__qualname__', func)!r}"
            )
        now = datetime.now(UTC)
        try:
            info.signature.bind(now, now)
        except TypeError:
            raise TypeError(
                f"scheduled workflow {info.name!r} must accept "
                f"(scheduled_time: datetime, actual_time: datetime), its signature is "
                f"{info.signature}"
            ) from None
        registry.schedules[info.name] = ScheduledWorkflow(info, schedule)
        return func

    return decorator


def slot_workflow_id(name: str, slot: datetime) -> str:
    """The workflow ID of one slot of a scheduled workflow: the same in every process."""
    return f"sched-{name}-{slot.isoformat()}"


async def _fire(info: FunctionInfo, slot: datetime) -> WorkflowHandle[Any]:
    with SetWorkflowID(slot_workflow_id(info.name, slot)):
        return await start_workflow(info, (slot, datetime.now(UTC)), {})


async def backfill(
    func: Callable[..., Any], start: datetime, end: datetime
) -> list[WorkflowHandle[Any]]:
    """Run the slots of a scheduled workflow from ``start`` (inclusive) to ``end``
    (exclusive) that have not run yet; slots that ran keep their recorded outcome."""
    info = function_info(func)
    entry = registry.schedules.get(info.name) if info is not None else None
    if info is None or entry is None:
        raise TypeError(f"backfill_schedule() needs a @DBOS.scheduled workflow, got {func!r}")
    return [await _fire(info, slot) for slot in entry.schedule.slots_between(start, end)]


async def _sleep_until(when: datetime) -> None:
    """Sleep until the wall clock reaches ``when`` (the loop's clock may run a little
    apart from it, so check and sleep again if woken early)."""
    wait = (when - datetime.now(UTC)).total_seconds()
    while wait > 0:
        await asyncio.sleep(wait)
        wait = (when - datetime.now(UTC)).total_seconds()


class Scheduler:
    """This process's loops, one per scheduled workflow."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for entry in registry.schedules.values():
            self._tasks.append(
                loop.create_task(self._run(entry), name=f"dbos_async schedule {entry.info.name}")
            )

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self, entry: ScheduledWorkflow) -> None:
        slot = entry.schedule.next_after(datetime.now(UTC))
        while True:
            await _sleep_until(slot)
            try:
                await _fire(entry.info, slot)
            except Exception as exc:
                log.error(
                    "scheduled workflow %r could not start for %s: %r", entry.info.name, slot, exc
                )
            now = datetime.now(UTC)
            following = entry.schedule.next_after(slot)
            if following < now - _MAX_LAG:
                following = entry.schedule.next_after(now)
            slot = following
