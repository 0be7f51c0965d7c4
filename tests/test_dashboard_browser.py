"""The dashboard in a real browser: headless Chromium (the system's, Debian's ``chromium``
package) driven by Playwright, against ``dbos-async dashboard`` serving a database with
real workflows, on both backends.

It checks what a person sees and does: the list shows the workflows, a filter narrows
it, the timeline draws every step, cancel and resume work once logged in with the token
and are refused without it (a cross-site form included), and an ID holding ``<script>``
shows as text (and runs nothing). The SQLite run takes the screenshots the docs show;
with ``DBOS_UPDATE_SCREENSHOTS=1`` (``make screenshots``) it saves them over
docs/images/dashboard-list.png and dashboard-workflow.png, else in a temporary directory
(so a plain test run leaves the working tree as it was).

Without Chromium or Playwright these tests skip, except under ``CI=true``, where they
fail: CI installs both.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from dbos_async import DBOS, SetWorkflowID, WorkflowStatusString
from tests.conftest import IN_CI
from tests.dashboard_app import (
    SCRIPT_ID,
    Populated,
    dash_quick,
    dashboard_process,
    populate,
    queue_declared,
    wait_status,
)

TOKEN = "browser-token-0123456789"
DOCS_IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
UPDATE_SCREENSHOTS = os.environ.get("DBOS_UPDATE_SCREENSHOTS") == "1"
CHROMIUM = os.environ.get("DBOS_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FOUND = os.path.exists(CHROMIUM)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"the browser tests need {reason} under CI=true")
    pytest.skip(f"browser tests skipped: {reason}")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Chromium (the system's binary), closed after the test."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _unavailable("the playwright package (pip install -e '.[dev]')")
    if not CHROMIUM_FOUND:
        _unavailable(f"Chromium at {CHROMIUM} (apt-get install chromium, or DBOS_TEST_CHROMIUM)")
    async with async_playwright() as p:
        instance = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            await instance.close()


@pytest.fixture(autouse=True)
def _queue() -> Iterator[None]:
    with queue_declared():
        yield


@pytest.fixture
async def data(dbos: DBOS) -> AsyncIterator[Populated]:
    populated = await populate()
    yield populated
    await DBOS.cancel_workflow(populated.blocked)


async def listed(page: Any) -> list[str]:
    """The workflow IDs the list shows, as the browser shows them."""
    return [str(t) for t in await page.locator("tr.wf-row td.id a").all_text_contents()]


async def test_browser__list_filter_timeline_escaping_and_actions(
    browser: Any, data: Populated, db_url: str, backend: str, tmp_path: Path
) -> None:
    shots = DOCS_IMAGES if UPDATE_SCREENSHOTS else tmp_path
    dialogs: list[str] = []
    async with dashboard_process(db_url, "--show-values", "--refresh", "0.5", token=TOKEN) as base:
        context = await browser.new_context(viewport={"width": 1280, "height": 860})
        page = await context.new_page()
        page.on("dialog", lambda dialog: dialogs.append(dialog.message))

        # The list shows every workflow, newest first.
        await page.goto(f"{base}/")
        shown = await listed(page)
        for workflow_id in [*data.orders, data.failed, data.html, data.blocked, *data.queued]:
            assert workflow_id in shown
        assert SCRIPT_ID in shown  # as text, in the table
        if backend == "sqlite":
            shots.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(shots / "dashboard-list.png"))
            assert (shots / "dashboard-list.png").read_bytes().startswith(b"\x89PNG")

        # Live: a workflow started now appears without a reload; then live is switched
        # off (remembered), so nothing moves under the clicks below.
        with SetWorkflowID("live-1"):
            await dash_quick(7)
        await page.wait_for_selector('tr.wf-row[data-workflow-id="live-1"]', timeout=10_000)
        await page.uncheck("#live")

        # A filter narrows it: the ERROR box, then an ID prefix.
        await page.check("input[name=status][value=ERROR]")
        await page.click("form#filters button[type=submit]")
        await page.wait_for_url("**/?status=ERROR")  # (empty fields are left out)
        assert await listed(page) == [data.failed]
        await page.goto(f"{base}/")
        await page.fill("input[name=prefix]", "order-")
        await page.click("form#filters button[type=submit]")
        narrowed = await listed(page)
        assert set(data.orders) <= set(narrowed) and len(narrowed) < len(shown)
        assert all(w.startswith("order-") for w in narrowed)

        # The timeline draws every step, each bar visible.
        await page.click('tr.wf-row[data-workflow-id="order-1"] td.id a')
        await page.wait_for_selector("svg.timeline")
        steps = await DBOS.list_workflow_steps("order-1")
        rows = page.locator("svg.timeline g.tl-row")
        assert await rows.count() == len(steps) == data.order_steps
        for i, step in enumerate(steps):
            assert await rows.nth(i).get_attribute("data-step") == str(step.function_id)
            box = await rows.nth(i).locator("rect.tl-bar").bounding_box()
            assert box is not None and box["width"] > 0 and box["height"] > 0
        if backend == "sqlite":
            await page.screenshot(path=str(shots / "dashboard-workflow.png"), full_page=True)
            assert (shots / "dashboard-workflow.png").read_bytes().startswith(b"\x89PNG")
        # The child workflow's row links to it.
        await page.click("svg.timeline a.tl-link")
        assert (await page.text_content("#workflow-id")) == "order-1-6"

        # An ID holding <script> shows as text and runs nothing.
        await page.goto(f"{base}/")
        await page.click(f'tr.wf-row[data-workflow-id="{SCRIPT_ID}"] td.id a')
        assert (await page.text_content("#workflow-id")) == SCRIPT_ID
        assert await page.locator("main script").count() == 0
        assert dialogs == []

        # Without the token: the buttons are disabled and a POST is refused.
        await page.goto(f"{base}/workflow?id={data.blocked}")
        assert await page.is_disabled("button[data-action=cancel]")
        refused = await page.request.post(
            f"{base}/actions/cancel", form={"id": data.blocked}, max_redirects=0
        )
        assert refused.status == 403

        # Logged in: cancel, then resume, with the buttons.
        await page.goto(f"{base}/login?next=/workflow?id={data.blocked}")
        await page.fill("input[name=token]", TOKEN)
        await page.click("form.login button[type=submit]")
        await page.wait_for_selector("form.action button[data-action=cancel]")
        await page.click("form.action button[data-action=cancel]")
        await page.wait_for_selector("text=Cancelled.")
        assert (await page.text_content(".facts .badge")) == "CANCELLED"
        await wait_status(data.blocked, WorkflowStatusString.CANCELLED)
        await page.click("form.action button[data-action=resume]")
        await page.wait_for_selector("text=Resumed.")
        await wait_status(data.blocked, WorkflowStatusString.PENDING)

        # A form on another site cannot act, even with the session cookie set.
        await page.goto("about:blank")
        await page.set_content(
            f'<form method="post" action="{base}/actions/cancel">'
            f'<input name="id" value="{data.blocked}"><button>go</button></form>'
        )
        async with page.expect_navigation():
            await page.click("button")
        assert "Refused" in (await page.content())
        assert (await DBOS.get_workflow_status(data.blocked)).status == "PENDING"  # type: ignore[union-attr]
        await context.close()
