"""Injected lost replies: a statement runs and commits on the server, then the connection
dies before its answer arrives, so the caller cannot tell whether it committed.

``LostReplies.arm(marker)`` makes the next statement whose text contains ``marker`` (on
any asyncpg connection of this process) run to completion, then terminates its
connection and raises ``ConnectionDoesNotExistError`` instead of returning.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from asyncpg.connection import Connection


class LostReplies:
    def __init__(self) -> None:
        self._armed: list[list[Any]] = []
        #: Statements whose reply was dropped, in order.
        self.dropped: list[str] = []

    def arm(self, marker: str, times: int = 1, *, only_rows: bool = False) -> None:
        """Drop the reply of the next ``times`` statements containing ``marker``;
        ``only_rows``: only of those that returned rows (a claim that took something)."""
        self._armed.append([marker, times, only_rows])

    def _take(self, query: str, result: Any = None) -> bool:
        for rule in self._armed:
            if rule[2] and not _has_rows(result):
                continue
            if rule[1] > 0 and rule[0] in query:
                rule[1] -= 1
                self.dropped.append(query)
                return True
        return False

    def pending(self) -> list[str]:
        return [rule[0] for rule in self._armed if rule[1] > 0]


def _has_rows(result: Any) -> bool:
    # Connection._execute returns (records, status, completed) or records.
    rows = result[0] if isinstance(result, tuple) else result
    return isinstance(rows, list) and len(rows) > 0


@contextlib.contextmanager
def lost_replies(monkeypatch: pytest.MonkeyPatch) -> Iterator[LostReplies]:
    injector = LostReplies()
    real_execute = Connection._execute
    real_simple = Connection.execute

    async def _execute(self: Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        result = await real_execute(self, query, *args, **kwargs)
        if injector._take(query, result):
            self.terminate()
            raise asyncpg.ConnectionDoesNotExistError("injected: the reply was lost")
        return result

    async def execute(self: Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        result = await real_simple(self, query, *args, **kwargs)
        if not args and injector._take(query):  # (with args it went through _execute)
            self.terminate()
            raise asyncpg.ConnectionDoesNotExistError("injected: the reply was lost")
        return result

    monkeypatch.setattr(Connection, "_execute", _execute)
    monkeypatch.setattr(Connection, "execute", execute)
    yield injector
