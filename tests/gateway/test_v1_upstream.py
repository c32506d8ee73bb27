"""A failing public credit store (issue 2, "Bad input"): down is 502, slower than the timeout is
504, garbage is 502; every one is audited and releases nothing.

Each failure is a real store on loopback that behaves that way, not a stand-in for our code.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gateway.config import load_settings
from gateway.upstream import MAX_UPSTREAM_BYTES
from tests.conftest import ServeApp

READ_TIMEOUT = 0.3
Behaviour = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
def store_that(serve_app: ServeApp) -> Callable[[Behaviour], Awaitable[str]]:
    """A factory of stores on loopback that answer every /v1 request with `behaviour`."""

    async def start(behaviour: Behaviour) -> str:
        app = web.Application()
        app.router.add_get("/v1/{tail:.*}", behaviour)
        return await serve_app(app)

    return start


class RawStore:
    """A TCP server that writes `reply` (not necessarily HTTP) to whoever connects, then closes."""

    def __init__(self) -> None:
        self.reply = b""
        self.server: asyncio.Server | None = None

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(self.reply)
        await writer.drain()
        writer.close()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.answer, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def raw_store() -> AsyncIterator[RawStore]:
    store = RawStore()
    yield store
    if store.server is not None:
        store.server.close()
        await store.server.wait_closed()


async def audit_entry(harness: Any, index: int) -> dict[str, Any]:
    auditor = await harness.token("auditor")
    resp = await harness.client.get("/audit/entries", params={"start": str(index), "end": str(index + 1)},
                                    headers={"Authorization": f"Bearer {auditor}"})
    entry: dict[str, Any] = json.loads(base64.b64decode((await resp.json())["entries"][0]["leaf"]))
    return entry


async def gateway_before(make_gateway: Any, tmp_path: Path, upstream: str) -> Any:
    """A gateway whose store is `upstream`, with a short read timeout."""
    settings = load_settings(environ={}, overrides={
        "database": {"url": f"sqlite:///{tmp_path / 'gateway.db'}"},
        "upstream": {"url": upstream, "read_timeout": READ_TIMEOUT, "connect_timeout": 1.0},
        "audit": {"checkpoint_interval": 0.2},
        "licensing": {"poll_interval": 0.2},
    })
    return await make_gateway(settings=settings)


async def assert_refused(harness: Any, code: str, status: int, error: str, case: str = "") -> None:
    resp = await harness.get(f"/v1/entities/{code}/penalties", await harness.token("op"))
    body = await resp.json()
    assert resp.status == status, (case, body)
    assert set(body) == {"error", "error_description"} and body["error"] == error, (case, body)
    entry = await audit_entry(harness, int(resp.headers["Audit-Entry"]))
    assert (entry["decision"], entry["status"], entry["error"]) == ("error", status, error), case
    assert (entry["client_id"], entry["uscc"], entry["fields"], entry["records"]) == ("op", [code], [], []), case


async def assert_store_failure(make_gateway: Any, tmp_path: Path, upstream: str, code: str, status: int,
                               error: str) -> None:
    await assert_refused(await gateway_before(make_gateway, tmp_path, upstream), code, status, error)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_store_down_is_502(make_gateway: Any, tmp_path: Path, sample_code: str) -> None:
    """Nobody listening at the store's address answers 502 upstream_error."""
    upstream = f"http://127.0.0.1:{closed_port()}"
    await assert_store_failure(make_gateway, tmp_path, upstream, sample_code, 502, "upstream_error")


async def test_store_slower_than_the_timeout_is_504(make_gateway: Any, tmp_path: Path, store_that: Any,
                                                    sample_code: str) -> None:
    """A store that answers after the read timeout answers 504 upstream_timeout."""
    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(READ_TIMEOUT * 10)
        return web.json_response({"records": []})

    await assert_store_failure(make_gateway, tmp_path, await store_that(slow), sample_code, 504, "upstream_timeout")


async def test_store_stalling_mid_body_is_504(make_gateway: Any, tmp_path: Path, store_that: Any,
                                             sample_code: str) -> None:
    """A store that sends headers and then stalls in the body answers 504 upstream_timeout."""
    async def stalls(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        await resp.write(b'{"records": [')
        await asyncio.sleep(READ_TIMEOUT * 10)
        return resp

    await assert_store_failure(make_gateway, tmp_path, await store_that(stalls), sample_code, 504, "upstream_timeout")


GARBAGE: dict[str, Behaviour] = {}


def garbage(name: str) -> Callable[[Behaviour], Behaviour]:
    def register(behaviour: Behaviour) -> Behaviour:
        GARBAGE[name] = behaviour
        return behaviour

    return register


@garbage("html")
async def _html(_request: web.Request) -> web.Response:
    return web.Response(text="<html><body>maintenance</body></html>", content_type="text/html")


@garbage("truncated_json")
async def _truncated(_request: web.Request) -> web.Response:
    return web.Response(body=b'{"uscc": "x", "records": [{"record_id": ', content_type="application/json")


@garbage("not_utf8")
async def _binary(_request: web.Request) -> web.Response:
    return web.Response(body=b'{"records": "\xff\xfe"}', content_type="application/json")


@garbage("json_array")
async def _array(_request: web.Request) -> web.Response:
    return web.json_response([{"record_id": "CF-1", "legal_representative_id_number": "11010519491231002X"}])


@garbage("json_string")
async def _string(_request: web.Request) -> web.Response:
    return web.json_response("ok")


@garbage("deeply_nested")
async def _nested(_request: web.Request) -> web.Response:
    return web.Response(body=b"[" * 100_000 + b"]" * 100_000, content_type="application/json")


def _json_answer(body: bytes) -> Behaviour:
    async def answer(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    return answer


# Values Python's json module reads but no JSON can carry exactly: nothing is released from them.
garbage("nan")(_json_answer(b'{"records": [{"record_id": "CF-1", "fine_amount": NaN}]}'))
garbage("number_past_double")(_json_answer(b'{"records": [{"record_id": "CF-1", "fine_amount": 1e999}]}'))
garbage("lone_surrogate")(_json_answer(b'{"records": [{"record_id": "CF-\\ud800", "fine_amount": 1}]}'))


@garbage("status_500")
async def _error(_request: web.Request) -> web.Response:
    return web.json_response({"error": "boom"}, status=500)


@garbage("redirect")
async def _redirect(_request: web.Request) -> web.Response:
    raise web.HTTPFound("http://127.0.0.1:1/elsewhere")


async def test_store_garbage_is_502(make_gateway: Any, tmp_path: Path, store_that: Any, sample_code: str) -> None:
    """A store answering garbage (not JSON, not an object, an error, a redirect) answers 502."""
    mode = {"case": ""}

    async def misbehave(request: web.Request) -> web.StreamResponse:
        return await GARBAGE[mode["case"]](request)

    harness = await gateway_before(make_gateway, tmp_path, await store_that(misbehave))
    for case in sorted(GARBAGE):
        mode["case"] = case
        await assert_refused(harness, sample_code, 502, "upstream_error", case)


RAW_REPLIES = {"not_http": b"garbage\r\n\r\n", "short_body": b'HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{"re',
               "closes_at_once": b""}


async def test_store_speaking_no_http_is_502(make_gateway: Any, tmp_path: Path, raw_store: RawStore,
                                             sample_code: str) -> None:
    """A store that breaks HTTP itself (junk bytes, a short body, a hang-up) answers 502."""
    harness = await gateway_before(make_gateway, tmp_path, await raw_store.start())
    for case, reply in RAW_REPLIES.items():
        raw_store.reply = reply
        await assert_refused(harness, sample_code, 502, "upstream_error", case)


async def test_gateway_recovers_when_the_store_does(make_gateway: Any, tmp_path: Path, store_that: Any,
                                                    sample_code: str) -> None:
    """After a store failure the next request to the recovered store is served normally."""
    broken = True

    async def flaky(request: web.Request) -> web.Response:
        if broken:
            return web.json_response({"error": "down"}, status=503)
        return web.json_response({"uscc": sample_code, "records": [{"record_id": "CF-1", "uscc": sample_code}]})

    harness = await gateway_before(make_gateway, tmp_path, await store_that(flaky))
    token = await harness.token("op")
    path = f"/v1/entities/{sample_code}/penalties"
    assert (await harness.get(path, token)).status == 502
    broken = False
    resp = await harness.get(path, token)
    assert resp.status == 200
    assert (await resp.json())["records"] == [{"record_id": "CF-1", "uscc": sample_code}]


async def test_cookies_the_store_sets_are_neither_kept_nor_passed_on(make_gateway: Any, tmp_path: Path,
                                                                     store_that: Any, sample_code: str) -> None:
    """One pooled session serves every operator: a cookie from one answer must not ride along on
    the next operator's request to the store, nor reach the operator."""
    sent_cookies: list[str | None] = []

    async def sets_a_cookie(request: web.Request) -> web.Response:
        sent_cookies.append(request.headers.get("Cookie"))
        resp = web.json_response({"uscc": sample_code, "records": [{"record_id": "CF-1", "uscc": sample_code}]})
        resp.set_cookie("session", "operator-1-state", path="/")
        return resp

    upstream = (await store_that(sets_a_cookie)).replace("127.0.0.1", "localhost")  # a jar keeps no IP's cookies
    harness = await gateway_before(make_gateway, tmp_path, upstream)
    path = f"/v1/entities/{sample_code}/penalties"
    for _ in range(2):
        resp = await harness.get(path, await harness.token("op"))
        assert resp.status == 200 and "Set-Cookie" not in resp.headers
    assert sent_cookies == [None, None]


async def test_large_answer_arriving_in_chunks_is_read_whole(make_gateway: Any, tmp_path: Path, store_that: Any,
                                                             sample_code: str) -> None:
    """A 2 MB answer streamed in small chunks is read to its end, not cut at the first chunk."""
    records = [{"record_id": f"CF-{i:06d}", "uscc": sample_code, "violation_facts": "x" * 200} for i in range(8000)]
    payload = json.dumps({"uscc": sample_code, "records": records}).encode()

    async def streams(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        for start in range(0, len(payload), 4096):
            await resp.write(payload[start:start + 4096])
        await resp.write_eof()
        return resp

    harness = await gateway_before(make_gateway, tmp_path, await store_that(streams))
    resp = await harness.get(f"/v1/entities/{sample_code}/penalties", await harness.token("op"))
    assert resp.status == 200, await resp.text()
    assert [r["record_id"] for r in (await resp.json())["records"]] == [r["record_id"] for r in records]


OVERSIZED = MAX_UPSTREAM_BYTES + 1024


async def _declared_too_large(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": str(OVERSIZED)})
    await resp.prepare(request)
    await resp.write(b'{"records": [')
    return resp  # never sends the rest: the gateway must refuse on the header alone


async def _chunked_too_large(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    await resp.write(b'{"pad": "')
    block = b"x" * 65536
    for _ in range(OVERSIZED // len(block) + 1):
        await resp.write(block)
    await resp.write(b'"}')
    await resp.write_eof()
    return resp


async def _gzip_bomb(request: web.Request) -> web.Response:
    body = gzip.compress(b'{"pad": "' + b"x" * OVERSIZED + b'"}')  # about 17 kB on the wire
    return web.Response(body=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})


@pytest.mark.parametrize("behaviour", [_declared_too_large, _chunked_too_large, _gzip_bomb],
                         ids=["declared", "chunked", "gzip_bomb"])
async def test_an_answer_over_the_size_limit_is_502(make_gateway: Any, tmp_path: Path, store_that: Any,
                                                    sample_code: str, behaviour: Behaviour) -> None:
    """Past 16 MiB, declared up front, streamed without a length or inflated from a small gzip
    body, the store's answer is refused (502, audited) rather than read into memory."""
    harness = await gateway_before(make_gateway, tmp_path, await store_that(behaviour))
    await assert_refused(harness, sample_code, 502, "upstream_error")
