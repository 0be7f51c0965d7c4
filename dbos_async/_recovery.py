"""Recovering this executor's workflows at launch.

Recovery claims each PENDING workflow of this executor and application version with one
conditional update (so of several processes sharing an executor ID only one runs it),
loads the recorded steps of a chunk of them at once, and runs each body again; recorded
steps return their outputs without running. A workflow past its ``max_recovery_attempts``
is marked MAX_RECOVERY_ATTEMPTS_EXCEEDED (dead-lettered) instead.
"""

from __future__ import annotations

import logging
from typing import Any

from ._clock import now_ms
from ._errors import DBOSException, DBOSWorkflowFunctionNotFoundError
from ._handle import WorkflowHandle
from ._registry import registry
from ._runner import launch_recorded
from ._runtime import Runtime
from ._status import WorkflowStatusString
from .sysdb import RecoveryRequest

__all__ = ["recover_pending_workflows"]

log = logging.getLogger("dbos_async")

_RECOVERY_CHUNK = 500


async def recover_pending_workflows(rt: Runtime) -> list[WorkflowHandle[Any]]:
    """Recover this executor's PENDING workflows of this application version: claim them
    and load their recorded steps a chunk at a time, then run each again."""
    requests: list[RecoveryRequest] = []
    for row in await rt.sysdb.pending_workflows(rt.executor_id, rt.app_version):
        if row.workflow_id in rt.live:
            continue
        info = registry.workflows.get(row.name)
        if info is None:
            error = DBOSWorkflowFunctionNotFoundError(row.workflow_id, row.name)
            log.error("cannot recover: %s", error)
            continue
        limit = info.workflow_options.max_recovery_attempts
        requests.append(RecoveryRequest(row.workflow_id, row.recovery_attempts, limit))
    handles: list[WorkflowHandle[Any]] = []
    for start in range(0, len(requests), _RECOVERY_CHUNK):
        chunk = requests[start : start + _RECOVERY_CHUNK]
        claims = await rt.sysdb.claim_for_recovery(chunk, now_ms())
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
                log.error("cannot recover workflow %s: %s", row.workflow_id, exc)
                continue
            handles.append(WorkflowHandle(rt, row.workflow_id))
    return handles
