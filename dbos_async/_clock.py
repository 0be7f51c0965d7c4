"""Wall-clock time as the database stores it: integer epoch milliseconds."""

from __future__ import annotations

import math
import time

__all__ = ["is_seconds", "now_ms"]


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    return time.time_ns() // 1_000_000  # (an int throughout: ~twice as fast as time())


def is_seconds(value: object) -> bool:
    """Whether ``value`` is a finite, non-negative number of seconds (not a bool)."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )
