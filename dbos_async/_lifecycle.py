"""What a runtime starts, in which order: the one list of its parts.

A process (``DBOS.launch``) starts, in order:

1. the databases (connected, the schema created or migrated);
2. the journal, through which every checkpoint write goes;
3. the notifier (Postgres LISTEN; local wake-ups on SQLite);
4. the workflows part: from here on workflows may run in this process;
5. the request watcher, which stops workflows other processes cancel and runs those a
   client resumes or forks for this executor;
6. recovery of this executor's PENDING workflows (before any queue worker claims more,
   so recovered workflows of a queue count against its per-process limits);
7. the queue workers, one loop per declared queue;
8. the scheduler, one loop per scheduled workflow.

``DBOS.destroy`` stops them in reverse order: no new work is taken, then the workflow
tasks are cancelled (the workflows stay PENDING, to be recovered), then the notifier,
the journal and the databases close. A client (``DBOSClient``) starts only the system
database and the notifier. A new background service is one more ``Part`` in this list.
"""

from __future__ import annotations

from ._queue_worker import QueueWorkers
from ._recovery import recover_pending_workflows
from ._runtime import Part, Runtime
from ._scheduler import Scheduler
from ._watcher import RequestWatcher

__all__ = ["client_parts", "process_parts"]


def process_parts(rt: Runtime) -> list[Part]:
    """The parts of a process that runs workflows, in start order."""
    watcher = RequestWatcher(rt)
    workers = QueueWorkers(rt)
    scheduler = Scheduler(rt)

    async def recover() -> None:
        await recover_pending_workflows(rt)

    async def nothing() -> None:
        return None

    return [
        rt.databases(),
        rt.journal_part(),
        rt.notifier_part(),
        rt.workflows_part(),
        Part("request watcher", watcher.start, watcher.stop),
        Part("recovery", recover, nothing),
        Part("queue workers", workers.start, workers.stop),
        Part("scheduler", scheduler.start, scheduler.stop),
    ]


def client_parts(rt: Runtime) -> list[Part]:
    """The parts of a client: it reads and writes the system database and waits on
    notifications, and runs no workflow."""
    return [rt.databases(system_only=True), rt.notifier_part()]
