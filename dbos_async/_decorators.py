"""``@DBOS.workflow``, ``@DBOS.step`` and ``@DBOS.transaction``: validation, registration,
and wrappers that keep the decorated function's signature (``ParamSpec``).

Wrappers are plain functions returning a coroutine, so that the step ID is taken at call
time rather than when the coroutine first runs.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, Protocol, TypeVar, overload

from ._errors import DBOSConfigError
from ._registry import (
    FunctionInfo,
    StepOptions,
    TransactionOptions,
    WorkflowOptions,
    describe,
    registry,
)
from ._run_step import register_temp_workflow
from ._runner import call_workflow
from ._steps import call_step, call_transaction

__all__ = ["StepDecorator", "function_info", "step", "transaction", "workflow"]

P = ParamSpec("P")
R = TypeVar("R")


class StepDecorator(Protocol):
    """What ``@DBOS.step(...)`` returns: it turns an ``async def`` or a plain ``def`` into
    an ``async`` function with the same parameters."""

    @overload
    def __call__(
        self, func: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, func: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]: ...


def function_info(func: object) -> FunctionInfo | None:
    """What a decorated function was registered as (None for anything else)."""
    info = getattr(func, "__dbos_info__", None)
    return info if isinstance(info, FunctionInfo) else None


def _check_called(decorator: str, func: object, name: object) -> None:
    if func is not None:
        raise TypeError(
            f"use @DBOS.{decorator}() with parentheses: @DBOS.{decorator} was applied "
            f"to {getattr(func, '__qualname__', func)!r} directly"
        )
    if name is not None and (not isinstance(name, str) or not name):
        raise DBOSConfigError(
            f"@DBOS.{decorator}(name=...) must be a non-empty string, got {name!r}"
        )


def _require_async(decorator: str, func: Callable[..., Any]) -> None:
    if inspect.isasyncgenfunction(func) or not inspect.iscoroutinefunction(func):
        what = "an async generator" if inspect.isasyncgenfunction(func) else "a plain def"
        raise TypeError(
            f"@DBOS.{decorator}() needs an 'async def' function; "
            f"{getattr(func, '__qualname__', func)!r} is {what}"
        )


def _wrap(
    info: FunctionInfo,
    call: Callable[[FunctionInfo, tuple[Any, ...], dict[str, Any]], Coroutine[Any, Any, Any]],
) -> Callable[..., Coroutine[Any, Any, Any]]:
    @functools.wraps(info.func)
    def wrapper(*args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        return call(info, args, kwargs)

    wrapper.__dbos_info__ = info  # type: ignore[attr-defined]
    mark = getattr(inspect, "markcoroutinefunction", None)  # Python 3.12+
    if mark is not None:
        mark(wrapper)
    return wrapper


def workflow(
    _func: None = None, /, *, name: str | None = None, max_recovery_attempts: int = 100
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """``@DBOS.workflow()`` on an ``async def``: make it a durable workflow.

    Calling the decorated function runs the workflow and returns its result; its steps,
    transactions and messaging calls are checkpointed, so after a crash it resumes from
    its last recorded step. Called inside another workflow it runs as a child workflow.

    ``name`` (default: the function's ``__qualname__``) is the key under which the
    workflow is stored and found again at recovery; keep it stable across deploys.
    ``max_recovery_attempts`` (default 100) bounds how many times a PENDING workflow is
    recovered; past it the workflow becomes ``MAX_RECOVERY_ATTEMPTS_EXCEEDED``.
    Decorating a plain ``def`` (or an async generator) raises ``TypeError``; use the
    decorator with parentheses.
    """
    _check_called("workflow", _func, name)
    options = WorkflowOptions(max_recovery_attempts=max_recovery_attempts)

    def decorator(func: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        _require_async("workflow", func)
        info = describe(name or func.__qualname__, func, options)
        registry.add_workflow(info)
        return _wrap(info, call_workflow)

    return decorator


def step(
    _func: None = None,
    /,
    *,
    name: str | None = None,
    retries_allowed: bool = False,
    max_attempts: int = 3,
    interval_seconds: float = 1.0,
    backoff_rate: float = 2.0,
    preemptible: bool = False,
) -> StepDecorator:
    """``@DBOS.step()`` on an ``async def`` or a plain ``def``: make it a checkpointed step.

    Inside a workflow the step's outcome (its return value, or the exception it raised)
    is recorded before the workflow goes on; a re-executed workflow gets the recorded
    outcome back without running the body again. A plain ``def`` step runs in a worker
    thread (``asyncio.to_thread``), never on the event loop. Called outside a workflow,
    the function simply runs.

    With ``retries_allowed=True`` an exception is retried up to ``max_attempts`` times in
    all, sleeping ``interval_seconds * backoff_rate ** n`` seconds after the ``n``-th
    failure (from 0); after the last failure ``DBOSMaxStepRetriesExceeded`` is raised,
    its ``errors`` holding one exception per attempt. ``name`` defaults to the function's
    ``__qualname__``. ``@DBOS.communicator()`` is the same decorator.

    A cancel (or a workflow deadline) normally lets a running step finish and record its
    outcome. With ``preemptible=True`` (``async def`` steps only) the step's body is
    cancelled at once instead (it sees ``asyncio.CancelledError``, which is not retried),
    nothing is recorded, and a resumed workflow runs the step again from the start.
    """
    _check_called("step", _func, name)
    options = StepOptions(
        retries_allowed=retries_allowed,
        max_attempts=max_attempts,
        interval_seconds=interval_seconds,
        backoff_rate=backoff_rate,
        preemptible=preemptible,
    )

    def decorator(func: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
        if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
            raise TypeError(
                f"@DBOS.step() cannot decorate the generator {func.__qualname__!r}; "
                "return a value instead"
            )
        if options.preemptible and not inspect.iscoroutinefunction(func):
            raise DBOSConfigError(
                f"@DBOS.step(preemptible=True) needs an async def step; {func.__qualname__!r} "
                "is a plain def, whose thread cannot be interrupted"
            )
        info = describe(name or func.__qualname__, func, options)
        register_temp_workflow(info)  # (DBOS.start_workflow(step) runs it as a workflow)
        return _wrap(info, call_step)

    return decorator


def transaction(
    _func: None = None, /, *, name: str | None = None, isolation_level: str = "SERIALIZABLE"
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """``@DBOS.transaction()`` on an ``async def``: run it in one database transaction.

    Inside the body, ``DBOS.sql_connection`` is the transaction's connection on the
    application database (``database_url``): an ``asyncpg.Connection`` on Postgres,
    an ``aiosqlite.Connection`` on SQLite. Inside a workflow, the transaction's output
    is written in the same database transaction as the body's own writes, so a
    transaction that committed is never run again, even after a crash. A serialization
    failure or deadlock is retried with a new transaction.

    ``isolation_level`` is one of ``"SERIALIZABLE"`` (default), ``"REPEATABLE READ"``
    or ``"READ COMMITTED"`` (any case); on SQLite every transaction is serializable.
    ``name`` defaults to the function's ``__qualname__``.
    """
    _check_called("transaction", _func, name)
    options = TransactionOptions(isolation_level=isolation_level)

    def decorator(func: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        _require_async("transaction", func)
        info = describe(name or func.__qualname__, func, options)
        register_temp_workflow(info)  # (DBOS.start_workflow(txn) runs it as a workflow)
        return _wrap(info, call_transaction)

    return decorator
