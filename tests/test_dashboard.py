"""The dashboard over HTTP (in process, through httpx's ASGI transport), on both backends:
what each page shows, the filters, escaping, the token, the CSRF defences, and the
dashboard mounted in a FastAPI app that launched DBOS or served from a DBOSClient.

The browser tests (test_dashboard_browser.py) drive the same pages in Chromium.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI

from dbos_async import DBOS, DBOSClient, WorkflowStatusString
from dbos_async.dashboard import _security, dashboard_app
from dbos_async.dashboard._html import Markup, escape
from dbos_async.dashboard._html import html as render
from dbos_async.dashboard._timeline import build_timeline, render_timeline
from dbos_async.sysdb import StepRow, WorkflowRow
from tests.dashboard_app import (
    SCRIPT_ID,
    SCRIPT_OUTPUT,
    Populated,
    populate,
    queue_declared,
    wait_status,
)

TOKEN = "test-token-0123456789"
BASE = "http://dash.test"


@pytest.fixture(autouse=True)
def _queue() -> Iterator[None]:
    with queue_declared():
        yield


@pytest.fixture
async def data(dbos: DBOS) -> AsyncIterator[Populated]:
    populated = await populate()
    yield populated
    await DBOS.cancel_workflow(populated.blocked)


def _http(app: object, **kwargs: object) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url=BASE, **kwargs)  # type: ignore[arg-type]


def listed(page: str) -> list[str]:
    """The workflow IDs of a list page, in order (unescaped)."""
    return [html.unescape(m) for m in re.findall(r'data-workflow-id="([^"]*)"', page)]


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None, "no CSRF field on the page"
    return match.group(1)


async def login(client: httpx.AsyncClient, prefix: str = "") -> None:
    response = await client.post(
        f"{prefix}/login", data={"token": TOKEN, "next": f"{prefix}/"}, headers={"Origin": BASE}
    )
    assert response.status_code == 303, response.text
    assert "dbos_dashboard_session" in response.headers["set-cookie"]
    assert "HttpOnly" in response.headers["set-cookie"]
    assert "SameSite=strict" in response.headers["set-cookie"]


# -- the escaping helper ---------------------------------------------------------------


def test_html__escapes_every_value_but_markup() -> None:
    assert render("<td>{}</td>", "<b>&'\"") == "<td>&lt;b&gt;&amp;&#x27;&quot;</td>"
    assert render("<td>{x}</td>", x=Markup("<b>ok</b>")) == "<td><b>ok</b></td>"
    assert escape(None) == ""
    assert isinstance(render("{}", 1), Markup)


# -- the list --------------------------------------------------------------------------


async def test_list__shows_workflows_newest_first(data: Populated) -> None:
    async with _http(dashboard_app()) as client:
        page = (await client.get("/")).text
    ids = listed(page)
    for workflow_id in [*data.orders, data.failed, data.html, data.blocked, *data.queued]:
        assert workflow_id in ids
    assert ids.index(data.blocked) < ids.index(data.orders[0])  # newest first


async def test_list__filters_narrow_it(data: Populated) -> None:
    async with _http(dashboard_app()) as client:

        async def ids(**params: object) -> list[str]:
            response = await client.get("/", params=params)  # type: ignore[arg-type]
            assert response.status_code == 200, response.text
            return listed(response.text)

        everything = await ids()
        assert set(await ids(prefix="order-")) == {w for w in everything if w.startswith("order-")}
        assert set(await ids(prefix="order-")) >= {"order-1", "order-2"}
        assert await ids(status="ERROR") == [data.failed]
        assert await ids(status="PENDING") == [data.blocked]
        assert set(await ids(status=["ERROR", "PENDING"])) == {data.failed, data.blocked}
        assert set(await ids(name="dash_order")) == set(data.orders)
        assert set(await ids(queue="dash_queue")) == set(data.queued)
        assert await ids(name="dash_order", prefix="order-2") == ["order-2"]
        assert await ids(**{"from": "2000-01-01T00:00:00", "to": "2000-01-02T00:00:00"}) == []
        assert len(await ids(**{"from": "2000-01-01T00:00:00"})) == len(await ids())


async def test_list__bad_filters_are_named(data: Populated) -> None:
    async with _http(dashboard_app()) as client:
        response = await client.get("/", params={"status": "DONE"})
        assert response.status_code == 400
        assert "unknown status &#x27;DONE&#x27;" in response.text
        response = await client.get("/", params={"from": "yesterday"})
        assert response.status_code == 400 and "created from" in response.text
        response = await client.get("/", params={"page": "-1"})
        assert response.status_code == 400 and "page must be" in response.text


async def test_list__pages(dbos: DBOS) -> None:
    from tests.dashboard_app import dash_quick

    for i in range(5):
        await dash_quick(i)
    async with _http(dashboard_app(page_size=2)) as client:
        first = (await client.get("/")).text
        second = (await client.get("/", params={"page": 1})).text
        third = (await client.get("/", params={"page": 2})).text
    assert len(listed(first)) == 2 and 'rel="next"' in first and 'rel="prev"' not in first
    assert len(listed(third)) == 1 and 'rel="next"' not in third and 'rel="prev"' in third
    assert len(set(listed(first) + listed(second) + listed(third))) == 5


# -- escaping --------------------------------------------------------------------------


async def test_escaping__an_id_and_an_output_holding_html_show_as_text(data: Populated) -> None:
    async with _http(dashboard_app(show_values=True)) as client:
        listing = (await client.get("/")).text
        page = (await client.get("/workflow", params={"id": SCRIPT_ID})).text
        failed = (await client.get("/workflow", params={"id": data.failed})).text
    for text in (listing, page):
        assert "<script>alert" not in text
        assert html.escape(SCRIPT_ID) in text
    assert "<img" not in page and html.escape(SCRIPT_OUTPUT[:15]) in page  # (JSON-quoted)
    assert "<b>broken</b>" not in failed and "&lt;b&gt;broken&lt;/b&gt;" in failed


async def test_headers__forbid_inline_scripts_and_framing(data: Populated) -> None:
    async with _http(dashboard_app()) as client:
        response = await client.get("/")
        static = await client.get("/static/dashboard.js")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert static.status_code == 200 and "live-region" in static.text
    assert "content-security-policy" in static.headers
    assert "<script>" not in response.text.replace('<script src="/static/dashboard.js"', "")


# -- the workflow page ---------------------------------------------------------------


async def test_workflow__timeline_draws_every_step(data: Populated) -> None:
    async with _http(dashboard_app()) as client:
        page = (await client.get("/workflow", params={"id": "order-1"})).text
    steps = await DBOS.list_workflow_steps("order-1")
    drawn = re.findall(r'<g class="tl-row" data-step="(\d+)" data-kind="(\w+)"', page)
    assert [int(s) for s, _ in drawn] == [s.function_id for s in steps]
    kinds = {s.function_name: kind for (_, kind), s in zip(drawn, steps, strict=True)}
    assert kinds["dash_add"] == "step" and kinds["DBOS.sleep"] == "sleep"
    assert kinds["dash_child"] == "child" and kinds["DBOS.recv"] == "wait"
    assert kinds["DBOS.setEvent"] == "message" and kinds["DBOS.writeStream"] == "stream"
    child = next(s.child_workflow_id for s in steps if s.child_workflow_id)
    assert f'href="/workflow?id={child}"' in page  # the child is a link
    assert "progress" in page and "lines" in page  # the event and the stream
    assert "Values are hidden" in page and "line 2" not in page


async def test_workflow__values_only_when_enabled(data: Populated) -> None:
    async with _http(dashboard_app(show_values=True)) as client:
        page = (await client.get("/workflow", params={"id": "order-1"})).text
    assert "line 2" in page  # the stream value
    assert "&quot;done&quot;: 2" in page  # the event value
    assert 'id="input"' in page and 'id="output"' in page


async def test_workflow__error_and_unknown_id(data: Populated) -> None:
    async with _http(dashboard_app()) as client:
        failed = (await client.get("/workflow", params={"id": data.failed})).text
        unknown = await client.get("/workflow", params={"id": "no-such"})
        bad = await client.get("/workflow", params={"id": ""})
    assert 'data-kind="error"' in failed and "ValueError" in failed
    assert "DBOSMaxStepRetriesExceeded: step &#x27;dash_explode&#x27; failed 2 times" in failed
    assert unknown.status_code == 404 and "no-such" in unknown.text
    assert bad.status_code == 400 and "id must be" in bad.text


# -- queues and executors ----------------------------------------------------------------


async def test_queues__counts_limits_and_starts(data: Populated) -> None:
    async with _http(dashboard_app()) as client:
        page = (await client.get("/queues")).text
    row = re.search(r'<tr class="queue" data-queue="dash_queue">(.*?)</tr>', page, re.S)
    assert row is not None, page
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    assert cells[1:3] == ["0", "0"]  # enqueued, running
    assert "concurrency 4" in cells[3]
    assert cells[4] == str(len(data.queued))  # started lately
    assert cells[5].startswith("<svg")


async def test_executors__this_process_alive(data: Populated) -> None:
    async with _http(dashboard_app()) as client:
        page = (await client.get("/executors")).text
    assert '<tr class="executor" data-alive="yes">' in page
    assert "local" in page


# -- the token and CSRF ------------------------------------------------------------------


async def test_read_only__actions_refused_and_buttons_disabled(
    data: Populated, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DBOS_DASHBOARD_TOKEN", raising=False)
    async with _http(dashboard_app()) as client:
        page = (await client.get("/workflow", params={"id": data.blocked})).text
        response = await client.post(
            "/actions/cancel", data={"id": data.blocked}, headers={"Origin": BASE}
        )
        bearer = await client.post(
            "/actions/cancel",
            data={"id": data.blocked},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert (await client.get("/login")).status_code == 404
    assert 'disabled title="read-only: no token configured" data-action="cancel"' in page
    assert response.status_code == 403 and "read-only" in response.text
    assert bearer.status_code == 403
    assert (await DBOS.get_workflow_status(data.blocked)).status == "PENDING"  # type: ignore[union-attr]


async def test_token__login_then_cancel_and_resume(data: Populated) -> None:
    async with _http(dashboard_app(token=TOKEN)) as client:
        page = (await client.get("/workflow", params={"id": data.blocked})).text
        assert 'title="log in to act" data-action="cancel"' in page
        wrong = await client.post("/login", data={"token": "nope"}, headers={"Origin": BASE})
        assert wrong.status_code == 403 and "Wrong token" in wrong.text
        await login(client)
        page = (await client.get("/workflow", params={"id": data.blocked})).text
        csrf = csrf_of(page)
        response = await client.post(
            "/actions/cancel",
            data={"id": data.blocked, "csrf": csrf},
            headers={"Origin": BASE, "Sec-Fetch-Site": "same-origin"},
        )
        assert response.status_code == 303
        assert response.headers["location"].startswith("/workflow?id=blocked-1")
        assert (await DBOS.get_workflow_status(data.blocked)).status == "CANCELLED"  # type: ignore[union-attr]
        page = (await client.get(response.headers["location"])).text
        assert "Cancelled." in page and 'data-action="resume"' in page
        response = await client.post(
            "/actions/resume", data={"id": data.blocked, "csrf": csrf}, headers={"Origin": BASE}
        )
        assert response.status_code == 303
    await wait_status(data.blocked, WorkflowStatusString.PENDING)


async def test_csrf__cross_site_and_tokenless_posts_refused(data: Populated) -> None:
    async with _http(dashboard_app(token=TOKEN)) as client:
        await login(client)
        csrf = csrf_of((await client.get("/workflow", params={"id": data.blocked})).text)
        attempts = [
            ({"id": data.blocked}, {"Origin": BASE}),  # no CSRF field
            ({"id": data.blocked, "csrf": "f" * 64}, {"Origin": BASE}),  # a wrong one
            ({"id": data.blocked, "csrf": csrf}, {"Origin": "http://evil.example"}),
            ({"id": data.blocked, "csrf": csrf}, {"Sec-Fetch-Site": "cross-site"}),
            ({"id": data.blocked, "csrf": csrf}, {"Origin": "null"}),
        ]
        for form, headers in attempts:
            response = await client.post("/actions/cancel", data=form, headers=headers)
            assert response.status_code == 403, (form, headers)
        cross_login = await client.post(
            "/login", data={"token": TOKEN}, headers={"Origin": "http://evil.example"}
        )
        assert cross_login.status_code == 403
    async with _http(dashboard_app(token=TOKEN)) as stranger:  # no session cookie
        response = await stranger.post(
            "/actions/cancel", data={"id": data.blocked, "csrf": csrf}, headers={"Origin": BASE}
        )
        assert response.status_code == 403 and "log in" in response.text
    assert (await DBOS.get_workflow_status(data.blocked)).status == "PENDING"  # type: ignore[union-attr]


async def test_token__bearer_header_and_fork(data: Populated) -> None:
    async with _http(dashboard_app(token=TOKEN)) as client:
        bad = await client.post(
            "/actions/fork", data={"id": "order-1"}, headers={"Authorization": "Bearer wrong"}
        )
        assert bad.status_code == 403
        response = await client.post(
            "/actions/fork",
            data={"id": "order-1", "step": "3"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert response.status_code == 303, response.text
        new_id = httpx.URL(response.headers["location"]).params["id"]
        assert new_id != "order-1"
        no_step = await client.post(
            "/actions/fork",
            data={"id": "order-1", "step": "0"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert no_step.status_code == 400 and "step" in no_step.text
    await wait_status(new_id, WorkflowStatusString.SUCCESS)
    assert (await DBOS.get_workflow_status(new_id)).forked_from == "order-1"  # type: ignore[union-attr]


async def test_login__never_redirects_elsewhere(data: Populated) -> None:
    async with _http(dashboard_app(token=TOKEN)) as client:
        for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
            response = await client.post(
                "/login", data={"token": TOKEN, "next": target}, headers={"Origin": BASE}
            )
            assert response.headers["location"] == "/", target


def test_token__too_short_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 8 characters"):
        dashboard_app(token="short")
    with pytest.raises(ValueError, match="refresh_seconds"):
        dashboard_app(refresh_seconds=0.1)


# -- where it runs ---------------------------------------------------------------------


async def test_mounted__in_a_fastapi_app_links_carry_the_prefix(data: Populated) -> None:
    app = FastAPI()
    app.mount("/dbos", dashboard_app(token=TOKEN))
    async with _http(app) as client:
        page = (await client.get("/dbos/")).text
        assert 'href="/dbos/workflow?id=order-1"' in page
        assert 'href="/dbos/static/dashboard.css"' in page
        assert (await client.get("/dbos/static/dashboard.css")).status_code == 200
        await login(client, "/dbos")
        csrf = csrf_of((await client.get("/dbos/workflow", params={"id": data.blocked})).text)
        response = await client.post(
            "/dbos/actions/cancel",
            data={"id": data.blocked, "csrf": csrf},
            headers={"Origin": BASE},
        )
        assert response.status_code == 303
        assert response.headers["location"].startswith("/dbos/workflow?id=")
    await wait_status(data.blocked, WorkflowStatusString.CANCELLED)


async def test_client__a_dashboard_on_a_dbos_client(db_url: str, data: Populated) -> None:
    client = DBOSClient(db_url)
    try:
        async with _http(dashboard_app(client, token=TOKEN)) as http:
            assert set(data.orders) <= set(listed((await http.get("/")).text))
            page = (await http.get("/workflow", params={"id": "order-2"})).text
            assert page.count('class="tl-row"') == data.order_steps
            response = await http.post(
                "/actions/cancel",
                data={"id": data.blocked},
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
            assert response.status_code == 303
        await wait_status(data.blocked, WorkflowStatusString.CANCELLED)
    finally:
        await client.destroy()


async def test_list_workflows__id_prefix(data: Populated) -> None:
    found = await DBOS.list_workflows(workflow_id_prefix="order-")
    assert {w.workflow_id for w in found} >= set(data.orders)
    assert all(w.workflow_id.startswith("order-") for w in found)
    assert await DBOS.list_workflows(workflow_id_prefix="<script") != []
    assert await DBOS.list_workflows(workflow_id_prefix="%") == []  # no pattern matching
    with pytest.raises(TypeError, match="workflow_id_prefix"):
        await DBOS.list_workflows(workflow_id_prefix=3)  # type: ignore[arg-type]


async def test_mounted__without_a_launched_dbos_says_so() -> None:
    await DBOS.destroy()
    async with _http(dashboard_app()) as client:
        response = await client.get("/")
    assert response.status_code == 503
    assert "no DBOS instance" in response.text


async def test_messages__only_the_apps_own(data: Populated) -> None:
    async with _http(dashboard_app()) as client:
        done = await client.get("/workflow", params={"id": "order-1", "done": "cancel"})
        other = await client.get("/workflow", params={"id": "order-1", "done": "Enter your token"})
        msg = await client.get("/workflow", params={"id": "order-1", "msg": "Enter your token"})
    assert "Cancelled." in done.text
    assert "Enter your token" not in other.text and "Enter your token" not in msg.text


# -- the timeline, on rows made by hand ---------------------------------------------------


def _row(status: str, created: int, updated: int) -> WorkflowRow:
    return WorkflowRow("w", status, "f", None, None, None, "local", "v", created, updated)


def test_timeline__a_sleep_runs_to_its_wake_up_or_to_now() -> None:
    steps = [
        StepRow("w", 1, "f_step", "1", None, None, 1_000, 1_200),
        StepRow("w", 2, "DBOS.sleep", "30.0", None, None, 1_300, 1_300),  # wakes at 30 s
    ]
    running = build_timeline(_row("PENDING", 1_000, 1_300), steps, {}, now_ms=5_000)
    assert [(b.kind, b.start, b.end) for b in running.bars] == [
        ("step", 1_000, 1_200),
        ("sleep", 1_300, 5_000),  # still asleep: up to now
    ]
    assert running.bars[1].wake_ms == 30_000 and running.end == 5_000
    woke = build_timeline(_row("SUCCESS", 1_000, 31_000), steps, {}, now_ms=90_000)
    assert (woke.bars[1].start, woke.bars[1].end) == (1_300, 30_000)
    assert woke.end == 31_000  # a finished workflow's span ends at its last update


def test_timeline__waits_children_errors_and_missing_times() -> None:
    child = WorkflowRow("w-2", "PENDING", "c", None, None, None, "l", "v", 2_100, 2_100)
    steps = [
        StepRow("w", 1, "f_step", None, '{"t": "E"}', None, 1_000, 2_000),
        StepRow("w", 2, "c", None, None, "w-2", 2_100, 2_100),
        StepRow("w", 3, "DBOS.recv", "null", None, None, 4_000, 4_000),  # recorded at its end
        StepRow("w", 4, "old_step", "1", None, None, None, None),  # recorded before times
    ]
    tl = build_timeline(_row("PENDING", 1_000, 4_000), steps, {"w-2": child}, now_ms=6_000)
    assert [b.kind for b in tl.bars] == ["error", "child", "wait", "step"]
    assert (tl.bars[1].start, tl.bars[1].end) == (2_100, 6_000)  # the child runs: to now
    # The wait ran from when the step before returned (the child's start, not its end).
    assert (tl.bars[2].start, tl.bars[2].end) == (2_100, 4_000)
    assert tl.bars[3].start == tl.bars[3].end == 4_000  # no times: follows the one before
    svg = render_timeline(tl, lambda i: f"/workflow?id={i}")
    assert svg.count('class="tl-row"') == 4 and 'href="/workflow?id=w-2"' in svg


async def test_workflow__a_long_one_draws_its_first_steps(
    dbos: DBOS, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dbos_async.dashboard import _workflow_view
    from tests.dashboard_app import dash_long

    monkeypatch.setattr(_workflow_view, "MAX_STEPS_SHOWN", 3)
    handle = await DBOS.start_workflow(dash_long)
    await handle.get_result()
    async with _http(dashboard_app()) as client:
        page = (await client.get("/workflow", params={"id": handle.workflow_id})).text
    assert page.count('class="tl-row"') == 3 and "The first 3 of 5 steps." in page


async def test_session__expires_after_its_lifetime(
    data: Populated, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A login lasts ``SESSION_SECONDS`` (the cookie says so too); after that the same
    cookie and CSRF field are refused, and a cookie whose expiry was edited fails its
    signature."""
    now = [1_000_000.0]
    monkeypatch.setattr(_security, "_now", lambda: now[0])
    async with _http(dashboard_app(token=TOKEN)) as client:
        response = await client.post("/login", data={"token": TOKEN}, headers={"Origin": BASE})
        assert f"Max-Age={_security.SESSION_SECONDS}" in response.headers["set-cookie"]
        csrf = csrf_of((await client.get("/workflow", params={"id": data.blocked})).text)
        cookie = client.cookies[_security.COOKIE]
        now[0] += _security.SESSION_SECONDS - 1
        assert (
            'title="log in to act"'
            not in (await client.get("/workflow", params={"id": data.blocked})).text
        )
        now[0] += 1
        assert (
            'title="log in to act"'
            in (await client.get("/workflow", params={"id": data.blocked})).text
        )
        refused = await client.post(
            "/actions/cancel", data={"id": data.blocked, "csrf": csrf}, headers={"Origin": BASE}
        )
        assert refused.status_code == 403
        nonce, expiry, signature = cookie.split(".")
        client.cookies.set(_security.COOKIE, f"{nonce}.{int(expiry) + 3600}.{signature}")
        assert (
            'title="log in to act"'
            in (await client.get("/workflow", params={"id": data.blocked})).text
        )
    assert (await DBOS.get_workflow_status(data.blocked)).status == "PENDING"  # type: ignore[union-attr]


async def test_logout__a_copy_of_the_cookie_is_refused_after_it(data: Populated) -> None:
    """Logging out ends the session itself, not just the browser's copy: a cookie saved
    before the logout (a stolen one) no longer acts."""
    app = dashboard_app(token=TOKEN)
    async with _http(app) as client:
        await login(client)
        csrf = csrf_of((await client.get("/workflow", params={"id": data.blocked})).text)
        saved = client.cookies[_security.COOKIE]
        response = await client.post("/logout", data={"csrf": csrf}, headers={"Origin": BASE})
        assert response.status_code == 303
    async with _http(app) as thief:
        thief.cookies.set(_security.COOKIE, saved)
        assert (
            'title="log in to act"'
            in (await thief.get("/workflow", params={"id": data.blocked})).text
        )
        response = await thief.post(
            "/actions/cancel", data={"id": data.blocked, "csrf": csrf}, headers={"Origin": BASE}
        )
        assert response.status_code == 403
    assert (await DBOS.get_workflow_status(data.blocked)).status == "PENDING"  # type: ignore[union-attr]


async def test_logout__ends_the_session(data: Populated) -> None:
    async with _http(dashboard_app(token=TOKEN)) as client:
        await login(client)
        csrf = csrf_of((await client.get("/")).text)  # the log-out form's field
        refused = await client.post("/logout", data={}, headers={"Origin": BASE})
        assert refused.status_code == 403  # without the CSRF field
        response = await client.post("/logout", data={"csrf": csrf}, headers={"Origin": BASE})
        assert response.status_code == 303
        page = (await client.get("/workflow", params={"id": data.blocked})).text
        assert 'title="log in to act"' in page
        after = await client.post(
            "/actions/cancel", data={"id": data.blocked, "csrf": csrf}, headers={"Origin": BASE}
        )
        assert after.status_code == 403
