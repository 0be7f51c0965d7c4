"""The ``dbos-async schedule`` commands: list, pause, resume, trigger and delete the
schedules stored as data (``DBOS.create_schedule``), through a ``DBOSClient``."""

from __future__ import annotations

import argparse
from typing import Any

from .._errors import DBOSException
from .._schedules import WorkflowSchedule
from ..client import DBOSClient
from ._output import NONE, Result, jsonable, short, table

__all__ = [
    "delete_schedule",
    "list_schedules",
    "pause_schedule",
    "resume_schedule",
    "trigger_schedule",
]


def _row(s: WorkflowSchedule) -> list[str]:
    return [
        s["schedule_name"],
        s["status"],
        s["schedule"],
        s["cron_timezone"] or "UTC",
        s["workflow_name"],
        s["queue_name"] or NONE,
        s["last_fired_at"] or NONE,
        "yes" if s["automatic_backfill"] else "no",
        short(s["context"]),
    ]


async def list_schedules(client: DBOSClient, args: argparse.Namespace) -> Result:
    schedules = await client.list_schedules(
        status=args.status, workflow_name=args.workflow, schedule_name_prefix=args.prefix
    )
    headers = ["NAME", "STATUS", "CRON", "TIME ZONE", "WORKFLOW", "QUEUE", "LAST FIRED"]
    headers += ["BACKFILL", "CONTEXT"]
    rendered = table(headers, [_row(s) for s in schedules], "No schedules found.")
    return Result([jsonable(dict(s)) for s in schedules], rendered)


async def _existing(client: DBOSClient, name: str) -> WorkflowSchedule:
    found = await client.get_schedule(name)
    if found is None:
        raise DBOSException(f"schedule {name!r} does not exist")
    return found


async def pause_schedule(client: DBOSClient, args: argparse.Namespace) -> Result:
    await client.pause_schedule(args.schedule_name)
    after = await _existing(client, args.schedule_name)
    return Result(jsonable(dict(after)), f"Schedule {args.schedule_name} paused.")


async def resume_schedule(client: DBOSClient, args: argparse.Namespace) -> Result:
    await client.resume_schedule(args.schedule_name)
    after = await _existing(client, args.schedule_name)
    return Result(
        jsonable(dict(after)), f"Schedule {args.schedule_name} resumed: its next slots run."
    )


async def trigger_schedule(client: DBOSClient, args: argparse.Namespace) -> Result:
    handle = await client.trigger_schedule(args.schedule_name)
    data = {"schedule_name": args.schedule_name, "workflow_id": handle.workflow_id}
    return Result(
        data,
        f"Schedule {args.schedule_name} triggered: workflow {handle.workflow_id} enqueued.",
    )


async def delete_schedule(client: DBOSClient, args: argparse.Namespace) -> Result:
    await _existing(client, args.schedule_name)
    await client.delete_schedule(args.schedule_name)
    data = {"schedule_name": args.schedule_name, "deleted": True}
    return Result(data, f"Schedule {args.schedule_name} deleted; its runs so far are kept.")


def add_schedule_commands(
    commands: argparse._SubParsersAction[Any],
    common: argparse.ArgumentParser,
) -> None:
    """``schedule list|pause|resume|trigger|delete``."""
    schedule = commands.add_parser("schedule", help="operate schedules stored as data")
    sub = schedule.add_subparsers(dest="action", metavar="ACTION", required=True)
    list_ = sub.add_parser("list", parents=[common], help="list the stored schedules by name")
    list_.add_argument(
        "--status", type=str.upper, choices=["ACTIVE", "PAUSED"], help="only this status"
    )
    list_.add_argument("--workflow", metavar="NAME", help="only schedules of this workflow")
    list_.add_argument("--prefix", metavar="TEXT", help="only names starting with this")
    list_.set_defaults(handler=list_schedules, uses_client=True)
    for name, handler, text in (
        ("pause", pause_schedule, "stop starting a schedule's slots, in every process"),
        ("resume", resume_schedule, "start a paused schedule's slots again, from now on"),
        ("trigger", trigger_schedule, "run a schedule's workflow now, once"),
        ("delete", delete_schedule, "delete a schedule (its runs so far are kept)"),
    ):
        command = sub.add_parser(name, parents=[common], help=text)
        command.add_argument("schedule_name", metavar="NAME")
        command.set_defaults(handler=handler, uses_client=True)
