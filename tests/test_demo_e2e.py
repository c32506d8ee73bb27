"""`credgate demo` as a user runs it: a subprocess driven over HTTP, stopped and restarted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session

pytestmark = pytest.mark.slow


def start_demo(data_dir: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    marker = data_dir / "demo.json"
    before = marker.stat().st_mtime if marker.exists() else None
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--port", "0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"demo exited early: {proc.stdout.read().decode() if proc.stdout else ''}")
        if marker.exists() and marker.stat().st_mtime != before:
            try:
                demo = json.loads(marker.read_text())
                requests.get(demo["gateway"] + "/healthz", timeout=2).raise_for_status()
                return proc, demo
            except (ValueError, requests.RequestException):
                pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("demo did not start within 90 s")


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def session(demo: dict[str, Any], role: str) -> OAuth2Session:
    client = demo["clients"][role]
    oauth = OAuth2Session(
        client["client_id"],
        client["client_secret"],
        scope=client["scope"],
        token_endpoint_auth_method="client_secret_basic",
    )
    oauth.fetch_token(demo["token_endpoint"], grant_type="client_credentials")
    return oauth


def verify(demo: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    auditor = demo["clients"]["auditor"]
    env = {**os.environ, "CREDGATE_CLIENT_ID": auditor["client_id"], "CREDGATE_CLIENT_SECRET": auditor["client_secret"]}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "audit",
            "verify",
            "--url",
            demo["gateway"],
            "--key",
            demo["audit_verifier_key"],
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_demo_end_to_end(tmp_path: Path) -> None:
    """The demo serves audited data to a standard OAuth client, verifies, and survives a restart."""
    proc, demo = start_demo(tmp_path)
    try:
        assert len(demo["sample_uscc"]) >= 10
        assert demo["clients"]["limited"]["quota_per_day"] == 50
        code = demo["sample_uscc"][0]
        operator = session(demo, "operator")
        resp = operator.get(f"{demo['gateway']}/v1/entities/{code}/penalties", headers={"X-Purpose": "credit_check"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["records"], "the first sample code has a penalty"
        first_entry = int(resp.headers["Audit-Entry"])
        assert "legal_representative_id_number" not in resp.text

        limited = session(demo, "limited")
        denied = limited.get(f"{demo['gateway']}/v1/entities/{code}/licences")
        assert denied.status_code == 403 and denied.json()["error"] == "insufficient_scope"
        assert "Audit-Entry" in denied.headers

        direct = requests.get(f"{demo['upstream']}/v1/entities/{code}/penalties", timeout=5)
        assert direct.status_code == 200  # the store itself, for side-by-side benchmarks

        time.sleep(1.2)  # the checkpoint lags the log by at most one second
        result = verify(demo)
        assert result.returncode == 0, result.stderr
        key = demo["audit_verifier_key"]

        check = subprocess.run(
            [
                sys.executable,
                "-m",
                "gateway",
                "consistency",
                "check",
                "--authority",
                f"{demo['upstream']}/v1/disclosures",
                "--agency",
                f"mirror={demo['agency_mirror']}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert check.returncode == 1, check.stderr  # the mirror's planted discrepancies are violations
        findings = json.loads(check.stdout)["agencies"][0]["findings"]
        violations = sorted({f["class"] for f in findings} - {"missing"})
        assert violations == ["content_mismatch", "shown_after_expiry", "shown_after_removal"]
    finally:
        assert stop(proc) == 0

    proc, demo = start_demo(tmp_path)
    try:
        assert demo["audit_verifier_key"] == key
        operator = session(demo, "operator")
        resp = operator.get(
            f"{demo['gateway']}/v1/entities/{demo['sample_uscc'][1]}", headers={"X-Purpose": "credit_check"}
        )
        assert resp.status_code == 200
        assert int(resp.headers["Audit-Entry"]) > first_entry
        time.sleep(1.2)
        result = verify(demo)
        assert result.returncode == 0, result.stderr
    finally:
        assert stop(proc) == 0
