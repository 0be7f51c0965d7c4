"""Debouncing: ``Debouncer``, and the debouncer workflow that collapses a burst of calls.

``await debouncer.debounce(key, period_sec, *args)`` asks for the workflow to run once
no other call with the same key has come for ``period_sec`` seconds (or, with
``debounce_timeout_sec``, at the latest that long after the first call), with the
arguments of the last call. It returns a handle to the workflow that will run.

How, with the ordinary primitives only:

- A burst is one **debouncer workflow** (``_dbos_debouncer_workflow``), enqueued on the
  internal queue with the deduplication ID ``{workflow name}-{key}``: while it is
  ENQUEUED or PENDING no second one can be enqueued for the key, across all processes
  and clients. Its inputs carry the first call's serialized arguments and the ID the
  debounced workflow will have.
- A later call of the burst finds that debouncer (the holder of the deduplication ID)
  and sends it its arguments as a message (idempotently: a retried send delivers once).
  A call that finds none enqueues one; if another call's enqueue won meanwhile, it joins
  that one. The debouncer
  ``recv``\\ s messages until ``period_sec`` passes without one, each message replacing
  the arguments and restarting the period; then it enqueues the debounced workflow, an
  ordinary workflow, on the chosen queue, with the last arguments, and ends.
- A message sent just as the debouncer stops listening must not be lost. Before its
  last look at the mailbox the debouncer publishes the event ``closed``, then takes
  every message left (each acknowledged with an event keyed by its message ID). A caller
  that, after its send, does not see ``closed`` knows its message will be taken; one
  that sees it waits for the acknowledgement or the debouncer's end, and starts a new
  burst if its message was not taken. So every call counts exactly once.
- The debouncer is a workflow: a crash of its process loses nothing (its received
  messages are recorded steps; it is recovered and goes on waiting).

Inside a workflow, ``debounce`` is one step (``DBOS.debounce``): a re-run gets the same
handle back, and the IDs it uses are derived from the calling step, so a repeated
attempt sends and enqueues nothing twice.
"""

from __future__ import annotations

import types
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, ParamSpec, TypedDict, TypeVar

from ._checkpoint import Checkpoint, next_checkpoint
from ._clock import is_seconds, now_ms
from ._context import (
    current_workflow,
    enqueue_options,
    new_workflow_id,
    take_assigned_workflow_id,
    workflow_timeout_ms,
)
from ._decorators import function_info
from ._decorators import workflow as workflow_decorator
from ._errors import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSConflictingWorkflowError,
    DBOSException,
    DBOSNonExistentWorkflowError,
    DBOSQueueDeduplicatedError,
    DBOSQueueNotFoundError,
)
from ._handle import WorkflowHandle, outcome_of
from ._ids import check_text, check_workflow_id
from ._messaging import recv, send_message, set_event, wait_for_event
from ._queue import Queue
from ._registry import registry
from ._runner import EnqueueRequest, enqueued_row
from ._runtime import Runtime, get_runtime
from ._status import WorkflowStatusString
from ._txguard import refuse_in_transaction
from .sysdb import notification_key

__all__ = [
    "DEBOUNCER_WORKFLOW_NAME",
    "INTERNAL_QUEUE_NAME",
    "DebounceCall",
    "DebouncedWorkflowHandle",
    "Debouncer",
    "DebouncerOptions",
    "check_timeout",
    "debounce_call",
    "ensure_registered",
    "queue_name_of",
    "reject_conflicting_options",
]

P = ParamSpec("P")
R = TypeVar("R")

#: The queue the debouncer workflows (and debounced workflows given no queue) run on.
INTERNAL_QUEUE_NAME = "_dbos_internal_queue"
DEBOUNCER_WORKFLOW_NAME = "_dbos_debouncer_workflow"
_TOPIC = "DEBOUNCER_TOPIC"
#: The event a debouncer publishes before its last look at its mailbox.
_CLOSED = "DEBOUNCER_CLOSED"
_ID_NAMESPACE = uuid.UUID("5f0c8a52-4a8e-4c1e-9a53-0d6b2f3c7e11")


class DebouncerOptions(TypedDict):
    """What a debouncer was created with (DBOS Transact's ``DebouncerOptions``)."""

    workflow_name: str
    debounce_timeout_sec: float | None
    queue_name: str | None


class _Target(TypedDict):
    """The workflow a debouncer enqueues at the end, minus its arguments."""

    workflow_id: str
    workflow_name: str
    queue_name: str
    timeout_ms: int | None
    app_version: str | None
    #: When (epoch ms) the debouncer stops waiting, whatever comes (None: no limit).
    deadline_ms: int | None


class _Message(TypedDict):
    """One later call's arguments, sent to the burst's debouncer."""

    id: str
    inputs: str
    period_sec: float


# -- the debouncer workflow ----------------------------------------------------------------


async def _now_ms() -> int:
    return now_ms()


async def _debouncer_workflow(target: _Target, inputs: str, period_sec: float) -> str:
    """Collect the burst's calls, then enqueue the debounced workflow with the last
    arguments; returns its ID. (Registered as ``_dbos_debouncer_workflow``.)"""
    deadline_ms = target["deadline_ms"]
    while True:
        timeout = period_sec
        if deadline_ms is not None:
            # (Recorded, so a re-run takes the same path through the loop.)
            now = await _recorded("DBOS.debouncerNow", _now_ms)
            if now >= deadline_ms:
                break
            timeout = min(period_sec, (deadline_ms - now) / 1000)
        message: _Message | None = await recv(_TOPIC, timeout)
        if message is None:
            break
        inputs, period_sec = message["inputs"], float(message["period_sec"])
        await set_event(message["id"], True)
    # Callers that send from now on see ``closed`` and wait for an acknowledgement.
    await set_event(_CLOSED, True)
    while (message := await recv(_TOPIC, 0)) is not None:
        inputs = message["inputs"]
        await set_event(message["id"], True)
    state = current_workflow.get()
    parent = state.workflow_id if state is not None else None

    async def enqueue() -> None:
        await _enqueue_target(get_runtime(), target, inputs, parent)

    await _recorded("DBOS.debouncerEnqueue", enqueue)
    return target["workflow_id"]


async def _enqueue_target(rt: Runtime, target: _Target, inputs: str, parent: str | None) -> None:
    """Enqueue the debounced workflow (a repeat finds it enqueued and does nothing)."""
    request = EnqueueRequest(queue_name=target["queue_name"], app_version=target["app_version"])
    row = enqueued_row(
        target["workflow_id"],
        target["workflow_name"],
        inputs,
        request,
        parent_workflow_id=parent,
        timeout_ms=target["timeout_ms"],
    )
    existing = await rt.sysdb.enqueue_workflow(row)
    if existing is not None and existing.name != row.name:
        raise DBOSConflictingWorkflowError(row.workflow_id, existing.name, row.name)
    rt.notifier.notify(notification_key("queue", target["queue_name"], ""))


_DEBOUNCER = workflow_decorator(name=DEBOUNCER_WORKFLOW_NAME)(_debouncer_workflow)
_INTERNAL_QUEUE = Queue(INTERNAL_QUEUE_NAME)
# (Every process declares the internal queue, so debouncers run wherever DBOS runs.)
registry.builtin_workflows.add(DEBOUNCER_WORKFLOW_NAME)
registry.builtin_queues.add(INTERNAL_QUEUE_NAME)


def ensure_registered() -> None:
    """Put the debouncer workflow and the internal queue back into the registry if
    something removed them (they are registered at import, and ``registry.clear`` keeps
    them)."""
    info = function_info(_DEBOUNCER)
    assert info is not None
    if registry.workflows.get(DEBOUNCER_WORKFLOW_NAME) is not info:
        registry.add_workflow(info)
    if registry.queues.get(INTERNAL_QUEUE_NAME) is not _INTERNAL_QUEUE:
        registry.declare_queue(_INTERNAL_QUEUE)


def _recorded(name: str, run: Callable[[], Awaitable[R]]) -> Coroutine[Any, Any, R]:
    """``run()`` as a step named ``name`` of the calling workflow (its outcome recorded, a
    re-run gets it back); ``run()`` itself elsewhere. The step ID is taken now."""
    checkpoint = next_checkpoint(name)
    if checkpoint is None:
        return _plain(run)
    return checkpoint.traced(lambda: _as_step(checkpoint, lambda _: run()))


async def _plain(run: Callable[[], Awaitable[R]]) -> R:
    return await run()


async def _as_step(checkpoint: Checkpoint, run: Callable[[Checkpoint], Awaitable[Any]]) -> Any:
    rt = get_runtime()
    if checkpoint.recorded:
        return checkpoint.replay(rt)
    started = now_ms()
    try:
        value = await run(checkpoint)
        output = rt.codec.dumps(value, f"output of {checkpoint.name}")
    except Exception as exc:
        return await checkpoint.record_error(rt, exc, started)
    return await checkpoint.record(rt, output, value, started)


# -- one call ------------------------------------------------------------------------------


class DebounceCall:
    """One ``debounce`` call, checked, with everything it read from its context."""

    def __init__(
        self,
        *,
        workflow_name: str,
        key: str,
        period_sec: float,
        timeout_sec: float | None,
        queue_name: str,
        workflow_id: str | None,
        timeout_ms: int | None,
        app_version: str | None,
        debouncer_version: str | None,
    ) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError(f"debounce_key must be a non-empty str, got {key!r}")
        check_text(key, "debounce_key")
        if not is_seconds(period_sec):
            raise ValueError(
                f"debounce_period_sec must be a non-negative number of seconds, got {period_sec!r}"
            )
        self.workflow_name = workflow_name
        self.deduplication_id = f"{workflow_name}-{key}"
        self.period_sec = float(period_sec)
        self.timeout_sec = timeout_sec
        self.queue_name = queue_name
        self.workflow_id = workflow_id
        self.timeout_ms = timeout_ms
        self.app_version = app_version
        self.debouncer_version = debouncer_version


async def debounce_call(
    rt: Runtime, call: DebounceCall, inputs: str, ids: tuple[str, str, str] | None = None
) -> tuple[str, str]:
    """Make ``call`` count in its key's burst: enqueue a new debouncer, or hand the
    arguments (``inputs``, serialized) to the one that holds the key. ``ids`` (the
    debounced workflow's ID when not fixed, the debouncer's, the message's) are derived
    by the caller in a workflow, else random. Returns (debounced workflow ID, debouncer
    ID)."""
    if ids is None:
        ids = (new_workflow_id(), new_workflow_id(), new_workflow_id())
    own_id, debouncer_id, message_id = ids
    workflow_id = call.workflow_id or own_id
    message: _Message = {"id": message_id, "inputs": inputs, "period_sec": call.period_sec}
    while True:
        # Most calls of a burst find its debouncer: look first, enqueue only if none.
        holder = await rt.sysdb.deduplicated_workflow(INTERNAL_QUEUE_NAME, call.deduplication_id)
        if holder is not None:
            held = _target_of(rt, holder.name, holder.inputs)
            if held is None or held["workflow_name"] != call.workflow_name:
                raise DBOSQueueDeduplicatedError(
                    holder.workflow_id, INTERNAL_QUEUE_NAME, call.deduplication_id
                )
            if await _hand_over(rt, holder.workflow_id, message):
                return held["workflow_id"], holder.workflow_id
            continue  # it ended without taking the message: this call starts the next burst
        started = now_ms()
        target: _Target = {
            "workflow_id": workflow_id,
            "workflow_name": call.workflow_name,
            "queue_name": call.queue_name,
            "timeout_ms": call.timeout_ms,
            "app_version": call.app_version,
            "deadline_ms": (
                None if call.timeout_sec is None else started + int(call.timeout_sec * 1000)
            ),
        }
        row = enqueued_row(
            debouncer_id,
            DEBOUNCER_WORKFLOW_NAME,
            rt.codec.dump_inputs(
                DEBOUNCER_WORKFLOW_NAME, None, (target, inputs, call.period_sec), {}
            ),
            EnqueueRequest(
                queue_name=INTERNAL_QUEUE_NAME,
                deduplication_id=call.deduplication_id,
                app_version=call.debouncer_version,
            ),
        )
        try:
            existing = await rt.sysdb.enqueue_workflow(row)
        except DBOSQueueDeduplicatedError:
            continue  # another call started a burst meanwhile: join it
        if existing is not None:
            # A repeated attempt (the same debouncer ID): it stands as enqueued then.
            held = _target_of(rt, existing.name, existing.inputs)
            if held is None:
                raise DBOSConflictingWorkflowError(
                    debouncer_id, existing.name, DEBOUNCER_WORKFLOW_NAME
                )
            return held["workflow_id"], debouncer_id
        rt.notifier.notify(notification_key("queue", INTERNAL_QUEUE_NAME, ""))
        return workflow_id, debouncer_id


def _target_of(rt: Runtime, name: str, inputs: str | None) -> _Target | None:
    """The target a debouncer's inputs name (None if it is not a debouncer)."""
    if name != DEBOUNCER_WORKFLOW_NAME or inputs is None:
        return None
    raw = rt.codec.loads(inputs)
    try:
        target: _Target = raw["args"][0]
        target["workflow_id"]
    except (KeyError, IndexError, TypeError):
        return None
    return target


async def _hand_over(rt: Runtime, debouncer_id: str, message: _Message) -> bool:
    """Send the message to the debouncer; True once it is sure to be taken."""
    await send_message(rt, debouncer_id, message, _TOPIC, message["id"])
    if await rt.sysdb.get_event(debouncer_id, _CLOSED) is None:
        return True  # it has not made its last look yet: that look finds the message
    while True:
        if await wait_for_event(rt, debouncer_id, message["id"], 1.0) is not None:
            return True
        row = await rt.sysdb.get_workflow(debouncer_id)
        if row is None or WorkflowStatusString(row.status).is_terminal:
            return await rt.sysdb.get_event(debouncer_id, message["id"]) is not None


# -- the handle ----------------------------------------------------------------------------


class DebouncedWorkflowHandle(WorkflowHandle[R]):
    """A handle to a debounced workflow, which exists once its debouncer has enqueued it:
    ``get_result`` waits for that first. (``get_status`` raises
    ``DBOSNonExistentWorkflowError`` until then.)"""

    def __init__(self, runtime: Runtime, workflow_id: str, debouncer_id: str) -> None:
        super().__init__(runtime, workflow_id)
        self.debouncer_id = debouncer_id

    async def get_result(self) -> R:
        """Wait for the debounce period to end, then for the workflow's result."""
        await self._enqueued()
        return await super().get_result()

    get_result_async = get_result

    async def _enqueued(self) -> None:
        rt = self._runtime
        delay = 0.05
        with rt.notifier.subscribe(notification_key("end", self.debouncer_id, "")) as ended:
            while await rt.sysdb.get_workflow(self.workflow_id) is None:
                debouncer = await rt.sysdb.get_workflow(self.debouncer_id)
                if debouncer is None or WorkflowStatusString(debouncer.status).is_terminal:
                    if await rt.sysdb.get_workflow(self.workflow_id) is not None:
                        return
                    if debouncer is not None:
                        if debouncer.status == WorkflowStatusString.CANCELLED:
                            raise DBOSAwaitedWorkflowCancelledError(self.workflow_id)
                        outcome_of(rt, debouncer)  # (raises its error, if it failed)
                    raise DBOSNonExistentWorkflowError(self.workflow_id)
                await rt.notifier.wait(ended, delay)
                delay = min(delay * 2, 1.0)


# -- Debouncer -----------------------------------------------------------------------------


def reject_conflicting_options(
    *, deduplication_id: bool, delay: bool, priority: bool, partition_key: bool
) -> None:
    """A debounce owns the deduplication ID (the key) and the delay (the period) of what
    it enqueues, and priority and partition keys do not apply to it (as in DBOS
    Transact): refuse them rather than ignore them."""
    for given, message in (
        (
            deduplication_id,
            "Cannot debounce a workflow with a deduplication_id set: the debounce key is "
            "used as the workflow's deduplication ID.",
        ),
        (
            delay,
            "Cannot debounce a workflow with a delay set: the debounce period controls "
            "the workflow's delay.",
        ),
        (
            priority,
            "Cannot debounce a workflow with a priority set: priority is not supported "
            "for debounced workflows.",
        ),
        (
            partition_key,
            "Cannot debounce a workflow with a queue partition key set: partition keys "
            "are not supported for debounced workflows.",
        ),
    ):
        if given:
            raise DBOSException(message)


def queue_name_of(queue: Queue | str | None) -> str | None:
    """The name of a debouncer's ``queue`` (a ``Queue`` or a name), or None."""
    if queue is None or isinstance(queue, str):
        if queue is not None:
            check_workflow_id(queue, "queue")
        return queue
    if isinstance(queue, Queue):
        return queue.name
    raise TypeError(f"queue must be a Queue, a queue name or None, got {queue!r}")


def check_timeout(debounce_timeout_sec: object) -> float | None:
    """``debounce_timeout_sec``: None, or a positive number of seconds."""
    if debounce_timeout_sec is None:
        return None
    if not is_seconds(debounce_timeout_sec) or debounce_timeout_sec == 0:
        raise ValueError(
            "debounce_timeout_sec must be a positive number of seconds or None, "
            f"got {debounce_timeout_sec!r}"
        )
    return float(debounce_timeout_sec)  # type: ignore[arg-type]


def _derived_ids(checkpoint: Checkpoint) -> tuple[str, str, str]:
    """The IDs a debounce made as step ``checkpoint`` uses: the debounced workflow's (as
    a child started at that step is named), the debouncer's and the message's."""
    workflow_id = checkpoint.state.workflow_id
    base = f"{workflow_id}\x1f{checkpoint.step_id}"
    return (
        f"{workflow_id}-{checkpoint.step_id}",
        str(uuid.uuid5(_ID_NAMESPACE, base + "\x1fdebouncer")),
        str(uuid.uuid5(_ID_NAMESPACE, base + "\x1fmessage")),
    )


class Debouncer(Generic[P, R]):
    """Collapses bursts of calls of one workflow into one run, per key.

    ``debouncer = Debouncer.create(workflow, debounce_timeout_sec=None, queue=None)``,
    then ``handle = await debouncer.debounce(key, period_sec, *args, **kwargs)``: the
    workflow runs once no call with the same key has come for ``period_sec`` seconds
    (each call restarts the period, with its own ``period_sec``), with the arguments of
    the last call, on ``queue`` (by default an internal queue without limits). With
    ``debounce_timeout_sec`` it runs at the latest that many seconds after the burst's
    first call. The handle is the workflow's (it exists once the period has ended);
    every call of a burst gets the same one. Calls from several tasks, processes and
    ``DebouncerClient``\\ s collapse alike. A ``SetWorkflowID`` block around the call
    that starts a burst names the workflow; ``SetWorkflowTimeout`` sets its timeout.
    Inside a workflow a call is a step: a re-run gets the same handle back.
    """

    def __init__(
        self,
        workflow_name: str,
        *,
        debounce_timeout_sec: float | None = None,
        queue: Queue | str | None = None,
    ) -> None:
        check_text(workflow_name, "workflow_name")
        ensure_registered()
        self.func_name = workflow_name
        self.options: DebouncerOptions = {
            "workflow_name": workflow_name,
            "debounce_timeout_sec": check_timeout(debounce_timeout_sec),
            "queue_name": queue_name_of(queue),
        }

    @staticmethod
    def create(
        workflow: Callable[P, Coroutine[Any, Any, R]],
        *,
        debounce_timeout_sec: float | None = None,
        queue: Queue | str | None = None,
    ) -> Debouncer[P, R]:
        """A debouncer of ``workflow`` (a function decorated with ``@DBOS.workflow()``;
        not a method)."""
        if isinstance(workflow, types.MethodType):
            raise TypeError("Only workflow functions may be debounced, not methods")
        info = function_info(workflow)
        if info is None or info.kind != "workflow":
            raise TypeError(
                f"Debouncer.create() needs a function decorated with @DBOS.workflow(), "
                f"got {workflow!r}"
            )
        return Debouncer[P, R](info.name, debounce_timeout_sec=debounce_timeout_sec, queue=queue)

    create_async = create

    def debounce(
        self, debounce_key: str, debounce_period_sec: float, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, WorkflowHandle[R]]:
        """Count this call in the burst of ``debounce_key``; the handle of the workflow
        that will run (with the last call's arguments) comes back once the call is
        durable. ``SetEnqueueOptions`` around it may not set a deduplication ID, delay,
        priority or partition key (``DBOSException``)."""
        refuse_in_transaction("Debouncer.debounce()")
        opts = enqueue_options.get()
        if opts is not None:
            reject_conflicting_options(
                deduplication_id=opts.deduplication_id is not None,
                delay=opts.delay_seconds is not None,
                priority=opts.priority is not None,
                partition_key=opts.queue_partition_key is not None,
            )
        info = registry.workflows.get(self.func_name)
        if info is None:
            raise DBOSException(
                f"Debouncer: no workflow is registered as {self.func_name!r} in this process"
            )
        ensure_registered()
        rt = get_runtime()
        version = rt.app_version if rt.launched else None
        call = DebounceCall(
            workflow_name=self.func_name,
            key=debounce_key,
            period_sec=debounce_period_sec,
            timeout_sec=self.options["debounce_timeout_sec"],
            queue_name=self.options["queue_name"] or INTERNAL_QUEUE_NAME,
            workflow_id=take_assigned_workflow_id(),
            timeout_ms=workflow_timeout_ms(),
            app_version=version,
            debouncer_version=version,
        )
        inputs = rt.codec.dump_inputs(info.name, info.signature, args, kwargs)

        async def run(checkpoint: Checkpoint | None) -> dict[str, str]:
            await _check_queue(rt, call.queue_name)
            ids = _derived_ids(checkpoint) if checkpoint is not None else None
            workflow_id, debouncer_id = await debounce_call(rt, call, inputs, ids)
            return {"workflow_id": workflow_id, "debouncer_id": debouncer_id}

        # (In a workflow the step ID is taken now, at call time, as for every step.)
        checkpoint = next_checkpoint("DBOS.debounce")
        if checkpoint is None:
            return _handle(rt, run(None))
        return _handle(rt, checkpoint.traced(lambda: _as_step(checkpoint, run)))

    debounce_async = debounce


async def _handle(
    rt: Runtime, done: Coroutine[Any, Any, dict[str, str]]
) -> DebouncedWorkflowHandle[Any]:
    ids = await done
    return DebouncedWorkflowHandle(rt, ids["workflow_id"], ids["debouncer_id"])


async def _check_queue(rt: Runtime, name: str) -> None:
    """The queue a debounced workflow is to run on must exist and take it as is."""
    queue: Any = registry.queues.get(name)
    info = queue.info if isinstance(queue, Queue) else None
    if info is None:
        info = next((q for q in await rt.sysdb.list_queues() if q.name == name), None)
    if info is None:
        raise DBOSQueueNotFoundError(
            f"Debouncer: queue {name!r} is not declared in this process nor by any "
            "launched DBOS process"
        )
    if info.partition_queue:
        raise DBOSException(
            f"Debouncer: queue {name!r} is partitioned; partition keys are not supported "
            "for debounced workflows"
        )
