"""``dbos-async schedule list|pause|resume|trigger|delete`` against a database where this
process runs DBOS (``dbos`` fixture), on both backends; the CLI runs as a subprocess."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dbos_async import DBOS, WorkflowStatusString
from tests.test_cli import assert_error, cli

YEARLY = "0 0 1 1 *"


@DBOS.workflow(name="cli_sched_wf")
async def cli_sched_wf(scheduled_at: datetime, context: Any) -> str:
    return f"{context['who']} at {scheduled_at.isoformat()}"


async def test_cli_schedule__list_pause_resume_trigger_delete(dbos: DBOS, db_url: str) -> None:
    await DBOS.create_schedule(
        schedule_name="cli-nightly",
        workflow_fn=cli_sched_wf,
        schedule=YEARLY,
        context={"who": "cli"},
        cron_timezone="Europe/Berlin",
    )
    await DBOS.create_schedule(
        schedule_name="cli-other", workflow_fn=cli_sched_wf, schedule=YEARLY, context={"who": 2}
    )
    rows = (await cli("schedule", "list", "--json", url=db_url)).json()
    assert [r["schedule_name"] for r in rows] == ["cli-nightly", "cli-other"]
    assert rows[0]["context"] == {"who": "cli"} and rows[0]["cron_timezone"] == "Europe/Berlin"
    assert rows[0]["status"] == "ACTIVE" and rows[0]["workflow_name"] == "cli_sched_wf"
    table = await cli("schedule", "list", "--prefix", "cli-n", url=db_url)
    assert table.code == 0, table.err
    assert "cli-nightly" in table.out and "Europe/Berlin" in table.out
    assert "cli-other" not in table.out

    paused = (await cli("schedule", "pause", "cli-nightly", "--json", url=db_url)).json()
    assert paused["status"] == "PAUSED"
    info = await DBOS.get_schedule("cli-nightly")
    assert info is not None and info["status"] == "PAUSED"
    listed = (await cli("schedule", "list", "--status", "paused", "--json", url=db_url)).json()
    assert [r["schedule_name"] for r in listed] == ["cli-nightly"]
    resumed = await cli("schedule", "resume", "cli-nightly", url=db_url)
    assert resumed.code == 0 and "resumed" in resumed.out, resumed.err
    info = await DBOS.get_schedule("cli-nightly")
    assert info is not None and info["status"] == "ACTIVE"

    # trigger: the CLI enqueues the run, and this process (which has the workflow) runs it.
    triggered = (await cli("schedule", "trigger", "cli-nightly", "--json", url=db_url)).json()
    workflow_id = triggered["workflow_id"]
    assert workflow_id.startswith("sched-cli-nightly-trigger-")
    result = await (await DBOS.retrieve_workflow(workflow_id)).get_result()
    assert result.startswith("cli at ")
    st = await DBOS.get_workflow_status(workflow_id)
    assert st is not None and st.status == WorkflowStatusString.SUCCESS

    deleted = await cli("schedule", "delete", "cli-nightly", url=db_url)
    assert deleted.code == 0 and "deleted" in deleted.out, deleted.err
    assert await DBOS.get_schedule("cli-nightly") is None
    assert [s["schedule_name"] for s in await DBOS.list_schedules()] == ["cli-other"]


async def test_cli_schedule__errors(dbos: DBOS, db_url: str) -> None:
    for action in ("pause", "resume", "trigger", "delete"):
        run = await cli("schedule", action, "cli-missing", url=db_url)
        assert_error(run, 1, "'cli-missing' does not exist")
    run = await cli("schedule", "list", "--status", "running", url=db_url)
    assert run.code == 2 and "invalid choice" in run.err, run.err
    empty = await cli("schedule", "list", url=db_url)
    assert empty.code == 0 and "No schedules found." in empty.out
