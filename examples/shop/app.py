"""A small shop on FastAPI and dbos_async: each checkout is a durable workflow.

The checkout workflow charges the customer (a fake payment provider), reserves the stock
in one database transaction (refunding the charge when an item is out of stock), then
sends a confirmation. Each stage is published as the workflow's "progress" event. Kill
the server at any moment and start it again: every checkout finishes, and none is
charged twice.

    uvicorn examples.shop.app:app --loop uvloop     # or: python -m examples.shop

Environment: ``DBOS_DATABASE_URL`` (else ``shop.sqlite`` in the working directory),
``SHOP_PAYMENTS_FILE`` (the fake provider's ledger, default ``shop-payments.jsonl``),
``SHOP_STEP_DELAY`` (seconds the confirmation step waits: lets you kill a checkout
mid-flight; 0 by default).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, field_validator

from dbos_async import DBOS, SetWorkflowID
from dbos_async.asgi import IdempotencyKeyMiddleware, current_idempotency_key, lifespan

PAYMENTS_FILE = Path(os.environ.get("SHOP_PAYMENTS_FILE", "shop-payments.jsonl"))
STEP_DELAY = float(os.environ.get("SHOP_STEP_DELAY", "0"))

#: The catalog: SKU -> (name, price in cents, stock when the shop first starts).
PRODUCTS = {
    "widget": ("Widget", 250, 100),
    "gadget": ("Gadget", 1200, 50),
    "gizmo": ("Gizmo", 4999, 3),
}


class Item(BaseModel):
    """One line of an order: a SKU of the catalog and a quantity."""

    sku: str
    qty: int = Field(gt=0, le=1000)

    @field_validator("sku")
    @classmethod
    def known_sku(cls, sku: str) -> str:
        """Refuse (422) a SKU the shop does not sell."""
        if sku not in PRODUCTS:
            raise ValueError(f"unknown sku {sku!r}; the shop sells {', '.join(PRODUCTS)}")
        return sku


class Order(BaseModel):
    """The body of ``POST /checkout``: who buys, and what."""

    customer: str = Field(min_length=1, max_length=200)
    items: list[Item] = Field(min_length=1, max_length=20)


# -- the database: one helper for both backends ---------------------------------------


async def sql(query: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run one statement in the running ``@DBOS.transaction``; write it with ``?``
    parameters (SQLite's style), they become ``$1, $2...`` on Postgres."""
    conn = DBOS.sql_connection
    if hasattr(conn, "fetch"):  # asyncpg on Postgres
        parts = query.split("?")
        query = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], 1))
        return [tuple(row) for row in await conn.fetch(query, *args)]
    cursor = await conn.execute(query, args)  # aiosqlite on SQLite
    return [tuple(row) for row in await cursor.fetchall()]


@DBOS.transaction()
async def create_tables() -> None:
    """Create the stock table and stock it, once: a restart keeps the counts."""
    await sql(
        "CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, name TEXT NOT NULL,"
        " price_cents INTEGER NOT NULL, qty INTEGER NOT NULL)"
    )
    for sku, (name, price, qty) in PRODUCTS.items():
        await sql(
            "INSERT INTO stock (sku, name, price_cents, qty) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (sku) DO NOTHING",
            sku,
            name,
            price,
            qty,
        )


@DBOS.transaction()
async def reserve_stock(items: list[dict[str, Any]]) -> str | None:
    """Take the items out of stock, all or nothing. Returns None, or the SKU that is
    short (then nothing is taken)."""
    wanted: dict[str, int] = {}
    for item in items:
        wanted[item["sku"]] = wanted.get(item["sku"], 0) + item["qty"]
    for sku, qty in wanted.items():
        rows = await sql("SELECT qty FROM stock WHERE sku = ?", sku)
        if not rows or rows[0][0] < qty:
            return sku
    for sku, qty in wanted.items():
        await sql("UPDATE stock SET qty = qty - ? WHERE sku = ?", qty, sku)
    return None


@DBOS.transaction()
async def stock_levels() -> dict[str, int]:
    """What is left of each SKU."""
    return {sku: qty for sku, qty in await sql("SELECT sku, qty FROM stock ORDER BY sku")}


# -- the outside world: a fake payment provider and a confirmation email ---------------


def _ledger(entry: dict[str, Any]) -> None:
    """Append one line to the provider's ledger, durably (fsync)."""
    with PAYMENTS_FILE.open("a") as ledger:
        ledger.write(json.dumps(entry) + "\n")
        ledger.flush()
        os.fsync(ledger.fileno())


@DBOS.step()
def charge(order_id: str, customer: str, amount_cents: int) -> str:
    """The payment provider (a fake): every call is a charge, written to its ledger.
    A plain ``def`` step runs in a worker thread. Returns the charge ID.

    A step runs at least once: if the process dies after the provider charged but before
    the step's checkpoint commits, the recovered workflow calls it again. With a real
    provider, pass an idempotency key derived from the workflow ID (here ``order_id``),
    so a repeated call returns the first charge. This fake has none, so the tests can
    count every call the workflow makes."""
    charge_id = f"ch_{uuid.uuid4().hex[:12]}"
    _ledger({"kind": "charge", "id": charge_id, "order_id": order_id, "amount": amount_cents})
    return charge_id


@DBOS.step()
def refund(order_id: str, charge_id: str, amount_cents: int) -> None:
    """The payment provider (a fake) gives a charge back: a refund line in its ledger."""
    _ledger({"kind": "refund", "id": charge_id, "order_id": order_id, "amount": amount_cents})


@DBOS.step()
async def send_confirmation(order_id: str, customer: str) -> str:
    """Stands in for an email; ``SHOP_STEP_DELAY`` makes it slow."""
    await asyncio.sleep(STEP_DELAY)
    return f"confirmation {order_id[:8]} sent to {customer}"


# -- the workflow ----------------------------------------------------------------------


async def progress(stage: str, message: str) -> None:
    """Publish the checkout's stage as its "progress" event (``GET /orders/{id}``)."""
    await DBOS.set_event("progress", {"stage": stage, "message": message})


@DBOS.workflow()
async def checkout(order: Order) -> dict[str, Any]:
    """Charge, reserve the stock (or refund), confirm; returns the order's outcome."""
    order_id = DBOS.workflow_id or ""
    total = sum(PRODUCTS[item.sku][1] * item.qty for item in order.items)
    await progress("received", f"order of {len(order.items)} line(s), {total / 100:.2f} due")
    charge_id = await charge(order_id, order.customer, total)
    await progress("paid", f"charged {total / 100:.2f} ({charge_id})")
    short = await reserve_stock([item.model_dump() for item in order.items])
    if short is not None:
        await refund(order_id, charge_id, total)
        await progress("refunded", f"{short} is out of stock; the charge was refunded")
        return {"order_id": order_id, "status": "out_of_stock", "sku": short}
    await progress("reserved", "stock reserved")
    confirmation = await send_confirmation(order_id, order.customer)
    await progress("confirmed", confirmation)
    return {"order_id": order_id, "status": "confirmed", "total_cents": total}


# -- the web app -----------------------------------------------------------------------


@asynccontextmanager
async def shop_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The app's own startup: create its tables."""
    await create_tables()  # DBOS is launched before this runs
    yield


app = FastAPI(title="shop", lifespan=lifespan({"name": "shop"}, shop_lifespan))
app.add_middleware(IdempotencyKeyMiddleware)  # Idempotency-Key header = workflow ID


@app.post("/checkout", status_code=202)
async def post_checkout(order: Order) -> dict[str, str]:
    """Start a checkout and answer at once with its ID (the workflow's ID)."""
    handle = await DBOS.start_workflow(checkout, order)
    return {"order_id": handle.workflow_id}


@app.post("/checkout/batch")
async def post_batch(orders: list[Order]) -> list[dict[str, Any]]:
    """Run several checkouts concurrently and answer with all their outcomes."""
    key = current_idempotency_key()
    handles = []
    for n, order in enumerate(orders):
        # With a key, a retried batch finds every order it started: their IDs derive from it.
        with SetWorkflowID(f"{key}:{n}" if key else str(uuid.uuid4())):
            handles.append(await DBOS.start_workflow(checkout, order))
    return list(await asyncio.gather(*handles))


@app.get("/orders/{order_id}")
async def get_order(order_id: str) -> dict[str, Any]:
    """An order's workflow status, its latest progress and, once done, its outcome."""
    status = await DBOS.get_workflow_status(order_id)
    if status is None:
        raise HTTPException(404, f"no order {order_id!r}")
    return {
        "order_id": order_id,
        "status": status.status,
        "progress": await DBOS.get_event(order_id, "progress", timeout_seconds=0),
        "result": status.output,
        "error": None if status.error is None else str(status.error),
    }


@app.get("/stock")
async def get_stock() -> dict[str, int]:
    """What is left of each SKU."""
    return await stock_levels()


PAGE = (Path(__file__).parent / "page.html").read_text()


@app.get("/", response_class=HTMLResponse)
async def page() -> str:
    """The page: a checkout form that follows its order live."""
    return PAGE
