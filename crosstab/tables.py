"""The crosstab tables (SQLAlchemy Core), on one module-level MetaData.

The gateway creates every package's tables together (or through alembic), so this module only
declares them. Portable on purpose (SQLite and PostgreSQL): times are epoch seconds or
timezone-aware DateTime stored in UTC, dates are DATE, JSON documents are TEXT.

Why these keys:
- `crosstab_received` is unique on (issuer, jti), not on jti alone: jtis are unique per issuer,
  and a global key would let one partner squat another's jtis and get its records refused as
  replays. (issuer, seq) is unique too: seq increases strictly per issuer.
- `crosstab_partner_clients` maps the OAuth client a partner authenticates with to its region
  (the only way an inbound request gets a region: never from the request itself);
  `crosstab_partner_links` holds our own credentials at a partner, for `credgate crosstab sync`.
- `crosstab_signing_keys` holds our region's Ed25519 keys; the newest unretired one signs,
  retired ones stay published so that partners can re-verify older records.
- `crosstab_issuer_seq` and `crosstab_outbox_seq` are one-row-per-counter tables so that the
  counter and the record it guards are written in one transaction (no half-written state),
  and so that PostgreSQL's row lock orders concurrent writers by commit.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

partners = Table(
    "crosstab_partners",
    metadata,
    Column("region", String(6), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("record_types", String(200), nullable=False),  # space-separated
    Column("outbox_url", String(500)),
    Column("inbox_url", String(500)),
    Column("domestic", Boolean, nullable=False, default=False),
)

partner_keys = Table(
    "crosstab_partner_keys",
    metadata,
    Column(
        "region",
        String(6),
        ForeignKey("crosstab_partners.region", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("kid", String(128), primary_key=True),
    Column("jwk", Text, nullable=False),  # the public JWK as registered
    Column("valid_from", BigInteger),  # epoch seconds, inclusive; null: always
    Column("valid_until", BigInteger),  # epoch seconds, exclusive; null: no end
)

received = Table(
    "crosstab_received",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("issuer", String(6), nullable=False),
    Column("jti", String(128), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("iat", BigInteger, nullable=False),
    Column("type", String(32), nullable=False),
    Column("sub", String(18), nullable=False),
    Column("subject_name", String(200)),
    Column("scheme", String(64)),
    Column("grade", String(16)),
    Column("mapped_scheme", String(64)),
    Column("mapped_grade", String(16)),
    Column("list_name", String(200)),
    Column("decision_number", String(100)),
    Column("authority", String(200)),
    Column("authority_uscc", String(18)),
    Column("valid_from", Date),
    Column("valid_until", Date),
    Column("revokes", String(128)),
    Column("digest", String(64), nullable=False),  # SHA-256 of the canonical payload
    Column("jws", Text, nullable=False),  # the original JWS, verbatim, for re-verification
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("revoked_by", String(128)),  # jti of the revocation
    UniqueConstraint("issuer", "jti", name="uq_crosstab_received_issuer_jti"),
    UniqueConstraint("issuer", "seq", name="uq_crosstab_received_issuer_seq"),
    Index("ix_crosstab_received_sub", "sub"),
)

issuer_seq = Table(
    "crosstab_issuer_seq",
    metadata,
    Column("issuer", String(6), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
)

issued = Table(
    "crosstab_issued",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("jti", String(128), nullable=False, unique=True),
    Column("type", String(32), nullable=False),
    Column("sub", String(18), nullable=False),
    Column("domestic_only", Boolean, nullable=False),
    Column("jws", Text, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
)

outbox_seq = Table(
    "crosstab_outbox_seq",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),  # always 1
    Column("last_seq", BigInteger, nullable=False),
)

sync_cursors = Table(
    "crosstab_sync_cursors",
    metadata,
    Column("partner", String(6), primary_key=True),
    Column("direction", String(4), primary_key=True),  # "pull" or "push"
    Column("after", BigInteger, nullable=False),  # the partner's / our seq already done
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text),
)

partner_clients = Table(
    "crosstab_partner_clients",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("region", String(6), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

partner_links = Table(
    "crosstab_partner_links",
    metadata,
    Column("region", String(6), primary_key=True),
    Column("base_url", String(500), nullable=False),  # the partner gateway, e.g. https://credit.js.example
    Column("client_id", String(128), nullable=False),  # our client at the partner
    Column("client_secret", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

signing_keys = Table(
    "crosstab_signing_keys",
    metadata,
    Column("kid", String(128), primary_key=True),
    Column("region", String(6), nullable=False),
    Column("private_jwk", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("retired_at", DateTime(timezone=True)),
)
