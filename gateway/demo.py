"""`credgate demo`: the reference store and the gateway on loopback, as in production.

The store runs as its own process (`python -m credstore`); this process runs the gateway,
creates the demo clients with their licences on first start, writes DIR/demo.json, and stops
both cleanly on SIGINT/SIGTERM. Started again on the same DIR it keeps its keys, its clients
and its audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from credcore.clock import CST, Clock, system_clock
from credcore.errors import ConfigError
from gateway.admin import provision_operator
from gateway.app import RUNNER_LIMITS, build_app, settle_heap
from gateway.config import load_settings
from gateway.services import GATEWAY

STORE_START_TIMEOUT = 60.0
ALL_PURPOSES = ["credit_check", "risk_control", "due_diligence", "benchmark"]


def demo_licences(now: dt.datetime) -> dict[str, dict[str, Any]]:
    start = dt.datetime(now.year, now.month, 1, tzinfo=CST).isoformat()
    end = dt.datetime(now.year + 3, now.month, 1, tzinfo=CST).isoformat()
    return {
        "operator": {
            "datasets": {name: "*" for name in (
                "entities", "penalties", "licences", "serious_untrustworthy", "disclosures", "recognitions")},
            "purposes": ALL_PURPOSES,
            "default_purpose": "credit_check",
            "regions": ["000000"],
            "not_before": start,
            "not_after": end,
            "quotas": {"rate_per_second": 200000, "burst": 200000, "per_day": 5_000_000,
                       "per_month": None, "page_size_max": 1000},
        },
        "limited": {
            "datasets": {"penalties": [
                "record_id", "kind", "uscc", "subject_name", "decision_number", "authority", "decision_date",
                "disclosure_end", "penalty_category", "penalty_content", "fine_amount", "severity"]},
            "purposes": ["credit_check"],
            "default_purpose": "credit_check",
            "regions": ["000000"],
            "not_before": start,
            "not_after": end,
            "quotas": {"rate_per_second": 5, "burst": 10, "per_day": 50, "page_size_max": 100},
        },
    }


CLIENTS = {
    "operator": ("demo-operator", "Demo Credit Services Co.", "data:read"),
    "limited": ("demo-limited", "Demo Limited Screening Co.", "data:read"),
    "auditor": ("demo-auditor", "Demo Audit Office", "audit:read"),
    "admin": ("demo-admin", "Demo Security Team", "admin"),
}


def _free_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}.") from exc
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _spawn_store(data_dir: Path, host: str, port_file: Path) -> subprocess.Popen[bytes]:
    """The reference store as its own process, logging to DIR/store.log (a quick, blocking start)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port_file.unlink(missing_ok=True)
    with open(data_dir / "store.log", "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "credstore", "--host", host, "--port", "0",
             "--db", str(data_dir / "store.db"), "--port-file", str(port_file)],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )


async def _start_store(data_dir: Path, host: str) -> tuple[subprocess.Popen[bytes], str]:
    port_file = data_dir / "store.port"
    proc = await asyncio.to_thread(_spawn_store, data_dir, host, port_file)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STORE_START_TIMEOUT
    while not port_file.exists():
        if proc.poll() is not None:
            raise ConfigError(f"the reference store exited with {proc.returncode}; see {data_dir / 'store.log'}.")
        if loop.time() > deadline:
            proc.terminate()
            raise ConfigError("the reference store did not start within a minute.")
        await asyncio.sleep(0.05)
    return proc, f"http://{host}:{int(port_file.read_text().strip())}"


async def _authority_feed(store_url: str) -> list[dict[str, Any]]:
    """Every record of the store's disclosure feed, following its cursor."""
    import aiohttp

    records: list[dict[str, Any]] = []
    cursor: str | None = ""
    async with aiohttp.ClientSession() as session:
        while cursor is not None:
            params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
            async with session.get(f"{store_url}/v1/disclosures", params=params) as resp:
                page = await resp.json()
            records.extend(page["records"])
            cursor = page["next"]
    return records


async def _start_mirror(store_url: str, host: str, clock: Clock) -> tuple[web.AppRunner, str]:
    """A simulated credit service agency with a few realistic discrepancies (issue 5's demo)."""
    from credstore.agency_mirror import make_agency_snapshot, serve_mirror_app

    snapshot = make_agency_snapshot(await _authority_feed(store_url), seed=5, as_of=clock.now().astimezone(CST).date())
    runner = web.AppRunner(serve_mirror_app(snapshot), access_log=None, handle_signals=False)
    await runner.setup()
    sock = _free_socket(host, 0)
    await web.SockSite(runner, sock).start()
    return runner, f"http://{host}:{sock.getsockname()[1]}/agency.jsonl"


async def _sample_uscc(store_url: str) -> list[str]:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(f"{store_url}/v1/sample") as resp:
        if resp.status == 200:
            return list((await resp.json())["sample_uscc"])
    return []


async def _provision(app: web.Application, data_dir: Path, clock: Clock) -> dict[str, dict[str, Any]]:
    gw = app[GATEWAY]
    saved_path = data_dir / "demo.json"
    saved = json.loads(saved_path.read_text()) if saved_path.exists() else {}
    licences = demo_licences(clock.now())
    clients: dict[str, dict[str, Any]] = {}
    for role, (client_id, name, scope) in CLIENTS.items():
        secret = saved.get("clients", {}).get(role, {}).get("client_secret")
        exists = await gw.oauth.get_client(client_id) is not None
        if exists and not secret:
            raise ConfigError(f"{saved_path} lost the secret of {client_id}; delete {data_dir} to start over.")
        _cid, new_secret = await provision_operator(
            gw, name=name, scope=scope, client_id=client_id, client_secret=secret,
            licence=licences.get(role), licence_id=f"{client_id}-licence", actor="credgate-demo",
        )
        clients[role] = {"client_id": client_id, "client_secret": secret or new_secret, "scope": scope}
    clients["limited"]["quota_per_day"] = licences["limited"]["quotas"]["per_day"]
    return clients


async def run_demo(host: str, port: int, data_dir: Path, *, clock: Clock = system_clock,
                   ready: asyncio.Event | None = None) -> None:
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    sock = _free_socket(host, port)
    port = sock.getsockname()[1]
    gateway_url = f"http://{host}:{port}"
    store, store_url = await _start_store(data_dir, host)
    runner: web.AppRunner | None = None
    mirror: web.AppRunner | None = None
    try:
        settings = load_settings(
            environ=os.environ,
            overrides={
                "server": {"host": host, "port": port, "public_url": gateway_url},
                "database": {"url": f"sqlite:///{data_dir / 'gateway.db'}"},
                "upstream": {"url": store_url},
                "audit": {"origin": "credgate-demo/audit", "checkpoint_interval": 1.0},
            },
        )
        app = build_app(settings, clock=clock)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, **RUNNER_LIMITS)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        clients = await _provision(app, data_dir, clock)
        mirror, mirror_url = await _start_mirror(store_url, host, clock)
        settle_heap()
        demo = {
            "gateway": gateway_url,
            "upstream": store_url,
            "issuer": settings.issuer,
            "token_endpoint": f"{gateway_url}/oauth/token",
            "audit_verifier_key": app[GATEWAY].checkpointer.verifier_key,
            "clients": clients,
            "sample_uscc": await _sample_uscc(store_url),
            "agency_mirror": mirror_url,
        }
        tmp = data_dir / "demo.json.tmp"
        tmp.write_text(json.dumps(demo, ensure_ascii=False, indent=2) + "\n")
        os.chmod(tmp, 0o600)  # it holds client secrets
        tmp.replace(data_dir / "demo.json")
        _print_welcome(demo, data_dir)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if ready is not None:
            ready.set()
        await stop.wait()
        print("credgate demo: stopping", flush=True)
    finally:
        if mirror is not None:
            await mirror.cleanup()
        if runner is not None:
            await runner.cleanup()
        sock.close()
        store.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            store.wait(timeout=10)
        if store.poll() is None:
            store.kill()


def _print_welcome(demo: dict[str, Any], data_dir: Path) -> None:
    op = demo["clients"]["operator"]
    code = demo["sample_uscc"][0] if demo["sample_uscc"] else "914403001922038216"
    print(
        f"""credgate demo is running.
  gateway   {demo['gateway']}
  store     {demo['upstream']}  (loopback only, no authentication)
  clients   {data_dir / 'demo.json'}

Try it:
  TOKEN=$(curl -s -u {op['client_id']}:{op['client_secret']} -d grant_type=client_credentials \\
      {demo['token_endpoint']} | python -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  curl -i -H "Authorization: Bearer $TOKEN" -H "X-Purpose: credit_check" \\
      {demo['gateway']}/v1/entities/{code}/penalties
  curl {demo['gateway']}/audit/checkpoint
  CREDGATE_CLIENT_ID={demo['clients']['auditor']['client_id']} \\
  CREDGATE_CLIENT_SECRET={demo['clients']['auditor']['client_secret']} \\
      credgate audit verify --url {demo['gateway']} --key '{demo['audit_verifier_key']}'
  credgate consistency check --authority {demo['upstream']}/v1/disclosures \\
      --agency mirror={demo['agency_mirror']} --format html --output consistency.html

Stop with Ctrl-C.""",
        flush=True,
    )
