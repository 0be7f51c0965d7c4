"""Where the running code is: which workflow, which step, which SQL transaction.

Held in context variables, so every asyncio task sees its own. A ``WorkflowState`` is
shared by the tasks a workflow spawns (``asyncio.gather``): they draw step IDs from one
counter, taken synchronously at call time, so the IDs follow call order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from ._clock import is_seconds
from ._errors import DBOSWorkflowCancelledError
from ._ids import check_text, check_workflow_id
from .sysdb import StepRow

__all__ = [
    "SetEnqueueOptions",
    "SetWorkflowID",
    "SetWorkflowTimeout",
    "SqlSessionSlot",
    "StepFrame",
    "WorkflowState",
    "current_sql_connection",
    "current_sql_session",
    "current_step",
    "current_workflow",
    "enqueue_options",
    "take_assigned_workflow_id",
    "timeout_to_ms",
    "workflow_timeout_ms",
]


@dataclass(eq=False, slots=True)
class WorkflowState:
    """A running workflow: its ID and name, its step counter, and (when it re-executes)
    the steps recorded by earlier runs, loaded once.

    Cancellation happens at step boundaries: a step or transaction whose body is running
    (``step_body``) finishes and records its checkpoint; the workflow is stopped once no
    body runs, and a cancelled workflow starts no new step."""

    workflow_id: str
    name: str
    recorded: dict[int, StepRow] = field(default_factory=dict)
    #: True when earlier runs may have recorded work (recovery or re-execution).
    replaying: bool = False
    next_step_id: int = 0
    #: When the workflow is cancelled (epoch ms), inherited by its children.
    deadline_ms: int | None = None
    #: Set when the workflow was cancelled: its next step raises instead of running.
    cancelled: bool = False
    #: How many step or transaction bodies (with their checkpoint writes) run now.
    bodies: int = field(default=0, init=False)
    #: Set while no body runs; made only when a cancelled run waits for its bodies
    #: (a WorkflowState lives as long as its workflow runs: few objects each).
    _idle: asyncio.Event | None = field(default=None, init=False, repr=False)
    #: What stops the workflow's task, kept by a cancel that waits for running bodies.
    _stop: Callable[[], object] | None = field(default=None, init=False, repr=False)
    #: Step rows handed to the journal without waiting (``Checkpoint.defer``), with the
    #: futures that settle when they commit: durable before the workflow's next effect.
    deferred: list[tuple[StepRow, asyncio.Future[Any]]] = field(
        default_factory=list, init=False, repr=False
    )
    #: The queue (and partition) it was claimed from, for per-process limits.
    queue_name: str | None = None
    partition_key: str | None = None

    def take_step_id(self) -> int:
        """The next step ID; a cancelled workflow stops here, at its next step."""
        if self.cancelled:
            raise DBOSWorkflowCancelledError(self.workflow_id)
        self.next_step_id += 1
        return self.next_step_id

    def cancel(self, stop: Callable[[], object]) -> None:
        """Mark the workflow cancelled and call ``stop`` (which stops its task) at once if
        no step body runs, else when the last running one has recorded its checkpoint."""
        self.cancelled = True
        if self.bodies == 0:
            self._stop = None
            stop()
        else:
            self._stop = stop

    @contextlib.contextmanager
    def step_body(self) -> Iterator[None]:
        """Around a step or transaction body and its checkpoint write: a cancel arriving
        meanwhile lets it finish. A cancelled workflow starts no new body."""
        if self.cancelled:
            raise DBOSWorkflowCancelledError(self.workflow_id)
        self._enter()
        try:
            yield
        finally:
            self._leave()

    @contextlib.contextmanager
    def between_attempts(self) -> Iterator[None]:
        """Inside ``step_body``, while a step waits to retry: no body runs, so a cancel
        stops the workflow here (the step is not recorded, and runs again if resumed)."""
        self._leave()
        try:
            yield
        finally:
            self._enter()
        if self.cancelled:
            raise DBOSWorkflowCancelledError(self.workflow_id)

    async def bodies_ended(self) -> None:
        """Wait until no body runs (a cancelled run waits for a step still running under
        ``asyncio.gather``, so a resume cannot start before that step is recorded)."""
        self._stop = None
        while self.bodies:
            if self._idle is None:
                self._idle = asyncio.Event()  # (set by the last body's _leave)
            await self._idle.wait()

    def enter_body(self) -> None:
        """``step_body``'s entry, for a caller that cannot afford a generator context
        manager per step: raises if cancelled, else counts a body running. Pair each
        with ``leave_body`` in a ``finally``."""
        if self.cancelled:
            raise DBOSWorkflowCancelledError(self.workflow_id)
        self._enter()

    def leave_body(self) -> None:
        self._leave()

    def _enter(self) -> None:
        self.bodies += 1
        if self._idle is not None:
            self._idle.clear()

    def _leave(self) -> None:
        self.bodies -= 1
        if self.bodies == 0:
            if self._idle is not None:
                self._idle.set()
            stop, self._stop = self._stop, None
            if stop is not None:
                stop()


@dataclass(slots=True)
class StepFrame:
    """The step or transaction whose body is running (``step_id`` is None outside a
    workflow)."""

    workflow_id: str | None
    step_id: int | None
    #: For a step with retries: the attempt running now (from 0), and how many it may make.
    current_attempt: int | None = None
    max_attempts: int | None = None


@dataclass(eq=False)
class SqlSessionSlot:
    """The running transaction body's connection, and the SQLAlchemy session opened on it
    the first time the body reads ``DBOS.sql_session`` (None until then)."""

    conn: Any
    session: Any = None


current_workflow: ContextVar[WorkflowState | None] = ContextVar("dbos_async_workflow", default=None)
current_step: ContextVar[StepFrame | None] = ContextVar("dbos_async_step", default=None)
current_sql_connection: ContextVar[Any] = ContextVar("dbos_async_sql_connection", default=None)
#: The running ``@DBOS.transaction``'s SQLAlchemy session slot (``DBOS.sql_session``).
current_sql_session: ContextVar[SqlSessionSlot | None] = ContextVar(
    "dbos_async_sql_session", default=None
)
#: The options of an enclosing ``SetEnqueueOptions`` block (they apply to enqueues only).
enqueue_options: ContextVar[SetEnqueueOptions | None] = ContextVar(
    "dbos_async_enqueue_options", default=None
)


class _AssignedID:
    __slots__ = ("used", "workflow_id")

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        self.used = False


_assigned_id: ContextVar[_AssignedID | None] = ContextVar("dbos_async_next_id", default=None)


def take_assigned_workflow_id() -> str | None:
    """The ID a ``SetWorkflowID`` block fixed for the next workflow, consumed once."""
    assigned = _assigned_id.get()
    if assigned is None or assigned.used:
        return None
    assigned.used = True
    return assigned.workflow_id


def new_workflow_id() -> str:
    """A random (version 4) UUID in its usual text form, as ``str(uuid.uuid4())`` gives,
    built without the ``UUID`` object (a third of the time; once per workflow)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class SetWorkflowID:
    """``with SetWorkflowID("id"):`` fixes the ID of the next workflow started or called
    in the block.

    A workflow ID is a non-empty ``str`` of at most 1000 UTF-8 bytes, with no control
    characters (U+0000-U+001F, U+007F-U+009F) and no lone surrogates; anything else
    (spaces, quotes, ``%``, ``/``, emoji, any letters) is fine. Another ID raises
    ``ValueError`` here (``TypeError`` for a non-str), on every backend, before anything
    is written (``dbos_async._ids`` has the rule).
    """

    def __init__(self, workflow_id: str) -> None:
        check_workflow_id(workflow_id, "SetWorkflowID(workflow_id)")
        self.workflow_id = workflow_id
        self._token: Any = None

    def __enter__(self) -> SetWorkflowID:
        self._token = _assigned_id.set(_AssignedID(self.workflow_id))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _assigned_id.reset(self._token)


_timeout_ms: ContextVar[int | None] = ContextVar("dbos_async_timeout_ms", default=None)


def workflow_timeout_ms() -> int | None:
    """The timeout a ``SetWorkflowTimeout`` block gives workflows started in it."""
    return _timeout_ms.get()


def timeout_to_ms(seconds: float | None, what: str) -> int | None:
    """A workflow timeout in whole milliseconds (at least 1); None stays None."""
    if seconds is None:
        return None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
        raise ValueError(f"{what} needs a positive number of seconds, got {seconds!r}")
    return max(1, int(seconds * 1000))


class SetWorkflowTimeout:
    """``with SetWorkflowTimeout(seconds):`` workflows started in the block are cancelled
    at their deadline (start + ``seconds``), after a recovery too; their child workflows
    inherit the deadline. ``None`` lifts an outer block's timeout."""

    def __init__(self, seconds: float | None) -> None:
        self._ms = timeout_to_ms(seconds, "SetWorkflowTimeout")
        self.seconds = seconds
        self._token: Any = None

    def __enter__(self) -> SetWorkflowTimeout:
        self._token = _timeout_ms.set(self._ms)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _timeout_ms.reset(self._token)


_MAX_PRIORITY = 2**31 - 1


class SetEnqueueOptions:
    """``with SetEnqueueOptions(deduplication_id=..., priority=..., app_version=...,
    queue_partition_key=..., delay_seconds=...):`` options for the enqueues
    (``Queue.enqueue``, ``DBOS.enqueue_workflow``) in the block.
    Starting or calling a workflow in the block without a queue raises ``DBOSException``
    (naming the options set): the options would be ignored.

    A second ENQUEUED or PENDING workflow with the same ``deduplication_id`` on a queue
    raises ``DBOSQueueDeduplicatedError``; the ID is free again once the first ends.
    Lower ``priority`` numbers run first (no priority counts as 0), on any queue;
    ``delay_seconds`` keeps the workflow from starting before then; ``app_version`` lets
    only the processes of that application version run it (by default, the enqueuing
    process's version). Deduplication is refused on a partitioned queue.
    """

    def __init__(
        self,
        *,
        deduplication_id: str | None = None,
        priority: int | None = None,
        app_version: str | None = None,
        queue_partition_key: str | None = None,
        delay_seconds: float | None = None,
    ) -> None:
        for what, text in (
            ("deduplication_id", deduplication_id),
            ("app_version", app_version),
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
        if delay_seconds is not None and not is_seconds(delay_seconds):
            raise ValueError(
                "SetEnqueueOptions(delay_seconds=...) must be a non-negative number, "
                f"got {delay_seconds!r}"
            )
        self.deduplication_id = deduplication_id
        self.priority = priority
        self.app_version = app_version
        self.queue_partition_key = queue_partition_key
        self.delay_seconds = delay_seconds
        self._token: Any = None

    def __enter__(self) -> SetEnqueueOptions:
        self._token = enqueue_options.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        enqueue_options.reset(self._token)
