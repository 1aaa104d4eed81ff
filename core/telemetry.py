"""OpenTelemetry tracing: one provider per process, W3C trace context, database spans."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from sqlalchemy import Engine, event

TRACER_NAME = "stride"
_NO_CONTEXT = otel_context.Context()
_SPAN_KEY = "stride.db_span"
_recording = False


def configure_tracing(
    otlp_endpoint: str | None, processor: SpanProcessor | None = None
) -> TracerProvider:
    """Install the process-wide provider. Spans are recorded and exported over OTLP/HTTP when an
    endpoint is configured (or to `processor`, as tests do). Otherwise they are not recorded,
    but every request still gets a trace id (a caller's, or a new one) for logs and tasks."""
    global _recording
    exporting = bool(otlp_endpoint) or processor is not None
    _recording = exporting
    provider = TracerProvider(
        resource=Resource.create({"service.name": "stride"}),
        sampler=ParentBased(ALWAYS_ON if exporting else ALWAYS_OFF),
    )
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    if processor is not None:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def start_server_span(
    name: str, parent: otel_context.Context, attributes: dict[str, Any]
) -> trace.Span:
    """The span of one incoming call. Without an exporter it is a non-recording span that
    still carries a trace id (the caller's, or a new one): ten times cheaper than the SDK's."""
    if _recording:
        return tracer().start_span(
            name, context=parent, kind=trace.SpanKind.SERVER, attributes=attributes
        )
    caller = trace.get_current_span(parent).get_span_context()
    trace_id = caller.trace_id if caller.is_valid else random.getrandbits(128)
    flags = caller.trace_flags if caller.is_valid else trace.TraceFlags(0)
    return trace.NonRecordingSpan(
        trace.SpanContext(trace_id, random.getrandbits(64), is_remote=False, trace_flags=flags)
    )


def context_from_metadata(metadata: Mapping[str, str]) -> otel_context.Context:
    """The caller's trace context from a W3C `traceparent` (and `tracestate`), if any."""
    if "traceparent" not in metadata:
        return _NO_CONTEXT  # most calls: not worth the propagators' parsing
    return extract(dict(metadata))


def current_trace_headers() -> dict[str, str]:
    """`traceparent`/`tracestate` of the current span, to carry into enqueued work."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


def current_trace_id() -> str:
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""


def instrument_engine(engine: Engine) -> None:
    """A client span around every statement, child of whatever span is current."""

    def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if not trace.get_current_span().is_recording():
            return
        span = tracer().start_span(
            f"db {statement.split(None, 1)[0].upper() if statement else 'SQL'}",
            kind=trace.SpanKind.CLIENT,
            attributes={"db.system": engine.dialect.name, "db.statement": statement[:500]},
        )
        conn.info.setdefault(_SPAN_KEY, []).append(span)

    def after(conn: Any, *_: Any) -> None:
        spans = conn.info.get(_SPAN_KEY)
        if spans:
            spans.pop().end()

    def failed(context: Any) -> None:
        spans = context.connection.info.get(_SPAN_KEY) if context.connection else None
        if spans:
            span = spans.pop()
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(context.original_exception)))
            span.end()

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "handle_error", failed)
