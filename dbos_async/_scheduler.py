"""Scheduled workflows: ``@DBOS.scheduled(cron)`` and the loops that start every schedule.

Every process runs a loop per ``@DBOS.scheduled`` workflow it registers, and one per
active schedule stored as data (``_schedules``) that it can run. At each cron slot each
of them starts the workflow under one ID derived from the schedule's name and the slot.
Starting a workflow under an existing ID never runs it again, so the slot runs exactly
once however many processes share the database. Slots that passed while no process ran
are not run later, unless asked for with ``DBOS.backfill_schedule`` (or, for a stored
schedule, ``automatic_backfill``: its loop first runs the slots since the latest one
started). A stored schedule's loop reads its row before each slot, so a pause or a
delete from any process stops it at its next slot. A change from another process is
heard at once on Postgres (NOTIFY; the table is read again every 10 s in case an
announcement was lost) and within about a second on SQLite (a poll).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from . import _schedules
from ._context import SetWorkflowID
from ._cron import CronSchedule
from ._decorators import function_info
from ._errors import DBOSConfigError
from ._handle import WorkflowHandle
from ._registry import FunctionInfo, registry
from ._runner import start_workflow
from ._runtime import Runtime
from ._schedules import ACTIVE, check_schedule_signature, slot_workflow_id
from .sysdb import ScheduleRow

__all__ = [
    "POLL_INTERVAL_SECONDS",
    "PUSHED_POLL_INTERVAL_SECONDS",
    "Scheduler",
    "backfill",
    "backfill_entry",
    "scheduled",
    "slot_workflow_id",
]

log = logging.getLogger("dbos_async")

F = TypeVar("F", bound=Callable[..., Coroutine[Any, Any, Any]])

#: A loop that fell further behind than this (a suspended machine) skips to the present
#: instead of running every slot it slept through.
_MAX_LAG = timedelta(seconds=60)
#: How often a process looks for schedules created, resumed or deleted elsewhere...
POLL_INTERVAL_SECONDS = 1.0
#: ...and how often when changes are pushed to it (Postgres NOTIFY): only a safety net
#: for an announcement lost (its sender died between the change and the NOTIFY), so an
#: idle fleet does not read the table once a second per process.
PUSHED_POLL_INTERVAL_SECONDS = 10.0


@dataclass(frozen=True)
class ScheduledWorkflow:
    info: FunctionInfo
    schedule: CronSchedule


def scheduled(cron: str, cron_timezone: str | None = None) -> Callable[[F], F]:
    """``@DBOS.scheduled("*/5 * * * * *")`` above ``@DBOS.workflow()``: run the workflow
    at every slot of the cron expression (5 fields, or 6 with seconds first), read on the
    clock of the IANA time zone ``cron_timezone`` (UTC if None), as
    ``wf(scheduled_time, actual_time)``, exactly once per slot across all processes."""
    if not isinstance(cron, str):
        raise TypeError(f"@DBOS.scheduled() needs a cron expression str, got {cron!r}")
    if cron_timezone is not None and not isinstance(cron_timezone, str):
        raise TypeError(f"cron_timezone must be an IANA time zone name, got {cron_timezone!r}")
    try:
        schedule = CronSchedule.parse(cron, cron_timezone)
    except ValueError as exc:
        raise DBOSConfigError(f"@DBOS.scheduled(): {exc}") from None

    def decorator(func: F) -> F:
        info = function_info(func)
        if info is None or info.kind != "workflow":
            raise TypeError(
                "@DBOS.scheduled() must be stacked above @DBOS.workflow(), got "
                f"{getattr(func, '__qualname__', func)!r}"
            )
        check_schedule_signature(
            info, "@DBOS.scheduled()", "(scheduled_time: datetime, actual_time: datetime)"
        )
        registry.schedules[info.name] = ScheduledWorkflow(info, schedule)
        return func

    return decorator


async def _fire(entry: ScheduledWorkflow, slot: datetime) -> WorkflowHandle[Any]:
    with SetWorkflowID(slot_workflow_id(entry.info.name, slot)):
        args = (entry.schedule.local(slot), datetime.now(UTC))
        return await start_workflow(entry.info, args, {})


async def backfill(
    func: Callable[..., Any], start: datetime, end: datetime
) -> list[WorkflowHandle[Any]]:
    """Run the slots of a scheduled workflow from ``start`` (inclusive) to ``end``
    (exclusive) that have not run yet; slots that ran keep their recorded outcome."""
    info = function_info(func)
    entry = registry.schedules.get(info.name) if info is not None else None
    if entry is None:
        raise TypeError(
            f"backfill_schedule() needs a schedule name or a @DBOS.scheduled workflow, got {func!r}"
        )
    return await backfill_entry(entry, start, end)


async def backfill_entry(
    entry: ScheduledWorkflow, start: datetime, end: datetime
) -> list[WorkflowHandle[Any]]:
    """``backfill`` of a registered ``@DBOS.scheduled`` workflow (``registry.schedules``)."""
    return [await _fire(entry, slot) for slot in entry.schedule.slots_between(start, end)]


async def _sleep_until(when: datetime, stop: asyncio.Event | None = None) -> bool:
    """Sleep until the wall clock reaches ``when`` (the loop's clock may run a little
    apart from it, so check and sleep again if woken early); True if ``stop`` was set
    first."""
    wait = (when - datetime.now(UTC)).total_seconds()
    while wait > 0:
        if stop is None:
            await asyncio.sleep(wait)
        else:
            with contextlib.suppress(TimeoutError):
                # (asyncio.timeout, not wait_for, which on 3.11 can swallow a cancel)
                async with asyncio.timeout(wait):
                    await stop.wait()
            if stop.is_set():
                return True
        wait = (when - datetime.now(UTC)).total_seconds()
    return stop is not None and stop.is_set()


def _next_slot(schedule: CronSchedule, slot: datetime, *, catch_up: bool = False) -> datetime:
    """The slot after ``slot``; unless ``catch_up``, a loop that fell behind by more than
    ``_MAX_LAG`` skips to the present."""
    following = schedule.next_after(slot)
    now = datetime.now(UTC)
    if following < now - _MAX_LAG and not catch_up:
        following = schedule.next_after(now)
    return following


@dataclass
class _Running:
    """The loop of a stored schedule in this process."""

    task: asyncio.Task[None]
    stop: asyncio.Event


class Scheduler:
    """This process's schedule loops: one per ``@DBOS.scheduled`` workflow, one per
    active stored schedule it can run, and the poll that keeps the latter current."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._tasks: list[asyncio.Task[None]] = []
        self._stored: dict[str, _Running] = {}  # by schedule_id
        #: Loops told to stop that have not ended yet (they finish the slot they start).
        self._ending: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for entry in registry.schedules.values():
            self._tasks.append(
                loop.create_task(self._run(entry), name=f"dbos_async schedule {entry.info.name}")
            )
        _schedules.on_change(self._rt, self._changed.set)
        self._rt.notifier.hooks["schedule"] = self._heard
        self._tasks.append(loop.create_task(self._poll(), name="dbos_async stored schedules"))

    def _heard(self, _: str | None) -> None:
        """Another process changed a schedule (or, with None, notifications may have been
        missed): look at the table now."""
        self._changed.set()

    async def stop(self) -> None:
        _schedules.on_change(self._rt, None)
        if self._rt.notifier.hooks.get("schedule") == self._heard:
            del self._rt.notifier.hooks["schedule"]
        tasks, self._tasks = self._tasks, []
        tasks += [running.task for running in self._stored.values()] + list(self._ending)
        self._stored.clear()
        self._ending.clear()
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
                await _fire(entry, slot)
            except Exception as exc:
                log.error(
                    "scheduled workflow %r could not start for %s: %r", entry.info.name, slot, exc
                )
            slot = _next_slot(entry.schedule, slot)

    # -- schedules stored as data ------------------------------------------------------

    def _runs_here(self, row: ScheduleRow) -> bool:
        return row.status == ACTIVE and (
            row.queue_name is not None or row.workflow_name in registry.workflows
        )

    async def _poll(self) -> None:
        while True:
            self._changed.clear()
            try:
                rows = await self._rt.sysdb.list_schedules()
            except Exception as exc:
                log.warning("could not read the stored schedules: %r", exc)
            else:
                self._sync(rows)
            interval = (
                PUSHED_POLL_INTERVAL_SECONDS if self._rt.notifier.push else POLL_INTERVAL_SECONDS
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._changed.wait()

    def _sync(self, rows: list[ScheduleRow]) -> None:
        """Stop the loops of schedules gone or paused; start those of new ones, and again
        those that stopped on finding their schedule paused (a loop that gave up, on a
        time zone this machine lacks, is not started again)."""
        wanted = {row.schedule_id: row for row in rows if self._runs_here(row)}
        for schedule_id, running in list(self._stored.items()):
            if schedule_id not in wanted or (running.task.done() and running.stop.is_set()):
                running.stop.set()
                del self._stored[schedule_id]
                if not running.task.done():
                    self._ending.add(running.task)
                    running.task.add_done_callback(self._ending.discard)
        loop = asyncio.get_running_loop()
        for schedule_id, row in wanted.items():
            if schedule_id not in self._stored:
                stop = asyncio.Event()
                task = loop.create_task(
                    self._run_stored(row, stop),
                    name=f"dbos_async stored schedule {row.schedule_name}",
                )
                self._stored[schedule_id] = _Running(task, stop)

    async def _run_stored(self, row: ScheduleRow, stop: asyncio.Event) -> None:
        try:
            schedule = CronSchedule.parse(row.schedule, row.cron_timezone)
        except ValueError as exc:  # (checked when stored; a zone this machine lacks)
            log.error("schedule %r cannot run here: %s", row.schedule_name, exc)
            return
        now = datetime.now(UTC)
        if row.automatic_backfill and row.last_fired_at is not None:
            last = datetime.fromtimestamp(row.last_fired_at / 1000, UTC)
            for slot in schedule.slots_between(last + timedelta(seconds=1), now):
                if stop.is_set() or not await self._fire_stored(row, slot, stop):
                    return
        slot = schedule.next_after(now)
        while not await _sleep_until(slot, stop):
            if not await self._fire_stored(row, slot, stop):
                return
            slot = _next_slot(schedule, slot, catch_up=row.automatic_backfill)

    async def _fire_stored(self, row: ScheduleRow, slot: datetime, stop: asyncio.Event) -> bool:
        """Start one slot if the schedule is still active as stored; False (and ``stop``
        set) if it is not."""
        rt = self._rt
        try:
            current = await rt.sysdb.get_schedule(row.schedule_name)
            if current is None or current.schedule_id != row.schedule_id:
                stop.set()
                return False
            if current.status != ACTIVE:
                stop.set()
                self._changed.set()  # (the poll forgets this loop; a resume starts anew)
                return False
            await _schedules.fire(rt, current, slot, slot_workflow_id(row.schedule_name, slot))
            await rt.sysdb.record_schedule_fired(row.schedule_id, int(slot.timestamp() * 1000))
        except Exception as exc:
            log.error("schedule %r could not start its slot %s: %r", row.schedule_name, slot, exc)
        return True
