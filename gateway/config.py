"""Gateway settings: a TOML file, then `CREDGATE_<SECTION>_<KEY>` environment variables.

Every key is declared here with its type and default; an unknown key or a value of the wrong
type is a ConfigError that names the key (the CLI prints it and exits non-zero). The
environment is passed in, never read from `os.environ` here, so tests inject their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlparse

from audit.retention import check_retention_days
from audit.witnessing import parse_witness_peers, parse_witnessed_logs
from credcore.db import async_url
from credcore.errors import ConfigError


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""  # the issuer; defaults to http://host:port
    max_url_bytes: int = 4096
    max_header_bytes: int = 16384
    max_body_bytes: int = 1_048_576


@dataclass
class DatabaseSettings:
    url: str = "sqlite:///credgate.db"
    busy_timeout: float = 5.0  # SQLite: seconds a write waits for another connection's lock


@dataclass
class UpstreamSettings:
    url: str = ""
    connect_timeout: float = 2.0
    read_timeout: float = 5.0
    pool_size: int = 100


@dataclass
class AuditSettings:
    origin: str = "credgate.local/audit"
    checkpoint_interval: float = 1.0
    checkpoint_entries: int = 10000  # also sign as soon as this many entries wait (0: by time only)
    max_batch: int = 1024
    retention_days: int = 1096  # entries older than this may be pruned; at least 184 (six months)
    witness_name: str = ""  # this gateway's witness (cosigner) name; "" serves no witness
    witness_logs: str = ""  # note verifier keys of the partner logs this gateway witnesses
    witnesses: str = ""  # "<witness key>@<submission prefix URL>" items: witnesses asked to cosign
    witness_timeout: float = 2.0


@dataclass
class OAuthSettings:
    audience: str = ""  # defaults to <public_url>/v1
    token_lifetime: int = 300


@dataclass
class QuotaSettings:
    backend: str = "sql"  # sql | redis
    redis_url: str = "redis://127.0.0.1:6379/0"


@dataclass
class LicensingSettings:
    poll_interval: float = 0.5  # how often other processes' changes are picked up (< 1 s)


@dataclass
class TracingSettings:
    exporter: str = "none"  # none | console | otlp
    otlp_endpoint: str = ""
    service_name: str = "credgate-gateway"


@dataclass
class OverscopeSettings:
    # Over-scope detection (gateway/overscope.py): per operator, per sliding window of `window`
    # seconds; past a threshold the operator is suspended automatically with an incident record.
    enabled: bool = True
    window: float = 60.0
    max_scope_denials: int = 30
    max_not_found: int = 100
    max_distinct_codes: int = 2000
    max_sequential: int = 20
    sequential_gap: int = 2


@dataclass
class CrosstabSettings:
    enabled: bool = False
    region: str = ""  # our GB/T 2260 division code, e.g. "310000"
    domestic_regions: str = ""  # comma-separated division codes that count as domestic
    max_batch: int = 500


@dataclass
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    upstream: UpstreamSettings = field(default_factory=UpstreamSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    oauth: OAuthSettings = field(default_factory=OAuthSettings)
    quotas: QuotaSettings = field(default_factory=QuotaSettings)
    licensing: LicensingSettings = field(default_factory=LicensingSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
    crosstab: CrosstabSettings = field(default_factory=CrosstabSettings)
    overscope: OverscopeSettings = field(default_factory=OverscopeSettings)

    @property
    def issuer(self) -> str:
        return (self.server.public_url or f"http://{self.server.host}:{self.server.port}").rstrip("/")

    @property
    def audience(self) -> str:
        return self.oauth.audience or f"{self.issuer}/v1"


_CHOICES = {
    ("quotas", "backend"): ("sql", "redis"),
    ("tracing", "exporter"): ("none", "console", "otlp"),
}


def _coerce(section: str, key: str, kind: type, value: Any) -> Any:
    name = f"{section}.{key}"
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"setting '{name}' must be a finite number, not {value!r}.")
            return float(value)
    elif kind is str and isinstance(value, str):
        return value
    raise ConfigError(f"setting '{name}' must be of type {kind.__name__}, not {value!r}.")


def _validate(settings: Settings) -> None:
    for (section, key), choices in _CHOICES.items():
        value = getattr(getattr(settings, section), key)
        if value not in choices:
            raise ConfigError(f"setting '{section}.{key}' must be one of {', '.join(choices)}, not {value!r}.")
    positive = [
        ("server", "port"), ("server", "max_url_bytes"), ("server", "max_header_bytes"),
        ("server", "max_body_bytes"), ("upstream", "connect_timeout"), ("upstream", "read_timeout"),
        ("upstream", "pool_size"), ("audit", "checkpoint_interval"), ("audit", "max_batch"),
        ("oauth", "token_lifetime"), ("licensing", "poll_interval"),
        ("overscope", "window"), ("overscope", "max_scope_denials"), ("overscope", "max_not_found"),
        ("overscope", "max_distinct_codes"), ("overscope", "max_sequential"), ("overscope", "sequential_gap"),
    ]
    for section, key in positive:
        if getattr(getattr(settings, section), key) <= 0:
            raise ConfigError(f"setting '{section}.{key}' must be positive.")
    if settings.database.busy_timeout < 0:
        raise ConfigError("setting 'database.busy_timeout' must be zero or more seconds.")
    if settings.server.port > 65535:
        raise ConfigError("setting 'server.port' must be at most 65535.")
    if settings.oauth.token_lifetime > 600:
        raise ConfigError("setting 'oauth.token_lifetime' must be at most 600 seconds (short-lived tokens).")
    if settings.audit.checkpoint_interval > 1.0:
        raise ConfigError("setting 'audit.checkpoint_interval' must be at most 1 second (the contract's lag).")
    _validate_audit(settings.audit)
    try:
        async_url(settings.database.url)
    except ConfigError as exc:
        raise ConfigError(f"setting 'database.url': {exc.description}") from exc
    upstream = urlparse(settings.upstream.url)
    if upstream.scheme not in ("http", "https") or not upstream.hostname:
        raise ConfigError("setting 'upstream.url' must be an http(s) URL of the public credit store.")


def _validate_audit(audit: AuditSettings) -> None:
    if audit.checkpoint_entries < 0:
        raise ConfigError("setting 'audit.checkpoint_entries' must not be negative.")
    if audit.witness_timeout <= 0:
        raise ConfigError("setting 'audit.witness_timeout' must be positive.")
    check_retention_days(audit.retention_days)
    try:
        parse_witness_peers(audit.witnesses)
    except ConfigError as exc:
        raise ConfigError(f"setting 'audit.witnesses': {exc.description}") from exc
    parse_witnessed_logs(audit.witness_logs)


def load_settings(path: Path | None = None, environ: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Settings:
    """Settings from an optional TOML file, then the environment, then explicit overrides."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read the config file {path}: {exc.strerror}.") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"the config file {path} is not valid TOML: {exc}.") from exc
    settings = Settings()
    sections = {f.name: f for f in dataclasses.fields(Settings)}
    layers: list[dict[str, Any]] = [raw]
    env_layer: dict[str, dict[str, str]] = {}
    for name, value in (environ or {}).items():
        if not name.startswith("CREDGATE_"):
            continue
        rest = name[len("CREDGATE_"):].lower()
        for section in sections:
            if rest.startswith(section + "_"):
                env_layer.setdefault(section, {})[rest[len(section) + 1:]] = value
    layers.append(env_layer)
    layers.append({k: dict(v) for k, v in (overrides or {}).items()})
    for layer in layers:
        for section, values in layer.items():
            if section not in sections:
                raise ConfigError(f"unknown config section '{section}' (known: {', '.join(sections)}).")
            if not isinstance(values, Mapping):
                raise ConfigError(f"config section '{section}' must be a table.")
            target = getattr(settings, section)
            hints = get_type_hints(type(target))
            for key, value in values.items():
                if key not in hints:
                    raise ConfigError(f"unknown setting '{section}.{key}'.")
                setattr(target, key, _coerce(section, key, hints[key], value))
    _validate(settings)
    return settings
