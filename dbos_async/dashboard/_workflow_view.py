"""A workflow's page: its facts, the actions, its steps on a timeline, children,
events, streams and (when shown) values."""

from __future__ import annotations

from .._status import WorkflowStatusString
from ._data import Detail
from ._html import Markup, html, join
from ._layout import Frame, layout, status_badge, time_text
from ._timeline import Timeline, build_timeline, duration_text, render_timeline

__all__ = ["MAX_STEPS_SHOWN", "workflow_page"]

#: A workflow page draws at most this many steps (a page stays light to load and refresh).
MAX_STEPS_SHOWN = 500
_CANCELLABLE = {"PENDING", "ENQUEUED"}
_RESUMABLE = {"CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"}


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
            _fact("Status", status_badge(status)),
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
            status_badge(c.status),
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
