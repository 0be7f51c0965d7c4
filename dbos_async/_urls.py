"""Database URLs: which backend a URL names, a SQLite URL's file, a URL fit to print.

A layer-0 module (it imports nothing from ``dbos_async``): the configuration, the storage
backends and the CLI all ask it, so the answers agree.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["SQLITE_PREFIX", "is_sqlite_url", "redact_url", "sqlite_path"]

#: What every valid SQLite URL starts with: ``sqlite:///relative/path``,
#: ``sqlite:////absolute/path`` or ``sqlite:///:memory:``.
SQLITE_PREFIX = "sqlite:///"


def is_sqlite_url(url: str) -> bool:
    """True if ``url`` names a SQLite database (well-formed or not: ``_config`` checks)."""
    return url.startswith("sqlite:")


def sqlite_path(url: str) -> str:
    """The file path of a valid SQLite URL (``:memory:`` for the in-memory database)."""
    return url[len(SQLITE_PREFIX) :]


def redact_url(url: str) -> str:
    """``url`` with its password, if any, shown as ``***``; a URL that cannot be parsed
    is returned as it is."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@")
    return url.replace(parts.netloc, netloc, 1)
