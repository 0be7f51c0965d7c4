"""Queues: ``Queue``, and checking enqueue options against a queue.

An enqueued workflow is stored ENQUEUED; every process that declares its queue runs a
worker for it (``_queue_worker``) that claims and runs what the queue's limits allow.

Limits: ``concurrency`` (``global_concurrency``) bounds the queue's running workflows
across all processes, ``worker_concurrency`` those running in one process, and
``limiter`` the starts in any ``period`` seconds. The ``partition_*`` limits partition the
queue and bound each partition key the same way, on top of the queue-wide ones
(``resolve_limits``); under the older ``partition_queue`` flag alone, the three queue
limits apply to each partition key instead.

A queue is declared in code (``Queue(...)``, in every process that should run it) or at
run time (``DBOS.register_queue``, DBOS Transact's "database-backed" queues): then its row
in the queues table is its configuration, every launched process runs a worker for it,
and its limits may change while it runs (``await queue.set_worker_concurrency(...)``),
each worker following the row at its next poll.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, ParamSpec, TypeVar

from ._classes import with_bound_receiver
from ._clock import now_ms
from ._context import SetEnqueueOptions
from ._context import enqueue_options as _options
from ._decorators import function_info
from ._errors import DBOSConfigError, DBOSException
from ._handle import WorkflowHandle
from ._ids import check_workflow_id
from ._registry import FunctionInfo, WorkflowOptions, describe, registry
from ._run_step import as_workflow
from ._runner import EnqueueRequest, enqueue_workflow
from ._runtime import Runtime, current_runtime, get_runtime
from .sysdb import QueueInfo, notification_key

__all__ = [
    "Queue",
    "QueueLimits",
    "SetEnqueueOptions",
    "check_enqueue_options",
    "checked",
    "declared_settings",
    "enqueue_on",
    "named_workflow",
    "queue_settings",
    "resolve_limits",
]

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


def _limiter(value: object, what: str) -> tuple[int | None, float | None]:
    if value is None:
        return None, None
    if not isinstance(value, Mapping) or set(value) != {"limit", "period"}:
        raise DBOSConfigError(f'{what} must be {{"limit": int, "period": seconds}}, got {value!r}')
    return (
        _positive_int(value["limit"], f"{what} limit"),
        _positive_number(value["period"], f"{what} period"),
    )


def _at_least_one_or_none(value: object, what: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise DBOSConfigError(f"{what} must be at least 1, got {value!r}")
    return value


def queue_settings(
    name: str,
    *,
    concurrency: int | None = None,
    limiter: Mapping[str, float] | None = None,
    worker_concurrency: int | None = None,
    priority_enabled: bool = False,
    partition_queue: bool = False,
    polling_interval_sec: float = 1.0,
    database_backed: bool = False,
    partition_concurrency: int | None = None,
    partition_worker_concurrency: int | None = None,
    partition_limiter: Mapping[str, float] | None = None,
) -> QueueInfo:
    """A queue's settings as stored, checked (``DBOSConfigError`` naming what is wrong).
    Any ``partition_*`` limit partitions the queue; ``concurrency``, ``worker_concurrency``
    and ``limiter`` then bound the whole queue, and no per-partition limit may exceed its
    queue-wide counterpart."""
    if not isinstance(name, str) or not name:
        raise DBOSConfigError(f"a queue name must be a non-empty str, got {name!r}")
    try:
        check_workflow_id(name, "a queue name")
    except ValueError as exc:
        raise DBOSConfigError(str(exc)) from None
    concurrency = _positive_int(concurrency, f"Queue {name!r}: concurrency")
    worker_concurrency = _positive_int(worker_concurrency, f"Queue {name!r}: worker_concurrency")
    p_concurrency = _at_least_one_or_none(
        partition_concurrency, f"Queue {name!r}: partition_concurrency"
    )
    p_worker = _at_least_one_or_none(
        partition_worker_concurrency, f"Queue {name!r}: partition_worker_concurrency"
    )
    # (Each pair: the larger limit, the smaller one; the smaller may not exceed the larger.)
    for (big, big_value), (small, small_value) in (
        (("concurrency", concurrency), ("worker_concurrency", worker_concurrency)),
        (("global_concurrency", concurrency), ("partition_concurrency", p_concurrency)),
        (("global_concurrency", concurrency), ("partition_worker_concurrency", p_worker)),
        (("worker_concurrency", worker_concurrency), ("partition_worker_concurrency", p_worker)),
        (("partition_concurrency", p_concurrency), ("partition_worker_concurrency", p_worker)),
    ):
        if big_value is not None and small_value is not None and small_value > big_value:
            raise DBOSConfigError(
                f"Queue {name!r}: {small} ({small_value}) cannot be above {big} "
                f"({big_value}): {big} must be greater than or equal to {small}"
            )
    limit, period = _limiter(limiter, f"Queue {name!r}: limiter")
    p_limit, p_period = _limiter(partition_limiter, f"Queue {name!r}: partition_limiter")
    for flag, value in (
        ("priority_enabled", priority_enabled),
        ("partition_queue", partition_queue),
    ):
        if not isinstance(value, bool):
            raise DBOSConfigError(f"Queue {name!r}: {flag} must be a bool, got {value!r}")
    partitioned = any(v is not None for v in (p_concurrency, p_worker, p_limit))
    return QueueInfo(
        name=name,
        concurrency=concurrency,
        worker_concurrency=worker_concurrency,
        limiter_limit=limit,
        limiter_period_seconds=period,
        priority_enabled=priority_enabled,
        partition_queue=partition_queue or partitioned,
        polling_interval_seconds=_positive_number(
            polling_interval_sec, f"Queue {name!r}: polling_interval_sec"
        ),
        database_backed=database_backed,
        partition_concurrency=p_concurrency,
        partition_worker_concurrency=p_worker,
        partition_limiter_limit=p_limit,
        partition_limiter_period_seconds=p_period,
    )


def _limiter_of(limit: int | None, period: float | None) -> dict[str, float] | None:
    return None if limit is None else {"limit": limit, "period": period or 0}


def checked(info: QueueInfo) -> QueueInfo:
    """``info`` checked as ``queue_settings`` checks a queue's settings."""
    return queue_settings(
        info.name,
        concurrency=info.concurrency,
        limiter=_limiter_of(info.limiter_limit, info.limiter_period_seconds),
        worker_concurrency=info.worker_concurrency,
        priority_enabled=info.priority_enabled,
        partition_queue=info.partition_queue,
        polling_interval_sec=info.polling_interval_seconds,
        database_backed=info.database_backed,
        partition_concurrency=info.partition_concurrency,
        partition_worker_concurrency=info.partition_worker_concurrency,
        partition_limiter=_limiter_of(
            info.partition_limiter_limit, info.partition_limiter_period_seconds
        ),
    )


@dataclasses.dataclass(frozen=True)
class QueueLimits:
    """A queue's limits, each at the scope it is enforced at (DBOS Transact's): queue-wide
    (across all its partitions) and per partition; ``worker_*`` ones count this process
    alone, the others every process. Periods are in seconds."""

    global_concurrency: int | None = None
    worker_concurrency: int | None = None
    limit: int | None = None
    period: float | None = None
    partition_concurrency: int | None = None
    partition_worker_concurrency: int | None = None
    partition_limit: int | None = None
    partition_period: float | None = None

    @property
    def local(self) -> bool:
        """True if this process's own count bounds what it claims."""
        return self.worker_concurrency is not None or self.partition_worker_concurrency is not None


def has_partition_limits(info: QueueInfo) -> bool:
    """True if any ``partition_*`` limit is set (which partitions the queue)."""
    return any(
        v is not None
        for v in (
            info.partition_concurrency,
            info.partition_worker_concurrency,
            info.partition_limiter_limit,
        )
    )


def is_legacy_partitioned(info: QueueInfo) -> bool:
    """True for the older form of a partitioned queue (``partition_queue`` without any
    ``partition_*`` limit), whose concurrency, worker_concurrency and limiter apply to
    each partition."""
    return info.partition_queue and not has_partition_limits(info)


def resolve_limits(info: QueueInfo) -> QueueLimits:
    """The limits ``info`` enforces, each at its scope."""
    if is_legacy_partitioned(info):
        return QueueLimits(
            partition_concurrency=info.concurrency,
            partition_worker_concurrency=info.worker_concurrency,
            partition_limit=info.limiter_limit,
            partition_period=info.limiter_period_seconds,
        )
    return QueueLimits(
        global_concurrency=info.concurrency,
        worker_concurrency=info.worker_concurrency,
        limit=info.limiter_limit,
        period=info.limiter_period_seconds,
        partition_concurrency=info.partition_concurrency,
        partition_worker_concurrency=info.partition_worker_concurrency,
        partition_limit=info.partition_limiter_limit,
        partition_period=info.partition_limiter_period_seconds,
    )


def declared_settings(
    name: str,
    *,
    worker_concurrency: int | None,
    global_concurrency: int | None,
    partition_concurrency: int | None,
    partition_worker_concurrency: int | None,
    partition_limiter: Mapping[str, float] | None,
    limiter: Mapping[str, float] | None,
    polling_interval_sec: float,
    concurrency: int | None,
    priority_enabled: bool,
    partition_queue: bool,
    database_backed: bool = True,
    error: type[Exception] = ValueError,
) -> QueueInfo:
    """The row DBOS Transact's queue arguments describe (``DBOS.register_queue``'s, and
    ``Queue(...)``'s with ``database_backed=False``), checked: ``error`` (ValueError)
    for settings that contradict each other or could never bind.

    ``global_concurrency`` (or its older name ``concurrency``), ``worker_concurrency``
    and ``limiter`` bound the whole queue; the ``partition_*`` limits, which partition
    the queue, bound each partition key; all apply at once. ``partition_queue=True`` is
    the older form: then ``concurrency``, ``worker_concurrency`` and ``limiter`` apply
    per partition instead, so it combines with neither ``global_concurrency`` nor the
    ``partition_*`` limits."""
    if concurrency is not None and global_concurrency is not None:
        raise error(
            f"queue {name!r}: concurrency is the older name of global_concurrency; set only "
            "one of them"
        )
    partitioned = any(
        v is not None
        for v in (partition_concurrency, partition_worker_concurrency, partition_limiter)
    )
    if partition_queue and partitioned:
        raise error(
            f"queue {name!r}: partition_queue is the older way to partition a queue (its "
            "concurrency, worker_concurrency and limiter then apply per partition), the "
            "partition_* limits the newer one; set only one of them"
        )
    if partition_queue and global_concurrency is not None:
        raise error(
            f"queue {name!r}: partition_queue applies every limit per partition, so it "
            "cannot be combined with global_concurrency; use partition_concurrency"
        )
    try:
        return queue_settings(
            name,
            concurrency=concurrency if global_concurrency is None else global_concurrency,
            limiter=limiter,
            worker_concurrency=worker_concurrency,
            priority_enabled=priority_enabled,
            partition_queue=partition_queue,
            polling_interval_sec=polling_interval_sec,
            database_backed=database_backed,
            partition_concurrency=partition_concurrency,
            partition_worker_concurrency=partition_worker_concurrency,
            partition_limiter=partition_limiter,
        )
    except DBOSConfigError as exc:
        if isinstance(exc, error):
            raise
        raise error(str(exc)) from None


#: How a database-backed queue reaches its database: the runtime of DBOS (None) or of
#: the client that read it.
_RuntimeSource = Callable[[], Awaitable[Runtime]] | None


class Queue:
    """A queue of workflows. Declared in code, in every process that should run its
    workflows: ``queue = Queue("emails", concurrency=10)``, then
    ``handle = await queue.enqueue(send_email, to)``. ``DBOS.register_queue`` (or
    ``DBOSClient.register_queue``) declares one at run time instead, stored in the
    database (``database_backed_queue``): every launched process runs it, and its limits
    may change while it runs (``await queue.set_concurrency(5)``; every process's worker
    follows at its next poll).

    ``global_concurrency`` (or its older name ``concurrency``) bounds the queue's running
    workflows across all processes, ``worker_concurrency`` those of one process,
    ``limiter={"limit": n, "period": seconds}`` the starts per period. The
    ``partition_concurrency``, ``partition_worker_concurrency`` and ``partition_limiter``
    limits partition the queue (every enqueue then names a partition key) and bound each
    key the same way, while the queue-wide ones still bound the queue as a whole: all
    apply at once, as in DBOS Transact. ``partition_queue=True`` is the older form, under
    which ``concurrency``, ``worker_concurrency`` and ``limiter`` apply per partition.
    Lower ``SetEnqueueOptions(priority=...)`` numbers run first on any queue
    (``priority_enabled`` is accepted and stored, as DBOS Transact's deprecated flag).
    Workers poll every ``polling_interval_sec`` besides being woken.

    The attributes (``concurrency``, ``worker_concurrency``, ``limiter``...) are the
    values last read, as stored; the ``global_concurrency`` and ``partition_*``
    properties resolve them to the scope they apply at (under ``partition_queue``,
    ``partition_concurrency`` is ``concurrency``). On a database-backed queue the
    ``get_*_async()`` coroutines read the database first and return the resolved value.
    """

    def __init__(
        self,
        name: str,
        concurrency: int | None = None,
        limiter: Mapping[str, float] | None = None,
        *,
        worker_concurrency: int | None = None,
        global_concurrency: int | None = None,
        partition_concurrency: int | None = None,
        partition_worker_concurrency: int | None = None,
        partition_limiter: Mapping[str, float] | None = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
        polling_interval_sec: float = 1.0,
    ) -> None:
        info = declared_settings(
            name,
            concurrency=concurrency,
            global_concurrency=global_concurrency,
            limiter=limiter,
            worker_concurrency=worker_concurrency,
            partition_concurrency=partition_concurrency,
            partition_worker_concurrency=partition_worker_concurrency,
            partition_limiter=partition_limiter,
            priority_enabled=priority_enabled,
            partition_queue=partition_queue,
            polling_interval_sec=polling_interval_sec,
            database_backed=False,
            error=DBOSConfigError,
        )
        self._source: _RuntimeSource = None
        self._adopt(info)
        existing = registry.queues.get(name)
        if existing is not None and existing.info != self.info:
            raise DBOSConfigError(
                f"queue {name!r} is already declared with other settings ({existing!r})"
            )
        # (Declared after launch, the running queue workers start its worker now.)
        registry.declare_queue(self)

    @classmethod
    def from_row(cls, info: QueueInfo, source: _RuntimeSource = None) -> Queue:
        """A database-backed queue as its row describes it (not declared in code):
        reached through DBOS's runtime, or ``source``'s (a client's)."""
        queue = cls.__new__(cls)
        queue._source = source
        queue._adopt(info)
        return queue

    def _adopt(self, info: QueueInfo) -> None:
        self.name = info.name
        self.concurrency = info.concurrency
        self.worker_concurrency = info.worker_concurrency
        self.limit = info.limiter_limit
        self.period = info.limiter_period_seconds
        self.priority_enabled = info.priority_enabled
        self.partition_queue = info.partition_queue
        self.polling_interval_sec = info.polling_interval_seconds
        self.database_backed_queue = info.database_backed
        self._updated_at = info.updated_at
        self._partition_concurrency = info.partition_concurrency
        self._partition_worker_concurrency = info.partition_worker_concurrency
        self._partition_limit = info.partition_limiter_limit
        self._partition_period = info.partition_limiter_period_seconds

    @property
    def info(self) -> QueueInfo:
        """The queue's settings as a row of the queues table."""
        return QueueInfo(
            name=self.name,
            concurrency=self.concurrency,
            worker_concurrency=self.worker_concurrency,
            limiter_limit=self.limit,
            limiter_period_seconds=self.period,
            priority_enabled=self.priority_enabled,
            partition_queue=self.partition_queue,
            polling_interval_seconds=self.polling_interval_sec,
            database_backed=self.database_backed_queue,
            updated_at=self._updated_at,
            partition_concurrency=self._partition_concurrency,
            partition_worker_concurrency=self._partition_worker_concurrency,
            partition_limiter_limit=self._partition_limit,
            partition_limiter_period_seconds=self._partition_period,
        )

    @property
    def limits(self) -> QueueLimits:
        """The queue's limits, each at the scope it is enforced at."""
        return resolve_limits(self.info)

    def __repr__(self) -> str:
        return (
            f"Queue({self.name!r}, concurrency={self.concurrency}, limiter={self.limiter}, "
            f"worker_concurrency={self.worker_concurrency}, "
            f"priority_enabled={self.priority_enabled}, partition_queue={self.partition_queue}"
            + "".join(
                f", {k}={v}"
                for k, v in (
                    ("partition_concurrency", self._partition_concurrency),
                    ("partition_worker_concurrency", self._partition_worker_concurrency),
                    (
                        "partition_limiter",
                        _limiter_of(self._partition_limit, self._partition_period),
                    ),
                )
                if v is not None
            )
            + (", database_backed_queue=True)" if self.database_backed_queue else ")")
        )

    # -- limits, resolved to the scope they apply at (DBOS Transact's names) -----------

    @property
    def limiter(self) -> dict[str, float] | None:
        """``{"limit": n, "period": seconds}``, or None without a rate limit."""
        if self.limit is None or self.period is None:
            return None
        return {"limit": self.limit, "period": self.period}

    @property
    def global_concurrency(self) -> int | None:
        """The queue-wide bound on running workflows, across all processes and
        partitions (None under ``partition_queue``, where ``concurrency`` is per
        partition)."""
        return self.limits.global_concurrency

    @property
    def partition_concurrency(self) -> int | None:
        """The bound on each partition's running workflows, across all processes."""
        return self.limits.partition_concurrency

    @property
    def partition_worker_concurrency(self) -> int | None:
        """The bound on each partition's running workflows in one process."""
        return self.limits.partition_worker_concurrency

    @property
    def partition_limiter(self) -> dict[str, float] | None:
        """The rate limit of each partition."""
        limits = self.limits
        return _limiter_of(limits.partition_limit, limits.partition_period)

    # -- reading and changing a database-backed queue ----------------------------------

    async def _runtime(self) -> Runtime:
        return get_runtime() if self._source is None else await self._source()

    async def _read(self, rt: Runtime) -> QueueInfo:
        info = await rt.sysdb.get_queue(self.name)
        if info is None or not info.database_backed:
            raise DBOSException(f"queue {self.name!r} is not registered in the database (deleted?)")
        return info

    async def _refresh(self) -> None:
        if self.database_backed_queue:
            self._adopt(await self._read(await self._runtime()))

    async def _change(self, change: Callable[[QueueInfo], QueueInfo]) -> None:
        """Apply ``change`` to the stored settings, checked, as one compare-and-set on
        the row (read again and reapplied if another writer came first); then every
        process's workers of the queue follow at their next poll."""
        if not self.database_backed_queue:
            raise DBOSException(
                f"cannot change queue {self.name!r} at run time: only queues registered "
                "with DBOS.register_queue (database-backed) can be changed; a queue "
                "declared in code takes its settings from the code"
            )
        rt = await self._runtime()
        while True:
            current = await self._read(rt)
            new = change(current)
            try:
                good = checked(dataclasses.replace(new, database_backed=True))
            except DBOSConfigError as exc:
                raise ValueError(str(exc)) from None
            written_at = max(now_ms(), current.updated_at + 1)
            if await rt.sysdb.update_queue(good, current.updated_at, written_at):
                self._adopt(dataclasses.replace(good, updated_at=written_at))
                # This process's worker of it follows now (others: Postgres NOTIFY, or poll).
                rt.notifier.notify(notification_key("queue", self.name, ""))
                return

    def _not_legacy(self, what: str, info: QueueInfo) -> None:
        """Refuse a change that would re-scope the other limits of a queue partitioned
        the older way (as DBOS Transact does)."""
        if is_legacy_partitioned(info):
            raise DBOSException(
                f"cannot set {what} on queue {self.name!r}: it is partitioned with the "
                "older partition_queue option, under which concurrency, worker_concurrency "
                "and limiter apply per partition; register it again with the partition_* "
                "limits instead (on_conflict='always_update')"
            )

    async def get_concurrency_async(self) -> int | None:
        """``concurrency`` (the database's value, for a database-backed queue)."""
        await self._refresh()
        return self.concurrency

    async def get_global_concurrency_async(self) -> int | None:
        """``global_concurrency``, read from the database first if database-backed."""
        await self._refresh()
        return self.global_concurrency

    async def get_worker_concurrency_async(self) -> int | None:
        """The queue-wide ``worker_concurrency`` (None under ``partition_queue``, where
        it is per partition), read from the database first if database-backed."""
        await self._refresh()
        return self.limits.worker_concurrency

    async def get_limiter_async(self) -> dict[str, float] | None:
        """The queue-wide ``limiter`` (None under ``partition_queue``, where it is per
        partition), read from the database first if database-backed."""
        await self._refresh()
        limits = self.limits
        return _limiter_of(limits.limit, limits.period)

    async def get_partition_concurrency_async(self) -> int | None:
        """``partition_concurrency``, read from the database first if database-backed."""
        await self._refresh()
        return self.partition_concurrency

    async def get_partition_worker_concurrency_async(self) -> int | None:
        """``partition_worker_concurrency``, read from the database first if
        database-backed."""
        await self._refresh()
        return self.partition_worker_concurrency

    async def get_partition_limiter_async(self) -> dict[str, float] | None:
        """``partition_limiter``, read from the database first if database-backed."""
        await self._refresh()
        return self.partition_limiter

    async def get_priority_enabled_async(self) -> bool:
        """``priority_enabled`` (kept for DBOS Transact; priority always applies)."""
        await self._refresh()
        return self.priority_enabled

    async def get_partition_queue_async(self) -> bool:
        """``partition_queue``, read from the database first if database-backed."""
        await self._refresh()
        return self.partition_queue

    async def get_polling_interval_sec_async(self) -> float:
        """``polling_interval_sec``, read from the database first if database-backed."""
        await self._refresh()
        return self.polling_interval_sec

    async def set_concurrency(self, value: int | None) -> None:
        """Set ``concurrency`` (per partition on a partitioned queue): database-backed
        queues only, checked against the stored ``worker_concurrency``."""
        await self._change(lambda q: dataclasses.replace(q, concurrency=value))

    async def set_global_concurrency(self, value: int | None) -> None:
        """Set the queue-wide ``global_concurrency``, at least every other concurrency
        limit stored."""

        def change(q: QueueInfo) -> QueueInfo:
            self._not_legacy("global_concurrency", q)
            return dataclasses.replace(q, concurrency=value)

        await self._change(change)

    async def set_worker_concurrency(self, value: int | None) -> None:
        """Set the queue-wide ``worker_concurrency``, at most the stored
        ``global_concurrency`` and at least ``partition_worker_concurrency``."""

        def change(q: QueueInfo) -> QueueInfo:
            self._not_legacy("worker_concurrency", q)
            return dataclasses.replace(q, worker_concurrency=value)

        await self._change(change)

    async def set_limiter(self, value: Mapping[str, float] | None) -> None:
        """Set (or, with None, remove) the queue-wide rate limit."""
        limit, period = _checked_limiter(value, "limiter")

        def change(q: QueueInfo) -> QueueInfo:
            self._not_legacy("limiter", q)
            return dataclasses.replace(q, limiter_limit=limit, limiter_period_seconds=period)

        await self._change(change)

    def _per_partition(self, what: str, q: QueueInfo, **fields: Any) -> QueueInfo:
        """``q`` with a per-partition limit changed: any partitions the queue, and it is
        no longer partitioned once none is left."""
        self._not_legacy(what, q)
        new = dataclasses.replace(q, **fields)
        return dataclasses.replace(new, partition_queue=has_partition_limits(new))

    async def set_partition_concurrency(self, value: int | None) -> None:
        """Set the bound on each partition's running workflows (partitions the queue;
        clearing the last per-partition limit un-partitions it): at least
        ``partition_worker_concurrency``, at most ``global_concurrency``."""
        _at_least_one(value, "partition_concurrency")
        await self._change(
            lambda q: self._per_partition("partition_concurrency", q, partition_concurrency=value)
        )

    async def set_partition_worker_concurrency(self, value: int | None) -> None:
        """Set the bound on each partition's running workflows per process: at most
        ``partition_concurrency``, ``worker_concurrency`` and ``global_concurrency``."""
        _at_least_one(value, "partition_worker_concurrency")
        await self._change(
            lambda q: self._per_partition(
                "partition_worker_concurrency", q, partition_worker_concurrency=value
            )
        )

    async def set_partition_limiter(self, value: Mapping[str, float] | None) -> None:
        """Set (or remove) the rate limit of each partition."""
        limit, period = _checked_limiter(value, "partition_limiter")
        await self._change(
            lambda q: self._per_partition(
                "partition_limiter",
                q,
                partition_limiter_limit=limit,
                partition_limiter_period_seconds=period,
            )
        )

    async def set_priority_enabled(self, value: bool) -> None:
        """Store ``priority_enabled`` (DBOS Transact's deprecated flag: priority always
        applies)."""
        await self._change(lambda q: dataclasses.replace(q, priority_enabled=value))

    async def set_partition_queue(self, value: bool) -> None:
        """Partition the queue the older way (its limits then apply per partition key)
        or stop; not on a queue partitioned by its ``partition_*`` limits."""

        def change(q: QueueInfo) -> QueueInfo:
            if has_partition_limits(q):
                raise DBOSException(
                    f"cannot set partition_queue on queue {self.name!r}: its partition_* "
                    "limits partition it (clear those instead)"
                )
            return dataclasses.replace(q, partition_queue=value)

        await self._change(change)

    async def set_polling_interval_sec(self, value: float) -> None:
        """Set how often the queue's workers poll (seconds, positive)."""
        await self._change(lambda q: dataclasses.replace(q, polling_interval_seconds=value))

    get_concurrency = get_concurrency_async
    get_global_concurrency = get_global_concurrency_async
    get_worker_concurrency = get_worker_concurrency_async
    get_limiter = get_limiter_async
    get_partition_concurrency = get_partition_concurrency_async
    get_partition_worker_concurrency = get_partition_worker_concurrency_async
    get_partition_limiter = get_partition_limiter_async
    get_priority_enabled = get_priority_enabled_async
    get_partition_queue = get_partition_queue_async
    get_polling_interval_sec = get_polling_interval_sec_async
    set_concurrency_async = set_concurrency
    set_global_concurrency_async = set_global_concurrency
    set_worker_concurrency_async = set_worker_concurrency
    set_limiter_async = set_limiter
    set_partition_concurrency_async = set_partition_concurrency
    set_partition_worker_concurrency_async = set_partition_worker_concurrency
    set_partition_limiter_async = set_partition_limiter
    set_priority_enabled_async = set_priority_enabled
    set_partition_queue_async = set_partition_queue
    set_polling_interval_sec_async = set_polling_interval_sec

    # -- enqueueing --------------------------------------------------------------------

    def enqueue(
        self, func: Callable[P, Coroutine[Any, Any, R]], *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, WorkflowHandle[R]]:
        """Enqueue a workflow; the handle comes back once its ENQUEUED row is durable.
        Options come from an enclosing ``SetEnqueueOptions`` block. Inside a workflow the
        enqueued workflow is a child (its ID ``{parent}-{step}`` unless SetWorkflowID)."""
        info = _workflow_info(func, "Queue.enqueue()")
        if self.database_backed_queue:
            if self._source is not None:
                raise DBOSException(
                    f"cannot enqueue on queue {self.name!r} through a Queue a client read: "
                    "use DBOSClient.enqueue"
                )
            return enqueue_on(self.name, info, with_bound_receiver(func, args), kwargs)
        request = check_enqueue_options(self.info, _options.get(), app_version=None)
        # (A bound method, ``inst.wf`` or ``Cls.wf``, brings its receiver.)
        return enqueue_workflow(info, with_bound_receiver(func, args), kwargs, request)

    enqueue_async = enqueue


def _at_least_one(value: object, what: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{what} must be at least 1, got {value!r}")


def _checked_limiter(value: object, what: str) -> tuple[int | None, float | None]:
    try:
        return _limiter(value, what)
    except DBOSConfigError as exc:
        raise ValueError(str(exc)) from None


def _workflow_info(func: Callable[..., Any], how: str) -> FunctionInfo:
    info = as_workflow(function_info(func))  # (a step runs as its own workflow)
    if info is None:
        raise TypeError(f"{how} needs a function decorated with @DBOS.workflow(), got {func!r}")
    return info


def named_workflow(name: str) -> FunctionInfo:
    """A workflow known only by its registered name (it may be implemented by another
    process), for enqueueing it: its arguments are taken as given, unchecked."""

    async def implemented_elsewhere(*args: Any, **kwargs: Any) -> Any:
        raise DBOSException(f"workflow {name!r} is only enqueued by name here")

    return describe(name, implemented_elsewhere, WorkflowOptions())


def enqueue_on(
    queue_name: str,
    info: FunctionInfo,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    options: SetEnqueueOptions | None = None,
    workflow_id: str | None = None,
    timeout_ms: int | None = None,
    fixed_version: bool = False,
) -> Coroutine[Any, Any, WorkflowHandle[Any]]:
    """Enqueue on a queue named at run time (``DBOS.enqueue_workflow``): one declared in
    code here, one in the database, or one not registered yet (its workflows wait,
    ENQUEUED, until it is). Options are checked against the queue once it is known the
    enqueue is not recorded already (a re-run of the parent finds its child instead)."""
    check_workflow_id(queue_name, "a queue name")
    opts = options if options is not None else _options.get()
    if opts is not None and opts.deduplication_id is not None and opts.queue_partition_key:
        _refuse_partitioned_deduplication(queue_name)

    async def request() -> EnqueueRequest:
        declared = registry.queues.get(queue_name)
        queue: QueueInfo | str
        if declared is not None:
            queue = declared.info
        else:
            stored = await get_runtime().sysdb.get_queue(queue_name)
            queue = stored if stored is not None else queue_name
        checked = check_enqueue_options(queue, opts, app_version=None, fixed_version=fixed_version)
        return dataclasses.replace(checked, timeout_ms=timeout_ms)

    return enqueue_workflow(info, args, kwargs, request, workflow_id=workflow_id)


def _refuse_partitioned_deduplication(queue_name: str) -> None:
    raise ValueError(
        f"Deduplication is not supported for partitioned queues (queue {queue_name!r}): "
        "an enqueue cannot set both deduplication_id and queue_partition_key"
    )


def check_enqueue_options(
    queue: QueueInfo | str,
    options: SetEnqueueOptions | None,
    *,
    app_version: str | None,
    fixed_version: bool = False,
) -> EnqueueRequest:
    """Check enqueue options against the queue they are for (only a queue's name: not
    registered yet, so nothing to check them against). ``app_version`` (or else the
    options') is the version that may run it; unless ``fixed_version``, None means the
    running application's version. Priority applies on any queue."""
    opts = options or SetEnqueueOptions()
    if app_version is None:
        app_version = opts.app_version
    name = queue if isinstance(queue, str) else queue.name
    if opts.deduplication_id is not None and (
        opts.queue_partition_key is not None
        or (not isinstance(queue, str) and queue.partition_queue)
    ):
        _refuse_partitioned_deduplication(name)
    if not isinstance(queue, str):
        if queue.partition_queue and opts.queue_partition_key is None:
            raise ValueError(
                f"A workflow cannot be enqueued on partitioned queue {name!r} without a "
                "partition key: enqueue inside SetEnqueueOptions(queue_partition_key=...)"
            )
        if not queue.partition_queue and opts.queue_partition_key is not None:
            raise ValueError(
                "You can only use a partition key on a partition-enabled queue: queue "
                f"{name!r} is not partitioned (partition_queue=False), so an enqueue "
                f"cannot set queue_partition_key={opts.queue_partition_key!r}"
            )
    if app_version is None and not fixed_version:
        rt = current_runtime()
        app_version = rt.app_version if rt is not None and rt.launched else None
    return EnqueueRequest(
        queue_name=name,
        priority=opts.priority or 0,
        deduplication_id=opts.deduplication_id,
        partition_key=opts.queue_partition_key,
        delay_seconds=opts.delay_seconds,
        app_version=app_version,
    )
