"""The schema: a database built by running every numbered migration equals one built
from ``schema.sql``; migrating again, or from two processes at once, changes nothing."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from dbos_async.sysdb._migrations import load_schema_files
from dbos_async.sysdb._pg_pool import PostgresPool
from dbos_async.sysdb._sqlite_connection import SQLiteConnection, split_statements

from .conftest import create_pg_database, drop_pg_database_async, pg_url

COMPONENTS = ("system", "app")


def _norm(sql: str | None) -> str:
    return re.sub(r"\s+", " ", sql or "").strip()


def sqlite_catalog(path: Path) -> dict[str, Any]:
    with sqlite3.connect(path) as conn:
        catalog: dict[str, Any] = {}
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        for table in tables:
            catalog[table] = {
                "columns": sorted(
                    tuple(r[1:]) for r in conn.execute(f"PRAGMA table_info({table})")
                ),
                "foreign_keys": sorted(
                    tuple(r[2:]) for r in conn.execute(f"PRAGMA foreign_key_list({table})")
                ),
            }
        catalog["indexes"] = sorted(
            (r[0], r[1], _norm(r[2]))
            for r in conn.execute(
                "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index'"
            )
        )
        catalog["versions"] = sorted(
            conn.execute("SELECT component, version FROM dbos_migrations").fetchall()
        )
        return catalog


async def pg_catalog(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        columns = await conn.fetch(
            "SELECT table_name, column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = 'dbos_async' "
            "ORDER BY table_name, column_name"
        )
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'dbos_async' "
            "ORDER BY indexname"
        )
        constraints = await conn.fetch(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE connamespace = 'dbos_async'::regnamespace "
            "ORDER BY 1, 2"
        )
        versions = await conn.fetch(
            "SELECT component, version FROM dbos_async.migrations ORDER BY 1, 2"
        )
        functions = await conn.fetch(
            "SELECT proname, pg_get_functiondef(oid) FROM pg_proc"
            " WHERE pronamespace = 'dbos_async'::regnamespace ORDER BY 1"
        )
        sequences = await conn.fetch(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = 'dbos_async' ORDER BY 1"
        )
        return {
            "columns": [tuple(r) for r in columns],
            "indexes": [tuple(r) for r in indexes],
            "constraints": [tuple(r) for r in constraints],
            "versions": [tuple(r) for r in versions],
            "functions": [tuple(r) for r in functions],
            "sequences": [r[0] for r in sequences],
        }
    finally:
        await conn.close()


def test_schema_files__numbered_and_parseable() -> None:
    for backend in ("postgres", "sqlite"):
        for component in COMPONENTS:
            files = load_schema_files(backend, component)
            assert files.latest >= 1
            assert split_statements(files.schema)
            for migration in files.migrations:
                assert split_statements(migration.sql), migration.name
    # Both backends evolve together.
    for component in COMPONENTS:
        assert (
            load_schema_files("postgres", component).latest
            == load_schema_files("sqlite", component).latest
        )


async def test_migrations__sqlite_migrated_equals_fresh(tmp_path: Path) -> None:
    catalogs = []
    for label, from_migrations in (("migrated", True), ("fresh", False)):
        path = tmp_path / f"{label}.sqlite"
        db = SQLiteConnection(f"sqlite:///{path}")
        await db.open()
        try:
            for component in COMPONENTS:
                await db.migrate(component, from_migrations=from_migrations)
                await db.migrate(component)  # again: nothing to do
        finally:
            await db.close()
        catalogs.append(sqlite_catalog(path))
    migrated, fresh = catalogs
    assert "dbos_workflow_status" in fresh and "dbos_operation_outputs" in fresh
    assert "dbos_transaction_outputs" in fresh
    assert migrated == fresh


async def test_migrations__postgres_migrated_equals_fresh(postgres_template: str) -> None:
    names = [await create_pg_database(None), await create_pg_database(None)]
    try:
        catalogs = []
        for name, from_migrations in zip(names, (True, False), strict=True):
            pool = PostgresPool(pg_url(name), 2, 5.0)
            await pool.open()
            try:
                for component in COMPONENTS:
                    await pool.migrate(component, from_migrations=from_migrations)
                    await pool.migrate(component)
            finally:
                await pool.close()
            catalogs.append(await pg_catalog(pg_url(name)))
        migrated, fresh = catalogs
        tables = {c[0] for c in fresh["columns"]}
        assert tables == {
            "migrations",
            "operation_outputs",
            "transaction_outputs",
            "workflow_status",
            "notifications",
            "workflow_events",
            "streams",
            "queues",
            "executors",
            "application_versions",
            "schedules",
        }
        assert [f[0] for f in fresh["functions"]] == [
            "assert_owner",
            "claim_queued",
            "claim_queued",  # (and its form before 0009, for a rolling upgrade)
            "is_latest_version",
            "now_ms",
            "receive_message",
        ]
        assert migrated == fresh
    finally:
        for name in names:
            await drop_pg_database_async(name)


async def test_migrations__postgres_concurrent_launches_migrate_once(
    postgres_template: str,
) -> None:
    name = await create_pg_database(None)
    try:
        pools = [PostgresPool(pg_url(name), 2, 5.0) for _ in range(4)]
        await asyncio.gather(*(p.open() for p in pools))
        try:
            await asyncio.gather(*(p.migrate("system") for p in pools))
        finally:
            await asyncio.gather(*(p.close() for p in pools))
        catalog = await pg_catalog(pg_url(name))
        latest = load_schema_files("postgres", "system").latest
        assert catalog["versions"] == [("system", v) for v in range(1, latest + 1)]
    finally:
        await drop_pg_database_async(name)


@pytest.mark.parametrize("count", [3])
async def test_migrations__sqlite_concurrent_connections_migrate_once(
    tmp_path: Path, count: int
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    conns = [SQLiteConnection(url) for _ in range(count)]
    for c in conns:
        await c.open()
    try:
        await asyncio.gather(*(c.migrate("system") for c in conns))
    finally:
        for c in conns:
            await c.close()
    versions = sqlite_catalog(tmp_path / "shared.sqlite")["versions"]
    latest = load_schema_files("sqlite", "system").latest
    assert versions == [("system", v) for v in range(1, latest + 1)]


async def test_migrations__postgres_claim_of_the_code_before_0009_still_works(
    postgres_template: str,
) -> None:
    """A process still on the code before migration 0009 (rolling upgrade) claims with
    eleven arguments, its limits applying per partition on a partition's claim."""
    name = await create_pg_database(None)
    try:
        pool = PostgresPool(pg_url(name), 2, 5.0)
        await pool.open()
        try:
            await pool.migrate("system")
        finally:
            await pool.close()
        conn = await asyncpg.connect(pg_url(name))
        try:
            for i, key in enumerate(["a", "a", "b"]):
                await conn.execute(
                    "INSERT INTO dbos_async.workflow_status (workflow_uuid, status, name, "
                    "queue_name, queue_partition_key, created_at, updated_at, priority) "
                    "VALUES ($1, 'ENQUEUED', 'wf', 'q', $2, $3, $3, 0)",
                    f"w{i}",
                    key,
                    i,
                )
            old_claim = (
                "SELECT workflow_uuid FROM dbos_async.claim_queued($1::text, $2::text, "
                "$3::text, $4::text, $5::bigint, $6::bigint, $7::bigint, $8::bigint, "
                "$9::bigint, $10::text, $11::text)"
            )
            args = ("e", None, 10**12, 10, 1, None, None, "t", "o")
            claimed_a = await conn.fetch(old_claim, "q", "a", *args)
            claimed_b = await conn.fetch(old_claim, "q", "b", *args)
            # concurrency 1 per partition: one of a's, and b's although a's one runs.
            assert [r[0] for r in claimed_a] == ["w0"]
            assert [r[0] for r in claimed_b] == ["w2"]
        finally:
            await conn.close()
    finally:
        await drop_pg_database_async(name)
