"""Where table rows meet ``_rows``: the column lists, and the one mapper of each row type.

Both backends read and write the same columns, in the same order, so one definition
serves both: a statement selects ``WORKFLOW_COLUMNS`` (its query file says
``{workflow_columns}``, ``_queries`` fills it in), and ``workflow_row`` turns what comes
back, an asyncpg ``Record`` or a SQLite tuple, into a ``WorkflowRow``. Columns are listed
in the order of their dataclass's fields (checked below, at import).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from operator import attrgetter
from typing import Any

from ._rows import QueueActivity, QueueInfo, StepRow, StreamEntry, WorkflowRow

__all__ = [
    "QUEUE_COLUMNS",
    "STEP_COLUMNS",
    "STEP_FIELDS",
    "WORKFLOW_COLUMNS",
    "WORKFLOW_FIELDS",
    "column_list",
    "queue_activity",
    "queue_info",
    "step_params",
    "step_row",
    "step_row_or_none",
    "stream_entry",
    "workflow_params",
    "workflow_row",
    "workflow_row_or_none",
    "workflow_streams",
]

#: The workflow status table's columns, in the order of ``WorkflowRow``'s fields.
WORKFLOW_COLUMNS = (
    "workflow_uuid", "status", "name", "inputs", "output", "error", "executor_id",
    "application_version", "created_at", "updated_at", "recovery_attempts", "queue_name",
    "parent_workflow_id", "forked_from", "workflow_timeout_ms", "workflow_deadline_epoch_ms",
    "priority", "deduplication_id", "queue_partition_key", "started_at_epoch_ms",
    "delay_until_epoch_ms", "owner", "class_name", "config_name",
)  # fmt: skip

#: The step output table's columns, in the order of ``StepRow``'s fields.
STEP_COLUMNS = (
    "workflow_uuid", "function_id", "function_name", "output", "error", "child_workflow_id",
    "started_at_epoch_ms", "completed_at_epoch_ms",
)  # fmt: skip

#: The queue table's columns that make a ``QueueInfo``, in the order of its fields.
QUEUE_COLUMNS = (
    "name", "concurrency", "worker_concurrency", "limiter_limit", "limiter_period_seconds",
    "priority_enabled", "partition_queue", "polling_interval_seconds", "database_backed",
    "updated_at", "partition_concurrency", "partition_worker_concurrency",
    "partition_limiter_limit", "partition_limiter_period_seconds",
)  # fmt: skip

WORKFLOW_FIELDS = tuple(f.name for f in fields(WorkflowRow))
STEP_FIELDS = tuple(f.name for f in fields(StepRow))

for _columns, _row_type in (
    (WORKFLOW_COLUMNS, WorkflowRow),
    (STEP_COLUMNS, StepRow),
    (QUEUE_COLUMNS, QueueInfo),
):
    # Column names follow the tables (workflow_uuid), field names the engine
    # (workflow_id): only the count can be checked here; tests check the values.
    if len(_columns) != len(fields(_row_type)):
        raise RuntimeError(f"the columns of {_row_type.__name__} do not match its fields")

_workflow_values = attrgetter(*WORKFLOW_FIELDS)
_step_values = attrgetter(*STEP_FIELDS)


def column_list(columns: Sequence[str], alias: str | None = None) -> str:
    """``a, b, c`` (``t.a, t.b, t.c`` with an alias), as statements list them."""
    prefix = "" if alias is None else alias + "."
    return ", ".join(prefix + c for c in columns)


def workflow_row(r: Any) -> WorkflowRow:
    """A ``WorkflowRow`` from a row of ``WORKFLOW_COLUMNS``."""
    return WorkflowRow(*r)


def workflow_row_or_none(r: Any) -> WorkflowRow | None:
    return None if r is None else WorkflowRow(*r)


def workflow_params(row: WorkflowRow) -> tuple[Any, ...]:
    """The values to bind for ``WORKFLOW_COLUMNS``."""
    values: tuple[Any, ...] = _workflow_values(row)
    return values


def step_row(r: Any) -> StepRow:
    """A ``StepRow`` from a row of ``STEP_COLUMNS``."""
    return StepRow(*r)


def step_row_or_none(r: Any) -> StepRow | None:
    return None if r is None else StepRow(*r)


def step_params(step: StepRow) -> tuple[Any, ...]:
    """The values to bind for ``STEP_COLUMNS``."""
    values: tuple[Any, ...] = _step_values(step)
    return values


def queue_info(r: Any) -> QueueInfo:
    """A ``QueueInfo`` from a row of ``QUEUE_COLUMNS`` (SQLite stores flags as 0 or 1)."""
    return QueueInfo(
        r[0], r[1], r[2], r[3], r[4], bool(r[5]), bool(r[6]), float(r[7]), bool(r[8]), r[9],
        r[10], r[11], r[12], r[13],
    )  # fmt: skip


def stream_entry(r: Any) -> StreamEntry:
    """A ``StreamEntry`` from ``"offset", value, closed`` (SQLite: closed is 0 or 1)."""
    return StreamEntry(r[0], r[1], bool(r[2]))


def queue_activity(counts: Any, starts: Any, periods: int) -> list[QueueActivity]:
    """``QueueActivity`` rows from the ``queue_counts`` rows ``(queue, status, count)``
    and the ``queue_starts`` rows ``(queue, period index, count)``, by queue name."""
    found: dict[str, QueueActivity] = {}

    def of(name: str) -> QueueActivity:
        if name not in found:
            found[name] = QueueActivity(name, 0, 0, [0] * periods)
        return found[name]

    for name, status, count in counts:
        if status == "ENQUEUED":
            of(name).enqueued = int(count)
        else:
            of(name).running = int(count)
    for name, index, count in starts:
        if 0 <= int(index) < periods:
            of(name).started[int(index)] += int(count)
    return [found[name] for name in sorted(found)]


def workflow_streams(rows: Any) -> dict[str, list[StreamEntry]]:
    """Stream values by key, from ``(key, "offset", value, closed)`` rows."""
    streams: dict[str, list[StreamEntry]] = {}
    for r in rows:
        streams.setdefault(str(r[0]), []).append(StreamEntry(r[1], r[2], bool(r[3])))
    return streams
