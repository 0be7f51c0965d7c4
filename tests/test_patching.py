"""``DBOS.patch`` and ``DBOS.deprecate_patch`` (API.md section 11), DBOS Transact's meaning:
a new execution takes the patched code and records a ``DBOS.patch-<name>`` marker in its
next step slot; an execution recorded before the patch (that slot holds another step)
takes the old code. Old executions are replayed by forking them at a step: the fork
copies the steps before it, as a recovered execution has them.

The crash test at the end runs the two versions of the code in real processes: the old
one is killed mid-workflow, the patched one recovers it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from dbos_async import (
    DBOS,
    DBOSErrorCode,
    DBOSException,
    DBOSPatchNondeterminismError,
    DBOSUnexpectedStepError,
    SetWorkflowID,
    WorkflowHandle,
)
from dbos_async._config import resolve_config
from dbos_async._registry import registry
from dbos_async._runtime import get_runtime
from dbos_async.errors import DBOSConfigError
from dbos_async.sysdb import StepRow
from dbos_async.testing import crash_and_recover

WITHIN = 20
WF = "pt_workflow"
Workflow = Callable[[], Coroutine[Any, Any, int]]


@pytest.fixture
async def patching(db_url: str) -> AsyncIterator[None]:
    await DBOS.destroy()
    DBOS({"database_url": db_url, "enable_patching": True})
    await DBOS.launch()
    try:
        yield
    finally:
        await DBOS.destroy()
        registry.workflows.pop(WF, None)


@DBOS.step(name="pt_step_one")
async def step_one() -> int:
    return 1


@DBOS.step(name="pt_step_two")
async def step_two() -> int:
    return 2


@DBOS.step(name="pt_step_three")
async def step_three() -> int:
    return 3


def define(body: Workflow) -> Workflow:
    """Register ``body`` as the workflow ``WF``: a new version of its code."""
    registry.workflows.pop(WF, None)
    wf: Workflow = DBOS.workflow(name=WF)(body)
    return wf


async def run(wf: Workflow) -> str:
    handle = await DBOS.start_workflow(wf)
    await asyncio.wait_for(handle.get_result(), WITHIN)
    return handle.workflow_id


async def names(workflow_id: str) -> list[str]:
    return [s.function_name for s in await DBOS.list_workflow_steps(workflow_id)]


async def fork_result(workflow_id: str, start_step: int) -> tuple[Any, list[str]]:
    handle: WorkflowHandle[Any] = await DBOS.fork_workflow(workflow_id, start_step)
    result = await asyncio.wait_for(handle.get_result(), WITHIN)
    return result, await names(handle.workflow_id)


async def test_patch__new_runs_patched_and_old_ones_replay_unpatched(patching: None) -> None:
    async def v1() -> int:
        return await step_one() + await step_two()

    v1_id = await run(define(v1))
    assert await names(v1_id) == ["pt_step_one", "pt_step_two"]

    async def v2() -> int:
        a = await step_three() if await DBOS.patch("v2") else await step_one()
        return a + await step_two()

    v2_id = await run(define(v2))
    assert (await DBOS.get_workflow_status(v2_id)).output == 5  # type: ignore[union-attr]
    assert await names(v2_id) == ["DBOS.patch-v2", "pt_step_three", "pt_step_two"]
    # An execution holding the marker passes it; one recorded before the patch does not.
    assert await fork_result(v2_id, 3) == (5, ["DBOS.patch-v2", "pt_step_three", "pt_step_two"])
    assert await fork_result(v1_id, 2) == (3, ["pt_step_one", "pt_step_two"])

    async def v3() -> int:
        if await DBOS.patch("v3"):
            a = await step_two()
        elif await DBOS.patch("v2"):
            a = await step_three()
        else:
            a = await step_one()
        return a + await step_two()

    v3_id = await run(define(v3))
    assert await names(v3_id) == ["DBOS.patch-v3", "pt_step_two", "pt_step_two"]
    assert await fork_result(v3_id, 3) == (4, ["DBOS.patch-v3", "pt_step_two", "pt_step_two"])
    assert await fork_result(v2_id, 3) == (5, ["DBOS.patch-v2", "pt_step_three", "pt_step_two"])
    assert await fork_result(v1_id, 2) == (3, ["pt_step_one", "pt_step_two"])

    # Deprecated: no marker is recorded, one recorded is passed.
    async def v4() -> int:
        assert await DBOS.deprecate_patch("v3") is True
        return await step_two() + await step_two()

    v4_id = await run(define(v4))
    assert await names(v4_id) == ["pt_step_two", "pt_step_two"]
    assert await fork_result(v4_id, 3) == (4, ["pt_step_two", "pt_step_two"])
    assert await fork_result(v3_id, 3) == (4, ["DBOS.patch-v3", "pt_step_two", "pt_step_two"])
    for old, step in ((v2_id, 3), (v1_id, 2)):
        with pytest.raises(DBOSUnexpectedStepError):
            await fork_result(old, step)

    # Removed: only executions without a marker replay.
    async def v5() -> int:
        return await step_two() + await step_two()

    define(v5)
    assert await fork_result(v4_id, 3) == (4, ["pt_step_two", "pt_step_two"])
    for old, step in ((v3_id, 3), (v2_id, 3), (v1_id, 2)):
        with pytest.raises(DBOSUnexpectedStepError):
            await fork_result(old, step)


async def test_patch__an_old_execution_stopped_before_the_patch_takes_it(
    patching: None,
) -> None:
    """The slot is empty for an execution that had not got that far: it is patched."""

    async def v1() -> int:
        return await step_one() + await step_two()

    v1_id = await run(define(v1))

    async def v2() -> int:
        a = await step_one()
        b = await step_three() if await DBOS.patch("late") else await step_two()
        return a + b

    define(v2)
    assert await fork_result(v1_id, 2) == (4, ["pt_step_one", "DBOS.patch-late", "pt_step_three"])
    assert await fork_result(v1_id, 3) == (3, ["pt_step_one", "pt_step_two"])


async def test_patch__decided_at_call_time_under_gather(patching: None) -> None:
    """Called in one ``asyncio.gather``, steps and patches take their slots in call order,
    so a replay numbers them the same."""

    async def v1() -> int:
        a, b, c = await asyncio.gather(step_one(), DBOS.patch("g"), step_two())
        return a + int(b) * 10 + c

    wf = define(v1)
    first = await run(wf)
    assert await names(first) == ["pt_step_one", "DBOS.patch-g", "pt_step_two"]
    assert await fork_result(first, 3) == (13, ["pt_step_one", "DBOS.patch-g", "pt_step_two"])


@DBOS.step(name="pt_small_step")
async def small_step(tag: str, i: int) -> str:
    await asyncio.sleep(0)
    return f"{tag}:{i}"


async def patch_then_steps(tag: str) -> str:
    await DBOS.patch(tag)
    for i in range(5):
        await small_step(tag, i)
        await asyncio.sleep(0)
    return tag


async def test_patch__called_concurrently_from_gathered_tasks_raises_every_time(
    patching: None,
) -> None:
    """DBOS's test_concurrent_patch_async: patches called from the tasks of one
    ``asyncio.gather`` would take slots in scheduling order; every run fails cleanly."""

    async def v1() -> int:
        done = await asyncio.gather(
            patch_then_steps("a"), patch_then_steps("b"), patch_then_steps("c")
        )
        return len(done)

    wf = define(v1)
    for i in range(15):
        refused = pytest.raises(DBOSPatchNondeterminismError, match="concurrently")
        with SetWorkflowID(f"pt-concurrent-{i}"), refused as info:
            await asyncio.wait_for(wf(), 60)
        assert info.value.dbos_error_code == DBOSErrorCode.PatchNondeterminism.value
        status = await DBOS.get_workflow_status(f"pt-concurrent-{i}")
        assert status is not None and status.status == "ERROR"
        # No marker was recorded: the patches raised before taking a slot.
        assert not [n for n in await names(f"pt-concurrent-{i}") if n.startswith("DBOS.patch-")]


async def test_patch__from_a_task_the_workflow_started_raises(patching: None) -> None:
    """Even a lone task: the slot would depend on when it runs. deprecate_patch too."""

    async def in_task(call: Callable[[str], Coroutine[Any, Any, bool]]) -> bool:
        return await call("t")

    async def v1() -> int:
        refused = 0
        for call in (DBOS.patch, DBOS.deprecate_patch_async):
            try:
                await asyncio.create_task(in_task(call))
            except DBOSPatchNondeterminismError as exc:
                assert "concurrently" in str(exc) and "'t'" in str(exc)
                refused += 1
        # Its own code may still patch, and a patch it calls inside a gather is fine.
        a, patched = await asyncio.gather(step_one(), DBOS.patch("own"))
        return refused * 10 + a + int(patched)

    first = await run(define(v1))
    assert (await DBOS.get_workflow_status(first)).output == 22  # type: ignore[union-attr]
    assert await names(first) == ["pt_step_one", "DBOS.patch-own"]
    assert await fork_result(first, 3) == (22, ["pt_step_one", "DBOS.patch-own"])


async def test_deprecate_patch__records_nothing_and_passes_a_marker(patching: None) -> None:
    async def v1() -> int:
        return await step_three() if await DBOS.patch("d") else await step_one()

    marked = await run(define(v1))
    assert await names(marked) == ["DBOS.patch-d", "pt_step_three"]

    async def v2() -> int:
        assert await DBOS.deprecate_patch("d") is True
        return await step_three()

    fresh = await run(define(v2))
    assert await names(fresh) == ["pt_step_three"]
    assert await fork_result(marked, 2) == (3, ["DBOS.patch-d", "pt_step_three"])
    assert await fork_result(marked, 1) == (3, ["pt_step_three"])


async def test_patch__a_slot_recorded_meanwhile_by_another_run_raises(patching: None) -> None:
    """The marker's slot is taken at the call; if another run of the workflow records a
    different step there before the marker is written, the patch cannot apply."""

    async def v1() -> int:
        pending = DBOS.patch("raced")
        workflow_id = DBOS.workflow_id
        assert workflow_id is not None
        intruder = StepRow(workflow_id, 1, "pt_other", output=None, error=None)
        await get_runtime().journal.record_step(intruder)
        return int(await pending)

    handle = await DBOS.start_workflow(define(v1))
    with pytest.raises(DBOSPatchNondeterminismError) as info:
        await asyncio.wait_for(handle.get_result(), WITHIN)
    assert info.value.dbos_error_code == DBOSErrorCode.PatchNondeterminism.value == 15
    assert "raced" in str(info.value) and "pt_other" in str(info.value)


async def test_patch__refused_outside_a_workflow_and_inside_a_step(patching: None) -> None:
    with pytest.raises(DBOSException, match="from a workflow"):
        await DBOS.patch("x")
    with pytest.raises(DBOSException, match="from a workflow"):
        await DBOS.deprecate_patch_async("x")

    @DBOS.step(name="pt_patching_step")
    async def patching_step() -> None:
        await DBOS.patch("x")

    async def v1() -> int:
        await patching_step()
        return 0

    handle = await DBOS.start_workflow(define(v1))
    with pytest.raises(DBOSException, match="inside a step"):
        await asyncio.wait_for(handle.get_result(), WITHIN)


async def test_patch__bad_names_are_refused(patching: None) -> None:
    async def v1() -> int:
        with pytest.raises(ValueError, match="patch_name"):
            DBOS.patch("")
        with pytest.raises(TypeError, match="patch_name"):
            DBOS.deprecate_patch(3)  # type: ignore[arg-type]
        return 0

    assert await (await DBOS.start_workflow(define(v1))).get_result() == 0


async def test_patch__needs_enable_patching(dbos: DBOS) -> None:
    async def v1() -> int:
        return int(await DBOS.patch("x"))

    try:
        handle = await DBOS.start_workflow(define(v1))
        with pytest.raises(DBOSException, match="enable_patching"):
            await asyncio.wait_for(handle.get_result(), WITHIN)
    finally:
        registry.workflows.pop(WF, None)


# -- configuration ----------------------------------------------------------------------


def test_enable_patching__makes_the_version_patching_enabled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DBOS__APPVERSION", raising=False)
    assert resolve_config({"enable_patching": True}).application_version == "PATCHING_ENABLED"
    assert resolve_config({"enable_patching": True}).enable_patching is True
    assert resolve_config({}).enable_patching is False
    assert resolve_config({}).application_version is None
    given = resolve_config({"enable_patching": True, "application_version": "v7"})
    assert given.application_version == "v7" and given.enable_patching
    monkeypatch.setenv("DBOS__APPVERSION", "from-env")
    assert resolve_config({"enable_patching": True}).application_version == "from-env"


def test_enable_patching__must_be_a_bool() -> None:
    with pytest.raises(DBOSConfigError, match="enable_patching"):
        resolve_config({"enable_patching": "yes"})


async def test_enable_patching__is_the_launched_version(patching: None) -> None:
    assert DBOS.application_version == "PATCHING_ENABLED"
    latest = await DBOS.get_latest_application_version()
    assert latest["version_name"] == "PATCHING_ENABLED"


@DBOS.workflow(name="pt_crash_workflow")
async def crash_workflow() -> int:
    a = await step_one()
    b = await step_three() if await DBOS.patch("crash") else await step_two()
    return a + b


async def test_crash_and_recover__a_crash_right_after_the_marker(patching: None) -> None:
    """The marker is a checkpoint like any step: killed once it is durable, the recovered
    execution passes it and takes the patched branch."""
    report = await crash_and_recover(crash_workflow, crash_after_step=2)
    assert report.result == 4
    assert [s.function_name for s in report.steps] == [
        "pt_step_one",
        "DBOS.patch-crash",
        "pt_step_three",
    ]


# -- a crash: the old code dies mid-workflow, the patched code recovers it -----------------

APP = Path(__file__).with_name("patch_app.py")


def app(
    code: str, role: str, db_url: str, workdir: Path, workflow_id: str, crash_after: int = 0
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    env.pop("DBOS_ASYNC_CRASH_AFTER_STEP", None)
    if crash_after:
        env["DBOS_ASYNC_CRASH_AFTER_STEP"] = f"{crash_after}:{workflow_id}"
    return subprocess.run(
        [sys.executable, str(APP), code, role, db_url, str(workdir), workflow_id],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.mark.crash
def test_crash__patched_code_recovers_an_old_execution_down_the_old_branch(
    db_url: str, tmp_path: Path
) -> None:
    old_id, new_id = f"pt-old-{uuid.uuid4()}", f"pt-new-{uuid.uuid4()}"
    first = app("old", "start", db_url, tmp_path, old_id, crash_after=2)
    assert first.returncode == -signal.SIGKILL, first.stderr
    log = tmp_path / "log"
    assert log.read_text().split() == ["old:one", "old:two"]

    recovered = app("new", "recover", db_url, tmp_path, old_id)
    assert recovered.returncode == 0, recovered.stderr
    # The old execution replays its two steps and runs the rest of the unpatched branch.
    assert recovered.stdout.strip().splitlines()[-1] == (
        "result=111 steps=patch_one,patch_two,patch_three"
    )
    assert log.read_text().split() == ["old:one", "old:two", "new:three"]

    fresh = app("new", "start", db_url, tmp_path, new_id)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.strip().splitlines()[-1] == (
        "result=1101 steps=patch_one,DBOS.patch-fix,patch_two_fixed,patch_three"
    )


async def test_set_workflow_id__patch_marker_is_on_the_named_workflow(patching: None) -> None:
    async def v1() -> int:
        return int(await DBOS.patch("named"))

    wf = define(v1)
    with SetWorkflowID("pt-named"):
        handle = await DBOS.start_workflow(wf)
    assert await handle.get_result() == 1
    assert await names("pt-named") == ["DBOS.patch-named"]
    steps = await DBOS.list_workflow_steps("pt-named")
    assert steps[0].output is None and steps[0].error is None
