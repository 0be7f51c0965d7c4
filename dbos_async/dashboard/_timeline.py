"""A workflow's steps on a timeline: where each bar starts and ends, and the SVG.

Times come from the step rows (``started_at_epoch_ms``, ``completed_at_epoch_ms``). A
durable sleep's row is written when it starts and records its wake-up time as output, so
its bar runs to that time (or to now, if it is still asleep). A child workflow's bar
runs from its start to its own end (now while it runs). Bars are drawn in SVG with
attributes only, so the page needs no inline style (the dashboard's CSP forbids it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from .._status import WorkflowStatusString
from ..sysdb import StepRow, WorkflowRow
from ._html import Markup, html, join

__all__ = ["Bar", "Timeline", "build_timeline", "duration_text", "render_timeline"]

#: Built-in steps by what they do on the timeline.
_SLEEPS = {"DBOS.sleep"}
_WAITS = {"DBOS.recv", "DBOS.getEvent", "DBOS.getResult", "DBOS.waitFirst", "DBOS.asyncio_wait"}
_EVENTS = {"DBOS.setEvent", "DBOS.send", "DBOS.send_bulk"}
_STREAMS = {"DBOS.writeStream", "DBOS.closeStream"}


@dataclass
class Bar:
    """One step on the timeline (times in epoch ms)."""

    step_id: int
    name: str
    kind: str  # step, sleep, wait, child, message, stream, error
    start: int
    end: int
    child_id: str | None = None
    note: str = ""
    #: A sleep's recorded wake-up time.
    wake_ms: int | None = None


@dataclass
class Timeline:
    """The bars and the span they are drawn on."""

    start: int
    end: int
    bars: list[Bar]


def _kind(step: StepRow) -> str:
    if step.error is not None:
        return "error"
    if step.child_workflow_id is not None:
        return "child"
    if step.function_name in _SLEEPS:
        return "sleep"
    if step.function_name in _WAITS:
        return "wait"
    if step.function_name in _EVENTS:
        return "message"
    if step.function_name in _STREAMS:
        return "stream"
    return "step"


def _wake_ms(step: StepRow) -> int | None:
    """A sleep's recorded wake-up time (its output: epoch seconds), if readable."""
    if step.output is None:
        return None
    try:
        value = json.loads(step.output)
    except ValueError:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value * 1000)
    return None


def build_timeline(
    row: WorkflowRow, steps: list[StepRow], children: dict[str, WorkflowRow], now_ms: int
) -> Timeline:
    """Where each step's bar goes; a step without times follows the one before, and a
    wait (``recv``, ``get_event``) recorded when it ended starts where the step before
    ended."""
    running = not WorkflowStatusString(row.status).is_terminal
    cursor = row.created_at
    bars: list[Bar] = []
    for step in steps:
        start = step.started_at_epoch_ms or step.completed_at_epoch_ms or cursor
        end = step.completed_at_epoch_ms or start
        kind = _kind(step)
        note = ""
        wake: int | None = None
        if kind == "wait" and step.started_at_epoch_ms == step.completed_at_epoch_ms:
            # A wait's row is written when it ends: it waited since the step before.
            start = min(start, cursor)
        if kind == "sleep":
            wake = _wake_ms(step)
            if wake is not None:
                end = max(end, min(wake, now_ms) if running else min(wake, row.updated_at))
                note = "asleep" if running and wake > now_ms else "slept"
        # The workflow went on once this step returned (a sleep: once it woke); a child
        # started here may run on long after, beside the steps that follow.
        returned = end
        child = children.get(step.child_workflow_id or "")
        if child is not None:
            child_running = not WorkflowStatusString(child.status).is_terminal
            child_end = now_ms if child_running else child.updated_at
            end = max(end, child_end)
            note = f"child {child.status}"
        bars.append(
            Bar(
                step.function_id,
                step.function_name,
                kind,
                start,
                max(end, start),
                step.child_workflow_id,
                note,
                wake,
            )
        )
        cursor = max(cursor, returned)
    last = max([b.end for b in bars], default=row.created_at)
    end = max(now_ms if running else row.updated_at, last, row.created_at + 1)
    start = min([b.start for b in bars], default=row.created_at)
    return Timeline(min(start, row.created_at), end, bars)


def duration_text(ms: int) -> str:
    """``850 ms``, ``2.4 s``, ``3 min 5 s``, ``2 h 1 min``."""
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(ms // 1000, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


# Geometry of the SVG (its viewBox; the page scales it to its width).
_WIDTH = 1000
_LABEL = 300
_ROW = 24
_TOP = 26


def render_timeline(timeline: Timeline, workflow_url: Callable[[str], str]) -> Markup:
    """The timeline as inline SVG: one row per step (``data-step``), a bar per row."""
    span = max(timeline.end - timeline.start, 1)
    plot = _WIDTH - _LABEL - 10

    def x(t: int) -> float:
        return _LABEL + (t - timeline.start) / span * plot

    ticks = []
    for i in range(5):
        t = timeline.start + span * i // 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        ticks.append(
            html(
                '<line class="tl-tick" x1="{x}" x2="{x}" y1="18" y2="{h}"></line>'
                '<text class="tl-axis" x="{x}" y="12" text-anchor="{a}">+{t}</text>',
                x=f"{x(t):.1f}",
                h=_TOP + _ROW * len(timeline.bars),
                a=anchor,
                t=duration_text(t - timeline.start),
            )
        )
    rows = []
    for i, bar in enumerate(timeline.bars):
        y = _TOP + i * _ROW
        width = max(x(bar.end) - x(bar.start), 2.0)
        label = html(
            '<text class="tl-label" x="4" y="{}">{} {}</text>', y + 16, bar.step_id, bar.name
        )
        if bar.child_id is not None:
            # (The link wraps the text: an <a> inside an SVG <text> takes no clicks.)
            label = html('<a href="{}" class="tl-link">{}</a>', workflow_url(bar.child_id), label)
        title = html(
            "step {} {} ({}): +{}, {}{}",
            bar.step_id,
            bar.name,
            bar.kind,
            duration_text(bar.start - timeline.start),
            duration_text(bar.end - bar.start),
            f", {bar.note}" if bar.note else "",
        )
        rows.append(
            html(
                '<g class="tl-row" data-step="{id}" data-kind="{kind}"><title>{title}</title>'
                "{label}"
                '<rect class="tl-bar kind-{kind}" x="{x}" y="{by}" width="{w}" height="16" '
                'rx="3"></rect></g>',
                id=bar.step_id,
                kind=bar.kind,
                title=title,
                label=label,
                x=f"{x(bar.start):.1f}",
                by=y + 4,
                w=f"{width:.1f}",
            )
        )
    height = _TOP + _ROW * max(len(timeline.bars), 1) + 4
    return html(
        '<svg class="timeline" viewBox="0 0 {w} {h}" width="100%" role="img" '
        'aria-label="steps on a timeline">{ticks}{rows}</svg>',
        w=_WIDTH,
        h=height,
        ticks=join(ticks),
        rows=join(rows),
    )
