"""Wall-clock time as the database stores it: integer epoch milliseconds."""

from __future__ import annotations

import time

__all__ = ["now_ms"]


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    return int(time.time() * 1000)
