"""Rendering for ``dbos-async``: JSON-ready dicts and aligned text tables.

JSON keeps times as numbers (epoch milliseconds) and inputs and outputs as they
deserialize, with ``repr`` for values JSON cannot hold. Tables show times as ISO 8601 UTC
and empty cells as ``-``, in the style of ``kubectl get``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from collections.abc import Sequence
from typing import Any

from .._status import StepInfo, WorkflowStatus

__all__ = [
    "Result",
    "describe",
    "error_json",
    "iso_time",
    "jsonable",
    "short",
    "status_json",
    "step_json",
    "table",
]

NONE = "-"
_CELL_WIDTH = 48


@dataclasses.dataclass(frozen=True)
class Result:
    """What a command prints: ``data`` under ``--json``, else ``text``."""

    data: Any
    text: str

    def render(self, as_json: bool) -> str:
        return json.dumps(self.data, indent=2) if as_json else self.text


def jsonable(value: Any) -> Any:
    """``value`` with every part JSON cannot hold replaced by its ``repr``."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: jsonable(v) for k, v in value.items()}
    return repr(value)


def error_json(error: BaseException | None) -> dict[str, str] | None:
    if error is None:
        return None
    return {"type": type(error).__name__, "message": str(error)}


def status_json(status: WorkflowStatus) -> dict[str, Any]:
    """A workflow status as a JSON object with the ``WorkflowStatus`` field names."""
    data = {f.name: getattr(status, f.name) for f in dataclasses.fields(status)}
    data["status"] = status.status.value
    data["input"] = jsonable(status.input)
    data["output"] = jsonable(status.output)
    data["error"] = error_json(status.error)
    return data


def step_json(step: StepInfo) -> dict[str, Any]:
    """A recorded step as a JSON object with the ``StepInfo`` field names."""
    data = {f.name: getattr(step, f.name) for f in dataclasses.fields(step)}
    data["output"] = jsonable(step.output)
    data["error"] = error_json(step.error)
    return data


def iso_time(epoch_ms: int | None) -> str:
    """Epoch milliseconds as ISO 8601 UTC to the second."""
    if epoch_ms is None:
        return NONE
    moment = dt.datetime.fromtimestamp(epoch_ms / 1000, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def text(value: Any) -> str:
    """A cell's full text: plain strings as they are, other values as JSON."""
    if value is None:
        return NONE
    if isinstance(value, str):
        return value
    return json.dumps(jsonable(value))


def short(value: Any) -> str:
    """A cell's text, cut to fit a table column."""
    full = text(value).replace("\n", " ")
    return full if len(full) <= _CELL_WIDTH else full[: _CELL_WIDTH - 3] + "..."


def error_text(error: BaseException | None) -> str:
    return NONE if error is None else f"{type(error).__name__}: {error}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> str:
    """Left-aligned columns three spaces apart; ``empty`` when there are no rows."""
    if not rows:
        return empty
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    header = "   ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    return "\n".join(line.rstrip() for line in [header, *lines])


def describe(pairs: Sequence[tuple[str, str]]) -> str:
    """``Key:  value`` lines with the values aligned, like ``kubectl describe``."""
    width = max(len(key) for key, _ in pairs) + 1
    indent = "\n" + " " * (width + 2)  # continuation lines stay in the value column
    return "\n".join(
        f"{key + ':':<{width}}  " + value.replace("\n", indent) for key, value in pairs
    )
