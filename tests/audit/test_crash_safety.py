"""Crash safety: SIGKILL under load loses no answered entry, writes none twice, and the log verifies."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

pytestmark = pytest.mark.slow


def start_demo(data_dir: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    marker = data_dir / "demo.json"
    before = marker.stat().st_mtime_ns if marker.exists() else None
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--port", "0", "--data-dir", str(data_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the demo exited early"
        if marker.exists() and marker.stat().st_mtime_ns != before:
            try:
                demo = json.loads(marker.read_text())
                requests.get(demo["gateway"] + "/healthz", timeout=2).raise_for_status()
                return proc, demo
            except (ValueError, requests.RequestException):
                pass
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("demo did not start")


def token(demo: dict[str, Any], role: str) -> str:
    client = demo["clients"][role]
    resp = requests.post(demo["token_endpoint"], data={"grant_type": "client_credentials"},
                         auth=(client["client_id"], client["client_secret"]), timeout=10)
    resp.raise_for_status()
    return str(resp.json()["access_token"])


async def load(demo: dict[str, Any], bearer: str, seconds: float) -> list[tuple[int, str]]:
    """Concurrent requests until the gateway dies; every (Audit-Entry, body digest) received."""
    received: list[tuple[int, str]] = []
    headers = {"Authorization": f"Bearer {bearer}", "X-Purpose": "credit_check"}
    codes = demo["sample_uscc"]

    async def worker(n: int, session: aiohttp.ClientSession) -> None:
        i = n
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            i += 1
            try:
                async with session.get(f"{demo['gateway']}/v1/entities/{codes[i % len(codes)]}/penalties",
                                       headers=headers) as resp:
                    body = await resp.read()
                    if "Audit-Entry" in resp.headers:
                        received.append((int(resp.headers["Audit-Entry"]), hashlib.sha256(body).hexdigest()))
            except (TimeoutError, aiohttp.ClientError):
                return

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        await asyncio.gather(*(worker(n, session) for n in range(16)))
    return received


def entries(demo: dict[str, Any], bearer: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        resp = requests.get(f"{demo['gateway']}/audit/entries", params={"start": len(out), "end": len(out) + 1000},
                            headers={"Authorization": f"Bearer {bearer}"}, timeout=10)
        resp.raise_for_status()
        page = resp.json()["entries"]
        out.extend(json.loads(base64.b64decode(e["leaf"])) for e in page)
        if len(page) < 1000:
            return out


def test_sigkill_under_load(tmp_path: Path) -> None:
    """Every response a client got with Audit-Entry i has entry i after a SIGKILL and restart."""
    proc, demo = start_demo(tmp_path)
    try:
        bearer = token(demo, "operator")

        async def run() -> list[tuple[int, str]]:
            task = asyncio.create_task(load(demo, bearer, seconds=20))
            await asyncio.sleep(2.0)
            os.killpg(proc.pid, signal.SIGKILL)  # the gateway and its store, mid-flight
            return await task

        received = asyncio.run(run())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(received) > 50, "the load reached the gateway"
    assert len({index for index, _ in received}) == len(received), "no index was answered twice"

    proc, demo = start_demo(tmp_path)
    try:
        log = entries(demo, token(demo, "auditor"))
        for index, digest in received:
            assert index < len(log), f"entry {index} was answered but lost"
            assert log[index]["body_sha256"] == digest, f"entry {index} does not describe the body released"
        auditor = demo["clients"]["auditor"]
        time.sleep(1.2)
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "audit", "verify", "--url", demo["gateway"],
             "--key", demo["audit_verifier_key"]],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "CREDGATE_CLIENT_ID": auditor["client_id"],
                 "CREDGATE_CLIENT_SECRET": auditor["client_secret"]},
        )
        assert result.returncode == 0, result.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_client_disconnect_keeps_the_entry(tmp_path: Path) -> None:
    """A client that hangs up mid-request leaves its entry recorded, not half-recorded."""
    proc, demo = start_demo(tmp_path)
    try:
        bearer = token(demo, "operator")
        auditor = token(demo, "auditor")
        before = len(entries(demo, auditor))
        host, port = demo["gateway"].removeprefix("http://").split(":")
        import socket

        for code in demo["sample_uscc"][:5]:
            with socket.create_connection((host, int(port))) as sock:
                sock.sendall(
                    f"GET /v1/entities/{code}/penalties HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bearer}\r\n"
                    "X-Purpose: credit_check\r\n\r\n".encode()
                )
                # hang up at once, before the answer
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(entries(demo, auditor)) < before + 5:
            time.sleep(0.1)
        log = entries(demo, auditor)
        assert len(log) == before + 5
        assert all(entry["status"] == 200 for entry in log[before:])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
