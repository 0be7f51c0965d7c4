"""The frame every page shares: ``Frame`` (where the app is mounted, who is looking),
the page layout, and the small pages (errors, login).

Pages are HTML built with ``_html`` (every value escaped); no inline script or style:
the page's behaviour is in ``static/dashboard.js`` and its look in
``static/dashboard.css``, both served by the app.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ._html import Markup, html, query_url

__all__ = ["Frame", "error_page", "layout", "login_page", "status_badge", "time_text"]


@dataclass
class Frame:
    """What every page needs: where the app is mounted and what the viewer may do."""

    base: str  # the mount path ("" at the root)
    title: str
    can_act: bool  # a token is configured
    logged_in: bool
    csrf: str | None
    show_values: bool
    refresh_seconds: float
    now_ms: int
    message: str | None = None

    def url(self, path: str, *params: tuple[str, object]) -> str:
        return query_url(f"{self.base}{path}", params)

    def workflow_url(self, workflow_id: str) -> str:
        return self.url("/workflow", ("id", workflow_id))


def time_text(ms: int | None) -> str:
    """Epoch ms as UTC ``YYYY-MM-DD HH:MM:SS.mmm``."""
    if ms is None:
        return ""
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def status_badge(status: str) -> Markup:
    return html('<span class="badge status-{s}" data-status="{s}">{s}</span>', s=status)


def layout(frame: Frame, title: str, body: Markup, *, live: bool = False) -> str:
    """The page around ``body``: header, navigation, login state, flash message."""
    if not frame.can_act:
        who = html('<span class="muted" title="no token configured">read-only</span>')
    elif frame.logged_in:
        who = html(
            '<form method="post" action="{}" class="inline">'
            '<input type="hidden" name="csrf" value="{}">'
            '<button type="submit" class="link">log out</button></form>',
            frame.url("/logout"),
            frame.csrf or "",
        )
    else:
        who = html('<a href="{}">log in</a>', frame.url("/login"))
    flash = html('<p class="flash" role="status">{}</p>', frame.message) if frame.message else ""
    live_toggle = (
        html(
            '<label class="live"><input type="checkbox" id="live" checked> live '
            "(every {} s)</label>",
            f"{frame.refresh_seconds:g}",
        )
        if live
        else ""
    )
    return str(
        html(
            "<!doctype html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            "<title>{title} - {app}</title>"
            '<link rel="stylesheet" href="{css}">'
            '<script src="{js}" defer></script></head>'
            '<body data-refresh="{refresh}">'
            '<header><a class="brand" href="{home}">{app}</a><nav>'
            '<a href="{home}">Workflows</a><a href="{queues}">Queues</a>'
            '<a href="{executors}">Executors</a></nav>'
            '<span class="who">{live}{who}</span></header>'
            '<main id="content">{flash}{body}</main></body></html>',
            title=title,
            app=frame.title,
            css=frame.url("/static/dashboard.css"),
            js=frame.url("/static/dashboard.js"),
            refresh=int(frame.refresh_seconds * 1000),
            home=frame.url("/"),
            queues=frame.url("/queues"),
            executors=frame.url("/executors"),
            live=live_toggle,
            who=who,
            flash=flash,
            body=body,
        )
    )


def error_page(frame: Frame, title: str, text: str) -> str:
    return layout(frame, title, html('<h1>{}</h1><p class="error">{}</p>', title, text))


def login_page(frame: Frame, next_url: str, failed: bool) -> str:
    """The token form (sets the session cookie)."""
    body = html(
        "<h1>Log in</h1>{failed}"
        '<form method="post" action="{action}" class="login">'
        '<input type="hidden" name="next" value="{next}">'
        '<label>Token <input type="password" name="token" autocomplete="current-password" '
        'autofocus></label> <button type="submit">Log in</button></form>'
        '<p class="muted">The token is the one the dashboard was started with '
        "(<code>--token</code> or <code>DBOS_DASHBOARD_TOKEN</code>).</p>",
        failed=html('<p class="error">Wrong token.</p>') if failed else "",
        action=frame.url("/login"),
        next=next_url,
    )
    return layout(frame, "Log in", body)
