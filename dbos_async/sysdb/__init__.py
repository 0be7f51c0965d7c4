"""System and application databases: one interface (``_protocol``), two backends.

What the engine and the CLI use is exported here; the backend modules are imported only
when ``open_databases`` builds one, and import nothing from this package's ``__init__``.
"""

from __future__ import annotations

from .._urls import is_sqlite_url, sqlite_path
from ._keys import notification_key, parse_notification_key
from ._migrations import load_schema_files
from ._protocol import (
    ApplicationDatabase,
    ManagementDatabase,
    MessagingDatabase,
    QueueDatabase,
    ScheduleDatabase,
    SystemDatabase,
    TransactionConflict,
    VersionDatabase,
)
from ._rows import (
    ExecutorRow,
    Fenced,
    FinishWorkflow,
    InsertWorkflow,
    LeaseHolder,
    MessageRow,
    QueueActivity,
    QueueClaim,
    QueueInfo,
    RecordStep,
    RecoveryClaim,
    RecoveryRequest,
    ScheduleRow,
    StepRow,
    StreamEntry,
    VersionRow,
    WorkflowQuery,
    WorkflowRow,
    Write,
    WriteResult,
)

__all__ = [
    "ApplicationDatabase",
    "ExecutorRow",
    "Fenced",
    "FinishWorkflow",
    "InsertWorkflow",
    "LeaseHolder",
    "ManagementDatabase",
    "MessageRow",
    "MessagingDatabase",
    "QueueActivity",
    "QueueClaim",
    "QueueDatabase",
    "QueueInfo",
    "RecordStep",
    "RecoveryClaim",
    "RecoveryRequest",
    "ScheduleDatabase",
    "ScheduleRow",
    "StepRow",
    "StreamEntry",
    "SystemDatabase",
    "TransactionConflict",
    "VersionDatabase",
    "VersionRow",
    "WorkflowQuery",
    "WorkflowRow",
    "Write",
    "WriteResult",
    "create_database",
    "drop_database",
    "latest_schema_version",
    "notification_key",
    "open_databases",
    "parse_notification_key",
]


def latest_schema_version(url: str, component: str) -> int:
    """The schema version that connecting to ``url`` brings ``component`` ("system": the
    workflow tables, "app": the transaction outputs) up to, on that URL's backend."""
    backend = "sqlite" if is_sqlite_url(url) else "postgres"
    return load_schema_files(backend, component).latest


async def create_database(url: str, connect_timeout: float = 10.0) -> None:
    """Create the Postgres database ``url`` names unless it exists; a SQLite URL is
    refused (its file is created on first connect)."""
    if is_sqlite_url(url):
        raise ValueError("create_database is for Postgres; a SQLite file is created on connect")
    from ._pg_pool import create_database as create

    await create(url, connect_timeout)


async def drop_database(url: str, connect_timeout: float = 10.0) -> None:
    """Drop the Postgres database ``url`` names, if it exists (its sessions are closed
    first); a SQLite URL is refused (delete the file)."""
    if is_sqlite_url(url):
        raise ValueError("drop_database is for Postgres; a SQLite database is a file to delete")
    from ._pg_pool import drop_database as drop

    await drop(url, connect_timeout)


def open_databases(
    system_url: str,
    app_url: str,
    *,
    pool_size: int,
    connect_timeout: float,
    create_missing: bool = True,
) -> tuple[SystemDatabase, ApplicationDatabase]:
    """Build (not yet connect) the backends for two validated URLs. ``create_missing``
    False (clients) refuses a database that does not exist instead of creating it.

    On Postgres each role has its own pool: the system pool skips the per-release session
    reset (the runtime leaves no session state), the application pool keeps it, since
    user transactions may leave some. On SQLite each role has its own
    connection (a transaction body may await while holding its connection, and reads go
    on meanwhile), except ``:memory:``, where a second connection would see another
    database. Connections to one file share its write lock, so the system role's writes
    queue behind an open transaction body instead of failing ("database is locked"):
    see ``_sqlite_connection``'s docstring.
    """
    from ._postgres import PostgresApplicationDatabase, PostgresPool, PostgresSystemDatabase
    from ._sqlite import SQLiteApplicationDatabase, SQLiteConnection, SQLiteSystemDatabase

    memory: dict[str, SQLiteConnection] = {}

    def sqlite(url: str) -> SQLiteConnection:
        if sqlite_path(url) != ":memory:":
            return SQLiteConnection(url, create_missing=create_missing)
        if url not in memory:
            memory[url] = SQLiteConnection(url)
        return memory[url]

    # One database for both roles: a transaction's output is fenced in its own commit.
    shared = system_url == app_url
    system: SystemDatabase
    if is_sqlite_url(system_url):
        system = SQLiteSystemDatabase(sqlite(system_url))
    else:
        system = PostgresSystemDatabase(
            PostgresPool(
                system_url,
                pool_size,
                connect_timeout,
                reset_sessions=False,
                create_missing=create_missing,
            )
        )
    app: ApplicationDatabase
    if is_sqlite_url(app_url):
        app = SQLiteApplicationDatabase(sqlite(app_url), fenced=shared)
    else:
        app = PostgresApplicationDatabase(
            PostgresPool(app_url, pool_size, connect_timeout, create_missing=create_missing),
            fenced=shared,
        )
    return system, app
