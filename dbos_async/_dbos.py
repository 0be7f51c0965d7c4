"""``DBOS``: the public facade. One instance per process at a time; its methods are
class-level, so ``DBOS.start_workflow(...)`` works anywhere once ``DBOS(config)`` exists."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from datetime import datetime
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from . import (
    _bulk_management,
    _classes,
    _decorators,
    _management,
    _management_steps,
    _messaging,
    _patching,
    _queue_admin,
    _run_step,
    _scheduler,
    _schedules,
    _send_bulk,
    _versions,
)
from ._clock import is_seconds
from ._config import DBOSConfig, resolve_config
from ._context import current_sql_connection, current_step, current_workflow
from ._errors import DBOSException, DBOSNonExistentWorkflowError
from ._handle import WorkflowHandle
from ._ids import check_text, check_workflow_filters, check_workflow_id
from ._lifecycle import process_parts
from ._queue import Queue, declared_settings, enqueue_on, named_workflow
from ._queue_admin import QueueConflictResolution, check_on_conflict
from ._registry import registry
from ._run_step import as_workflow
from ._runner import start_workflow
from ._runtime import Runtime, current_runtime, get_runtime, set_runtime
from ._scheduler import backfill
from ._schedules import WorkflowSchedule
from ._send_bulk import SendMessage
from ._status import ExecutorInfo, StepInfo, StepStatus, WorkflowStatus
from ._steps import builtin_step, durable_sleep, durable_wait, transaction_session
from ._tracing import current_span
from ._txguard import refuse_in_transaction
from ._versions import VersionInfo
from .client import EnqueueOptions, _parse_enqueue_options

__all__ = ["DBOS"]

P = ParamSpec("P")
R = TypeVar("R")


def _refuse_in_workflow(how: str) -> None:
    """``DBOSException`` when called from a workflow's code, where a re-run would repeat
    it: what it starts is not recorded as a step."""
    if current_workflow.get() is not None:
        raise DBOSException(
            f"{how} cannot be called from a workflow; call it from outside, or start a "
            "workflow for the schedule's slot yourself"
        )


class _DBOSMeta(type):
    """Class-level properties: ``DBOS.workflow_id``, ``DBOS.step_id``,
    ``DBOS.executor_id``, ``DBOS.sql_connection``, ``DBOS.sql_session``, ..."""

    @property
    def workflow_id(cls) -> str | None:
        """The ID of the workflow whose code is running, or None outside workflows."""
        frame = current_step.get()
        if frame is not None and frame.workflow_id is not None:
            return frame.workflow_id
        state = current_workflow.get()
        return state.workflow_id if state is not None else None

    @property
    def step_id(cls) -> int | None:
        """The 1-based ID of the running step or transaction, or None outside one."""
        frame = current_step.get()
        return frame.step_id if frame is not None else None

    @property
    def step_status(cls) -> StepStatus | None:
        """Inside a workflow's step body, the step's ID and, for a step with retries, the
        attempt running now (from 0) and the most it makes; None elsewhere."""
        frame = current_step.get()
        if frame is None or frame.step_id is None or current_sql_connection.get() is not None:
            return None
        return StepStatus(frame.step_id, frame.current_attempt, frame.max_attempts)

    @property
    def span(cls) -> Any:
        """The current OpenTelemetry span (the running step's or workflow's when tracing
        is on: see ``dbos_async._tracing``), or None without the ``otel`` extra."""
        return current_span()

    @property
    def executor_id(cls) -> str:
        """This process's executor ID (config ``executor_id``, else env ``DBOS__VMID``,
        else ``"local"``)."""
        rt = current_runtime()
        if rt is not None:
            return rt.executor_id
        return os.environ.get("DBOS__VMID") or "local"

    @property
    def application_version(cls) -> str:
        """The application version this process runs and records with its workflows
        (config ``application_version``, else env ``DBOS__APPVERSION``, else a hash of
        the registered workflow functions' source)."""
        rt = current_runtime()
        if rt is not None and rt.app_version:
            return rt.app_version
        return os.environ.get("DBOS__APPVERSION") or registry.source_hash()

    @property
    def sql_connection(cls) -> Any:
        """The connection of the running ``@DBOS.transaction`` (asyncpg or aiosqlite)."""
        conn = current_sql_connection.get()
        if conn is None:
            raise DBOSException("DBOS.sql_connection is only available inside a @DBOS.transaction")
        return conn

    # -- SQLAlchemy sessions (issue 14) --
    @property
    def sql_session(cls) -> Any:
        """The SQLAlchemy ``AsyncSession`` of the running ``@DBOS.transaction``: bound to
        its own connection (asyncpg or aiosqlite), inside its transaction, so its writes
        commit with the recorded output when the function returns (pending changes are
        flushed first) and roll back when it raises. ``commit()`` only flushes,
        ``rollback()`` raises. ``DBOSException`` outside a transaction, or naming the
        ``sqlalchemy`` extra when SQLAlchemy is not installed."""
        return transaction_session()


class DBOS(metaclass=_DBOSMeta):
    """The durable execution runtime. ``DBOS(config)`` creates it, ``await DBOS.launch()``
    connects and recovers, ``await DBOS.destroy()`` stops it; ``async with DBOS(config):``
    does both. One instance per process at a time; its methods are called on the class
    (``DBOS.send(...)``).

    Class-level properties read where the running code is: ``DBOS.workflow_id`` (the
    running workflow's ID, or None outside workflows), ``DBOS.step_id`` (the 1-based ID
    of the running step or transaction, or None outside one) and ``DBOS.sql_connection``
    (the connection of the running ``@DBOS.transaction``; ``DBOSException`` elsewhere).

    ``DBOS.logger`` is the library's logger (``logging.getLogger("dbos_async")``), for
    code written for DBOS Transact's ``DBOS.logger``; ``DBOS.step_status`` and
    ``DBOS.span`` are described on the metaclass's properties below.

    Every coroutine method ``X`` also answers to ``X_async`` (DBOS Transact's spelling):
    ``await DBOS.start_workflow_async(...)`` is ``await DBOS.start_workflow(...)``.
    """

    logger: logging.Logger = logging.getLogger("dbos_async")
    """The library's logger (``dbos_async``), as DBOS Transact's ``DBOS.logger``."""

    def __init__(self, config: DBOSConfig | dict[str, Any] | None = None) -> None:
        existing = current_runtime()
        if existing is not None:
            raise DBOSException(
                "a DBOS instance already exists in this process; await DBOS.destroy() first"
            )
        self._runtime = Runtime(resolve_config(config))
        set_runtime(self._runtime)

    async def __aenter__(self) -> DBOS:
        try:
            await DBOS.launch()
        except BaseException:
            await DBOS.destroy()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await DBOS.destroy()

    # -- lifecycle -------------------------------------------------------------------

    @classmethod
    async def launch(cls) -> None:
        """Create or migrate the schema, recover this executor's PENDING workflows, then
        start the workers of the declared queues and schedules."""
        rt = current_runtime()
        if rt is None:
            raise DBOSException("no DBOS instance: create DBOS(config) before DBOS.launch()")
        # The runtime's background tasks (queue workers, takeovers, schedules) and the
        # workflows they run start in an empty context: nothing of the launching code's
        # (its tracing span, a SetWorkflowID block) reaches them.
        await asyncio.create_task(rt.start(process_parts(rt)), context=contextvars.Context())

    @classmethod
    async def destroy(
        cls, *, destroy_registry: bool = False, workflow_completion_timeout_sec: float = 0
    ) -> None:
        """Stop the runtime. It stops taking work (queue claims, schedules, takeovers),
        lets the workflows running here go on for up to ``workflow_completion_timeout_sec``
        seconds, then stops the rest and hands them over: they stay PENDING, and a live
        process of the same application version takes them over at once (or this
        application's next launch recovers them). The registry of decorated functions
        survives unless ``destroy_registry``."""
        grace = workflow_completion_timeout_sec
        if not is_seconds(grace):
            raise ValueError(
                "workflow_completion_timeout_sec must be a non-negative number of seconds, "
                f"got {grace!r}"
            )
        rt = current_runtime()
        if rt is not None and grace > 0:
            # The workflows that go on need their runtime: it stays current until closed.
            try:
                await rt.close(grace=float(grace))
            finally:
                if current_runtime() is rt:
                    set_runtime(None)
        else:
            set_runtime(None)
            if rt is not None:
                await rt.close()
        if destroy_registry:
            registry.clear()

    launch_async = launch
    destroy_async = destroy

    # -- decorators --------------------------------------------------------------------

    workflow = staticmethod(_decorators.workflow)
    """``@DBOS.workflow(name=None, max_recovery_attempts=100)``: a durable workflow."""
    step = staticmethod(_decorators.step)
    """``@DBOS.step(name=None, retries_allowed=False, max_attempts=3, interval_seconds=1.0,
    backoff_rate=2.0)``: a checkpointed step (``async def`` or ``def``)."""
    communicator = staticmethod(_decorators.step)
    """The same decorator as ``@DBOS.step()`` (its older name)."""
    transaction = staticmethod(_decorators.transaction)
    """``@DBOS.transaction(name=None, isolation_level="SERIALIZABLE")``: a database
    transaction whose output commits with its writes."""
    scheduled = staticmethod(_scheduler.scheduled)
    """``@DBOS.scheduled(cron)`` above ``@DBOS.workflow()``: run the workflow at every
    slot of the cron expression, once per slot across all processes."""

    # -- running workflows -----------------------------------------------------------

    @staticmethod
    def start_workflow(
        func: Callable[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, WorkflowHandle[R]]:
        """Start a workflow and return its handle once its status row is durable. A
        ``@DBOS.step()`` or ``@DBOS.transaction()`` function is run as a workflow of its
        own, named ``<temp>.<its name>``, whose one step is the call (as in DBOS
        Transact)."""
        info = as_workflow(_decorators.function_info(func))
        if info is None:
            raise TypeError(
                "DBOS.start_workflow() needs a function decorated with @DBOS.workflow() "
                f"(or @DBOS.step() or @DBOS.transaction()), got {func!r}"
            )
        # (A bound method, ``inst.wf`` or ``Cls.wf``, brings its receiver.)
        return start_workflow(info, _classes.with_bound_receiver(func, args), kwargs)

    start_workflow_async = start_workflow

    @staticmethod
    async def retrieve_workflow(
        workflow_id: str, existing_workflow: bool = True
    ) -> WorkflowHandle[Any]:
        """A handle to a workflow by ID (it may run in another process)."""
        check_workflow_id(workflow_id)
        rt = get_runtime()
        if existing_workflow and await rt.sysdb.get_workflow(workflow_id) is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        return WorkflowHandle(rt, workflow_id)

    retrieve_workflow_async = retrieve_workflow

    @staticmethod
    def get_result(workflow_id: str) -> Coroutine[Any, Any, Any]:
        """Wait for a workflow (here or in another process) to end and return its result,
        or raise its error, as ``(await DBOS.retrieve_workflow(id)).get_result()``. From a
        workflow's own code it is a step (``DBOS.getResult``): a re-run gets the recorded
        outcome back without waiting again."""
        check_workflow_id(workflow_id)
        refuse_in_transaction("DBOS.get_result()")

        async def wait() -> Any:
            return await (await DBOS.retrieve_workflow(workflow_id)).get_result()

        return builtin_step("DBOS.getResult", wait)

    get_result_async = get_result

    @staticmethod
    def wait_first(
        handles: Sequence[WorkflowHandle[Any]], *, polling_interval_sec: float = 1.0
    ) -> Coroutine[Any, Any, WorkflowHandle[Any]]:
        """Wait until one of the ``handles``' workflows ends (whatever its outcome) and
        return that handle. From a workflow's own code it is a step (``DBOS.waitFirst``):
        a re-run gets the same handle back. ``polling_interval_sec`` is accepted for DBOS
        Transact's signature; handles here are woken when a workflow ends (and poll the
        status table as a fallback on their own)."""
        handles = list(handles)
        if not handles:
            raise ValueError("DBOS.wait_first() needs at least one handle, got none")
        for handle in handles:
            if not isinstance(handle, WorkflowHandle):
                raise TypeError(f"DBOS.wait_first() takes WorkflowHandles, got {handle!r}")
        by_id = {h.workflow_id: h for h in handles}
        if len(by_id) != len(handles):
            raise ValueError("DBOS.wait_first() handles must be of different workflows")
        if not is_seconds(polling_interval_sec) or polling_interval_sec == 0:
            raise ValueError(
                "polling_interval_sec must be a positive number of seconds, "
                f"got {polling_interval_sec!r}"
            )
        refuse_in_transaction("DBOS.wait_first()")

        async def first() -> str:
            async def ended(handle: WorkflowHandle[Any]) -> str:
                with contextlib.suppress(Exception):  # (any outcome counts as the end)
                    await handle.get_result()
                return handle.workflow_id

            waits = [asyncio.ensure_future(ended(h)) for h in handles]
            try:
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                return min(done, key=waits.index).result()
            finally:
                for wait in waits:
                    wait.cancel()

        async def pick(step: Coroutine[Any, Any, str]) -> WorkflowHandle[Any]:
            return by_id[await step]

        # (The step ID is taken now, at call time, as for every step.)
        return pick(builtin_step("DBOS.waitFirst", first, str))

    wait_first_async = wait_first

    @staticmethod
    def asyncio_wait(
        fs: Iterable[Awaitable[Any]],
        *,
        timeout: float | None = None,
        return_when: str = asyncio.ALL_COMPLETED,
    ) -> Coroutine[Any, Any, tuple[set[asyncio.Future[Any]], set[asyncio.Future[Any]]]]:
        """``asyncio.wait`` made deterministic in workflows: the awaitables are wrapped in
        tasks (as ``asyncio.ensure_future`` does) and ``(done, pending)`` is returned; from a
        workflow's own code, which of them were done is recorded as a step
        (``DBOS.asyncio_wait``), so a re-run gets the same split. Outside workflows it is
        ``asyncio.wait``. ``return_when`` is ``asyncio.ALL_COMPLETED`` (default),
        ``FIRST_COMPLETED`` or ``FIRST_EXCEPTION``."""
        if return_when not in (
            asyncio.ALL_COMPLETED,
            asyncio.FIRST_COMPLETED,
            asyncio.FIRST_EXCEPTION,
        ):
            raise ValueError(
                "return_when must be asyncio.ALL_COMPLETED, FIRST_COMPLETED or "
                f"FIRST_EXCEPTION, got {return_when!r}"
            )
        if timeout is not None and not is_seconds(timeout):
            raise ValueError(f"timeout must be a non-negative number of seconds, got {timeout!r}")
        futures = [asyncio.ensure_future(f) for f in fs]
        if not futures:
            raise ValueError("DBOS.asyncio_wait() needs at least one awaitable, got none")
        return durable_wait(futures, timeout, return_when)

    @staticmethod
    def sleep(seconds: float) -> Coroutine[Any, Any, None]:
        """Sleep durably inside a workflow (a recovered workflow sleeps only the rest)."""
        return durable_sleep(seconds)

    sleep_async = sleep

    # -- schedules (issue 17; ``_schedules``) ------------------------------------------

    @staticmethod
    async def create_schedule(
        *,
        schedule_name: str,
        workflow_fn: Callable[..., Coroutine[Any, Any, Any]],
        schedule: str,
        context: Any = None,
        automatic_backfill: bool = False,
        cron_timezone: str | None = None,
        queue_name: str | None = None,
    ) -> None:
        """Store a schedule that runs ``workflow_fn(scheduled_at, context)`` at every slot
        of the cron expression ``schedule`` (5 fields, or 6 with seconds first), read on
        the clock of the IANA zone ``cron_timezone`` (UTC if None), once per slot across
        all processes. Every launched process that has the workflow runs it (with
        ``queue_name``: enqueues it there). ``automatic_backfill``: a process that starts
        the schedule first runs the slots missed since the latest one started.
        ``DBOSException`` if a schedule of that name exists, or if a ``@DBOS.scheduled``
        workflow has that name (their slots would share workflow IDs); ``ValueError`` for
        a bad expression or zone."""
        info = _schedules.workflow_of(workflow_fn, "DBOS.create_schedule()")
        refuse_in_transaction("DBOS.create_schedule()")
        if schedule_name in registry.schedules:
            raise DBOSException(
                f"schedule name {schedule_name!r} is the name of a @DBOS.scheduled workflow: "
                "the runs of both would share workflow IDs (sched-<name>-<slot>) and "
                "backfill_schedule could not tell them apart; pick another name"
            )
        await _schedules.create_schedule(
            get_runtime(),
            schedule_name=schedule_name,
            workflow_name=info.name,
            schedule=schedule,
            context=context,
            automatic_backfill=automatic_backfill,
            cron_timezone=cron_timezone,
            queue_name=queue_name,
        )

    @staticmethod
    async def list_schedules(
        *,
        status: str | None = None,
        workflow_name: str | None = None,
        schedule_name_prefix: str | None = None,
    ) -> list[WorkflowSchedule]:
        """The stored schedules (not ``@DBOS.scheduled`` ones) by name, filtered by
        status (``"ACTIVE"``, ``"PAUSED"``), workflow name and name prefix."""
        return await _schedules.list_schedules(
            get_runtime(),
            status=status,
            workflow_name=workflow_name,
            schedule_name_prefix=schedule_name_prefix,
        )

    @staticmethod
    async def get_schedule(schedule_name: str) -> WorkflowSchedule | None:
        """The stored schedule of that name, or None."""
        return await _schedules.get_schedule(get_runtime(), schedule_name)

    @staticmethod
    async def delete_schedule(schedule_name: str) -> None:
        """Delete a stored schedule (nothing if there is none): no process starts its
        slots any more; its runs so far are kept."""
        await _schedules.delete_schedule(get_runtime(), schedule_name)

    @staticmethod
    async def pause_schedule(schedule_name: str) -> None:
        """Stop starting a stored schedule's slots in every process, until resumed.
        ``DBOSException`` if there is none."""
        await _schedules.pause_schedule(get_runtime(), schedule_name)

    @staticmethod
    async def resume_schedule(schedule_name: str) -> None:
        """Start a paused schedule's slots again from now on (with
        ``automatic_backfill``, first those missed since the latest one started)."""
        await _schedules.resume_schedule(get_runtime(), schedule_name)

    @staticmethod
    async def trigger_schedule(schedule_name: str) -> WorkflowHandle[Any]:
        """Run a stored schedule's workflow now, once, with ``scheduled_at`` now; returns
        its handle. Not from a workflow's code (as in DBOS Transact)."""
        _refuse_in_workflow("DBOS.trigger_schedule()")
        return await _schedules.trigger_schedule(get_runtime(), schedule_name)

    @staticmethod
    async def backfill_schedule(
        schedule: str | Callable[..., Any], start: datetime, end: datetime
    ) -> list[WorkflowHandle[Any]]:
        """Run the slots of a schedule from ``start`` (inclusive) to ``end`` (exclusive)
        that have not run (those missed while no process ran): ``schedule`` is a stored
        schedule's name, or a ``@DBOS.scheduled`` workflow (or its name). A slot that
        ran is not run again; returns the handles of every slot of the range. Not from a
        workflow's code (as in DBOS Transact)."""
        _refuse_in_workflow("DBOS.backfill_schedule()")
        rt = get_runtime()
        if isinstance(schedule, str):
            if await rt.sysdb.get_schedule(schedule) is None:
                entry = registry.schedules.get(schedule)
                if entry is not None:
                    return await _scheduler.backfill_entry(entry, start, end)
            return await _schedules.backfill_schedule(rt, schedule, start, end)
        return await backfill(schedule, start, end)

    create_schedule_async = create_schedule
    list_schedules_async = list_schedules
    get_schedule_async = get_schedule
    delete_schedule_async = delete_schedule
    pause_schedule_async = pause_schedule
    resume_schedule_async = resume_schedule
    trigger_schedule_async = trigger_schedule
    backfill_schedule_async = backfill_schedule

    # -- introspection ---------------------------------------------------------------

    @staticmethod
    def get_workflow_status(workflow_id: str) -> Coroutine[Any, Any, WorkflowStatus | None]:
        """The stored status of a workflow (it may run in another process), or None if no
        workflow has this ID. From a workflow's own code it is a step
        (``DBOS.getStatus``): a re-run gets the recorded status back."""
        check_workflow_id(workflow_id)
        return _management_steps.get_workflow_status(workflow_id)

    get_workflow_status_async = get_workflow_status

    @staticmethod
    def list_workflow_steps(workflow_id: str) -> Coroutine[Any, Any, list[StepInfo]]:
        """The recorded steps of a workflow, by step ID. From a workflow's own code it is
        a step (``DBOS.listWorkflowSteps``): a re-run gets the recorded list back."""
        check_workflow_id(workflow_id)
        return _management_steps.list_workflow_steps(workflow_id)

    list_workflow_steps_async = list_workflow_steps

    @staticmethod
    async def list_executors() -> list[ExecutorInfo]:
        """The processes that hold (``alive``) or held a lease on this database, oldest
        first, with how many PENDING workflows each owns."""
        return await _management.list_executors(get_runtime())

    list_executors_async = list_executors

    # -- management ------------------------------------------------------------------

    @staticmethod
    def list_workflows(
        *,
        workflow_ids: list[str] | None = None,
        status: str | list[str] | None = None,
        name: str | None = None,
        start_time: str | datetime | int | None = None,
        end_time: str | datetime | int | None = None,
        queue_name: str | None = None,
        parent_workflow_id: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        sort_desc: bool = False,
        load_input: bool = True,
        load_output: bool = True,
        workflow_id_prefix: str | None = None,
    ) -> Coroutine[Any, Any, list[WorkflowStatus]]:
        """Workflows matching every filter given, oldest first (``sort_desc``: newest).
        Times filter on creation: ISO 8601 strings, datetimes, or epoch ms;
        ``workflow_id_prefix`` keeps the workflows whose ID starts with it. From a
        workflow's own code it is a step (``DBOS.listWorkflows``): a re-run gets the
        recorded list back, whatever changed since."""
        check_workflow_filters(
            {
                "workflow_ids": workflow_ids,
                "parent_workflow_id": parent_workflow_id,
                "name": name,
                "queue_name": queue_name,
                "workflow_id_prefix": workflow_id_prefix,
            }
        )
        query = _management.workflow_query(
            workflow_ids=workflow_ids,
            status=status,
            name=name,
            start_time=start_time,
            end_time=end_time,
            queue_name=queue_name,
            parent_workflow_id=parent_workflow_id,
            limit=limit,
            offset=offset,
            sort_desc=sort_desc,
            workflow_id_prefix=workflow_id_prefix,
        )
        return _management_steps.list_workflows(
            "DBOS.listWorkflows", query, load_input=load_input, load_output=load_output
        )

    list_workflows_async = list_workflows

    @staticmethod
    def list_queued_workflows(
        queue_name: str | None = None,
        *,
        status: str | list[str] | None = None,
        name: str | None = None,
        start_time: str | datetime | int | None = None,
        end_time: str | datetime | int | None = None,
        limit: int | None = None,
        offset: int | None = None,
        sort_desc: bool = False,
        load_input: bool = True,
    ) -> Coroutine[Any, Any, list[WorkflowStatus]]:
        """Workflows on queues that have not finished (ENQUEUED or PENDING). From a
        workflow's own code it is a step (``DBOS.listQueuedWorkflows``)."""
        check_workflow_filters({"name": name, "queue_name": queue_name})
        query = _management.workflow_query(
            status=status if status is not None else ["ENQUEUED", "PENDING"],
            name=name,
            start_time=start_time,
            end_time=end_time,
            queue_name=queue_name,
            limit=limit,
            offset=offset,
            sort_desc=sort_desc,
            queued_only=True,
        )
        return _management_steps.list_workflows(
            "DBOS.listQueuedWorkflows", query, load_input=load_input, load_output=False
        )

    list_queued_workflows_async = list_queued_workflows

    @staticmethod
    def cancel_workflow(workflow_id: str) -> Coroutine[Any, Any, None]:
        """Cancel a workflow: it becomes CANCELLED at once and stops at its next step (a
        step or transaction running now finishes and is recorded; a wait is interrupted);
        awaiting it raises DBOSAwaitedWorkflowCancelledError at once. A finished workflow
        is left as it is. From a workflow's own code it is a step
        (``DBOS.cancelWorkflow``): a re-run does not cancel again."""
        check_workflow_id(workflow_id)
        refuse_in_transaction("DBOS.cancel_workflow()")
        return _management_steps.cancel_workflow(workflow_id)

    cancel_workflow_async = cancel_workflow

    @staticmethod
    def resume_workflow(workflow_id: str) -> Coroutine[Any, Any, WorkflowHandle[Any]]:
        """Run a CANCELLED or MAX_RECOVERY_ATTEMPTS_EXCEEDED workflow again from its last
        completed step: here, or, for a workflow of a queue, ENQUEUED on it again to run
        within its limits. Any other workflow is left as it is. From a workflow's own
        code it is a step (``DBOS.resumeWorkflow``, recording the ID): a re-run returns
        the handle without resuming again."""
        check_workflow_id(workflow_id)
        refuse_in_transaction("DBOS.resume_workflow()")
        return _management_steps.resume_workflow(workflow_id)

    resume_workflow_async = resume_workflow

    @staticmethod
    def fork_workflow(
        workflow_id: str, start_step: int, *, application_version: str | None = None
    ) -> Coroutine[Any, Any, WorkflowHandle[Any]]:
        """A new workflow (``forked_from`` set; ID from SetWorkflowID or a UUID) with the
        same function and inputs, reusing the recorded outputs of steps before
        ``start_step`` and running the rest again, on ``application_version`` (default:
        the latest version): here if that is this process's version, else in a live
        process of that version, which takes it over. From a workflow's own code it is a
        step (``DBOS.forkWorkflow``, recording the new ID): a re-run returns the handle
        without forking again."""
        check_workflow_id(workflow_id)
        if isinstance(start_step, bool) or not isinstance(start_step, int):
            raise TypeError(f"start_step must be an int, got {start_step!r}")
        refuse_in_transaction("DBOS.fork_workflow()")
        check_text(application_version, "application_version", optional=True)
        return _management_steps.fork_workflow(workflow_id, start_step, application_version)

    fork_workflow_async = fork_workflow

    # -- communication ---------------------------------------------------------------

    @staticmethod
    def send(
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
    ) -> Coroutine[Any, Any, None]:
        """Send a message to a workflow. From a workflow it is a step (never sent twice);
        from outside, ``idempotency_key`` makes repeated sends deliver once."""
        return _messaging.send(destination_id, message, topic, idempotency_key)

    send_async = send

    @staticmethod
    def recv(topic: str | None = None, timeout_seconds: float = 60) -> Coroutine[Any, Any, Any]:
        """The oldest unconsumed message on ``topic`` for this workflow, waiting up to
        ``timeout_seconds``; None on timeout. Workflows only."""
        return _messaging.recv(topic, timeout_seconds)

    recv_async = recv

    @staticmethod
    def set_event(key: str, value: Any) -> Coroutine[Any, Any, None]:
        """Publish (or replace) this workflow's event ``key``; from a workflow or a step."""
        return _messaging.set_event(key, value)

    set_event_async = set_event

    @staticmethod
    def get_event(
        workflow_id: str, key: str, timeout_seconds: float = 60
    ) -> Coroutine[Any, Any, Any]:
        """The latest value of a workflow's event, waiting for it up to
        ``timeout_seconds``; None on timeout."""
        return _messaging.get_event(workflow_id, key, timeout_seconds)

    get_event_async = get_event

    @staticmethod
    def get_all_events(workflow_id: str) -> Coroutine[Any, Any, dict[str, Any]]:
        """Every event a workflow has published, by key."""
        return _messaging.get_all_events(workflow_id)

    get_all_events_async = get_all_events

    @staticmethod
    def write_stream(key: str, value: Any) -> Coroutine[Any, Any, None]:
        """Append a value to this workflow's stream ``key``; from a workflow or a step."""
        return _messaging.write_stream(key, value)

    write_stream_async = write_stream

    @staticmethod
    def close_stream(key: str) -> Coroutine[Any, Any, None]:
        """Close this workflow's stream ``key``: its readers stop after the last value."""
        return _messaging.close_stream(key)

    close_stream_async = close_stream

    @staticmethod
    def read_stream(workflow_id: str, key: str) -> AsyncIterator[Any]:
        """``async for value in DBOS.read_stream(id, key)``: every value in order, live;
        ends when the stream is closed or the writing workflow has ended."""
        check_workflow_id(workflow_id)
        check_text(key, "key")
        return _messaging.read_stream(workflow_id, key)

    read_stream_async = read_stream

    # -- classes (issue 14) ------------------------------------------------------------

    dbos_class = staticmethod(_classes.dbos_class)
    """``@DBOS.dbos_class(class_name=None)`` on a class whose methods are workflows, steps
    or transactions: registers it under ``class_name`` (default: its ``__qualname__``),
    the name its method workflows are stored with (see ``DBOSConfiguredInstance``)."""

    @staticmethod
    def register_instance(inst: object) -> None:
        """Register an instance (with a ``config_name`` attribute) under its class's
        registered name and that name, as ``DBOSConfiguredInstance.__init__`` does: a
        recovered workflow of its methods runs on it. Another instance with the same
        names raises ``DBOSConfigError``."""
        _classes.register_instance(inst)

    # -- queues the DBOS way (issue 14) ------------------------------------------------

    @staticmethod
    def listen_queues(queues: Sequence[Queue | str]) -> None:
        """Before launch: run workers only for these queues (``Queue`` objects or names)
        in this process; the other queues it declares are registered, so others may
        enqueue on them, but their workflows run in processes that listen to them. Once
        per ``DBOS`` instance."""
        rt = current_runtime()
        if rt is None:
            raise DBOSException("no DBOS instance: create DBOS(config) before DBOS.listen_queues()")
        if rt.launched:
            raise DBOSException("DBOS.listen_queues() must be called before DBOS.launch()")
        if rt.listening_queues is not None:
            raise DBOSException("DBOS.listen_queues() was already called for this DBOS")
        if isinstance(queues, (str, Queue)) or not isinstance(queues, Sequence):
            raise TypeError(
                f"DBOS.listen_queues() takes a list of queues or queue names, got {queues!r}"
            )
        names = []
        for queue in queues:
            if isinstance(queue, Queue):
                names.append(queue.name)
            elif isinstance(queue, str) and queue:
                names.append(queue)
            else:
                raise TypeError(
                    f"DBOS.listen_queues(): {queue!r} is neither a Queue nor a queue name"
                )
        rt.listening_queues = frozenset(names)

    @staticmethod
    async def register_queue(
        name: str,
        *,
        worker_concurrency: int | None = None,
        global_concurrency: int | None = None,
        partition_concurrency: int | None = None,
        partition_worker_concurrency: int | None = None,
        partition_limiter: Mapping[str, float] | None = None,
        limiter: Mapping[str, float] | None = None,
        polling_interval_sec: float = 1.0,
        on_conflict: QueueConflictResolution = "update_if_latest_version",
        concurrency: int | None = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
    ) -> Queue:
        """Declare a queue at run time, stored in the database (DBOS Transact's
        database-backed queue): every launched process runs it, and its limits may change
        while it runs (``await queue.set_worker_concurrency(2)``). Before launch it is
        stored at launch. ``on_conflict`` decides what becomes of an existing queue of
        that name: ``"update_if_latest_version"`` (replace it if this process runs the
        newest application version), ``"always_update"`` or ``"never_update"``.
        ``concurrency`` is the older name of ``global_concurrency``; the ``partition_*``
        limits partition the queue (each key has its own) while the queue-wide ones
        still bound the whole queue, all enforced at once. Returns the queue as stored."""
        check_on_conflict(on_conflict, client=False)
        settings = declared_settings(
            name,
            worker_concurrency=worker_concurrency,
            global_concurrency=global_concurrency,
            partition_concurrency=partition_concurrency,
            partition_worker_concurrency=partition_worker_concurrency,
            partition_limiter=partition_limiter,
            limiter=limiter,
            polling_interval_sec=polling_interval_sec,
            concurrency=concurrency,
            priority_enabled=priority_enabled,
            partition_queue=partition_queue,
        )
        rt = current_runtime()
        if rt is None:
            raise DBOSException(
                "no DBOS instance: create DBOS(config) before DBOS.register_queue()"
            )
        return await _queue_admin.register_queue(rt, settings, on_conflict)

    @staticmethod
    async def retrieve_queue(name: str) -> Queue | None:
        """A queue registered at run time, as stored now, or None."""
        return await _queue_admin.retrieve_queue(get_runtime(), name)

    @staticmethod
    async def list_queues() -> list[Queue]:
        """Every queue registered at run time, by name (not those declared in code)."""
        return await _queue_admin.list_queues(get_runtime())

    @staticmethod
    async def delete_queue(name: str) -> None:
        """Delete a queue registered at run time (nothing if there is none): every
        process's worker of it stops, and its ENQUEUED workflows wait until a queue of
        that name is registered again."""
        await _queue_admin.delete_queue(get_runtime(), name)

    @staticmethod
    def enqueue_workflow(
        queue_name: str,
        func: Callable[P, Coroutine[Any, Any, R]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Coroutine[Any, Any, WorkflowHandle[R]]:
        """Enqueue a workflow on the queue named ``queue_name`` (declared in code or
        registered at run time), with the options of an enclosing ``SetEnqueueOptions``.
        A queue not registered yet is fine: the workflow waits, ENQUEUED, until it is.
        Inside a workflow the enqueued workflow is a child, as with ``Queue.enqueue``."""
        # (A step or transaction runs as its own workflow, as with start_workflow.)
        info = _run_step.as_workflow(_decorators.function_info(func))
        if info is None:
            raise TypeError(
                "DBOS.enqueue_workflow() needs a function decorated with @DBOS.workflow(), "
                f"got {func!r}"
            )
        # (A bound method, ``inst.wf`` or ``Cls.wf``, brings its receiver.)
        return enqueue_on(queue_name, info, _classes.with_bound_receiver(func, args), kwargs)

    @staticmethod
    def enqueue_workflow_with_options(
        options: EnqueueOptions, *args: Any, **kwargs: Any
    ) -> Coroutine[Any, Any, WorkflowHandle[Any]]:
        """Enqueue a workflow by its registered name, with the options
        ``DBOSClient.enqueue`` takes (``queue_name``, ``workflow_name``, ``workflow_id``,
        ``priority``, ``deduplication_id``, ``queue_partition_key``, ``delay_seconds``,
        ``workflow_timeout``, ``app_version``): the workflow may be implemented by another
        process of the same database. Inside a workflow it is a child. The arguments are
        not checked against a local function, and without ``app_version`` any
        application version's workers may run it."""
        parsed = _parse_enqueue_options(options, "DBOS.enqueue_workflow_with_options()")
        return enqueue_on(
            parsed.queue_name,
            named_workflow(parsed.workflow_name),
            args,
            kwargs,
            options=parsed.options,
            workflow_id=parsed.workflow_id,
            timeout_ms=parsed.timeout_ms,
            fixed_version=True,
        )

    register_queue_async = register_queue
    retrieve_queue_async = retrieve_queue
    list_queues_async = list_queues
    delete_queue_async = delete_queue
    enqueue_workflow_async = enqueue_workflow
    enqueue_workflow_with_options_async = enqueue_workflow_with_options

    # -- patching and application versions (issue 14) --

    @staticmethod
    def patch(patch_name: str) -> Coroutine[Any, Any, bool]:
        """``if await DBOS.patch(name):`` guards changed workflow code: True for an
        execution that takes the new code (a ``DBOS.patch-<name>`` marker step is recorded
        in its next step slot), False for one recorded before the patch (its next slot
        holds another step). Needs ``enable_patching`` in the configuration."""
        return _patching.patch(patch_name)

    patch_async = patch

    @staticmethod
    def deprecate_patch(patch_name: str) -> Coroutine[Any, Any, bool]:
        """True; replaces ``DBOS.patch(name)`` once no execution from before the patch is
        left: an execution that recorded the patch's marker passes it, none is recorded."""
        return _patching.deprecate_patch(patch_name)

    deprecate_patch_async = deprecate_patch

    @staticmethod
    async def list_application_versions() -> list[VersionInfo]:
        """Every application version a process launched with, the latest first."""
        return await _versions.list_application_versions(get_runtime())

    list_application_versions_async = list_application_versions

    @staticmethod
    async def get_latest_application_version() -> VersionInfo:
        """The latest application version: only its processes claim queued workflows that
        name no version, and a fork without a version runs on it."""
        return await _versions.get_latest_application_version(get_runtime())

    get_latest_application_version_async = get_latest_application_version

    @staticmethod
    async def set_latest_application_version(version_name: str) -> None:
        """Make a recorded application version the latest (its timestamp becomes now)."""
        refuse_in_transaction("DBOS.set_latest_application_version()")
        await _versions.set_latest_application_version(get_runtime(), version_name)

    set_latest_application_version_async = set_latest_application_version

    # -- bulk operations, run_step, send_bulk (issue 14) --------------------------------

    @staticmethod
    def send_bulk(messages: Sequence[SendMessage]) -> Coroutine[Any, Any, None]:
        """Send several messages (``SendMessage(destination_id, message, topic=None,
        idempotency_key=None)``) in one transaction: all are stored, or none (one unknown
        destination raises ``DBOSNonExistentWorkflowError`` and sends nothing). From a
        workflow it is one step (never sent twice); a message with an
        ``idempotency_key`` is delivered once per destination, topic and key; two
        messages of one call may not share a key. An empty list sends nothing."""
        return _send_bulk.send_bulk(messages)

    send_bulk_async = send_bulk

    @overload
    @staticmethod
    def run_step(
        dbos_step_options: Mapping[str, Any] | None,
        func: Callable[P, Coroutine[Any, Any, R]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Coroutine[Any, Any, R]: ...

    @overload
    @staticmethod
    def run_step(
        dbos_step_options: Mapping[str, Any] | None,
        func: Callable[P, R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Coroutine[Any, Any, R]: ...

    @staticmethod
    def run_step(
        dbos_step_options: Mapping[str, Any] | None,
        func: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Coroutine[Any, Any, Any]:
        """Run ``func(*args, **kwargs)`` (an ``async def`` or a plain ``def``, which runs
        in a worker thread) as a step with DBOS Transact's step options, a dict of
        ``name`` (default: the function's ``__qualname__``), ``retries_allowed``,
        ``max_attempts``, ``interval_seconds``, ``backoff_rate`` and ``preemptible``, as
        ``@DBOS.step(...)`` takes them. From a workflow its outcome is recorded and a
        re-run gets it back; elsewhere the function simply runs."""
        return _run_step.run_step(dbos_step_options, func, args, kwargs)

    run_step_async = run_step

    @staticmethod
    def cancel_workflows(
        workflow_ids: Sequence[str], *, cancel_children: bool = False
    ) -> Coroutine[Any, Any, None]:
        """Cancel each workflow as ``DBOS.cancel_workflow`` does; with ``cancel_children``
        their children too, recursively. An unknown ID raises
        ``DBOSNonExistentWorkflowError`` before anything is cancelled. From a workflow it
        is a step (``DBOS.cancelWorkflow``)."""
        ids = _bulk_management.checked_ids(workflow_ids, "DBOS.cancel_workflows()")
        refuse_in_transaction("DBOS.cancel_workflows()")

        async def run() -> None:
            rt = get_runtime()
            await _bulk_management.cancel_workflows(rt, ids, cancel_children=cancel_children)

        return builtin_step("DBOS.cancelWorkflow", run)

    cancel_workflows_async = cancel_workflows

    @staticmethod
    def resume_workflows(
        workflow_ids: Sequence[str],
    ) -> Coroutine[Any, Any, list[WorkflowHandle[Any]]]:
        """Resume each workflow as ``DBOS.resume_workflow`` does and return their handles,
        in order. An unknown ID raises ``DBOSNonExistentWorkflowError`` before anything is
        resumed. From a workflow it is a step (``DBOS.resumeWorkflow``)."""
        ids = _bulk_management.checked_ids(workflow_ids, "DBOS.resume_workflows()")
        refuse_in_transaction("DBOS.resume_workflows()")

        async def run() -> None:
            await _bulk_management.require_workflows(get_runtime(), ids)
            rt = get_runtime()
            for workflow_id in ids:
                await _management_steps.resume_here(rt, workflow_id)

        async def handles(step: Coroutine[Any, Any, None]) -> list[WorkflowHandle[Any]]:
            await step
            rt = get_runtime()
            return [WorkflowHandle(rt, workflow_id) for workflow_id in ids]

        return handles(builtin_step("DBOS.resumeWorkflow", run, type(None)))

    resume_workflows_async = resume_workflows

    @staticmethod
    def delete_workflows(
        workflow_ids: Sequence[str], *, delete_children: bool = False
    ) -> Coroutine[Any, Any, None]:
        """Delete workflows for good, with everything stored for them (steps, messages
        to them, events, streams, transaction outputs); with ``delete_children`` their
        children too, recursively. Unknown IDs are skipped. A running workflow is
        stopped as a cancel stops it. From a workflow it is a step
        (``DBOS.deleteWorkflow``)."""
        ids = _bulk_management.checked_ids(workflow_ids, "DBOS.delete_workflows()")
        refuse_in_transaction("DBOS.delete_workflows()")

        async def run() -> None:
            await _bulk_management.delete_workflows(
                get_runtime(), ids, delete_children=delete_children, application_database=True
            )

        return builtin_step("DBOS.deleteWorkflow", run, type(None))

    delete_workflows_async = delete_workflows

    @staticmethod
    def delete_workflow(
        workflow_id: str, *, delete_children: bool = False
    ) -> Coroutine[Any, Any, None]:
        """``DBOS.delete_workflows([workflow_id], delete_children=...)``."""
        check_workflow_id(workflow_id)
        return DBOS.delete_workflows([workflow_id], delete_children=delete_children)

    delete_workflow_async = delete_workflow
