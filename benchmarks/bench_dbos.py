"""Bench worker for DBOS Transact (package ``dbos``), through its async API:
``python benchmarks/bench_dbos.py FIGURE --db-url URL ...``

A thin adapter; the workload and the measurements are in ``_common``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any

import dbos
from _common import (
    AsyncFn,
    Decorator,
    Handle,
    LaunchSettings,
    Outcome,
    define_workload,
    worker_main,
)
from dbos import DBOS, DBOSClient

#: dbos_async's DBOSClient has a fixed pool of 10 connections (its default pool_size);
#: DBOS's client defaults to 5: it gets 10 too.
CLIENT_POOL_SIZE = 10


class DBOSQueueClient:
    def __init__(self, url: str) -> None:
        self._client = DBOSClient(
            system_database_url=url, system_database_pool_size=CLIENT_POOL_SIZE
        )

    def enqueue(self, queue_name: str, workflow_name: str, arg: int) -> Awaitable[Any]:
        return self._client.enqueue_async(
            {"queue_name": queue_name, "workflow_name": workflow_name}, arg
        )

    async def close(self) -> None:
        self._client.destroy()


class DBOSLibrary:
    schema = "dbos"
    origin = str(dbos.__file__)

    def workflow(self, name: str) -> Decorator:
        return DBOS.workflow(name=name)

    def step(self, name: str) -> Decorator:
        return DBOS.step(name=name)

    def sleep(self, seconds: float) -> Awaitable[None]:
        return DBOS.sleep_async(seconds)

    async def launch(self, settings: LaunchSettings, queues: Sequence[str] = ()) -> None:
        # DBOS's launch is synchronous (it starts its own threads); DBOS documents calling
        # it as is from an async main.
        DBOS(
            config={
                "name": "bench",
                "system_database_url": settings.url,
                "executor_id": settings.executor_id,
                "application_version": settings.app_version,
                "sys_db_pool_size": settings.pool_size,
                "log_level": "WARNING",
            }
        )
        DBOS.launch()
        for name in queues:
            # A queue is registered (in the database) once DBOS has launched. Defaults:
            # no limits, polling_interval_sec=1.0.
            await DBOS.register_queue_async(name)

    async def destroy(self) -> None:
        DBOS.destroy()

    async def start(self, workflow: AsyncFn, arg: int) -> Handle:
        return await DBOS.start_workflow_async(workflow, arg)

    def send(self, destination_id: str, message: Any, topic: str) -> Awaitable[None]:
        return DBOS.send_async(destination_id, message, topic)

    def recv(self, topic: str, timeout_seconds: float) -> Awaitable[Any]:
        return DBOS.recv_async(topic, timeout_seconds)

    async def client(self, url: str) -> DBOSQueueClient:
        return DBOSQueueClient(url)

    async def list_outcomes(self, workflow_name: str) -> list[Outcome]:
        statuses = await DBOS.list_workflows_async(name=workflow_name)
        return [
            Outcome(str(s.status), list(s.input["args"]) if s.input else [], s.output)
            for s in statuses
        ]

    def journal_commits(self) -> int | None:
        return None  # DBOS commits each checkpoint by itself: no journal to count


LIBRARY = DBOSLibrary()
WORKLOAD = define_workload(LIBRARY)

if __name__ == "__main__":
    worker_main(LIBRARY, WORKLOAD)
