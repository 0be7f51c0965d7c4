"""The pages, as HTML built with ``_html`` (every value escaped).

Each page function takes a ``Frame`` (where the app is mounted, who is looking) and the
data, and returns the whole page. No inline script or style: the page's behaviour is in
``static/dashboard.js`` and its look in ``static/dashboard.css``, both served by the app.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .._status import ExecutorInfo, WorkflowStatusString
from ..sysdb import QueueInfo, WorkflowRow
from ._data import Detail, ListFilters, QueueView
from ._html import Markup, escape, html, join, query_url
from ._timeline import Timeline, build_timeline, duration_text, render_timeline

__all__ = [
    "Frame",
    "error_page",
    "executors_page",
    "list_page",
    "login_page",
    "queues_page",
    "workflow_page",
]

STATUSES = [s.value for s in WorkflowStatusString]
#: A workflow page draws at most this many steps (a page stays light to load and refresh).
MAX_STEPS_SHOWN = 500
_CANCELLABLE = {"PENDING", "ENQUEUED"}
_RESUMABLE = {"CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"}


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


def _status_badge(status: str) -> Markup:
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


# -- the workflow list -------------------------------------------------------------------


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
                status=_status_badge(row.status),
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


# -- one workflow ----------------------------------------------------------------------


def _action_button(frame: Frame, action: str, workflow_id: str, label: str) -> Markup:
    if not frame.can_act:
        return html(
            '<button type="button" disabled title="read-only: no token configured" '
            'data-action="{}">{}</button>',
            action,
            label,
        )
    if not frame.logged_in:
        return html(
            '<button type="button" disabled title="log in to act" data-action="{}">{}</button>',
            action,
            label,
        )
    extra = (
        html(
            '<label>from step <input type="number" name="step" min="1" value="1" '
            'class="narrow"></label>'
        )
        if action == "fork"
        else ""
    )
    return html(
        '<form method="post" action="{url}" class="inline action">'
        '<input type="hidden" name="id" value="{id}"><input type="hidden" name="csrf" '
        'value="{csrf}">{extra}<button type="submit" data-action="{action}">{label}</button>'
        "</form>",
        url=frame.url(f"/actions/{action}"),
        id=workflow_id,
        csrf=frame.csrf or "",
        extra=extra,
        action=action,
        label=label,
    )


def _fact(label: str, value: object) -> Markup:
    if value is None or value == "":
        return Markup("")
    return html("<dt>{}</dt><dd>{}</dd>", label, value)


def _link(frame: Frame, workflow_id: str | None) -> Markup | None:
    if workflow_id is None:
        return None
    return html('<a href="{}">{}</a>', frame.workflow_url(workflow_id), workflow_id)


def _hidden_values() -> Markup:
    return html(
        '<p class="muted">Values are hidden. Start the dashboard with show_values=True '
        "(<code>--show-values</code>) to see inputs, outputs, events and stream values.</p>"
    )


def workflow_page(frame: Frame, detail: Detail) -> str:
    """A workflow: its facts, actions, steps on a timeline, children, events, streams."""
    row = detail.row
    status = row.status
    terminal = WorkflowStatusString(status).is_terminal
    end = row.updated_at if terminal else frame.now_ms
    facts = join(
        [
            _fact("Status", _status_badge(status)),
            _fact("Name", row.name),
            _fact("Class", row.class_name),
            _fact("Instance", row.config_name),
            _fact("Queue", row.queue_name),
            _fact("Partition", row.queue_partition_key),
            _fact("Priority", row.priority if row.queue_name else None),
            _fact("Deduplication ID", row.deduplication_id),
            _fact("Executor", row.executor_id),
            _fact("Application version", row.application_version),
            _fact("Created (UTC)", time_text(row.created_at)),
            _fact("Updated (UTC)", time_text(row.updated_at)),
            _fact("Duration", duration_text(max(end - row.created_at, 0))),
            _fact("Recovery attempts", row.recovery_attempts or None),
            _fact("Deadline (UTC)", time_text(row.workflow_deadline_epoch_ms)),
            _fact("Parent", _link(frame, row.parent_workflow_id)),
            _fact("Forked from", _link(frame, row.forked_from)),
        ]
    )
    actions = join(
        [
            _action_button(frame, "cancel", row.workflow_id, "Cancel")
            if status in _CANCELLABLE
            else Markup(""),
            _action_button(frame, "resume", row.workflow_id, "Resume")
            if status in _RESUMABLE
            else Markup(""),
            _action_button(frame, "fork", row.workflow_id, "Fork"),
        ]
    )
    timeline = build_timeline(row, detail.steps, detail.children, frame.now_ms)
    recorded = len(timeline.bars)
    if recorded > MAX_STEPS_SHOWN:  # (the span still covers them all)
        timeline = Timeline(timeline.start, timeline.end, timeline.bars[:MAX_STEPS_SHOWN])
    steps = []
    for bar in timeline.bars:
        if bar.step_id in detail.step_errors:
            result = html('<span class="error">{}</span>', detail.step_errors[bar.step_id])
        elif bar.child_id is not None:
            result = html("child {}", _link(frame, bar.child_id))
        elif bar.kind == "sleep" and bar.wake_ms is not None:
            result = html("until {} UTC", time_text(bar.wake_ms))
        elif frame.show_values:
            result = html("<pre>{}</pre>", detail.step_outputs.get(bar.step_id, ""))
        else:
            result = html('<span class="muted">hidden</span>')
        steps.append(
            html(
                '<tr class="step-row" data-step="{id}"><td>{id}</td><td>{name}</td>'
                '<td><span class="kind kind-{kind}">{kind}</span></td><td>+{at}</td>'
                "<td>{took}</td><td>{result}</td></tr>",
                id=bar.step_id,
                name=bar.name,
                kind=bar.kind,
                at=duration_text(bar.start - timeline.start),
                took=duration_text(bar.end - bar.start),
                result=result,
            )
        )
    legend = join(
        html('<span class="key"><span class="swatch kind-{k}"></span>{k}</span>', k=kind)
        for kind in ("step", "sleep", "wait", "child", "message", "stream", "error")
        if any(bar.kind == kind for bar in timeline.bars)
    )
    steps_table = (
        html(
            '{svg}<p class="legend">{legend}</p>{more}'
            '<table class="steps"><thead><tr><th>Step</th><th>Name</th><th>Kind</th>'
            "<th>Started</th><th>Took</th><th>Output or error</th></tr></thead>"
            "<tbody>{rows}</tbody></table>",
            svg=render_timeline(timeline, frame.workflow_url),
            more=html('<p class="muted">The first {} of {} steps.</p>', MAX_STEPS_SHOWN, recorded)
            if recorded > MAX_STEPS_SHOWN
            else "",
            legend=legend,
            rows=join(steps),
        )
        if steps
        else html('<p class="empty">No step recorded yet.</p>')
    )
    children = join(
        html(
            '<li>{} {} <span class="muted">{}</span></li>',
            _link(frame, c.workflow_id),
            _status_badge(c.status),
            c.name,
        )
        for c in sorted(detail.children.values(), key=lambda c: (c.created_at, c.workflow_id))
    )
    events = join(
        html(
            '<tr class="event"><td>{}</td><td>{}</td></tr>',
            key,
            html("<pre>{}</pre>", detail.event_values.get(key, ""))
            if frame.show_values
            else html('<span class="muted">hidden</span>'),
        )
        for key in sorted(detail.events)
    )
    streams = join(
        html(
            '<tr class="stream"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
            key,
            sum(1 for e in entries if not e.closed),
            "closed" if any(e.closed for e in entries) else "open",
            join(html("<pre>{}</pre>", v) for v in detail.stream_values.get(key, []))
            if frame.show_values
            else html('<span class="muted">hidden</span>'),
        )
        for key, entries in sorted(detail.streams.items())
    )
    values: Markup
    if frame.show_values:
        values = html(
            '<h2>Input</h2><pre class="value" id="input">{}</pre>{}',
            detail.inputs or "",
            html('<h2>Output</h2><pre class="value" id="output">{}</pre>', detail.output)
            if detail.output is not None
            else "",
        )
    else:
        values = html("<h2>Input and output</h2>{}", _hidden_values())
    error = (
        html('<h2>Error</h2><pre class="value error" id="error">{}</pre>', detail.error)
        if detail.error
        else ""
    )
    body = html(
        '<h1 class="wf-id">Workflow <code id="workflow-id">{id}</code></h1>'
        '<div id="live-region"><dl class="facts">{facts}</dl>'
        '<div class="actions">{actions}</div>'
        "<h2>Steps</h2>{steps}{error}"
        "{children}{events}{streams}{values}</div>",
        id=row.workflow_id,
        facts=facts,
        actions=actions,
        steps=steps_table,
        error=error,
        children=html("<h2>Child workflows</h2><ul>{}</ul>", children) if children else "",
        events=html(
            "<h2>Events</h2><table><thead><tr><th>Key</th><th>Value</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            events,
        )
        if events
        else "",
        streams=html(
            "<h2>Streams</h2><table><thead><tr><th>Key</th><th>Values</th><th>State</th>"
            "<th>Values written</th></tr></thead><tbody>{}</tbody></table>",
            streams,
        )
        if streams
        else "",
        values=values,
    )
    return layout(frame, f"Workflow {row.workflow_id}", body, live=not terminal)


# -- queues and executors --------------------------------------------------------------


def _limits(info: QueueInfo | None) -> Markup:
    if info is None:
        return html('<span class="muted">not declared by a launched process</span>')
    parts = []
    if info.concurrency is not None:
        parts.append(f"concurrency {info.concurrency}")
    if info.worker_concurrency is not None:
        parts.append(f"per worker {info.worker_concurrency}")
    if info.limiter_limit is not None:
        parts.append(f"{info.limiter_limit} per {info.limiter_period_seconds:g} s")
    if info.partition_concurrency is not None:
        parts.append(f"per partition {info.partition_concurrency}")
    if info.partition_limiter_limit is not None:
        parts.append(
            f"{info.partition_limiter_limit} per {info.partition_limiter_period_seconds:g} s "
            "per partition"
        )
    if info.priority_enabled:
        parts.append("priorities")
    if info.partition_queue:
        parts.append("partitioned")
    return escape(", ".join(parts) or "no limits")


def _chart(started: list[int], period_s: int) -> Markup:
    """Starts per period as a small SVG bar chart (oldest left)."""
    width, height = 240, 48
    top = max(max(started, default=0), 1)
    slot = width / max(len(started), 1)
    bars = []
    for i, count in enumerate(started):
        h = count / top * (height - 12)
        bars.append(
            html(
                '<rect class="chart-bar" x="{x}" y="{y}" width="{w}" height="{h}">'
                "<title>{n} started, {ago} min ago</title></rect>",
                x=f"{i * slot + 1:.1f}",
                y=f"{height - h:.1f}",
                w=f"{max(slot - 2, 1):.1f}",
                h=f"{h:.1f}",
                n=count,
                ago=(len(started) - i) * period_s // 60,
            )
        )
    return html(
        '<svg class="chart" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" '
        'aria-label="workflows started per minute">'
        '<text class="chart-max" x="{w}" y="9" text-anchor="end">{top}/min</text>{bars}</svg>',
        w=width,
        h=height,
        top=max(started, default=0),
        bars=join(bars),
    )


def queues_page(frame: Frame, queues: list[QueueView], period_s: int) -> str:
    """Every queue: what it holds, its limits, and its starts per minute lately."""
    rows = join(
        html(
            '<tr class="queue" data-queue="{name}"><td><a href="{url}">{name}</a></td>'
            '<td class="n">{enqueued}</td><td class="n">{running}</td><td>{limits}</td>'
            '<td class="n">{total}</td><td>{chart}</td></tr>',
            name=q.name,
            url=frame.url("/", ("queue", q.name)),
            enqueued=q.activity.enqueued,
            running=q.activity.running,
            limits=_limits(q.info),
            total=sum(q.activity.started),
            chart=_chart(q.activity.started, period_s),
        )
        for q in queues
    )
    minutes = len(queues[0].activity.started) * period_s // 60 if queues else 0
    body = html(
        '<h1>Queues</h1><div id="live-region">{}</div>',
        html(
            '<table class="queues"><thead><tr><th>Queue</th><th>Enqueued</th><th>Running</th>'
            "<th>Limits</th><th>Started ({m} min)</th><th>Started per minute</th></tr>"
            "</thead><tbody>{rows}</tbody></table>",
            m=minutes,
            rows=rows,
        )
        if rows
        else html('<p class="empty">No queue is declared and no workflow is queued.</p>'),
    )
    return layout(frame, "Queues", body, live=True)


def executors_page(frame: Frame, executors: list[ExecutorInfo]) -> str:
    """The processes that hold or held a lease."""
    rows = join(
        html(
            '<tr class="executor" data-alive="{alive}"><td>{eid}</td><td>{host}</td>'
            '<td class="n">{pid}</td><td>{version}</td><td>{state}</td>'
            '<td class="n">{workflows}</td><td>{started}</td><td>{beat}</td><td>{lease}</td>'
            "<td><code>{process}</code></td></tr>",
            alive="yes" if e.alive else "no",
            eid=e.executor_id,
            host=e.hostname,
            pid=e.pid,
            version=e.application_version,
            state=html('<span class="badge alive">alive</span>')
            if e.alive
            else html('<span class="badge gone">gone</span>'),
            workflows=e.workflows,
            started=time_text(e.started_at),
            beat=time_text(e.last_heartbeat_at),
            lease=time_text(e.lease_expires_at),
            process=e.process_id,
        )
        for e in executors
    )
    body = html(
        '<h1>Executors</h1><div id="live-region">{}</div>',
        html(
            '<table class="executors"><thead><tr><th>Executor ID</th><th>Host</th>'
            "<th>PID</th><th>Version</th><th>Lease</th><th>Workflows owned</th>"
            "<th>Started (UTC)</th><th>Last heartbeat</th><th>Lease expires</th>"
            "<th>Process</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )
        if rows
        else html('<p class="empty">No process has launched on this database yet.</p>'),
    )
    return layout(frame, "Executors", body, live=True)


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
