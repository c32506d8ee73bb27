"""OpenTelemetry: a server span per request, a child span per pipeline stage, W3C traceparent
to the store, and the trace id in the audit entry (so an entry leads to its trace).

The exporter is chosen in the config: none (spans are made, ids recorded, nothing exported),
console, or OTLP over HTTP (the optional `otlp` extra).
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

from credcore.errors import ConfigError
from gateway.config import TracingSettings

__all__ = ["extract", "inject", "make_tracer", "trace_id_hex"]


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
