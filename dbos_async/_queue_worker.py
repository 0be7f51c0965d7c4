"""The queue worker: one loop per declared queue that claims and runs queued workflows.

Every process that declares a queue runs one worker loop for it: the loop claims what the
queue's limits allow (the claim makes the workflows PENDING on this executor; only one
process wins each) and runs them here. A resumed workflow of a queue is ENQUEUED again
and claimed the same way; the steps it recorded before are loaded with each claim, so
they are not run again. A loop polls when woken (an enqueue here, a NOTIFY from another
process, a workflow of the queue ending here) and on a timer, the fallback for anything
missed. A claimed workflow that was running when its process died is PENDING on that
executor, so it is recovered when the executor launches again, as any workflow is.

Queues registered at run time (``DBOS.register_queue``) live in the database: a watch
lists them every second (and when told of a queue it has no worker for) and starts a
worker for each new one; that worker reads the queue's row before each poll, so a change
of its limits from any process applies at its next poll, and it stops once the row is
deleted. A queue declared in code here keeps its code's settings over a stored one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ._clock import now_ms
from ._deadlines import expire_enqueued
from ._errors import DBOSException, WorkflowOwnershipLost
from ._failpoints import ACTIVE as FAILPOINTS
from ._failpoints import hit
from ._queue import Queue
from ._queue_admin import on_local_delete, register_pending
from ._registry import registry
from ._runner import launch_recorded
from ._runtime import Runtime
from ._status import WorkflowStatusString
from .sysdb import QueueClaim, StepRow, WorkflowRow

__all__ = ["QueueWorkers"]

log = logging.getLogger("dbos_async")

#: The most workflows one claim takes from a queue without ``worker_concurrency``.
_BATCH = 100
#: How often each queue's workers cancel its ENQUEUED workflows past their deadline.
_SWEEP_SECONDS = 5.0
#: How often the watch looks for queues registered at run time by other processes.
_WATCH_SECONDS = 1.0
#: The least time between two looks of the watch.
_WATCH_GAP_SECONDS = 0.1


class QueueWorkers:
    """This process's worker loops, one per declared queue, and its count of the queued
    workflows running here (by queue and partition), for ``worker_concurrency``."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        #: Workflows claimed here that wait to launch (after their cancelled run here
        #: ends), by queue and partition: they count as running here meanwhile.
        self._waiting: dict[tuple[str, str | None], int] = {}
        self._wakes: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: Held by a worker loop from reading its queue's settings to the end of its claim.
        self._polling: dict[str, asyncio.Lock] = {}
        #: The database-backed queues with a worker here, as last read.
        self._stored: dict[str, Queue] = {}
        self._watch_wake = asyncio.Event()
        #: Registrations of queues declared after launch that this process does not run.
        self._registrations: set[asyncio.Task[None]] = set()
        self._watch: asyncio.Task[None] | None = None

    def running_here(self, queue_name: str, partition_key: str | None) -> int:
        """The workflows of this queue's partition that count against its
        ``partition_worker_concurrency`` in this process."""
        waiting = self._waiting.get((queue_name, partition_key), 0)
        return self._rt.live.running_in_queue(queue_name, partition_key) + waiting

    def running_in_queue_here(self, queue_name: str) -> int:
        """The workflows of this queue (all partitions) that count against its
        ``worker_concurrency`` in this process."""
        waiting = sum(n for (name, _), n in self._waiting.items() if name == queue_name)
        return self._rt.live.running_in_whole_queue(queue_name) + waiting

    def _on_place_freed(self, queue_name: str, partition_key: str | None) -> None:
        queue = registry.queues.get(queue_name) or self._stored.get(queue_name)
        if queue is not None:
            limits = queue.limits
            if limits.local or (
                limits.global_concurrency is not None or limits.partition_concurrency is not None
            ):
                self._wake(queue_name)

    def _on_notify(self, queue_name: str | None) -> None:
        if queue_name is None:
            self._watch_wake.set()
            for event in self._wakes.values():
                event.set()
        elif queue_name in self._wakes:
            self._wake(queue_name)
        else:  # perhaps a queue just registered at run time
            self._watch_wake.set()

    def _wake(self, queue_name: str) -> None:
        event = self._wakes.get(queue_name)
        if event is not None:
            event.set()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Register every declared queue, then start its worker loop; from now on a queue
        declared later gets its worker when declared."""
        # Listen first: a queue declared while the others register gets its worker too.
        registry.queue_listeners.append(self._declared)
        self._rt.notifier.hooks["queue"] = self._on_notify
        self._rt.live.on_queue_place_freed(self._on_place_freed)
        on_local_delete(self._rt, self._stop_deleted)
        queues = list(registry.queues.values())
        await self._rt.sysdb.register_queues([q.info for q in queues], now_ms())
        await register_pending(self._rt)
        for queue in queues:
            if queue.name not in self._tasks:
                self._start_loop(queue)
        self._watch = asyncio.get_running_loop().create_task(
            self._watch_stored(), name="dbos_async queue watch"
        )

    def _declared(self, queue: Queue) -> None:
        """Start the worker of a queue declared after launch (it registers it first)."""
        if not self._listens(queue.name):
            # (Registered all the same, so that clients may enqueue on it.)
            task = asyncio.get_running_loop().create_task(
                self._rt.sysdb.register_queues([queue.info], now_ms()),
                name=f"dbos_async queue {queue.name} registration",
            )
            self._registrations.add(task)
            task.add_done_callback(self._registered)
            return
        self._start_loop(queue, register=True)

    def _registered(self, task: asyncio.Task[None]) -> None:
        self._registrations.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("could not register a queue declared after launch: %r", task.exception())

    def _listens(self, queue_name: str) -> bool:
        """Whether this process runs a worker for the queue (``DBOS.listen_queues``; the
        library's own queues always)."""
        listening = self._rt.listening_queues
        return listening is None or queue_name in listening or queue_name in registry.builtin_queues

    def _start_loop(self, queue: Queue, *, register: bool = False) -> None:
        if not self._listens(queue.name):
            return
        old = self._tasks.pop(queue.name, None)
        replaces = None if old is None else (old, self._polling[queue.name])
        self._wakes[queue.name] = asyncio.Event()
        self._polling[queue.name] = asyncio.Lock()
        self._tasks[queue.name] = asyncio.get_running_loop().create_task(
            self._loop(queue, register, replaces), name=f"dbos_async queue {queue.name}"
        )

    async def stop(self) -> None:
        on_local_delete(self._rt, None)
        with contextlib.suppress(ValueError):
            registry.queue_listeners.remove(self._declared)
        self._rt.live.forget_listener(self._on_place_freed)
        tasks = [*self._tasks.values(), *self._registrations]
        if self._watch is not None:
            tasks.append(self._watch)
            self._watch = None
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._rt.notifier.hooks.get("queue") == self._on_notify:
            del self._rt.notifier.hooks["queue"]

    # -- queues registered at run time ------------------------------------------------

    async def _watch_stored(self) -> None:
        """Start a worker for each database-backed queue that has none here."""
        while True:
            try:
                for info in await self._rt.sysdb.list_queues():
                    if (
                        info.database_backed
                        and info.name not in registry.queues
                        and info.name not in self._tasks
                    ):
                        self._start_loop(Queue.from_row(info))
            except Exception as exc:  # a lost connection: try again at the next look
                log.warning("could not list the queues registered at run time: %r", exc)
            # (Woken by enqueues on queues not run here too: at most one look per gap.)
            await asyncio.sleep(_WATCH_GAP_SECONDS)
            await self._rt.notifier.wait(self._watch_wake, _WATCH_SECONDS)

    async def _reload(self, queue: Queue) -> Queue | None:
        """A database-backed queue as stored now (the last one read if the database
        cannot be reached); None once it is deleted or declared in code here."""
        if registry.queues.get(queue.name) is not None:
            return None  # (declared in code since: that worker replaces this one)
        try:
            info = await self._rt.sysdb.get_queue(queue.name)
        except Exception as exc:
            log.warning("queue %r: could not read its settings: %r", queue.name, exc)
            return queue
        if info is None or not info.database_backed:
            log.info("queue %r was deleted: its worker here stops", queue.name)
            return None
        if info != queue.info:
            queue = Queue.from_row(info)
        self._stored[queue.name] = queue
        return queue

    async def _stop_deleted(self, name: str) -> None:
        """Stop the worker of a run-time queue this process deleted, after its poll in
        progress (a queue declared in code here keeps its worker)."""
        task = self._tasks.get(name)
        if task is None or registry.queues.get(name) is not None:
            return
        async with self._polling[name]:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self._tasks.get(name) is task:
            del self._tasks[name]
            self._wakes.pop(name, None)
            self._stored.pop(name, None)
            self._polling.pop(name, None)

    def _forget(self, name: str) -> None:
        """Forget the worker of a queue whose loop ends by itself (deleted)."""
        if self._tasks.get(name) is asyncio.current_task():
            del self._tasks[name]
            self._wakes.pop(name, None)
            self._stored.pop(name, None)
            self._polling.pop(name, None)

    # -- the worker loop ---------------------------------------------------------------

    async def _loop(
        self,
        queue: Queue,
        register: bool,
        replaces: tuple[asyncio.Task[None], asyncio.Lock] | None = None,
    ) -> None:
        wake = self._wakes[queue.name]
        polling = self._polling[queue.name]
        if replaces is not None:
            # The loop this one replaces stops between polls: a claim it has begun starts
            # the workflows it takes rather than dropping them, claimed and never run.
            old, old_polling = replaces
            async with old_polling:
                old.cancel()
            await asyncio.wait([old])  # (this loop's own cancel still reaches it)
        next_sweep = 0.0
        while True:
            try:
                async with polling:
                    if register:
                        await self._rt.sysdb.register_queues([queue.info], now_ms())
                        register = False
                    if queue.database_backed_queue:
                        reloaded = await self._reload(queue)
                        if reloaded is None:
                            self._forget(queue.name)
                            return
                        queue = reloaded
                    if time.monotonic() >= next_sweep:
                        # Deadlines hold while waiting in the queue, even if the process
                        # that enqueued a workflow (and armed its timer) died.
                        next_sweep = time.monotonic() + _SWEEP_SECONDS
                        await expire_enqueued(self._rt, queue_name=queue.name)
                    more = await self.poll(queue)
            except Exception as exc:  # a lost connection: try again at the next poll
                log.warning("queue %r: could not claim workflows: %r", queue.name, exc)
                more = False
            if more:
                await asyncio.sleep(0)
                continue
            await self._rt.notifier.wait(wake, queue.polling_interval_sec)

    async def poll(self, queue: Queue) -> bool:
        """Claim and start what the queue's limits allow now, from each partition in
        turn: the queue-wide limits bound the claims of all partitions together, the
        ``partition_*`` ones each partition's (``worker_*`` ones count this process's
        workflows, the others are counted in the claim). True if a claim took all it asked
        for and there is no local limit, so more may be waiting."""
        rt = self._rt
        limits = queue.limits
        period_ms = None if limits.period is None else int(limits.period * 1000)
        partition_period_ms = (
            None if limits.partition_period is None else int(limits.partition_period * 1000)
        )
        if queue.partition_queue:
            keys: list[str | None] = list(await rt.sysdb.queue_partitions(queue.name))
        else:
            keys = [None]
        more = False
        for key in keys:
            free = _BATCH
            if limits.local:
                # (Counted again for each partition: the claims before it launched theirs.)
                free = min(
                    limit - running
                    for limit, running in (
                        (limits.worker_concurrency, self.running_in_queue_here(queue.name)),
                        (limits.partition_worker_concurrency, self.running_here(queue.name, key)),
                    )
                    if limit is not None
                )
            if free <= 0:
                continue
            rows = await rt.sysdb.claim_queued(
                QueueClaim(
                    queue_name=queue.name,
                    partition_key=key,
                    executor_id=rt.executor_id,
                    app_version=rt.app_version,
                    now_ms=now_ms(),
                    max_count=free,
                    concurrency=limits.global_concurrency,
                    limit=limits.limit,
                    period_ms=period_ms,
                    partition_concurrency=limits.partition_concurrency,
                    partition_limit=limits.partition_limit,
                    partition_period_ms=partition_period_ms,
                )
            )
            if not rows:
                continue
            if FAILPOINTS:
                hit("after_claim")
            rows.sort(key=lambda r: (r.priority, r.created_at))
            # A resumed workflow has recorded steps: they return their outputs, not rerun.
            try:
                steps = await rt.sysdb.load_steps_many([r.workflow_id for r in rows])
            except Exception as exc:  # claimed already: each loads its own steps, later
                log.warning("queue %r: could not load recorded steps: %r", queue.name, exc)
                for row in rows:
                    self._launch_later(row, wait=False)
                continue
            for row in rows:
                self._run_claimed(row, steps.get(row.workflow_id, []))
            if not limits.local and len(rows) == free:
                more = True
        return more

    def _run_claimed(self, row: WorkflowRow, steps: list[StepRow]) -> None:
        if not self._rt.launched:
            return  # closing: it stays PENDING, for a live process to take over
        if row.workflow_id in self._rt.live:
            # Resumed while its cancelled run here still finishes a step: start after it.
            self._launch_later(row, wait=True)
            return
        try:
            launch_recorded(self._rt, row, steps, fresh=not steps)
        except DBOSException as exc:
            # No such workflow function here, or inputs it cannot read: record the error
            # rather than leave the workflow PENDING forever.
            log.error("queue %r: cannot run workflow %s: %s", row.queue_name, row.workflow_id, exc)
            self._rt.spawn(self._fail(row, exc))

    def _launch_later(self, row: WorkflowRow, *, wait: bool) -> None:
        """Launch a claimed workflow in the background (once its run here has ended, if
        ``wait``); until it launches it counts as running here, so the queue's
        ``worker_concurrency`` holds meanwhile."""
        key = (row.queue_name or "", row.queue_partition_key)
        self._waiting[key] = self._waiting.get(key, 0) + 1
        self._rt.spawn(self._run_after(row, wait, key))

    async def _run_after(self, row: WorkflowRow, wait: bool, key: tuple[str, str | None]) -> None:
        """Run a claimed workflow once its cancelled run here has ended, loading its
        recorded steps then."""
        try:
            if wait:
                await self._rt.live.ended(row.workflow_id)
            steps = await self._rt.sysdb.load_steps(row.workflow_id)
        except Exception as exc:  # it stays PENDING here: taken over a lease from now
            log.warning("queue %r: cannot run %s: %r", row.queue_name, row.workflow_id, exc)
            steps = None
        finally:
            left = self._waiting.get(key, 1) - 1
            if left > 0:
                self._waiting[key] = left
            else:
                self._waiting.pop(key, None)
            self._on_place_freed(*key)  # (its launch, if any, counts it again)
        if steps is not None:
            self._run_claimed(row, steps)

    async def _fail(self, row: WorkflowRow, exc: BaseException) -> None:
        rt = self._rt
        with contextlib.suppress(WorkflowOwnershipLost):  # (its new owner decides)
            await rt.journal.finish_workflow(
                row.workflow_id,
                WorkflowStatusString.ERROR.value,
                None,
                rt.codec.dump_error(exc),
                now_ms(),
            )
