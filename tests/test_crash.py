"""Crash recovery with real processes: each scenario's first process dies by SIGKILL at a
chosen point; a new process launches, recovers, and reports the outcome."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

APP = Path(__file__).with_name("crash_app.py")
pytestmark = pytest.mark.crash


def run(
    scenario: str, role: str, db_url: str, workdir: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(APP), scenario, role, db_url, str(workdir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def outcome(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def log_lines(workdir: Path) -> list[str]:
    path = workdir / "log"
    return path.read_text().splitlines() if path.exists() else []


def sleep_marks(workdir: Path) -> list[float]:
    """When each run of the sleep scenario reached its sleep (its "sleeping T" lines)."""
    return [float(x.split()[1]) for x in log_lines(workdir) if x.startswith("sleeping")]


def killed(proc: subprocess.CompletedProcess[str]) -> bool:
    return proc.returncode == -signal.SIGKILL


def arm(workdir: Path, name: str) -> None:
    (workdir / f"armed-{name}").touch()


def test_crash__three_step_workflow_resumes_at_step_three(db_url: str, tmp_path: Path) -> None:
    arm(tmp_path, "step3")
    first = run("three_steps", "start", db_url, tmp_path)
    assert killed(first), first.stderr
    assert log_lines(tmp_path) == ["started", "step1", "step2", "step3"]

    second = run("three_steps", "recover", db_url, tmp_path)
    result = outcome(second)
    assert result["result"] == (1 + 1) * 10 + 5
    assert result["status"] == "SUCCESS"
    assert result["recovery_attempts"] == 1
    # Only step 3 ran again.
    assert log_lines(tmp_path) == ["started", "step1", "step2", "step3", "step3"]


def test_crash__step_whose_deferred_row_was_lost_runs_again_and_nothing_after_it(
    db_url: str, tmp_path: Path
) -> None:
    """A step's row is deferred: the workflow goes on with its output while the row
    commits, and waits for it before its next effect. Killed before that row commits,
    the recovered run runs the step again; the next step had not run before."""
    arm(tmp_path, "deferred")
    first = run("deferred", "start", db_url, tmp_path)
    assert killed(first), first.stderr
    assert log_lines(tmp_path) == ["started", "step1", "between 2"]

    result = outcome(run("deferred", "recover", db_url, tmp_path))
    assert result["result"] == 20
    assert result["status"] == "SUCCESS"
    assert result["recovery_attempts"] == 1
    assert log_lines(tmp_path) == [
        "started",
        "step1",
        "between 2",
        "step1",
        "between 2",
        "step2",
    ]


def test_crash__committed_transaction_is_never_run_again(db_url: str, tmp_path: Path) -> None:
    arm(tmp_path, "transaction")
    first = run("transaction", "start", db_url, tmp_path)
    assert killed(first), first.stderr
    assert log_lines(tmp_path) == ["started", "transaction"]

    second = run("transaction", "recover", db_url, tmp_path)
    result = outcome(second)
    assert result == {**result, "result": "inserted once", "status": "SUCCESS"}
    assert log_lines(tmp_path) == ["started", "transaction", "step1"]
    assert count_rows(db_url) == 1


def count_rows(db_url: str) -> int:
    if db_url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(db_url[len("sqlite:///") :]) as conn:
            return int(conn.execute("SELECT count(*) FROM crash_rows").fetchone()[0])
    import asyncio

    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(db_url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM crash_rows"))
        finally:
            await conn.close()

    return asyncio.run(count())


def test_crash__workflow_that_always_dies_is_dead_lettered(db_url: str, tmp_path: Path) -> None:
    first = run("max_recovery", "start", db_url, tmp_path)
    assert killed(first), first.stderr
    # max_recovery_attempts=2: two recoveries run it again (and die), the third gives up.
    for _ in range(2):
        assert killed(run("max_recovery", "recover", db_url, tmp_path))
    final = outcome(run("max_recovery", "recover", db_url, tmp_path))
    assert final["status"] == "MAX_RECOVERY_ATTEMPTS_EXCEEDED"
    assert final["error"] == "DBOSAwaitedWorkflowMaxRecoveryAttemptsExceeded"
    assert final["recovery_attempts"] == 3
    assert log_lines(tmp_path).count("always") == 3


def test_crash__interrupted_sleep_sleeps_only_the_remainder(db_url: str, tmp_path: Path) -> None:
    sleep = 4.0
    proc = subprocess.Popen(
        [sys.executable, str(APP), "sleep", "start", db_url, str(tmp_path)],
        env={**os.environ, "CRASH_SLEEP": str(sleep)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not any(line.startswith("sleeping") for line in log_lines(tmp_path)):
            assert time.monotonic() < deadline, "the workflow never started sleeping"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        time.sleep(1.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    [slept_from] = sleep_marks(tmp_path)

    result = outcome(run("sleep", "recover", db_url, tmp_path))
    assert result["status"] == "SUCCESS"
    woke_at = float(result["result"])
    # The recovered run logs "sleeping" again when it reaches the sleep (the step before
    # it replays): from then on it sleeps only what was left of the first sleep.
    sleeping = sleep_marks(tmp_path)
    assert len(sleeping) == 2, log_lines(tmp_path)
    resumed_at = sleeping[1]
    assert resumed_at >= slept_from + 1.5  # it was killed 1.5 s into the sleep
    # Not before the first sleep was due ...
    assert woke_at >= slept_from + sleep - 0.01
    # ... and not a full sleep again from where the recovery reached it. (However slow
    # the new process is to start, a recovery that slept `sleep` anew would wake at or
    # after resumed_at + sleep; waking late is only the event loop's lateness.)
    assert woke_at < resumed_at + sleep, (slept_from, resumed_at, woke_at)
    assert log_lines(tmp_path).count("step1") == 1


def wait_marks(workdir: Path) -> list[float]:
    """When each run of the recv / get_event scenarios reached its wait."""
    return [float(x.split()[1]) for x in log_lines(workdir) if x.startswith("waiting")]


def recorded_steps(db_url: str, workflow_id: str) -> list[tuple[int, str, Any]]:
    import asyncio

    from dbos_async import DBOSClient

    async def steps() -> list[tuple[int, str, Any]]:
        async with DBOSClient(db_url) as client:
            rows = await client.list_workflow_steps(workflow_id)
        return [(s.function_id, s.function_name, s.output) for s in rows]

    return asyncio.run(steps())


@pytest.mark.parametrize("kind", ["recv", "get_event"])
def test_crash__interrupted_wait_waits_only_the_remainder(
    db_url: str, tmp_path: Path, kind: str
) -> None:
    """A workflow killed while ``recv`` (or ``get_event``) waits out its timeout is
    recovered by a new process, which waits only until the deadline the first recorded."""
    timeout = 4.0
    proc = subprocess.Popen(
        [sys.executable, str(APP), kind, "start", db_url, str(tmp_path)],
        env={**os.environ, "CRASH_WAIT": str(timeout)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not wait_marks(tmp_path):
            assert time.monotonic() < deadline, "the workflow never started waiting"
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        time.sleep(1.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    [waited_from] = wait_marks(tmp_path)

    result = outcome(run(kind, "recover", db_url, tmp_path))
    assert result["status"] == "SUCCESS"
    assert result["recovery_attempts"] == 1
    got, woke_at = result["result"]
    assert got is None
    # The recovered run logs "waiting" again when it reaches the wait (step 1 replays).
    waits = wait_marks(tmp_path)
    assert len(waits) == 2, log_lines(tmp_path)
    resumed_at = waits[1]
    assert resumed_at >= waited_from + 1.5  # it was killed 1.5 s into the wait
    # Not before the first run's deadline ...
    assert woke_at >= waited_from + timeout - 0.01
    # ... and not the whole timeout again from where the recovery reached it.
    assert woke_at < resumed_at + timeout, (waited_from, resumed_at, woke_at)
    assert log_lines(tmp_path).count("step1") == 1
    # The deadline the first run recorded, at the step after the wait's own.
    name = "DBOS.recv" if kind == "recv" else "DBOS.getEvent"
    steps = recorded_steps(db_url, f"crash-{kind}")
    assert [(i, n) for i, n, _ in steps] == [(1, "crash_step_one"), (2, name), (3, "DBOS.sleep")]
    assert waited_from + timeout <= steps[2][2] <= woke_at


def test_crash__changed_step_fails_recovery_with_unexpected_step(
    db_url: str, tmp_path: Path
) -> None:
    arm(tmp_path, "step3")
    first = run("determinism", "start", db_url, tmp_path, {"CRASH_CODE_VERSION": "old"})
    assert killed(first), first.stderr
    result = outcome(run("determinism", "recover", db_url, tmp_path, {"CRASH_CODE_VERSION": "new"}))
    assert result["status"] == "ERROR"
    assert result["error"] == "DBOSUnexpectedStepError"
    assert "crash_new_first" in result["message"] and "crash_old_first" in result["message"]
    # Neither the new step 1 nor anything after it ran.
    assert log_lines(tmp_path) == ["started", "old_first", "step3"]
