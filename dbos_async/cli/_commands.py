"""The ``dbos-async`` commands: each takes a ``DBOSClient`` (``migrate``: the database
URLs) and the parsed arguments, and returns the ``Result`` to print."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any

from .._errors import DBOSNonExistentWorkflowError
from .._status import StepInfo, WorkflowStatus, WorkflowStatusString
from .._urls import redact_url
from ..client import DBOSClient
from ..sysdb import latest_schema_version, open_databases
from ._output import (
    NONE,
    Result,
    describe,
    error_text,
    iso_time,
    short,
    status_json,
    step_json,
    table,
    text,
)

__all__ = [
    "DatabaseUrls",
    "cancel_workflow",
    "delete_workflow",
    "fork_workflow",
    "get_workflow",
    "list_queued",
    "list_steps",
    "list_workflows",
    "migrate",
    "resume_workflow",
]

_RESUMABLE = (WorkflowStatusString.CANCELLED, WorkflowStatusString.MAX_RECOVERY_ATTEMPTS_EXCEEDED)


@dataclass(frozen=True)
class DatabaseUrls:
    """The validated URLs of the application and system databases."""

    database: str
    system: str


async def _require(client: DBOSClient, workflow_id: str) -> WorkflowStatus:
    status = await client.get_workflow_status(workflow_id)
    if status is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    return status


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    """The ``list_workflows`` keyword filters shared by ``workflow list`` and ``queue list``."""
    return {
        "status": args.status,
        "name": args.name,
        "start_time": args.start_time,
        "end_time": args.end_time,
        "limit": args.limit,
        "offset": args.offset,
        "sort_desc": args.sort_desc,
        "load_input": args.load_input,
    }


def _workflow_row(status: WorkflowStatus, args: argparse.Namespace) -> list[str]:
    row = [
        status.workflow_id,
        status.status.value,
        status.name,
        iso_time(status.created_at),
        iso_time(status.updated_at),
        status.queue_name or NONE,
        status.executor_id or NONE,
        status.app_version or NONE,
        str(status.recovery_attempts),
    ]
    if args.load_input:
        row.append(short(status.input))
    if getattr(args, "load_output", False):
        row += [short(status.output), short(error_text(status.error))]
    return row


def _workflow_table(statuses: list[WorkflowStatus], args: argparse.Namespace) -> str:
    headers = ["ID", "STATUS", "NAME", "CREATED", "UPDATED", "QUEUE", "EXECUTOR", "VERSION"]
    headers.append("RECOVERY ATTEMPTS")
    if args.load_input:
        headers.append("INPUT")
    if getattr(args, "load_output", False):
        headers += ["OUTPUT", "ERROR"]
    rows = [_workflow_row(s, args) for s in statuses]
    return table(headers, rows, "No workflows found.")


async def list_workflows(client: DBOSClient, args: argparse.Namespace) -> Result:
    statuses = await client.list_workflows(
        **_filters(args),
        queue_name=args.queue,
        parent_workflow_id=args.parent,
        load_output=args.load_output,
    )
    return Result([status_json(s) for s in statuses], _workflow_table(statuses, args))


async def list_executors(client: DBOSClient, args: argparse.Namespace) -> Result:
    executors = await client.list_executors()
    rows = [
        [
            e.executor_id,
            e.hostname,
            str(e.pid),
            e.application_version,
            iso_time(e.started_at),
            iso_time(e.last_heartbeat_at),
            "yes" if e.alive else "no",
            str(e.workflows),
        ]
        for e in executors
    ]
    headers = ["EXECUTOR", "HOST", "PID", "VERSION", "STARTED", "HEARTBEAT", "ALIVE", "PENDING"]
    return Result(
        [dataclasses.asdict(e) for e in executors],
        table(headers, rows, "No executors found."),
    )


async def list_queued(client: DBOSClient, args: argparse.Namespace) -> Result:
    filters = _filters(args)
    if filters["status"] is None:
        del filters["status"]  # the client's default: ENQUEUED and PENDING
    statuses = await client.list_queued_workflows(args.queue, **filters)
    return Result([status_json(s) for s in statuses], _workflow_table(statuses, args))


def _ms(value: int | None) -> str:
    return NONE if value is None else f"{value} ms"


def _describe_status(s: WorkflowStatus) -> str:
    return describe(
        [
            ("ID", s.workflow_id),
            ("Status", s.status.value),
            ("Name", s.name),
            ("Class", s.class_name or NONE),
            ("Instance", s.config_name or NONE),
            ("Created", iso_time(s.created_at)),
            ("Updated", iso_time(s.updated_at)),
            ("Queue", s.queue_name or NONE),
            ("Executor", s.executor_id or NONE),
            ("Application version", s.app_version or NONE),
            ("Recovery attempts", str(s.recovery_attempts)),
            ("Parent workflow", s.parent_workflow_id or NONE),
            ("Forked from", s.forked_from or NONE),
            ("Timeout", _ms(s.workflow_timeout_ms)),
            ("Deadline", iso_time(s.workflow_deadline_epoch_ms)),
            ("Priority", str(s.priority)),
            ("Deduplication ID", s.deduplication_id or NONE),
            ("Input", text(s.input)),
            ("Output", text(s.output)),
            ("Error", error_text(s.error)),
        ]
    )


async def get_workflow(client: DBOSClient, args: argparse.Namespace) -> Result:
    status = await _require(client, args.workflow_id)
    return Result(status_json(status), _describe_status(status))


def _step_row(step: StepInfo) -> list[str]:
    duration = (
        _ms(step.completed_at_epoch_ms - step.started_at_epoch_ms)
        if step.started_at_epoch_ms is not None and step.completed_at_epoch_ms is not None
        else NONE
    )
    return [
        str(step.function_id),
        step.function_name,
        short(step.output) if step.error is None else NONE,
        short(error_text(step.error)),
        step.child_workflow_id or NONE,
        iso_time(step.started_at_epoch_ms),
        duration,
    ]


async def list_steps(client: DBOSClient, args: argparse.Namespace) -> Result:
    await _require(client, args.workflow_id)
    steps = await client.list_workflow_steps(args.workflow_id)
    headers = ["STEP", "NAME", "OUTPUT", "ERROR", "CHILD WORKFLOW", "STARTED", "DURATION"]
    rendered = table(headers, [_step_row(s) for s in steps], "No steps recorded.")
    return Result([step_json(s) for s in steps], rendered)


async def cancel_workflow(client: DBOSClient, args: argparse.Namespace) -> Result:
    workflow_id = args.workflow_id
    await client.cancel_workflow(workflow_id)
    after = await _require(client, workflow_id)
    if after.status == WorkflowStatusString.CANCELLED:
        message = f"Workflow {workflow_id} cancelled."
    else:
        message = f"Workflow {workflow_id} was not cancelled: it is {after.status.value}."
    return Result(status_json(after), message)


async def resume_workflow(client: DBOSClient, args: argparse.Namespace) -> Result:
    workflow_id = args.workflow_id
    before = await _require(client, workflow_id)
    await client.resume_workflow(workflow_id)
    after = await _require(client, workflow_id)
    if before.status in _RESUMABLE and after.status == WorkflowStatusString.PENDING:
        message = (
            f"Workflow {workflow_id} resumed: PENDING on executor {after.executor_id or NONE}, "
            "which runs it on from its last completed step when it next launches."
        )
    else:
        message = (
            f"Workflow {workflow_id} was not resumed: it is {after.status.value}; only "
            f"{' or '.join(s.value for s in _RESUMABLE)} workflows can be resumed."
        )
    return Result(status_json(after), message)


async def delete_workflow(client: DBOSClient, args: argparse.Namespace) -> Result:
    workflow_id = args.workflow_id
    await _require(client, workflow_id)
    await client.delete_workflow(workflow_id, delete_children=args.delete_children)
    message = f"Workflow {workflow_id} deleted, with its steps, messages, events and streams."
    if args.delete_children:
        message += " Its child workflows were deleted too (recursively)."
    data = {"workflow_id": workflow_id, "deleted": True, "delete_children": args.delete_children}
    return Result(data, message)


async def fork_workflow(client: DBOSClient, args: argparse.Namespace) -> Result:
    handle = await client.fork_workflow(
        args.workflow_id, args.step, application_version=args.application_version
    )
    fork = await _require(client, handle.workflow_id)
    message = (
        f"Forked workflow {args.workflow_id} at step {args.step}: new workflow "
        f"{fork.workflow_id}, PENDING on executor {fork.executor_id or NONE} (version "
        f"{fork.app_version or NONE}), which runs it when it next launches."
    )
    return Result(status_json(fork), message)


async def migrate(urls: DatabaseUrls, args: argparse.Namespace) -> Result:
    """Connect both databases (connecting creates or upgrades their tables), then close."""
    system, app = open_databases(urls.system, urls.database, pool_size=1, connect_timeout=10.0)
    async with contextlib.AsyncExitStack() as stack:
        for database in (system, app):
            stack.push_async_callback(database.close)  # closing a failed connect is safe
            await database.connect()
    databases = [
        {"role": "system", "url": redact_url(urls.system), "schema_version": 0},
        {"role": "application", "url": redact_url(urls.database), "schema_version": 0},
    ]
    for entry, url, component in zip(
        databases, (urls.system, urls.database), ("system", "app"), strict=True
    ):
        entry["schema_version"] = latest_schema_version(url, component)
    lines = [
        f"Database {d['url']} ({d['role']} tables, schema version {d['schema_version']}): "
        "up to date."
        for d in databases
    ]
    return Result({"databases": databases, "up_to_date": True}, "\n".join(lines))
