"""OpenTelemetry (the otel extra): a producer's trace continues in the worker. The producer
records the active span's traceparent in the task's metadata (real Redis); the slot's
executor runs the attempt in a span ``taskqueue.run <type>`` that is its child, with the
task id, attempt and outcome, read from the SDK's in-memory exporter."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tasks_app import producer
from tasks_app.connection import get_broker
from tasks_app.core.errors import NonRetryableError
from tasks_app.core.registry import HandlerRegistry, TaskContext
from tasks_app.core.task import Job
from tests.factories import register, take
from tests.servers import ROOT
from workers_app.runtime.executor import Executor

EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The in-memory exporter of this process's tracer provider, emptied."""
    if not getattr(trace, "_tq_test_provider", False):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
        trace._tq_test_provider = True  # type: ignore[attr-defined]
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


def traceparent(span: Any) -> str:
    """The W3C traceparent header of a span."""
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def handlers() -> HandlerRegistry:
    """echo, and fail (retryable, or for good with payload permanent)."""
    registry = HandlerRegistry()
    registry.register("echo", lambda payload, ctx: payload)

    def fail(payload: dict[str, Any], ctx: TaskContext) -> None:
        if payload.get("permanent"):
            raise NonRetryableError("no")
        raise RuntimeError("boom")

    registry.register("fail", fail)
    return registry


def taken() -> Job:
    """The pending task, as a worker's slot takes it."""
    broker = get_broker()
    register(broker, "trace-worker")
    return take(broker, "trace-worker")


def run_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith("taskqueue.run")]


def test_the_producer_records_the_active_traceparent_beside_the_users_metadata(
    spans: InMemorySpanExporter,
) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request") as request:
        task = producer.enqueue("echo", {}, metadata={"tenant": "acme"})
    assert producer.get(task.id).metadata == {"tenant": "acme",
                                              "traceparent": traceparent(request)}


def test_no_active_span_and_a_users_own_traceparent_are_left_alone(
    spans: InMemorySpanExporter,
) -> None:
    plain = producer.enqueue("echo", {}, metadata={"tenant": "acme"})
    assert producer.get(plain.id).metadata == {"tenant": "acme"}
    mine = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with trace.get_tracer("test").start_as_current_span("request"):
        given = producer.enqueue("echo", {}, metadata={"traceparent": mine})
    assert producer.get(given.id).metadata == {"traceparent": mine}


def test_each_attempt_runs_in_a_child_span_with_id_attempt_and_outcome(
    spans: InMemorySpanExporter,
) -> None:
    with trace.get_tracer("test").start_as_current_span("request") as request:
        task = producer.enqueue("echo", {"n": 1})
    assert Executor(handlers()).run(taken()).ok
    [span] = run_spans(spans)
    assert span.name == "taskqueue.run echo"
    assert span.parent is not None
    assert span.parent.span_id == request.get_span_context().span_id
    assert span.context.trace_id == request.get_span_context().trace_id
    assert dict(span.attributes or {}) == {
        "taskqueue.task_id": task.id, "taskqueue.task_type": "echo", "taskqueue.attempt": 1,
        "taskqueue.outcome": "success"}
    assert span.status.status_code is StatusCode.UNSET


@pytest.mark.parametrize(("payload", "outcome", "error"), [
    ({}, "error", "RuntimeError"),
    ({"permanent": True}, "non_retryable", "tasks_app.core.errors.NonRetryableError"),
])
def test_a_failed_attempts_span_is_an_error_with_the_exception(
    spans: InMemorySpanExporter, payload: dict[str, Any], outcome: str, error: str
) -> None:
    producer.enqueue("fail", payload)
    assert not Executor(handlers()).run(taken()).ok
    [span] = run_spans(spans)
    assert span.parent is None  # enqueued outside any span: a trace of its own
    assert (span.attributes or {})["taskqueue.outcome"] == outcome
    assert span.status.status_code is StatusCode.ERROR
    assert [e.attributes["exception.type"] for e in span.events  # type: ignore[index]
            if e.name == "exception"] == [error]


def run_alone(code: str) -> None:
    """Run ``code`` in a fresh interpreter (the tracer provider is process-wide, and set
    once) and insist it printed ok."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ),
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_without_opentelemetry_nothing_is_traced_or_added() -> None:
    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if the otel extra were not installed\n"
        "from tasks_app.core import tracing\n"
        "meta = {'tenant': 'acme'}\n"
        "assert tracing.ENABLED is False\n"
        "assert tracing.with_trace_context(meta) is meta\n"
        "print('ok')\n"
    )
    run_alone(code)


def test_without_a_tracer_provider_a_producers_trace_still_reaches_the_handler() -> None:
    """With the API installed but no tracer provider set (nothing would be recorded), an
    attempt runs without a span of its own unless its task carries a traceparent; one that
    does still runs inside its producer's trace, so calls the handler makes continue it."""
    code = (
        "from opentelemetry import trace\n"
        "from tasks_app.core import tracing\n"
        "from tasks_app.core.registry import HandlerRegistry\n"
        "from tasks_app.core.task import Job\n"
        "from workers_app.runtime.executor import Executor\n"
        "seen = []\n"
        "registry = HandlerRegistry()\n"
        "registry.register('look', lambda payload, ctx: seen.append(\n"
        "    trace.get_current_span().get_span_context().trace_id))\n"
        "executor = Executor(registry)\n"
        "def job(meta):\n"
        "    return Job(id='t', priority=1, fence='f', attempt=1, type='look', payload={},\n"
        "               metadata=meta, max_retries=0, timeout=30, queue_wait=0.0, started_at=1)\n"
        "parent = '00-' + 'ab' * 16 + '-' + 'cd' * 8 + '-01'\n"
        "plain, traced = job({}), job({'traceparent': parent})\n"
        "assert not tracing.wanted(plain) and tracing.wanted(traced)\n"
        "assert executor.run(plain).ok and executor.run(traced).ok\n"
        "assert seen == [0, int('ab' * 16, 16)], seen\n"
        "print('ok')\n"
    )
    run_alone(code)
