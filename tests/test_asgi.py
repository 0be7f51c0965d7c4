"""dbos_async.asgi: the lifespan that runs DBOS with a FastAPI app, the idempotency-key
middleware, and the error a handler gets when the app's lifespan never ran."""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio.from_thread
import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.exceptions import StarletteDeprecationWarning

from dbos_async import DBOS, DBOSException, SetWorkflowID, WorkflowStatusString
from dbos_async.asgi import IdempotencyKeyMiddleware, current_idempotency_key, lifespan

with warnings.catch_warnings():
    # This Starlette asks for ``httpx2`` (not installed here); its TestClient still runs on
    # httpx, with a StarletteDeprecationWarning at import.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

#: Every run of ``record_run``'s body, in this process: (workflow ID, label).
step_runs: list[tuple[str | None, str]] = []


@DBOS.step()
async def record_run(label: str) -> str:
    step_runs.append((DBOS.workflow_id, label))
    return f"ran {label}"


@DBOS.workflow()
async def asgi_order(label: str) -> str:
    return await record_run(label)


#: Set by the app's shutdown code in ``test_asgi__shutdown_lets_running_workflows_finish``.
RELEASE: dict[str, asyncio.Event] = {}


@DBOS.step()
async def wait_for_release() -> str:
    await RELEASE["event"].wait()
    return "released"


@DBOS.workflow()
async def asgi_waiting() -> str:
    return await wait_for_release()


@pytest.fixture(autouse=True)
def _no_runtime() -> Iterator[None]:
    """Every test starts and ends without a DBOS instance."""
    asyncio.run(DBOS.destroy())
    step_runs.clear()
    yield
    asyncio.run(DBOS.destroy())


def config(db_url: str) -> dict[str, Any]:
    return {"name": "asgi_test", "database_url": db_url, "application_version": "test"}


def make_app(lifespan_: Any = None, **middleware: Any) -> FastAPI:
    app = FastAPI(lifespan=lifespan_)

    @app.post("/orders/{label}")
    async def start_order(label: str) -> dict[str, Any]:
        handle = await DBOS.start_workflow(asgi_order, label)
        return {"workflow_id": handle.workflow_id, "result": await handle}

    @app.post("/sync-orders/{label}")
    def start_order_in_thread(label: str) -> dict[str, Any]:
        # A plain ``def`` handler runs in Starlette's thread pool; it reaches the event
        # loop through anyio's portal.
        handle = anyio.from_thread.run(DBOS.start_workflow, asgi_order, label)
        result = anyio.from_thread.run(handle.get_result)
        return {
            "workflow_id": handle.workflow_id,
            "result": result,
            "key": current_idempotency_key(),
        }

    @app.post("/many/{n}")
    async def start_many(n: int) -> dict[str, Any]:
        key = current_idempotency_key()
        handles = []
        for i in range(n):
            with SetWorkflowID(f"{key}:{i}"):
                handles.append(await DBOS.start_workflow(asgi_order, f"part {i}"))
        results = await asyncio.gather(*handles)
        return {"ids": [h.workflow_id for h in handles], "results": results}

    app.add_middleware(IdempotencyKeyMiddleware, **middleware)
    return app


def test_asgi__workflow_runs_from_a_handler(db_url: str) -> None:
    app = make_app(lifespan(config(db_url)))
    with TestClient(app) as client:
        first = client.post("/orders/a").json()
        second = client.post("/orders/b").json()
    assert first["result"] == "ran a" and second["result"] == "ran b"
    assert first["workflow_id"] != second["workflow_id"]
    assert step_runs == [(first["workflow_id"], "a"), (second["workflow_id"], "b")]

    async def status() -> Any:
        async with DBOS(config(db_url)):
            return await DBOS.get_workflow_status(first["workflow_id"])

    found = asyncio.run(status())
    assert found is not None and found.status == WorkflowStatusString.SUCCESS


def test_asgi__app_lifespan_runs_inside_dbos(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    launch, destroy = DBOS.launch, DBOS.destroy

    async def traced_launch() -> None:
        await launch()
        events.append("dbos launched")

    async def traced_destroy(**kwargs: Any) -> None:
        events.append(f"dbos destroy {kwargs}")
        await destroy(**kwargs)

    monkeypatch.setattr(DBOS, "launch", traced_launch)
    monkeypatch.setattr(DBOS, "destroy", traced_destroy)

    @contextlib.asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        # DBOS is usable in the app's startup and shutdown code.
        assert await DBOS.start_workflow(asgi_order, "startup") is not None
        events.append("app startup")
        yield
        events.append("app shutdown")
        assert await asgi_order("shutdown") == "ran shutdown"

    app = make_app(lifespan(config(db_url), app_lifespan, workflow_completion_timeout_sec=2.5))
    with TestClient(app) as client:
        events.append("serving")
        assert client.post("/orders/x").json()["result"] == "ran x"
    assert events == [
        "dbos launched",
        "app startup",
        "serving",
        "app shutdown",
        "dbos destroy {'workflow_completion_timeout_sec': 2.5}",
    ]
    with pytest.raises(DBOSException, match="no DBOS instance"):
        asyncio.run(DBOS.get_workflow_status("anything"))


def test_asgi__lifespan_state_reaches_requests(db_url: str) -> None:
    @contextlib.asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {"greeting": "hello", "launched": await DBOS.list_workflows() == []}

    app = FastAPI(lifespan=lifespan(config(db_url), app_lifespan))

    @app.get("/state")
    async def read_state(request: Request) -> dict[str, Any]:
        return {"greeting": request.state.greeting, "launched": request.state.launched}

    with TestClient(app) as client:
        assert client.get("/state").json() == {"greeting": "hello", "launched": True}


def test_asgi__shutdown_lets_running_workflows_finish(db_url: str) -> None:
    """The app's shutdown code releases a workflow still running at shutdown; the grace
    period lets it finish instead of handing it over."""

    @contextlib.asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        RELEASE["event"] = asyncio.Event()
        yield
        RELEASE["event"].set()

    app = FastAPI(lifespan=lifespan(config(db_url), app_lifespan))

    @app.post("/wait")
    async def start_waiting() -> str:
        return (await DBOS.start_workflow(asgi_waiting)).workflow_id

    with TestClient(app) as client:
        workflow_id = client.post("/wait").json()

    async def status() -> Any:
        async with DBOS(config(db_url)):
            return await DBOS.get_workflow_status(workflow_id)

    found = asyncio.run(status())
    assert found is not None
    assert (found.status, found.output) == (WorkflowStatusString.SUCCESS, "released")


def test_asgi__failed_launch_destroys_and_raises(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing_launch() -> None:
        raise RuntimeError("database unreachable")

    monkeypatch.setattr(DBOS, "launch", failing_launch)
    app = make_app(lifespan(config(db_url)))
    with pytest.raises(RuntimeError, match="database unreachable"), TestClient(app):
        pass
    monkeypatch.undo()
    # The failed instance was destroyed: a new one can be created and launched.
    app = make_app(lifespan(config(db_url)))
    with TestClient(app) as client:
        assert client.post("/orders/after").json()["result"] == "ran after"


def test_asgi__idempotency_key_is_the_workflow_id(db_url: str) -> None:
    app = make_app(lifespan(config(db_url)))
    headers = {"Idempotency-Key": "order 42/ünïcode".encode()}  # UTF-8 on the wire
    with TestClient(app) as client:
        first = client.post("/orders/a", headers=headers).json()
        again = client.post("/orders/a", headers=headers).json()
        other = client.post("/orders/a").json()
    assert first == again == {"workflow_id": "order 42/ünïcode", "result": "ran a"}
    assert other["workflow_id"] != first["workflow_id"]
    # The same key twice ran the workflow once.
    assert [wf for wf, _ in step_runs] == ["order 42/ünïcode", other["workflow_id"]]


def test_asgi__idempotency_key_in_a_sync_handler(db_url: str) -> None:
    app = make_app(lifespan(config(db_url)))
    with TestClient(app) as client:
        first = client.post("/sync-orders/s", headers={"Idempotency-Key": "sync-1"}).json()
        again = client.post("/sync-orders/s", headers={"Idempotency-Key": "sync-1"}).json()
        plain = client.post("/sync-orders/p").json()
    assert first == again == {"workflow_id": "sync-1", "result": "ran s", "key": "sync-1"}
    assert plain["key"] is None and plain["workflow_id"] != "sync-1"
    assert [wf for wf, _ in step_runs] == ["sync-1", plain["workflow_id"]]


def test_asgi__handler_derives_ids_from_the_key(db_url: str) -> None:
    app = make_app(lifespan(config(db_url)))
    with TestClient(app) as client:
        body = client.post("/many/3", headers={"Idempotency-Key": "batch"}).json()
        again = client.post("/many/3", headers={"Idempotency-Key": "batch"}).json()
    assert body == again
    assert body["ids"] == ["batch:0", "batch:1", "batch:2"]
    assert body["results"] == ["ran part 0", "ran part 1", "ran part 2"]
    assert sorted(str(wf) for wf, _ in step_runs) == ["batch:0", "batch:1", "batch:2"]


def test_asgi__keys_scoped_per_caller_never_reach_each_others_workflows(db_url: str) -> None:
    def per_user(scope: Any, key: str) -> str:
        user = dict(scope["headers"]).get(b"x-user", b"anonymous").decode()
        return f"order:{user}:{key}"

    app = make_app(lifespan(config(db_url)), to_workflow_id=per_user)
    with TestClient(app) as client:
        alice = client.post("/orders/a", headers={"Idempotency-Key": "k1", "X-User": "alice"})
        bob = client.post("/orders/b", headers={"Idempotency-Key": "k1", "X-User": "bob"})
        alice_again = client.post("/orders/a", headers={"Idempotency-Key": "k1", "X-User": "alice"})
        derived = client.post("/many/1", headers={"Idempotency-Key": "k2", "X-User": "bob"})
    assert (
        alice.json() == alice_again.json() == {"workflow_id": "order:alice:k1", "result": "ran a"}
    )
    assert bob.json() == {"workflow_id": "order:bob:k1", "result": "ran b"}
    assert derived.json()["ids"] == ["order:bob:k2:0"]  # current_idempotency_key() is mapped
    assert sorted(wf for wf, _ in step_runs) == ["order:alice:k1", "order:bob:k1", "order:bob:k2:0"]


async def test_asgi__concurrent_requests_with_one_key_run_once(db_url: str) -> None:
    """Through httpx.ASGITransport, with the lifespan entered by hand."""
    app = make_app(lifespan(config(db_url)))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
            responses = await asyncio.gather(
                *(client.post("/orders/c", headers={"Idempotency-Key": "same"}) for _ in range(5))
            )
    assert [r.json() for r in responses] == [{"workflow_id": "same", "result": "ran c"}] * 5
    assert step_runs == [("same", "c")]


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([("Idempotency-Key", "")], "non-empty"),
        ([("Idempotency-Key", "x" * 1001)], "1000 UTF-8 bytes"),
        ([("Idempotency-Key", b"\xff\xfe")], "UTF-8"),
        ([("Idempotency-Key", "a"), ("idempotency-key", "b")], "sent once"),
    ],
)
async def test_asgi__invalid_key_gets_400(headers: list[tuple[str, Any]], reason: str) -> None:
    # No lifespan, no DBOS: the middleware answers before the app is called. (httpx's
    # ASGITransport passes the header bytes as sent; the TestClient re-encodes them.)
    transport = httpx.ASGITransport(app=make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
        response = await client.post("/orders/bad", headers=headers)
    assert response.status_code == 400
    body = response.json()
    assert body["header"] == "Idempotency-Key"
    assert "Idempotency-Key" in body["detail"] and reason in body["detail"]
    assert step_runs == []  # the app was not called


def test_asgi__use_before_startup_explains_the_lifespan() -> None:
    app = make_app()  # no lifespan: DBOS never created
    client = TestClient(app)  # not entered: lifespans would not run anyway
    with pytest.raises(DBOSException) as caught:
        client.post("/orders/early")
    message = str(caught.value)
    assert message.startswith("no DBOS instance: create DBOS(config) and await DBOS.launch()")
    assert "lifespan=dbos_async.asgi.lifespan(config)" in message
    assert "with TestClient(app)" in message


def test_asgi__arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="DBOSConfig"):
        lifespan("sqlite:///x.sqlite")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="app_lifespan"):
        lifespan({}, app_lifespan=42)  # type: ignore[arg-type]
    for bad in (-1, float("nan"), "10", True):
        with pytest.raises(ValueError, match="workflow_completion_timeout_sec"):
            lifespan({}, workflow_completion_timeout_sec=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="header"):
        IdempotencyKeyMiddleware(make_app(), header="")
    with pytest.raises(ValueError, match="header"):
        IdempotencyKeyMiddleware(make_app(), header="Idempotency Key")
    with pytest.raises(TypeError, match="to_workflow_id"):
        IdempotencyKeyMiddleware(make_app(), to_workflow_id="prefix")  # type: ignore[arg-type]


def test_asgi__app_lifespan_must_return_a_context_manager(tmp_path: Any) -> None:
    async def generator(app: Any) -> AsyncIterator[None]:
        yield

    not_a_manager: Any = generator  # forgot @asynccontextmanager
    app = FastAPI(lifespan=lifespan(config(f"sqlite:///{tmp_path / 'd.sqlite'}"), not_a_manager))
    with pytest.raises(TypeError, match="asynccontextmanager"), TestClient(app):
        pass
    # DBOS was destroyed on the way out.
    with pytest.raises(DBOSException, match="no DBOS instance"):
        asyncio.run(DBOS.get_workflow_status("anything"))
