"""Management calls made from a workflow's own code are steps, with DBOS Transact's names
(``DBOS.getStatus``, ``DBOS.listWorkflows``, ``DBOS.listQueuedWorkflows``,
``DBOS.listWorkflowSteps``, ``DBOS.cancelWorkflow``, ``DBOS.resumeWorkflow``,
``DBOS.forkWorkflow``): a re-run gets the recorded answers back, as the same types a
live call returns, and never cancels, resumes or forks again. Both backends; the round
trip with the JSON and the pickle serializer."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import decimal
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from dbos_async import (
    DBOS,
    SetWorkflowID,
    StepInfo,
    WorkflowHandle,
    WorkflowStatus,
    WorkflowStatusString,
)
from dbos_async.testing import crash_and_recover

WITHIN = 20.0

#: What the managing workflows saw, by the ID of the run (the original or its fork).
SEEN: dict[str, dict[str, Any]] = {}
RUNS: Counter[str] = Counter()
GATES: dict[str, asyncio.Event] = {}


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    SEEN.clear()
    RUNS.clear()
    GATES.clear()
    yield
    for gate in GATES.values():
        gate.set()


@pytest.fixture(params=["json", "pickle"])
async def serialized(db_url: str, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A launched DBOS with each serializer."""
    await DBOS.destroy()
    DBOS({"database_url": db_url, "application_version": "test", "serializer": request.param})
    await DBOS.launch()
    try:
        yield str(request.param)
    finally:
        await DBOS.destroy()


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


class MsError(Exception):
    pass


@DBOS.step(name="ms_stamp")
async def ms_stamp(when: dt.datetime) -> tuple[dt.datetime, decimal.Decimal]:
    return when, decimal.Decimal("1.25")


@DBOS.workflow(name="ms_rich")
async def ms_rich(when: dt.datetime, pair: tuple[int, str], point: Point) -> Point:
    await ms_stamp(when)
    return Point(point.x + pair[0], point.y)


@DBOS.workflow(name="ms_fails")
async def ms_fails(message: str) -> None:
    raise MsError(message, 7)


@DBOS.workflow(name="ms_manager")
async def ms_manager(rich_id: str, failed_id: str) -> int:
    seen = SEEN.setdefault(DBOS.workflow_id or "", {})
    seen["status"] = await DBOS.get_workflow_status(rich_id)
    seen["missing"] = await DBOS.get_workflow_status_async("ms-no-such-workflow")
    seen["listed"] = await DBOS.list_workflows(name="ms_rich")
    seen["both"] = await DBOS.list_workflows_async(workflow_ids=[rich_id, failed_id])
    seen["queued"] = await DBOS.list_queued_workflows(load_input=False)
    seen["steps"] = await DBOS.list_workflow_steps(rich_id)
    seen["cancelled"] = await DBOS.cancel_workflow(rich_id)  # (finished: left as it is)
    return len(seen["listed"])


MANAGER_STEPS = [
    "DBOS.getStatus",
    "DBOS.getStatus",
    "DBOS.listWorkflows",
    "DBOS.listWorkflows",
    "DBOS.listQueuedWorkflows",
    "DBOS.listWorkflowSteps",
    "DBOS.cancelWorkflow",
]
WHEN = dt.datetime(2026, 12, 7, 4, 5, 6, 789000, tzinfo=dt.UTC)


async def names(workflow_id: str) -> list[str]:
    return [s.function_name for s in await DBOS.list_workflow_steps(workflow_id)]


def same_status(a: WorkflowStatus, b: WorkflowStatus) -> None:
    """Equal field by field, with the same types (exceptions by type and arguments)."""
    assert dataclasses.replace(a, error=None) == dataclasses.replace(b, error=None)
    assert type(a.error) is type(b.error)
    assert (a.error.args if a.error else None) == (b.error.args if b.error else None)
    assert type(a.status) is type(b.status) is WorkflowStatusString
    assert type(a.output) is type(b.output)
    if a.input is not None and b.input is not None:
        assert [type(v) for v in a.input["args"]] == [type(v) for v in b.input["args"]]


def same_steps(a: list[StepInfo], b: list[StepInfo]) -> None:
    assert a == b
    assert [type(s.output) for s in a] == [type(s.output) for s in b]
    for x, y in zip(a, b, strict=True):
        if isinstance(x.output, tuple):
            assert [type(v) for v in x.output] == [type(v) for v in y.output]


async def run_targets() -> tuple[str, str]:
    rich = await DBOS.start_workflow(ms_rich, WHEN, (2, "a"), Point(1, 5))
    assert await asyncio.wait_for(rich.get_result(), WITHIN) == Point(3, 5)
    failed = await DBOS.start_workflow(ms_fails, "boom")
    with pytest.raises(MsError):
        await asyncio.wait_for(failed.get_result(), WITHIN)
    return rich.workflow_id, failed.workflow_id


async def test_management_calls__are_steps_with_dbos_names(dbos: DBOS) -> None:
    rich_id, failed_id = await run_targets()
    with SetWorkflowID("ms-manager"):
        assert await DBOS.start_workflow(ms_manager, rich_id, failed_id) is not None
    handle: WorkflowHandle[int] = await DBOS.retrieve_workflow("ms-manager")
    assert await asyncio.wait_for(handle.get_result(), WITHIN) == 1
    assert await names("ms-manager") == MANAGER_STEPS
    # What the workflow got is what the same calls return outside a workflow.
    seen = SEEN["ms-manager"]
    outside = await DBOS.get_workflow_status(rich_id)
    assert outside is not None
    same_status(seen["status"], outside)
    assert seen["missing"] is None and seen["cancelled"] is None and seen["queued"] == []
    same_steps(seen["steps"], await DBOS.list_workflow_steps(rich_id))
    both = await DBOS.list_workflows(workflow_ids=[rich_id, failed_id])
    for a, b in zip(seen["both"], both, strict=True):
        same_status(a, b)


async def test_management_calls__a_replay_returns_the_recorded_answers_as_the_same_types(
    serialized: str,
) -> None:
    rich_id, failed_id = await run_targets()
    first = await DBOS.start_workflow(ms_manager, rich_id, failed_id)
    assert await asyncio.wait_for(first.get_result(), WITHIN) == 1
    # The database changes: another ms_rich workflow, and the failed one is gone.
    await asyncio.wait_for(
        (await DBOS.start_workflow(ms_rich, WHEN, (0, "b"), Point(0, 0))).get_result(), WITHIN
    )
    await DBOS.delete_workflow(failed_id)
    assert len(await DBOS.list_workflows(name="ms_rich")) == 2

    fork = await DBOS.fork_workflow(first.workflow_id, len(MANAGER_STEPS) + 1)
    assert await asyncio.wait_for(fork.get_result(), WITHIN) == 1  # the recorded list
    was, now = SEEN[first.workflow_id], SEEN[fork.workflow_id]
    same_status(was["status"], now["status"])
    assert isinstance(now["status"].output, Point)
    assert now["status"].input["args"][0] == WHEN
    assert now["status"].input["args"][1] == (2, "a")
    assert now["missing"] is None and now["cancelled"] is None and now["queued"] == []
    assert len(now["listed"]) == 1
    same_status(was["listed"][0], now["listed"][0])
    assert [s.workflow_id for s in now["both"]] == [rich_id, failed_id]  # deleted since
    for a, b in zip(was["both"], now["both"], strict=True):
        same_status(a, b)
    failed = now["both"][1]
    assert failed.status == WorkflowStatusString.ERROR
    assert type(failed.error) is MsError and failed.error.args == ("boom", 7)
    same_steps(was["steps"], now["steps"])
    assert now["steps"][0].output == (WHEN, decimal.Decimal("1.25"))
    assert await names(fork.workflow_id) == MANAGER_STEPS


async def test_management_calls__inside_a_step_or_outside_a_workflow_record_nothing(
    dbos: DBOS,
) -> None:
    rich_id, _ = await run_targets()

    @DBOS.step(name="ms_looking_step")
    async def looking() -> int:
        status = await DBOS.get_workflow_status(rich_id)
        listed = await DBOS.list_workflows(name="ms_rich")
        assert status is not None
        return len(listed) + len(await DBOS.list_workflow_steps(rich_id))

    @DBOS.workflow(name="ms_looking")
    async def looking_workflow() -> int:
        return await looking()

    handle = await DBOS.start_workflow(looking_workflow)
    assert await asyncio.wait_for(handle.get_result(), WITHIN) == 2
    assert await names(handle.workflow_id) == ["ms_looking_step"]
    assert await names(rich_id) == ["ms_stamp"]


async def test_management_calls__number_in_call_order_under_gather(dbos: DBOS) -> None:
    rich_id, _ = await run_targets()

    @DBOS.workflow(name="ms_gathering")
    async def gathering() -> int:
        steps, status, listed = await asyncio.gather(
            DBOS.list_workflow_steps(rich_id),
            DBOS.get_workflow_status(rich_id),
            DBOS.list_workflows(name="ms_rich"),
        )
        assert status is not None
        return len(steps) + len(listed)

    handle = await DBOS.start_workflow(gathering)
    assert await asyncio.wait_for(handle.get_result(), WITHIN) == 2
    assert await names(handle.workflow_id) == [
        "DBOS.listWorkflowSteps",
        "DBOS.getStatus",
        "DBOS.listWorkflows",
    ]


async def test_management_calls__bad_filters_raise_at_the_call_recording_nothing(
    dbos: DBOS,
) -> None:
    @DBOS.workflow(name="ms_bad_filter")
    async def bad_filter() -> str:
        with pytest.raises(ValueError, match="unknown workflow status"):
            DBOS.list_workflows(status="NOT_A_STATUS")
        with pytest.raises(TypeError, match="start_step"):
            DBOS.fork_workflow("ms-x", "1")  # type: ignore[arg-type]
        return "ok"

    handle = await DBOS.start_workflow(bad_filter)
    assert await asyncio.wait_for(handle.get_result(), WITHIN) == "ok"
    assert await names(handle.workflow_id) == []


@DBOS.workflow(name="ms_blocker")
async def ms_blocker() -> str:
    RUNS["blocker"] += 1
    await GATES.setdefault("blocker", asyncio.Event()).wait()
    return "unblocked"


@DBOS.workflow(name="ms_source")
async def ms_source() -> str:
    RUNS["source"] += 1
    return "source"


@DBOS.workflow(name="ms_operator")
async def ms_operator(target: str, source: str) -> list[str]:
    resumed = await DBOS.resume_workflow(target)
    forked = await DBOS.fork_workflow_async(source, 1)
    return [resumed.workflow_id, forked.workflow_id, await forked.get_result()]


async def eventually(check: Any) -> None:
    deadline = asyncio.get_running_loop().time() + WITHIN
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def status_of(workflow_id: str) -> str | None:
    status = await DBOS.get_workflow_status(workflow_id)
    return status.status if status is not None else None


async def test_resume_and_fork_in_a_workflow__are_not_repeated_by_a_replay(dbos: DBOS) -> None:
    blocker = await DBOS.start_workflow(ms_blocker)

    async def runs(n: int) -> bool:
        return RUNS["blocker"] == n

    await eventually(lambda: runs(1))
    await DBOS.cancel_workflow(blocker.workflow_id)
    source = await DBOS.start_workflow(ms_source)
    assert await asyncio.wait_for(source.get_result(), WITHIN) == "source"

    first = await DBOS.start_workflow(ms_operator, blocker.workflow_id, source.workflow_id)
    result = await asyncio.wait_for(first.get_result(), WITHIN)
    fork_id = result[1]
    assert result == [blocker.workflow_id, fork_id, "source"] and fork_id != source.workflow_id
    await eventually(lambda: runs(2))  # the resume ran it again
    steps = await DBOS.list_workflow_steps(first.workflow_id)
    assert [(s.function_name, s.output) for s in steps] == [
        ("DBOS.resumeWorkflow", blocker.workflow_id),
        ("DBOS.forkWorkflow", fork_id),
    ]

    await DBOS.cancel_workflow(blocker.workflow_id)
    replay = await DBOS.fork_workflow(first.workflow_id, 3)
    assert await asyncio.wait_for(replay.get_result(), WITHIN) == result
    await asyncio.sleep(0.2)  # (a resume would run the blocker at once)
    assert RUNS["blocker"] == 2 and RUNS["source"] == 2
    assert await status_of(blocker.workflow_id) == WorkflowStatusString.CANCELLED
    forks = [w for w in await DBOS.list_workflows() if w.forked_from == source.workflow_id]
    assert [w.workflow_id for w in forks] == [fork_id]


@DBOS.workflow(name="ms_crash_looker")
async def ms_crash_looker() -> list[Any]:
    status = await DBOS.get_workflow_status(DBOS.workflow_id or "")
    assert status is not None
    await ms_stamp(WHEN)
    return [status.executor_id, status.recovery_attempts]


async def test_crash_and_recover__the_recovered_run_gets_the_recorded_status(
    dbos: DBOS,
) -> None:
    """The status read before the crash (on the child's executor) is what the recovered
    run sees, though the workflow has since been taken over here."""
    report = await crash_and_recover(ms_crash_looker, crash_after_step=1)
    executor, attempts = report.result
    assert executor == f"{DBOS.executor_id}-crash-child"
    assert report.status.executor_id != executor
    assert report.status.recovery_attempts >= attempts
    assert [s.function_name for s in report.steps] == ["DBOS.getStatus", "ms_stamp"]


@DBOS.workflow(name="ms_target")
async def ms_target(x: int) -> int:
    return x


async def test_bulk_management__every_call_is_checkpointed(dbos: DBOS) -> None:
    """DBOS's test_bulk_async_workflow_management: the managing workflow's steps name
    every operation."""
    ids: dict[str, list[str]] = {"cancel": [], "resume": [], "delete": []}
    for i in range(2):
        for kind, listed in ids.items():
            with SetWorkflowID(f"ms-bulk-{kind}-{i}"):
                handle = await DBOS.start_workflow(ms_target, i)
            assert await asyncio.wait_for(handle.get_result(), WITHIN) == i
            listed.append(handle.workflow_id)
    fork_target = ids["resume"][0]

    @DBOS.workflow(name="ms_bulk_manager")
    async def manager() -> None:
        await DBOS.cancel_workflows_async(ids["cancel"])
        handles = await DBOS.resume_workflows_async(ids["resume"])
        assert [await h.get_result() for h in handles] == [0, 1]
        await DBOS.delete_workflows_async(ids["delete"])
        workflows = await DBOS.list_workflows_async(workflow_ids=ids["cancel"])
        assert sorted(w.workflow_id for w in workflows) == sorted(ids["cancel"])
        assert isinstance(await DBOS.list_workflow_steps_async(fork_target), list)
        forked = await DBOS.fork_workflow_async(fork_target, 1)
        assert await forked.get_result() == 0

    with SetWorkflowID("ms-bulk-manager"):
        handle = await DBOS.start_workflow(manager)
    await asyncio.wait_for(handle.get_result(), WITHIN)
    assert await names("ms-bulk-manager") == [
        "DBOS.cancelWorkflow",
        "DBOS.resumeWorkflow",
        "DBOS.deleteWorkflow",
        "DBOS.listWorkflows",
        "DBOS.listWorkflowSteps",
        "DBOS.forkWorkflow",
    ]
    for deleted in ids["delete"]:
        assert await DBOS.get_workflow_status(deleted) is None


# -- a crash between a fork and its record ----------------------------------------------------


@DBOS.workflow(name="tms_fork_source")
async def tms_fork_source(x: int) -> int:
    return x


@DBOS.workflow(name="tms_forker")
async def tms_forker(source_id: str) -> str:
    handle = await DBOS.fork_workflow(source_id, 1)
    return handle.workflow_id


async def test_fork_in_a_workflow__a_rerun_after_the_fork_before_its_record_forks_once(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fork's ID is the one a child started at that step gets, so a run that stops
    after the fork is stored and before its step is recorded (the window a crash leaves)
    is rerun into the same fork, not a second one."""
    from dbos_async._checkpoint import Checkpoint
    from dbos_async._errors import ReplayFailed

    record = Checkpoint.record
    stopped: list[str] = []

    async def stop_once(self: Checkpoint, *args: Any, **kwargs: Any) -> Any:
        if self.name == "DBOS.forkWorkflow" and not stopped:
            stopped.append(self.name)
            raise ReplayFailed("tms-forker", 1, RuntimeError("stopped between fork and record"))
        return await record(self, *args, **kwargs)

    await DBOS.destroy()
    DBOS({"database_url": db_url, "application_version": "test"})
    await DBOS.launch()
    try:
        source = await DBOS.start_workflow(tms_fork_source, 7)
        assert await source.get_result() == 7
        monkeypatch.setattr(Checkpoint, "record", stop_once)
        with SetWorkflowID("tms-forker"):
            await DBOS.start_workflow(tms_forker, source.workflow_id)
        for _ in range(200):
            if stopped:
                break
            await asyncio.sleep(0.05)
        assert stopped
        status = await DBOS.get_workflow_status("tms-forker")
        assert status is not None and status.status == WorkflowStatusString.PENDING
        await DBOS.destroy()
        DBOS({"database_url": db_url, "application_version": "test"})
        await DBOS.launch()  # recovery runs tms-forker again
        handle = await DBOS.retrieve_workflow("tms-forker")
        fork_id = await asyncio.wait_for(handle.get_result(), WITHIN)
        assert fork_id == "tms-forker-1"
        forks = [
            w.workflow_id
            for w in await DBOS.list_workflows(name="tms_fork_source")
            if w.forked_from == source.workflow_id
        ]
        assert forks == ["tms-forker-1"]
    finally:
        await DBOS.destroy()
