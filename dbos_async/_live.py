"""The workflows running in this process: one ``LiveRun`` per workflow ID, behind one
object, so no module reaches into shared dicts.

A run is added when its task starts and removed when that task ends. Its ``outcome``
future is what a handle in this process awaits; a cancel resolves it at once (awaiters
get ``DBOSAwaitedWorkflowCancelledError``) while the task itself stops at a step boundary.
The counts by queue and partition are what ``worker_concurrency`` (summed over the
partitions) and ``partition_worker_concurrency`` (per partition) are checked against.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ._context import WorkflowState
from ._errors import DBOSAwaitedWorkflowCancelledError, WorkflowOwnershipLost

__all__ = ["LiveRun", "LiveWorkflows", "fail"]

log = logging.getLogger("dbos_async")

#: How long a resume waits for a cancelled run here to end before it says so in the log.
_SLOW_END_SECONDS = 5.0
#: The longest a cancel's awaiters wait for the cancelled task to unwind.
_UNWIND_SECONDS = 1.0


def fail(outcome: asyncio.Future[Any], error: BaseException) -> None:
    """Set a run's outcome to ``error``, marked as retrieved: nobody may await a workflow
    started in the background, and asyncio would then warn about its error. (Cheaper than
    a done callback that retrieves it: no event-loop turn per workflow.)"""
    outcome.set_exception(error)
    outcome.exception()


@dataclass(eq=False, slots=True)
class LiveRun:
    """One run of a workflow in this process. Never changed once made (not ``frozen``,
    though: a frozen dataclass's ``__init__`` costs four times as much, once per
    workflow)."""

    state: WorkflowState
    task: asyncio.Task[None]
    outcome: asyncio.Future[Any]

    @property
    def queue_key(self) -> tuple[str, str | None] | None:
        if self.state.queue_name is None:
            return None
        return (self.state.queue_name, self.state.partition_key)


class LiveWorkflows:
    """This process's running workflows, by workflow ID."""

    def __init__(self) -> None:
        self._runs: dict[str, LiveRun] = {}
        self._by_queue: dict[tuple[str, str | None], int] = {}
        self._queue_listeners: list[Callable[[str, str | None], None]] = []

    def __contains__(self, workflow_id: object) -> bool:
        return workflow_id in self._runs

    def __len__(self) -> int:
        return len(self._runs)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._runs))

    def get(self, workflow_id: str) -> LiveRun | None:
        return self._runs.get(workflow_id)

    def outcome(self, workflow_id: str) -> asyncio.Future[Any] | None:
        """The future a handle here awaits, or None if the workflow does not run here."""
        run = self._runs.get(workflow_id)
        return run.outcome if run is not None else None

    def is_current(self, state: WorkflowState) -> bool:
        """True while ``state``'s run is the one running here under its ID (not an earlier
        run that was cancelled and then resumed)."""
        run = self._runs.get(state.workflow_id)
        return run is not None and run.state is state

    def running_in_queue(self, queue_name: str, partition_key: str | None) -> int:
        """How many workflows claimed from this queue (and partition) run here."""
        return self._by_queue.get((queue_name, partition_key), 0)

    def running_in_whole_queue(self, queue_name: str) -> int:
        """How many workflows claimed from this queue (any partition) run here."""
        return sum(n for (name, _), n in self._by_queue.items() if name == queue_name)

    def add(self, run: LiveRun) -> None:
        self._runs[run.state.workflow_id] = run
        key = run.queue_key
        if key is not None:
            self._by_queue[key] = self._by_queue.get(key, 0) + 1

    def remove(self, run: LiveRun) -> None:
        """Forget ``run`` once its task has ended (a newer run under its ID stays); for a
        workflow of a queue, free its place and tell the queue listeners. Call it once
        per ``add``."""
        if self._runs.get(run.state.workflow_id) is run:
            del self._runs[run.state.workflow_id]
        key = run.queue_key
        if key is None:
            return
        left = self._by_queue.get(key, 1) - 1
        if left > 0:
            self._by_queue[key] = left
        else:
            self._by_queue.pop(key, None)
        for listener in list(self._queue_listeners):
            listener(*key)

    def on_queue_place_freed(self, listener: Callable[[str, str | None], None]) -> None:
        """Call ``listener(queue_name, partition_key)`` whenever a workflow claimed from a
        queue ends here (the queue workers poll again when they have a limit)."""
        self._queue_listeners.append(listener)

    def forget_listener(self, listener: Callable[[str, str | None], None]) -> None:
        with contextlib.suppress(ValueError):
            self._queue_listeners.remove(listener)

    def stop(self, workflow_id: str) -> None:
        """Stop a workflow of this process that was cancelled, at a step boundary: a step
        or transaction body that is running finishes and records its checkpoint, then the
        task is cancelled (at once if none runs: a workflow waiting in a sleep, a recv, on
        a child, or in a preemptible step). A step it reaches meanwhile raises
        DBOSWorkflowCancelledError instead of running. Its awaiters get
        DBOSAwaitedWorkflowCancelledError at once if a body runs, else once the task has
        unwound (at most a second later, should its code swallow the cancel)."""
        run = self._runs.get(workflow_id)
        if run is None:
            return

        def tell(_: object = None) -> None:
            if not run.outcome.done():
                fail(run.outcome, DBOSAwaitedWorkflowCancelledError(workflow_id))

        if run.state.bodies:
            tell()  # at once: the running body may take long to finish and record
        else:
            # Once the task has unwound (a preemptible step's ``except`` has run): the
            # stop is one turn of the event loop away.
            run.task.add_done_callback(tell)
            asyncio.get_running_loop().call_later(_UNWIND_SECONDS, tell)
        run.state.cancel(run.task.cancel)

    def lose(self, workflow_id: str) -> None:
        """Another process owns this workflow now: stop its run here at once (anything it
        would still write is refused anyway) and let its awaiters here follow the
        workflow in the status table to the new owner's outcome."""
        run = self._runs.get(workflow_id)
        if run is None:
            return
        log.warning(
            "workflow %s was taken over by another process (this one was paused or cut "
            "off from the database past its lease, or it was handed elsewhere); its run "
            "here stops and records nothing more",
            workflow_id,
        )
        if not run.outcome.done():
            fail(run.outcome, WorkflowOwnershipLost(workflow_id))
        run.task.cancel()

    async def drained(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for every run here to end; True if they did."""
        deadline = asyncio.get_running_loop().time() + seconds
        while self._runs:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return False
            await asyncio.wait({run.task for run in self._runs.values()}, timeout=left)
        return True

    async def ended(self, workflow_id: str) -> None:
        """Wait until the run of ``workflow_id`` here (if any) has ended. A cancelled run
        ends once the step it was running has recorded, however long that step takes."""
        run = self._runs.get(workflow_id)
        if run is None:
            return
        done, _ = await asyncio.wait({run.task}, timeout=_SLOW_END_SECONDS)
        if not done:
            log.warning("workflow %s: waiting for its cancelled run to finish a step", workflow_id)
            await asyncio.wait({run.task})

    def abandon(self) -> None:
        """Shutting down: every awaiter here is told the run will not finish here (the
        workflows stay PENDING, to be recovered)."""
        for run in self._runs.values():
            run.outcome.cancel()
        self._runs.clear()
        self._by_queue.clear()
        self._queue_listeners.clear()
