"""The authorization server's tables (SQLAlchemy Core; the same schema on SQLite and PostgreSQL).

`metadata` is module level so that the gateway can create every table of every package
together (`metadata.create_all`); `OAuthService.start()` also creates its own if missing.

Times that tokens are compared with (`exp`, `revoked_before`) are integer seconds since the
epoch, like the JWT NumericDates they are compared with; bookkeeping times are timestamps.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData()

oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("name", String(256), nullable=False),
    # "scrypt$n$r$p$salt$hash"; null for a client that authenticates only with private_key_jwt
    Column("secret_hash", String(256), nullable=True),
    Column("scope", Text, nullable=False),  # space-separated, RFC 6749 §3.3
    Column("jwks", JSON, nullable=True),  # public JWK Set for private_key_jwt (RFC 7523)
    Column("auth_methods", String(256), nullable=False),  # space-separated method names
    Column("status", String(16), nullable=False, default="active"),  # active | suspended
    # tokens of this client with iat <= revoked_before are revoked (revoke_all_tokens)
    Column("revoked_before", BigInteger, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

oauth_signing_keys = Table(
    "oauth_signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),  # RFC 7638 thumbprint of the public key
    Column("alg", String(16), nullable=False),
    Column("private_key_pem", Text, nullable=False),  # PKCS#8
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("active", Boolean, nullable=False, default=True),
)

# The jti deny-list of RFC 7009 revocations: a row lives until the token would expire anyway.
oauth_revoked_tokens = Table(
    "oauth_revoked_tokens",
    metadata,
    Column("jti", String(255), primary_key=True),
    Column("client_id", String(128), nullable=False, index=True),
    Column("exp", BigInteger, nullable=False, index=True),
    Column("revoked_at", DateTime(timezone=True), nullable=False),
)

# RFC 7523 §3 item 7: a client assertion's jti is single-use until the assertion expires.
oauth_assertion_jtis = Table(
    "oauth_assertion_jtis",
    metadata,
    Column("client_id", String(128), nullable=False),
    Column("jti", String(255), nullable=False),
    Column("exp", BigInteger, nullable=False, index=True),
    PrimaryKeyConstraint("client_id", "jti"),
)

ALL_TABLES = (oauth_clients, oauth_signing_keys, oauth_revoked_tokens, oauth_assertion_jtis)
