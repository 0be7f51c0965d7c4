"""What a runtime starts, in which order: the one list of its parts.

A process (``DBOS.launch``) starts, in order:

1. the databases (connected, the schema created or migrated);
2. the lease, which makes this process the owner of the workflows it runs;
3. the journal, through which every checkpoint write goes;
4. the notifier (Postgres LISTEN; local wake-ups on SQLite);
5. the request watcher, which stops runs whose workflow another process cancelled or
   took over (up to the very end of a closing process's grace period);
6. the workflows part: from here on workflows may run in this process;
7. the takeover: recovery of the orphaned workflows of this application version (a
   predecessor's on this machine, those of expired leases, unowned ones), before any
   queue worker claims more so they count against per-process limits; then it goes on
   looking for orphans in the background;
8. the queue workers, one loop per declared queue;
9. the scheduler, one loop per scheduled workflow.

``DBOS.destroy`` stops them in reverse order: no new work is taken, the running
workflows may finish within the grace period ``destroy`` was given, then their tasks are
cancelled (the workflows stay PENDING), the notifier and the journal close, the lease
ends (so live processes take over what was left at once) and the databases close. A
client (``DBOSClient``) starts only the system database and the notifier. A new
background service is one more ``Part`` in this list.
"""

from __future__ import annotations

from ._leases import Lease
from ._queue_worker import QueueWorkers
from ._recovery import Takeover
from ._runtime import Part, Runtime
from ._scheduler import Scheduler
from ._watcher import RequestWatcher

__all__ = ["client_parts", "process_parts"]


def process_parts(rt: Runtime) -> list[Part]:
    """The parts of a process that runs workflows, in start order."""
    lease = Lease(rt)
    watcher = RequestWatcher(rt)
    takeover = Takeover(rt)
    workers = QueueWorkers(rt)
    scheduler = Scheduler(rt)
    return [
        rt.databases(),
        Part("lease", lease.start, lease.stop),
        rt.journal_part(),
        rt.notifier_part(),
        # (Before the workflows part, so cancels and takeovers from elsewhere still stop
        # runs while a closing process lets its workflows finish.)
        Part("request watcher", watcher.start, watcher.stop),
        rt.workflows_part(),
        Part("takeover", takeover.start, takeover.stop),
        Part("queue workers", workers.start, workers.stop),
        Part("scheduler", scheduler.start, scheduler.stop),
    ]


def client_parts(rt: Runtime) -> list[Part]:
    """The parts of a client: it reads and writes the system database and waits on
    notifications, and runs no workflow."""
    return [rt.databases(system_only=True), rt.notifier_part()]
