"""Helpers shared by the licensing, quota, admin and over-scope tests (not a test module)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from audit.reader import AuditReader
from credcore.clock import CST
from tests.conftest import PG_HINT, Harness, need_service

ALL_DATASETS = ("entities", "penalties", "licences", "serious_untrustworthy", "disclosures", "recognitions")


def licence(*, datasets: dict[str, Any] | None = None, purposes: list[str] | None = None,
            regions: list[str] | None = None, quotas: dict[str, Any] | None = None,
            not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
            default_purpose: str | None = None) -> dict[str, Any]:
    """A licence body with generous defaults; each argument narrows one term."""
    start = not_before or dt.datetime(2025, 1, 1, tzinfo=CST)
    body: dict[str, Any] = {
        "datasets": datasets or {name: "*" for name in ALL_DATASETS},
        "purposes": purposes or ["credit_check"],
        "regions": regions or ["000000"],
        "not_before": start.isoformat(),
        "not_after": (not_after or start + dt.timedelta(days=4 * 365)).isoformat(),
        "quotas": {"rate_per_second": 100000, "burst": 100000, **(quotas or {})},
    }
    if default_purpose:
        body["default_purpose"] = default_purpose
    return body


async def audit_entry(harness: Harness, index: int | str) -> dict[str, Any]:
    """The audit entry at `index`, decoded from its stored leaf bytes."""
    rows = await AuditReader(harness.gw.engine).leaves(int(index), int(index) + 1)
    assert rows and rows[0][1] is not None
    return dict(json.loads(rows[0][1]))


async def audit_entries(harness: Harness) -> list[dict[str, Any]]:
    reader = AuditReader(harness.gw.engine)
    size = await reader.size()
    out: list[dict[str, Any]] = []
    for start in range(0, size, 1000):
        out += [json.loads(leaf) for _, leaf in await reader.leaves(start, min(size, start + 1000)) if leaf]
    return out


async def admin_call(harness: Harness, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    token = await harness.token("admin")
    kwargs: dict[str, Any] = {"headers": {"Authorization": f"Bearer {token}"}}
    if body is not None:
        kwargs["json"] = body
    resp = await harness.client.request(method, path, **kwargs)
    return resp.status, await resp.json()


def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _create_pg_database() -> str:
    need_service(5432, "PostgreSQL", PG_HINT)
    import asyncpg

    name = f"credgate_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


async def _drop_pg_database(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def fresh_pg_database() -> AsyncIterator[str]:
    """A new PostgreSQL database, dropped afterwards (the pg_url fixture, usable inside other fixtures)."""
    url = await _create_pg_database()
    try:
        yield url
    finally:
        await _drop_pg_database(url)


class Proxy:
    """A loopback TCP forwarder that a test can cut, to make a real service unreachable mid-run."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    async def cut(self) -> None:
        """Stop accepting and drop every open connection."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()


# --- gateway processes ---------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREDGATE_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def start_store(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The reference store, `python -m credstore`, on a free loopback port."""
    port_file = tmp / "store.port"
    log = open(tmp / "store.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "credstore", "--db", str(tmp / "store.db"), "--port", "0",
         "--port-file", str(port_file), "--entities", "60", "--records", "400", "--seed", "11",
         "--reference-date", "2026-11-01"],  # the conftest `dataset`: the same codes
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=_env({}), cwd=ROOT,
    )
    _wait(lambda: port_file.exists(), proc, 60, tmp / "store.log")
    return proc, f"http://127.0.0.1:{int(port_file.read_text().strip())}"


def _wait(ready: Any, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"process not ready in {timeout} s: {log.read_text()[-2000:]}")
        time.sleep(0.05)


def start_gateway(tmp: Path, name: str, *, db_url: str, store_url: str, public_url: str,
                  env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """`credgate serve --config FILE` on a free loopback port; answers the process and its URL."""
    config = tmp / f"{name}.toml"
    config.write_text(
        f"[server]\nhost = \"127.0.0.1\"\nport = {closed_port()}\n"
        f"public_url = \"{public_url}\"\n"
        f"[database]\nurl = \"{db_url}\"\n"
        f"[upstream]\nurl = \"{store_url}\"\n"
        "[audit]\ncheckpoint_interval = 0.5\n"
    )
    log_path = tmp / f"{name}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=_env(env or {}), cwd=ROOT,
    )

    def listening() -> bool:
        return "listening on http://" in log_path.read_text()

    _wait(listening, proc, 60, log_path)
    url = log_path.read_text().split("listening on ", 1)[1].split()[0]
    return proc, url


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Collects started processes and stops each (by its own handle) at the end."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for proc in reversed(started):
            stop(proc)


async def token_from(session: aiohttp.ClientSession, url: str, client_id: str, secret: str) -> str:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode("ascii")
    async with session.post(f"{url}/oauth/token", data={"grant_type": "client_credentials"},
                            headers={"Authorization": f"Basic {basic}"}) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return str(body["access_token"])


# --- clusters of gateway processes ----------------------------------------------------------

PUBLIC_URL = "http://127.0.0.1:18080"  # one issuer for every process, as behind a load balancer


@dataclass
class Cluster:
    """Several `credgate serve` processes sharing one database (and maybe Redis)."""

    urls: list[str]
    db_url: str
    secrets: dict[str, str] = field(default_factory=dict)

    async def provision(self, client_id: str, *, scope: str = "data:read", body: dict[str, Any] | None = None,
                        licence_id: str | None = None) -> str:
        """Create a client (and its licence) straight in the shared database, as `credgate admin` does."""
        from gateway.admin import provision_operator
        from gateway.offline import admin_context

        secret = uuid.uuid4().hex
        async with admin_context(self.db_url) as ctx:
            await provision_operator(ctx, name=client_id, scope=scope, client_id=client_id, client_secret=secret,
                                     licence=body, licence_id=licence_id or f"{client_id}-L1", actor="test-setup")
        self.secrets[client_id] = secret
        return secret

    async def token(self, session: aiohttp.ClientSession, client_id: str, process: int = 0) -> str:
        return await token_from(session, self.urls[process], client_id, self.secrets[client_id])

    async def wait_licensed(self, client_id: str, code: str, within: float = 5.0, subpath: str = "") -> None:
        """Wait until every process holds the operator's licence, probing with an unlicensed purpose
        (refused by the licence, so the probe consumes no quota)."""
        async with aiohttp.ClientSession() as session:
            token = await self.token(session, client_id)
            headers = {"Authorization": f"Bearer {token}", "X-Purpose": "probe"}
            deadline = asyncio.get_running_loop().time() + within
            for url in self.urls:
                while True:
                    async with session.get(f"{url}/v1/entities/{code}{subpath}", headers=headers) as resp:
                        body = await resp.json()
                    if "purpose 'probe'" in body.get("error_description", ""):
                        break
                    assert asyncio.get_running_loop().time() < deadline, body
                    await asyncio.sleep(0.15)  # gently: each probe is a scope denial to the over-scope guard


@contextlib.contextmanager
def cluster(tmp: Path, *, db_url: str, size: int, env: dict[str, str] | None = None) -> Iterator[Cluster]:
    """The reference store and `size` gateway processes on `db_url`, stopped at the end."""
    with processes() as started:
        store, store_url = start_store(tmp)
        started.append(store)
        shared = Cluster([], db_url)
        asyncio.run(shared.provision("admin", scope="admin"))  # also creates the schema and the signing key
        for n in range(size):
            proc, url = start_gateway(tmp, f"gw{n}", db_url=db_url, store_url=store_url, public_url=PUBLIC_URL,
                                      env=env)
            started.append(proc)
            shared.urls.append(url)
        yield shared


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for a module of tests (sync: for module-scoped fixtures)."""
    url = asyncio.run(_create_pg_database())
    try:
        yield url
    finally:
        asyncio.run(_drop_pg_database(url))
