"""Timers that enforce workflow deadlines in this process.

A workflow's deadline (``SetWorkflowTimeout``, or inherited from its parent) is enforced
by a timer in the process that runs it, and, while it waits in a queue, by a timer in
the process that enqueued it (and by its handles and its queue's workers: ``_deadlines``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from ._context import WorkflowState
from ._deadlines import expire_enqueued
from ._management import cancel_workflow
from ._runtime import Runtime

__all__ = ["arm_deadline", "arm_enqueued_deadline", "quietly"]

log = logging.getLogger("dbos_async")


def arm_deadline(rt: Runtime, state: WorkflowState, deadline_ms: int) -> None:
    """Cancel this run of the workflow at its deadline (at once if it has passed). A later
    run under the same ID (resumed) is not this timer's business."""
    loop = asyncio.get_running_loop()
    delay = max(0.0, deadline_ms / 1000 - time.time())

    def expire() -> None:
        if rt.launched and rt.live.is_current(state):
            rt.spawn(quietly(cancel_workflow(rt, state.workflow_id), state.workflow_id))

    loop.call_later(delay, expire)


def arm_enqueued_deadline(rt: Runtime, workflow_id: str, deadline_ms: int) -> None:
    """Cancel an enqueued workflow still ENQUEUED at its (inherited) deadline, without it
    waiting for a place in its queue. (If this process dies first, a handle awaiting it
    does the same, and so do its queue's workers; see ``_deadlines``.)"""

    def expire() -> None:
        if rt.launched:
            rt.spawn(quietly(expire_enqueued(rt, workflow_id=workflow_id), workflow_id))

    delay = max(0.0, deadline_ms / 1000 - time.time())
    asyncio.get_running_loop().call_later(delay, expire)


async def quietly(work: Coroutine[Any, Any, Any], workflow_id: str) -> None:
    """Background work on a workflow: a failure is logged (a later check retries it)."""
    try:
        await work
    except Exception as exc:
        log.warning("workflow %s: could not enforce its deadline: %r", workflow_id, exc)
