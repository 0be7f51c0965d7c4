"""Schedules stored as data: create one at run time, on a time zone's clock, then pause,
trigger, backfill and delete it.

    python examples/schedules.py [SECONDS]

A report workflow runs every second (a real one would be ``0 9 * * MON-FRI``) on the
Europe/Berlin clock for SECONDS seconds (default 3), with the context the schedule was
given; then the schedule is paused, triggered once by hand, backfilled over a past
minute's first five seconds, and deleted. Every run of a slot has a workflow ID derived
from the schedule's name and the slot, so however many processes run this file on one
database, each slot runs once. Runs on SQLite (``schedules.sqlite`` in the working
directory), or on Postgres when ``DBOS_DATABASE_URL`` is set.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from dbos_async import DBOS, run


@DBOS.step()
async def build_report(team: str, day: str) -> str:
    return f"report for {team} on {day}"


@DBOS.workflow()
async def daily_report(scheduled_at: datetime, context: Any) -> str:
    """A scheduled workflow takes the slot (on the schedule's clock) and its context."""
    report = await build_report(context["team"], scheduled_at.date().isoformat())
    print(f"  {scheduled_at:%H:%M:%S%z} Berlin: {report}")
    return report


async def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    async with DBOS({"name": "schedules"}):
        # (A schedule outlives the process: a rerun finds it, so start afresh.)
        await DBOS.delete_schedule("team-report")
        await DBOS.create_schedule(
            schedule_name="team-report",
            workflow_fn=daily_report,
            schedule="* * * * * *",  # every second; 6 fields, seconds first
            context={"team": "platform"},
            cron_timezone="Europe/Berlin",
        )
        print("running every second:")
        await asyncio.sleep(seconds)

        await DBOS.pause_schedule("team-report")
        info = await DBOS.get_schedule("team-report")
        assert info is not None
        print(f"paused: status {info['status']}, last slot {info['last_fired_at']}")

        print("triggered by hand:")
        handle = await DBOS.trigger_schedule("team-report")
        await handle.get_result()

        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
        print(f"backfilled from {start:%H:%M:%S} UTC:")
        handles = await DBOS.backfill_schedule("team-report", start, start + timedelta(seconds=5))
        for backfilled in handles:
            await backfilled.get_result()
        print(f"backfilled {len(handles)} slots: {handles[0].workflow_id} ...")

        await DBOS.delete_schedule("team-report")
        print(f"schedules left: {len(await DBOS.list_schedules())}")


if __name__ == "__main__":
    run(main())
