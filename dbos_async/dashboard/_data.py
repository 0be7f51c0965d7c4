"""What the dashboard reads and does, from a launched ``DBOS`` or a ``DBOSClient``.

Reads go straight to the system database through the management layer, as raw rows,
and values are decoded one by one (only when the dashboard shows values), so a value
that cannot be decoded spoils one cell, not the page. Actions go through the public
calls of the source, so a resumed or forked workflow runs where those calls run it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .. import _management
from .._dbos import DBOS
from .._runtime import Runtime, get_runtime
from .._status import ExecutorInfo, WorkflowStatusString
from ..client import DBOSClient
from ..sysdb import QueueActivity, QueueInfo, StepRow, StreamEntry, WorkflowRow

__all__ = [
    "ClientSource",
    "Detail",
    "ListFilters",
    "ProcessSource",
    "QueueView",
    "Source",
    "list_rows",
    "queue_views",
    "workflow_detail",
]

#: How many stream values a workflow page reads at most.
STREAM_VALUES = 500


class Source:
    """Where the dashboard's data comes from and where its actions go."""

    async def runtime(self) -> Runtime:
        raise NotImplementedError

    async def cancel(self, workflow_id: str) -> None:
        raise NotImplementedError

    async def resume(self, workflow_id: str) -> None:
        raise NotImplementedError

    async def fork(self, workflow_id: str, start_step: int) -> str:
        """Fork, returning the new workflow's ID."""
        raise NotImplementedError

    async def executors(self) -> list[ExecutorInfo]:
        return await _management.list_executors(await self.runtime())


class ProcessSource(Source):
    """The ``DBOS`` launched in this process (the dashboard mounted in its app)."""

    async def runtime(self) -> Runtime:
        return get_runtime()

    async def cancel(self, workflow_id: str) -> None:
        await DBOS.cancel_workflow(workflow_id)

    async def resume(self, workflow_id: str) -> None:
        await DBOS.resume_workflow(workflow_id)

    async def fork(self, workflow_id: str, start_step: int) -> str:
        return (await DBOS.fork_workflow(workflow_id, start_step)).workflow_id


class ClientSource(Source):
    """A ``DBOSClient`` (``dbos-async dashboard``, or an app that runs no workflows)."""

    def __init__(self, client: DBOSClient) -> None:
        self.client = client

    async def runtime(self) -> Runtime:
        return await self.client._rt()

    async def cancel(self, workflow_id: str) -> None:
        await self.client.cancel_workflow(workflow_id)

    async def resume(self, workflow_id: str) -> None:
        await self.client.resume_workflow(workflow_id)

    async def fork(self, workflow_id: str, start_step: int) -> str:
        return (await self.client.fork_workflow(workflow_id, start_step)).workflow_id


# -- decoding values ---------------------------------------------------------------------


def show_value(value: Any) -> str:
    """A decoded value as readable text: JSON where it is JSON, else its ``repr``."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        return repr(value)


def decoded(rt: Runtime, text: str | None) -> str:
    """A stored value shown as text, or why it cannot be."""
    try:
        return show_value(rt.codec.loads(text))
    except Exception as exc:
        return f"(cannot decode: {type(exc).__name__}: {exc})"


def decoded_error(rt: Runtime, text: str) -> str:
    """A stored error as ``Type: message`` (a step out of retries says how many times it
    failed, and why)."""
    try:
        error = rt.codec.load_error(text)
    except Exception as exc:
        return f"(cannot decode the error: {type(exc).__name__}: {exc})"
    return f"{type(error).__name__}: {error}"


# -- the workflow list -------------------------------------------------------------------


@dataclass
class ListFilters:
    """The list page's filters (already checked); None means no filter."""

    statuses: list[str] | None = None
    name: str | None = None
    queue_name: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    prefix: str | None = None
    page: int = 0
    page_size: int = 50


async def list_rows(rt: Runtime, filters: ListFilters) -> tuple[list[WorkflowRow], bool]:
    """One page of workflows, newest first, and whether another page follows."""
    query = _management.workflow_query(
        status=filters.statuses,
        name=filters.name,
        queue_name=filters.queue_name,
        start_time=filters.start_ms,
        end_time=filters.end_ms,
        workflow_id_prefix=filters.prefix,
        limit=filters.page_size + 1,
        offset=filters.page * filters.page_size,
        sort_desc=True,
    )
    rows = await _management.list_workflow_rows(rt, query, load_input=False, load_output=False)
    return rows[: filters.page_size], len(rows) > filters.page_size


# -- one workflow ----------------------------------------------------------------------


@dataclass
class Detail:
    """Everything the workflow page shows."""

    row: WorkflowRow
    steps: list[StepRow]
    children: dict[str, WorkflowRow]
    events: dict[str, str]
    streams: dict[str, list[StreamEntry]]
    #: Decoded values, present only when the dashboard shows values.
    inputs: str | None = None
    output: str | None = None
    error: str | None = None
    step_outputs: dict[int, str] = field(default_factory=dict)
    step_errors: dict[int, str] = field(default_factory=dict)
    event_values: dict[str, str] = field(default_factory=dict)
    stream_values: dict[str, list[str]] = field(default_factory=dict)


async def workflow_detail(rt: Runtime, workflow_id: str, show_values: bool) -> Detail | None:
    """The workflow's row, steps, children, events and streams; None if unknown."""
    row = await rt.sysdb.get_workflow(workflow_id)
    if row is None:
        return None
    steps = await rt.sysdb.load_steps(workflow_id)
    # The children are the workflows its steps started (found by ID: the status table has
    # no index on the parent, and a page that refreshes itself must not scan it).
    child_ids = [s.child_workflow_id for s in steps if s.child_workflow_id is not None]
    children: dict[str, WorkflowRow] = {}
    if child_ids:
        query = _management.workflow_query(workflow_ids=child_ids)
        children = {c.workflow_id: c for c in await rt.sysdb.list_workflows(query)}
    detail = Detail(
        row=row,
        steps=steps,
        children=children,
        events=await rt.sysdb.get_all_events(workflow_id),
        streams=await rt.sysdb.workflow_streams(workflow_id, STREAM_VALUES),
    )
    # Errors are shown always (an operator needs them); values only when enabled.
    if row.error is not None:
        detail.error = decoded_error(rt, row.error)
    for step in steps:
        if step.error is not None:
            detail.step_errors[step.function_id] = decoded_error(rt, step.error)
    if show_values:
        detail.inputs = decoded(rt, row.inputs)
        if row.status == WorkflowStatusString.SUCCESS:
            detail.output = decoded(rt, row.output)
        for step in steps:
            # (Steps that return nothing, such as set_event or a stream write, show none.)
            returned = step.output not in (None, "null")
            if step.error is None and step.child_workflow_id is None and returned:
                detail.step_outputs[step.function_id] = decoded(rt, step.output)
        detail.event_values = {k: decoded(rt, v) for k, v in detail.events.items()}
        detail.stream_values = {
            k: [decoded(rt, e.value) for e in entries if not e.closed]
            for k, entries in detail.streams.items()
        }
    return detail


# -- queues ----------------------------------------------------------------------------


@dataclass
class QueueView:
    """A queue on the queue page: its declared settings (if recorded) and activity."""

    name: str
    info: QueueInfo | None
    activity: QueueActivity


async def queue_views(rt: Runtime, now_ms: int, period_ms: int, periods: int) -> list[QueueView]:
    """Every recorded queue, and every queue with workflows now or started lately."""
    since = now_ms - period_ms * periods
    activity = {a.queue_name: a for a in await rt.sysdb.queue_activity(since, period_ms, periods)}
    infos = {q.name: q for q in await rt.sysdb.list_queues()}
    return [
        QueueView(
            name=name,
            info=infos.get(name),
            activity=activity.get(name) or QueueActivity(name, 0, 0, [0] * periods),
        )
        for name in sorted(set(activity) | set(infos))
    ]
