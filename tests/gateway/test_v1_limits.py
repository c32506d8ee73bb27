"""Request limits (issue 2, "Bad input"): headers over 16 KiB answer 431, URLs over 4 KiB 414,
a body on GET 413, each with the contract's error body and, on /v1, an audit entry."""

from __future__ import annotations

import asyncio
from typing import Any

KIB = 1024


async def assert_too_large(resp: Any, status: int, *, audited: bool) -> None:
    body = await resp.json()
    assert resp.status == status, body
    assert set(body) == {"error", "error_description"} and body["error"] == "request_too_large", body
    assert ("Audit-Entry" in resp.headers) is audited


def padding(total: int) -> dict[str, str]:
    """Headers of about `total` bytes in all, each well under aiohttp's own per-line limit."""
    return {f"X-Pad-{i}": "p" * 1000 for i in range(total // 1000 + 1)}


async def test_headers_over_16_kib_answer_431(gateway: Any, sample_code: str) -> None:
    """17 KiB of headers is refused 431 and audited; 15 KiB is served."""
    token = await gateway.token("op")
    path = f"/v1/entities/{sample_code}/penalties"
    await assert_too_large(await gateway.get(path, token, headers=padding(17 * KIB)), 431, audited=True)
    assert (await gateway.get(path, token, headers=padding(14 * KIB))).status == 200
    await assert_too_large(await gateway.client.get("/audit/checkpoint", headers=padding(17 * KIB)), 431,
                           audited=False)


async def test_url_over_4_kib_answers_414(gateway: Any, sample_code: str) -> None:
    """A 5 KiB URL is refused 414 and audited; one just under 4 KiB is served."""
    token = await gateway.token("op")
    path = f"/v1/entities/{sample_code}/penalties?pad="
    await assert_too_large(await gateway.get(path + "a" * 5 * KIB, token), 414, audited=True)
    assert (await gateway.get(path + "a" * (4 * KIB - len(path) - 8), token)).status == 200
    await assert_too_large(await gateway.client.get("/audit/key?pad=" + "a" * 5 * KIB), 414, audited=False)


async def test_body_on_get_answers_413(gateway: Any, sample_code: str) -> None:
    """A GET with a body, sized or chunked, is refused 413 and releases no data."""
    token = await gateway.token("op")
    path = f"/v1/entities/{sample_code}/penalties"
    await assert_too_large(await gateway.get(path, token, data=b"{}"), 413, audited=True)

    async def chunks() -> Any:
        yield b"x" * 10

    resp = await gateway.get(path, token, data=chunks())
    await assert_too_large(resp, 413, audited=True)


async def test_body_over_the_limit_answers_413(make_gateway: Any) -> None:
    """A POST body over server.max_body_bytes is refused 413 before anyone reads it."""
    harness = await make_gateway(operators=False, server={"max_body_bytes": 2048})
    resp = await harness.client.post("/oauth/token", data=b"grant_type=client_credentials&x=" + b"a" * 4096,
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    await assert_too_large(resp, 413, audited=False)


async def test_limits_hold_under_a_burst(gateway: Any, sample_code: str) -> None:
    """Oversized requests sent at once are all refused and a normal request still works after."""
    token = await gateway.token("op")
    path = f"/v1/entities/{sample_code}/penalties"
    answers = await asyncio.gather(*(gateway.get(path, token, headers=padding(20 * KIB)) for _ in range(20)))
    assert {resp.status for resp in answers} == {431}
    indices = {int(resp.headers["Audit-Entry"]) for resp in answers}
    assert len(indices) == 20
    assert (await gateway.get(path, token)).status == 200
