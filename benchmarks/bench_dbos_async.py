"""Bench worker for dbos_async: ``python benchmarks/bench_dbos_async.py FIGURE --db-url URL ...``

A thin adapter; the workload and the measurements are in ``_common``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from _common import (
    AsyncFn,
    Decorator,
    Handle,
    LaunchSettings,
    define_workload,
    worker_main,
)

import dbos_async
from dbos_async import DBOS


class DBOSAsyncLibrary:
    schema = "dbos_async"
    origin = str(dbos_async.__file__)

    def workflow(self, name: str) -> Decorator:
        return DBOS.workflow(name=name)

    def step(self, name: str) -> Decorator:
        return DBOS.step(name=name)

    def sleep(self, seconds: float) -> Awaitable[None]:
        return DBOS.sleep(seconds)

    async def launch(self, settings: LaunchSettings) -> None:
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


LIBRARY = DBOSAsyncLibrary()
WORKLOAD = define_workload(LIBRARY)

if __name__ == "__main__":
    worker_main(LIBRARY, WORKLOAD)
