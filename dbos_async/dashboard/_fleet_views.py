"""The queues page and the executors page."""

from __future__ import annotations

from .._status import ExecutorInfo
from ..sysdb import QueueInfo
from ._data import QueueView
from ._html import Markup, escape, html, join
from ._layout import Frame, layout, time_text

__all__ = ["executors_page", "queues_page"]


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
