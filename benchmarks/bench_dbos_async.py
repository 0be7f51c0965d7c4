"""Bench worker for dbos_async: ``python benchmarks/bench_dbos_async.py FIGURE --db-url URL ...``

A thin adapter; the workload and the measurements are in ``_common``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any

from _common import (
    AsyncFn,
    Decorator,
    Handle,
    LaunchSettings,
    Outcome,
    define_workload,
    worker_main,
)

import dbos_async
from dbos_async import DBOS, DBOSClient, Queue
from dbos_async._runtime import get_runtime


class DBOSAsyncClient:
    def __init__(self, url: str) -> None:
        self._client = DBOSClient(url)

    def enqueue(self, queue_name: str, workflow_name: str, arg: int) -> Awaitable[Any]:
        return self._client.enqueue({"queue_name": queue_name, "workflow_name": workflow_name}, arg)

    async def close(self) -> None:
        await self._client.destroy()


class DBOSAsyncLibrary:
    schema = "dbos_async"
    origin = str(dbos_async.__file__)

    def workflow(self, name: str) -> Decorator:
        return DBOS.workflow(name=name)

    def step(self, name: str) -> Decorator:
        return DBOS.step(name=name)

    def sleep(self, seconds: float) -> Awaitable[None]:
        return DBOS.sleep(seconds)

    async def launch(self, settings: LaunchSettings, queues: Sequence[str] = ()) -> None:
        for name in queues:
            # Declared before launch: launch registers it in the database and starts its
            # worker. Defaults: no limits, polling_interval_sec=1.0.
            Queue(name)
        DBOS(
            {
                "name": "bench",
                "database_url": settings.url,
                "executor_id": settings.executor_id,
                "application_version": settings.app_version,
                "pool_size": settings.pool_size,
            }
        )
        await DBOS.launch()

    async def destroy(self) -> None:
        await DBOS.destroy()

    async def start(self, workflow: AsyncFn, arg: int) -> Handle:
        return await DBOS.start_workflow(workflow, arg)

    def send(self, destination_id: str, message: Any, topic: str) -> Awaitable[None]:
        return DBOS.send(destination_id, message, topic)

    def recv(self, topic: str, timeout_seconds: float) -> Awaitable[Any]:
        return DBOS.recv(topic, timeout_seconds)

    async def client(self, url: str) -> DBOSAsyncClient:
        return DBOSAsyncClient(url)

    async def list_outcomes(self, workflow_name: str) -> list[Outcome]:
        statuses = await DBOS.list_workflows(name=workflow_name)
        return [
            Outcome(str(s.status), list(s.input["args"]) if s.input else [], s.output)
            for s in statuses
        ]

    def journal_commits(self) -> int | None:
        return get_runtime().journal.batches


LIBRARY = DBOSAsyncLibrary()
WORKLOAD = define_workload(LIBRARY)

if __name__ == "__main__":
    worker_main(LIBRARY, WORKLOAD)
