"""The audit log's tables (SQLAlchemy Core; the same schema on SQLite and PostgreSQL).

audit_entries   one row per leaf: the exact leaf bytes, their RFC 9162 leaf hash, and the
                columns security teams search by (kept at append time, indexed).
audit_subjects  (uscc, idx, ts_us): which entries concern which company, for "who accessed X".
audit_nodes     hashes of complete perfect subtrees (level >= 1), written with their last leaf,
                so proofs and roots need O(log n) reads, never a rebuild.
audit_head      one row: the log size and the last leaf hash. Writers lock it, so several
                gateway processes append to one chain without forking it.
audit_records   (idx, pos): each record an entry released, by its canonical digest and its id,
                so a leaked record leads to the entries (and operators) that released it.
audit_checkpoints  every signed checkpoint (C2SP signed note), by tree size.
audit_keys      the note signing keys, with their validity windows.
audit_cosignatures  C2SP tlog-cosignature lines that witnesses returned for our checkpoints.
audit_witness_key   this gateway's own witness (cosigner) key.
audit_witness_state the latest checkpoint this gateway cosigned, per witnessed log (origin).

Tables and indexes are created with `create_schema`, which also adds indexes introduced after a
database was first made (`create_all` only creates missing tables).
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
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    inspect,
)
from sqlalchemy.engine import Connection

metadata = MetaData()

entries = Table(
    "audit_entries",
    metadata,
    # INTEGER on SQLite makes idx the rowid itself rather than a second B-tree beside it.
    Column("idx", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False),
    Column("leaf", LargeBinary, nullable=True),  # null once pruned by retention
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("ts_us", BigInteger, nullable=False),  # entry time, microseconds since the epoch
    Column("client_id", String(200), nullable=True),
    Column("decision", String(16), nullable=False),
    Column("status", Integer, nullable=False),
    Column("kind", String(32), nullable=False),
    # Search walks these in (time, index) order; proofs read leaf hashes from the last one alone.
    Index("ix_audit_entries_client_time", "client_id", "ts_us", "idx"),
    Index("ix_audit_entries_time", "ts_us", "idx"),
    Index("ix_audit_entries_leaf_hash", "idx", "leaf_hash"),
)

subjects = Table(
    "audit_subjects",
    metadata,
    Column("uscc", String(18), nullable=False),
    Column("idx", BigInteger, nullable=False, autoincrement=False),
    Column("ts_us", BigInteger, nullable=False),  # the entry's time, so a company's recent entries are a range
    # The key is the search order itself: one B-tree per row, no second index to keep. (Databases
    # made before kept (uscc, idx) as the key and an index ix_audit_subjects_time in this order.)
    PrimaryKeyConstraint("uscc", "ts_us", "idx", name="pk_audit_subjects"),
    sqlite_with_rowid=False,
)

records = Table(
    "audit_records",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("pos", Integer, primary_key=True, autoincrement=False),
    Column("sha256", String(64), nullable=False),
    Column("record_id", String(200), nullable=True),
    Index("ix_audit_records_sha256", "sha256"),
    Index("ix_audit_records_record_id", "record_id"),
    sqlite_with_rowid=False,
)

nodes = Table(
    "audit_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    sqlite_with_rowid=False,
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

cosignatures = Table(
    "audit_cosignatures",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("witness", String(200), primary_key=True),  # the cosigner's key name
    Column("key_id", String(8), primary_key=True),
    Column("line", Text, nullable=False),  # the note signature line, ending in a newline
    Column("ts", BigInteger, nullable=False),  # the cosignature's own timestamp (seconds)
)

witness_key = Table(
    "audit_witness_key",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("private_key", LargeBinary, nullable=False),  # raw 32-byte Ed25519 seed
    Column("verifier_key", Text, nullable=False),
    Column("created_us", BigInteger, nullable=False),
)

witness_state = Table(
    "audit_witness_state",
    metadata,
    Column("origin", String(200), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),  # the log-signed checkpoint we last cosigned
    Column("updated_us", BigInteger, nullable=False),
)


def create_schema(conn: Connection) -> None:
    """Create missing tables, add the columns and indexes an older version did not have."""
    metadata.create_all(conn)
    if "ts_us" not in {c["name"] for c in inspect(conn).get_columns("audit_subjects")}:
        exists = " IF NOT EXISTS" if conn.dialect.name == "postgresql" else ""  # SQLite: under BEGIN IMMEDIATE
        conn.exec_driver_sql(f"ALTER TABLE audit_subjects ADD COLUMN{exists} ts_us BIGINT")
        conn.exec_driver_sql("UPDATE audit_subjects SET ts_us = (SELECT e.ts_us FROM audit_entries e "
                             "WHERE e.idx = audit_subjects.idx) WHERE ts_us IS NULL")
    for table in metadata.sorted_tables:
        for index in table.indexes:
            index.create(conn, checkfirst=True)
