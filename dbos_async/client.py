"""``DBOSClient``: reach workflows from a process that runs none (a web tier, a script).

It connects on first use to the system database and offers what needs no registered
workflow code: enqueueing workflows by name, handles, status, steps, listing, cancelling,
resuming and forking, messages and events. Its handles resolve by watching the status
table; its waiters wake through LISTEN/NOTIFY on Postgres. A workflow it resumes or forks
has no owner: the first live process of its application version takes it over and runs
it (at once on Postgres, within a second on SQLite); a resumed workflow of a queue goes
back to that queue. A workflow it enqueues is run by the processes that declare the
queue. It can also register queues at run time and change their limits
(``register_queue``, ``retrieve_queue``, ``list_queues``, ``delete_queue``), as DBOS does,
and manage schedules stored as data (``create_schedule`` and the rest, as on ``DBOS``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Required, TypedDict

from . import _bulk_management, _management, _messaging, _schedules, _send_bulk, _versions
from ._config import resolve_config
from ._context import new_workflow_id, timeout_to_ms
from ._errors import (
    DBOSConflictingWorkflowError,
    DBOSNonExistentWorkflowError,
    DBOSQueueNotFoundError,
)
from ._handle import WorkflowHandle, status_of, step_infos
from ._ids import check_text, check_workflow_filters, check_workflow_id
from ._lifecycle import client_parts
from ._queue import Queue, SetEnqueueOptions, check_enqueue_options, declared_settings
from ._queue_admin import (
    QueueConflictResolution,
    check_on_conflict,
    delete_queue,
    list_queues,
    register_queue,
    retrieve_queue,
)
from ._runner import enqueued_row
from ._runtime import Runtime
from ._schedules import WorkflowSchedule
from ._send_bulk import SendMessage
from ._status import ExecutorInfo, StepInfo, WorkflowStatus, WorkflowStatusString
from ._versions import VersionInfo
from .sysdb import QueueInfo, notification_key

__all__ = ["DBOSClient", "EnqueueOptions"]


class EnqueueOptions(TypedDict, total=False):
    """What ``DBOSClient.enqueue`` takes: ``queue_name`` and ``workflow_name`` are
    required."""

    queue_name: Required[str]
    """The queue, as declared by a launched process (required)."""
    workflow_name: Required[str]
    """The workflow's registered name (required)."""
    workflow_id: str
    """The new workflow's ID (default a UUID)."""
    deduplication_id: str
    """As ``SetEnqueueOptions(deduplication_id=...)``."""
    priority: int
    """As ``SetEnqueueOptions(priority=...)`` (lower runs first, on any queue)."""
    queue_partition_key: str
    """Required on a partitioned queue, refused on another."""
    delay_seconds: float
    """Do not start the workflow before this many seconds."""
    workflow_timeout: float
    """Seconds after which the workflow is cancelled."""
    app_version: str
    """Only workers of this application version run it (default: none named, so the
    workers of the latest application version run it)."""
    class_name: str
    """For a method of a ``@DBOS.dbos_class()`` class: the class's registered name."""
    instance_name: str
    """For an instance method: the ``config_name`` of the instance to run it on (needs
    ``class_name``)."""


_ENQUEUE_KEYS = frozenset(EnqueueOptions.__annotations__)


@dataclass(frozen=True)
class _ParsedEnqueueOptions:
    """``EnqueueOptions`` checked: where, what, and how to enqueue."""

    queue_name: str
    workflow_name: str
    workflow_id: str | None
    options: SetEnqueueOptions
    timeout_ms: int | None
    class_name: str | None
    instance_name: str | None


def _parse_enqueue_options(options: Mapping[str, Any], how: str) -> _ParsedEnqueueOptions:
    """Check ``EnqueueOptions`` (for ``DBOSClient.enqueue`` and
    ``DBOS.enqueue_workflow_with_options``), naming ``how`` in errors."""
    if not isinstance(options, Mapping):
        raise TypeError(f"{how} needs an EnqueueOptions dict, got {options!r}")
    unknown = set(options) - _ENQUEUE_KEYS
    if unknown:
        raise TypeError(
            f"{how}: unknown option(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_ENQUEUE_KEYS))}"
        )
    for key in ("queue_name", "workflow_name"):
        value = options.get(key)
        if not isinstance(value, str) or not value:
            raise TypeError(f"{how} needs options[{key!r}] as a non-empty str")
    check_workflow_id(options["queue_name"], "options['queue_name']")
    check_text(options["workflow_name"], "options['workflow_name']")
    workflow_id = options.get("workflow_id")
    if workflow_id is not None:
        check_workflow_id(workflow_id, "options['workflow_id']")
    check_text(options.get("app_version"), "options['app_version']", optional=True)
    class_name, instance_name = options.get("class_name"), options.get("instance_name")
    check_text(class_name, "options['class_name']", optional=True, non_empty=True)
    check_text(instance_name, "options['instance_name']", optional=True, non_empty=True)
    if instance_name is not None and class_name is None:
        raise TypeError(
            f"{how}: options['instance_name'] needs options['class_name'] (the instance's class)"
        )
    return _ParsedEnqueueOptions(
        queue_name=options["queue_name"],
        workflow_name=options["workflow_name"],
        workflow_id=workflow_id,
        options=SetEnqueueOptions(
            deduplication_id=options.get("deduplication_id"),
            priority=options.get("priority"),
            app_version=options.get("app_version"),
            queue_partition_key=options.get("queue_partition_key"),
            delay_seconds=options.get("delay_seconds"),
        ),
        timeout_ms=timeout_to_ms(options.get("workflow_timeout"), f"{how}: workflow_timeout"),
        class_name=class_name,
        instance_name=instance_name,
    )


class DBOSClient:
    """A client of the workflows stored at ``database_url`` (the system database; by
    default the same URL DBOS would use)."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        system_database_url: str | None = None,
        serializer: Any = None,
        connect_timeout: float = 10.0,
    ) -> None:
        config: dict[str, Any] = {"serializer": serializer, "connect_timeout": connect_timeout}
        if database_url is not None:
            config["database_url"] = database_url
        if system_database_url is not None:
            config["system_database_url"] = system_database_url
        # A client reads what workflows wrote: it never creates a database by mistake.
        self._runtime = Runtime(resolve_config(config), create_missing=False)

    async def _rt(self) -> Runtime:
        """The client's runtime, connected on first use (concurrent calls connect once)."""
        await self._runtime.start(client_parts(self._runtime))
        return self._runtime

    async def destroy(self) -> None:
        """Close the client's connections."""
        await self._runtime.close()

    async def __aenter__(self) -> DBOSClient:
        await self._rt()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.destroy()

    async def enqueue(
        self, options: EnqueueOptions, *args: Any, **kwargs: Any
    ) -> WorkflowHandle[Any]:
        """Enqueue the workflow registered as ``options["workflow_name"]`` on
        ``options["queue_name"]``; the processes that declare that queue run it. The
        queue must have been declared by a launched process or registered at run time
        (its settings are checked).

        Optional keys: ``workflow_id``, ``deduplication_id``, ``priority``,
        ``queue_partition_key``, ``delay_seconds``, ``workflow_timeout`` (seconds),
        ``app_version`` (only workers of that application version run it; by default
        any worker may), and, for a method of a ``@DBOS.dbos_class()`` class,
        ``class_name`` (its registered name) and ``instance_name`` (the ``config_name``
        of the ``DBOSConfiguredInstance`` an instance method runs on); the arguments are
        those after ``self`` or ``cls``.
        """
        parsed = _parse_enqueue_options(options, "DBOSClient.enqueue()")
        class_name, instance_name = parsed.class_name, parsed.instance_name
        rt = await self._rt()
        queue = await self._queue(rt, parsed.queue_name)
        request = check_enqueue_options(queue, parsed.options, app_version=None, fixed_version=True)
        name = parsed.workflow_name
        workflow_id = parsed.workflow_id or new_workflow_id()
        inputs = rt.codec.dump_inputs(name, None, args, kwargs)
        row = enqueued_row(
            workflow_id,
            name,
            inputs,
            request,
            timeout_ms=parsed.timeout_ms,
            class_name=class_name,
            config_name=instance_name,
        )
        existing = await rt.sysdb.enqueue_workflow(row)
        if existing is not None and (existing.name, existing.class_name, existing.config_name) != (
            name,
            class_name,
            instance_name,
        ):
            raise DBOSConflictingWorkflowError(workflow_id, existing.name, name)
        return WorkflowHandle(rt, workflow_id)

    async def _queue(self, rt: Runtime, name: str) -> QueueInfo:
        """The settings a launched process registered for a queue (read each time: another
        process may declare it again with other settings)."""
        queues = {q.name: q for q in await rt.sysdb.list_queues()}
        queue = queues.get(name)
        if queue is None:
            known = ", ".join(repr(q) for q in queues) or "none"
            raise DBOSQueueNotFoundError(
                f"queue {name!r} is not declared by any launched DBOS process nor registered "
                f"(declared queues: {known}); a queue exists once a process that declares "
                "it has launched, or once DBOS.register_queue has registered it"
            )
        return queue

    # -- queues registered at run time (issue 14) ---------------------------------------

    async def register_queue(
        self,
        name: str,
        *,
        worker_concurrency: int | None = None,
        global_concurrency: int | None = None,
        partition_concurrency: int | None = None,
        partition_worker_concurrency: int | None = None,
        partition_limiter: Mapping[str, float] | None = None,
        limiter: Mapping[str, float] | None = None,
        polling_interval_sec: float = 1.0,
        on_conflict: QueueConflictResolution = "always_update",
        concurrency: int | None = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
    ) -> Queue:
        """``DBOS.register_queue`` from a client: store a queue that every launched
        process then runs. A client has no application version, so ``on_conflict`` is
        ``"always_update"`` (default) or ``"never_update"``. The returned ``Queue``
        reads and changes its settings through this client (``await
        queue.set_concurrency(...)``); enqueue with ``DBOSClient.enqueue``."""
        check_on_conflict(on_conflict, client=True)
        settings = declared_settings(
            name,
            worker_concurrency=worker_concurrency,
            global_concurrency=global_concurrency,
            partition_concurrency=partition_concurrency,
            partition_worker_concurrency=partition_worker_concurrency,
            partition_limiter=partition_limiter,
            limiter=limiter,
            polling_interval_sec=polling_interval_sec,
            concurrency=concurrency,
            priority_enabled=priority_enabled,
            partition_queue=partition_queue,
        )
        return await register_queue(await self._rt(), settings, on_conflict, source=self._rt)

    async def retrieve_queue(self, name: str) -> Queue | None:
        """A queue registered at run time, as stored (None if there is none); its
        getters and setters go through this client."""
        return await retrieve_queue(await self._rt(), name, source=self._rt)

    async def list_queues(self) -> list[Queue]:
        """Every queue registered at run time, by name."""
        return await list_queues(await self._rt(), source=self._rt)

    async def delete_queue(self, name: str) -> None:
        """Delete a queue registered at run time (nothing if there is none); every
        process's worker of it stops, and its ENQUEUED workflows wait until a queue of
        that name is registered again."""
        await delete_queue(await self._rt(), name)

    async def retrieve_workflow(
        self, workflow_id: str, existing_workflow: bool = True
    ) -> WorkflowHandle[Any]:
        """A handle to a workflow by ID; raises ``DBOSNonExistentWorkflowError`` for an
        unknown ID unless ``existing_workflow=False``."""
        check_workflow_id(workflow_id)
        rt = await self._rt()
        if existing_workflow and await rt.sysdb.get_workflow(workflow_id) is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        return WorkflowHandle(rt, workflow_id)

    async def get_workflow_status(self, workflow_id: str) -> WorkflowStatus | None:
        """A workflow's stored status, or None if no workflow has this ID."""
        check_workflow_id(workflow_id)
        rt = await self._rt()
        row = await rt.sysdb.get_workflow(workflow_id)
        return status_of(rt, row) if row is not None else None

    async def list_workflow_steps(self, workflow_id: str) -> list[StepInfo]:
        """The recorded steps of a workflow, by step ID."""
        check_workflow_id(workflow_id)
        rt = await self._rt()
        return step_infos(rt, await rt.sysdb.load_steps(workflow_id))

    async def list_executors(self) -> list[ExecutorInfo]:
        """``DBOS.list_executors``: the processes that hold or held a lease."""
        return await _management.list_executors(await self._rt())

    async def list_workflows(self, **filters: Any) -> list[WorkflowStatus]:
        """``DBOS.list_workflows`` with the same keyword filters."""
        check_workflow_filters(filters)
        return await _management.list_workflows(await self._rt(), **filters)

    async def list_queued_workflows(
        self, queue_name: str | None = None, **filters: Any
    ) -> list[WorkflowStatus]:
        """``DBOS.list_queued_workflows`` with the same keyword filters."""
        check_workflow_filters({**filters, "queue_name": queue_name})
        filters.setdefault("status", ["ENQUEUED", "PENDING"])
        filters.setdefault("load_output", False)
        return await _management.list_workflows(
            await self._rt(), queue_name=queue_name, queued_only=True, **filters
        )

    async def cancel_workflow(self, workflow_id: str) -> None:
        """Mark a workflow CANCELLED; the process running it stops it."""
        check_workflow_id(workflow_id)
        await _management.cancel_workflow(await self._rt(), workflow_id)

    async def resume_workflow(self, workflow_id: str) -> WorkflowHandle[Any]:
        """Run a CANCELLED or dead-lettered workflow again from its last completed step.
        A workflow of a queue goes back to ENQUEUED on it: a process that declares the
        queue claims it within the queue's limits. Any other becomes PENDING again with no
        owner: the first live process of its application version takes it over and runs
        it on (told at once on Postgres; within a second on SQLite), or the next one to
        launch."""
        check_workflow_id(workflow_id)
        rt = await self._rt()
        row = await _management.resume_workflow(rt, workflow_id, executor_id=None)
        if row is not None and row.status == WorkflowStatusString.PENDING:
            await rt.sysdb.announce(notification_key("run", workflow_id, ""))
        return WorkflowHandle(rt, workflow_id)

    async def fork_workflow(
        self, workflow_id: str, start_step: int, *, application_version: str | None = None
    ) -> WorkflowHandle[Any]:
        """Create the fork (PENDING with no owner, on the source's application version
        unless given); a live process of that version takes it over and runs it, as for a
        resumed workflow."""
        check_workflow_id(workflow_id)
        check_text(application_version, "application_version", optional=True)
        rt = await self._rt()
        row, _ = await _management.fork_workflow(
            rt,
            workflow_id,
            start_step,
            application_version=application_version,
            executor_id=None,
        )
        await rt.sysdb.announce(notification_key("run", row.workflow_id, ""))
        return WorkflowHandle(rt, row.workflow_id)

    async def send(
        self,
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Send a message to a workflow (``DBOS.send``): its ``DBOS.recv(topic)`` receives
        it. Sends with the same ``idempotency_key`` (to the same workflow and topic)
        deliver once; without a key each call delivers a message. An unknown destination
        raises ``DBOSNonExistentWorkflowError``."""
        check_workflow_id(destination_id, "destination_id")
        check_text(topic, "topic", optional=True)
        check_text(idempotency_key, "idempotency_key", optional=True)
        rt = await self._rt()
        await _messaging.send_message(rt, destination_id, message, topic, idempotency_key)

    async def get_event(self, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """The latest value of a workflow's event ``key``, waiting for it to be set up to
        ``timeout_seconds``; None on timeout."""
        check_workflow_id(workflow_id)
        check_text(key, "key")
        rt = await self._rt()
        return await _messaging.wait_for_event(rt, workflow_id, key, timeout_seconds)

    async def get_all_events(self, workflow_id: str) -> dict[str, Any]:
        """Every event a workflow has published, by key (latest values)."""
        check_workflow_id(workflow_id)
        rt = await self._rt()
        return await _messaging.read_all_events(rt, workflow_id)

    async def read_stream(self, workflow_id: str, key: str) -> AsyncIterator[Any]:
        """``async for value in client.read_stream(id, key)``: every value of a
        workflow's stream in order, live; ends when the stream is closed or the writing
        workflow has ended."""
        check_workflow_id(workflow_id)
        check_text(key, "key")
        rt = await self._rt()
        async for value in _messaging.stream_values(rt, workflow_id, key):
            yield value

    async def list_application_versions(self) -> list[VersionInfo]:
        """Every application version a process launched with, the latest first
        (``DBOS.list_application_versions``)."""
        return await _versions.list_application_versions(await self._rt())

    async def get_latest_application_version(self) -> VersionInfo:
        """The latest application version (``DBOS.get_latest_application_version``)."""
        return await _versions.get_latest_application_version(await self._rt())

    async def set_latest_application_version(self, version_name: str) -> None:
        """Make a recorded application version the latest
        (``DBOS.set_latest_application_version``)."""
        await _versions.set_latest_application_version(await self._rt(), version_name)

    # -- schedules stored as data (issue 17; ``_schedules``) -----------------------------

    async def create_schedule(
        self,
        *,
        schedule_name: str,
        workflow_name: str,
        schedule: str,
        context: Any = None,
        automatic_backfill: bool = False,
        cron_timezone: str | None = None,
        queue_name: str | None = None,
    ) -> None:
        """``DBOS.create_schedule`` by the workflow's registered name: the launched
        processes that have the workflow run it (or, with ``queue_name``, enqueue it
        there)."""
        await _schedules.create_schedule(
            await self._rt(),
            schedule_name=schedule_name,
            workflow_name=workflow_name,
            schedule=schedule,
            context=context,
            automatic_backfill=automatic_backfill,
            cron_timezone=cron_timezone,
            queue_name=queue_name,
        )

    async def list_schedules(
        self,
        *,
        status: str | None = None,
        workflow_name: str | None = None,
        schedule_name_prefix: str | None = None,
    ) -> list[WorkflowSchedule]:
        """``DBOS.list_schedules``: the stored schedules by name, filtered."""
        return await _schedules.list_schedules(
            await self._rt(),
            status=status,
            workflow_name=workflow_name,
            schedule_name_prefix=schedule_name_prefix,
        )

    async def get_schedule(self, schedule_name: str) -> WorkflowSchedule | None:
        """``DBOS.get_schedule``: the stored schedule of that name, or None."""
        return await _schedules.get_schedule(await self._rt(), schedule_name)

    async def delete_schedule(self, schedule_name: str) -> None:
        """``DBOS.delete_schedule``: delete it (nothing if there is none)."""
        await _schedules.delete_schedule(await self._rt(), schedule_name)

    async def pause_schedule(self, schedule_name: str) -> None:
        """``DBOS.pause_schedule``: no process starts its slots until it is resumed."""
        await _schedules.pause_schedule(await self._rt(), schedule_name)

    async def resume_schedule(self, schedule_name: str) -> None:
        """``DBOS.resume_schedule``: its slots start again from now on."""
        await _schedules.resume_schedule(await self._rt(), schedule_name)

    async def trigger_schedule(self, schedule_name: str) -> WorkflowHandle[Any]:
        """``DBOS.trigger_schedule``: run it now, once. A client runs nothing: the run is
        enqueued on the schedule's queue, else on the internal queue every process
        declares, where a process of the latest application version that has the
        workflow runs it."""
        return await _schedules.trigger_schedule(await self._rt(), schedule_name)

    async def backfill_schedule(
        self, schedule_name: str, start: datetime, end: datetime
    ) -> list[WorkflowHandle[Any]]:
        """``DBOS.backfill_schedule`` for a stored schedule: each slot from ``start``
        (inclusive) to ``end`` (exclusive) that has not run is enqueued as
        ``trigger_schedule``'s run is."""
        return await _schedules.backfill_schedule(await self._rt(), schedule_name, start, end)

    # -- bulk operations and send_bulk (issue 14) -----------------------------------------

    async def send_bulk(self, messages: Sequence[SendMessage]) -> None:
        """``DBOS.send_bulk`` from outside: every message stored in one transaction, or
        none (an unknown destination raises ``DBOSNonExistentWorkflowError``)."""
        await _send_bulk.send_bulk_from(await self._rt(), messages)

    async def cancel_workflows(
        self, workflow_ids: Sequence[str], *, cancel_children: bool = False
    ) -> None:
        """``DBOS.cancel_workflows``: cancel each (and, with ``cancel_children``, their
        children, recursively); an unknown ID raises before anything is cancelled."""
        ids = _bulk_management.checked_ids(workflow_ids, "DBOSClient.cancel_workflows()")
        rt = await self._rt()
        await _bulk_management.cancel_workflows(rt, ids, cancel_children=cancel_children)

    async def resume_workflows(self, workflow_ids: Sequence[str]) -> list[WorkflowHandle[Any]]:
        """``resume_workflow`` for each, in order; an unknown ID raises before anything is
        resumed."""
        ids = _bulk_management.checked_ids(workflow_ids, "DBOSClient.resume_workflows()")
        await _bulk_management.require_workflows(await self._rt(), ids)
        return [await self.resume_workflow(workflow_id) for workflow_id in ids]

    async def delete_workflows(
        self, workflow_ids: Sequence[str], *, delete_children: bool = False
    ) -> None:
        """``DBOS.delete_workflows``: delete workflows (and, with ``delete_children``,
        their children, recursively) with everything the system database holds for
        them; unknown IDs are skipped. A client has no application database: the
        transaction outputs of a deleted workflow stay there (as with DBOS Transact's
        client), harmless unless its ID is used again for a workflow that is recovered."""
        ids = _bulk_management.checked_ids(workflow_ids, "DBOSClient.delete_workflows()")
        await _bulk_management.delete_workflows(
            await self._rt(), ids, delete_children=delete_children, application_database=False
        )

    async def delete_workflow(self, workflow_id: str, *, delete_children: bool = False) -> None:
        """``delete_workflows([workflow_id], delete_children=...)``."""
        check_workflow_id(workflow_id)
        await self.delete_workflows([workflow_id], delete_children=delete_children)

    enqueue_async = enqueue
    retrieve_workflow_async = retrieve_workflow
    get_workflow_status_async = get_workflow_status
    list_workflow_steps_async = list_workflow_steps
    send_async = send
    get_event_async = get_event
    get_all_events_async = get_all_events
    destroy_async = destroy
    list_workflows_async = list_workflows
    list_executors_async = list_executors
    list_queued_workflows_async = list_queued_workflows
    cancel_workflow_async = cancel_workflow
    resume_workflow_async = resume_workflow
    fork_workflow_async = fork_workflow
    register_queue_async = register_queue
    retrieve_queue_async = retrieve_queue
    list_queues_async = list_queues
    delete_queue_async = delete_queue
    list_application_versions_async = list_application_versions
    get_latest_application_version_async = get_latest_application_version
    set_latest_application_version_async = set_latest_application_version

    send_bulk_async = send_bulk
    cancel_workflows_async = cancel_workflows
    resume_workflows_async = resume_workflows
    delete_workflows_async = delete_workflows
    delete_workflow_async = delete_workflow

    create_schedule_async = create_schedule
    list_schedules_async = list_schedules
    get_schedule_async = get_schedule
    delete_schedule_async = delete_schedule
    pause_schedule_async = pause_schedule
    resume_schedule_async = resume_schedule
    trigger_schedule_async = trigger_schedule
    backfill_schedule_async = backfill_schedule
