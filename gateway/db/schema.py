"""The gateway's tables (SQLAlchemy Core), identical on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
AutoId = BigInteger().with_variant(Integer(), "sqlite")

registry_versions = Table(
    "registry_versions",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("jws", Text, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("iat", BigInteger, nullable=False),
    Column("exp", BigInteger, nullable=False),
    Column("stored_at", Float, nullable=False),
)

inbox = Table(
    "inbox",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("jti", String(64), nullable=False, unique=True),
    Column("iss", String(16), nullable=False),
    Column("type", String(64), nullable=False),
    Column("case_id", String(128), nullable=True),
    Column("seq", Integer, nullable=True),
    Column("digest", String(64), nullable=False),
    Column("content_digest", String(64), nullable=False),
    Column("token", Text, nullable=False),
    Column("received_at", Float, nullable=False),
    # The receipt we answered with; stored so an auditor can match both halves.
    Column("receipt", Text, nullable=False),
    UniqueConstraint("iss", "case_id", "seq", name="uq_inbox_case_seq"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("jti", String(64), nullable=False, unique=True),
    Column("dest", String(16), nullable=False),
    Column("type", String(64), nullable=False),
    Column("case_id", String(128), nullable=True),
    Column("seq", Integer, nullable=True),
    Column("payload", Text, nullable=False),  # JSON: {"body": ..., "att": ...}
    Column("state", String(16), nullable=False),  # pending | delivered | dead
    Column("token", Text, nullable=True),  # signed bytes of the current attempt generation
    Column("token_exp", BigInteger, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("last_attempt_at", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("delivered_at", Float, nullable=True),
    Column("receipt", Text, nullable=True),
    Column("receipt_status", String(16), nullable=True),
    Index("ix_outbox_dest_state_id", "dest", "state", "id"),
)

case_sequences = Table(
    "case_sequences",
    metadata,
    Column("case_id", String(128), primary_key=True),
    Column("dest", String(16), primary_key=True),
    Column("last_seq", Integer, nullable=False),
)

destinations = Table(
    "destinations",
    metadata,
    Column("dest", String(16), primary_key=True),
    Column("failures", Integer, nullable=False, default=0),
    Column("retry_at", Float, nullable=False, default=0.0),
    Column("last_error", Text, nullable=True),
    Column("last_success_at", Float, nullable=True),
)
