"""Named SQL: every statement a backend runs, in its query files, loaded once.

``sql/{backend}/queries/*.sql`` hold blocks like::

    -- name: get_workflow
    -- The status row of one workflow.
    SELECT {workflow_columns} FROM dbos_async.workflow_status WHERE workflow_uuid = $1;

A block runs from its ``-- name:`` line to the next one. The comment lines right after
the name say what the statement does (at least one is required); the rest, up to an
optional closing ``;``, is the statement. Names are unique across a backend's files.

A statement's text is fixed when the files are loaded, so asyncpg's per-connection cache
of prepared statements (keyed by text) finds it on every call. Placeholders in braces
are filled in then, from the one Python definition of what they stand for:

- ``{workflow_columns}``, ``{step_columns}``, ``{queue_columns}``: the column lists of
  ``_columns``, in the order its mappers read them; ``{w.workflow_columns}`` prefixes
  each column with ``w.``;
- ``{channel}``: the Postgres notification channel (``_keys.CHANNEL``), as a literal;
- ``{queue_key:EXPR}``: the notification key that wakes the workers of the queue named
  by the SQL expression ``EXPR``, built by ``_keys.notification_key``'s rule.

Any other brace is an error, so a typo fails at import, not at run time.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from importlib import resources

from ._columns import QUEUE_COLUMNS, STEP_COLUMNS, WORKFLOW_COLUMNS, column_list
from ._keys import CHANNEL, notification_key

__all__ = ["Queries", "load_queries", "sql_text"]

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_COLUMN_LISTS = {
    "workflow_columns": WORKFLOW_COLUMNS,
    "step_columns": STEP_COLUMNS,
    "queue_columns": QUEUE_COLUMNS,
}
#: How each backend spells the character with a code point (for control characters).
_CHAR_FUNCTION = {"postgres": "chr", "sqlite": "char"}


class Queries(Mapping[str, str]):
    """One backend's statements by name (``Q["get_workflow"]``), with what each does
    (``Q.doc("get_workflow")``)."""

    def __init__(self, backend: str, statements: dict[str, str], docs: dict[str, str]) -> None:
        self.backend = backend
        self._statements = statements
        self._docs = docs

    def __getitem__(self, name: str) -> str:
        try:
            return self._statements[name]
        except KeyError:
            raise KeyError(f"no query named {name!r} in sql/{self.backend}/queries") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._statements)

    def __len__(self) -> int:
        return len(self._statements)

    def doc(self, name: str) -> str:
        return self._docs[name]


def sql_text(value: str, backend: str) -> str:
    """``value`` as a SQL string expression: quoted runs of printable characters, control
    characters as ``chr(N)`` (Postgres) or ``char(N)`` (SQLite), joined by ``||``."""
    parts: list[str] = []
    run = ""
    for ch in value:
        if ch.isprintable():
            run += ch
            continue
        if run:
            parts.append("'" + run.replace("'", "''") + "'")
            run = ""
        parts.append(f"{_CHAR_FUNCTION[backend]}({ord(ch)})")
    if run or not parts:
        parts.append("'" + run.replace("'", "''") + "'")
    return " || ".join(parts)


def _queue_key(expression: str, backend: str) -> str:
    """The SQL expression of ``notification_key("queue", <expression>, "")``."""
    marker = "\x00"
    prefix, found, suffix = notification_key("queue", marker, "").partition(marker)
    if not found or marker in suffix:
        raise RuntimeError("notification_key must place the queue name exactly once")
    return " || ".join(
        part
        for part in (
            sql_text(prefix, backend) if prefix else "",
            expression,
            sql_text(suffix, backend) if suffix else "",
        )
        if part
    )


def _fill(text: str, backend: str, where: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name, _, argument = match.group(1).partition(":")
        alias, dot, base = name.rpartition(".")
        if base in _COLUMN_LISTS and not argument:
            return column_list(_COLUMN_LISTS[base], alias if dot else None)
        if name == "channel" and not argument:
            return sql_text(CHANNEL, backend)
        if name == "queue_key" and argument.strip():
            return _queue_key(argument.strip(), backend)
        raise ValueError(f"{where}: unknown placeholder {match.group(0)!r}")

    return _PLACEHOLDER.sub(replace, text)


def parse_queries(text: str, backend: str, where: str) -> dict[str, tuple[str, str]]:
    """The blocks of one query file: ``{name: (statement, doc)}``."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        match = _NAME.match(line.strip())
        if match:
            name = match.group(1)
            if name in blocks:
                raise ValueError(f"{where}:{number}: query {name!r} is defined twice")
            current = blocks[name] = []
        elif current is not None:
            current.append(line.rstrip())
        elif line.strip() and not line.lstrip().startswith("--"):
            raise ValueError(f"{where}:{number}: SQL outside a '-- name:' block")
    parsed: dict[str, tuple[str, str]] = {}
    for name, lines in blocks.items():
        doc: list[str] = []
        while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
            line = lines.pop(0).strip()
            if line:
                doc.append(line[2:].strip())
        while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("--")):
            lines.pop()  # (comments between blocks belong to no statement)
        statement = "\n".join(lines).strip().removesuffix(";").rstrip()
        if not doc or not statement:
            raise ValueError(f"{where}: query {name!r} needs a comment line and a statement")
        parsed[name] = (_fill(statement, backend, f"{where}: {name}"), " ".join(doc))
    return parsed


@functools.cache
def load_queries(backend: str) -> Queries:
    """Every named statement of ``backend`` ("postgres" or "sqlite"), parsed once."""
    folder = resources.files(__package__).joinpath("sql", backend, "queries")
    statements: dict[str, str] = {}
    docs: dict[str, str] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        where = f"sql/{backend}/queries/{entry.name}"
        for name, (statement, doc) in parse_queries(
            entry.read_text(encoding="utf-8"), backend, where
        ).items():
            if name in statements:
                raise ValueError(f"{where}: query {name!r} is defined in two files")
            statements[name] = statement
            docs[name] = doc
    return Queries(backend, statements, docs)
