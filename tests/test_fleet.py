"""Fleets: several real processes of one app on one database. Ownership belongs to a
process, not to an executor ID; a dead or paused process's workflows are taken over by a
live one; a process that lost a workflow records nothing more for it; ``destroy`` hands
over at once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from dbos_async import DBOSClient
from dbos_async._failpoints import ENV as FAILPOINT_ENV
from dbos_async._failpoints import EXIT_STATUS, parse

APP = Path(__file__).with_name("fleet_app.py")
ROOT = APP.parent.parent
STEPS = 8
pytestmark = pytest.mark.crash


class Fleet:
    """The processes of one test; all are killed at the end, paused ones first resumed."""

    def __init__(self, db_url: str, workdir: Path) -> None:
        self.db_url = db_url
        self.workdir = workdir
        self.procs: list[subprocess.Popen[str]] = []
        self.files: list[IO[str]] = []

    def spawn(
        self, role: str, executor: str, lease: float, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        err = open(self.workdir / f"{executor}-{len(self.procs)}.err", "w")  # noqa: SIM115
        self.files.append(err)
        proc = subprocess.Popen(
            [sys.executable, str(APP), role, self.db_url, str(self.workdir), executor, str(lease)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), **(env or {})},
        )
        self.procs.append(proc)
        return proc

    def wait_line(self, proc: subprocess.Popen[str], line: str, timeout: float = 30) -> None:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = proc.stdout.readline()
            if got.strip() == line:
                return
            if not got and proc.poll() is not None:
                break
        raise AssertionError(f"no {line!r} from the process; stderr: {self.stderr()}")

    def stderr(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.workdir.glob("*.err")))

    def log(self) -> list[list[str]]:
        path = self.workdir / "log"
        return [line.split() for line in path.read_text().splitlines()] if path.exists() else []

    def wait_log(self, predicate: object, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.log()):  # type: ignore[operator]
                return
            time.sleep(0.05)
        raise AssertionError(f"log never matched: {self.log()}\n{self.stderr()}")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        for file in self.files:
            file.close()


@pytest.fixture
def fleet(db_url: str, tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(db_url, tmp_path)
    try:
        yield f
    finally:
        f.close()


async def wait_status(db_url: str, workflow_id: str, status: str, within: float = 40) -> None:
    client = DBOSClient(db_url)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = await client.get_workflow_status(workflow_id)
            if found is not None and found.status == status:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{workflow_id} is {found and found.status}, not {status}")
    finally:
        await client.destroy()


async def recorded_pids(db_url: str, workflow_id: str) -> list[int]:
    client = DBOSClient(db_url)
    try:
        return [int(s.output) for s in await client.list_workflow_steps(workflow_id)]
    finally:
        await client.destroy()


def steps_of(log: list[list[str]], workflow_id: str) -> list[tuple[str, int]]:
    """(PID, step) of every step run of a workflow, in order."""
    return [(e[1], int(e[4])) for e in log if e[2] == "step" and e[3] == workflow_id]


async def test_fleet__replicas_with_one_executor_id_never_run_a_workflow_twice(
    fleet: Fleet, db_url: str
) -> None:
    first = fleet.spawn("start", "local", 10.0)
    fleet.wait_line(first, "ready")
    fleet.wait_log(lambda log: len(steps_of(log, "fleet-wf")) >= 1)
    # A second replica with the default executor ID launches while the first runs it.
    second = fleet.spawn("worker", "local", 10.0)
    fleet.wait_line(second, "ready")
    await wait_status(db_url, "fleet-wf", "SUCCESS")
    runs = steps_of(fleet.log(), "fleet-wf")
    assert [step for _, step in runs] == list(range(STEPS)), runs
    assert {pid for pid, _ in runs} == {str(first.pid)}


async def test_fleet__a_killed_process_s_workflows_and_queue_slots_are_taken_over(
    fleet: Fleet, db_url: str
) -> None:
    doomed = fleet.spawn("enqueue", "exec-a", 1.0)
    fleet.wait_line(doomed, "ready")
    fleet.wait_log(lambda log: len({e[3] for e in log}) >= 2)  # both queue slots taken
    survivor = fleet.spawn("worker", "exec-b", 1.0)
    fleet.wait_line(survivor, "ready")
    doomed.kill()  # never restarted
    doomed.wait()
    killed_at = time.monotonic()
    for i in range(4):
        await wait_status(db_url, f"fleet-q-{i}", "SUCCESS")
    assert time.monotonic() - killed_at < 30
    for i in range(4):
        pids = await recorded_pids(db_url, f"fleet-q-{i}")
        assert len(pids) == STEPS
        assert pids[-1] == survivor.pid  # finished by the survivor


async def test_fleet__a_paused_process_records_nothing_after_a_takeover(
    fleet: Fleet, db_url: str
) -> None:
    paused = fleet.spawn("start", "exec-a", 1.0)
    fleet.wait_line(paused, "ready")
    fleet.wait_log(lambda log: len(steps_of(log, "fleet-wf")) >= 2)
    live = fleet.spawn("worker", "exec-b", 1.0)
    fleet.wait_line(live, "ready")
    os.kill(paused.pid, signal.SIGSTOP)  # longer than its lease: taken over
    await wait_status(db_url, "fleet-wf", "SUCCESS")
    before = await recorded_pids(db_url, "fleet-wf")
    assert before[-1] == live.pid
    os.kill(paused.pid, signal.SIGCONT)
    # The paused process wakes in the middle of a step: it must record nothing more.
    fleet.wait_log(lambda _: "taken over" in fleet.stderr(), timeout=20)
    await asyncio.sleep(1.0)
    assert await recorded_pids(db_url, "fleet-wf") == before
    taken = [step for pid, step in steps_of(fleet.log(), "fleet-wf") if pid == str(live.pid)]
    # Each step is recorded once, and the live process ran only what was not recorded.
    assert len(before) == STEPS
    assert taken == list(range(taken[0], STEPS))
    assert paused.poll() is None  # it goes on, without the workflow


async def test_fleet__destroy_hands_over_without_waiting_for_the_lease(
    fleet: Fleet, db_url: str
) -> None:
    leaving = fleet.spawn("handover", "exec-a", 30.0)
    staying = fleet.spawn("worker", "exec-b", 30.0)
    fleet.wait_line(staying, "ready")
    fleet.wait_line(leaving, "ready")
    fleet.wait_line(leaving, "destroyed")
    handed_at = time.monotonic()
    await wait_status(db_url, "fleet-wf", "SUCCESS", within=25)
    # Far sooner than the 30 s lease (the steps themselves take about 3 s).
    assert time.monotonic() - handed_at < 15
    assert (await recorded_pids(db_url, "fleet-wf"))[-1] == staying.pid
    assert leaving.poll() is None  # alive: the takeover did not wait for its PID to go


async def test_fleet__a_failpoint_exits_and_the_workflow_goes_on_elsewhere(
    fleet: Fleet, db_url: str
) -> None:
    survivor = fleet.spawn("worker", "exec-b", 10.0)
    fleet.wait_line(survivor, "ready")
    failing = fleet.spawn("start", "exec-a", 10.0, env={FAILPOINT_ENV: "after_step_body"})
    assert failing.wait(timeout=30) == EXIT_STATUS
    assert "failpoint after_step_body" in fleet.stderr()
    # Its step 0 ran but was never recorded: the survivor (same machine, the PID gone)
    # takes the workflow over at once and runs it from step 0.
    await wait_status(db_url, "fleet-wf", "SUCCESS", within=30)
    assert await recorded_pids(db_url, "fleet-wf") == [survivor.pid] * STEPS


def test_failpoints__parse() -> None:
    assert parse("") == {}
    assert parse("after_flush, before_flush@0.25") == {"after_flush": 1.0, "before_flush": 0.25}
    with pytest.raises(ValueError, match="unknown failpoint 'nowhere'"):
        parse("nowhere")
    with pytest.raises(ValueError, match="probability"):
        parse("after_flush@2")
    with pytest.raises(ValueError, match="probability"):
        parse("after_flush@x")
