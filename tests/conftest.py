"""Fixtures: every test that takes ``db_url`` (or ``dbos``) runs on SQLite and on a fresh
Postgres database cloned from a migrated template.

Postgres is at ``DBOS_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432``).
Without it, Postgres tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from dbos_async import DBOS
from dbos_async.sysdb._migrations import load_schema_files

PG_SERVER = os.environ.get("DBOS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def stable_id(value: object) -> str:
    """A parametrized test's ID that is the same in every process: ``make test`` runs the
    suite on pytest-xdist workers, which collect the tests separately and must agree on
    every ID. It is ``repr``, except that a set's items are sorted (their order follows
    the per-process hash seed) and an object whose repr shows its address is shown by its
    type's name."""
    if isinstance(value, (set, frozenset)):
        items = ", ".join(sorted(stable_id(v) for v in value))
        return f"{type(value).__name__}({{{items}}})" if value else f"{type(value).__name__}()"
    if isinstance(value, (list, tuple)):
        items = ", ".join(stable_id(v) for v in value)
        return f"[{items}]" if isinstance(value, list) else f"({items})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{stable_id(k)}: {stable_id(v)}" for k, v in value.items()) + "}"
    text = repr(value)
    return type(value).__name__ if " at 0x" in text else text


def pg_url(database: str) -> str:
    return f"{PG_SERVER}/{database}"


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(pg_url("postgres"), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _schema_hash() -> str:
    digest = hashlib.sha256()
    for component in ("system", "app"):
        files = load_schema_files("postgres", component)
        digest.update(files.schema.encode())
        for migration in files.migrations:
            digest.update(migration.sql.encode())
    return digest.hexdigest()[:10]


TEMPLATE = f"dbos_async_test_tpl_{_schema_hash()}"


async def _build_template() -> None:
    """Create the migrated template once per schema version; concurrent test sessions
    serialize on an advisory lock and reuse it."""
    from dbos_async.sysdb._postgres import PostgresPool

    conn = await asyncpg.connect(pg_url("postgres"), timeout=5)
    try:
        await conn.execute("SELECT pg_advisory_lock(7262531)")
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", TEMPLATE)
        if exists:
            return
        await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}_new WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {TEMPLATE}_new")
        pool = PostgresPool(pg_url(f"{TEMPLATE}_new"), 2, 5.0)
        await pool.open()
        try:
            await pool.migrate("system")
            await pool.migrate("app")
        finally:
            await pool.close()
        await conn.execute(f"ALTER DATABASE {TEMPLATE}_new RENAME TO {TEMPLATE}")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_template() -> str:
    """Check Postgres once and build the migrated template database."""
    try:
        asyncio.run(_build_template())
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        if IN_CI:
            pytest.fail(f"Postgres is required under CI=true but unreachable: {exc!r}")
        pytest.skip(f"Postgres unreachable at {PG_SERVER}: {exc!r}")
    return TEMPLATE


async def create_pg_database(template: str | None) -> str:
    """Create an empty (or template-cloned) Postgres database; returns its name."""
    name = f"dbos_test_{uuid.uuid4().hex[:12]}"
    suffix = f" TEMPLATE {template}" if template else ""
    await _admin(f"CREATE DATABASE {name}{suffix}")
    return name


async def drop_pg_database_async(name: str) -> None:
    await _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def make_pg_database(template: str | None) -> str:
    return asyncio.run(create_pg_database(template))


def drop_pg_database(name: str) -> None:
    asyncio.run(drop_pg_database_async(name))


@pytest.fixture
def fresh_pg(postgres_template: str) -> Iterator[str]:
    """The URL of a new, already migrated Postgres database, dropped after the test."""
    name = make_pg_database(postgres_template)
    try:
        yield pg_url(name)
    finally:
        drop_pg_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for this test on each backend."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'dbos.sqlite'}"
    return str(request.getfixturevalue("fresh_pg"))


@pytest.fixture
async def dbos(db_url: str) -> AsyncIterator[DBOS]:
    """A launched DBOS on ``db_url``, destroyed after the test."""
    await DBOS.destroy()
    instance = DBOS({"database_url": db_url, "application_version": "test"})
    await DBOS.launch()
    try:
        yield instance
    finally:
        await DBOS.destroy()
