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
    slept_from = float(next(x for x in log_lines(tmp_path) if x.startswith("sleeping")).split()[1])

    recovered_at = time.time()
    result = outcome(run("sleep", "recover", db_url, tmp_path))
    assert result["status"] == "SUCCESS"
    woke_at = float(result["result"])
    # It woke when the first sleep was due, not a full sleep after the recovery began.
    assert woke_at == pytest.approx(slept_from + sleep, abs=0.75)
    assert woke_at < recovered_at + sleep - 1.0
    assert log_lines(tmp_path).count("step1") == 1


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
