"""Operating workflows: list, cancel, resume and fork them.

Each operation changes the stored workflow and returns the changed row; what runs it
afterwards is the caller's business: ``DBOS`` runs a resumed or forked workflow in its own
process, ``DBOSClient`` announces it to the executor it belongs to.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ._clock import now_ms
from ._context import new_workflow_id, take_assigned_workflow_id
from ._errors import DBOSNonExistentWorkflowError
from ._handle import status_of
from ._runtime import Runtime
from ._status import ExecutorInfo, WorkflowStatus, WorkflowStatusString
from ._versions import latest_version_name
from .sysdb import StepRow, WorkflowQuery, WorkflowRow

__all__ = [
    "cancel_workflow",
    "fork_workflow",
    "list_executors",
    "list_workflow_rows",
    "list_workflows",
    "resume_workflow",
    "to_epoch_ms",
    "workflow_query",
]


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


def workflow_query(
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
    queued_only: bool = False,
    workflow_id_prefix: str | None = None,
) -> WorkflowQuery:
    """The query of ``list_workflows``' filters; a bad filter raises here, before any read."""
    return WorkflowQuery(
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
        workflow_id_prefix=workflow_id_prefix,
    )


async def list_workflow_rows(
    rt: Runtime, query: WorkflowQuery, *, load_input: bool, load_output: bool
) -> list[WorkflowRow]:
    """The stored rows ``query`` matches, without their inputs (``load_input`` False) or
    outputs and errors (``load_output`` False)."""
    rows = await rt.sysdb.list_workflows(query)
    for row in rows:
        if not load_input:
            row.inputs = None
        if not load_output:
            row.output = None
            row.error = None
    return rows


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
    workflow_id_prefix: str | None = None,
) -> list[WorkflowStatus]:
    """The workflows matching every filter given (see ``workflow_query``)."""
    query = workflow_query(
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
        queued_only=queued_only,
        workflow_id_prefix=workflow_id_prefix,
    )
    rows = await list_workflow_rows(rt, query, load_input=load_input, load_output=load_output)
    return [status_of(rt, row) for row in rows]


async def list_executors(rt: Runtime) -> list[ExecutorInfo]:
    """The processes that hold or held a lease on this database, oldest first."""
    return [
        ExecutorInfo(
            executor_id=e.executor_id,
            hostname=e.hostname,
            pid=e.pid,
            application_version=e.application_version,
            started_at=e.started_at,
            last_heartbeat_at=e.last_heartbeat_at,
            alive=e.alive,
            workflows=e.workflows,
            process_id=e.process_id,
            lease_expires_at=e.lease_expires_at,
        )
        for e in await rt.sysdb.list_executors()
    ]


async def cancel_workflow(rt: Runtime, workflow_id: str) -> WorkflowRow:
    """Mark a PENDING or ENQUEUED workflow CANCELLED (any other is left as it is) and stop
    it if it runs here; other processes stop theirs when they hear of it (notification or
    poll). Returns its row as it now is."""
    row = await rt.sysdb.cancel_workflow(workflow_id, now_ms())
    if row is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    if row.status == WorkflowStatusString.CANCELLED:
        rt.live.stop(workflow_id)
    return row


async def resume_workflow(
    rt: Runtime, workflow_id: str, *, executor_id: str | None
) -> WorkflowRow | None:
    """Make a CANCELLED or dead-lettered workflow runnable again from its last completed
    step: a workflow of a queue goes back to ENQUEUED on it (a worker claims it within the
    queue's limits); any other becomes PENDING on ``executor_id`` (None: on its own
    executor), for the caller to run or announce. Returns that row, or None if the
    workflow was left as it was (any other status)."""
    current = await rt.sysdb.get_workflow(workflow_id)
    if current is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    if current.status == WorkflowStatusString.CANCELLED and workflow_id in rt.live:
        # Its cancelled run here may still be finishing a step: let it record and stop
        # first, so the resumed run finds that step recorded and never runs it again.
        rt.live.stop(workflow_id)
        await rt.live.ended(workflow_id)
    executor = executor_id or current.executor_id or rt.executor_id
    changed, row = await rt.sysdb.resume_workflow(workflow_id, executor, now_ms())
    if row is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    # (A resume clears the deadline: the workflow runs without one. One of a queue gets
    # a new one from its own timeout when a worker claims it, as any enqueued one does.)
    return row if changed else None


async def fork_workflow(
    rt: Runtime,
    workflow_id: str,
    start_step: int,
    *,
    application_version: str | None,
    executor_id: str | None,
) -> tuple[WorkflowRow, list[StepRow]]:
    """Store a new PENDING workflow (on ``executor_id``; None: the source's executor) with
    the same function and inputs as ``workflow_id``, reusing the recorded outputs of its
    steps before ``start_step``, on ``application_version`` (None: the latest version, as
    DBOS Transact's fork leaves it to the latest version's workers; the source's if no
    version is recorded). It belongs to this process if that is its version (and this is
    a process), else to no one, for a live process of its version to take over. Returns
    the new row and those steps, for the caller to run it (if it is the owner) or
    announce it."""
    if isinstance(start_step, bool) or not isinstance(start_step, int):
        raise TypeError(f"start_step must be an int, got {start_step!r}")
    source = await rt.sysdb.get_workflow(workflow_id)
    if source is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    if start_step < 1:
        raise ValueError(
            f"cannot fork workflow {workflow_id!r} at step {start_step}: steps are "
            "numbered from 1, so start_step must be at least 1"
        )
    version = application_version or await latest_version_name(rt) or source.application_version
    now = now_ms()
    row = WorkflowRow(
        workflow_id=take_assigned_workflow_id() or new_workflow_id(),
        status=WorkflowStatusString.PENDING.value,
        name=source.name,
        inputs=source.inputs,
        output=None,
        error=None,
        executor_id=executor_id or source.executor_id,
        application_version=version,
        created_at=now,
        updated_at=now,
        forked_from=workflow_id,
        workflow_timeout_ms=source.workflow_timeout_ms,
        # A process runs a fork of its own version itself; a client's, or one of another
        # version, is left for a live process of that version to take over.
        owner=rt.sysdb.owner if version == rt.app_version else None,
        # (A method workflow's fork runs on the same class or instance, by name.)
        class_name=source.class_name,
        config_name=source.config_name,
    )
    await rt.sysdb.fork_workflow(workflow_id, row, start_step)
    # The steps the fork copied, read back: a start_step past the last recorded step
    # reuses every recorded output (DBOS's meaning), and the source may still be running,
    # so only the copy says which outputs the fork has.
    return row, await rt.sysdb.load_steps(row.workflow_id)
