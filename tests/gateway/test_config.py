"""Configuration (issue 2, "Bad input"): an unknown key or a bad value is a ConfigError naming
the key, and `credgate serve --config bad.toml` says so in one line and exits non-zero."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

from credcore.errors import ConfigError
from gateway.config import load_settings

GOOD = """
[server]
host = "127.0.0.1"
port = 8099

[upstream]
url = "http://127.0.0.1:9001"
read_timeout = 2.5

[database]
url = "sqlite:///gw.db"
busy_timeout = 0.5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "credgate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_file_loads_and_the_environment_overrides_it(tmp_path: Path) -> None:
    """A valid file loads; CREDGATE_<SECTION>_<KEY> wins over it; other variables are ignored."""
    settings = load_settings(write(tmp_path, GOOD), environ={"CREDGATE_UPSTREAM_READ_TIMEOUT": "1.5",
                                                             "CREDGATE_CLIENT_ID": "auditor", "HOME": "/root"})
    assert (settings.server.port, settings.upstream.read_timeout, settings.database.busy_timeout) == (8099, 1.5, 0.5)
    assert settings.issuer == "http://127.0.0.1:8099" and settings.audience == "http://127.0.0.1:8099/v1"


def with_line(section: str | None, line: str) -> str:
    """GOOD with `line` in [section] (replacing the line of the same key there), or at the top."""
    if section is None:
        return line + "\n" + GOOD
    key = line.split("=")[0].strip()
    out: list[str] = []
    current, placed = None, False
    for text in GOOD.splitlines():
        if text.startswith("["):
            current = text.strip("[]")
        if current == section and text.split("=")[0].strip() == key:
            continue
        out.append(text)
        if text == f"[{section}]":
            out.append(line)
            placed = True
    if not placed:
        out += ["", f"[{section}]", line]
    return "\n".join(out) + "\n"


@pytest.mark.parametrize(("section", "line", "key"), [
    ("server", "bogus = 1", "server.bogus"),
    ("upstream", "timeout = 3", "upstream.timeout"),
    ("metrics", "enabled = true", "metrics"),
    (None, "loglevel = 'debug'", "loglevel"),
], ids=["key", "near_miss", "section", "top_level"])
def test_unknown_key_is_named(tmp_path: Path, section: str | None, line: str, key: str) -> None:
    """A key or section the gateway does not know is an error naming it, not silently ignored."""
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, with_line(section, line)), environ={})
    assert f"'{key}'" in caught.value.description


BAD_VALUES = [
    ("server", "port", '"eighty"'), ("server", "port", "70000"), ("server", "port", "true"), ("server", "port", "80.5"),
    ("upstream", "read_timeout", "-1"), ("upstream", "read_timeout", "nan"), ("upstream", "read_timeout", "inf"),
    ("upstream", "url", '"ftp://store"'), ("database", "url", '"mysql://u:secret@db/credgate"'),
    ("database", "busy_timeout", "-0.5"), ("quotas", "backend", '"mongo"'), ("tracing", "exporter", '"zipkin"'),
    ("oauth", "token_lifetime", "3600"), ("audit", "checkpoint_interval", "5"), ("crosstab", "enabled", '"maybe"'),
    ("server", "max_header_bytes", "[16384]"),
]


@pytest.mark.parametrize(("section", "key", "value"), BAD_VALUES, ids=[f"{s}.{k}={v}" for s, k, v in BAD_VALUES])
def test_bad_value_is_named(tmp_path: Path, section: str, key: str, value: str) -> None:
    """A value of the wrong type or out of range is an error naming the key (and no password)."""
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, with_line(section, f"{key} = {value}")), environ={})
    assert f"'{section}.{key}'" in caught.value.description
    assert "secret" not in caught.value.description


@pytest.mark.parametrize(("variable", "value", "key"), [
    ("CREDGATE_SERVER_PORT", "abc", "server.port"), ("CREDGATE_SERVER_PORT", "²", "server.port"),
    ("CREDGATE_SERVER_BOGUS", "1", "server.bogus"),
    ("CREDGATE_UPSTREAM_CONNECT_TIMEOUT", "-2", "upstream.connect_timeout"),
])
def test_bad_environment_variable_is_named(tmp_path: Path, variable: str, value: str, key: str) -> None:
    """The environment is checked like the file: the error names the setting."""
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, GOOD), environ={variable: value})
    assert f"'{key}'" in caught.value.description


def test_file_that_is_not_toml_is_an_error(tmp_path: Path) -> None:
    """A syntax error names the file and the line; a missing file names the file."""
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, "[server]\nport 8080\n"), environ={})
    assert "credgate.toml" in caught.value.description and "line 2" in caught.value.description
    with pytest.raises(ConfigError, match="missing.toml"):
        load_settings(tmp_path / "missing.toml", environ={})


ROOT = str(Path(__file__).resolve().parents[2])


def credgate() -> list[str]:
    found = shutil.which("credgate")
    return [found] if found else [sys.executable, "-m", "gateway"]


async def serve(config: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *credgate(), "serve", "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ROOT},
    )
    _out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_serve_with_a_bad_config_exits_with_one_line(tmp_path: Path) -> None:
    """`credgate serve --config bad.toml` exits non-zero with one line naming the key, no traceback."""
    cases = {
        "unknown.toml": (with_line("server", "prot = 8080"), "server.prot"),
        "badvalue.toml": (with_line("server", "port = -3"), "server.port"),
        "notoml.toml": ("[server\nport = 1\n", "notoml.toml"),
    }
    paths = {}
    for name, (text, _key) in cases.items():
        paths[name] = tmp_path / name
        paths[name].write_text(text, encoding="utf-8")
    results = await asyncio.gather(*(serve(paths[name]) for name in cases))
    for (name, (_text, key)), (code, err) in zip(cases.items(), results, strict=True):
        lines = err.strip().splitlines()
        assert code != 0, (name, err)
        assert len(lines) == 1, (name, err)
        assert key in lines[0] and "Traceback" not in err, (name, err)
