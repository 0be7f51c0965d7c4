"""A short chaos run on each backend (tests/chaos/harness.py): three bank workers under
SIGKILL, SIGSTOP past the lease, SIGTERM hand-backs and failpoints (and on Postgres,
cut connections and one server restart) must finish every transfer, with no transaction
applied twice and no money lost. ``make chaos`` runs the same harness ten minutes per
backend.

The harness runs as a child process (its own session; SIGTERM makes it clean up its
workers, its database and its directory). ``CHAOS_SEED`` fixes the seed; otherwise it is
random and printed. The Postgres run restarts the server only where
tests/test_pg_restart.py may (the local pg_ctlcluster cluster on 127.0.0.1:5432); under
``CI=true`` a local server without that cluster fails the test, as there.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from ..conftest import IN_CI, PG_SERVER
from .harness import LOCAL_HOSTS, LOCAL_PORT, restartable_cluster

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.crash

#: Seconds of faults per backend, then at most DRAIN seconds for the survivors to finish.
SECONDS = 20
DRAIN = 30
#: The harness's own bound: launch, chaos, drain, checks and cleanup.
HARNESS_TIMEOUT = SECONDS + DRAIN + 60


def run_harness(backend: str, *extra: str) -> tuple[dict[str, Any], str, str]:
    """Run the harness; returns its CHAOS_RESULT, its summary line and its whole output."""
    seed = os.environ.get("CHAOS_SEED") or str(random.randrange(1, 10**6))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "tests.chaos.harness", "--backend", backend]
    cmd += ["--seconds", str(SECONDS), "--drain", str(DRAIN), "--seed", seed, *extra]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=HARNESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # it kills its workers and cleans up
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        pytest.fail(f"the chaos harness ran past {HARNESS_TIMEOUT}s (seed {seed}):\n{out}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    results = [line for line in out.splitlines() if line.startswith("CHAOS_RESULT ")]
    summaries = [line for line in out.splitlines() if line.startswith("chaos ")]
    if not results or not summaries:
        pytest.fail(f"the chaos harness gave no result (exit {proc.returncode}):\n{out}")
    result: dict[str, Any] = json.loads(results[-1].removeprefix("CHAOS_RESULT "))
    assert (proc.returncode == 0) == result["ok"], out
    return result, summaries[-1], out


def check(
    result: dict[str, Any], summary: str, out: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with capsys.disabled():
        print(f"\n{summary}")
    assert result["total"] > 0, out
    assert result["lost"] == 0, f"workflows lost: {summary}\n\n{out}"
    assert result["duplicated_tx"] == 0, f"transactions applied twice: {summary}\n\n{out}"
    assert result["ok"], f"an invariant failed: {summary}\n\n{out}"


@pytest.mark.timeout(HARNESS_TIMEOUT + 90)
def test_chaos__sqlite(capsys: pytest.CaptureFixture[str]) -> None:
    check(*run_harness("sqlite"), capsys)


def pg_restarts() -> str:
    """How many times the Postgres run may restart the server: once where
    tests/test_pg_restart.py may, never elsewhere (failing under CI where it fails)."""
    parts = urlsplit(PG_SERVER)
    if parts.hostname not in LOCAL_HOSTS or (parts.port or LOCAL_PORT) != LOCAL_PORT:
        return "0"
    if restartable_cluster() is None:
        if IN_CI:
            pytest.fail("pg_ctlcluster and a 'main' cluster on port 5432 are needed under CI")
        return "0"
    return "1"


@pytest.mark.postgres
@pytest.mark.serial  # (it restarts the server: make test runs it alone)
@pytest.mark.timeout(HARNESS_TIMEOUT + 90)
def test_chaos__postgres(postgres_template: str, capsys: pytest.CaptureFixture[str]) -> None:
    # postgres_template: skips when Postgres is down, fails instead under CI=true.
    check(*run_harness("postgres", "--pg-restarts", pg_restarts()), capsys)
