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
    # Which gateway process is delivering it, until when: several processes of one member
    # share the outbox, and a message is sent by one of them only.
    Column("claimed_by", String(80), nullable=True),
    Column("claimed_until", Float, nullable=True),
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

# --- cases (办件) -------------------------------------------------------------------------
# One row per case this gateway holds a copy of, as receiver or as handler. Personal data lives
# in `applicant` only; `applicant_key` is a keyed pseudonym used to match an applicant's own
# cases without storing or comparing ID numbers elsewhere.
cases = Table(
    "cases",
    metadata,
    Column("case_id", String(128), primary_key=True),
    Column("side", String(16), nullable=False),  # receiver | handler
    Column("kind", String(16), nullable=False),  # single | joint | bundle
    Column("parent_id", String(128), nullable=True),
    Column("step", Integer, nullable=True),
    Column("item_code", String(64), nullable=True),
    Column("mode", String(16), nullable=False),
    Column("receiver", String(16), nullable=False),
    Column("handler", String(16), nullable=True),
    Column("state", String(32), nullable=True),
    Column("applicant_key", String(64), nullable=False),
    Column("applicant", Text, nullable=False),  # JSON, personal data
    Column("portal_client", String(64), nullable=True),
    Column("query_password_hash", Text, nullable=True),
    Column("data", Text, nullable=False),  # JSON: form, materials, delivery, outcome, ...
    Column("clock", Text, nullable=False),  # JSON: statutory clock inputs
    Column("decision_due", String(10), nullable=True),
    Column("supplement_due", String(10), nullable=True),
    Column("overdue", Integer, nullable=False, default=0),
    Column("supplement_count", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_cases_applicant", "applicant_key"),
    Index("ix_cases_parent", "parent_id"),
    Index("ix_cases_state", "state"),
)

# Every event of a case, in the order this gateway applied it. Transitions (to_state set) are
# identical on both sides; requests (to_state NULL) are recorded where they were seen.
case_events = Table(
    "case_events",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("case_id", String(128), nullable=False),
    Column("n", Integer, nullable=False),
    Column("event", String(64), nullable=False),
    Column("from_state", String(32), nullable=True),
    Column("to_state", String(32), nullable=True),
    Column("actor", String(16), nullable=False),
    Column("at", Float, nullable=False),
    Column("jti", String(64), nullable=True),
    Column("detail", Text, nullable=False),  # JSON, never an ID number
    UniqueConstraint("case_id", "n", name="uq_case_events_n"),
)

# Inbound case messages apply in `seq` order per sender; one that arrives early waits here.
case_inbound = Table(
    "case_inbound",
    metadata,
    Column("case_id", String(128), primary_key=True),
    Column("iss", String(16), primary_key=True),
    Column("last_applied", Integer, nullable=False),
)

case_held = Table(
    "case_held",
    metadata,
    Column("case_id", String(128), primary_key=True),
    Column("iss", String(16), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("message", Text, nullable=False),  # JSON of the verified message
    Column("held_at", Float, nullable=False),
)

# --- people who call the API --------------------------------------------------------------
clerks = Table(
    "clerks",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),  # window | handler | supervisor
    Column("password_hash", Text, nullable=False),
    Column("disabled", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
)

# Bearer sessions (clerks and applicants); only a hash of the token is stored.
sessions = Table(
    "sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # clerk | applicant
    Column("subject", String(128), nullable=False),
    Column("role", String(16), nullable=True),
    Column("name", String(200), nullable=True),
    Column("loa", String(4), nullable=True),
    Column("sid", String(128), nullable=True),
    Column("client_id", String(64), nullable=True),
    Column("idn", Text, nullable=True),  # the applicant's ID number, to hand on by SSO
    Column("expires_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_sessions_sid", "sid"),
)

gateway_secrets = Table(
    "gateway_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# Request tokens (`tongban-req+jwt`, PROTOCOL.md §5) already used, kept until they expire.
request_jtis = Table(
    "request_jtis",
    metadata,
    Column("jti", String(128), primary_key=True),
    Column("iss", String(16), nullable=False),
    Column("exp", BigInteger, nullable=False),
    Index("ix_request_jtis_exp", "exp"),
)

# Idempotency-Key of a request that filed a case through the portal or window API: a retry
# whose reply was lost finds the case it already filed instead of filing a second one. The
# primary key is the duplicate guard (also between processes); rows go after 24 h (sweep).
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("caller", String(255), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("case_id", String(128), nullable=False),
    Column("status", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_idempotency_keys_created_at", "created_at"),
)

# --- electronic certificates (电子证照) ------------------------------------------------------
# Certificates this member issued (a concluded, approved case with a certificate id), so that
# other members can have them verified (cert.verify_request).
certificates = Table(
    "certificates",
    metadata,
    Column("cert_id", String(128), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("holder_key", String(64), nullable=False),  # keyed pseudonym of the holder's id
    Column("case_id", String(128), nullable=True),
    Column("status", String(16), nullable=False),  # valid | revoked
    Column("issued_at", Float, nullable=False),
)

# Checks this gateway asked other members for, and their answers.
cert_checks = Table(
    "cert_checks",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("case_id", String(128), nullable=False),
    Column("material", String(64), nullable=False),
    Column("cert_id", String(128), nullable=False),
    Column("issuer", String(16), nullable=False),
    Column("status", String(16), nullable=False),  # pending | valid | invalid
    Column("reason", Text, nullable=True),
    Column("requested_at", Float, nullable=False),
    Column("answered_at", Float, nullable=True),
)

# --- single sign-on (PROTOCOL.md §6) -----------------------------------------------------------
# Federation tokens already exchanged here: a token is single use.
sso_jtis = Table(
    "sso_jtis",
    metadata,
    Column("iss", String(16), primary_key=True),
    Column("jti", String(128), primary_key=True),
    Column("exp", BigInteger, nullable=False),
    Index("ix_sso_jtis_exp", "exp"),
)

# Where this gateway sent an applicant's session (home side), so logout reaches every target.
sso_handoffs = Table(
    "sso_handoffs",
    metadata,
    Column("sid", String(128), primary_key=True),
    Column("target", String(16), primary_key=True),
    Column("at", Float, nullable=False),
)

# Applicants of this gateway's own small identity provider (the local demo IdP).
applicant_accounts = Table(
    "applicant_accounts",
    metadata,
    Column("applicant_key", String(64), primary_key=True),
    Column("id_number", String(18), nullable=False),
    Column("name", String(200), nullable=False),
    Column("loa", String(4), nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

# --- the local case system (region adapter) --------------------------------------------------
# Calls to the local system, queued in the same transaction as the case change that needs them
# and retried until they succeed, in order per case.
local_calls = Table(
    "local_calls",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("case_id", String(128), nullable=False),
    Column("kind", String(16), nullable=False),  # submit | supplement | withdraw
    Column("payload", Text, nullable=False),
    Column("state", String(16), nullable=False),  # pending | done | dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", Float, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Index("ix_local_calls_state", "state", "next_at"),
)

local_refs = Table(
    "local_refs",
    metadata,
    Column("case_id", String(128), primary_key=True),
    Column("ref", String(200), nullable=False),
)

# Events from the local system already applied: each applies once, however often it arrives.
local_events = Table(
    "local_events",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("case_id", String(128), nullable=False),
    Column("outcome", Text, nullable=False),
    Column("applied_at", Float, nullable=False),
)

adapter_state = Table(
    "adapter_state",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("cursor", Text, nullable=True),
)

# --- the audit trail (责任追溯) ----------------------------------------------------------------
# Every message sent or received, with its receipt, in a hash chain: each entry holds the hash
# of the one before, so removing, reordering or changing an entry breaks every hash after it.
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", AutoId, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("direction", String(3), nullable=False),  # in | out
    Column("peer", String(16), nullable=False),
    Column("jti", String(64), nullable=False),
    Column("type", String(64), nullable=False),
    Column("case_id", String(128), nullable=True),
    Column("token", Text, nullable=False),
    Column("receipt", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
)
