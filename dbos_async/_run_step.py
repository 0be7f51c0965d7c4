"""Steps without a decorator, and steps started as workflows.

``DBOS.run_step(options, func, *args, **kwargs)`` runs a plain function or coroutine
function as a step with DBOS Transact's step options (a dict: ``name``,
``retries_allowed``, ``max_attempts``, ``interval_seconds``, ``backoff_rate``,
``preemptible``): from a workflow's own code it is checkpointed exactly as a
``@DBOS.step()`` would be; elsewhere the function simply runs.

``DBOS.start_workflow(step, ...)`` (and ``Queue.enqueue(step, ...)``) on a function
decorated with ``@DBOS.step()`` or ``@DBOS.transaction()`` runs it as a workflow of its
own whose one step is that call, as DBOS Transact does: the workflow is named
``<temp>.<step name>`` and is registered when the step is decorated, so recovery in any
process that imports the step finds it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from ._errors import DBOSConfigError
from ._registry import FunctionInfo, StepOptions, WorkflowOptions, describe, registry
from ._steps import call_step, call_transaction

__all__ = ["TEMP_WORKFLOW_PREFIX", "as_workflow", "register_temp_workflow", "run_step"]

#: The name of a step or transaction started as a workflow is this plus its own name.
TEMP_WORKFLOW_PREFIX = "<temp>."

#: The keys of DBOS Transact's ``StepOptions`` this library runs.
_STEP_OPTION_KEYS = frozenset(
    {"name", "retries_allowed", "max_attempts", "interval_seconds", "backoff_rate", "preemptible"}
)
#: Keys DBOS Transact takes that this library does not have: refused, not ignored.
_UNSUPPORTED_KEYS = frozenset({"should_retry", "timeout_seconds"})


def _options(
    options: Mapping[str, Any] | None, func: Callable[..., Any]
) -> tuple[str, StepOptions]:
    """The step's name and options from DBOS Transact's step options dict."""
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise TypeError(f"DBOS.run_step() takes a dict of step options (or None), got {options!r}")
    unsupported = sorted(set(options) & _UNSUPPORTED_KEYS)
    if unsupported:
        raise DBOSConfigError(
            f"DBOS.run_step() step option(s) {', '.join(unsupported)} are not supported by "
            f"dbos_async; the options it runs are {', '.join(sorted(_STEP_OPTION_KEYS))}"
        )
    unknown = sorted(set(options) - _STEP_OPTION_KEYS)
    if unknown:
        raise DBOSConfigError(
            f"DBOS.run_step() got unknown step option(s) {', '.join(map(repr, unknown))}; "
            f"the options are {', '.join(sorted(_STEP_OPTION_KEYS))}"
        )
    name = options.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        raise DBOSConfigError(
            f"DBOS.run_step() step option 'name' must be a non-empty str, got {name!r}"
        )
    fields = {k: v for k, v in options.items() if k != "name" and v is not None}
    step_options = StepOptions(**fields)
    if step_options.preemptible and not inspect.iscoroutinefunction(func):
        raise DBOSConfigError(
            "DBOS.run_step() with preemptible=True needs an async def function; "
            f"{getattr(func, '__qualname__', func)!r} is a plain def, whose thread cannot be "
            "interrupted"
        )
    return name or getattr(func, "__qualname__", None) or repr(func), step_options


def run_step(
    options: Mapping[str, Any] | None,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Coroutine[Any, Any, Any]:
    """``DBOS.run_step``: ``func(*args, **kwargs)`` as a step with ``options``; the step ID
    is taken now, at call time, as for every step."""
    if not callable(func):
        raise TypeError(f"DBOS.run_step() needs a function to run, got {func!r}")
    if inspect.isasyncgenfunction(func) or inspect.isgeneratorfunction(func):
        raise TypeError(
            f"DBOS.run_step() cannot run the generator {getattr(func, '__qualname__', func)!r}; "
            "return a value instead"
        )
    name, step_options = _options(options, func)
    try:
        info = describe(name, func, step_options)
    except (TypeError, ValueError):  # (no signature to read: a builtin, for one)
        info = FunctionInfo(
            name=name,
            func=func,
            signature=inspect.Signature(),
            is_async=inspect.iscoroutinefunction(func),
            options=step_options,
        )
    return call_step(info, args, kwargs)


def _temp_workflow(info: FunctionInfo) -> FunctionInfo:
    call = call_step if info.kind == "step" else call_transaction

    async def run_as_workflow(*args: Any, **kwargs: Any) -> Any:
        return await call(info, args, kwargs)

    # Its inputs are the step's: recovery decodes them with the step's signature and
    # hints. (Its source, which the default application version hashes, is this
    # function's, as in DBOS Transact: a step's body does not change the version.)
    run_as_workflow.__annotations__ = dict(getattr(info.func, "__annotations__", {}))
    run_as_workflow.__module__ = info.func.__module__
    run_as_workflow.__qualname__ = f"{info.func.__qualname__}.<as workflow>"
    run_as_workflow.__dbos_step__ = info  # type: ignore[attr-defined]
    return FunctionInfo(
        name=TEMP_WORKFLOW_PREFIX + info.name,
        func=run_as_workflow,
        signature=info.signature,
        is_async=True,
        options=WorkflowOptions(),
    )


def register_temp_workflow(info: FunctionInfo) -> None:
    """Register the workflow that runs the step or transaction ``info`` on its own (at
    decoration: a process that imports the step can then recover such a workflow). A
    second step of the same name replaces the first, as a redefinition does."""
    temp = _temp_workflow(info)
    registry.workflows[temp.name] = temp


def as_workflow(info: FunctionInfo | None) -> FunctionInfo | None:
    """What ``DBOS.start_workflow`` or ``Queue.enqueue`` runs for a decorated function:
    a workflow as it is, a step or transaction as its own temporary workflow (registered
    now if it was not: the registry was cleared since), anything else None."""
    if info is None or info.kind == "workflow":
        return info
    name = TEMP_WORKFLOW_PREFIX + info.name
    temp = registry.workflows.get(name)
    if temp is None or getattr(temp.func, "__dbos_step__", None) is not info:
        register_temp_workflow(info)
        temp = registry.workflows[name]
    return temp
