"""HTML that escapes by default: every value put into a page goes through ``escape``.

``html(template, *values)`` fills a template (a literal in this package, never data)
with ``str.format`` after escaping each value, so a workflow ID, a name or an output
that holds ``<script>`` shows as text. Only ``Markup`` (HTML this package built) is
inserted as it is, so pieces compose: ``html("<td>{}</td>", link(...))``.
"""

from __future__ import annotations

import html as _stdlib_html
from collections.abc import Iterable
from urllib.parse import urlencode

__all__ = ["Markup", "escape", "html", "join", "query_url"]


class Markup(str):
    """Text that is already HTML (built by this package from escaped values)."""

    __slots__ = ()


def escape(value: object) -> Markup:
    """``value`` as HTML text: ``& < > " '`` escaped (``Markup`` passes through)."""
    if isinstance(value, Markup):
        return value
    return Markup(_stdlib_html.escape("" if value is None else str(value), quote=True))


def html(template: str, *args: object, **kwargs: object) -> Markup:
    """``template.format(...)`` with every value escaped. The template is trusted HTML:
    a literal of this package, never built from data."""
    return Markup(
        template.format(*(escape(a) for a in args), **{k: escape(v) for k, v in kwargs.items()})
    )


def join(parts: Iterable[Markup], separator: str = "") -> Markup:
    """Pieces of HTML one after the other (each escaped unless it is ``Markup``)."""
    return Markup(escape(separator).join(escape(p) for p in parts))


def query_url(path: str, params: Iterable[tuple[str, object]]) -> str:
    """``path`` with the query string of the non-empty ``params`` (URL-encoded; still to
    be escaped as an attribute, which ``html`` does)."""
    kept = [(k, str(v)) for k, v in params if v is not None and v != ""]
    return f"{path}?{urlencode(kept)}" if kept else path
