"""Emergency response and hot reload across two `credgate serve` processes sharing PostgreSQL:
an action taken through one process, or through `credgate admin` on the database, bites on the
other within a second."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.policies.support import ROOT, Cluster, cluster, licence, pg_database

pytestmark = pytest.mark.slow
WITHIN = 1.0  # the promise: every process, within a second


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Process A and process B on one PostgreSQL database."""
    with pg_database() as url, cluster(tmp_path_factory.mktemp("admin"), db_url=url, size=2) as both:
        yield both


async def answer(session: aiohttp.ClientSession, url: str, path: str, token: str) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}", "X-Purpose": "credit_check"}
    async with session.get(url + path, headers=headers) as resp:
        body = await resp.json()
        return resp.status, str(body.get("error", ""))


async def within(deadline: float, check: Any) -> bool:
    """Poll `check` until it holds or `deadline` seconds have passed since the call."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        if await check():
            return True
        if loop.time() >= end:
            return False
        await asyncio.sleep(0.02)


async def admin(session: aiohttp.ClientSession, shared: Cluster, method: str, path: str, body: Any) -> Any:
    token = await shared.token(session, "admin", process=0)
    async with session.request(method, shared.urls[0] + path, json=body,
                               headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "admin", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)


async def test_suspend_through_a_bites_on_b_within_a_second(shared: Cluster, sample_code: str) -> None:
    """Suspending via process A's admin API makes process B answer 403 operator_suspended within 1 s."""
    await shared.provision("sus", body=licence())
    await shared.wait_licensed("sus", sample_code)
    path = f"/v1/entities/{sample_code}"
    async with aiohttp.ClientSession() as session:
        token = await shared.token(session, "sus", process=1)
        assert await answer(session, shared.urls[1], path, token) == (200, "")
        await admin(session, shared, "POST", "/admin/operators/sus/suspend", {"reason": "incident drill"})

        async def refused_as_suspended() -> bool:
            return await answer(session, shared.urls[1], path, token) == (403, "operator_suspended")

        assert await within(WITHIN, refused_as_suspended)
        basic = aiohttp.encode_basic_auth("sus", shared.secrets["sus"])
        async with session.post(shared.urls[1] + "/oauth/token", data={"grant_type": "client_credentials"},
                                headers={"Authorization": basic}) as resp:
            assert resp.status == 401  # a suspended client gets no new token either

        await admin(session, shared, "POST", "/admin/operators/sus/resume", {"reason": "drill over"})

        async def old_token_dead() -> bool:
            return (await answer(session, shared.urls[1], path, token))[0] == 401

        assert await within(WITHIN, old_token_dead)  # resuming needs new tokens
        fresh = await shared.token(session, "sus", process=1)
        assert await within(WITHIN, lambda: _ok(session, shared.urls[1], path, fresh))


async def _ok(session: aiohttp.ClientSession, url: str, path: str, token: str) -> bool:
    return (await answer(session, url, path, token))[0] == 200


async def test_licence_change_through_a_bites_on_b_within_a_second(shared: Cluster, sample_code: str) -> None:
    """A licence narrowed via process A's admin API is enforced by process B within 1 s, no restart."""
    await shared.provision("hot", body=licence())
    await shared.wait_licensed("hot", sample_code)
    path = f"/v1/entities/{sample_code}"
    async with aiohttp.ClientSession() as session:
        token = await shared.token(session, "hot", process=1)
        assert (await answer(session, shared.urls[1], path, token))[0] == 200
        narrow = licence(datasets={"penalties": "*"})
        await admin(session, shared, "PUT", "/admin/operators/hot/licences/hot-L1", narrow)

        async def refused() -> bool:
            return await answer(session, shared.urls[1], path, token) == (403, "insufficient_scope")

        assert await within(WITHIN, refused)
        await admin(session, shared, "POST", "/admin/operators/hot/licences/hot-L1/revoke", {"reason": "ended"})

        async def penalties_refused() -> bool:
            return (await answer(session, shared.urls[1], path + "/penalties", token))[0] == 403

        assert await within(WITHIN, penalties_refused)


async def test_cli_suspend_resume_and_revoke_bite_on_every_process(shared: Cluster, sample_code: str) -> None:
    """`credgate admin suspend|resume|revoke-tokens --db` reach both processes within 1 s."""
    await shared.provision("cli", body=licence())
    await shared.wait_licensed("cli", sample_code)
    path = f"/v1/entities/{sample_code}"
    async with aiohttp.ClientSession() as session:
        token = await shared.token(session, "cli")
        done = await asyncio.to_thread(cli, "suspend", "cli", "--reason", "cli drill", "--db", shared.db_url)
        assert done.returncode == 0, done.stderr

        async def both_suspended() -> bool:
            answers = [await answer(session, url, path, token) for url in shared.urls]
            return answers == [(403, "operator_suspended")] * 2

        assert await within(WITHIN, both_suspended)
        done = await asyncio.to_thread(cli, "resume", "cli", "--db", shared.db_url)
        assert done.returncode == 0, done.stderr
        fresh = await shared.token(session, "cli")

        async def both_serve() -> bool:
            return [(await answer(session, url, path, fresh))[0] for url in shared.urls] == [200, 200]

        assert await within(WITHIN, both_serve)
        done = await asyncio.to_thread(cli, "revoke-tokens", "cli", "--db", shared.db_url)
        assert done.returncode == 0, done.stderr

        async def both_revoked() -> bool:
            return [(await answer(session, url, path, fresh))[0] for url in shared.urls] == [401, 401]

        assert await within(WITHIN, both_revoked)


async def test_cli_licence_put_show_revoke(shared: Cluster, sample_code: str, tmp_path) -> None:
    """`credgate admin licence put|show|revoke` change what every process allows, and refuse bad licences."""
    await shared.provision("lic", body=licence(datasets={"penalties": "*"}))
    await shared.wait_licensed("lic", sample_code, subpath="/penalties")
    path = f"/v1/entities/{sample_code}"
    wide = tmp_path / "wide.json"
    wide.write_text(json.dumps(licence()))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(licence(regions=["31000"])))
    async with aiohttp.ClientSession() as session:
        token = await shared.token(session, "lic")
        assert (await answer(session, shared.urls[1], path, token))[0] == 403
        put = ("licence", "put", "lic", "lic-L1", "--db", shared.db_url, "--file")
        refused = await asyncio.to_thread(cli, *put, str(bad))
        assert refused.returncode == 2 and "regions" in refused.stderr
        done = await asyncio.to_thread(cli, *put, str(wide))
        assert done.returncode == 0, done.stderr
        assert await within(WITHIN, lambda: _ok(session, shared.urls[1], path, token))
        shown = await asyncio.to_thread(cli, "licence", "show", "lic", "lic-L1", "--db", shared.db_url)
        assert json.loads(shown.stdout)["status"] == "active"
        done = await asyncio.to_thread(cli, "licence", "revoke", "lic", "lic-L1", "--reason", "contract ended",
                                       "--db", shared.db_url)
        assert done.returncode == 0 and json.loads(done.stdout)["status"] == "revoked"

        async def refused_everywhere() -> bool:
            return [(await answer(session, url, path, token))[0] for url in shared.urls] == [403, 403]

        assert await within(WITHIN, refused_everywhere)
