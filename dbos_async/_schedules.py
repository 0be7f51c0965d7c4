"""Schedules as data: ``DBOS.create_schedule`` and the calls that manage them.

A schedule is a row of the system database: a unique name, the registered name of the
workflow it runs, a cron expression read on the clock of ``cron_timezone`` (an IANA name;
UTC if None), a context every run gets, a status (``ACTIVE`` or ``PAUSED``) and the latest
slot started. The workflow takes ``(scheduled_at: datetime, context)``; ``scheduled_at`` is
the slot, aware, on the schedule's clock.

Every launched process runs every active schedule whose workflow it has registered (or
that names a ``queue_name``: it enqueues there) in ``_scheduler``; each slot's workflow
ID is ``sched-{schedule_name}-{slot in UTC, ISO 8601}``, the same in every process, so a
slot runs once however many processes start it. A process hears of a schedule created,
paused, resumed or deleted elsewhere at once on Postgres (a NOTIFY), within about a
second on SQLite (it polls the table); its own changes it applies at once. A slot the
runner starts directly runs in that process; with ``queue_name`` it is enqueued on that
queue; a client (``DBOSClient``), which runs
nothing, enqueues a triggered or backfilled slot on the schedule's queue, else on the
internal queue every process declares (``_dbos_internal_queue``), where a process of the
latest application version that has the workflow runs it.
"""

from __future__ import annotations

import inspect
import logging
import uuid
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypedDict

from ._clock import now_ms
from ._context import SetWorkflowID
from ._cron import CronSchedule
from ._debouncer import INTERNAL_QUEUE_NAME
from ._decorators import function_info
from ._errors import DBOSConflictingWorkflowError, DBOSException
from ._handle import WorkflowHandle
from ._ids import check_text, check_workflow_id
from ._registry import FunctionInfo, registry
from ._runner import EnqueueRequest, enqueued_row, start_workflow
from ._runtime import Runtime
from .sysdb import ScheduleRow, notification_key

__all__ = [
    "ACTIVE",
    "CHANGED_KEY",
    "PAUSED",
    "WorkflowSchedule",
    "backfill_schedule",
    "check_schedule_signature",
    "create_schedule",
    "delete_schedule",
    "fire",
    "get_schedule",
    "list_schedules",
    "on_change",
    "pause_schedule",
    "resume_schedule",
    "slot_workflow_id",
    "trigger_schedule",
    "workflow_of",
]

log = logging.getLogger("dbos_async")

ACTIVE = "ACTIVE"
PAUSED = "PAUSED"


class WorkflowSchedule(TypedDict):
    """A schedule as ``DBOS.list_schedules()`` and ``get_schedule()`` return it (DBOS
    Transact's keys)."""

    schedule_id: str
    """A unique ID of this schedule (a schedule created again under the same name has
    another)."""
    schedule_name: str
    """Its unique name."""
    workflow_name: str
    """The registered name of the workflow it runs."""
    schedule: str
    """Its cron expression."""
    status: str
    """``"ACTIVE"`` or ``"PAUSED"``."""
    context: Any
    """The value every run gets as its second argument."""
    last_fired_at: str | None
    """The latest slot started (ISO 8601, UTC), or None."""
    automatic_backfill: bool
    """Whether slots missed while no process ran are run when one starts."""
    cron_timezone: str | None
    """The IANA time zone whose clock the expression reads; None: UTC."""
    queue_name: str | None
    """The queue its runs are enqueued on; None: started directly."""


def slot_workflow_id(name: str, slot: datetime) -> str:
    """The workflow ID of one slot (aware UTC) of a schedule (or of a ``@DBOS.scheduled``
    workflow, by its name): the same in every process."""
    return f"sched-{name}-{slot.isoformat()}"


#: What each runtime's scheduler does when this process changes a schedule (set by
#: ``_scheduler``): look at the table again now instead of at its next poll.
_listeners: weakref.WeakKeyDictionary[Runtime, Callable[[], None]] = weakref.WeakKeyDictionary()


def on_change(rt: Runtime, listener: Callable[[], None] | None) -> None:
    """Set (or, with None, clear) what ``rt``'s scheduler does when a schedule changes."""
    if listener is None:
        _listeners.pop(rt, None)
    else:
        _listeners[rt] = listener


#: What a change of any schedule announces to the other processes (Postgres NOTIFY), so
#: their schedulers look at the table at once rather than at their next poll.
CHANGED_KEY = notification_key("schedule", "", "")


async def _changed(rt: Runtime) -> None:
    listener = _listeners.get(rt)
    if listener is not None:
        listener()
    try:
        await rt.sysdb.announce(CHANGED_KEY)
    except Exception as exc:  # (the change is committed; the others' poll finds it)
        log.debug("could not announce a schedule change: %r", exc)


def check_schedule_signature(info: FunctionInfo, how: str, params: str) -> None:
    """``TypeError`` unless the workflow can be called with two positional arguments."""
    now = datetime.now(UTC)
    try:
        info.stored_signature.bind(now, now)
    except TypeError:
        raise TypeError(
            f"{how}: workflow {info.name!r} must accept {params}, its signature is "
            f"{info.stored_signature}"
        ) from None


def _info(row: ScheduleRow, rt: Runtime) -> WorkflowSchedule:
    last = row.last_fired_at
    return WorkflowSchedule(
        schedule_id=row.schedule_id,
        schedule_name=row.schedule_name,
        workflow_name=row.workflow_name,
        schedule=row.schedule,
        status=row.status,
        context=rt.codec.loads(row.context),
        last_fired_at=None
        if last is None
        else datetime.fromtimestamp(last / 1000, UTC).isoformat(),
        automatic_backfill=row.automatic_backfill,
        cron_timezone=row.cron_timezone,
        queue_name=row.queue_name,
    )


async def create_schedule(
    rt: Runtime,
    *,
    schedule_name: str,
    workflow_name: str,
    schedule: str,
    context: Any,
    automatic_backfill: bool,
    cron_timezone: str | None,
    queue_name: str | None,
) -> None:
    """Store a new schedule; ``DBOSException`` if one of that name exists, ``ValueError``
    for a bad expression or time zone."""
    check_workflow_id(schedule_name, "a schedule name")
    check_text(workflow_name, "workflow_name", non_empty=True)
    check_text(cron_timezone, "cron_timezone", optional=True)
    if queue_name is not None:
        check_workflow_id(queue_name, "a queue name")
    if not isinstance(automatic_backfill, bool):
        raise TypeError(f"automatic_backfill must be a bool, got {automatic_backfill!r}")
    CronSchedule.parse(schedule, cron_timezone)  # (ValueError naming what is wrong)
    now = now_ms()
    row = ScheduleRow(
        schedule_id=uuid.uuid4().hex,
        schedule_name=schedule_name,
        workflow_name=workflow_name,
        schedule=schedule,
        status=ACTIVE,
        context=rt.codec.dumps(context, f"the context of schedule {schedule_name!r}"),
        automatic_backfill=automatic_backfill,
        cron_timezone=cron_timezone,
        queue_name=queue_name,
        last_fired_at=None,
        created_at=now,
        updated_at=now,
    )
    if not await rt.sysdb.insert_schedule(row):
        raise DBOSException(
            f"schedule {schedule_name!r} already exists: delete it first, or pick another name"
        )
    await _changed(rt)


async def list_schedules(
    rt: Runtime,
    *,
    status: str | None = None,
    workflow_name: str | None = None,
    schedule_name_prefix: str | None = None,
) -> list[WorkflowSchedule]:
    """The stored schedules by name, those matching every filter given."""
    if status is not None and status not in (ACTIVE, PAUSED):
        raise ValueError(f"status must be 'ACTIVE' or 'PAUSED', got {status!r}")
    check_text(workflow_name, "workflow_name", optional=True)
    check_text(schedule_name_prefix, "schedule_name_prefix", optional=True)
    return [
        _info(row, rt)
        for row in await rt.sysdb.list_schedules()
        if (status is None or row.status == status)
        and (workflow_name is None or row.workflow_name == workflow_name)
        and (schedule_name_prefix is None or row.schedule_name.startswith(schedule_name_prefix))
    ]


async def get_schedule(rt: Runtime, schedule_name: str) -> WorkflowSchedule | None:
    """The stored schedule of that name, or None."""
    check_workflow_id(schedule_name, "a schedule name")
    row = await rt.sysdb.get_schedule(schedule_name)
    return None if row is None else _info(row, rt)


async def _existing(rt: Runtime, schedule_name: str) -> ScheduleRow:
    check_workflow_id(schedule_name, "a schedule name")
    row = await rt.sysdb.get_schedule(schedule_name)
    if row is None:
        raise DBOSException(f"schedule {schedule_name!r} does not exist")
    return row


async def delete_schedule(rt: Runtime, schedule_name: str) -> None:
    """Delete a schedule (nothing if there is none); its runs so far are kept."""
    check_workflow_id(schedule_name, "a schedule name")
    await rt.sysdb.delete_schedule(schedule_name)
    await _changed(rt)


async def _set_status(rt: Runtime, schedule_name: str, status: str) -> None:
    check_workflow_id(schedule_name, "a schedule name")
    if not await rt.sysdb.set_schedule_status(schedule_name, status, now_ms()):
        raise DBOSException(f"schedule {schedule_name!r} does not exist")
    await _changed(rt)


async def pause_schedule(rt: Runtime, schedule_name: str) -> None:
    """Stop starting the schedule's slots (until ``resume_schedule``)."""
    await _set_status(rt, schedule_name, PAUSED)


async def resume_schedule(rt: Runtime, schedule_name: str) -> None:
    """Start the schedule's slots again, from now on (and, with ``automatic_backfill``,
    those missed since the latest one started)."""
    await _set_status(rt, schedule_name, ACTIVE)


async def fire(
    rt: Runtime, row: ScheduleRow, slot: datetime, workflow_id: str
) -> WorkflowHandle[Any]:
    """Start (or enqueue) one run of a schedule for ``slot`` (aware UTC) under
    ``workflow_id``; a run already under that ID is not started again."""
    at = CronSchedule.parse(row.schedule, row.cron_timezone).local(slot)
    context = rt.codec.loads(row.context)
    info = registry.workflows.get(row.workflow_name) if rt.launched else None
    if info is not None and row.queue_name is None:
        with SetWorkflowID(workflow_id):
            return await start_workflow(info, (at, context), {})
    signature = info.stored_signature if info is not None else None
    inputs = rt.codec.dump_inputs(row.workflow_name, signature, (at, context), {})
    request = EnqueueRequest(queue_name=row.queue_name or INTERNAL_QUEUE_NAME)
    stored = enqueued_row(workflow_id, row.workflow_name, inputs, request)
    existing = await rt.sysdb.enqueue_workflow(stored)
    if existing is not None and existing.name != row.workflow_name:
        raise DBOSConflictingWorkflowError(workflow_id, existing.name, row.workflow_name)
    return WorkflowHandle(rt, workflow_id)


async def trigger_schedule(rt: Runtime, schedule_name: str) -> WorkflowHandle[Any]:
    """Run the schedule's workflow now, once (whatever its status), with ``scheduled_at``
    now; the workflow ID is ``sched-{schedule_name}-trigger-{now, ISO 8601}``."""
    row = await _existing(rt, schedule_name)
    now = datetime.now(UTC)
    return await fire(rt, row, now, f"sched-{schedule_name}-trigger-{now.isoformat()}")


def _aware(when: datetime, what: str) -> datetime:
    if not isinstance(when, datetime):
        raise TypeError(f"{what} must be a datetime, got {when!r}")
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


async def backfill_schedule(
    rt: Runtime, schedule_name: str, start: datetime, end: datetime
) -> list[WorkflowHandle[Any]]:
    """Run each slot of the schedule from ``start`` (inclusive) to ``end`` (exclusive;
    naive times are UTC) that has not run: a slot that ran keeps its outcome."""
    start, end = _aware(start, "start"), _aware(end, "end")
    row = await _existing(rt, schedule_name)
    cron = CronSchedule.parse(row.schedule, row.cron_timezone)
    handles = []
    for slot in cron.slots_between(start, end):
        handles.append(await fire(rt, row, slot, slot_workflow_id(schedule_name, slot)))
    return handles


def workflow_of(func: Callable[..., Any], how: str) -> FunctionInfo:
    """The workflow a schedule may run: a registered workflow function (or staticmethod)
    taking ``(scheduled_at, context)``."""
    info = function_info(func)
    if info is None or info.kind != "workflow":
        raise TypeError(f"{how} needs a function decorated with @DBOS.workflow(), got {func!r}")
    if info.receives or inspect.ismethod(func):
        raise TypeError(
            f"{how}: workflow {info.name!r} is an instance or class method; a schedule "
            "runs a plain workflow function or a staticmethod"
        )
    check_schedule_signature(info, how, "(scheduled_at: datetime, context)")
    return info
