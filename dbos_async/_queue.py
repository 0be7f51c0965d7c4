"""Queues: ``Queue``, and checking enqueue options against a queue.

An enqueued workflow is stored ENQUEUED; every process that declares its queue runs a
worker for it (``_queue_worker``) that claims and runs what the queue's limits allow.

Limits: ``concurrency`` bounds the queue's running workflows across all processes,
``worker_concurrency`` those running in one process, and ``limiter`` the starts in any
``period`` seconds. On a partitioned queue each limit applies to each partition key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, ParamSpec, TypeVar

from ._context import SetEnqueueOptions
from ._context import enqueue_options as _options
from ._decorators import function_info
from ._errors import DBOSConfigError
from ._handle import WorkflowHandle
from ._ids import check_workflow_id
from ._registry import registry
from ._run_step import as_workflow
from ._runner import EnqueueRequest, enqueue_workflow
from ._runtime import current_runtime
from .sysdb import QueueInfo

__all__ = ["Queue", "SetEnqueueOptions", "check_enqueue_options"]

P = ParamSpec("P")
R = TypeVar("R")


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
        # (Declared after launch, the running queue workers start its worker now.)
        registry.declare_queue(self)

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
        info = as_workflow(function_info(func))  # (a step runs as its own workflow)
        if info is None:
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
            f"A workflow cannot be enqueued on partitioned queue {queue.name!r} without a "
            "partition key: enqueue inside SetEnqueueOptions(queue_partition_key=...)"
        )
    if not queue.partition_queue and opts.queue_partition_key is not None:
        raise ValueError(
            "You can only use a partition key on a partition-enabled queue: queue "
            f"{queue.name!r} is not partitioned (partition_queue=False), so an enqueue "
            f"cannot set queue_partition_key={opts.queue_partition_key!r}"
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
