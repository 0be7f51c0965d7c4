"""``dbos-async dashboard``: serve the dashboard (``dbos_async.dashboard``) with uvicorn
on a ``DBOSClient``, until interrupted (Ctrl-C: uvicorn finishes the requests under way,
then the CLI exits as for any interruption, status 130)."""

from __future__ import annotations

import argparse
import socket
from typing import Any

from ..client import DBOSClient
from ._output import Result

__all__ = ["add_dashboard_command", "serve_dashboard"]

EXTRA_HINT = "the dashboard needs the 'dashboard' extra: pip install 'dbos_async[dashboard]'"


async def serve_dashboard(client: DBOSClient, args: argparse.Namespace) -> Result:
    """Serve until stopped; print the URL (with the port bound, if ``--port 0``)."""
    try:
        import uvicorn

        from ..dashboard import dashboard_app
    except ImportError as exc:
        raise ValueError(f"{EXTRA_HINT} ({exc})") from None
    app = dashboard_app(
        client,
        token=args.token,
        show_values=args.show_values,
        refresh_seconds=args.refresh,
    )
    await client.list_executors()  # fail now, with the CLI's message, if unreachable
    sock = _listen(args.host, args.port)
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    port = int(sock.getsockname()[1])
    mode = "cancel, resume and fork need the token" if app.state.can_act else "read-only"
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"Dashboard on http://{shown}:{port}/ ({mode}); Ctrl-C stops it.", flush=True)
    try:
        await uvicorn.Server(config).serve(sockets=[sock])
    finally:
        sock.close()
    return Result({"stopped": True}, "Dashboard stopped.")


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (our own bind: a clear error if it is taken, and
    the real port when ``port`` is 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ValueError(f"the dashboard cannot listen on {host}:{port}: {exc}") from None
    return sock


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535; 0: any free one)")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0.5:
        raise argparse.ArgumentTypeError(f"{text!r} is under 0.5 s")
    return value


def add_dashboard_command(
    commands: argparse._SubParsersAction[Any], common: argparse.ArgumentParser
) -> None:
    """The ``dashboard`` command and its options."""
    dashboard = commands.add_parser(
        "dashboard",
        parents=[common],
        help="serve the web dashboard (needs the 'dashboard' extra)",
    )
    dashboard.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    dashboard.add_argument(
        "--port", type=_port, default=8000, help="port (default 8000; 0: any free one)"
    )
    dashboard.add_argument(
        "--token",
        help="enable cancel, resume and fork for whoever logs in with this token "
        "(default: $DBOS_DASHBOARD_TOKEN, which keeps it out of the process list; "
        "without one the dashboard is read-only)",
    )
    dashboard.add_argument(
        "--show-values",
        action="store_true",
        help="show inputs, outputs, event and stream values (hidden by default)",
    )
    dashboard.add_argument(
        "--refresh",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="how often live pages refresh (default 5)",
    )
    dashboard.set_defaults(handler=serve_dashboard, uses_client=True)
