"""Management and introspection (API.md section 7): cancelling, resuming and forking
workflows, listing them, workflow timeouts, and the same calls through ``DBOSClient``,
on both backends."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dbos_async import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded,
    DBOSClient,
    DBOSConflictingWorkflowError,
    DBOSException,
    DBOSNonExistentWorkflowError,
    DBOSWorkflowCancelledError,
    SetWorkflowID,
    SetWorkflowTimeout,
    WorkflowHandle,
    WorkflowStatus,
    WorkflowStatusString,
)
from dbos_async._runtime import get_runtime

# Module-level state the workflows below report into; reset before every test.
counts: Counter[str] = Counter()
mg_gate = asyncio.Event()


@pytest.fixture(autouse=True)
def _reset_state() -> Iterator[None]:
    global mg_gate
    counts.clear()
    mg_gate = asyncio.Event()
    yield
    counts.clear()


#: The bound on waiting for something that should happen at once. Generous for a loaded
#: machine, yet well under the 30 s the blocked workflows below wait: a workflow that
#: stops within it was stopped, it did not finish waiting.
WITHIN = 15.0


async def relaunch(db_url: str) -> None:
    """Simulate a process restart: destroy the runtime and launch a new one."""
    await DBOS.destroy()
    DBOS({"database_url": db_url, "application_version": "test"})
    await DBOS.launch()


async def wait_until(predicate: Callable[[], bool], what: str, within: float = WITHIN) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def wait_for_steps(workflow_id: str, n: int, within: float = WITHIN) -> None:
    deadline = time.monotonic() + within
    while len(await DBOS.list_workflow_steps(workflow_id)) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"workflow {workflow_id} never recorded {n} steps")
        await asyncio.sleep(0.01)


async def status(workflow_id: str) -> WorkflowStatus:
    st = await DBOS.get_workflow_status(workflow_id)
    assert st is not None, workflow_id
    return st


async def blocked(handle: WorkflowHandle[Any]) -> str:
    """Wait until a workflow built on ``_block`` sits in its blocking call."""
    await wait_until(lambda: counts["blocking"] >= 1, "the workflow to block")
    await asyncio.sleep(0.05)  # let it enter the await
    return handle.workflow_id


# -- workflows and steps used by the tests ------------------------------------------


@DBOS.step()
async def mg_step_one() -> str:
    counts["one"] += 1
    return "one"


@DBOS.step()
async def mg_step_two() -> str:
    counts["two"] += 1
    return "two"


async def _block(kind: str) -> None:
    counts["blocking"] += 1
    if kind == "sleep":
        await DBOS.sleep(30)
    elif kind == "recv":
        await DBOS.recv("mg-topic", timeout_seconds=30)
    else:
        await mg_gate.wait()
    counts["unblocked"] += 1


@DBOS.workflow()
async def mg_blocked(kind: str) -> str:
    first = await mg_step_one()
    try:
        await _block(kind)
    finally:
        counts["unwound"] += 1
    counts["after_block"] += 1
    return first + await mg_step_two()


@DBOS.workflow()
async def mg_swallowing(kind: str) -> str:
    first = await mg_step_one()
    try:
        try:
            await _block(kind)
        except Exception:
            counts["swallowed"] += 1
        counts["after_except"] += 1
        return first + await mg_step_two()
    finally:
        counts["unwound"] += 1


@DBOS.workflow()
async def mg_catch_all(kind: str) -> str:
    first = await mg_step_one()
    try:
        await _block(kind)
    except BaseException:
        counts["caught"] += 1
    counts["after_catch"] += 1
    return first + await mg_step_two()


async def _two_steps(x: str) -> str:
    first = await mg_step_one()
    await mg_gate.wait()
    second = await mg_step_two()
    return f"{first}-{second}-{x}"


@DBOS.workflow()
async def mg_two_steps(x: str) -> str:
    return await _two_steps(x)


@DBOS.workflow(max_recovery_attempts=0)
async def mg_two_steps_once(x: str) -> str:
    return await _two_steps(x)


@DBOS.step()
async def mg_numbered(i: int, x: int) -> int:
    counts[f"s{i}"] += 1
    return i * x


@DBOS.workflow()
async def mg_five(x: int) -> list[int]:
    return [await mg_numbered(i, x) for i in range(1, 6)]


@DBOS.workflow()
async def mg_echo(x: int) -> int:
    return x * 2


@DBOS.workflow()
async def mg_parent(n: int) -> int:
    handles = [await DBOS.start_workflow(mg_echo, i) for i in range(n)]
    return sum([await h for h in handles])


@DBOS.workflow()
async def mg_sleeper(seconds: float) -> str:
    await DBOS.sleep(seconds)
    counts["sleeper_done"] += 1
    return "done"


@DBOS.workflow()
async def mg_timeout_parent() -> str:
    await DBOS.start_workflow(mg_sleeper, 30)
    await DBOS.sleep(30)
    counts["parent_done"] += 1
    return "parent done"


# -- cancel ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sleep", "recv"])
async def test_cancel_workflow__blocked_workflow_stops_after_first_step(
    dbos: DBOS, kind: str
) -> None:
    handle = await DBOS.start_workflow(mg_blocked, kind)
    wid = await blocked(handle)
    assert (await status(wid)).status == WorkflowStatusString.PENDING

    # cancel_workflow marks it and returns: it does not wait for the 30 s block.
    await asyncio.wait_for(DBOS.cancel_workflow(wid), WITHIN)
    assert (await status(wid)).status == WorkflowStatusString.CANCELLED

    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(handle.get_result(), WITHIN)
    await wait_until(lambda: counts["unwound"] == 1, "the workflow body to be interrupted")
    await asyncio.sleep(0.2)
    assert counts["one"] == 1
    assert counts["two"] == 0
    assert counts["unblocked"] == 0
    assert counts["after_block"] == 0
    assert (await status(wid)).status == WorkflowStatusString.CANCELLED
    names = [s.function_name for s in await DBOS.list_workflow_steps(wid)]
    assert names[0] == "mg_step_one"
    assert "mg_step_two" not in names
    # A handle made afterwards (from the stored status) raises too.
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for((await DBOS.retrieve_workflow(wid)).get_result(), WITHIN)


@pytest.mark.parametrize("kind", ["sleep", "recv"])
async def test_cancel_workflow__except_exception_does_not_swallow_it(dbos: DBOS, kind: str) -> None:
    handle = await DBOS.start_workflow(mg_swallowing, kind)
    wid = await blocked(handle)
    await DBOS.cancel_workflow(wid)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(handle.get_result(), WITHIN)
    await wait_until(lambda: counts["unwound"] == 1, "the workflow body to be interrupted")
    await asyncio.sleep(0.2)
    assert counts["swallowed"] == 0
    assert counts["after_except"] == 0
    assert counts["two"] == 0
    assert (await status(wid)).status == WorkflowStatusString.CANCELLED


async def test_cancel_workflow__blocked_in_plain_user_code_stops(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(mg_blocked, "event")
    wid = await blocked(handle)
    await DBOS.cancel_workflow(wid)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(handle.get_result(), WITHIN)
    await wait_until(lambda: counts["unwound"] == 1, "the workflow body to be interrupted")
    mg_gate.set()  # a workflow still waiting would now go on
    await asyncio.sleep(0.2)
    assert counts["unblocked"] == 0
    assert counts["after_block"] == 0
    assert counts["two"] == 0
    assert (await status(wid)).status == WorkflowStatusString.CANCELLED


async def test_cancel_workflow__catching_base_exception_still_stops_at_next_step(
    dbos: DBOS,
) -> None:
    handle = await DBOS.start_workflow(mg_catch_all, "sleep")
    wid = await blocked(handle)
    await DBOS.cancel_workflow(wid)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(handle.get_result(), WITHIN)
    await wait_until(lambda: counts["after_catch"] == 1, "the body to go on past its except")
    await asyncio.sleep(0.2)
    assert counts["two"] == 0  # its next step raised instead of running
    st = await status(wid)
    assert st.status == WorkflowStatusString.CANCELLED
    assert st.output is None
    assert "mg_step_two" not in [s.function_name for s in await DBOS.list_workflow_steps(wid)]


async def test_cancel_workflow__twice_is_harmless(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(mg_blocked, "event")
    wid = await blocked(handle)
    await DBOS.cancel_workflow(wid)
    await DBOS.cancel_workflow(wid)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(handle.get_result(), WITHIN)
    await DBOS.cancel_workflow(wid)
    assert (await status(wid)).status == WorkflowStatusString.CANCELLED


def test_cancel_workflow__cancelled_error_is_a_base_exception() -> None:
    assert issubclass(DBOSWorkflowCancelledError, BaseException)
    assert not issubclass(DBOSWorkflowCancelledError, Exception)
    assert issubclass(DBOSAwaitedWorkflowCancelledError, DBOSException)


async def test_cancel_workflow__finished_workflow_is_left_as_it_is(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(mg_echo, 4)
    assert await handle == 8
    before = await status(handle.workflow_id)
    await DBOS.cancel_workflow(handle.workflow_id)
    after = await status(handle.workflow_id)
    assert after == before
    assert after.status == WorkflowStatusString.SUCCESS


async def test_cancel_workflow__unknown_id_raises(dbos: DBOS) -> None:
    with pytest.raises(DBOSNonExistentWorkflowError):
        await DBOS.cancel_workflow("mg-no-such-workflow")


CANCEL_SCRIPT = """\
import asyncio
import json
import sys
import time

from dbos_async import DBOSClient


async def main() -> None:
    client = DBOSClient(sys.argv[1])
    try:
        await client.cancel_workflow(sys.argv[2])
        after = time.time()
        status = await client.get_workflow_status(sys.argv[2])
    finally:
        await client.destroy()
    print(json.dumps({"after": after, "status": str(status.status.value)}))


asyncio.run(main())
"""


async def test_cancel_workflow__from_another_process_stops_it(
    dbos: DBOS, db_url: str, tmp_path: Path
) -> None:
    handle = await DBOS.start_workflow(mg_blocked, "sleep")
    wid = await blocked(handle)
    script = tmp_path / "cancel.py"
    script.write_text(textwrap.dedent(CANCEL_SCRIPT))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        db_url,
        wid,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["status"] == "CANCELLED"
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(handle.get_result(), WITHIN)
    await wait_until(lambda: counts["unwound"] == 1, "the workflow body to be interrupted")
    await asyncio.sleep(0.2)
    assert counts["one"] == 1
    assert counts["two"] == 0
    assert (await status(wid)).status == WorkflowStatusString.CANCELLED


# -- resume ----------------------------------------------------------------------------


async def test_resume_workflow__cancelled_workflow_runs_on_from_its_last_step(
    dbos: DBOS, db_url: str
) -> None:
    with SetWorkflowID("mg-resume"):
        await DBOS.start_workflow(mg_two_steps, "x")
    await wait_for_steps("mg-resume", 1)
    # One recovery first, so there is a recovery count to reset.
    await relaunch(db_url)
    assert (await status("mg-resume")).recovery_attempts == 1
    await DBOS.cancel_workflow("mg-resume")
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for((await DBOS.retrieve_workflow("mg-resume")).get_result(), WITHIN)
    mg_gate.set()
    await asyncio.sleep(0.1)
    assert counts["two"] == 0  # cancelled: the open gate does not let it go on

    handle = await DBOS.resume_workflow("mg-resume")
    assert handle.workflow_id == "mg-resume"
    assert await asyncio.wait_for(handle.get_result(), WITHIN) == "one-two-x"
    assert counts["one"] == 1
    assert counts["two"] == 1
    st = await status("mg-resume")
    assert st.status == WorkflowStatusString.SUCCESS
    assert st.output == "one-two-x"
    assert st.recovery_attempts == 0
    steps = await DBOS.list_workflow_steps("mg-resume")
    assert [(s.function_id, s.function_name) for s in steps] == [
        (1, "mg_step_one"),
        (2, "mg_step_two"),
    ]


async def test_resume_workflow__a_cancel_seen_before_the_resume_spares_the_new_run(
    dbos: DBOS, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request watcher reads which of this process's runs another process cancelled;
    a resume that starts a new run meanwhile must not see that run stopped by the stale
    read."""
    rt = get_runtime()
    handle = await DBOS.start_workflow(mg_two_steps, "race")
    await wait_for_steps(handle.workflow_id, 1)
    original = rt.sysdb.cancelled_among
    resumed: list[Any] = []

    async def cancelled_then_resumed(workflow_ids: list[str]) -> list[str]:
        found = await original(workflow_ids)
        if handle.workflow_id in found and not resumed:
            # (as if the resume ran while this statement's reply was on its way)
            resumed.append(await DBOS.resume_workflow(handle.workflow_id))
        return found

    monkeypatch.setattr(rt.sysdb, "cancelled_among", cancelled_then_resumed)
    client = DBOSClient(db_url)  # (a cancel from elsewhere: the watcher applies it here)
    try:
        await client.cancel_workflow(handle.workflow_id)
    finally:
        await client.destroy()
    for _ in range(200):
        if resumed:
            break
        await asyncio.sleep(0.05)
    assert resumed, "the watcher never saw the cancel"
    mg_gate.set()
    assert await asyncio.wait_for(resumed[0].get_result(), WITHIN) == "one-two-race"


async def test_resume_workflow__right_after_cancel_runs_once(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(mg_two_steps, "now")
    await wait_for_steps(handle.workflow_id, 1)
    await DBOS.cancel_workflow(handle.workflow_id)
    resumed = await DBOS.resume_workflow(handle.workflow_id)  # the old run may be unwinding
    mg_gate.set()
    assert await asyncio.wait_for(resumed.get_result(), WITHIN) == "one-two-now"
    await asyncio.sleep(0.2)
    assert counts["one"] == 1
    assert counts["two"] == 1
    st = await status(handle.workflow_id)
    assert st.status == WorkflowStatusString.SUCCESS
    assert st.output == "one-two-now"


async def test_resume_workflow__successful_workflow_is_unchanged(dbos: DBOS) -> None:
    mg_gate.set()
    handle = await DBOS.start_workflow(mg_two_steps, "y")
    assert await handle == "one-two-y"
    before = await status(handle.workflow_id)
    await asyncio.sleep(0.02)  # a rewrite of the row would show in updated_at
    resumed = await DBOS.resume_workflow(handle.workflow_id)
    assert await asyncio.wait_for(resumed.get_result(), WITHIN) == "one-two-y"
    await asyncio.sleep(0.2)
    after = await status(handle.workflow_id)
    assert after == before
    assert after.status == WorkflowStatusString.SUCCESS
    assert counts["one"] == 1
    assert counts["two"] == 1


async def test_resume_workflow__max_recovery_attempts_exceeded_runs_again(
    dbos: DBOS, db_url: str
) -> None:
    with SetWorkflowID("mg-dead"):
        await DBOS.start_workflow(mg_two_steps_once, "z")
    await wait_for_steps("mg-dead", 1)
    await relaunch(db_url)
    st = await status("mg-dead")
    assert st.status == WorkflowStatusString.MAX_RECOVERY_ATTEMPTS_EXCEEDED
    assert st.recovery_attempts == 1
    with pytest.raises(DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded):
        await asyncio.wait_for((await DBOS.retrieve_workflow("mg-dead")).get_result(), WITHIN)

    mg_gate.set()
    handle = await DBOS.resume_workflow("mg-dead")
    assert await asyncio.wait_for(handle.get_result(), WITHIN) == "one-two-z"
    assert counts["one"] == 1
    assert counts["two"] == 1
    st = await status("mg-dead")
    assert st.status == WorkflowStatusString.SUCCESS
    assert st.recovery_attempts == 0


async def test_resume_workflow__timed_out_workflow_keeps_running_after_a_relaunch(
    dbos: DBOS, db_url: str
) -> None:
    with SetWorkflowID("mg-resume-timeout"), SetWorkflowTimeout(0.3):
        handle = await DBOS.start_workflow(mg_two_steps, "t")
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(handle.get_result(), WITHIN)
    assert counts["one"] == 1
    await DBOS.resume_workflow("mg-resume-timeout")
    await asyncio.sleep(0.1)
    assert (await status("mg-resume-timeout")).status == WorkflowStatusString.PENDING
    # The resumed run has no deadline: the expired one must not cancel it after a restart
    # recovers it either.
    await relaunch(db_url)
    await asyncio.sleep(0.2)
    assert (await status("mg-resume-timeout")).status == WorkflowStatusString.PENDING
    mg_gate.set()
    resumed = await DBOS.retrieve_workflow("mg-resume-timeout")
    assert await asyncio.wait_for(resumed.get_result(), WITHIN) == "one-two-t"
    assert counts["one"] == 1
    assert counts["two"] == 1
    assert (await status("mg-resume-timeout")).workflow_deadline_epoch_ms is None


async def test_resume_workflow__old_deadline_timer_does_not_cancel_the_resumed_run(
    dbos: DBOS,
) -> None:
    with SetWorkflowID("mg-resume-timer"), SetWorkflowTimeout(0.8):
        await DBOS.start_workflow(mg_two_steps, "r")
    first_deadline = (await status("mg-resume-timer")).workflow_deadline_epoch_ms
    assert first_deadline is not None
    await wait_for_steps("mg-resume-timer", 1)
    await DBOS.cancel_workflow("mg-resume-timer")
    resumed = await DBOS.resume_workflow("mg-resume-timer")
    # Well past the first run's deadline: the resumed run must still be going.
    await asyncio.sleep(max(0.0, first_deadline / 1000 + 0.5 - time.time()))
    assert (await status("mg-resume-timer")).status == WorkflowStatusString.PENDING
    mg_gate.set()
    assert await asyncio.wait_for(resumed.get_result(), WITHIN) == "one-two-r"
    assert (await status("mg-resume-timer")).status == WorkflowStatusString.SUCCESS


async def test_resume_workflow__unknown_id_raises(dbos: DBOS) -> None:
    with pytest.raises(DBOSNonExistentWorkflowError):
        await DBOS.resume_workflow("mg-no-such-workflow")


# -- fork ------------------------------------------------------------------------------


async def test_fork_workflow__reruns_exactly_the_steps_from_start_step(dbos: DBOS) -> None:
    source = await DBOS.start_workflow(mg_five, 10)
    result = await source
    assert result == [10, 20, 30, 40, 50]
    assert all(counts[f"s{i}"] == 1 for i in range(1, 6))
    source_status = await status(source.workflow_id)

    fork_ids = set()
    for start in (1, 3, 5, 6, 100):
        before = Counter(counts)
        fork = await DBOS.fork_workflow(source.workflow_id, start)
        assert fork.workflow_id != source.workflow_id
        fork_ids.add(fork.workflow_id)
        assert await asyncio.wait_for(fork.get_result(), WITHIN) == result
        # Past the last step (6, 100), every recorded output is reused: nothing reruns.
        ran = {i: counts[f"s{i}"] - before[f"s{i}"] for i in range(1, 6)}
        assert ran == {i: int(i >= start) for i in range(1, 6)}, start

        st = await fork.get_status()
        assert st.status == WorkflowStatusString.SUCCESS
        assert st.forked_from == source.workflow_id
        assert st.name == source_status.name
        assert st.input == source_status.input
        assert st.output == result
        steps = await DBOS.list_workflow_steps(fork.workflow_id)
        assert [s.function_id for s in steps] == [1, 2, 3, 4, 5]
        assert [s.function_name for s in steps] == ["mg_numbered"] * 5
        assert [s.output for s in steps] == result
    assert len(fork_ids) == 5
    # The source is untouched.
    assert await status(source.workflow_id) == source_status


async def test_fork_workflow__set_workflow_id_names_the_fork(dbos: DBOS) -> None:
    source = await DBOS.start_workflow(mg_five, 3)
    await source
    with SetWorkflowID("mg-fork-named"):
        fork = await DBOS.fork_workflow(source.workflow_id, 2)
    assert fork.workflow_id == "mg-fork-named"
    assert await asyncio.wait_for(fork.get_result(), WITHIN) == [3, 6, 9, 12, 15]
    st = await status("mg-fork-named")
    assert st.forked_from == source.workflow_id
    assert counts["s1"] == 1
    assert counts["s2"] == 2


async def test_fork_workflow__onto_an_existing_id_raises_conflict(dbos: DBOS) -> None:
    """A fork whose SetWorkflowID names another workflow changes nothing and says so,
    on both backends (not a driver's integrity error)."""
    source = await DBOS.start_workflow(mg_five, 2)
    await source
    other = await DBOS.start_workflow(mg_echo, 1)
    await other
    before = await status(other.workflow_id)
    with SetWorkflowID(other.workflow_id), pytest.raises(DBOSConflictingWorkflowError):
        await DBOS.fork_workflow(source.workflow_id, 2)
    assert await status(other.workflow_id) == before
    assert len(await DBOS.list_workflow_steps(other.workflow_id)) == 0


@pytest.mark.parametrize("start_step", [0, -3])
async def test_fork_workflow__start_step_out_of_range_raises(dbos: DBOS, start_step: int) -> None:
    source = await DBOS.start_workflow(mg_five, 1)
    await source
    with pytest.raises(ValueError, match="step") as info:
        await DBOS.fork_workflow(source.workflow_id, start_step)
    message = str(info.value)
    assert str(start_step) in message
    assert source.workflow_id in message
    assert [w.workflow_id for w in await DBOS.list_workflows()] == [source.workflow_id]


async def test_fork_workflow__unknown_id_raises(dbos: DBOS) -> None:
    with pytest.raises(DBOSNonExistentWorkflowError):
        await DBOS.fork_workflow("mg-no-such-workflow", 1)


# -- list_workflows --------------------------------------------------------------------


async def test_list_workflows__filters_by_ids_status_and_name(dbos: DBOS) -> None:
    echoes = [await DBOS.start_workflow(mg_echo, i) for i in range(3)]
    for h in echoes:
        await h
    pending = await DBOS.start_workflow(mg_two_steps, "p")
    await wait_for_steps(pending.workflow_id, 1)
    echo_ids = {h.workflow_id for h in echoes}
    everything = echo_ids | {pending.workflow_id}

    def ids(statuses: list[WorkflowStatus]) -> set[str]:
        return {s.workflow_id for s in statuses}

    assert ids(await DBOS.list_workflows()) == everything
    assert ids(await DBOS.list_workflows(status="SUCCESS")) == echo_ids
    assert ids(await DBOS.list_workflows(status=WorkflowStatusString.PENDING)) == {
        pending.workflow_id
    }
    assert ids(await DBOS.list_workflows(status=["SUCCESS", "PENDING"])) == everything
    assert await DBOS.list_workflows(status=["ERROR", "CANCELLED"]) == []
    assert ids(await DBOS.list_workflows(name="mg_echo")) == echo_ids
    assert ids(await DBOS.list_workflows(name="mg_two_steps")) == {pending.workflow_id}
    assert await DBOS.list_workflows(name="mg_nothing") == []
    two = [echoes[0].workflow_id, pending.workflow_id]
    assert ids(await DBOS.list_workflows(workflow_ids=two)) == set(two)
    assert ids(await DBOS.list_workflows(workflow_ids=two, status="SUCCESS")) == {two[0]}
    assert await DBOS.list_workflows(workflow_ids=["mg-missing"]) == []
    with pytest.raises(ValueError, match="RUNNING"):
        await DBOS.list_workflows(status="RUNNING")
    with pytest.raises(ValueError, match="RUNNING"):
        await DBOS.list_workflows(status=["SUCCESS", "RUNNING"])


async def test_list_workflows__start_and_end_time(dbos: DBOS) -> None:
    async def batch(tag: str) -> set[str]:
        made = set()
        for i in range(2):
            with SetWorkflowID(f"mg-time-{tag}-{i}"):
                await (await DBOS.start_workflow(mg_echo, i))
            made.add(f"mg-time-{tag}-{i}")
        return made

    first = await batch("a")
    await asyncio.sleep(0.05)
    t1 = dt.datetime.now(dt.UTC)
    await asyncio.sleep(0.05)
    middle = await batch("b")
    await asyncio.sleep(0.05)
    t2 = dt.datetime.now(dt.UTC)
    await asyncio.sleep(0.05)
    last = await batch("c")

    async def ids(**filters: Any) -> set[str]:
        return {s.workflow_id for s in await DBOS.list_workflows(**filters)}

    assert await ids(start_time=t1.isoformat(), end_time=t2.isoformat()) == middle
    assert await ids(start_time=t1, end_time=t2) == middle
    assert await ids(start_time=t1) == middle | last
    assert await ids(end_time=t2.isoformat()) == first | middle
    assert await ids(start_time=t2, end_time=t1) == set()
    for st in await DBOS.list_workflows(start_time=t1, end_time=t2):
        assert t1.timestamp() * 1000 <= st.created_at <= t2.timestamp() * 1000


async def test_list_workflows__by_parent_workflow_id(dbos: DBOS) -> None:
    other = await DBOS.start_workflow(mg_echo, 5)
    await other
    parent = await DBOS.start_workflow(mg_parent, 3)
    assert await parent == 0 + 2 + 4
    pid = parent.workflow_id
    children = await DBOS.list_workflows(parent_workflow_id=pid)
    assert sorted(c.workflow_id for c in children) == [f"{pid}-1", f"{pid}-2", f"{pid}-3"]
    assert all(c.parent_workflow_id == pid for c in children)
    assert all(c.name == "mg_echo" for c in children)
    assert (await status(pid)).parent_workflow_id is None
    assert await DBOS.list_workflows(parent_workflow_id=other.workflow_id) == []


async def test_list_workflows__limit_offset_pages_and_sort_desc(dbos: DBOS) -> None:
    made = []
    for i in range(8):
        with SetWorkflowID(f"mg-page-{i}"):
            await (await DBOS.start_workflow(mg_echo, i))
        made.append(f"mg-page-{i}")
        await asyncio.sleep(0.005)  # distinct creation times

    everything = [s.workflow_id for s in await DBOS.list_workflows()]
    assert everything == made
    pages = [
        [s.workflow_id for s in await DBOS.list_workflows(limit=3, offset=offset)]
        for offset in (0, 3, 6)
    ]
    assert [len(p) for p in pages] == [3, 3, 2]
    assert [wid for page in pages for wid in page] == made
    assert await DBOS.list_workflows(limit=3, offset=9) == []
    assert [s.workflow_id for s in await DBOS.list_workflows(limit=2)] == made[:2]
    newest_first = [s.workflow_id for s in await DBOS.list_workflows(sort_desc=True)]
    assert newest_first == made[::-1]
    top = await DBOS.list_workflows(sort_desc=True, limit=3, offset=1)
    assert [s.workflow_id for s in top] == made[::-1][1:4]


async def test_list_workflows__load_input_and_output_false(dbos: DBOS) -> None:
    handle = await DBOS.start_workflow(mg_echo, 21)
    assert await handle == 42
    ids = [handle.workflow_id]
    [full] = await DBOS.list_workflows(workflow_ids=ids)
    assert full.input == {"args": [21], "kwargs": {}}
    assert full.output == 42
    [no_input] = await DBOS.list_workflows(workflow_ids=ids, load_input=False)
    assert no_input.input is None
    assert no_input.output == 42
    [no_output] = await DBOS.list_workflows(workflow_ids=ids, load_output=False)
    assert no_output.output is None
    assert no_output.input == {"args": [21], "kwargs": {}}
    [neither] = await DBOS.list_workflows(workflow_ids=ids, load_input=False, load_output=False)
    assert (neither.input, neither.output) == (None, None)
    assert neither.status == WorkflowStatusString.SUCCESS


async def test_list_queued_workflows__empty_without_queues(dbos: DBOS) -> None:
    await (await DBOS.start_workflow(mg_echo, 1))
    pending = await DBOS.start_workflow(mg_two_steps, "q")
    await wait_for_steps(pending.workflow_id, 1)
    assert len(await DBOS.list_workflows()) == 2
    assert await DBOS.list_queued_workflows() == []


# -- timeouts --------------------------------------------------------------------------


async def test_set_workflow_timeout__cancels_the_workflow_at_its_deadline(dbos: DBOS) -> None:
    started = time.monotonic()
    with SetWorkflowTimeout(0.5):
        handle = await DBOS.start_workflow(mg_sleeper, 30)
    # Cancelled (well before its 30 s sleep could end), and not before its deadline.
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(handle.get_result(), WITHIN)
    assert time.monotonic() - started >= 0.5 - 0.01
    st = await status(handle.workflow_id)
    assert st.status == WorkflowStatusString.CANCELLED
    assert st.workflow_timeout_ms == 500
    # The deadline is taken when the workflow is started, just before its row is made.
    assert st.workflow_deadline_epoch_ms is not None
    assert st.created_at - 1000 <= st.workflow_deadline_epoch_ms - 500 <= st.created_at
    assert counts["sleeper_done"] == 0


async def test_set_workflow_timeout__child_inherits_the_deadline(dbos: DBOS) -> None:
    with SetWorkflowTimeout(0.5):
        parent = await DBOS.start_workflow(mg_timeout_parent)
    child_id = f"{parent.workflow_id}-1"
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(parent.get_result(), WITHIN)
    child = await DBOS.retrieve_workflow(child_id)
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for(child.get_result(), WITHIN)
    parent_st = await status(parent.workflow_id)
    child_st = await status(child_id)
    assert child_st.parent_workflow_id == parent.workflow_id
    assert parent_st.workflow_deadline_epoch_ms is not None
    assert child_st.workflow_deadline_epoch_ms == parent_st.workflow_deadline_epoch_ms
    assert parent_st.status == WorkflowStatusString.CANCELLED
    assert child_st.status == WorkflowStatusString.CANCELLED
    assert counts["sleeper_done"] == 0
    assert counts["parent_done"] == 0


async def test_set_workflow_timeout__enforced_after_recovery(dbos: DBOS, db_url: str) -> None:
    """The deadline is counted from the first start, not from the recovery: the
    relaunch comes 1.5 s into a 3 s timeout, so a timer restarted by the recovery would
    cancel at 3 s after the relaunch, and the stored deadline would change."""
    timeout = 3.0
    with SetWorkflowTimeout(timeout):
        handle = await DBOS.start_workflow(mg_sleeper, 30)
    wid = handle.workflow_id
    deadline = (await status(wid)).workflow_deadline_epoch_ms
    assert deadline is not None
    await asyncio.sleep(0.2)
    await DBOS.destroy()
    await asyncio.sleep(max(0.0, deadline / 1000 - timeout + 1.5 - time.time()))
    DBOS({"database_url": db_url, "application_version": "test"})
    await DBOS.launch()
    relaunched = time.time()
    assert (await status(wid)).status == WorkflowStatusString.PENDING
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        await asyncio.wait_for((await DBOS.retrieve_workflow(wid)).get_result(), WITHIN)
    ended = time.time()
    st = await status(wid)
    assert st.status == WorkflowStatusString.CANCELLED
    assert st.recovery_attempts == 1
    assert st.workflow_deadline_epoch_ms == deadline  # recovery kept the first deadline
    assert ended >= deadline / 1000 - 0.01  # not before it
    assert ended < relaunched + timeout, (relaunched, deadline, ended)  # not restarted
    assert counts["sleeper_done"] == 0


@pytest.mark.parametrize("seconds", [0, -1, -0.5])
def test_set_workflow_timeout__non_positive_raises(seconds: float) -> None:
    with pytest.raises(ValueError, match="SetWorkflowTimeout"):
        SetWorkflowTimeout(seconds)


# -- DBOSClient ------------------------------------------------------------------------


async def test_client__lists_and_reads_status(dbos: DBOS, db_url: str) -> None:
    done = await DBOS.start_workflow(mg_echo, 7)
    assert await done == 14
    pending = await DBOS.start_workflow(mg_two_steps, "c")
    await wait_for_steps(pending.workflow_id, 1)
    client = DBOSClient(db_url)
    try:
        listed = await client.list_workflows()
        assert sorted(s.workflow_id for s in listed) == sorted(
            [done.workflow_id, pending.workflow_id]
        )
        [ok] = await client.list_workflows(status="SUCCESS")
        assert ok.workflow_id == done.workflow_id
        assert ok.output == 14
        [by_name] = await client.list_workflows(name="mg_two_steps")
        assert by_name.workflow_id == pending.workflow_id
        st = await client.get_workflow_status(done.workflow_id)
        assert st is not None
        assert st.status == WorkflowStatusString.SUCCESS
        assert st.output == 14
        assert await client.get_workflow_status("mg-no-such-workflow") is None
        with pytest.raises(DBOSNonExistentWorkflowError):
            await client.cancel_workflow("mg-no-such-workflow")
        assert await client.list_queued_workflows() == []
    finally:
        await client.destroy()


async def test_client__cancel_stops_a_running_workflow(dbos: DBOS, db_url: str) -> None:
    handle = await DBOS.start_workflow(mg_blocked, "sleep")
    wid = await blocked(handle)
    client = DBOSClient(db_url)
    try:
        await client.cancel_workflow(wid)
        st = await client.get_workflow_status(wid)
        assert st is not None
        assert st.status == WorkflowStatusString.CANCELLED
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            await asyncio.wait_for(handle.get_result(), WITHIN)
        await wait_until(lambda: counts["unwound"] == 1, "the workflow body to be interrupted")
        await asyncio.sleep(0.2)
        assert counts["one"] == 1
        assert counts["two"] == 0
        with pytest.raises(DBOSAwaitedWorkflowCancelledError):
            await asyncio.wait_for((await client.retrieve_workflow(wid)).get_result(), WITHIN)
    finally:
        await client.destroy()


async def test_client__retrieved_handle_resolves_when_the_workflow_ends(
    dbos: DBOS, db_url: str
) -> None:
    handle = await DBOS.start_workflow(mg_two_steps, "h")
    await wait_for_steps(handle.workflow_id, 1)
    client = DBOSClient(db_url)
    try:
        remote = await client.retrieve_workflow(handle.workflow_id)
        waiter = asyncio.create_task(remote.get_result())
        await asyncio.sleep(0.3)
        assert not waiter.done()
        mg_gate.set()
        assert await asyncio.wait_for(waiter, WITHIN) == "one-two-h"
        with pytest.raises(DBOSNonExistentWorkflowError):
            await client.retrieve_workflow("mg-no-such-workflow")
    finally:
        await client.destroy()


# -- a client's resume and fork reach a running executor (Postgres: NOTIFY) -----------------


async def test_client_resume__running_executor_runs_it_at_once(fresh_pg: str) -> None:
    """A client runs no workflow code: on Postgres it tells the executor, whose running
    process claims the workflow and runs it on from its last completed step."""
    DBOS({"database_url": fresh_pg, "application_version": "test"})
    await DBOS.launch()
    client = DBOSClient(fresh_pg)
    try:
        with SetWorkflowID("mg-client-resume"):
            handle = await DBOS.start_workflow(mg_two_steps, "c")
        # Step one's row, not its body's count: the row commits after the workflow went
        # on, and a client's resume does not wait for the cancelled run here, so a row
        # still in flight is fenced off by the resume and step one would run again.
        await wait_for_steps("mg-client-resume", 1)
        await DBOS.cancel_workflow("mg-client-resume")
        mg_gate.set()
        resumed = await client.resume_workflow("mg-client-resume")
        assert await asyncio.wait_for(resumed.get_result(), WITHIN) == "one-two-c"
        assert (counts["one"], counts["two"]) == (1, 1)
        assert (await status(handle.workflow_id)).status == WorkflowStatusString.SUCCESS

        fork = await client.fork_workflow("mg-client-resume", 2)
        assert await asyncio.wait_for(fork.get_result(), WITHIN) == "one-two-c"
        assert (counts["one"], counts["two"]) == (1, 2)
        assert (await status(fork.workflow_id)).forked_from == "mg-client-resume"
    finally:
        await client.destroy()
        await DBOS.destroy()
