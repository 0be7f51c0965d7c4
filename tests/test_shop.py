"""The shop example (examples/shop) as users run it: uvicorn on uvloop in a subprocess,
driven over HTTP, killed with SIGKILL mid-checkout and started again on its database."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Generous: the machine is small and shared.
DEADLINE = 45.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Shop:
    """One shop server process at a time, on one database and one payments ledger."""

    def __init__(self, db_url: str, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.ledger = tmp_path / "payments.jsonl"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOS_", "SHOP_"))}
        self.env.update(
            PYTHONPATH=str(ROOT),
            DBOS_DATABASE_URL=db_url,
            SHOP_PAYMENTS_FILE=str(self.ledger),
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.starts = 0

    async def start(self, **env: str) -> None:
        """Start the server (``env`` on top of the shop's) and wait until it answers; on
        another free port if something took this one between its pick and the bind."""
        for attempt in range(3):
            self._spawn(env)
            async with httpx.AsyncClient(base_url=self.url, timeout=5) as client:
                try:
                    await until(lambda c=client: self._ready(c), "the server answers")
                    return
                except AssertionError:
                    if attempt == 2 or "address already in use" not in self.log().lower():
                        raise

    def _spawn(self, env: dict[str, str]) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.starts += 1
        command = [sys.executable, "-m", "uvicorn", "examples.shop.app:app", "--loop", "uvloop"]
        with (self.tmp_path / f"server-{self.starts}.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [*command, "--host", "127.0.0.1", "--port", str(port)],
                cwd=self.tmp_path,
                env={**self.env, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def _ready(self, client: httpx.AsyncClient) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the server exited ({self.proc.returncode}):\n{self.log()}")
        try:
            return (await client.get("/stock")).status_code == 200
        except httpx.TransportError:
            return False

    def log(self) -> str:
        return (self.tmp_path / f"server-{self.starts}.log").read_text(errors="replace")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM, as a deployment would: uvicorn runs the lifespan's shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"the server ignored SIGTERM:\n{self.log()}") from None

    def charges(self) -> list[dict[str, Any]]:
        if not self.ledger.exists():
            return []
        lines = self.ledger.read_text().splitlines()
        return [entry for entry in map(json.loads, lines) if entry["kind"] == "charge"]


async def until(check: Any, what: str) -> Any:
    """Poll ``await check()`` until it returns something truthy; fail after ``DEADLINE``."""
    deadline = time.monotonic() + DEADLINE
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
def shop(db_url: str, tmp_path: Path) -> Iterator[Shop]:
    server = Shop(db_url, tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def client(shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    await shop.start()
    async with httpx.AsyncClient(base_url=shop.url, timeout=DEADLINE) as http:
        yield http


async def finished(client: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        order: dict[str, Any] = (await client.get(f"/orders/{order_id}")).json()
        return order if order["status"] not in ("PENDING", "ENQUEUED") else None

    result: dict[str, Any] = await until(done, f"order {order_id} ends")
    return result


def order(sku: str, qty: int, customer: str = "ada@example.com") -> dict[str, Any]:
    return {"customer": customer, "items": [{"sku": sku, "qty": qty}]}


async def test_shop__checkouts(shop: Shop, client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'fetch("/checkout"' in page.text and "Idempotency-Key" in page.text
    assert (await client.get("/stock")).json() == {"gadget": 50, "gizmo": 3, "widget": 100}

    # 20 checkouts at once: all complete, the stock goes down by exactly what they took.
    started = await asyncio.gather(
        *(client.post("/checkout", json=order("widget", 1 + n % 2, f"c{n}")) for n in range(20))
    )
    assert [r.status_code for r in started] == [202] * 20
    ids = [r.json()["order_id"] for r in started]
    outcomes = await asyncio.gather(*(finished(client, order_id) for order_id in ids))
    assert [o["status"] for o in outcomes] == ["SUCCESS"] * 20
    assert {o["result"]["status"] for o in outcomes} == {"confirmed"}
    assert {o["progress"]["stage"] for o in outcomes} == {"confirmed"}
    assert (await client.get("/stock")).json()["widget"] == 100 - 30
    assert sorted(c["order_id"] for c in shop.charges()) == sorted(ids)

    # The same Idempotency-Key three times: one order, one charge.
    key = {"Idempotency-Key": "order-from-page-1"}
    replies = [await client.post("/checkout", json=order("gadget", 2), headers=key)]
    replies += await asyncio.gather(
        *(client.post("/checkout", json=order("gadget", 2), headers=key) for _ in range(2))
    )
    assert [r.json() for r in replies] == [{"order_id": "order-from-page-1"}] * 3
    assert (await finished(client, "order-from-page-1"))["result"]["status"] == "confirmed"
    assert [c["order_id"] for c in shop.charges()].count("order-from-page-1") == 1
    assert (await client.get("/stock")).json()["gadget"] == 50 - 2

    # A batch, gathered in the handler: out of stock refunds, the rest goes through; the
    # same batch again (same key) reuses every order.
    batch = [order("gizmo", 5), order("gizmo", 2), order("widget", 1)]
    headers = {"Idempotency-Key": "batch-1"}
    results = (await client.post("/checkout/batch", json=batch, headers=headers)).json()
    assert [r["status"] for r in results] == ["out_of_stock", "confirmed", "confirmed"]
    assert [r["order_id"] for r in results] == ["batch-1:0", "batch-1:1", "batch-1:2"]
    assert (await client.post("/checkout/batch", json=batch, headers=headers)).json() == results
    refused = await client.get("/orders/batch-1:0")
    assert refused.json()["progress"]["stage"] == "refunded"
    ledger = [json.loads(line) for line in shop.ledger.read_text().splitlines()]
    assert [(e["kind"], e["order_id"]) for e in ledger if e["order_id"] == "batch-1:0"] == [
        ("charge", "batch-1:0"),
        ("refund", "batch-1:0"),
    ]
    assert (await client.get("/stock")).json() == {"gadget": 48, "gizmo": 1, "widget": 69}

    # Bad input is refused before anything runs.
    assert (await client.post("/checkout", json=order("nope", 1))).status_code == 422
    bad_key = {"Idempotency-Key": "x" * 1001}
    refused_key = await client.post("/checkout", json=order("widget", 1), headers=bad_key)
    assert refused_key.status_code == 400 and "Idempotency-Key" in refused_key.json()["detail"]
    assert (await client.get("/orders/no-such-order")).status_code == 404
    assert len(shop.charges()) == 20 + 1 + 3


async def test_shop__order_survives_sigkill(shop: Shop) -> None:
    # The confirmation step is slow, so the server dies after the charge is recorded.
    await shop.start(SHOP_STEP_DELAY="600")
    async with httpx.AsyncClient(base_url=shop.url, timeout=DEADLINE) as client:
        headers = {"Idempotency-Key": "doomed-order"}
        reply = await client.post("/checkout", json=order("gizmo", 2), headers=headers)
        assert reply.json() == {"order_id": "doomed-order"}

        async def paid() -> bool:
            progress = (await client.get("/orders/doomed-order")).json()["progress"]
            return progress is not None and progress["stage"] in ("paid", "reserved")

        await until(paid, "the payment is recorded")
    shop.kill()
    assert len(shop.charges()) == 1

    await shop.start()  # no delay now; the restarted server recovers the order
    async with httpx.AsyncClient(base_url=shop.url, timeout=DEADLINE) as client:
        outcome = await finished(client, "doomed-order")
        assert outcome["status"] == "SUCCESS", outcome
        assert outcome["result"] == {
            "order_id": "doomed-order",
            "status": "confirmed",
            "total_cents": 2 * 4999,
        }
        assert outcome["progress"]["stage"] == "confirmed"
        # The client retries its request: still the same order.
        again = await client.post("/checkout", json=order("gizmo", 2), headers=headers)
        assert again.json() == {"order_id": "doomed-order"}
        assert (await client.get("/stock")).json()["gizmo"] == 3 - 2
    assert [c["order_id"] for c in shop.charges()] == ["doomed-order"]
