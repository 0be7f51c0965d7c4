"""The argparse definition of ``dbos-async``: commands, their options and value checks.

Each command's parser sets ``handler`` (the coroutine function that runs it) and
``uses_client`` (whether it takes a ``DBOSClient`` or the database URLs).
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from .._management import to_epoch_ms
from .._status import WorkflowStatusString
from . import _commands
from ._dashboard import add_dashboard_command
from ._schedule_commands import add_schedule_commands

__all__ = ["build_parser"]

PROG = "dbos-async"
STATUSES = [s.value for s in WorkflowStatusString]


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one ``error:`` line (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _iso_time(text: str) -> str:
    try:
        to_epoch_ms(text, "time")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2024-05-01T12:00:00Z)"
        ) from None
    return text


def _status(text: str) -> str:
    value = text.upper()
    if value not in STATUSES:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(STATUSES)}")
    return value


def _global_options(defaults: bool) -> Parser:
    """The options every command takes. Subcommands suppress their defaults so that an
    option given before the command is not overwritten."""
    parent = Parser(add_help=False)
    suppress = argparse.SUPPRESS
    parent.add_argument(
        "--database-url",
        metavar="URL",
        default=None if defaults else suppress,
        help="postgresql://user@host:5432/db or sqlite:///path.sqlite "
        "(default: $DBOS_DATABASE_URL)",
    )
    parent.add_argument(
        "--system-database-url",
        metavar="URL",
        default=None if defaults else suppress,
        help="where the workflow tables live (default: the database URL)",
    )
    parent.add_argument(
        "--serializer",
        metavar="SPEC",
        default=None if defaults else suppress,
        help="how the application stores values: json (the default), pickle, or "
        "module:name, a serializer object or a function returning one, such as the "
        "application's EncryptedSerializer (default: $DBOS_ASYNC_SERIALIZER)",
    )
    parent.add_argument(
        "--json",
        action="store_true",
        default=False if defaults else suppress,
        help="print machine-readable JSON on stdout",
    )
    return parent


def _list_filters(parser: argparse.ArgumentParser, queue_help: str) -> None:
    parser.add_argument(
        "--status",
        action="append",
        type=_status,
        metavar="STATUS",
        help=f"only this status (repeatable): {', '.join(STATUSES)}",
    )
    parser.add_argument("--name", help="only workflows of this registered name")
    parser.add_argument("--start-time", type=_iso_time, help="created at or after (ISO 8601)")
    parser.add_argument("--end-time", type=_iso_time, help="created at or before (ISO 8601)")
    parser.add_argument("--queue", metavar="NAME", help=queue_help)
    parser.add_argument("--limit", type=_non_negative, default=50, help="at most (default 50)")
    parser.add_argument("--offset", type=_non_negative, help="skip this many first")
    parser.add_argument("--sort-desc", action="store_true", help="newest first")
    parser.add_argument("--load-input", action="store_true", help="show the inputs")


def _add_workflow_commands(commands: argparse._SubParsersAction[Parser], common: Parser) -> None:
    workflow = commands.add_parser("workflow", help="inspect and operate workflows")
    sub = workflow.add_subparsers(dest="action", metavar="ACTION", required=True)

    list_ = sub.add_parser("list", parents=[common], help="list workflows, oldest first")
    _list_filters(list_, "only workflows of this queue")
    list_.add_argument("--parent", metavar="ID", help="only children of this workflow")
    list_.add_argument("--load-output", action="store_true", help="show outputs and errors")
    list_.set_defaults(handler=_commands.list_workflows, uses_client=True)

    for name, handler, text in (
        ("get", _commands.get_workflow, "show one workflow's status, input and output"),
        ("steps", _commands.list_steps, "list one workflow's recorded steps"),
        ("cancel", _commands.cancel_workflow, "cancel a PENDING or ENQUEUED workflow"),
        ("resume", _commands.resume_workflow, "resume a CANCELLED or dead-lettered workflow"),
    ):
        command = sub.add_parser(name, parents=[common], help=text)
        command.add_argument("workflow_id", metavar="ID")
        command.set_defaults(handler=handler, uses_client=True)

    delete = sub.add_parser(
        "delete", parents=[common], help="delete a workflow and everything stored for it"
    )
    delete.add_argument("workflow_id", metavar="ID")
    delete.add_argument(
        "--delete-children",
        action="store_true",
        help="also delete its child workflows, recursively",
    )
    delete.set_defaults(handler=_commands.delete_workflow, uses_client=True)

    fork = sub.add_parser("fork", parents=[common], help="rerun a workflow from a step")
    fork.add_argument("workflow_id", metavar="ID")
    fork.add_argument(
        "--step", type=int, default=1, metavar="N", help="first step to run again (default 1)"
    )
    fork.add_argument("--application-version", metavar="V", help="the fork's version")
    fork.set_defaults(handler=_commands.fork_workflow, uses_client=True)


def _add_queue_commands(commands: argparse._SubParsersAction[Parser], common: Parser) -> None:
    queue = commands.add_parser("queue", help="inspect queued workflows")
    sub = queue.add_subparsers(dest="action", metavar="ACTION", required=True)
    list_ = sub.add_parser(
        "list", parents=[common], help="list ENQUEUED and PENDING workflows of queues"
    )
    _list_filters(list_, "only this queue")
    list_.set_defaults(handler=_commands.list_queued, uses_client=True)


def _add_executor_commands(commands: argparse._SubParsersAction[Parser], common: Parser) -> None:
    executor = commands.add_parser("executor", help="inspect the processes of the fleet")
    sub = executor.add_subparsers(dest="action", metavar="ACTION", required=True)
    list_ = sub.add_parser(
        "list", parents=[common], help="list the processes that hold or held a lease"
    )
    list_.set_defaults(handler=_commands.list_executors, uses_client=True)


def build_parser() -> Parser:
    """The ``dbos-async`` parser."""
    parser = Parser(
        prog=PROG,
        description="Operate the durable workflows of a dbos_async database.",
        parents=[_global_options(defaults=True)],
    )
    common = _global_options(defaults=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_workflow_commands(commands, common)
    _add_queue_commands(commands, common)
    _add_executor_commands(commands, common)
    add_schedule_commands(commands, common)
    migrate = commands.add_parser(
        "migrate", parents=[common], help="create or upgrade the database schema"
    )
    migrate.set_defaults(handler=_commands.migrate, uses_client=False)
    add_dashboard_command(commands, common)
    return parser
