"""The rules for identifiers that reach the database as text, checked once, at the API.

Both backends must accept exactly the same strings, and a caller must never see a raw
driver or codec error: Postgres refuses NUL in text, asyncpg cannot encode a lone
surrogate, a btree index entry is limited to about 2.7 kB, and internal notification keys
use U+001F as a separator. So every identifier is checked before anything is written,
with a ``TypeError`` (not a ``str``) or a ``ValueError`` that names the parameter, shows
the value (``repr``) and states the rule.

**Workflow IDs** (and queue names, which share their place in notification keys):

- a non-empty ``str``;
- no control characters (Unicode category Cc: U+0000-U+001F, U+007F-U+009F), so none of
  the separators the runtime uses inside its keys, and nothing invisible in logs;
- valid Unicode: encodable as UTF-8, so no lone surrogates (``"\\ud800"``);
- at most ``MAX_ID_BYTES`` (1000) bytes once encoded as UTF-8.

Anything else is allowed: spaces, quotes, ``%``, ``/``, emoji, any letters. A child
workflow's ID is ``f"{parent_id}-{N}"``, a few bytes longer than its parent's, so a parent
ID within about 20 bytes of the bound gives children the API cannot name.

**Text** (topics, event and stream keys, idempotency keys, deduplication IDs, partition
keys, workflow names, application versions): a ``str`` with no NUL, encodable as UTF-8,
of at most ``MAX_TEXT_BYTES`` (1000) bytes; other control characters are allowed. Where
the API already wanted them non-empty (deduplication IDs, partition keys, workflow
names), they still must be.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "MAX_ID_BYTES",
    "MAX_TEXT_BYTES",
    "check_text",
    "check_workflow_filters",
    "check_workflow_id",
    "check_workflow_ids",
]

MAX_ID_BYTES = 1000
MAX_TEXT_BYTES = 1000

ID_RULE = (
    f"a non-empty str of at most {MAX_ID_BYTES} UTF-8 bytes, with no control characters "
    "(U+0000-U+001F, U+007F-U+009F) and no lone surrogates"
)
TEXT_RULE = f"a str of at most {MAX_TEXT_BYTES} UTF-8 bytes, with no NUL and no lone surrogates"

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _shown(value: str) -> str:
    """``repr`` of the value, cut short when it is long (the error must stay readable)."""
    if len(value) <= 80:
        return repr(value)
    return f"{value[:60]!r}... ({len(value)} characters)"


def _utf8_size(value: str, what: str, rule: str) -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{what} must be {rule}; got {_shown(value)}, which has a lone surrogate "
            f"{value[exc.start]!r} at index {exc.start}"
        ) from None


def check_workflow_id(value: object, what: str = "workflow_id") -> str:
    """``value`` if it is a valid workflow ID (or queue name), else a ``TypeError`` or
    ``ValueError`` naming ``what`` (see the module docstring for the rule)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be {ID_RULE}; got {type(value).__name__} {value!r}")
    if not value:
        raise ValueError(f"{what} must be {ID_RULE}; got '' (empty)")
    bad = _CONTROL.search(value)
    if bad is not None:
        raise ValueError(
            f"{what} must be {ID_RULE}; got {_shown(value)}, which has the control "
            f"character {bad.group()!r} at index {bad.start()}"
        )
    size = _utf8_size(value, what, ID_RULE)
    if size > MAX_ID_BYTES:
        raise ValueError(f"{what} must be {ID_RULE}; got {_shown(value)}, of {size} bytes")
    return value


def check_workflow_ids(values: object, what: str = "workflow_ids") -> list[str]:
    """A list of workflow IDs (any iterable of them but a single str)."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{what} must be a list of workflow IDs, got {values!r}")
    return [check_workflow_id(v, f"{what}[{i}]") for i, v in enumerate(values)]


def check_text(
    value: object, what: str, *, optional: bool = False, non_empty: bool = False
) -> None:
    """Nothing if ``value`` is valid text (None too, if ``optional``), else a
    ``TypeError`` or ``ValueError`` naming ``what``."""
    if value is None and optional:
        return
    if not isinstance(value, str):
        kind = "a str or None" if optional else "a str"
        raise TypeError(f"{what} must be {kind}, got {type(value).__name__}: {value!r}")
    if non_empty and not value:
        raise ValueError(f"{what} must be a non-empty str; got '' (empty)")
    nul = value.find("\x00")
    if nul >= 0:
        raise ValueError(
            f"{what} must be {TEXT_RULE}; got {_shown(value)}, which has NUL at index {nul}"
        )
    size = _utf8_size(value, what, TEXT_RULE)
    if size > MAX_TEXT_BYTES:
        raise ValueError(f"{what} must be {TEXT_RULE}; got {_shown(value)}, of {size} bytes")


def check_workflow_filters(filters: Mapping[str, Any]) -> None:
    """The identifier filters of ``list_workflows`` / ``list_queued_workflows``:
    ``workflow_ids`` and ``parent_workflow_id`` are workflow IDs, ``name``,
    ``queue_name`` and ``workflow_id_prefix`` text (None, or absent, means no filter)."""
    ids = filters.get("workflow_ids")
    if ids is not None:
        check_workflow_ids(ids)
    parent = filters.get("parent_workflow_id")
    if parent is not None:
        check_workflow_id(parent, "parent_workflow_id")
    for what in ("name", "queue_name", "workflow_id_prefix"):
        check_text(filters.get(what), what, optional=True)
