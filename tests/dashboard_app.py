"""Workflows for the dashboard's tests (tests/test_dashboard*.py): a database with real
workflows of every kind the pages show, made by ``populate`` with a launched DBOS."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from dbos_async import (
    DBOS,
    DBOSMaxStepRetriesExceeded,
    Queue,
    SetWorkflowID,
    WorkflowHandle,
    WorkflowStatusString,
)
from dbos_async._registry import registry

ENV_TOKEN = "DBOS_DASHBOARD_TOKEN"

#: A workflow ID and an output that are HTML: the pages must show them as text.
SCRIPT_ID = "<script>alert('id')</script>"
SCRIPT_OUTPUT = '<img src=x onerror="alert(1)">'

#: The queue the queued workflows run on.
QUEUE = "dash_queue"
dash_queue = Queue(QUEUE, concurrency=4, polling_interval_sec=0.1)
registry.queues.pop(QUEUE, None)  # declared for the dashboard's tests only: queue_declared()


@contextlib.contextmanager
def queue_declared() -> Iterator[None]:
    """Declare the dashboard tests' queue (before DBOS launches), and forget it after."""
    registry.queues[QUEUE] = dash_queue
    try:
        yield
    finally:
        registry.queues.pop(QUEUE, None)


@DBOS.step()
async def dash_add(x: int) -> int:
    await asyncio.sleep(0.01)
    return x + 1


@DBOS.step(retries_allowed=True, max_attempts=2, interval_seconds=0.01)
async def dash_explode(message: str) -> None:
    raise ValueError(message)


@DBOS.workflow()
async def dash_child(x: int) -> int:
    return await dash_add(x)


@DBOS.workflow()
async def dash_order(x: int) -> int:
    """Every kind of step the timeline draws: steps, a sleep, an event, a stream, a
    child workflow, a wait."""
    y = await dash_add(x)
    await DBOS.sleep(0.05)
    await DBOS.set_event("progress", {"done": y})
    await DBOS.write_stream("lines", f"line {y}")
    await DBOS.close_stream("lines")
    z = await dash_child(y)
    await DBOS.recv("never", timeout_seconds=0.05)
    return z


@DBOS.workflow()
async def dash_fails(message: str) -> None:
    await dash_add(0)
    await dash_explode(message)


@DBOS.workflow()
async def dash_html() -> str:
    await dash_add(1)
    return SCRIPT_OUTPUT


@DBOS.workflow()
async def dash_blocks() -> str:
    await dash_add(0)
    await DBOS.sleep(30)
    return "woke"


@DBOS.workflow()
async def dash_long() -> None:
    for i in range(5):
        await dash_add(i)


@DBOS.workflow()
async def dash_quick(i: int) -> int:
    return i


@dataclass
class Populated:
    """What ``populate`` made."""

    orders: list[str]
    failed: str
    html: str
    blocked: str
    queued: list[str]
    #: Steps of the first order, as recorded.
    order_steps: int


async def wait_status(workflow_id: str, *statuses: str, within: float = 15.0) -> str:
    """Wait until a workflow has one of ``statuses``; its status."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        status = await DBOS.get_workflow_status(workflow_id)
        if status is not None and status.status in statuses:
            return str(status.status)
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{workflow_id} is {status and status.status}, not {statuses}")
        await asyncio.sleep(0.05)


async def populate() -> Populated:
    """Run the workflows the dashboard tests look at (DBOS launched)."""
    orders = []
    for i in (1, 2):
        with SetWorkflowID(f"order-{i}"):
            await dash_order(i)
        orders.append(f"order-{i}")
    with SetWorkflowID("job-fails"):
        handle: WorkflowHandle[None] = await DBOS.start_workflow(dash_fails, "<b>broken</b>")
    with contextlib.suppress(DBOSMaxStepRetriesExceeded):
        await handle.get_result()
    with SetWorkflowID(SCRIPT_ID):
        await dash_html()
    queued = []
    for i in range(3):
        with SetWorkflowID(f"queued-{i}"):
            queued.append((await dash_queue.enqueue(dash_quick, i)).workflow_id)
    for workflow_id in queued:
        await wait_status(workflow_id, WorkflowStatusString.SUCCESS)
    with SetWorkflowID("blocked-1"):
        await DBOS.start_workflow(dash_blocks)
    await wait_for_steps("blocked-1", 2)
    steps = await DBOS.list_workflow_steps("order-1")
    return Populated(orders, "job-fails", SCRIPT_ID, "blocked-1", queued, len(steps))


async def wait_for_steps(workflow_id: str, count: int, within: float = 15.0) -> None:
    """Wait until a workflow has recorded ``count`` steps."""
    deadline = asyncio.get_running_loop().time() + within
    while len(await DBOS.list_workflow_steps(workflow_id)) < count:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{workflow_id} did not record {count} steps")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def dashboard_process(
    db_url: str, *args: str, token: str | None = None
) -> AsyncIterator[str]:
    """``dbos-async dashboard --port 0`` on ``db_url`` in a subprocess; yields its base URL
    (read from the line it prints) and stops it after."""
    env = {k: v for k, v in os.environ.items() if k not in ("DBOS_DATABASE_URL", ENV_TOKEN)}
    if token is not None:
        env[ENV_TOKEN] = token
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dbos_async.cli",
        "dashboard",
        "--database-url",
        db_url,
        "--port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        if not line:
            err = (await proc.stderr.read()).decode()
            raise AssertionError(f"the dashboard did not start: {err}")
        match = re.search(r"http://\S+/", line)
        assert match is not None, line
        yield match.group(0).rstrip("/")
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
