"""Tracing and log fields (API.md section 10): spans from the OpenTelemetry SDK's
in-memory exporter, on both backends; workflow fields on log records; nothing imported
or built when tracing is off."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from opentelemetry.util._once import Once

from dbos_async import DBOS, Queue, SetWorkflowID

log = logging.getLogger("tests.tracing")


def _reset_global_provider() -> None:
    # What opentelemetry's own test utilities do: the API lets a provider be set once.
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """A tracer provider set for this test, exporting to memory; unset afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _reset_global_provider()
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        provider.shutdown()
        _reset_global_provider()


@DBOS.step()
async def tr_step(x: int) -> int:
    log.info("inside the step")
    return x + 1


@DBOS.step()
async def tr_failing_step() -> None:
    raise ValueError("no luck")


@DBOS.transaction()
async def tr_transaction(x: int) -> int:
    conn = DBOS.sql_connection
    if hasattr(conn, "fetchval"):  # asyncpg
        return int(await conn.fetchval("SELECT $1::int * 2", x))
    cursor = await conn.execute("SELECT ? * 2", (x,))
    row = await cursor.fetchone()
    return int(row[0])


@DBOS.workflow()
async def tr_child(x: int) -> int:
    return await tr_step(x)


@DBOS.workflow()
async def tr_workflow(x: int) -> int:
    log.info("in the workflow's own code")
    y = await tr_step(x)
    z = await tr_transaction(y)
    await DBOS.sleep(0.01)
    await DBOS.set_event("progress", z)
    await DBOS.send(DBOS.workflow_id or "", "hello", topic="self")
    got = await DBOS.recv("self", timeout_seconds=5)
    assert got == "hello"
    return await tr_child(z)


@DBOS.workflow()
async def tr_failing_workflow() -> None:
    with contextlib.suppress(ValueError):
        await tr_failing_step()
    raise RuntimeError("the workflow failed")


def by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in finished:
        out.setdefault(span.name, []).append(span)
    return out


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


async def test_tracing__span_tree_of_a_workflow(dbos: DBOS, spans: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("request") as request_span, SetWorkflowID("traced-1"):
        assert await tr_workflow(3) == 9
    finished = spans.get_finished_spans()
    named = by_name(finished)

    # The caller's span is the workflow's parent, and one trace holds them all.
    (wf,) = named["tr_workflow"]
    assert parent_id(wf) == request_span.get_span_context().span_id
    assert {s.context.trace_id for s in finished if s.context} == {
        request_span.get_span_context().trace_id
    }
    assert wf.attributes is not None
    assert wf.attributes["dbos.workflow_id"] == "traced-1"
    assert wf.attributes["dbos.workflow_name"] == "tr_workflow"

    # Every step of the parent is a child of its span, with its ID and name, in order.
    children = sorted(
        (s for s in finished if parent_id(s) == span_id(wf) and s.name != "tr_child"),
        key=lambda s: s.attributes["dbos.step_id"] if s.attributes else 0,
    )
    shown = [
        (s.name, s.attributes["dbos.step_id"], s.attributes["dbos.workflow_id"])
        for s in children
        if s.attributes
    ]
    assert shown == [
        ("tr_step", 1, "traced-1"),
        ("tr_transaction", 2, "traced-1"),
        ("DBOS.sleep", 3, "traced-1"),
        ("DBOS.setEvent", 4, "traced-1"),
        ("DBOS.send", 5, "traced-1"),
        ("DBOS.recv", 6, "traced-1"),
    ]
    for s in children:
        assert s.attributes is not None
        assert s.attributes["dbos.step_name"] == s.name

    # The child workflow's span hangs under the parent's; its step under it.
    (child,) = named["tr_child"]
    assert parent_id(child) == span_id(wf)
    assert child.attributes is not None
    assert child.attributes["dbos.workflow_id"] == "traced-1-8"
    child_steps = [s for s in named["tr_step"] if parent_id(s) == span_id(child)]
    assert len(child_steps) == 1
    assert child_steps[0].attributes is not None
    assert child_steps[0].attributes["dbos.workflow_id"] == "traced-1-8"

    # Spans nest in time as they do in the tree.
    for s in children:
        assert wf.start_time is not None and wf.end_time is not None
        assert s.start_time is not None and s.end_time is not None
        assert wf.start_time <= s.start_time <= s.end_time <= wf.end_time


async def test_tracing__errors_mark_their_spans(dbos: DBOS, spans: InMemorySpanExporter) -> None:
    with SetWorkflowID("traced-err"), pytest.raises(RuntimeError):
        await tr_failing_workflow()
    named = by_name(spans.get_finished_spans())
    (step,) = named["tr_failing_step"]
    (wf,) = named["tr_failing_workflow"]
    assert step.status.status_code is StatusCode.ERROR
    assert wf.status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in wf.events)
    assert parent_id(step) == span_id(wf)


async def test_tracing__a_started_workflow_has_its_callers_span_as_parent(
    dbos: DBOS, spans: InMemorySpanExporter
) -> None:
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("enqueuer") as caller:
        handle = await DBOS.start_workflow(tr_child, 1)
    assert await handle.get_result() == 2
    (wf,) = by_name(spans.get_finished_spans())["tr_child"]
    assert parent_id(wf) == caller.get_span_context().span_id


span_seen: list[int] = []


@DBOS.step()
async def tr_span_step() -> None:
    span_seen.append(DBOS.span.get_span_context().span_id)


@DBOS.workflow()
async def tr_span_workflow() -> None:
    span_seen.append(DBOS.span.get_span_context().span_id)
    await tr_span_step()


async def test_tracing__dbos_span_is_the_running_step_or_workflow(
    dbos: DBOS, spans: InMemorySpanExporter
) -> None:
    span_seen.clear()
    await tr_span_workflow()
    named = by_name(spans.get_finished_spans())
    assert span_seen == [span_id(named["tr_span_workflow"][0]), span_id(named["tr_span_step"][0])]


tr_queue = Queue("tracing-queue")


async def test_tracing__queued_workflows_start_their_own_trace(
    db_url: str, spans: InMemorySpanExporter
) -> None:
    """Launched inside a span (an app's startup), the runtime's queue workers still run
    workflows as new roots: the launching code's context does not leak into them."""
    tracer = trace.get_tracer("tests")
    await DBOS.destroy()
    DBOS({"database_url": db_url, "application_version": "test"})
    try:
        with tracer.start_as_current_span("app-startup"), SetWorkflowID("not-for-workers"):
            await DBOS.launch()
        handle = await tr_queue.enqueue(tr_child, 4)
        assert await handle.get_result() == 5
        assert handle.workflow_id != "not-for-workers"
    finally:
        await DBOS.destroy()
    (wf,) = by_name(spans.get_finished_spans())["tr_child"]
    assert wf.parent is None


async def test_tracing__no_spans_without_a_provider(dbos: DBOS) -> None:
    from dbos_async import _tracing

    _reset_global_provider()
    assert _tracing._tracer() is None
    # No span is built: a step's coroutine is handed back as it is, not wrapped.
    run = tr_child(1)
    assert _tracing.traced("w", 1, "s", run) is run
    assert await run == 2
    assert isinstance(_tracing.workflow_span("w", "n"), contextlib.nullcontext)


async def test_tracing__log_records_carry_workflow_and_step(
    dbos: DBOS, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="tests.tracing"):
        log.info("outside")
        with SetWorkflowID("logged-1"):
            await tr_workflow(1)
    fields: dict[str, tuple[Any, Any]] = {
        r.getMessage(): (getattr(r, "workflow_id", "missing"), getattr(r, "step_id", "missing"))
        for r in caplog.records
    }
    assert fields["outside"] == ("missing", "missing")
    assert fields["in the workflow's own code"] == ("logged-1", None)
    # The last "inside the step" record is the child's (logged-1-8, its step 1).
    steps = [
        (getattr(r, "workflow_id", None), getattr(r, "step_id", None))
        for r in caplog.records
        if r.getMessage() == "inside the step"
    ]
    assert steps == [("logged-1", 1), ("logged-1-8", 1)]


async def test_tracing__log_extra_outside_workflows_and_formatter_defaults(
    dbos: DBOS, caplog: pytest.LogCaptureFixture
) -> None:
    """Outside workflows, records carry no fields of ours: ``extra`` may name them (a web
    handler logging the workflow it started), and a formatter's defaults fill them in."""
    formatter = logging.Formatter(
        "%(workflow_id)s:%(step_id)s %(message)s", defaults={"workflow_id": "-", "step_id": "-"}
    )
    with caplog.at_level(logging.INFO, logger="tests.tracing"):
        log.info("started", extra={"workflow_id": "wf-from-handler"})
        log.info("plain")
        with SetWorkflowID("logged-2"):
            await tr_step_logging_workflow()
    shown = [formatter.format(r) for r in caplog.records]
    assert shown == ["wf-from-handler:- started", "-:- plain", "logged-2:None in the workflow"]


@DBOS.workflow()
async def tr_step_logging_workflow() -> None:
    log.info("in the workflow")


def test_tracing__nothing_imported_without_the_extra(tmp_path: Path) -> None:
    """With opentelemetry not importable, workflows run and nothing of it is imported."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ImportError("blocked: " + name)
                return None
        sys.meta_path.insert(0, Block())
        from dbos_async import DBOS

        @DBOS.step()
        async def one() -> int:
            return 1

        @DBOS.workflow()
        async def wf() -> int:
            return await one() + 1

        async def main() -> None:
            async with DBOS({{"database_url": "sqlite:///{tmp_path / "t.sqlite"}"}}):
                assert await wf() == 2
        asyncio.run(main())
        loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        assert loaded == [], loaded
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
