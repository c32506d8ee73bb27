"""`python -m credstore` as a process: port file, health check, clean stop, argument errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from credstore.__main__ import write_port_file

REPO = Path(__file__).resolve().parents[2]
SMALL_ARGS = ["--entities", "50", "--records", "300", "--seed", "7"]


def _credstore(*args: str) -> list[str]:
    return [sys.executable, "-m", "credstore", *args]


def _wait_for(path: Path, process: subprocess.Popen[str], seconds: float = 30) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text()
        if process.poll() is not None:
            raise AssertionError(f"credstore exited early: {process.communicate()}")
        time.sleep(0.05)
    raise AssertionError("no port file")


@pytest.mark.slow
def test_port_file_serve_and_sigterm(tmp_path: Path) -> None:
    """It writes the bound port, answers /healthz and the data paths, and exits 0 on SIGTERM."""
    port_file = tmp_path / "run" / "port"
    port_file.parent.mkdir()
    db = tmp_path / "data" / "store.db"
    command = _credstore("--db", str(db), "--port", "0", "--port-file", str(port_file),
                         "--today", "2026-11-01", *SMALL_ARGS)
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        port = int(_wait_for(port_file, process))
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{base}/v1/disclosures?limit=1000", timeout=5) as response:
            assert len(json.load(response)["records"]) == 300
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not port_file.exists(), "the port file outlived the server"
    assert db.exists()
    assert [p.name for p in port_file.parent.iterdir()] == [], "a temporary file was left"


@pytest.mark.slow
def test_sigint_also_stops_cleanly(tmp_path: Path) -> None:
    """SIGINT (Ctrl-C) stops the store with exit status 0."""
    port_file = tmp_path / "port"
    command = _credstore("--db", str(tmp_path / "s.db"), "--port-file", str(port_file),
                         *SMALL_ARGS)
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(port_file, process)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    "args",
    [
        ["--port", "70000", "--db", "x.db"],
        ["--port", "http", "--db", "x.db"],
        ["--db", "x.db", "--entities", "3"],
        ["--db", "x.db", "--records", "0"],
        ["--db", "x.db", "--today", "2026-13-01"],
        ["--port", "0"],
        ["--db", "x.db", "--bogus"],
    ],
    ids=["port-range", "port-text", "few-entities", "no-records", "bad-date", "no-db", "unknown"],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path: Path, args: list[str]) -> None:
    """Bad arguments exit 2 with a single error line on stderr and create nothing."""
    result = subprocess.run(
        _credstore(*args), cwd=tmp_path, capture_output=True, text=True, timeout=30,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_port_file_is_replaced_whole(tmp_path: Path) -> None:
    """write_port_file replaces an old file in one step and leaves no temporary behind."""
    target = tmp_path / "port"
    target.write_text("1\n")
    write_port_file(target, 54321)
    assert target.read_text() == "54321\n"
    assert [p.name for p in tmp_path.iterdir()] == ["port"]
