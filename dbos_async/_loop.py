"""Running a program's main coroutine on uvloop when it is installed."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LOOP_ENV", "loop_factory", "run"]

T = TypeVar("T")

#: Set to ``asyncio`` to keep the standard event loop even where uvloop is installed.
LOOP_ENV = "DBOS_ASYNC_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` when uvloop is installed and ``DBOS_ASYNC_LOOP`` does
    not say ``asyncio``; None (the standard loop) otherwise."""
    choice = os.environ.get(LOOP_ENV, "").strip().lower()
    if choice not in ("", "uvloop", "asyncio"):
        raise ValueError(f"{LOOP_ENV} must be 'uvloop' or 'asyncio', got {choice!r}")
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ImportError(
                f"{LOOP_ENV}=uvloop but uvloop is not installed: pip install 'dbos_async[standard]'"
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """Run ``main`` to completion in a new event loop, as ``asyncio.run`` does, on uvloop
    when it is installed (``pip install 'dbos_async[standard]'``): a faster loop for the
    same code. Set the environment variable ``DBOS_ASYNC_LOOP=asyncio`` to keep the
    standard loop, or ``DBOS_ASYNC_LOOP=uvloop`` to fail when uvloop is missing.

    Use it as the entry point of a program that runs workflows::

        async def main() -> None:
            async with DBOS(config):
                ...

        dbos_async.run(main())

    Under a server that runs the event loop itself (uvicorn, hypercorn), choose the loop
    there instead (``uvicorn --loop uvloop``)."""
    try:
        factory = loop_factory()
    except BaseException:
        main.close()  # (never awaited: don't warn about it)
        raise
    with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
        return runner.run(main)
