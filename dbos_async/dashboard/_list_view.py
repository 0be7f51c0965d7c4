"""The workflow list: filters, the table, paging."""

from __future__ import annotations

import datetime as dt

from .._status import WorkflowStatusString
from ..sysdb import WorkflowRow
from ._data import ListFilters
from ._html import Markup, html, join
from ._layout import Frame, layout, status_badge, time_text
from ._timeline import duration_text

__all__ = ["STATUSES", "list_page"]

STATUSES = [s.value for s in WorkflowStatusString]


def _local_input(ms: int | None) -> str:
    """Epoch ms as a ``datetime-local`` input value (UTC)."""
    if ms is None:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _filter_params(filters: ListFilters) -> list[tuple[str, object]]:
    params: list[tuple[str, object]] = [("status", s) for s in filters.statuses or []]
    params += [
        ("name", filters.name),
        ("queue", filters.queue_name),
        ("prefix", filters.prefix),
        ("from", _local_input(filters.start_ms)),
        ("to", _local_input(filters.end_ms)),
    ]
    return params


def _filter_form(frame: Frame, filters: ListFilters) -> Markup:
    chosen = set(filters.statuses or [])
    options = join(
        html(
            '<label class="check"><input type="checkbox" name="status" value="{s}"{c}> {s}</label>',
            s=s,
            c=Markup(" checked") if s in chosen else "",
        )
        for s in STATUSES
    )
    return html(
        '<form class="filters" method="get" action="{action}" id="filters">'
        "<fieldset><legend>Status</legend>{options}</fieldset>"
        '<label>ID prefix <input name="prefix" value="{prefix}" placeholder="order-"></label>'
        '<label>Name <input name="name" value="{name}"></label>'
        '<label>Queue <input name="queue" value="{queue}"></label>'
        '<label>Created from (UTC) <input type="datetime-local" step="1" name="from" '
        'value="{start}"></label>'
        '<label>to <input type="datetime-local" step="1" name="to" value="{end}"></label>'
        '<button type="submit">Filter</button> <a href="{action}">clear</a></form>',
        action=frame.url("/"),
        options=options,
        prefix=filters.prefix or "",
        name=filters.name or "",
        queue=filters.queue_name or "",
        start=_local_input(filters.start_ms),
        end=_local_input(filters.end_ms),
    )


def list_page(frame: Frame, filters: ListFilters, rows: list[WorkflowRow], has_next: bool) -> str:
    """Workflows, newest first, with the filter form and paging."""
    lines = []
    for row in rows:
        terminal = WorkflowStatusString(row.status).is_terminal
        end = row.updated_at if terminal else frame.now_ms
        lines.append(
            html(
                '<tr class="wf-row" data-workflow-id="{id}">'
                '<td class="id"><a href="{url}">{id}</a></td><td>{status}</td>'
                "<td>{name}</td><td>{queue}</td><td>{created}</td><td>{duration}</td>"
                "<td>{executor}</td></tr>",
                id=row.workflow_id,
                url=frame.workflow_url(row.workflow_id),
                status=status_badge(row.status),
                name=row.name,
                queue=row.queue_name or "",
                created=time_text(row.created_at),
                duration=duration_text(max(end - row.created_at, 0)),
                executor=row.executor_id or "",
            )
        )
    params = _filter_params(filters)
    pager = []
    if filters.page > 0:
        pager.append(
            html(
                '<a rel="prev" href="{}">&larr; newer</a>',
                frame.url("/", *params, ("page", filters.page - 1 or "")),
            )
        )
    pager.append(html('<span class="muted">page {}</span>', filters.page + 1))
    if has_next:
        pager.append(
            html(
                '<a rel="next" href="{}">older &rarr;</a>',
                frame.url("/", *params, ("page", filters.page + 1)),
            )
        )
    table = (
        html(
            '<table class="workflows"><thead><tr><th>ID</th><th>Status</th><th>Name</th>'
            "<th>Queue</th><th>Created (UTC)</th><th>Duration</th><th>Executor</th></tr>"
            "</thead><tbody>{}</tbody></table>",
            join(lines),
        )
        if lines
        else html('<p class="empty">No workflow matches these filters.</p>')
    )
    body = html(
        '<h1>Workflows</h1>{form}<div id="live-region">{table}'
        '<nav class="pager">{pager}</nav></div>',
        form=_filter_form(frame, filters),
        table=table,
        pager=join(pager, " "),
    )
    return layout(frame, "Workflows", body, live=True)
