"""The dashboard's ASGI app (Starlette): routes, filters, actions, headers.

``dashboard_app`` builds it; mount it in an app (``app.mount("/dbos", dashboard_app())``)
or serve it alone (``dbos-async dashboard``). Pages are read with GET; actions are POSTs
checked by ``_security.Guard``; every response carries a strict Content-Security-Policy
(scripts and styles from the app itself only), so even a value that slipped through
escaping could not run.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .._clock import now_ms
from .._errors import DBOSException
from .._ids import check_text, check_workflow_id
from .._management import to_epoch_ms
from ..client import DBOSClient
from ._data import (
    ClientSource,
    ListFilters,
    ProcessSource,
    Source,
    list_rows,
    queue_views,
    workflow_detail,
)
from ._fleet_views import executors_page, queues_page
from ._layout import Frame, error_page, login_page
from ._list_view import STATUSES, list_page
from ._security import COOKIE, SESSION_SECONDS, Guard, same_origin
from ._workflow_view import workflow_page

__all__ = ["ENV_TOKEN", "dashboard_app"]

ENV_TOKEN = "DBOS_DASHBOARD_TOKEN"
"""The environment variable ``dashboard_app`` reads the token from when given none."""
STATIC = Path(__file__).parent / "static"
#: The queue page's chart: starts per minute over the last 15 minutes.
PERIOD_S = 60
PERIODS = 15
#: What the page says after an action (the redirect names it by code).
DONE = {
    "cancel": "Cancelled.",
    "resume": "Resumed.",
    "fork": "Forked: this is the new workflow (its source is under 'Forked from').",
}
#: How long a failed login waits before it answers (seconds).
FAILED_LOGIN_PAUSE = 0.5
#: The largest form body an action accepts.
MAX_FORM = 16 * 1024

_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _SecurityHeaders:
    """Adds the security headers to every response of the app."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BadFilter(ValueError):
    """A filter of the list page that cannot be used (shown on the page, status 400)."""


def _time_filter(text: str, what: str) -> int | None:
    """A time field (``datetime-local``: no zone, read as UTC; or ISO 8601 with one)."""
    text = text.strip()
    if not text:
        return None
    try:
        return to_epoch_ms(text, what)
    except ValueError:
        raise BadFilter(f"{what} {text!r} is not a time (YYYY-MM-DDTHH:MM:SS, UTC)") from None


def _text_filter(request: Request, key: str, what: str) -> str | None:
    value = request.query_params.get(key, "").strip()
    if not value:
        return None
    try:
        check_text(value, what)
    except (TypeError, ValueError) as exc:
        raise BadFilter(str(exc)) from None
    return value


def parse_filters(request: Request, page_size: int) -> ListFilters:
    """The list page's filters from the query string; ``BadFilter`` names a bad one."""
    statuses = request.query_params.getlist("status")
    for status in statuses:
        if status not in STATUSES:
            raise BadFilter(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    page_text = request.query_params.get("page", "0").strip() or "0"
    if not page_text.isdigit():
        raise BadFilter(f"page must be a non-negative integer, got {page_text!r}")
    filters = ListFilters(
        statuses=statuses or None,
        name=_text_filter(request, "name", "name"),
        queue_name=_text_filter(request, "queue", "queue"),
        prefix=_text_filter(request, "prefix", "ID prefix"),
        start_ms=_time_filter(request.query_params.get("from", ""), "created from"),
        end_ms=_time_filter(request.query_params.get("to", ""), "created to"),
        page=int(page_text),
        page_size=page_size,
    )
    start, end = filters.start_ms, filters.end_ms
    if start is not None and end is not None and start > end:
        raise BadFilter("'created from' is after 'to'")
    return filters


async def _form(request: Request) -> dict[str, str]:
    """A URL-encoded form body (the first value of each field)."""
    body = await request.body()
    if len(body) > MAX_FORM:
        return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


class _Dashboard:
    """The app's state: where data comes from, the guard, and the display options."""

    def __init__(
        self,
        source: Source,
        guard: Guard,
        *,
        show_values: bool,
        refresh: float,
        page_size: int,
        title: str,
    ) -> None:
        self.source = source
        self.guard = guard
        self.show_values = show_values
        self.refresh = refresh
        self.page_size = page_size
        self.title = title

    def frame(self, request: Request, message: str | None = None) -> Frame:
        nonce = self.guard.session_nonce(request)
        return Frame(
            base=str(request.scope.get("root_path", "")).rstrip("/"),
            title=self.title,
            can_act=self.guard.enabled,
            logged_in=nonce is not None,
            csrf=self.guard.csrf_token(nonce) if nonce is not None else None,
            show_values=self.show_values,
            refresh_seconds=self.refresh,
            now_ms=now_ms(),
            # (Only the app's own messages, by code: a link cannot put words on the page.)
            message=message
            if message is not None
            else DONE.get(request.query_params.get("done", "")),
        )

    async def unavailable(self, request: Request, exc: Exception) -> Response:
        """A page that cannot be read (no DBOS launched here, a value that cannot be
        read): what went wrong, as a page (503)."""
        message = exc.message if isinstance(exc, DBOSException) else str(exc)
        page = error_page(self.frame(request, ""), "Unavailable", message)
        return HTMLResponse(page, 503)

    # -- pages -------------------------------------------------------------------------

    async def workflows(self, request: Request) -> Response:
        try:
            filters = parse_filters(request, self.page_size)
        except BadFilter as exc:
            frame = self.frame(request, f"Bad filter: {exc}")
            return HTMLResponse(list_page(frame, ListFilters(), [], False), 400)
        rows, has_next = await list_rows(await self.source.runtime(), filters)
        return HTMLResponse(list_page(self.frame(request), filters, rows, has_next))

    async def workflow(self, request: Request) -> Response:
        workflow_id = request.query_params.get("id", "")
        frame = self.frame(request)
        try:
            check_workflow_id(workflow_id, "id")
        except (TypeError, ValueError) as exc:
            return HTMLResponse(error_page(frame, "Bad workflow ID", str(exc)), 400)
        rt = await self.source.runtime()
        detail = await workflow_detail(rt, workflow_id, self.show_values)
        if detail is None:
            text = f"No workflow has the ID {workflow_id!r}."
            return HTMLResponse(error_page(frame, "Unknown workflow", text), 404)
        return HTMLResponse(workflow_page(frame, detail))

    async def queues(self, request: Request) -> Response:
        frame = self.frame(request)
        views = await queue_views(
            await self.source.runtime(), frame.now_ms, PERIOD_S * 1000, PERIODS
        )
        return HTMLResponse(queues_page(frame, views, PERIOD_S))

    async def executors(self, request: Request) -> Response:
        return HTMLResponse(executors_page(self.frame(request), await self.source.executors()))

    # -- login -------------------------------------------------------------------------

    def _next(self, request: Request, value: str) -> str:
        """Where to go after logging in: a path of this app only (no open redirect)."""
        base = str(request.scope.get("root_path", "")).rstrip("/")
        if value.startswith(f"{base}/") and not value.startswith("//") and "\\" not in value:
            return value
        return f"{base}/"

    async def login_form(self, request: Request) -> Response:
        frame = self.frame(request)
        if not self.guard.enabled:
            text = "This dashboard is read-only: it was started without a token."
            return HTMLResponse(error_page(frame, "Read-only", text), 404)
        next_url = self._next(request, request.query_params.get("next", ""))
        return HTMLResponse(login_page(frame, next_url, failed=False))

    async def login(self, request: Request) -> Response:
        frame = self.frame(request)
        if not self.guard.enabled:
            text = "This dashboard is read-only: it was started without a token."
            return HTMLResponse(error_page(frame, "Read-only", text), 403)
        if not same_origin(request):
            text = "The login form was posted from another site."
            return HTMLResponse(error_page(frame, "Refused", text), 403)
        form = await _form(request)
        next_url = self._next(request, form.get("next", ""))
        if not self.guard.token_matches(form.get("token", "")):
            await asyncio.sleep(FAILED_LOGIN_PAUSE)  # guessing tokens through the form is slow
            return HTMLResponse(login_page(frame, next_url, failed=True), 403)
        response = RedirectResponse(next_url, 303)
        response.set_cookie(
            COOKIE,
            self.guard.new_session(),
            max_age=SESSION_SECONDS,
            path=f"{frame.base}/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request) -> Response:
        form = await _form(request)
        refusal = self.guard.check_action(request, form.get("csrf"))
        if refusal is not None:
            frame = self.frame(request)
            return HTMLResponse(error_page(frame, "Refused", refusal), 403)
        self.guard.end_session(request)
        frame = self.frame(request)
        response = RedirectResponse(f"{frame.base}/", 303)
        response.delete_cookie(COOKIE, path=f"{frame.base}/")
        return response

    # -- actions -----------------------------------------------------------------------

    async def action(self, request: Request) -> Response:
        action = request.path_params["action"]
        form = await _form(request)
        frame = self.frame(request)
        refusal = self.guard.check_action(request, form.get("csrf"))
        if refusal is not None:
            return HTMLResponse(error_page(frame, "Refused", refusal), 403)
        workflow_id = form.get("id", "")
        try:
            check_workflow_id(workflow_id, "id")
            if action == "cancel":
                await self.source.cancel(workflow_id)
                target, done = workflow_id, "cancel"
            elif action == "resume":
                await self.source.resume(workflow_id)
                target, done = workflow_id, "resume"
            elif action == "fork":
                step_text = form.get("step", "1").strip() or "1"
                if not step_text.isdigit() or int(step_text) < 1:
                    raise ValueError(f"the fork's step must be a number from 1, got {step_text!r}")
                target = await self.source.fork(workflow_id, int(step_text))
                done = "fork"
            else:
                text = f"No action {action!r} (cancel, resume or fork)."
                return HTMLResponse(error_page(frame, "Unknown action", text), 404)
        except (TypeError, ValueError, DBOSException) as exc:
            message = exc.message if isinstance(exc, DBOSException) else str(exc)
            return HTMLResponse(error_page(frame, f"Cannot {action}", message), 400)
        return RedirectResponse(
            frame.url("/workflow", ("id", target), ("done", done)), status_code=303
        )


def dashboard_app(
    client: DBOSClient | None = None,
    *,
    token: str | None = None,
    show_values: bool = False,
    refresh_seconds: float = 5.0,
    page_size: int = 50,
    title: str = "dbos_async",
) -> Starlette:
    """The dashboard as an ASGI app (needs the ``dashboard`` extra: Starlette).

    ``client``: read through this ``DBOSClient``; without one, through the ``DBOS``
    launched in this process (mount the dashboard in the app DBOS runs in). ``token``
    (default: env ``DBOS_DASHBOARD_TOKEN``) enables cancel, resume and fork for whoever
    logs in with it (or sends ``Authorization: Bearer <token>``); without one the
    dashboard is read-only. ``show_values`` shows inputs, outputs, event and stream
    values (off by default: they may hold personal data). ``refresh_seconds``: how
    often pages refresh themselves while their "live" box is ticked; ``page_size``:
    how many workflows a page of the list shows.
    """
    if token is None:
        token = os.environ.get(ENV_TOKEN) or None
    guard = Guard(token)
    if isinstance(refresh_seconds, bool) or not isinstance(refresh_seconds, (int, float)):
        raise TypeError(f"refresh_seconds must be a number, got {refresh_seconds!r}")
    if refresh_seconds < 0.5:
        raise ValueError(f"refresh_seconds must be at least 0.5, got {refresh_seconds!r}")
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise ValueError(f"page_size must be a positive integer, got {page_size!r}")
    check_text(title, "title")
    source: Source = ClientSource(client) if client is not None else ProcessSource()
    board = _Dashboard(
        source,
        guard,
        show_values=bool(show_values),
        refresh=float(refresh_seconds),
        page_size=page_size,
        title=title,
    )
    app = Starlette(
        routes=[
            Route("/", board.workflows, methods=["GET"]),
            Route("/workflow", board.workflow, methods=["GET"]),
            Route("/queues", board.queues, methods=["GET"]),
            Route("/executors", board.executors, methods=["GET"]),
            Route("/login", board.login_form, methods=["GET"]),
            Route("/login", board.login, methods=["POST"]),
            Route("/logout", board.logout, methods=["POST"]),
            Route("/actions/{action}", board.action, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers={DBOSException: board.unavailable},
    )
    app.add_middleware(_SecurityHeaders)
    app.state.can_act = guard.enabled
    return app
