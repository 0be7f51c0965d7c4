"""What ``DBOS.sql_session`` (SQLAlchemy) costs a transaction, against ``DBOS.sql_connection``.

    PYTHONPATH=. python benchmarks/sql_session.py [--postgres URL] [--n 500] [--runs 5]

One process; N sequential ``@DBOS.transaction`` calls outside workflows (so only the
transaction is timed, no checkpoint), each inserting one row, three ways: the driver's
connection (``sql_connection``, the backend's own SQL), a session executing a Core
``text()`` insert, and a session adding an ORM object (flushed at the end). Printed: the
median (min-max) over RUNS runs, after one discarded warm-up run, of the microseconds
per transaction, and the difference each session variant makes. On SQLite a temporary
file; on Postgres the database URL given (created if missing; the table is dropped and
made again).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import String, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dbos_async import DBOS


class Base(DeclarativeBase):
    pass


class Row(Base):
    __tablename__ = "bench_sqls"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


POSTGRES: dict[str, bool] = {"on": False}


@DBOS.transaction()
async def tx_driver(i: int) -> None:
    if POSTGRES["on"]:
        await DBOS.sql_connection.execute("INSERT INTO bench_sqls (name) VALUES ($1)", str(i))
    else:
        await DBOS.sql_connection.execute("INSERT INTO bench_sqls (name) VALUES (?)", (str(i),))


@DBOS.transaction()
async def tx_core(i: int) -> None:
    await DBOS.sql_session.execute(
        text("INSERT INTO bench_sqls (name) VALUES (:name)"), {"name": str(i)}
    )


@DBOS.transaction()
async def tx_orm(i: int) -> None:
    DBOS.sql_session.add(Row(name=str(i)))


@DBOS.transaction()
async def tx_setup() -> None:
    connection = await DBOS.sql_session.connection()
    await connection.run_sync(Base.metadata.drop_all)
    await connection.run_sync(Base.metadata.create_all)


async def per_transaction_us(tx: Callable[[int], Awaitable[None]], n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        await tx(i)
    return (time.perf_counter() - started) / n * 1e6


async def measure(url: str, n: int, runs: int) -> None:
    POSTGRES["on"] = url.startswith("postgres")
    async with DBOS({"name": "bench_sql_session", "database_url": url}):
        await tx_setup()
        variants: dict[str, Callable[[int], Awaitable[None]]] = {
            "sql_connection": tx_driver,
            "session text()": tx_core,
            "session ORM add": tx_orm,
        }
        results: dict[str, list[float]] = {name: [] for name in variants}
        for run in range(runs + 1):
            for name, tx in variants.items():  # interleaved, so drift hits all alike
                us = await per_transaction_us(tx, n)
                if run > 0:
                    results[name].append(us)
    base = statistics.median(results["sql_connection"])
    print(f"{'postgres' if POSTGRES['on'] else 'sqlite'}: {n} transactions x {runs} runs")
    for name, values in results.items():
        med = statistics.median(values)
        print(
            f"  {name:16} {med:8.0f} us/tx ({min(values):.0f}-{max(values):.0f})"
            f"  {med - base:+6.0f} us"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default="")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(measure(f"sqlite:///{Path(tmp) / 'bench.sqlite'}", args.n, args.runs))
    if args.postgres:
        asyncio.run(measure(args.postgres, args.n, args.runs))


if __name__ == "__main__":
    main()
