"""``DebouncerClient``: debouncing from a process that runs no workflows, through a
``DBOSClient`` (the protocol is ``_debouncer``'s; the debouncer workflows run in the
launched processes, all of which declare the internal queue)."""

from __future__ import annotations

from typing import Any

from ._context import timeout_to_ms
from ._debouncer import (
    INTERNAL_QUEUE_NAME,
    DebounceCall,
    DebouncedWorkflowHandle,
    DebouncerOptions,
    check_timeout,
    debounce_call,
    queue_name_of,
    reject_conflicting_options,
)
from ._errors import DBOSException
from ._handle import WorkflowHandle
from ._ids import check_text, check_workflow_id
from ._queue import Queue
from .client import DBOSClient, EnqueueOptions

__all__ = ["DebouncerClient"]

_KEYS = frozenset(EnqueueOptions.__annotations__)


def _check_options(options: object) -> None:
    """``DBOSClient.enqueue``'s options, with the two it requires."""
    if not isinstance(options, dict):
        raise TypeError(f"DebouncerClient: workflow_options must be a dict, got {options!r}")
    unknown = set(options) - _KEYS
    if unknown:
        raise TypeError(
            f"DebouncerClient: unknown option(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_KEYS))}"
        )
    for key in ("queue_name", "workflow_name"):
        value = options.get(key)
        if not isinstance(value, str) or not value:
            raise TypeError(f"DebouncerClient needs workflow_options[{key!r}] as a non-empty str")


class DebouncerClient:
    """``Debouncer`` for a ``DBOSClient``: the workflow is named in ``workflow_options``
    (``DBOSClient.enqueue``'s options: ``workflow_name``, ``queue_name``, and optionally
    ``workflow_id``, ``workflow_timeout``, ``app_version``; not ``deduplication_id``,
    ``delay_seconds``, ``priority`` or ``queue_partition_key``). It runs on ``queue`` if
    given, else on ``workflow_options["queue_name"]``. The options are read at each
    ``debounce`` call."""

    def __init__(
        self,
        client: DBOSClient,
        workflow_options: EnqueueOptions,
        *,
        debounce_timeout_sec: float | None = None,
        queue: Queue | str | None = None,
    ) -> None:
        if not isinstance(client, DBOSClient):
            raise TypeError(f"DebouncerClient needs a DBOSClient, got {client!r}")
        _check_options(workflow_options)
        self.client = client
        self.workflow_options = workflow_options
        self.debouncer_options: DebouncerOptions = {
            "workflow_name": workflow_options["workflow_name"],
            "debounce_timeout_sec": check_timeout(debounce_timeout_sec),
            "queue_name": queue_name_of(queue),
        }

    async def debounce(
        self, debounce_key: str, debounce_period_sec: float, *args: Any, **kwargs: Any
    ) -> WorkflowHandle[Any]:
        """As ``Debouncer.debounce``: count this call in the burst of ``debounce_key``
        and return the handle of the workflow that will run with the last arguments."""
        opts = self.workflow_options
        _check_options(opts)
        reject_conflicting_options(
            deduplication_id=opts.get("deduplication_id") is not None,
            delay=opts.get("delay_seconds") is not None,
            priority=opts.get("priority") is not None,
            partition_key=opts.get("queue_partition_key") is not None,
        )
        name = self.debouncer_options["workflow_name"]
        queue_name = self.debouncer_options["queue_name"] or opts["queue_name"]
        check_workflow_id(queue_name, "queue_name")
        workflow_id = opts.get("workflow_id")
        if workflow_id is not None:
            check_workflow_id(workflow_id, "options['workflow_id']")
        check_text(opts.get("app_version"), "options['app_version']", optional=True)
        call = DebounceCall(
            workflow_name=name,
            key=debounce_key,
            period_sec=debounce_period_sec,
            timeout_sec=self.debouncer_options["debounce_timeout_sec"],
            queue_name=queue_name,
            workflow_id=workflow_id,
            timeout_ms=timeout_to_ms(
                opts.get("workflow_timeout"), "DebouncerClient: workflow_timeout"
            ),
            app_version=opts.get("app_version"),
            debouncer_version=None,
        )
        rt = await self.client._rt()
        # Both queues must be declared by a launched process (the internal one is, by
        # every process): else nothing would ever run.
        target = await self.client._queue(rt, queue_name)
        if target.partition_queue:
            raise DBOSException(
                f"DebouncerClient: queue {queue_name!r} is partitioned; partition keys are "
                "not supported for debounced workflows"
            )
        await self.client._queue(rt, INTERNAL_QUEUE_NAME)
        inputs = rt.codec.dump_inputs(name, None, args, kwargs)
        workflow_id, debouncer_id = await debounce_call(rt, call, inputs)
        return DebouncedWorkflowHandle(rt, workflow_id, debouncer_id)

    debounce_async = debounce
