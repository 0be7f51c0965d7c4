"""Queues: ``Queue`` and ``SetEnqueueOptions``, and the worker that runs queued workflows.

An enqueued workflow is stored ENQUEUED. Every process that declares a queue runs one
worker loop for it: the loop claims what the queue's limits allow (the claim makes the
workflows PENDING on this executor; only one process wins each) and runs them here. A
resumed workflow of a queue is ENQUEUED again and claimed the same way; the steps it
recorded before are loaded with each claim, so they are not run again. It
polls when woken (an enqueue here, a NOTIFY from another process, a workflow of the queue
ending here) and on a timer, the fallback for anything missed. A claimed workflow that
was running when its process died is PENDING on that executor, so it is recovered when
the executor launches again, as any workflow is.

Limits: ``concurrency`` bounds the queue's running workflows across all processes,
``worker_concurrency`` those running in one process, and ``limiter`` the starts in any
``period`` seconds. On a partitioned queue each limit applies to each partition key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from ._context import WorkflowState
from ._context import enqueue_options as _options
from ._deadlines import expire_enqueued
from ._decorators import function_info
from ._errors import DBOSConfigError, DBOSException
from ._handle import WorkflowHandle
from ._ids import check_text, check_workflow_id
from ._management import run_ended
from ._registry import registry
from ._runner import EnqueueRequest, enqueue_workflow, launch_recorded
from ._runtime import Runtime, current_runtime
from ._status import WorkflowStatusString
from .sysdb import QueueClaim, QueueInfo, StepRow, WorkflowRow

__all__ = ["Queue", "QueueWorkers", "SetEnqueueOptions", "check_enqueue_options"]

log = logging.getLogger("dbos_async")

P = ParamSpec("P")
R = TypeVar("R")

#: The most workflows one claim takes from a queue without ``worker_concurrency``.
_BATCH = 100
#: How often each queue's workers cancel its ENQUEUED workflows past their deadline.
_SWEEP_SECONDS = 5.0
_MAX_PRIORITY = 2**31 - 1


def _positive_int(value: object, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DBOSConfigError(f"{what} must be a positive integer or None, got {value!r}")
    return value


def _positive_number(value: object, what: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise DBOSConfigError(f"{what} must be a positive number, got {value!r}")
    return float(value)


class Queue:
    """A queue of workflows, declared at import time in every process that should run its
    workflows: ``queue = Queue("emails", concurrency=10)``, then
    ``handle = await queue.enqueue(send_email, to)``.

    ``concurrency`` bounds running workflows across all processes, ``worker_concurrency``
    per process, ``limiter={"limit": n, "period": seconds}`` the starts per period. With
    ``priority_enabled``, lower ``SetEnqueueOptions(priority=...)`` numbers run first.
    With ``partition_queue``, every enqueue names a partition key and each key has its
    own limits. Workers poll every ``polling_interval_sec`` besides being woken.
    """

    def __init__(
        self,
        name: str,
        concurrency: int | None = None,
        limiter: Mapping[str, float] | None = None,
        *,
        worker_concurrency: int | None = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
        polling_interval_sec: float = 1.0,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise DBOSConfigError(f"a queue name must be a non-empty str, got {name!r}")
        try:
            check_workflow_id(name, "a queue name")
        except ValueError as exc:
            raise DBOSConfigError(str(exc)) from None
        self.name = name
        self.concurrency = _positive_int(concurrency, f"Queue {name!r}: concurrency")
        self.worker_concurrency = _positive_int(
            worker_concurrency, f"Queue {name!r}: worker_concurrency"
        )
        if (
            self.concurrency is not None
            and self.worker_concurrency is not None
            and self.worker_concurrency > self.concurrency
        ):
            raise DBOSConfigError(
                f"Queue {name!r}: worker_concurrency ({self.worker_concurrency}) cannot be "
                f"above concurrency ({self.concurrency})"
            )
        self.limit: int | None = None
        self.period: float | None = None
        if limiter is not None:
            if not isinstance(limiter, Mapping) or set(limiter) != {"limit", "period"}:
                raise DBOSConfigError(
                    f'Queue {name!r}: limiter must be {{"limit": int, "period": seconds}}, '
                    f"got {limiter!r}"
                )
            self.limit = _positive_int(limiter["limit"], f"Queue {name!r}: limiter limit")
            self.period = _positive_number(limiter["period"], f"Queue {name!r}: limiter period")
        for flag, value in (
            ("priority_enabled", priority_enabled),
            ("partition_queue", partition_queue),
        ):
            if not isinstance(value, bool):
                raise DBOSConfigError(f"Queue {name!r}: {flag} must be a bool, got {value!r}")
        self.priority_enabled = priority_enabled
        self.partition_queue = partition_queue
        self.polling_interval_sec = _positive_number(
            polling_interval_sec, f"Queue {name!r}: polling_interval_sec"
        )
        existing = registry.queues.get(name)
        if existing is not None and existing.info != self.info:
            raise DBOSConfigError(
                f"queue {name!r} is already declared with other settings ({existing!r})"
            )
        registry.queues[name] = self
        rt = current_runtime()
        if rt is not None and rt.launched:
            # Declared after launch: start its worker now.
            for service in rt.services:
                if isinstance(service, QueueWorkers):
                    service.add(self)

    @property
    def info(self) -> QueueInfo:
        """What this process registers for the queue (clients check names against it)."""
        return QueueInfo(
            name=self.name,
            concurrency=self.concurrency,
            worker_concurrency=self.worker_concurrency,
            limiter_limit=self.limit,
            limiter_period_seconds=self.period,
            priority_enabled=self.priority_enabled,
            partition_queue=self.partition_queue,
        )

    def __repr__(self) -> str:
        limiter = None if self.limit is None else {"limit": self.limit, "period": self.period}
        return (
            f"Queue({self.name!r}, concurrency={self.concurrency}, limiter={limiter}, "
            f"worker_concurrency={self.worker_concurrency}, "
            f"priority_enabled={self.priority_enabled}, partition_queue={self.partition_queue})"
        )

    def enqueue(
        self, func: Callable[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, WorkflowHandle[R]]:
        """Enqueue a workflow; the handle comes back once its ENQUEUED row is durable.
        Options come from an enclosing ``SetEnqueueOptions`` block. Inside a workflow the
        enqueued workflow is a child (its ID ``{parent}-{step}`` unless SetWorkflowID)."""
        info = function_info(func)
        if info is None or info.kind != "workflow":
            raise TypeError(
                f"Queue.enqueue() needs a function decorated with @DBOS.workflow(), got {func!r}"
            )
        request = check_enqueue_options(self.info, _options.get(), app_version=None)
        return enqueue_workflow(info, args, kwargs, request)

    enqueue_async = enqueue


def check_enqueue_options(
    queue: QueueInfo,
    options: SetEnqueueOptions | None,
    *,
    app_version: str | None,
    fixed_version: bool = False,
) -> EnqueueRequest:
    """Check enqueue options against the queue they are for. Unless ``fixed_version``,
    an ``app_version`` of None means the running application's version."""
    opts = options or SetEnqueueOptions()
    if opts.priority is not None and opts.priority != 0 and not queue.priority_enabled:
        raise ValueError(
            f"queue {queue.name!r} does not have priority_enabled=True, so an enqueue "
            f"cannot set priority={opts.priority}"
        )
    if queue.partition_queue and opts.queue_partition_key is None:
        raise ValueError(
            f"queue {queue.name!r} is partitioned: enqueue inside "
            "SetEnqueueOptions(queue_partition_key=...)"
        )
    if not queue.partition_queue and opts.queue_partition_key is not None:
        raise ValueError(
            f"queue {queue.name!r} is not partitioned (partition_queue=False), so an "
            f"enqueue cannot set queue_partition_key={opts.queue_partition_key!r}"
        )
    if app_version is None and not fixed_version:
        rt = current_runtime()
        app_version = rt.app_version if rt is not None and rt.launched else None
    return EnqueueRequest(
        queue_name=queue.name,
        priority=opts.priority or 0,
        deduplication_id=opts.deduplication_id,
        partition_key=opts.queue_partition_key,
        delay_seconds=opts.delay_seconds,
        app_version=app_version,
    )


class SetEnqueueOptions:
    """``with SetEnqueueOptions(deduplication_id=..., priority=..., queue_partition_key=...,
    delay_seconds=...):`` options for the enqueues (``Queue.enqueue``) in the block.
    Starting or calling a workflow in the block without a queue raises ``ValueError``:
    the options would be ignored.

    A second ENQUEUED or PENDING workflow with the same ``deduplication_id`` on a queue
    raises ``DBOSQueueDeduplicatedError``; the ID is free again once the first ends.
    Lower ``priority`` numbers run first (no priority counts as 0); ``delay_seconds``
    keeps the workflow from starting before then.
    """

    def __init__(
        self,
        *,
        deduplication_id: str | None = None,
        priority: int | None = None,
        queue_partition_key: str | None = None,
        delay_seconds: float | None = None,
    ) -> None:
        for what, text in (
            ("deduplication_id", deduplication_id),
            ("queue_partition_key", queue_partition_key),
        ):
            if text is not None and (not isinstance(text, str) or not text):
                raise ValueError(
                    f"SetEnqueueOptions({what}=...) must be a non-empty str, got {text!r}"
                )
            check_text(text, f"SetEnqueueOptions({what}=...)", optional=True)
        if priority is not None and (
            isinstance(priority, bool)
            or not isinstance(priority, int)
            or not 0 <= priority <= _MAX_PRIORITY
        ):
            raise ValueError(
                f"SetEnqueueOptions(priority=...) must be an int from 0 to {_MAX_PRIORITY}, "
                f"got {priority!r}"
            )
        if delay_seconds is not None and (
            isinstance(delay_seconds, bool)
            or not isinstance(delay_seconds, (int, float))
            or not math.isfinite(delay_seconds)
            or delay_seconds < 0
        ):
            raise ValueError(
                "SetEnqueueOptions(delay_seconds=...) must be a non-negative number, "
                f"got {delay_seconds!r}"
            )
        self.deduplication_id = deduplication_id
        self.priority = priority
        self.queue_partition_key = queue_partition_key
        self.delay_seconds = delay_seconds
        self._token: Any = None

    def __enter__(self) -> SetEnqueueOptions:
        self._token = _options.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _options.reset(self._token)


def _now_ms() -> int:
    return int(time.time() * 1000)


class QueueWorkers:
    """This process's worker loops, one per declared queue, and its count of the queued
    workflows running here (by queue and partition), for ``worker_concurrency``."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._running: dict[tuple[str, str | None], int] = {}
        self._wakes: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        rt.launch_listeners.append(self._on_launch)
        rt.notifier.hooks["queue"] = self._on_notify
        rt.services.append(self)

    # -- accounting: called for every workflow launched here, queued or not -----------

    def _on_launch(self, state: WorkflowState, task: asyncio.Task[None]) -> None:
        if state.queue_name is None:
            return
        key = (state.queue_name, state.partition_key)
        self._running[key] = self._running.get(key, 0) + 1
        task.add_done_callback(lambda _: self._on_finish(key))

    def _on_finish(self, key: tuple[str, str | None]) -> None:
        left = self._running.get(key, 1) - 1
        if left > 0:
            self._running[key] = left
        else:
            self._running.pop(key, None)
        queue = registry.queues.get(key[0])
        if queue is not None and (queue.worker_concurrency or queue.concurrency):
            self._wake(key[0])

    def running_here(self, queue_name: str, partition_key: str | None = None) -> int:
        return self._running.get((queue_name, partition_key), 0)

    def _on_notify(self, queue_name: str | None) -> None:
        if queue_name is None:
            for event in self._wakes.values():
                event.set()
        else:
            self._wake(queue_name)

    def _wake(self, queue_name: str) -> None:
        event = self._wakes.get(queue_name)
        if event is not None:
            event.set()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Register every declared queue, then start its worker loop."""
        queues = list(registry.queues.values())
        await self._rt.sysdb.register_queues([q.info for q in queues], _now_ms())
        for queue in queues:
            self._start_loop(queue)

    def add(self, queue: Queue) -> None:
        """Start the worker of a queue declared after launch (it registers it first)."""
        self._start_loop(queue, register=True)

    def _start_loop(self, queue: Queue, *, register: bool = False) -> None:
        old = self._tasks.pop(queue.name, None)
        if old is not None:
            old.cancel()
        self._wakes[queue.name] = asyncio.Event()
        self._tasks[queue.name] = asyncio.get_running_loop().create_task(
            self._loop(queue, register), name=f"dbos_async queue {queue.name}"
        )

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._rt.notifier.hooks.get("queue") == self._on_notify:
            del self._rt.notifier.hooks["queue"]

    # -- the worker loop ---------------------------------------------------------------

    async def _loop(self, queue: Queue, register: bool) -> None:
        wake = self._wakes[queue.name]
        next_sweep = 0.0
        while True:
            try:
                if register:
                    await self._rt.sysdb.register_queues([queue.info], _now_ms())
                    register = False
                if time.monotonic() >= next_sweep:
                    # Deadlines hold while waiting in the queue, even if the process that
                    # enqueued a workflow (and armed its timer) died.
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
        """Claim and start what the queue's limits allow now. True if a claim took all it
        asked for and there is no local limit, so more may be waiting."""
        rt = self._rt
        if queue.partition_queue:
            keys: list[str | None] = list(await rt.sysdb.queue_partitions(queue.name))
        else:
            keys = [None]
        more = False
        for key in keys:
            if queue.worker_concurrency is not None:
                free = queue.worker_concurrency - self.running_here(queue.name, key)
            else:
                free = _BATCH
            if free <= 0:
                continue
            rows = await rt.sysdb.claim_queued(
                QueueClaim(
                    queue_name=queue.name,
                    partition_key=key,
                    executor_id=rt.executor_id,
                    app_version=rt.app_version,
                    now_ms=_now_ms(),
                    max_count=free,
                    concurrency=queue.concurrency,
                    limit=queue.limit,
                    period_ms=None if queue.period is None else int(queue.period * 1000),
                )
            )
            if not rows:
                continue
            rows.sort(key=lambda r: (r.priority, r.created_at))
            # A resumed workflow has recorded steps: they return their outputs, not rerun.
            try:
                steps = await rt.sysdb.load_steps_many([r.workflow_id for r in rows])
            except Exception as exc:  # claimed already: each loads its own steps, later
                log.warning("queue %r: could not load recorded steps: %r", queue.name, exc)
                for row in rows:
                    self._launch_later(row, None)
                continue
            for row in rows:
                self._run_claimed(row, steps.get(row.workflow_id, []))
            if queue.worker_concurrency is None and len(rows) == free:
                more = True
        return more

    def _run_claimed(self, row: WorkflowRow, steps: list[StepRow]) -> None:
        previous = self._rt.active.get(row.workflow_id)
        if previous is not None:
            # Resumed while its cancelled run here still finishes a step: start after it.
            self._launch_later(row, previous[1])
            return
        try:
            launch_recorded(self._rt, row, steps, fresh=not steps)
        except DBOSException as exc:
            # No such workflow function here, or inputs it cannot read: record the error
            # rather than leave the workflow PENDING forever.
            log.error("queue %r: cannot run workflow %s: %s", row.queue_name, row.workflow_id, exc)
            self._rt.spawn(self._fail(row, exc))

    def _launch_later(self, row: WorkflowRow, previous: asyncio.Task[None] | None) -> None:
        """Launch a claimed workflow in the background; until it launches it counts as
        running here, so the queue's ``worker_concurrency`` holds meanwhile."""
        key = (row.queue_name or "", row.queue_partition_key)
        self._running[key] = self._running.get(key, 0) + 1
        self._rt.spawn(self._run_after(row, previous, key))

    async def _run_after(
        self,
        row: WorkflowRow,
        previous: asyncio.Task[None] | None,
        key: tuple[str, str | None],
    ) -> None:
        """Run a claimed workflow once ``previous`` (its cancelled run here) has ended,
        loading its recorded steps then."""
        try:
            if previous is not None:
                await run_ended(row.workflow_id, previous)
            steps = await self._rt.sysdb.load_steps(row.workflow_id)
        except Exception as exc:  # it stays PENDING here, recovered at the next launch
            log.warning("queue %r: cannot run %s: %r", row.queue_name, row.workflow_id, exc)
            steps = None
        finally:
            self._on_finish(key)  # (its launch, if any, counts it again)
        if steps is not None:
            self._run_claimed(row, steps)

    async def _fail(self, row: WorkflowRow, exc: BaseException) -> None:
        rt = self._rt
        await rt.journal.finish_workflow(
            row.workflow_id,
            WorkflowStatusString.ERROR.value,
            None,
            rt.codec.dump_error(exc),
            _now_ms(),
        )
