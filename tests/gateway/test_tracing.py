"""Tracing: the trace id in an audit entry is the trace the store took part in (its W3C
`traceparent`), an incoming `traceparent` is continued, and each pipeline stage is a child span."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.config import TracingSettings
from gateway.tracing import Tracing, make_tracer

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


class CapturingStore:
    """A store on loopback that answers with one record and keeps every traceparent it gets."""

    def __init__(self) -> None:
        self.traceparents: list[str | None] = []
        self.server: TestServer | None = None

    async def answer(self, request: web.Request) -> web.Response:
        self.traceparents.append(request.headers.get("traceparent"))
        code = request.match_info["code"]
        return web.json_response({"uscc": code, "records": [{"record_id": "CF-1", "uscc": code}]})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/v1/entities/{code}/penalties", self.answer)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return str(self.server.make_url("")).rstrip("/")


@pytest.fixture
async def store() -> AsyncIterator[CapturingStore]:
    capturing = CapturingStore()
    yield capturing
    if capturing.server is not None:
        await capturing.server.close()


async def entry_of(harness: Any, resp: Any) -> dict[str, Any]:
    index = int(resp.headers["Audit-Entry"])
    auditor = await harness.token("auditor")
    got = await harness.client.get("/audit/entries", params={"start": str(index), "end": str(index + 1)},
                                   headers={"Authorization": f"Bearer {auditor}"})
    entry: dict[str, Any] = json.loads(base64.b64decode((await got.json())["entries"][0]["leaf"]))
    return entry


async def test_entry_trace_id_is_the_trace_the_store_saw(make_gateway: Any, store: CapturingStore,
                                                         sample_code: str) -> None:
    """The store receives a W3C traceparent whose trace id is the one in the audit entry."""
    harness = await make_gateway(upstream=await store.start())
    resp = await harness.get(f"/v1/entities/{sample_code}/penalties", await harness.token("op"))
    assert resp.status == 200
    (sent,) = store.traceparents
    match = TRACEPARENT.match(sent or "")
    assert match, sent
    entry = await entry_of(harness, resp)
    assert entry["trace_id"] == match.group(1) != "0" * 32


async def test_incoming_traceparent_is_continued(make_gateway: Any, store: CapturingStore, sample_code: str) -> None:
    """A request carrying a traceparent is recorded and forwarded under that trace, as a child."""
    harness = await make_gateway(upstream=await store.start())
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    resp = await harness.get(f"/v1/entities/{sample_code}/penalties", await harness.token("op"),
                             headers={"traceparent": f"00-{trace_id}-{parent}-01"})
    assert resp.status == 200
    match = TRACEPARENT.match(store.traceparents[0] or "")
    assert match and match.group(1) == trace_id and match.group(2) != parent
    assert (await entry_of(harness, resp))["trace_id"] == trace_id


async def test_malformed_traceparent_starts_a_new_trace(make_gateway: Any, store: CapturingStore,
                                                        sample_code: str) -> None:
    """A garbage traceparent is ignored: a fresh trace is started and the request is served."""
    harness = await make_gateway(upstream=await store.start())
    resp = await harness.get(f"/v1/entities/{sample_code}/penalties", await harness.token("op"),
                             headers={"traceparent": "00-zzzz-not-a-trace"})
    assert resp.status == 200
    match = TRACEPARENT.match(store.traceparents[0] or "")
    assert match and (await entry_of(harness, resp))["trace_id"] == match.group(1)


async def test_without_an_exporter_spans_are_not_recorded(make_gateway: Any, store: CapturingStore,
                                                          sample_code: str) -> None:
    """With exporter none nothing is recorded, yet the entry still has the store's trace id."""
    harness = await make_gateway(upstream=await store.start())
    exporter = InMemorySpanExporter()
    harness.gw.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    resp = await harness.get(f"/v1/entities/{sample_code}/penalties", await harness.token("op"))
    assert resp.status == 200
    assert exporter.get_finished_spans() == ()
    sent = store.traceparents[-1]
    assert sent is not None and sent.split("-")[1] != "0" * 32


async def test_refusals_carry_a_trace_id_too(make_gateway: Any, store: CapturingStore, sample_code: str) -> None:
    """A denied request never reaches the store, but its entry still names its trace."""
    harness = await make_gateway(upstream=await store.start())
    resp = await harness.get(f"/v1/entities/{sample_code}/penalties", None)
    assert resp.status == 401 and store.traceparents == []
    assert re.fullmatch(r"[0-9a-f]{32}", (await entry_of(harness, resp))["trace_id"] or "")


async def test_each_stage_is_a_child_span_of_the_request(make_gateway: Any, store: CapturingStore,
                                                         sample_code: str) -> None:
    """With an exporter configured, one server span per request has token, authorization, upstream,
    filter and audit below it."""
    harness = await make_gateway(upstream=await store.start(), tracing={"exporter": "console"})
    exporter = InMemorySpanExporter()
    harness.gw.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    resp = await harness.get(f"/v1/entities/{sample_code}/penalties", await harness.token("op"))
    assert resp.status == 200
    spans = exporter.get_finished_spans()
    (server,) = [s for s in spans if s.parent is None]
    children = {s.name for s in spans if s.parent is not None and s.parent.span_id == server.context.span_id}
    assert {"token", "authorization", "upstream", "filter", "audit"} <= children
    assert all(s.context.trace_id == server.context.trace_id for s in spans)
    assert format(server.context.trace_id, "032x") == (await entry_of(harness, resp))["trace_id"]


def test_fast_traceparent_is_what_the_w3c_propagator_writes() -> None:
    """Without an exporter the header is formatted directly; it must equal OpenTelemetry's own."""
    tracer, _ = make_tracer(TracingSettings())
    tracing = Tracing(tracer, recording=False)
    for incoming in ({}, {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}):
        with tracing.request_span("GET /v1", incoming) as span:
            expected: dict[str, str] = {}
            TraceContextTextMapPropagator().inject(expected, context=trace.set_span_in_context(span))
            assert tracing.traceparent(span) == expected
