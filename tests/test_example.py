"""The README's first command: the guestbook example runs on a database it creates."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parent.parent / "examples" / "guestbook.py"


def test_example__guestbook_runs_twice(db_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DBOS_DATABASE_URL"}
    if not db_url.startswith("sqlite"):
        env["DBOS_DATABASE_URL"] = db_url
    outputs = []
    for name in ("alice", "bob"):
        proc = subprocess.run(
            [sys.executable, str(EXAMPLE), name],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout)
    assert "Thank you for being awesome, alice!" in outputs[0]
    assert "greeting #1" in outputs[0] and "greeting #2" in outputs[1]
    assert "SUCCESS, steps: 1=sign_guestbook, 2=insert_greeting" in outputs[1]
    if db_url.startswith("sqlite"):
        # The embedded default: a file named after the app in the working directory.
        assert (tmp_path / "guestbook.sqlite").exists()


THUMBNAILS = Path(__file__).parent.parent / "examples" / "thumbnails.py"


def test_example__thumbnails_queue_holds_its_limit(db_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DBOS_DATABASE_URL"}
    if not db_url.startswith("sqlite"):
        env["DBOS_DATABASE_URL"] = db_url
    for _ in range(2):  # the second run finds the first one's finished workflows
        proc = subprocess.run(
            [sys.executable, str(THUMBNAILS)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert any(line.startswith("refused: ") for line in lines), proc.stdout
        for n in range(10):
            assert f"image-{n}.png@64px, image-{n}.png@256px" in lines, proc.stdout
        assert lines[-1] == "at most 3 rendering at once (the queue's limit is 3)", proc.stdout


SCHEDULES = Path(__file__).parent.parent / "examples" / "schedules.py"


def test_example__schedules_runs_twice(db_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DBOS_DATABASE_URL"}
    if not db_url.startswith("sqlite"):
        env["DBOS_DATABASE_URL"] = db_url
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, str(SCHEDULES), "1.5"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
        assert "Berlin: report for platform on " in out
        assert "paused: status PAUSED" in out
        assert "backfilled 5 slots: sched-team-report-" in out
        assert out.rstrip().endswith("schedules left: 0")
