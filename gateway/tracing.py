"""OpenTelemetry: a server span per request, a child span per pipeline stage, W3C traceparent
to the store, and the trace id in the audit entry (so an entry leads to its trace).

The exporter is chosen in the config: none (spans are made, ids recorded, nothing exported),
console, or OTLP over HTTP (the optional `otlp` extra).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext

from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

from credcore.errors import ConfigError
from gateway.config import TracingSettings

__all__ = ["Tracing", "extract", "inject", "make_tracer", "trace_id_hex"]


def make_tracer(settings: TracingSettings) -> tuple[trace.Tracer, TracerProvider]:
    # With no exporter nothing would ever read a recorded span, so none is recorded: the spans
    # are non-recording but still carry trace ids, which the audit entry and the store's
    # traceparent need. That keeps tracing nearly free until an exporter is configured.
    sampler = ALWAYS_OFF if settings.exporter == "none" else ParentBased(ALWAYS_ON)
    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}), sampler=sampler)
    if settings.exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif settings.exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigError(
                "setting 'tracing.exporter' is otlp but the exporter is not installed: pip install 'credgate[otlp]'."
            ) from exc
        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint) if settings.otlp_endpoint else OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    # A provider of our own, not the global one: several apps in one test process stay apart.
    return provider.get_tracer("credgate.gateway"), provider


def trace_id_hex(span: trace.Span) -> str | None:
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


class Tracing:
    """The gateway's tracing: real spans when an exporter is configured; otherwise one cheap
    non-recording span per request, which still carries a trace id (continued from an incoming
    `traceparent`) for the audit entry and the store. Stage spans cost nothing then: the
    OpenTelemetry context machinery is the largest single cost of a request when it runs for
    spans no one will read."""

    def __init__(self, tracer: trace.Tracer, *, recording: bool) -> None:
        self.tracer = tracer
        self.recording = recording

    def request_span(self, name: str, headers: Mapping[str, str]) -> AbstractContextManager[trace.Span]:
        if self.recording:
            return self.tracer.start_as_current_span(name, kind=trace.SpanKind.SERVER, context=extract(headers))
        parent = trace.get_current_span(extract(headers)).get_span_context() if "traceparent" in headers else None
        trace_id = parent.trace_id if parent is not None and parent.is_valid else random.getrandbits(128) or 1
        context = trace.SpanContext(trace_id, random.getrandbits(64) or 1, is_remote=False)
        return nullcontext(trace.NonRecordingSpan(context))

    def stage(self, name: str) -> AbstractContextManager[object]:
        return self.tracer.start_as_current_span(name) if self.recording else _NO_SPAN

    def traceparent(self, span: trace.Span) -> dict[str, str]:
        """Headers that carry `span` (the request's span) to the store."""
        if not self.recording:
            # What the W3C propagator writes for a span with no baggage, without building a
            # context for it on every request (tests hold the two equal).
            ctx = span.get_span_context()
            return {"traceparent": f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"}
        headers: dict[str, str] = {}
        inject(headers, context=trace.set_span_in_context(span))
        return headers


_NO_SPAN: AbstractContextManager[object] = nullcontext()
