"""System and application databases: one interface (``_protocol``), two backends."""

from __future__ import annotations

from ._protocol import (
    ApplicationDatabase,
    FinishWorkflow,
    InsertWorkflow,
    RecordStep,
    RecoveryClaim,
    StepRow,
    SystemDatabase,
    TransactionConflict,
    WorkflowRow,
    Write,
    WriteResult,
)

__all__ = [
    "ApplicationDatabase",
    "FinishWorkflow",
    "InsertWorkflow",
    "RecordStep",
    "RecoveryClaim",
    "StepRow",
    "SystemDatabase",
    "TransactionConflict",
    "WorkflowRow",
    "Write",
    "WriteResult",
    "open_databases",
]


def open_databases(
    system_url: str, app_url: str, *, pool_size: int, connect_timeout: float
) -> tuple[SystemDatabase, ApplicationDatabase]:
    """Build (not yet connect) the backends for two validated URLs.

    Both roles on one Postgres URL share one pool. On SQLite each role has its own
    connection (a transaction body may await while holding its connection), except
    ``:memory:``, where a second connection would see another database.
    """
    from ._postgres import PostgresApplicationDatabase, PostgresPool, PostgresSystemDatabase
    from ._sqlite import (
        SQLiteApplicationDatabase,
        SQLiteConnection,
        SQLiteSystemDatabase,
        sqlite_path,
    )

    pools: dict[str, PostgresPool] = {}
    memory: dict[str, SQLiteConnection] = {}

    def pool(url: str) -> PostgresPool:
        if url not in pools:
            pools[url] = PostgresPool(url, pool_size, connect_timeout)
        return pools[url]

    def sqlite(url: str) -> SQLiteConnection:
        if sqlite_path(url) != ":memory:":
            return SQLiteConnection(url)
        if url not in memory:
            memory[url] = SQLiteConnection(url)
        return memory[url]

    system: SystemDatabase
    if system_url.startswith("sqlite:"):
        system = SQLiteSystemDatabase(sqlite(system_url))
    else:
        system = PostgresSystemDatabase(pool(system_url))
    app: ApplicationDatabase
    if app_url.startswith("sqlite:"):
        app = SQLiteApplicationDatabase(sqlite(app_url))
    else:
        app = PostgresApplicationDatabase(pool(app_url))
    return system, app
