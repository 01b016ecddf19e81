"""OpenTelemetry tracing, when ``opentelemetry-api`` is installed (the ``otel`` extra).

A producer inside an active span records its W3C ``traceparent`` (and ``tracestate``) in
the task's metadata; a worker runs each attempt in a span ``taskqueue.run <type>`` that
continues that trace. Without opentelemetry, ENABLED is False and callers skip both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .task import JSON, Job

try:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - the otel extra is not installed
    ENABLED = False
else:
    ENABLED = True
    _PROPAGATOR = TraceContextTextMapPropagator()

TRACEPARENT = "traceparent"
"""The metadata key of the producer's W3C trace context (``tracestate`` beside it, if any)."""


def with_trace_context(metadata: JSON) -> JSON:
    """``metadata`` plus the active span's ``traceparent``; the same object when there is
    no active span or the metadata already carries one."""
    if not ENABLED or TRACEPARENT in metadata:
        return metadata
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return {**metadata, **carrier} if carrier else metadata


def wanted(job: Job) -> bool:
    """Whether an attempt needs a span: the process has a tracer provider that records
    (the API alone hands out spans that record nothing), or the task carries its producer's
    ``traceparent`` (instrumented calls inside the handler then continue that trace even
    where no provider is set).  Otherwise the span would cost about 10 us for nothing."""
    if isinstance(job.metadata.get(TRACEPARENT), str):
        return True
    return not isinstance(trace.get_tracer_provider(),
                          (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


@contextmanager
def attempt_span(job: Job) -> Iterator[Any]:
    """Run an attempt in a current span ``taskqueue.run <type>``, the child of the span
    whose ``traceparent`` the task's metadata holds (a new trace without one)."""
    carrier = job.metadata if isinstance(job.metadata.get(TRACEPARENT), str) else {}
    parent = _PROPAGATOR.extract({k: v for k, v in carrier.items() if isinstance(v, str)})
    tracer = trace.get_tracer("taskqueue")
    attributes: dict[str, str | int] = {
        "taskqueue.task_id": job.id, "taskqueue.task_type": job.type,
        "taskqueue.attempt": job.attempt}
    with tracer.start_as_current_span(f"taskqueue.run {job.type}", context=parent,
                                      kind=SpanKind.CONSUMER, attributes=attributes,
                                      record_exception=False,
                                      set_status_on_exception=False) as span:
        yield span


def record_outcome(span: Any, outcome: str, exc: BaseException | None) -> None:
    """Set ``taskqueue.outcome`` on an attempt's span; a failure also records its exception
    and marks the span as an error."""
    span.set_attribute("taskqueue.outcome", outcome)
    if exc is not None:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:200]))
