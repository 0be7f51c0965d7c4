"""OpenTelemetry spans for workflows and steps, and workflow fields on log records.

Tracing is on when the ``opentelemetry`` API is installed (the ``otel`` extra) and the
application has set a tracer provider (``opentelemetry.trace.set_tracer_provider``).
Then each workflow run is a span named after the workflow, and each step, transaction
and built-in step (``DBOS.sleep``, ``DBOS.send``, ``DBOS.recv``, events, streams) a
span named after it, a child of its workflow's span. Every span carries
``dbos.workflow_id``; step spans also ``dbos.step_id`` and ``dbos.step_name``; the
workflow span ``dbos.workflow_name``. A workflow started or called from code that runs
inside a span (a web request's, say) has that span as its parent: the workflow's task
starts in its caller's context. A recovered workflow's span is a new root.

Without the API installed nothing is imported and every hook is a constant test; with
it installed but no provider set, a hook costs one provider lookup.

``install_log_fields`` makes every ``logging.LogRecord`` emitted by a workflow's code
carry ``workflow_id`` and ``step_id``: the workflow's ID and, inside a step or
transaction body, that step's ID (None in the workflow's own code). Records from outside
workflows carry neither, so code there may still pass ``extra={"workflow_id": ...}``;
a format string that names them gives them a default with ``logging.Formatter(fmt,
defaults={"workflow_id": None, "step_id": None})``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from ._context import current_step, current_workflow

__all__ = ["current_span", "install_log_fields", "traced", "workflow_span"]

T = TypeVar("T")

try:
    from opentelemetry import trace as _trace
except ImportError:  # the otel extra is not installed: tracing is off, at no cost
    _trace = None  # type: ignore[assignment]

_INSTRUMENTATION = "dbos_async"
_cached: tuple[Any, Any] | None = None  # (provider, its tracer)
#: OpenTelemetry makes its provider from this variable when none was set in code; read
#: once, here, as an application sets it before it starts (``opentelemetry-instrument``).
_PROVIDER_FROM_ENV = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
_NOT_KNOWN = object()
#: The span of a workflow when tracing is off (reusable, and nothing to build per call).
_NO_SPAN: contextlib.AbstractContextManager[None] = contextlib.nullcontext()


def _tracer() -> Any | None:
    """The tracer of the provider the application set, or None if it set none.

    Called for every workflow and every step. With the API installed and no provider set
    (tracing off), ``get_tracer_provider`` looks up an environment variable each time
    (~1 us); OpenTelemetry's own global (None until a provider is set, as that function
    reads it) answers first instead, where it exists."""
    global _cached
    if _trace is None:
        return None
    if getattr(_trace, "_TRACER_PROVIDER", _NOT_KNOWN) is None and not _PROVIDER_FROM_ENV:
        return None
    provider = _trace.get_tracer_provider()
    if isinstance(provider, _trace.ProxyTracerProvider):
        return None  # no provider set: don't build spans nobody records
    if _cached is None or _cached[0] is not provider:
        _cached = (provider, provider.get_tracer(_INSTRUMENTATION))
    return _cached[1]


def current_span() -> Any | None:
    """The current span (``DBOS.span``): the running step's or workflow's when tracing is
    on, a non-recording span when no provider is set; None without OpenTelemetry."""
    if _trace is None:
        return None
    return _trace.get_current_span()


@contextlib.contextmanager
def _span(tracer: Any, name: str, attributes: dict[str, Any]) -> Iterator[None]:
    with tracer.start_as_current_span(name, attributes=attributes):
        yield


def workflow_span(workflow_id: str, name: str) -> contextlib.AbstractContextManager[None]:
    """The span of one run of a workflow's body (a no-op context when tracing is off)."""
    tracer = _tracer()
    if tracer is None:
        return _NO_SPAN
    return _span(tracer, name, {"dbos.workflow_id": workflow_id, "dbos.workflow_name": name})


def traced(
    workflow_id: str, step_id: int, name: str, run: Coroutine[Any, Any, T]
) -> Coroutine[Any, Any, T]:
    """``run`` (a step's coroutine) inside the step's span; ``run`` itself when tracing
    is off. The span is current while the body runs, so spans the body makes nest in it."""
    tracer = _tracer()
    if tracer is None:
        return run
    return _in_span(tracer, workflow_id, step_id, name, run)


async def _in_span(
    tracer: Any, workflow_id: str, step_id: int, name: str, run: Coroutine[Any, Any, T]
) -> T:
    attributes = {"dbos.workflow_id": workflow_id, "dbos.step_id": step_id, "dbos.step_name": name}
    with tracer.start_as_current_span(name, attributes=attributes):
        return await run


# -- log records ------------------------------------------------------------------------

_installed = False


def install_log_fields() -> None:
    """Wrap the log record factory (once per process) so records emitted by a workflow's
    code carry ``workflow_id`` and ``step_id`` (None outside step bodies). Records from
    elsewhere are left alone: their ``extra`` may name those fields itself."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        frame = current_step.get()
        if frame is not None and frame.workflow_id is not None:
            record.workflow_id = frame.workflow_id
            record.step_id = frame.step_id
        else:
            state = current_workflow.get()
            if state is not None:
                record.workflow_id = state.workflow_id
                record.step_id = None
        return record

    logging.setLogRecordFactory(factory)
