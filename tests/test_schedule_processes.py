"""Schedules stored as data across real processes (API.md section 6): two processes run
tests/schedule_app.py on one database (a SQLite file or a Postgres database); the test
manages the schedule through ``DBOSClient`` and reads what ran, how often and where, from
the processes' event logs and the status table."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pytest

from dbos_async import DBOSClient, WorkflowStatusString

APP = Path(__file__).with_name("schedule_app.py")
READY_TIMEOUT = 20.0
SECOND = timedelta(seconds=1)


class Processes:
    """The schedule_app.py processes of one test."""

    def __init__(self, db_url: str, workdir: Path) -> None:
        self.db_url = db_url
        self.workdir = workdir
        self.procs: dict[str, tuple[subprocess.Popen[bytes], IO[bytes]]] = {}

    def start(self, *names: str) -> None:
        for name in names:
            (self.workdir / f"ready-{name}").unlink(missing_ok=True)
            err = open(self.workdir / f"stderr-{name}.txt", "ab")  # noqa: SIM115
            cmd = [sys.executable, str(APP), self.db_url, str(self.workdir), name]
            self.procs[name] = (subprocess.Popen(cmd, stdout=err, stderr=err), err)
        deadline = time.monotonic() + READY_TIMEOUT
        for name in names:
            proc, _ = self.procs[name]
            while not (self.workdir / f"ready-{name}").exists():
                assert proc.poll() is None, f"{name} exited:\n{self.stderr()}"
                assert time.monotonic() < deadline, f"{name} never got ready:\n{self.stderr()}"
                time.sleep(0.01)

    def stop(self, *names: str) -> None:
        """SIGTERM: each process destroys DBOS and exits 0."""
        for name in names:
            self.procs[name][0].send_signal(signal.SIGTERM)
        for name in names:
            proc, err = self.procs.pop(name)
            status = proc.wait(timeout=20)
            err.close()
            assert status == 0, self.stderr()

    def close(self) -> None:
        for proc, err in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=15)
            err.close()

    def stderr(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.workdir.glob("stderr-*.txt"))
        )

    def events(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.workdir.glob("events-*.jsonl")):
            out += [json.loads(line) for line in path.read_text().splitlines()]
        return out

    def slots(self, schedule_name: str) -> list[datetime]:
        """The slots (UTC) of the schedule's runs, one per run (not in time order)."""
        prefix = f"sched-{schedule_name}-"
        return [
            datetime.fromisoformat(e["slot"]).astimezone(UTC)
            for e in self.events()
            if e["wf"].startswith(prefix) and "-trigger-" not in e["wf"]
        ]


@pytest.fixture
def processes(db_url: str, tmp_path: Path) -> Iterator[Processes]:
    group = Processes(db_url, tmp_path)
    try:
        yield group
    finally:
        group.close()


async def wait_until(predicate: Callable[[], bool], what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def ends_in_success(client: DBOSClient, workflow_id: str, within: float = 20.0) -> None:
    """The workflow exists and ends SUCCESS. A slot's workflow notes its run in its body,
    before its outcome commits, so a slot seen may still be PENDING for a moment."""
    deadline = time.monotonic() + within
    while True:
        st = await client.get_workflow_status(workflow_id)
        assert st is not None, workflow_id
        if st.status != WorkflowStatusString.PENDING:
            break
        assert time.monotonic() < deadline, f"{workflow_id} still PENDING"
        await asyncio.sleep(0.05)
    assert st.status == WorkflowStatusString.SUCCESS, st


def once_each_consecutive(seen: list[datetime]) -> None:
    counts = Counter(seen)
    assert [s for s, n in counts.items() if n > 1] == [], "a slot ran twice"
    ordered = sorted(counts)
    assert ordered == [ordered[0] + k * SECOND for k in range(len(ordered))], ordered


async def test_schedule_processes__each_slot_once_pause_trigger_backfill_resume_delete(
    processes: Processes, db_url: str
) -> None:
    processes.start("p1", "p2")
    name = "shared"
    async with DBOSClient(db_url) as client:
        await client.create_schedule(
            schedule_name=name,
            workflow_name="sa_tick",
            schedule="* * * * * *",
            context={"k": [1, 2]},
            cron_timezone="Europe/Berlin",
        )
        await wait_until(lambda: len(processes.slots(name)) >= 3, "three slots")
        seen = processes.slots(name)
        once_each_consecutive(seen)
        assert {json.dumps(e["context"]) for e in processes.events()} == {'{"k": [1, 2]}'}
        # Each slot is one SUCCESS workflow under its derived ID.
        for slot in seen:
            await ends_in_success(client, f"sched-{name}-{slot.isoformat()}")

        await client.pause_schedule(name)
        paused_at = datetime.now(UTC)
        # Each process reads the row before its next slot: no slot after the pause starts.
        await asyncio.sleep(1.5)
        assert max(processes.slots(name)) <= paused_at, "a paused schedule started a slot"
        seen = processes.slots(name)

        handle = await client.trigger_schedule(name)
        assert datetime.fromisoformat(await handle.get_result()) <= datetime.now(UTC)
        triggered = [e for e in processes.events() if e["wf"] == handle.workflow_id]
        assert len(triggered) == 1

        # backfill: the slots of the range that have not run, each once; seen[0] ran.
        first = min(seen)
        filled = await client.backfill_schedule(name, first - 2 * SECOND, first + SECOND)
        assert [h.workflow_id for h in filled] == [
            f"sched-{name}-{(first + k * SECOND).isoformat()}" for k in (-2, -1, 0)
        ]
        for h in filled:
            await h.get_result()
        counts = Counter(processes.slots(name))
        assert [counts[first + k * SECOND] for k in (-2, -1, 0)] == [1, 1, 1]

        resumed_at = datetime.now(UTC)
        await client.resume_schedule(name)
        await wait_until(
            lambda: len([s for s in processes.slots(name) if s > paused_at]) >= 3,
            "slots after the resume",
        )
        after = [s for s in processes.slots(name) if s > paused_at]
        assert min(after) > resumed_at, "a slot of the pause ran"
        once_each_consecutive(after)

        await client.delete_schedule(name)
        deleted_at = datetime.now(UTC)
        await asyncio.sleep(1.5)
        assert max(processes.slots(name)) <= deleted_at, "a deleted schedule started a slot"
        assert [s for s, n in Counter(processes.slots(name)).items() if n > 1] == []
        assert await client.list_schedules() == []


async def test_schedule_processes__automatic_backfill_runs_exactly_the_missed_slots(
    processes: Processes, db_url: str
) -> None:
    processes.start("p1", "p2")
    name = "catch-up"
    async with DBOSClient(db_url) as client:
        await client.create_schedule(
            schedule_name=name,
            workflow_name="sa_tick",
            schedule="* * * * * *",
            automatic_backfill=True,
        )
        await wait_until(lambda: len(processes.slots(name)) >= 2, "first slots")
        processes.stop("p1", "p2")
        stopped = max(processes.slots(name))
        await asyncio.sleep(2.5)
        restarted = datetime.now(UTC)
        processes.start("p1", "p2")
        await wait_until(
            lambda: any(s > restarted for s in processes.slots(name)), "a slot after the restart"
        )
        seen = processes.slots(name)
        missed = [s for s in seen if stopped < s < restarted]
        assert len(missed) >= 2, (stopped, restarted, seen)
        once_each_consecutive(seen)  # every slot of the gap ran, and once
        info = await client.get_schedule(name)
        assert info is not None and info["last_fired_at"] is not None
        assert datetime.fromisoformat(info["last_fired_at"]) >= max(missed)
