"""Two credgate processes on loopback as two regions, with the reference store: register each other
through POST /admin/partners, exchange both ways (push and pull with `credgate crosstab sync`),
refuse every bad input with its code, survive a key rotation, and serve what they recognised.

Each process is also the other's C2SP tlog-witness, configured from its config file as a
deployment would be: each cosigns the other's checkpoints over HTTP, `credgate audit verify
--min-witnesses 1` counts the cosignature, and a forked or rolled-back checkpoint signed with the
real log key is refused by the partner's witness."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc.jwk import OKPKey

from audit.checkpoint import Checkpoint, sign_checkpoint, verify_checkpoint
from audit.cosignature import CosignatureVerifier, verify_cosignatures
from audit.note import NoteSigner, NoteVerifier
from audit.witness import SIZE_CONTENT_TYPE, format_add_checkpoint
from credcore.clock import CST, system_clock
from crosstab.records import MAX_RECORD_BYTES, TYP
from gateway.cli import main as credgate_main
from tests.conftest import OPERATOR_LICENCE
from tests.crosstab.partner_kit import PartnerKit, uscc

pytestmark = pytest.mark.slow

SH, GD, HK = "310000", "440000", "810000"
START_TIMEOUT = 20.0
CREDGATE = [sys.executable, "-m", "gateway"]


def credgate_crosstab() -> list[str]:
    """The `credgate crosstab` command, as a user runs it."""
    return [sys.executable, "-m", "gateway", "crosstab"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Any, what: str, proc: subprocess.Popen[bytes] | None = None) -> Any:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}")
        try:
            value = check()
            if value:
                return value
        except (OSError, requests.RequestException, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what} did not start within {START_TIMEOUT} s")


async def _provision(db_url: str) -> dict[str, str]:
    """An admin and an auditor client on a gateway database, before its first start."""
    from credcore.db import make_engine
    from gateway.oauth import OAuthService

    engine = make_engine(db_url)
    try:
        oauth = OAuthService(engine, issuer="http://127.0.0.1", audience="setup", clock=system_clock)
        await oauth.start()
        out = {}
        for name, scope in (("admin", "admin"), ("auditor", "audit:read")):
            _cid, secret = await oauth.create_client(name=name, scope=scope, client_id=name)
            out[name] = str(secret)
        return out
    finally:
        await engine.dispose()


@dataclass
class Gateway:
    region: str
    config: Path
    db: Path
    url: str
    secrets: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    log_key: str = ""  # the note verifier key of its audit log
    witness_key: str = ""  # the cosigner key it witnesses its partner's log with

    @property
    def origin(self) -> str:
        return f"credgate-{self.region}/audit"

    @property
    def witness_name(self) -> str:
        return f"credgate-{self.region}/witness"

    def start(self) -> None:
        log = self.log.open("ab")
        self.proc = subprocess.Popen([*CREDGATE, "serve", "--config", str(self.config)], stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL)

    def wait(self) -> None:
        wait_until(lambda: requests.get(f"{self.url}/healthz", timeout=1).ok, f"gateway {self.region}", self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def token(self, client_id: str, secret: str | None = None) -> dict[str, str]:
        resp = requests.post(f"{self.url}/oauth/token", data={"grant_type": "client_credentials"},
                             auth=(client_id, secret or self.secrets[client_id]), timeout=5)
        assert resp.status_code == 200, resp.text
        return {"Authorization": f"Bearer {resp.json()['access_token']}"}

    def cli(self, *args: str, code: int = 0, env: dict[str, str] | None = None) -> str:
        done = subprocess.run([*credgate_crosstab(), "--config", str(self.config), *args], capture_output=True,
                              text=True, timeout=60, env={**os.environ, **(env or {})})
        assert done.returncode == code, (args, done.stdout, done.stderr)
        return done.stdout + done.stderr

    def register(self, other: Gateway | PartnerKit, **extra: Any) -> dict[str, str]:
        """POST /admin/partners for `other` with the JWKS it publishes."""
        if isinstance(other, Gateway):
            jwks, region = requests.get(f"{other.url}/crosstab/v1/jwks.json", timeout=5).json(), other.region
        else:
            jwks, region = other.jwks(), other.region
        body = {"region": region, "name": f"Region {region}", "jwks": jwks,
                "record_types": ["evaluation", "joint_reward", "joint_punishment", "revocation"], **extra}
        resp = requests.post(f"{self.url}/admin/partners", json=body, headers=self.token("admin"), timeout=10)
        assert resp.status_code == 201, resp.text
        return dict(resp.json())


@pytest.fixture
def store_url(tmp_path: Path) -> Iterator[str]:
    """The reference store as its own process (`python -m credstore`)."""
    port_file = tmp_path / "store.port"
    log = (tmp_path / "store.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "credstore", "--port", "0", "--port-file", str(port_file), "--db",
         str(tmp_path / "store.db"), "--entities", "50", "--records", "300"], stdout=log, stderr=log,
    )
    try:
        port = wait_until(lambda: port_file.exists() and int(port_file.read_text()), "the store", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def make_audit_keys(gw: Gateway) -> None:
    """The region's log key and witness key, made on first use by `credgate audit key`, as a
    region does before a partnership (README: Partners witness each other's logs). The command
    runs in this process (click's runner) to spare two interpreter starts per region."""
    url = f"sqlite:///{gw.db}"
    for args in (["--origin", gw.origin], ["--witness-name", gw.witness_name]):
        result = CliRunner().invoke(credgate_main, ["audit", "key", "--db", url, *args])
        assert result.exit_code == 0, result.output
        if args[0] == "--origin":
            gw.log_key = result.output.strip()
        else:
            gw.witness_key = result.output.strip()


def write_config(gw: Gateway, partner: Gateway, store_url: str) -> None:
    """The gateway's TOML: the exchange, and witnessing with the partner both ways (it serves a
    witness for the partner's log, and asks the partner's witness to cosign its own)."""
    port = gw.url.rsplit(":", 1)[1]
    gw.config.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\npublic_url = "{gw.url}"\n'
        f'[database]\nurl = "sqlite:///{gw.db}"\n[upstream]\nurl = "{store_url}"\n'
        f'[audit]\norigin = "{gw.origin}"\nwitness_name = "{gw.witness_name}"\n'
        f'witness_logs = "{partner.log_key}"\nwitnesses = "{partner.witness_key}@{partner.url}/witness"\n'
        f'[crosstab]\nenabled = true\nregion = "{gw.region}"\ndomestic_regions = "{SH},{GD}"\nmax_batch = 50\n',
        encoding="utf-8",
    )


@pytest.fixture
def regions(tmp_path: Path, store_url: str) -> Iterator[tuple[Gateway, Gateway]]:
    """Shanghai and Guangdong gateways, each with its own SQLite database, each the other's
    witness, started in parallel."""
    gateways = []
    for region in (SH, GD):
        port, db = free_port(), tmp_path / f"{region}.db"
        secrets = asyncio.run(_provision(f"sqlite:///{db}"))
        gateways.append(Gateway(region, tmp_path / f"{region}.toml", db, f"http://127.0.0.1:{port}", secrets,
                                tmp_path / f"{region}.log"))
        make_audit_keys(gateways[-1])
    write_config(gateways[0], gateways[1], store_url)
    write_config(gateways[1], gateways[0], store_url)
    try:
        for gw in gateways:
            gw.start()
        for gw in gateways:
            gw.wait()
        yield gateways[0], gateways[1]
    finally:
        for gw in gateways:
            gw.stop()


def signing_key(gw: Gateway) -> tuple[str, OKPKey]:
    """The region's current private key, read from its database (to sign as that partner)."""
    with sqlite3.connect(gw.db) as conn:
        kid, jwk = conn.execute(
            "SELECT kid, private_jwk FROM crosstab_signing_keys WHERE retired_at IS NULL").fetchone()
    return kid, OKPKey.import_key(json.loads(jwk))


def as_partner(gw: Gateway, seq: int) -> PartnerKit:
    """A signer holding `gw`'s real key, continuing after its seq."""
    kit = PartnerKit(gw.region, system_clock)
    kid, key = signing_key(gw)
    kit.keys, kit.kid, kit.seq = {kid: key}, kid, seq
    return kit


def drafts(path: Path, *lines: dict[str, Any]) -> str:
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return str(path)


def test_two_regions_exchange_over_loopback(regions: tuple[Gateway, Gateway], tmp_path: Path) -> None:
    """The whole partnership between two real gateway processes, as a deployment would run it."""
    sh, gd = regions
    today = dt.datetime.now(CST).date()
    valid = {"valid_from": (today - dt.timedelta(days=30)).isoformat(),
             "valid_until": (today + dt.timedelta(days=300)).isoformat()}
    sh_company, gd_company = uscc("91310115MA1K40000"), uscc("91440300MA5F00001")

    # Each region fills its outbox: the store's list entries of its companies, and one evaluation.
    assert "issued store-" in sh.cli("publish")
    assert "issued store-" in gd.cli("publish")
    sh.cli("publish", "--file", drafts(tmp_path / "sh.jsonl",
           {"type": "evaluation", "sub": sh_company, "scheme": "csj_enterprise_credit", "grade": "AA", **valid},
           {"type": "evaluation", "sub": sh_company, "scheme": "tax_credit", "grade": "M", "domestic_only": True,
            **valid}))
    gd.cli("publish", "--file", drafts(tmp_path / "gd.jsonl",
           {"type": "evaluation", "sub": gd_company, "scheme": "tax_credit", "grade": "B", **valid}))

    # Partners register each other through the admin API, and link for sync.
    gd_at_sh, sh_at_gd = sh.register(gd, domestic=True), gd.register(sh, domestic=True)
    sh.cli("partner", "link", GD, "--url", gd.url, "--client-id", sh_at_gd["client_id"],
           env={"CREDGATE_PARTNER_SECRET": sh_at_gd["client_secret"]})
    gd.cli("partner", "link", SH, "--url", sh.url, "--client-id", gd_at_sh["client_id"],
           env={"CREDGATE_PARTNER_SECRET": gd_at_sh["client_secret"]})

    # Shanghai pulls Guangdong's outbox and pushes its own; Guangdong then pulls (re-sends, stored once).
    out = sh.cli("sync", "--push", "--limit", "2")
    assert f"pull {GD}: 5 accepted, 0 rejected, seq 0 -> 5" in out, out
    assert f"push {GD}: 5 accepted, 0 rejected, seq 0 -> 5" in out, out
    out = gd.cli("sync")
    assert f"pull {SH}: 5 accepted, 0 rejected, seq 0 -> 5" in out, out
    with sqlite3.connect(gd.db) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT jti) FROM crosstab_received").fetchone() == (5, 5)

    # Hong Kong, registered at Shanghai but outside the domestic set, never sees the domestic-only grade.
    hk = PartnerKit(HK, system_clock)
    hk_at_sh = sh.register(hk, domestic=True)
    page = requests.get(f"{sh.url}/crosstab/v1/outbox?after=0&limit=50", timeout=5,
                        headers=sh.token(hk_at_sh["client_id"], hk_at_sh["client_secret"])).json()
    assert len(page["records"]) == 4 and page["next"] == 4  # seq 5, the domestic-only grade, is not served
    with sqlite3.connect(sh.db) as conn:
        [domestic_jws] = conn.execute("SELECT jws FROM crosstab_issued WHERE domestic_only").fetchone()
    assert domestic_jws not in page["records"]

    # Guangdong rotates its key mid-stream: Shanghai's sync stops in front of the new key, loses nothing,
    # and resumes once the new JWKS is registered.
    gd.cli("rotate-key")
    gd.stop()
    gd.start()
    gd.wait()
    gd.cli("publish", "--file", drafts(tmp_path / "gd2.jsonl",
           {"type": "evaluation", "sub": gd_company, "scheme": "tax_credit", "grade": "A", **valid}))
    out = sh.cli("sync", "--partner", GD, code=1)
    assert "new key" in out, out
    gd_at_sh = sh.register(gd, domestic=True)  # new keys, and new credentials for Guangdong
    out = sh.cli("sync", "--partner", GD)
    assert f"pull {GD}: 1 accepted, 0 rejected, seq 5 -> 6" in out, out

    # Every bad input, pushed by Guangdong (with its real, rotated key) into Shanghai's inbox.
    gd_kit, stranger = as_partner(gd, 6), PartnerKit("330000", system_clock)
    header = {"alg": "EdDSA", "kid": gd_kit.kid, "typ": TYP}
    with sqlite3.connect(sh.db) as conn:
        [first_jti] = conn.execute("SELECT jti FROM crosstab_received WHERE issuer = ? AND seq = 1", (GD,)).fetchone()
    good = gd_kit.record(sub=gd_company, grade="A", **valid)
    replay = gd_kit.payload(sub=gd_company, **valid)
    replay["jti"] = first_jti
    stale = gd_kit.payload(sub=gd_company, **valid)
    stale.update(seq=2, jti="gd-stale")
    cases = [
        (good, "accepted"),
        ("garbage", "invalid_record"),
        (good[: len(good) // 2], "invalid_record"),  # truncated in the payload
        (good[:-10], "bad_signature"),  # truncated in the signature
        (gd_kit.raw(header, json.dumps(gd_kit.payload(subject_name="x" * MAX_RECORD_BYTES)).encode()),
         "invalid_record"),  # oversized
        (gd_kit.sign(gd_kit.payload(iss=SH, sub=gd_company, **valid)), "wrong_issuer"),
        (stranger.sign(gd_kit.payload(sub=gd_company, **valid), stranger.kid), "unknown_key"),
        (stranger.raw(header, json.dumps(gd_kit.payload(sub=gd_company, **valid)).encode()), "bad_signature"),
        (gd_kit.record(sub=gd_company, valid_from="2020-01-01", valid_until="2020-12-31"), "expired"),
        (gd_kit.sign(replay), "replay"),
        (gd_kit.sign(stale), "stale_seq"),
        (gd_kit.record(sub=gd_company, scheme="csj_enterprise_credit", grade="AA", **valid), "unmapped_grade"),
    ]
    push_headers = sh.token(gd_at_sh["client_id"], gd_at_sh["client_secret"])
    resp = requests.post(f"{sh.url}/crosstab/v1/inbox", json={"records": [r for r, _ in cases]}, timeout=10,
                         headers=push_headers)
    assert resp.status_code == 200, resp.text
    codes = {r["index"]: r["error"] for r in resp.json()["rejected"]}
    assert [codes.get(i, "accepted") for i in range(len(cases))] == [code for _, code in cases]
    resp = requests.post(f"{sh.url}/crosstab/v1/inbox", json={"records": ["x"] * 51}, headers=push_headers,
                         timeout=10)
    assert (resp.status_code, resp.json()["error"]) == (413, "request_too_large")
    assert "at most 50 records" in resp.json()["error_description"]

    # A partner answering garbage (the store is no gateway): the sync fails and says so.
    sh.cli("partner", "link", HK, "--url", _store_url(sh), "--client-id", "x",
           env={"CREDGATE_PARTNER_SECRET": "y"})
    out = sh.cli("sync", "--partner", HK, "--attempts", "2", "--backoff", "0", "--timeout", "3", code=1)
    assert f"pull {HK}: FAILED" in out

    # An operator of Shanghai sees what Guangdong said about its company.
    resp = requests.post(f"{sh.url}/admin/operators", json={"name": "Credit Co.", "licence": OPERATOR_LICENCE_NOW},
                         headers=sh.token("admin"), timeout=10)
    assert resp.status_code == 201, resp.text
    op = resp.json()
    resp = requests.get(f"{sh.url}/v1/entities/{gd_company}/recognitions", timeout=10,
                        headers={**sh.token(op["client_id"], op["client_secret"]), "X-Purpose": "credit_check"})
    assert resp.status_code == 200, resp.text
    seen = sorted((r["origin_region"], r["grade"], r["mapped_grade"], r["revoked"]) for r in resp.json()["records"])
    assert seen == [(GD, "A", "A", False), (GD, "A", "A", False), (GD, "B", "B", False)]  # seq 5, 6 and 7
    assert "Audit-Entry" in resp.headers

    # The exchanges are in Shanghai's audit log, found by company.
    found = requests.get(f"{sh.url}/audit/search?uscc={gd_company}", headers=sh.token("auditor"), timeout=10).json()
    exchanges = {(e["entry"]["kind"], e["entry"].get("exchange")) for e in found["entries"]}
    assert {("crosstab", "sync_pull"), ("crosstab", "push"), ("access", None)} <= exchanges


def traffic(gw: Gateway, n: int) -> int:
    """n requests refused for want of a token (each an audit entry); the log's size after them."""
    index = -1
    for _ in range(n):
        resp = requests.get(f"{gw.url}/v1/entities/91110108551385082Q", timeout=5)
        assert resp.status_code == 401
        index = int(resp.headers["Audit-Entry"])
    return index + 1


def cosigned_checkpoint(gw: Gateway, witness: Gateway, size: int) -> str:
    """Poll gw's public checkpoint until it covers `size` entries, is signed by gw's log key and
    carries a valid cosignature by the witness's key (C2SP tlog-cosignature over that very note)."""
    log_key, witness_key = NoteVerifier.from_key(gw.log_key), CosignatureVerifier.from_key(witness.witness_key)
    seen: list[str] = []

    def ready() -> bool:
        resp = requests.get(f"{gw.url}/audit/checkpoint", timeout=5)
        seen[:] = [resp.text]
        cp = verify_checkpoint(resp.text, [log_key])
        return cp.size >= size and bool(verify_cosignatures(resp.text, [witness_key], now=time.time()))

    try:
        wait_until(ready, f"a checkpoint of {gw.region} cosigned by {witness.region}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last served: {seen}") from None
    return seen[0]


def log_signer(gw: Gateway) -> NoteSigner:
    """The region's real log signing key, read from its database (to sign as that log would)."""
    with sqlite3.connect(gw.db) as conn:
        name, seed = conn.execute("SELECT name, private_key FROM audit_keys WHERE active").fetchone()
    signer = NoteSigner(name, Ed25519PrivateKey.from_private_bytes(bytes(seed)))
    assert signer.verifier_key == gw.log_key
    return signer


def verify_cli(gw: Gateway, *witness_keys: str) -> subprocess.Popen[str]:
    """`credgate audit verify --url` as an auditor runs it, requiring one of the witness keys."""
    args = [arg for key in witness_keys for arg in ("--witness", key)]
    env = {**os.environ, "CREDGATE_CLIENT_ID": "auditor", "CREDGATE_CLIENT_SECRET": gw.secrets["auditor"]}
    return subprocess.Popen([*CREDGATE, "audit", "verify", "--url", gw.url, *args, "--min-witnesses", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def add_checkpoint(witness: Gateway, old: int, proof: list[bytes], note: str) -> requests.Response:
    return requests.post(f"{witness.url}/witness/add-checkpoint", data=format_add_checkpoint(old, proof, note),
                         timeout=5)


def test_two_regions_cosign_each_others_checkpoints(regions: tuple[Gateway, Gateway]) -> None:
    """Each process cosigns the other's checkpoints over HTTP; `audit verify --min-witnesses 1`
    passes with the partner's witness key (and fails with a key that never cosigned); a forked
    or rolled-back checkpoint signed with the real log key is refused with 409 or 422."""
    sh, gd = regions
    for gw in regions:  # each process serves the witness key the region published before
        assert requests.get(f"{gw.url}/audit/keys", timeout=5).json()["witness"] == gw.witness_key
    sizes = {SH: traffic(sh, 5), GD: traffic(gd, 3)}
    notes = {gw.region: cosigned_checkpoint(gw, other, sizes[gw.region]) for gw, other in ((sh, gd), (gd, sh))}

    # An auditor of each region verifies the log over HTTP and requires the partner's cosignature;
    # a key that never cosigned this log (the region's own witness) does not count.
    runs = [(gw, other, verify_cli(gw, other.witness_key), verify_cli(gw, gw.witness_key))
            for gw, other in ((sh, gd), (gd, sh))]
    for gw, other, good, stranger in runs:
        out, err = good.communicate(timeout=60)
        assert good.returncode == 0, (gw.region, out, err)
        assert "audit log verified" in out and other.witness_name in out, out
        out, err = stranger.communicate(timeout=60)
        assert stranger.returncode != 0 and "cosign" in (out + err), (gw.region, out, err)

    # Each witness refuses checkpoints that the other's real log key signed for another history.
    for gw, witness in ((sh, gd), (gd, sh)):
        signer = log_signer(gw)
        cp = verify_checkpoint(notes[gw.region], [signer.verifier])
        held = f"{cp.size}\n"  # the size this witness last cosigned, which it answers a conflict with
        fork = sign_checkpoint(Checkpoint(gw.origin, cp.size, bytes(32)), [signer])
        resp = add_checkpoint(witness, cp.size, [], fork)  # the same size with another root
        assert (resp.status_code, resp.headers["Content-Type"], resp.text) == (409, SIZE_CONTENT_TYPE, held)
        with sqlite3.connect(gw.db) as conn:  # the log's own earlier checkpoint, genuinely signed
            old_size, old_note = conn.execute(
                "SELECT size, note FROM audit_checkpoints WHERE size < ? ORDER BY size DESC LIMIT 1",
                (cp.size,)).fetchone()
        resp = add_checkpoint(witness, old_size, [], old_note)  # rolled back to it
        assert (resp.status_code, resp.headers["Content-Type"], resp.text) == (409, SIZE_CONTENT_TYPE, held)
        resp = add_checkpoint(witness, 0, [], old_note)  # rolled back, claiming a first meeting
        assert (resp.status_code, resp.text) == (409, held)
        grown = sign_checkpoint(Checkpoint(gw.origin, cp.size + 3, cp.root), [signer])
        resp = add_checkpoint(witness, cp.size, [bytes(32)], grown)  # a bigger tree not extending it
        assert resp.status_code == 422, resp.text

    # The refusals left each witness's state alone: the genuine logs keep being cosigned.
    for gw, other in ((sh, gd), (gd, sh)):
        cosigned_checkpoint(gw, other, traffic(gw, 2))


def _store_url(gw: Gateway) -> str:
    """The upstream store named in a gateway's config (a server that is not a partner gateway)."""
    for line in gw.config.read_text().splitlines():
        if line.startswith("url = \"http"):
            return line.split('"')[1]
    raise AssertionError("no upstream url")


OPERATOR_LICENCE_NOW: dict[str, Any] = {
    **OPERATOR_LICENCE,
    "not_before": (dt.datetime.now(CST) - dt.timedelta(days=1)).isoformat(timespec="seconds"),
    "not_after": (dt.datetime.now(CST) + dt.timedelta(days=365)).isoformat(timespec="seconds"),
}
