"""The pytest plugin of dbos_async (entry point ``pytest11``, name ``dbos_async``).

Installed with the package, it gives every project's tests these fixtures:

- ``dbos``: a launched ``DBOS`` on a fresh database, destroyed after the test (the
  registry of decorated functions is kept);
- ``dbos_config``: the ``DBOSConfig`` the ``dbos`` fixture launches with; override it in
  a ``conftest.py`` to add keys;
- ``dbos_database_url``: the fresh database of the test: a SQLite file in ``tmp_path``,
  or, when ``--dbos-database-url`` (or the environment variable
  ``DBOS_TEST_DATABASE_URL``) names a Postgres server, a new database there, dropped
  after the test.

The fixtures are coroutines: the project needs pytest-asyncio, with
``asyncio_mode = "auto"`` or its markers. Nothing here is autouse, and loading the plugin
(which every pytest run of a project that installs the package does) only defines the
option and the fixtures: no database, no ``DBOS`` instance, no global state.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import pytest

from dbos_async import DBOS, DBOSConfig
from dbos_async._urls import redact_url
from dbos_async.sysdb import create_database, drop_database

__all__ = [
    "DATABASE_URL_ENV",
    "DATABASE_URL_OPTION",
    "dbos",
    "dbos_config",
    "dbos_database_url",
    "pytest_addoption",
    "pytest_configure",
    "pytest_report_header",
]

#: The command-line option naming the Postgres server the tests' databases go on.
DATABASE_URL_OPTION = "--dbos-database-url"
#: The environment variable read when the option is not given.
DATABASE_URL_ENV = "DBOS_TEST_DATABASE_URL"

F = TypeVar("F", bound=Callable[..., Any])


def _async_fixture(func: F) -> F:
    """pytest-asyncio's fixture decorator when it is installed (so the fixtures work in
    its strict mode too), else pytest's (which then says an async fixture needs it)."""
    try:
        import pytest_asyncio
    except ImportError:
        return cast(F, pytest.fixture(func))
    return cast(F, pytest_asyncio.fixture(func))


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--dbos-database-url``."""
    group = parser.getgroup("dbos_async", "dbos_async durable workflows")
    group.addoption(
        DATABASE_URL_OPTION,
        dest="dbos_database_url",
        default=None,
        metavar="URL",
        help=(
            "a Postgres server (postgresql://user@host:port) on which the `dbos` fixture "
            f"creates a fresh database per test (default: env {DATABASE_URL_ENV}, else a "
            "SQLite file per test)"
        ),
    )


def _server_url(config: pytest.Config) -> str | None:
    url = config.getoption("dbos_database_url", None) or os.environ.get(DATABASE_URL_ENV)
    return url or None


def _check_server_url(url: str) -> None:
    where = f"{DATABASE_URL_OPTION} / {DATABASE_URL_ENV}"
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise pytest.UsageError(f"{where}: malformed URL: {exc}") from None
    if parts.scheme not in ("postgresql", "postgres", "postgresql+asyncpg", "postgres+asyncpg"):
        raise pytest.UsageError(
            f"{where} must name a Postgres server, as postgresql://user@host:5432, got a "
            f"{parts.scheme or 'scheme-less'} URL (without it the tests use SQLite files)"
        )
    if not parts.hostname:
        raise pytest.UsageError(f"{where}: the URL names no host")


def pytest_configure(config: pytest.Config) -> None:
    """Check the server URL once, before any test runs."""
    url = _server_url(config)
    if url is not None:
        _check_server_url(url)


def pytest_report_header(config: pytest.Config) -> str:
    """Say where the ``dbos`` fixture's databases go."""
    url = _server_url(config)
    if url is None:
        return "dbos_async: fixture databases are SQLite files in tmp_path"
    return f"dbos_async: fixture databases are created on {redact_url(url)}"


@_async_fixture
async def dbos_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a fresh database for this test: a SQLite file in ``tmp_path`` (a file,
    so a child process of ``crash_and_recover`` can open it too), or a new database on
    the Postgres server ``--dbos-database-url`` / ``DBOS_TEST_DATABASE_URL`` names,
    dropped after the test."""
    server = _server_url(request.config)
    if server is None:
        yield f"sqlite:///{tmp_path / 'dbos.sqlite'}"
        return
    name = f"dbos_async_test_{uuid.uuid4().hex[:16]}"
    url = urlunsplit(urlsplit(server)._replace(path="/" + name))
    await create_database(url)
    try:
        yield url
    finally:
        await drop_database(url)


@pytest.fixture
def dbos_config(dbos_database_url: str) -> DBOSConfig:
    """The configuration the ``dbos`` fixture launches with: the test's fresh database.
    Override it in a ``conftest.py`` to add keys::

        @pytest.fixture
        def dbos_config(dbos_config):
            return {**dbos_config, "name": "shop", "executor_lease_seconds": 2}
    """
    return {"name": "dbos_async_test", "database_url": dbos_database_url}


@_async_fixture
async def dbos(dbos_config: DBOSConfig) -> AsyncIterator[DBOS]:
    """A launched ``DBOS`` on ``dbos_config`` (a fresh database per test), destroyed after
    the test with ``destroy_registry=False``: the decorated functions stay registered for
    the next test. An instance an earlier test left behind is destroyed first."""
    await DBOS.destroy()
    instance = DBOS(dbos_config)
    try:
        await DBOS.launch()
        yield instance
    finally:
        await DBOS.destroy(destroy_registry=False)
