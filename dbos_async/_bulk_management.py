"""Operating many workflows at once: cancel, resume and delete by a list of IDs, and
deleting workflows for good.

A list is checked whole before anything changes: a malformed ID raises, and so does an
unknown one given to cancel or resume (``DBOSNonExistentWorkflowError`` naming every
unknown one), with nothing cancelled or resumed; delete skips unknown IDs, as in DBOS
Transact. ``cancel_children`` / ``delete_children`` extend the operation to
the workflows' children, recursively, as in DBOS Transact.

Deleting a workflow removes its status row and, in the same transaction, every row that
refers to it: its steps, the messages sent to it, its events and its streams (the
system tables' foreign keys cascade). The transaction outputs its ``@DBOS.transaction``
steps recorded in the application database are deleted first (a transaction of their
own), so that a crash in between leaves the workflow to be deleted again rather than
outputs a new workflow of the same ID would take as its own. A client has no
application database and leaves those outputs (as DBOS Transact's client does).

A workflow that is running is stopped as a cancel stops it: at once here (its awaiters
here get ``DBOSAwaitedWorkflowCancelledError``), and by the process that runs it
elsewhere when it hears of it; a step running meanwhile finishes and records nothing,
and a handle elsewhere then finds no workflow (``DBOSNonExistentWorkflowError``).
"""

from __future__ import annotations

from collections.abc import Sequence

from ._errors import DBOSNonExistentWorkflowError
from ._ids import check_workflow_id
from ._management import cancel_workflow
from ._runtime import Runtime
from .sysdb import WorkflowQuery

__all__ = [
    "cancel_workflows",
    "checked_ids",
    "delete_workflows",
    "require_workflows",
    "with_children",
]


def checked_ids(workflow_ids: Sequence[str], what: str) -> list[str]:
    """The IDs, each checked, duplicates dropped (first place kept)."""
    if isinstance(workflow_ids, (str, bytes)) or not isinstance(workflow_ids, Sequence):
        raise TypeError(f"{what} takes a list of workflow IDs, got {workflow_ids!r}")
    ids: list[str] = []
    for workflow_id in workflow_ids:
        check_workflow_id(workflow_id)
        if workflow_id not in ids:
            ids.append(workflow_id)
    return ids


async def require_workflows(rt: Runtime, workflow_ids: list[str]) -> None:
    """Raise ``DBOSNonExistentWorkflowError`` naming every ID no workflow has."""
    if not workflow_ids:
        return
    rows = await rt.sysdb.list_workflows(WorkflowQuery(workflow_ids=workflow_ids))
    found = {row.workflow_id for row in rows}
    missing = [i for i in workflow_ids if i not in found]
    if missing:
        raise DBOSNonExistentWorkflowError(", ".join(missing))


async def _children(rt: Runtime, parents: list[str]) -> list[str]:
    children: list[str] = []
    for parent in parents:
        rows = await rt.sysdb.list_workflows(WorkflowQuery(parent_workflow_id=parent))
        children.extend(row.workflow_id for row in rows)
    return children


async def with_children(rt: Runtime, workflow_ids: list[str]) -> list[str]:
    """The workflows and all their descendants (children, theirs, ...), parents first."""
    seen = list(workflow_ids)
    frontier = list(workflow_ids)
    while frontier:
        frontier = [c for c in await _children(rt, frontier) if c not in seen]
        seen.extend(frontier)
    return seen


async def cancel_workflows(rt: Runtime, workflow_ids: list[str], *, cancel_children: bool) -> None:
    """Cancel each workflow as ``DBOS.cancel_workflow`` does; with ``cancel_children``,
    then their children, level by level (a child started while its parent was being
    cancelled is found at the next level)."""
    await require_workflows(rt, workflow_ids)
    done: set[str] = set()
    level = list(workflow_ids)
    while level:
        for workflow_id in level:
            await cancel_workflow(rt, workflow_id)
            done.add(workflow_id)
        if not cancel_children:
            return
        level = [c for c in dict.fromkeys(await _children(rt, level)) if c not in done]


async def delete_workflows(
    rt: Runtime, workflow_ids: list[str], *, delete_children: bool, application_database: bool
) -> list[str]:
    """Delete the workflows (with their descendants if ``delete_children``) and all their
    rows; stop those running here. With ``application_database``, their transaction
    outputs too (a client has no application database). Unknown IDs are skipped, as in
    DBOS Transact. Returns the IDs deleted."""
    ids = await with_children(rt, workflow_ids) if delete_children else list(workflow_ids)
    if not ids:
        return []
    if application_database:
        # First: a crash after it leaves the workflows there, to be deleted again; one
        # after the status rows went would leave outputs that a new workflow given one
        # of these IDs would take as its own.
        await rt.appdb.delete_transaction_outputs(ids)
    deleted = await rt.sysdb.delete_workflows(ids)
    for workflow_id in ids:
        if workflow_id in rt.live:
            rt.live.stop(workflow_id)
    return deleted
