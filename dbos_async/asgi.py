"""DBOS in an ASGI web app (FastAPI, Starlette, or any ASGI framework): pure ASGI, so
importing this module needs neither Starlette nor FastAPI.

- ``lifespan(config)`` launches DBOS with the app and destroys it, gracefully, at
  shutdown: ``FastAPI(lifespan=lifespan(config))``.
- ``IdempotencyKeyMiddleware`` turns a request's ``Idempotency-Key`` header into the ID
  of the first workflow its handler starts, so a retried request never runs it twice.
- ``current_idempotency_key()`` reads that key inside a handler.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from typing import Any, Protocol

from dbos_async import DBOS, DBOSConfig, SetWorkflowID
from dbos_async._clock import is_seconds

__all__ = ["IdempotencyKeyMiddleware", "Lifespan", "current_idempotency_key", "lifespan"]

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]
_ASGIApp = Callable[[_Scope, _Receive, _Send], Awaitable[None]]


class Lifespan(Protocol):
    """What ``FastAPI(lifespan=...)`` and ``Starlette(lifespan=...)`` take: a callable that
    gets the app and returns an async context manager (which may yield a state mapping),
    such as a function decorated with ``contextlib.asynccontextmanager``."""

    def __call__(self, app: Any, /) -> AbstractAsyncContextManager[Any]: ...


def lifespan(
    config: DBOSConfig | Mapping[str, Any] | None,
    app_lifespan: Lifespan | None = None,
    *,
    workflow_completion_timeout_sec: float = 10.0,
) -> Lifespan:
    """A lifespan that runs DBOS with the app: pass it as ``FastAPI(lifespan=...)`` or
    ``Starlette(lifespan=...)``.

    At startup it creates ``DBOS(config)`` and launches it (if the launch fails, the
    instance is destroyed and the error propagates, so the server does not start), then
    enters ``app_lifespan(app)`` if given: the app's own startup code runs with DBOS
    already launched (it may run transactions, start workflows, create tables), and the
    state it yields, if any, is what this lifespan yields (Starlette's ``request.state``).

    At shutdown it leaves ``app_lifespan`` first (the app's shutdown code still has DBOS),
    then awaits ``DBOS.destroy(workflow_completion_timeout_sec=...)``: the workflows running
    in this process get that many seconds to finish; those still running then stay
    PENDING and a live process of the same application version takes them over at once
    (or this application's next launch recovers them).

    Args:
        config: the ``DBOSConfig`` (a mapping), or None for the defaults (env
            ``DBOS_DATABASE_URL``, else a SQLite file).
        app_lifespan: the app's own lifespan, a callable taking the app and returning an
            async context manager (e.g. an ``@asynccontextmanager`` function).
        workflow_completion_timeout_sec: the grace period at shutdown (non-negative).
    """
    if config is not None and not isinstance(config, Mapping):
        raise TypeError(
            "lifespan(config) needs a DBOSConfig (a dict such as "
            f"{{'database_url': ...}}) or None, got {type(config).__name__} {config!r}"
        )
    if app_lifespan is not None and not callable(app_lifespan):
        raise TypeError(
            "lifespan(config, app_lifespan) needs app_lifespan to be a callable taking the app "
            "and returning an async context manager (e.g. an @asynccontextmanager function), "
            f"got {type(app_lifespan).__name__} {app_lifespan!r}"
        )
    grace = workflow_completion_timeout_sec
    if not is_seconds(grace):
        raise ValueError(
            "lifespan(workflow_completion_timeout_sec=...) must be a non-negative number of "
            f"seconds, got {grace!r}"
        )
    dbos_config = None if config is None else dict(config)

    @contextlib.asynccontextmanager
    async def run(app: Any) -> AsyncIterator[Any]:
        DBOS(dbos_config)
        try:
            await DBOS.launch()
        except BaseException:
            await DBOS.destroy()
            raise
        try:
            if app_lifespan is None:
                yield None
            else:
                async with _enter(app_lifespan, app) as state:
                    yield state
        finally:
            await DBOS.destroy(workflow_completion_timeout_sec=grace)

    return run


def _enter(app_lifespan: Lifespan, app: Any) -> AbstractAsyncContextManager[Any]:
    manager = app_lifespan(app)
    if not (hasattr(manager, "__aenter__") and hasattr(manager, "__aexit__")):
        hint = (
            " (an async generator function needs @contextlib.asynccontextmanager)"
            if hasattr(manager, "asend")
            else ""
        )
        raise TypeError(
            f"app_lifespan(app) must return an async context manager{hint}, got "
            f"{type(manager).__name__} {manager!r}"
        )
    return manager


_idempotency_key: ContextVar[str | None] = ContextVar("dbos_async_idempotency_key", default=None)


def current_idempotency_key() -> str | None:
    """The idempotency key of the request being handled, as the workflow ID it maps to
    (set by ``IdempotencyKeyMiddleware``: the key itself unless its ``to_workflow_id``
    maps it), or None outside such a request or when it carried no key. A handler that
    starts several workflows derives their IDs from it, e.g.
    ``with SetWorkflowID(f"{key}:{i}"):``."""
    return _idempotency_key.get()


class IdempotencyKeyMiddleware:
    """Pure ASGI middleware: for an HTTP request that carries the header (default
    ``Idempotency-Key``), the first workflow its handler starts, calls or enqueues gets
    the key as its workflow ID (through ``SetWorkflowID``), so the same request sent twice
    runs that workflow once; the second gets the first one's handle or result.

    This holds for ``async def`` handlers and for plain ``def`` handlers that Starlette
    runs in its thread pool (the ID travels in a context variable, which the thread pool
    and ``anyio.from_thread.run`` carry along). Only the first workflow gets the key; a
    handler that starts several reads ``current_idempotency_key()`` to derive the others'
    IDs.

    A key that is not a valid workflow ID (empty, control characters, longer than 1000
    UTF-8 bytes, not UTF-8) or a header sent twice gets a 400 response with a JSON body
    ``{"detail": ..., "header": ...}`` naming the header and what was wrong; the app is
    not called. Requests without the header, and non-HTTP traffic, pass through untouched.

    Workflow IDs are global to the database, so by default any client that sends a key
    equal to an existing workflow's ID gets that workflow's handle (and, if the handler
    awaits it, its result). Where clients must not reach each other's workflows, or keys
    could collide with other IDs, pass ``to_workflow_id(scope, key) -> str`` to scope
    them: for example by the authenticated caller (from the ASGI ``scope``, such as a
    hash of its credentials) and the route, ``f"checkout:{user}:{key}"``. What it returns
    must be a valid workflow ID (else the request gets the 400 above).

    ``app = IdempotencyKeyMiddleware(app)``, or with FastAPI/Starlette
    ``app.add_middleware(IdempotencyKeyMiddleware)``.
    """

    def __init__(
        self,
        app: _ASGIApp,
        header: str = "Idempotency-Key",
        *,
        to_workflow_id: Callable[[_Scope, str], str] | None = None,
    ) -> None:
        if not callable(app):
            raise TypeError(f"IdempotencyKeyMiddleware(app) needs an ASGI app, got {app!r}")
        if not isinstance(header, str) or not header or not header.isascii():
            raise ValueError(
                "IdempotencyKeyMiddleware(header=...) must be a non-empty ASCII header name, "
                f"got {header!r}"
            )
        if any(c.isspace() or c == ":" for c in header):
            raise ValueError(
                "IdempotencyKeyMiddleware(header=...) must be a header name without spaces "
                f"or colons, got {header!r}"
            )
        if to_workflow_id is not None and not callable(to_workflow_id):
            raise TypeError(
                "IdempotencyKeyMiddleware(to_workflow_id=...) must be a function "
                f"(scope, key) -> workflow ID, got {to_workflow_id!r}"
            )
        self.app = app
        self.header = header
        self.to_workflow_id = to_workflow_id
        self._raw_name = header.lower().encode("ascii")

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        values = [v for k, v in scope.get("headers", ()) if k.lower() == self._raw_name]
        if not values:
            await self.app(scope, receive, send)
            return
        if len(values) > 1:
            await self._reject(send, f"the {self.header} header must be sent once, not twice")
            return
        try:
            key = bytes(values[0]).decode("utf-8")
        except UnicodeDecodeError:
            await self._reject(send, f"the {self.header} header must be UTF-8 text")
            return
        if self.to_workflow_id is not None:
            key = self.to_workflow_id(scope, key)
        try:
            assign = SetWorkflowID(key)
        except (TypeError, ValueError) as exc:
            reason = str(exc).replace("SetWorkflowID(workflow_id)", "the key")
            await self._reject(send, f"the {self.header} header is used as a workflow ID: {reason}")
            return
        token = _idempotency_key.set(key)
        try:
            with assign:
                await self.app(scope, receive, send)
        finally:
            _idempotency_key.reset(token)

    async def _reject(self, send: _Send, detail: str) -> None:
        body = json.dumps({"detail": detail, "header": self.header}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
