"""Deadlines of workflows still waiting in a queue.

A workflow's deadline (``SetWorkflowTimeout``, or inherited from its parent) holds while
it is ENQUEUED too: it is cancelled at its deadline without waiting for a place in its
queue. Three parties enforce it, so it holds even if the process that enqueued it died:
a timer in the enqueuing process, a handle awaiting it, and the workers of its queue (a
sweep now and then). Each uses one conditional update, so a workflow claimed or resumed
meanwhile is left alone (a claimed one past its deadline is cancelled when it launches).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .sysdb import notification_key

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = ["expire_enqueued"]


async def expire_enqueued(
    rt: Runtime, *, workflow_id: str | None = None, queue_name: str | None = None
) -> list[str]:
    """Cancel the ENQUEUED workflows past their deadline (the one workflow, or those of
    one queue), wake their awaiters here, and return their IDs."""
    expired = await rt.sysdb.cancel_expired_enqueued(
        int(time.time() * 1000), workflow_id=workflow_id, queue_name=queue_name
    )
    for expired_id in expired:
        rt.notifier.notify(notification_key("end", expired_id, ""))
    return expired
