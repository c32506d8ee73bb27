"""Paths that could be read two ways never reach another route (issue 2, "Bad input").

Requests go out as raw request lines over a socket, so no client library normalises
`..`, `%2e%2e`, `%2F`, `//` or NUL before the gateway sees them.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from credcore.errors import BadRequest, InvalidUSCC, NotFound
from gateway.routes import match_route

CODE = "91110108551385082Q"  # a valid code (uscc-codes.json); the store need not know it


async def raw_get(harness: Any, target: bytes, headers: dict[str, str | bytes],
                  method: bytes = b"GET") -> tuple[int, dict[str, str], bytes]:
    """Send `GET <target> HTTP/1.1` (or another method) byte for byte, header values as given;
    the status, headers and body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", harness.client.server.port)
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [k.encode() + b": " + (v if isinstance(v, bytes) else v.encode()) for k, v in headers.items()]
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), parsed, body


async def audit_entry(harness: Any, auditor: str, index: int) -> dict[str, Any]:
    resp = await harness.client.get("/audit/entries", params={"start": str(index), "end": str(index + 1)},
                                    headers={"Authorization": f"Bearer {auditor}"})
    (item,) = (await resp.json())["entries"]
    entry: dict[str, Any] = json.loads(base64.b64decode(item["leaf"]))
    return entry


AMBIGUOUS = [  # 400: the /v1 path itself is not plain
    f"/v1/entities/{CODE}/../{CODE}/penalties",
    f"/v1/entities/{CODE}/./penalties",
    "/v1/../audit/entries?start=0&end=5",
    "/v1/entities/%2e%2e/%2e%2e/audit/entries?start=0&end=5",
    "/v1/%2E%2E/admin/operators/op/suspend",
    f"/v1/entities/{CODE}%2Fpenalties",
    f"/v1/entities/{CODE}%2fpenalties",
    f"/v1//entities/{CODE}/penalties",
    f"/v1/entities//{CODE}",
    f"/v1/entities/{CODE}/penalties%00",
    f"/v1/entities/{CODE}%00/penalties",
    f"/v1/entities/{CODE}\\penalties",
]
UNKNOWN = [  # 404: no such route (including probes that only mention /v1 somewhere)
    f"/v1/entities/{CODE}/secrets",
    f"/v1/entities/{CODE}/penalties/",
    "/v1/entities",
    "/v1",
    "/v1/nothing",
    f"/v2/entities/{CODE}/penalties",
    f"//v1/entities/{CODE}/penalties",
    f"/./v1/entities/{CODE}/penalties",
    f"/%2e%2e/v1/entities/{CODE}/penalties",
    f"/audit/../v1/entities/{CODE}/penalties",
    "/audit/key/../../v1/disclosures",
    "/healthz/../audit/entries?start=0&end=5",
]


@pytest.mark.parametrize(("paths", "status"), [(AMBIGUOUS, 400), (UNKNOWN, 404)], ids=["ambiguous", "unknown"])
async def test_path_never_reaches_another_route(make_gateway: Any, paths: list[str], status: int) -> None:
    """Each path answers 400 or 404 with the contract body, audited, for operator and auditor."""
    harness = await make_gateway()
    tokens = {"op": await harness.token("op"), "auditor": await harness.token("auditor")}
    for path in paths:
        for who, token in tokens.items():
            got, headers, body = await raw_get(harness, path.encode(), {"Authorization": f"Bearer {token}",
                                                                         "X-Purpose": "credit_check"})
            assert got == status, (path, who, body)
            error = json.loads(body)
            assert set(error) == {"error", "error_description"}, (path, body)
            assert error["error"] == ("not_found" if status == 404 else "invalid_request"), (path, body)
            entry = await audit_entry(harness, tokens["auditor"], int(headers["audit-entry"]))
            assert (entry["decision"], entry["status"]) == ("deny", status), (path, entry)
            assert entry["request"]["path"] == path.partition("?")[0]  # recorded as sent, not decoded


async def test_raw_nul_byte_is_refused_before_routing(make_gateway: Any) -> None:
    """A literal NUL in the request line is refused 400 by the HTTP parser; the gateway lives on."""
    harness = await make_gateway(operators=False)
    status, _, body = await raw_get(harness, f"/v1/entities/{CODE}\x00/penalties".encode(), {})
    assert status == 400
    assert b"records" not in body
    assert (await harness.client.get("/healthz")).status == 200


async def test_malformed_code_in_path_is_invalid_uscc(make_gateway: Any) -> None:
    """A lower-case code is not quietly upper-cased into a valid one: 400 invalid_uscc."""
    harness = await make_gateway(operators=False)
    status, headers, body = await raw_get(harness, f"/v1/entities/{CODE.lower()}/penalties".encode(), {})
    assert status == 400 and json.loads(body)["error"] == "invalid_uscc"
    assert "audit-entry" in headers


PREFIXES = ["/v1/entities/", "/v1/", "/v1/lists/serious-untrustworthy", "/v1/disclosures", "/audit/entries",
            "/audit/search", "/audit/proof/inclusion", "/oauth/token", "/oauth/introspect", "/oauth/revoke",
            "/admin/operators/op/suspend", "/admin/partners", "/", "/.well-known/jwks.json"]
JUNK = "abcXYZ0189-._~!$&'()*+,;=:@/%?[]{}|^`\"<>\\中文"
METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"]


def garbage_requests(seed: int, count: int) -> list[bytes]:
    """Well-formed HTTP carrying random paths, queries, headers and bodies (deterministic)."""
    import random
    from urllib.parse import quote

    rnd = random.Random(seed)

    def junk(n: int) -> str:
        return "".join(rnd.choice(JUNK) for _ in range(rnd.randint(0, n)))

    out = []
    for _ in range(count):
        method = rnd.choice(METHODS)
        target = rnd.choice(PREFIXES) + quote(junk(30), safe="/%?=&;:@!$'()*+,~")
        if rnd.random() < 0.5:
            target += "?" + "&".join(f"{quote(rnd.choice(['cursor', 'limit', 'start', 'end', 'uscc', junk(4)]))}="
                                     f"{quote(junk(12), safe='%')}" for _ in range(rnd.randint(1, 3)))
        headers = {"Host": "127.0.0.1", "Connection": "close"}
        if rnd.random() < 0.6:
            headers["Authorization"] = rnd.choice(["Bearer ", "Basic ", "bearer  ", "Token ", ""]) + quote(junk(60))
        if rnd.random() < 0.4:
            headers["X-Purpose"] = quote(junk(20))
        if rnd.random() < 0.3:
            headers["traceparent"] = rnd.choice(["00-", "ff-", ""]) + quote(junk(55))
        body = b""
        if method in ("POST", "PUT", "PATCH") and rnd.random() < 0.8:
            body = rnd.choice([b"{", b"[]", b'{"reason": 1}', b"grant_type=client_credentials&scope=" + bytes(
                rnd.randrange(256) for _ in range(20)), bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 200)))])
            headers["Content-Type"] = rnd.choice(["application/json", "application/x-www-form-urlencoded",
                                                  "text/plain", "multipart/form-data; boundary=x"])
        headers["Content-Length"] = str(len(body))
        head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        out.append(head.encode() + b"\r\n" + body)
    return out


async def send_raw(harness: Any, data: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", harness.client.server.port)
    writer.write(data)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


async def test_garbage_burst_never_kills_the_gateway(make_gateway: Any, sample_code: str) -> None:
    """300 garbage requests at once each get a JSON error (never a 500); real traffic goes on after."""
    harness = await make_gateway()
    requests = garbage_requests(seed=2026, count=300)
    answers = []
    for start in range(0, len(requests), 50):
        answers += await asyncio.gather(*(send_raw(harness, r) for r in requests[start:start + 50]))
    for request, (status, headers, body) in zip(requests, answers, strict=True):
        assert 400 <= status < 500 or status in (502, 503, 504), (request[:200], status, body[:200])
        assert headers.get("content-type", "").startswith("application/json"), (request[:200], status, body[:200])
        error = json.loads(body)
        assert set(error) >= {"error", "error_description"} and error["error_description"], (request[:200], error)
    resp = await harness.get(f"/v1/entities/{sample_code}/penalties", await harness.token("op"))
    assert resp.status == 200 and (await resp.json())["records"]


async def test_raw_junk_on_the_socket_never_kills_the_gateway(make_gateway: Any, sample_code: str) -> None:
    """Bytes that are not HTTP at all are refused (the HTTP parser answers 400) and the gateway lives on."""
    harness = await make_gateway()
    junk = [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)), b"GET\r\n\r\n", b"\x00" * 64,
            b"GET / HTTP/9.9\r\n\r\n", b"GET /v1 HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            b"GET /v1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
            b"GET /v1 HTTP/1.1\r\n" + b"X: y\r\n" * 300 + b"\r\n"]
    for data in junk:
        status, _headers, _body = await send_raw(harness, data + b"\r\n")
        assert 400 <= status < 500, (data[:60], status)
    resp = await harness.get(f"/v1/entities/{sample_code}/penalties", await harness.token("op"))
    assert resp.status == 200


async def test_bad_paging_parameters_are_400(gateway: Any) -> None:
    """limit and cursor accept only their plain forms (ASCII digits, URL-safe cursor); the rest is 400."""
    token = await gateway.token("op")
    for query in ("limit=0", "limit=1001", "limit=-1", "limit=abc", "limit=1e3", "limit=%C2%B2", "limit=%EF%BC%91",
                  "cursor=abc%0A", "cursor=%E4%B8%AD", "cursor=a%20b", "cursor=" + "a" * 201):
        resp = await gateway.get(f"/v1/disclosures?{query}", token)
        body = await resp.json()
        assert resp.status == 400 and body["error"] == "invalid_request", (query, body)
        assert "Audit-Entry" in resp.headers
    resp = await gateway.get("/v1/disclosures?limit=7", token)
    assert resp.status == 200 and len((await resp.json())["records"]) == 7


def test_remembered_routes_never_remember_a_refusal() -> None:
    """match_route is memoised: a refused path is refused every time, and a good one keeps its route."""
    for _ in range(2):
        with pytest.raises(BadRequest):
            match_route(f"/v1/entities/{CODE}/%2e%2e/penalties")
        with pytest.raises(InvalidUSCC):
            match_route("/v1/entities/91110108551385082I")
        with pytest.raises(NotFound):
            match_route(f"/v1/entities/{CODE}/secrets")
        route = match_route(f"/v1/entities/{CODE}/penalties")
        assert (route.dataset, route.uscc, route.path) == ("penalties", CODE, f"/v1/entities/{CODE}/penalties")
