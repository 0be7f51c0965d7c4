"""Operating workflows: list, cancel, resume, fork, and stopping cancelled workflows that
run in this process when another process cancels them."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from typing import Any

from ._context import new_workflow_id, take_assigned_workflow_id
from ._errors import DBOSNonExistentWorkflowError
from ._handle import WorkflowHandle, status_of
from ._registry import registry
from ._runner import launch_recorded, stop_cancelled
from ._runtime import Runtime
from ._status import WorkflowStatus, WorkflowStatusString
from .sysdb import RecoveryRequest, WorkflowQuery, WorkflowRow, notification_key

__all__ = [
    "CancelWatcher",
    "fork_workflow",
    "list_workflows",
    "resume_workflow",
    "to_epoch_ms",
]

log = logging.getLogger("dbos_async")


def _now_ms() -> int:
    return int(time.time() * 1000)


def to_epoch_ms(value: str | dt.datetime | int | float | None, what: str) -> int | None:
    """A time filter as epoch ms: an ISO 8601 string, a datetime (naive means UTC), or a
    number of epoch milliseconds."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an ISO 8601 string, a datetime or epoch ms")
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{what} {value!r} is not an ISO 8601 time") from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(value.timestamp() * 1000)
    raise TypeError(f"{what} must be an ISO 8601 string, a datetime or epoch ms")


def _statuses(status: str | list[str] | None) -> list[str] | None:
    if status is None:
        return None
    values = [status] if isinstance(status, str) else list(status)
    known = {s.value for s in WorkflowStatusString}
    for value in values:
        if value not in known:
            raise ValueError(
                f"unknown workflow status {value!r}; one of {', '.join(sorted(known))}"
            )
    return [str(WorkflowStatusString(v).value) for v in values]


def _non_negative(value: int | None, what: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return value


async def list_workflows(
    rt: Runtime,
    *,
    workflow_ids: list[str] | None = None,
    status: str | list[str] | None = None,
    name: str | None = None,
    start_time: Any = None,
    end_time: Any = None,
    queue_name: str | None = None,
    parent_workflow_id: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
    sort_desc: bool = False,
    load_input: bool = True,
    load_output: bool = True,
    queued_only: bool = False,
) -> list[WorkflowStatus]:
    query = WorkflowQuery(
        workflow_ids=list(workflow_ids) if workflow_ids is not None else None,
        statuses=_statuses(status),
        name=name,
        start_ms=to_epoch_ms(start_time, "start_time"),
        end_ms=to_epoch_ms(end_time, "end_time"),
        queue_name=queue_name,
        parent_workflow_id=parent_workflow_id,
        queued_only=queued_only,
        limit=_non_negative(limit, "limit"),
        offset=_non_negative(offset, "offset"),
        sort_desc=sort_desc,
    )
    rows = await rt.sysdb.list_workflows(query)
    for row in rows:
        if not load_input:
            row.inputs = None
        if not load_output:
            row.output = None
            row.error = None
    return [status_of(rt, row) for row in rows]


async def resume_workflow(rt: Runtime, workflow_id: str, *, run_here: bool) -> WorkflowHandle[Any]:
    """Run a CANCELLED or dead-lettered workflow again from its last completed step. A
    workflow of a queue goes back to ENQUEUED on it, so it runs within the queue's limits
    once a worker claims it; any other runs at once (here if ``run_here``, else on its
    executor). Any other workflow is left as it is."""
    current = await rt.sysdb.get_workflow(workflow_id)
    if current is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    previous = rt.active.get(workflow_id)
    if previous is not None and current.status == WorkflowStatusString.CANCELLED:
        # Its cancelled run here may still be finishing a step: let it record and stop
        # first, so the resumed run finds that step recorded and never runs it again.
        stop_cancelled(rt, workflow_id)
        await run_ended(workflow_id, previous[1])
    executor = rt.executor_id if run_here else (current.executor_id or rt.executor_id)
    changed, row = await rt.sysdb.resume_workflow(workflow_id, executor, _now_ms())
    if row is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    if not changed:
        pass
    elif row.status == WorkflowStatusString.ENQUEUED:
        # Back on its queue: a worker claims it within the queue's limits (this process's
        # worker is woken here, other processes' by the resume's notification).
        rt.notifier.notify(notification_key("queue", row.queue_name or "", ""))
    elif run_here:
        # (The resume cleared its deadline: it runs without one. A resumed workflow of a
        # queue gets a new one from its own timeout when a worker claims it, as any
        # enqueued workflow does.)
        launch_recorded(rt, row, await rt.sysdb.load_steps(workflow_id))
    else:
        await rt.sysdb.announce(notification_key("run", workflow_id, ""))
    return WorkflowHandle(rt, workflow_id)


async def fork_workflow(
    rt: Runtime,
    workflow_id: str,
    start_step: int,
    *,
    application_version: str | None = None,
    run_here: bool,
) -> WorkflowHandle[Any]:
    """Start a new workflow with the same function and inputs that reuses the recorded
    outputs of the source's steps before ``start_step`` and runs the rest again."""
    if isinstance(start_step, bool) or not isinstance(start_step, int):
        raise TypeError(f"start_step must be an int, got {start_step!r}")
    source = await rt.sysdb.get_workflow(workflow_id)
    if source is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    steps = await rt.sysdb.load_steps(workflow_id)
    last = max((s.function_id for s in steps), default=0)
    if not 1 <= start_step <= last + 1:
        raise ValueError(
            f"cannot fork workflow {workflow_id!r} at step {start_step}: it has {last} "
            f"recorded steps, so start_step must be between 1 and {last + 1}"
        )
    now = _now_ms()
    row = WorkflowRow(
        workflow_id=take_assigned_workflow_id() or new_workflow_id(),
        status=WorkflowStatusString.PENDING.value,
        name=source.name,
        inputs=source.inputs,
        output=None,
        error=None,
        executor_id=rt.executor_id if run_here else source.executor_id,
        application_version=application_version or source.application_version,
        created_at=now,
        updated_at=now,
        forked_from=workflow_id,
        workflow_timeout_ms=source.workflow_timeout_ms,
    )
    await rt.sysdb.fork_workflow(workflow_id, row, start_step)
    if run_here:
        launch_recorded(rt, row, [s for s in steps if s.function_id < start_step])
    else:
        await rt.sysdb.announce(notification_key("run", row.workflow_id, ""))
    return WorkflowHandle(rt, row.workflow_id)


async def run_ended(workflow_id: str, task: asyncio.Task[None]) -> None:
    """Wait for a cancelled run of this process to end (it ends once the step it was
    running has recorded), however long that step takes."""
    done, _ = await asyncio.wait({task}, timeout=5.0)
    if not done:
        log.warning("workflow %s: waiting for its cancelled run to finish a step", workflow_id)
        await asyncio.wait({task})


async def take_over(rt: Runtime, workflow_id: str) -> None:
    """Run a workflow that a client resumed or forked for this executor: claimed with the
    recovery claim, so of several processes sharing an executor ID only one runs it. A
    cancelled run of it still finishing a step here ends first."""
    previous = rt.active.get(workflow_id)
    if previous is not None:
        if not previous[0].cancelled:
            return
        await run_ended(workflow_id, previous[1])
    row = await rt.sysdb.get_workflow(workflow_id)
    if (
        row is None
        or row.status != WorkflowStatusString.PENDING
        or row.executor_id != rt.executor_id
        or row.application_version != rt.app_version
        or workflow_id in rt.active
    ):
        return
    info = registry.workflows.get(row.name)
    if info is None:
        return
    limit = info.options["max_recovery_attempts"]
    claims = await rt.sysdb.claim_for_recovery(
        [RecoveryRequest(workflow_id, row.recovery_attempts, limit)], _now_ms()
    )
    for claim in claims:
        if not claim.exceeded and workflow_id not in rt.active:
            launch_recorded(rt, claim.row, await rt.sysdb.load_steps(workflow_id))


class CancelWatcher:
    """Stops workflows of this process that another process cancelled, and runs those a
    client resumed or forked for it: woken by notifications where the backend has them;
    cancellations are also checked on a timer."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        self._rt.notifier.hooks["cancel"] = self._on_cancel
        self._rt.notifier.hooks["run"] = self._on_run_request
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _on_cancel(self, workflow_id: str | None) -> None:
        if workflow_id is None or workflow_id in self._rt.active:
            self._wake.set()

    def _on_run_request(self, workflow_id: str | None) -> None:
        if workflow_id is not None:
            self._rt.spawn(self._take_over(workflow_id))

    async def _take_over(self, workflow_id: str) -> None:
        try:
            await take_over(self._rt, workflow_id)
        except Exception as exc:  # it stays PENDING for this executor's next launch
            log.warning("could not take over workflow %s: %r", workflow_id, exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        interval = 2.0 if self._rt.notifier.push else 1.0
        while True:
            await self._rt.notifier.wait(self._wake, interval)
            running = list(self._rt.active)
            if not running:
                continue
            try:
                cancelled = await self._rt.sysdb.cancelled_among(running)
            except Exception as exc:  # a lost connection: try again next time
                log.warning("could not check for cancelled workflows: %r", exc)
                continue
            for workflow_id in cancelled:
                stop_cancelled(self._rt, workflow_id)
