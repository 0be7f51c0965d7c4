"""The ``dbos-async`` entry point: parse, find the database, run one command, print.

Every failure ends as one ``error:`` line on stderr (exit status 1; usage errors exit 2, as
argparse does), and the client's connections are closed before the process exits.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from .._config import validate_url
from .._errors import DBOSException, DBOSSerializationError
from .._loop import run
from .._urls import is_sqlite_url, redact_url, sqlite_path
from ..client import DBOSClient
from ._commands import DatabaseUrls
from ._output import Result
from ._parser import PROG, build_parser

__all__ = ["main"]

ENV_URL = "DBOS_DATABASE_URL"
ENV_SERIALIZER = "DBOS_ASYNC_SERIALIZER"


class CLIError(Exception):
    """A failure the user can fix, reported as its message alone."""


def _database_urls(args: argparse.Namespace) -> DatabaseUrls:
    """The URLs from the options, else the environment; never a silent default."""
    if args.database_url is not None:
        database = validate_url(args.database_url, "--database-url")
    elif os.environ.get(ENV_URL):
        database = validate_url(os.environ[ENV_URL], ENV_URL)
    else:
        raise CLIError(
            f"no database URL: pass --database-url URL or set {ENV_URL} "
            "(postgresql://user@host:5432/dbname or sqlite:///path/to/file.sqlite)"
        )
    system = database
    if args.system_database_url is not None:
        system = validate_url(args.system_database_url, "--system-database-url")
    return DatabaseUrls(database=database, system=system)


def _require_sqlite_file(url: str) -> None:
    """Refuse to inspect a SQLite file that is not there: connecting would create it."""
    if not is_sqlite_url(url):
        return
    path = sqlite_path(url)
    if path != ":memory:" and not os.path.exists(path):
        raise CLIError(
            f"SQLite database {path!r} does not exist; check the URL, "
            f"or create it with '{PROG} migrate'"
        )


def _serializer(args: argparse.Namespace) -> Any:
    """The serializer the application stores values with: ``json``, ``pickle``, or
    ``module:name`` naming a serializer object or a function that returns one (imported
    from the working directory too, as ``python -m`` would)."""
    spec = args.serializer if args.serializer is not None else os.environ.get(ENV_SERIALIZER)
    where = "--serializer" if args.serializer is not None else ENV_SERIALIZER
    if not spec or spec in ("json", "pickle"):
        return spec or None
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise CLIError(
            f"{where} must be json, pickle or module:name (a serializer, or a function "
            f"returning one), got {spec!r}"
        )
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: Any = importlib.import_module(module_name)
        for part in name.split("."):
            found = getattr(found, part)
    except Exception as exc:
        raise CLIError(f"{where} {spec!r}: cannot import it: {type(exc).__name__}: {exc}") from None
    if callable(found) and not hasattr(found, "serialize"):
        try:
            found = found()
        except Exception as exc:
            raise CLIError(
                f"{where} {spec!r}: calling it failed: {type(exc).__name__}: {exc}"
            ) from None
    if not (
        callable(getattr(found, "serialize", None))
        and callable(getattr(found, "deserialize", None))
    ):
        raise CLIError(
            f"{where} {spec!r} is not a serializer (an object with serialize and deserialize), "
            f"nor a function returning one: got {type(found).__name__}"
        )
    return found


async def _run(args: argparse.Namespace, urls: DatabaseUrls) -> Result:
    if not args.uses_client:
        result: Result = await args.handler(urls, args)
        return result
    _require_sqlite_file(urls.system)
    serializer = _serializer(args)
    client = DBOSClient(urls.database, system_database_url=urls.system, serializer=serializer)
    try:
        result = await args.handler(client, args)
    except DBOSSerializationError as exc:
        if serializer is not None:
            raise
        raise CLIError(
            f"{exc}; if the application stores values with another serializer (an "
            f"EncryptedSerializer, pickle), pass --serializer module:name naming it "
            f"(or set {ENV_SERIALIZER})"
        ) from None
    finally:
        await client.destroy()
    return result


def _message(exc: Exception, urls: DatabaseUrls | None) -> str:
    if isinstance(exc, DBOSException):
        return exc.message  # (without the "DBOS Error <code>:" some errors' str() has)
    if isinstance(exc, (CLIError, ValueError)):
        return str(exc)
    where = f"database {redact_url(urls.system)}: " if urls is not None else ""
    return f"{where}{type(exc).__name__}: {exc}"


def _emit(text: str) -> int:
    try:
        print(text, flush=True)
    except BrokenPipeError:  # e.g. piped into head: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dbos-async`` with ``argv`` (default: the process arguments); the exit status."""
    args = build_parser().parse_args(argv)
    urls: DatabaseUrls | None = None
    try:
        urls = _database_urls(args)
        result = run(_run(args, urls))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = " ".join(_message(exc, urls).split())
        print(f"error: {message}", file=sys.stderr)
        return 1
    return _emit(result.render(args.json))
