"""The audit log's tables (SQLAlchemy Core; the same schema on SQLite and PostgreSQL).

audit_entries   one row per leaf: the exact leaf bytes, their RFC 9162 leaf hash, and the
                columns security teams search by (kept at append time, indexed).
audit_subjects  (uscc, idx): which entries concern which company, for "who accessed X".
audit_nodes     hashes of complete perfect subtrees (level >= 1), written with their last leaf,
                so proofs and roots need O(log n) reads, never a rebuild.
audit_head      one row: the log size and the last leaf hash. Writers lock it, so several
                gateway processes append to one chain without forking it.
audit_checkpoints  every signed checkpoint (C2SP signed note), by tree size.
audit_keys      the note signing keys, with their validity windows.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)

metadata = MetaData()

entries = Table(
    "audit_entries",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("leaf", LargeBinary, nullable=True),  # null once pruned by retention
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("ts_us", BigInteger, nullable=False),  # entry time, microseconds since the epoch
    Column("client_id", String(200), nullable=True),
    Column("decision", String(16), nullable=False),
    Column("status", Integer, nullable=False),
    Column("kind", String(32), nullable=False),
    Index("ix_audit_entries_client_ts", "client_id", "ts_us"),
    Index("ix_audit_entries_ts", "ts_us"),
)

subjects = Table(
    "audit_subjects",
    metadata,
    Column("uscc", String(18), primary_key=True),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
)

nodes = Table(
    "audit_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("last_hash", String(64), nullable=False),
)

checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("ts_us", BigInteger, nullable=False),
)

keys = Table(
    "audit_keys",
    metadata,
    Column("key_id", String(8), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("private_key", LargeBinary, nullable=False),  # raw 32-byte Ed25519 seed
    Column("verifier_key", Text, nullable=False),
    Column("not_before_us", BigInteger, nullable=False),
    Column("not_after_us", BigInteger, nullable=True),
    Column("active", Boolean, nullable=False),
)
