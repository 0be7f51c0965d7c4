"""Application versions (API.md section 11), DBOS Transact's meaning: every launch records
its version (the first launch of a version makes it the latest);
``list_application_versions``, ``get_latest_application_version`` and
``set_latest_application_version`` on DBOS and on DBOSClient. What "latest" decides: a
queued workflow that names no version is claimed only by processes of the latest
version, and a fork without a version runs on the latest. A process takes over only
workflows of its own version."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from dbos_async import DBOS, DBOSClient, DBOSException, Queue, VersionInfo, WorkflowStatusString
from dbos_async._clock import now_ms
from dbos_async._registry import registry
from dbos_async._runtime import get_runtime
from dbos_async.sysdb import VersionRow

WITHIN = 20
QUEUE = Queue("tv_queue", polling_interval_sec=0.05)
registry.queues.pop(QUEUE.name, None)  # declared for this module's tests only

RUNS: list[str] = []


@pytest.fixture(autouse=True)
def _isolate() -> Iterator[None]:
    registry.queues[QUEUE.name] = QUEUE
    RUNS.clear()
    try:
        yield
    finally:
        registry.queues.pop(QUEUE.name, None)


async def launch(db_url: str, version: str) -> None:
    await DBOS.destroy()
    DBOS({"database_url": db_url, "application_version": version})
    await DBOS.launch()


@pytest.fixture
async def stop() -> AsyncIterator[None]:
    try:
        yield
    finally:
        await DBOS.destroy()


@DBOS.step(name="tv_step")
async def tv_step(x: int) -> int:
    RUNS.append(f"step{x}")
    return x * 2


@DBOS.workflow(name="tv_workflow")
async def tv_workflow(x: int) -> int:
    return await tv_step(x) + await tv_step(x + 1)


async def record_version(name: str, timestamp_ms: int | None = None) -> None:
    """Record a version no process here runs (as another deployment's launch would)."""
    stamp = now_ms() if timestamp_ms is None else timestamp_ms
    await get_runtime().sysdb.register_version(
        VersionRow(uuid.uuid4().hex, name, stamp, stamp, "elsewhere")
    )


def names(versions: list[VersionInfo]) -> list[str]:
    return [v["version_name"] for v in versions]


# -- recording, listing, latest ----------------------------------------------------------


async def test_versions__each_launch_records_its_version_and_the_first_launch_is_latest(
    db_url: str, stop: None, caplog: pytest.LogCaptureFixture
) -> None:
    await launch(db_url, "va")
    assert DBOS.application_version == "va"
    assert names(await DBOS.list_application_versions()) == ["va"]
    (va,) = await DBOS.list_application_versions()
    assert set(va) == {
        "version_id",
        "version_name",
        "version_timestamp",
        "created_at",
        "application_name",
    }
    assert va["created_at"] == va["version_timestamp"] > 0 and va["version_id"]
    assert va["application_name"] == "dbos_async"

    await asyncio.sleep(0.01)
    await launch(db_url, "vb")
    assert names(await DBOS.list_application_versions()) == ["vb", "va"]
    assert (await DBOS.get_latest_application_version())["version_name"] == "vb"

    # Relaunching an older version does not make it the latest (and says so).
    with caplog.at_level(logging.WARNING, logger="dbos_async"):
        await launch(db_url, "va")
    assert (await DBOS.get_latest_application_version())["version_name"] == "vb"
    assert "not the latest" in caplog.text and "'vb'" in caplog.text
    assert len(await DBOS.list_application_versions()) == 2  # recorded once each

    await DBOS.set_latest_application_version("va")
    latest = await DBOS.get_latest_application_version_async()
    assert latest["version_name"] == "va"
    assert latest["created_at"] == va["created_at"]  # only the timestamp moved
    assert latest["version_timestamp"] > latest["created_at"]
    assert names(await DBOS.list_application_versions_async()) == ["va", "vb"]

    with pytest.raises(DBOSException, match=r"'nope'.*no process launched"):
        await DBOS.set_latest_application_version("nope")
    with pytest.raises(ValueError, match="version_name"):
        await DBOS.set_latest_application_version("")
    assert names(await DBOS.list_application_versions()) == ["va", "vb"]


async def test_versions__client_lists_and_sets_the_same(db_url: str, stop: None) -> None:
    await launch(db_url, "ca")
    await asyncio.sleep(0.01)
    await launch(db_url, "cb")
    async with DBOSClient(db_url) as client:
        assert names(await client.list_application_versions()) == ["cb", "ca"]
        assert (await client.get_latest_application_version())["version_name"] == "cb"
        await client.set_latest_application_version_async("ca")
        assert (await client.get_latest_application_version_async())["version_name"] == "ca"
        assert names(await client.list_application_versions_async()) == ["ca", "cb"]
        with pytest.raises(DBOSException, match="'zz'"):
            await client.set_latest_application_version("zz")
    assert (await DBOS.get_latest_application_version())["version_name"] == "ca"


async def test_versions__set_latest_wins_over_a_timestamp_in_the_future(
    db_url: str, stop: None
) -> None:
    await launch(db_url, "fa")
    await record_version("future", now_ms() + 3_600_000)
    assert (await DBOS.get_latest_application_version())["version_name"] == "future"
    await DBOS.set_latest_application_version("fa")
    assert (await DBOS.get_latest_application_version())["version_name"] == "fa"


# -- queues: a workflow naming no version goes to the latest version -----------------------


async def status_of(workflow_id: str) -> str:
    status = await DBOS.get_workflow_status(workflow_id)
    assert status is not None
    return status.status


async def test_queue__unversioned_workflows_go_to_the_latest_versions_processes(
    db_url: str, stop: None
) -> None:
    await launch(db_url, "qa")
    await record_version("qb")
    await DBOS.set_latest_application_version("qb")  # this process is not the latest now
    async with DBOSClient(db_url) as client:
        unversioned = await client.enqueue(
            {"queue_name": QUEUE.name, "workflow_name": "tv_workflow"}, 1
        )
        pinned = await client.enqueue(
            {"queue_name": QUEUE.name, "workflow_name": "tv_workflow", "app_version": "qa"}, 2
        )
    unversioned = await DBOS.retrieve_workflow(unversioned.workflow_id)
    pinned = await DBOS.retrieve_workflow(pinned.workflow_id)
    own = await QUEUE.enqueue(tv_workflow, 3)  # enqueued here: this process's version
    assert (await own.get_status()).app_version == "qa"  # type: ignore[union-attr]
    assert await asyncio.wait_for(own.get_result(), WITHIN) == 14
    assert await asyncio.wait_for(pinned.get_result(), WITHIN) == 10
    await asyncio.sleep(0.5)  # many polls of the queue
    assert await status_of(unversioned.workflow_id) == WorkflowStatusString.ENQUEUED

    await DBOS.set_latest_application_version("qa")
    assert await asyncio.wait_for(unversioned.get_result(), WITHIN) == 6
    status = await DBOS.get_workflow_status(unversioned.workflow_id)
    assert status is not None and status.app_version == "qa"  # claimed: now of this version


async def test_queue__a_workflow_of_another_version_is_not_claimed(db_url: str, stop: None) -> None:
    await launch(db_url, "qa")
    async with DBOSClient(db_url) as client:
        other = await client.enqueue(
            {"queue_name": QUEUE.name, "workflow_name": "tv_workflow", "app_version": "qz"}, 1
        )
        unversioned = await client.enqueue(
            {"queue_name": QUEUE.name, "workflow_name": "tv_workflow"}, 2
        )
    unversioned = await DBOS.retrieve_workflow(unversioned.workflow_id)
    assert await asyncio.wait_for(unversioned.get_result(), WITHIN) == 10  # qa is latest
    await asyncio.sleep(0.3)
    assert await status_of(other.workflow_id) == WorkflowStatusString.ENQUEUED


# -- fork: on the latest version by default; another version's is not run here -----------


async def test_fork__defaults_to_the_latest_version_and_runs_here_when_that_is_ours(
    db_url: str, stop: None
) -> None:
    await launch(db_url, "ka")
    source = await DBOS.start_workflow(tv_workflow, 1)
    assert await source.get_result() == 6
    fork = await DBOS.fork_workflow(source.workflow_id, 2)
    assert await asyncio.wait_for(fork.get_result(), WITHIN) == 6
    status = await fork.get_status()
    assert status is not None and status.app_version == "ka"


async def test_fork__of_another_version_is_left_for_that_versions_processes(
    db_url: str, stop: None
) -> None:
    await launch(db_url, "ka")
    source = await DBOS.start_workflow(tv_workflow, 1)
    assert await source.get_result() == 6
    RUNS.clear()

    pinned = await DBOS.fork_workflow(source.workflow_id, 2, application_version="kb")
    await record_version("kc")
    await DBOS.set_latest_application_version("kc")
    latest = await DBOS.fork_workflow_async(source.workflow_id, 1)
    async with DBOSClient(db_url) as client:
        by_client = await client.fork_workflow(source.workflow_id, 1)
    by_client = await DBOS.retrieve_workflow(by_client.workflow_id)
    await asyncio.sleep(1.5)  # more than the takeover's polling interval
    for handle, version in ((pinned, "kb"), (latest, "kc"), (by_client, "kc")):
        status = await handle.get_status()
        assert status is not None
        assert (status.status, status.app_version) == (WorkflowStatusString.PENDING, version)
    assert RUNS == []  # none of them ran here

    # Back to this version as the latest: a fork without a version runs here again.
    await DBOS.set_latest_application_version("ka")
    again = await DBOS.fork_workflow(source.workflow_id, 2)
    assert await asyncio.wait_for(again.get_result(), WITHIN) == 6
    assert RUNS == ["step2"]
