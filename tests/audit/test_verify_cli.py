"""`credgate audit verify`: exit 0 on an intact log (--db and --url); on a tampered database,
non-zero with the first bad index and the kind of damage."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
import shutil
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpointer import Checkpointer, load_or_create_signer
from audit.note import NoteSigner
from audit.writer import AuditWriter
from credcore.db import make_engine
from gateway.cli import main

ORIGIN = "credgate.test/audit"
SIZE = 40
ROOT = str(Path(__file__).resolve().parents[2])


async def build_log(db: Path) -> str:
    """A 40-entry log with checkpoints signed at 10, 25 and 40 entries; its verifier key."""
    engine = make_engine(f"sqlite:///{db}")
    writer = AuditWriter(engine)
    await writer.start()
    signer = await load_or_create_signer(engine, ORIGIN)
    checkpointer = Checkpointer(engine, signer, origin=ORIGIN)
    t0 = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
    for lo, hi in ((0, 10), (10, 25), (25, SIZE)):
        await asyncio.gather(*(writer.append({
            "kind": "access", "time": (t0 + dt.timedelta(seconds=n)).isoformat().replace("+00:00", "Z"),
            "client_id": f"op-{n % 3}", "uscc": ["91110108551385082Q"], "decision": "allow", "status": 200,
            "fields": ["record_id"], "n": n,
        }) for n in range(lo, hi)))
        await checkpointer.sign_latest()
    await writer.close()
    await engine.dispose()
    return signer.verifier_key


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    db = tmp_path_factory.mktemp("verify") / "reference.db"
    key = asyncio.run(build_log(db))
    return db, key


@pytest.fixture
def log_copy(reference: tuple[Path, str], tmp_path: Path) -> Path:
    db = tmp_path / "audit.db"
    shutil.copyfile(reference[0], db)
    return db


def verify(*args: str) -> tuple[int, str]:
    """`credgate audit verify ARGS` in-process; the exit code and everything it printed."""
    result = CliRunner().invoke(main, ["audit", "verify", *args])
    return result.exit_code, result.output


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def rows(con: sqlite3.Connection) -> list[tuple[int, bytes, bytes]]:
    return [(i, bytes(leaf), bytes(h)) for i, leaf, h in
            con.execute("SELECT idx, leaf, leaf_hash FROM audit_entries ORDER BY idx")]


# --- tampering, as someone with write access to the database file would --------------------

def flip_byte_in_leaf(con: sqlite3.Connection) -> None:
    (leaf,) = con.execute("SELECT leaf FROM audit_entries WHERE idx = 7").fetchone()
    con.execute("UPDATE audit_entries SET leaf = ? WHERE idx = 7", (bytes(leaf).replace(b'"op-1"', b'"op-9"'),))


def flip_byte_breaking_json(con: sqlite3.Connection) -> None:
    (leaf,) = con.execute("SELECT leaf FROM audit_entries WHERE idx = 7").fetchone()
    con.execute("UPDATE audit_entries SET leaf = ? WHERE idx = 7", (b"[" + bytes(leaf)[1:],))


def edit_leaf_and_its_hash(con: sqlite3.Connection) -> None:
    (leaf,) = con.execute("SELECT leaf FROM audit_entries WHERE idx = 7").fetchone()
    forged = bytes(leaf).replace(b'"op-1"', b'"op-9"')
    con.execute("UPDATE audit_entries SET leaf = ?, leaf_hash = ? WHERE idx = 7", (forged, leaf_hash(forged)))


def delete_row(con: sqlite3.Connection) -> None:
    con.execute("DELETE FROM audit_entries WHERE idx = 12")


def delete_row_and_renumber(con: sqlite3.Connection) -> None:
    con.execute("DELETE FROM audit_entries WHERE idx = 12")
    for idx in range(13, SIZE):
        con.execute("UPDATE audit_entries SET idx = ? WHERE idx = ?", (idx - 1, idx))


def swap_rows(con: sqlite3.Connection) -> None:
    a, b = (con.execute("SELECT leaf, leaf_hash FROM audit_entries WHERE idx = ?", (i,)).fetchone() for i in (20, 21))
    con.execute("UPDATE audit_entries SET leaf = ?, leaf_hash = ? WHERE idx = 20", b)
    con.execute("UPDATE audit_entries SET leaf = ?, leaf_hash = ? WHERE idx = 21", a)


def insert_row(con: sqlite3.Connection) -> None:
    """A well-formed forged entry at 15, correctly linked to 14, with later rows moved up."""
    entries = rows(con)
    for idx in range(SIZE - 1, 14, -1):
        con.execute("UPDATE audit_entries SET idx = ? WHERE idx = ?", (idx + 1, idx))
    forged = dict(json.loads(entries[15][1]), client_id="op-forged", prev_hash=entries[14][2].hex())
    leaf = json.dumps(forged, sort_keys=True, separators=(",", ":")).encode()
    con.execute("INSERT INTO audit_entries (idx, leaf, leaf_hash, ts_us, client_id, decision, status, kind) "
                "VALUES (15, ?, ?, 0, 'op-forged', 'allow', 200, 'access')", (leaf, leaf_hash(leaf)))


def truncate_log(con: sqlite3.Connection) -> None:
    con.execute("DELETE FROM audit_entries WHERE idx >= 35")
    con.execute("UPDATE audit_head SET size = 35")


def forge_checkpoint(con: sqlite3.Connection) -> None:
    (note,) = con.execute("SELECT note FROM audit_checkpoints WHERE size = ?", (SIZE,)).fetchone()
    lines = note.split("\n")
    lines[2] = "A" * 43 + "="
    con.execute("UPDATE audit_checkpoints SET note = ? WHERE size = ?", ("\n".join(lines), SIZE))


def sign_with_unknown_key(con: sqlite3.Connection) -> None:
    (note,) = con.execute("SELECT note FROM audit_checkpoints WHERE size = ?", (SIZE,)).fetchone()
    text = note[: note.rindex("\n\n") + 1]
    other = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    con.execute("UPDATE audit_checkpoints SET note = ? WHERE size = ?", (other.sign(text), SIZE))


Tamper = Callable[[sqlite3.Connection], None]
CASES: list[tuple[Tamper, int | None, str]] = [
    (flip_byte_in_leaf, 7, "edited"),
    (flip_byte_breaking_json, 7, "not canonical JSON"),
    (edit_leaf_and_its_hash, 8, "prev_hash mismatch"),  # a careful forger: caught at the next link
    (delete_row, 12, "missing"),
    (delete_row_and_renumber, 12, "prev_hash mismatch"),
    (swap_rows, 20, "reordered"),
    (insert_row, 15, "inserted"),
    (truncate_log, 35, "truncated"),
    (forge_checkpoint, None, "does not verify"),
    (sign_with_unknown_key, None, "no signature by a trusted key"),
]


def tamper(db: Path, how: Tamper) -> None:
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("BEGIN")
    how(con)
    con.execute("COMMIT")
    con.close()


@pytest.mark.parametrize(("how", "index", "kind"), CASES, ids=[case[0].__name__ for case in CASES])
def test_tampered_database_fails_naming_the_damage(log_copy: Path, how: Tamper, index: int | None, kind: str) -> None:
    """Each kind of tampering exits non-zero, naming the first bad index and what happened."""
    assert verify("--db", f"sqlite:///{log_copy}")[0] == 0
    tamper(log_copy, how)
    code, output = verify("--db", f"sqlite:///{log_copy}")
    assert code != 0, output
    assert "NOT verified" in output and kind in output, output
    if index is not None:
        assert f"(first bad index {index})" in output, output


def test_published_key_catches_a_database_rewritten_with_its_keys(log_copy: Path,
                                                                  reference: tuple[Path, str]) -> None:
    """A forger who also plants a key in audit_keys is caught by --key with the published key."""
    other = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    con = sqlite3.connect(log_copy, isolation_level=None)
    (note,) = con.execute("SELECT note FROM audit_checkpoints WHERE size = ?", (SIZE,)).fetchone()
    con.execute("UPDATE audit_checkpoints SET note = ? WHERE size = ?", (other.sign(note[: note.rindex("\n\n") + 1]),
                                                                          SIZE))
    con.execute("UPDATE audit_keys SET verifier_key = ?", (other.verifier_key,))
    con.close()
    code, output = verify("--db", f"sqlite:///{log_copy}", "--key", reference[1])
    assert code != 0 and "no signature by a trusted key" in output, output


def test_intact_log_verifies_with_and_without_the_published_key(log_copy: Path, reference: tuple[Path, str]) -> None:
    """An untouched log exits 0 and says how many entries and checkpoints it checked."""
    code, output = verify("--db", f"sqlite:///{log_copy}")
    assert code == 0 and f"audit log verified: {SIZE} entries" in output and "3 checkpoint(s)" in output, output
    code, output = verify("--db", f"sqlite:///{log_copy}", "--key", reference[1])
    assert code == 0, output


def test_missing_database_is_an_error_not_a_new_file(tmp_path: Path) -> None:
    """Verifying a database that does not exist fails clearly and creates nothing."""
    code, output = verify("--db", f"sqlite:///{tmp_path / 'typo.db'}")
    assert code != 0 and "no SQLite database" in output and "Traceback" not in output
    assert not (tmp_path / "typo.db").exists()


def credgate() -> list[str]:
    found = shutil.which("credgate")
    return [found] if found else [sys.executable, "-m", "gateway"]


async def run_credgate(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *credgate(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ROOT},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_command_line_db_exit_codes(log_copy: Path, tmp_path: Path) -> None:
    """The installed `credgate audit verify --db` exits 0 on the log and 1 on a tampered copy."""
    tampered = tmp_path / "tampered.db"
    shutil.copyfile(log_copy, tampered)
    tamper(tampered, swap_rows)
    (ok, out, _), (bad, _, err) = await asyncio.gather(run_credgate("audit", "verify", "--db", f"sqlite:///{log_copy}"),
                                                       run_credgate("audit", "verify", "--db", f"sqlite:///{tampered}"))
    assert ok == 0 and out.startswith("audit log verified"), out
    assert bad == 1 and re.search(r"first bad index 20\).*entry 20: reordered", err), err
    assert "Traceback" not in err


async def test_command_line_url_against_a_running_gateway(gateway: Any, sample_code: str) -> None:
    """`credgate audit verify --url` with auditor credentials exits 0 on a live gateway's log."""
    token = await gateway.token("op")
    for path in (f"/v1/entities/{sample_code}/penalties", "/v1/entities/BAD", f"/v1/entities/{sample_code}"):
        await gateway.get(path, token)
    base = str(gateway.client.make_url("")).rstrip("/")
    code, out, err = await run_credgate("audit", "verify", "--url", base, "--client-id", "auditor",
                                        "--client-secret", gateway.secrets["auditor"])
    assert code == 0, err
    assert out.startswith("audit log verified"), out
    code, _out, err = await run_credgate("audit", "verify", "--url", base, "--client-id", "auditor",
                                         "--client-secret", "wrong")
    assert code != 0 and "refused the auditor credentials" in err and "Traceback" not in err
