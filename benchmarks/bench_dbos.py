"""Bench worker for DBOS Transact (package ``dbos``), through its async API:
``python benchmarks/bench_dbos.py FIGURE --db-url URL ...``

A thin adapter; the workload and the measurements are in ``_common``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import dbos
from _common import (
    AsyncFn,
    Decorator,
    Handle,
    LaunchSettings,
    define_workload,
    worker_main,
)
from dbos import DBOS


class DBOSLibrary:
    schema = "dbos"
    origin = str(dbos.__file__)

    def workflow(self, name: str) -> Decorator:
        return DBOS.workflow(name=name)

    def step(self, name: str) -> Decorator:
        return DBOS.step(name=name)

    def sleep(self, seconds: float) -> Awaitable[None]:
        return DBOS.sleep_async(seconds)

    async def launch(self, settings: LaunchSettings) -> None:
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

    async def destroy(self) -> None:
        DBOS.destroy()

    async def start(self, workflow: AsyncFn, arg: int) -> Handle:
        return await DBOS.start_workflow_async(workflow, arg)

    def send(self, destination_id: str, message: Any, topic: str) -> Awaitable[None]:
        return DBOS.send_async(destination_id, message, topic)

    def recv(self, topic: str, timeout_seconds: float) -> Awaitable[Any]:
        return DBOS.recv_async(topic, timeout_seconds)


LIBRARY = DBOSLibrary()
WORKLOAD = define_workload(LIBRARY)

if __name__ == "__main__":
    worker_main(LIBRARY, WORKLOAD)
