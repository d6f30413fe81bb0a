"""Repositories: every SQL statement of the gateway, behind small typed methods.

Methods that must join a caller's transaction take an `AsyncConnection`; the others open their
own. Rows leave this module as frozen dataclasses, never as driver rows.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import and_, bindparam, func, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.db.audit_repo import AuditRecord, AuditRepo
from gateway.db.schema import case_sequences, destinations, inbox, outbox, registry_versions


def _lock_key(name: str) -> int:
    """A stable 63-bit key for a PostgreSQL advisory lock."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") >> 1


# Built once: constructing an INSERT per call costs more than executing it on SQLite.
_INSERT_INBOX = insert(inbox)
_INSERT_OUTBOX = insert(outbox).returning(outbox.c.id)


def _next_seq(dialect: Any) -> Any:
    """The next `seq` of a case towards a destination, allocated and returned by one upsert
    (the row stays locked until the transaction ends, as SELECT ... FOR UPDATE would)."""
    stmt = dialect.insert(case_sequences).values(last_seq=1)
    return stmt.on_conflict_do_update(
        index_elements=[case_sequences.c.case_id, case_sequences.c.dest],
        set_={"last_seq": case_sequences.c.last_seq + 1},
    ).returning(case_sequences.c.last_seq)


_NEXT_SEQ = {"sqlite": _next_seq(sqlite), "postgresql": _next_seq(postgresql)}


@dataclass(frozen=True)
class StoredVersion:
    version: int
    jws: str
    digest: str


class RegistryRepo:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def latest(self) -> StoredVersion | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                select(registry_versions.c.version, registry_versions.c.jws,
                       registry_versions.c.digest)
                .order_by(registry_versions.c.version.desc()).limit(1)
            )).first()
        return None if row is None else StoredVersion(row.version, row.jws, row.digest)

    async def all_versions(self) -> list[StoredVersion]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(
                select(registry_versions.c.version, registry_versions.c.jws,
                       registry_versions.c.digest).order_by(registry_versions.c.version)
            )).all()
        return [StoredVersion(r.version, r.jws, r.digest) for r in rows]

    async def recent(self, limit: int) -> list[StoredVersion]:
        """The newest versions first (a registry of 2,800 members is large; never all)."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(
                select(registry_versions.c.version, registry_versions.c.jws,
                       registry_versions.c.digest)
                .order_by(registry_versions.c.version.desc()).limit(limit)
            )).all()
        return [StoredVersion(r.version, r.jws, r.digest) for r in rows]

    async def get(self, version: int) -> StoredVersion | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                select(registry_versions.c.version, registry_versions.c.jws,
                       registry_versions.c.digest)
                .where(registry_versions.c.version == version)
            )).first()
        return None if row is None else StoredVersion(row.version, row.jws, row.digest)

    async def store(self, conn: AsyncConnection, *, version: int, jws: str, digest: str,
                    iat: int, exp: int, now: float) -> None:
        await conn.execute(insert(registry_versions).values(
            version=version, jws=jws, digest=digest, iat=iat, exp=exp, stored_at=now))

    async def store_if_absent(self, *, version: int, jws: str, digest: str, iat: int, exp: int,
                              now: float) -> None:
        try:
            async with self._engine.begin() as conn:
                existing = (await conn.execute(
                    select(registry_versions.c.version)
                    .where(registry_versions.c.version == version))).first()
                if existing is None:
                    await self.store(conn, version=version, jws=jws, digest=digest, iat=iat,
                                     exp=exp, now=now)
        except IntegrityError:
            # Another process of this member (same database) stored it between our look and
            # our insert, e.g. both fetching the registry as they start: fine if it is the same.
            async with self._engine.connect() as conn:
                held = (await conn.execute(
                    select(registry_versions.c.digest)
                    .where(registry_versions.c.version == version))).scalar_one_or_none()
            if held != digest:
                raise


@dataclass(frozen=True)
class InboxEntry:
    id: int
    jti: str
    iss: str
    type: str
    case_id: str | None
    seq: int | None
    digest: str
    content_digest: str
    token: str
    receipt: str


class InboxRepo:
    _cols = (inbox.c.id, inbox.c.jti, inbox.c.iss, inbox.c.type, inbox.c.case_id, inbox.c.seq,
             inbox.c.digest, inbox.c.content_digest, inbox.c.token, inbox.c.receipt)

    @staticmethod
    def _entry(row: Any) -> InboxEntry:
        return InboxEntry(row.id, row.jti, row.iss, row.type, row.case_id, row.seq, row.digest,
                          row.content_digest, row.token, row.receipt)

    async def by_jti(self, conn: AsyncConnection, jti: str) -> InboxEntry | None:
        row = (await conn.execute(select(*self._cols).where(inbox.c.jti == jti))).first()
        return None if row is None else self._entry(row)

    async def by_case_seq(self, conn: AsyncConnection, iss: str, case_id: str,
                          seq: int) -> InboxEntry | None:
        row = (await conn.execute(select(*self._cols).where(and_(
            inbox.c.iss == iss, inbox.c.case_id == case_id, inbox.c.seq == seq)))).first()
        return None if row is None else self._entry(row)

    async def insert(self, conn: AsyncConnection, *, jti: str, iss: str, type_: str,
                     case_id: str | None, seq: int | None, digest: str, content_digest: str,
                     token: str, receipt: str, now: float) -> None:
        await conn.execute(_INSERT_INBOX, {
            "jti": jti, "iss": iss, "type": type_, "case_id": case_id, "seq": seq,
            "digest": digest, "content_digest": content_digest, "token": token,
            "receipt": receipt, "received_at": now})

    async def list_all(self, engine: AsyncEngine) -> list[InboxEntry]:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(*self._cols).order_by(inbox.c.id))).all()
        return [self._entry(r) for r in rows]


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    jti: str
    dest: str
    type: str
    case_id: str | None
    seq: int | None
    payload: dict[str, Any]
    state: str
    token: str | None
    token_exp: int | None
    attempts: int
    created_at: float
    last_error: str | None
    receipt: str | None
    receipt_status: str | None
    # The process holding the claim while pending; once delivered, the one that delivered it.
    claimed_by: str | None = None


@dataclass(frozen=True)
class SignedCopy:
    row_id: int
    jti: str
    token: str
    token_exp: int


@dataclass(frozen=True)
class Delivery:
    row_id: int
    receipt: str
    status: str
    at: float
    # For the audit trail: what was sent, to whom.
    token: str = ""
    jti: str = ""
    dest: str = ""
    type: str = ""
    case_id: str | None = None
    by: str = ""  # the delivering process (`DeliveryContext.owner`)


class OutboxState:
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


_SET_TOKENS = update(outbox).where(outbox.c.id == bindparam("row_id")).values(
    jti=bindparam("new_jti"), token=bindparam("new_token"),
    token_exp=bindparam("new_token_exp"))
_MARK_DELIVERED = update(outbox).where(outbox.c.id == bindparam("row_id")).values(
    state=OutboxState.DELIVERED, receipt=bindparam("new_receipt"),
    receipt_status=bindparam("new_status"), delivered_at=bindparam("at"),
    attempts=outbox.c.attempts + 1, last_attempt_at=bindparam("at"), last_error=None,
    claimed_by=bindparam("by"))


class Seal(Protocol):
    """Signs a message being queued: (token, its exp), or None to leave it for the sender."""

    def __call__(self, *, dest: str, type_: str, payload: dict[str, Any], case_id: str | None,
                 seq: int | None, jti: str, now: float) -> tuple[str, int] | None: ...


class OutboxRepo:
    def __init__(self, engine: AsyncEngine, *, seal: Seal | None = None) -> None:
        """`seal`: sign each message in the transaction that queues it, so its bytes are
        stored with it and the first delivery attempt needs no write of its own."""
        self._engine = engine
        self._seal = seal

    _cols = (outbox.c.id, outbox.c.jti, outbox.c.dest, outbox.c.type, outbox.c.case_id,
             outbox.c.seq, outbox.c.payload, outbox.c.state, outbox.c.token, outbox.c.token_exp,
             outbox.c.attempts, outbox.c.created_at, outbox.c.last_error, outbox.c.receipt,
             outbox.c.receipt_status, outbox.c.claimed_by)

    @staticmethod
    def _entry(row: Any) -> OutboxEntry:
        return OutboxEntry(row.id, row.jti, row.dest, row.type, row.case_id, row.seq,
                           json.loads(row.payload), row.state, row.token, row.token_exp,
                           row.attempts, row.created_at, row.last_error, row.receipt,
                           row.receipt_status, row.claimed_by)

    async def enqueue(self, conn: AsyncConnection, *, dest: str, type_: str,
                      case_id: str | None, payload: dict[str, Any], now: float) -> OutboxEntry:
        """Queue a message inside the caller's transaction; allocates the per-case `seq`."""
        seq: int | None = None
        if case_id is not None:
            seq = int((await conn.execute(_NEXT_SEQ[conn.dialect.name],
                                          {"case_id": case_id, "dest": dest})).scalar_one())
        jti = str(uuid.uuid4())
        sealed = (None if self._seal is None else
                  self._seal(dest=dest, type_=type_, payload=payload, case_id=case_id, seq=seq,
                             jti=jti, now=now))
        token, token_exp = sealed if sealed is not None else (None, None)
        encoded = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        result = await conn.execute(_INSERT_OUTBOX, {
            "jti": jti, "dest": dest, "type": type_, "case_id": case_id, "seq": seq,
            "payload": encoded, "state": OutboxState.PENDING, "attempts": 0,
            "created_at": now, "token": token, "token_exp": token_exp})
        row_id = result.scalar_one()
        return OutboxEntry(row_id, jti, dest, type_, case_id, seq, payload,
                           OutboxState.PENDING, token, token_exp, 0, now, None, None, None)

    async def get(self, row_id: int) -> OutboxEntry | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(*self._cols).where(outbox.c.id == row_id))).first()
        return None if row is None else self._entry(row)

    async def by_jti(self, jti: str) -> OutboxEntry | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(*self._cols).where(outbox.c.jti == jti))).first()
        return None if row is None else self._entry(row)

    async def list_entries(self, *, dest: str | None = None, state: str | None = None,
                           limit: int = 1000, after: int = 0) -> list[OutboxEntry]:
        """Oldest first, from the first id above `after` (keyset paging, so a listing of a
        long backlog never skips or repeats rows while it grows)."""
        query = select(*self._cols).where(outbox.c.id > after).order_by(outbox.c.id).limit(limit)
        if dest is not None:
            query = query.where(outbox.c.dest == dest)
        if state is not None:
            query = query.where(outbox.c.state == state)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [self._entry(r) for r in rows]

    async def pending_destinations(self) -> list[str]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(
                select(outbox.c.dest).where(outbox.c.state == OutboxState.PENDING).distinct()
            )).all()
        return [r.dest for r in rows]

    async def claim_for(self, dest: str, limit: int, after_id: int, *, owner: str,
                        lease: float, now: float) -> list[OutboxEntry]:
        """Pending messages to `dest` that no other process holds, now held by `owner`.

        PostgreSQL skips rows another process is claiming at this moment (SKIP LOCKED), so two
        processes never take the same message; a claim lapses after `lease` seconds, so the
        messages of a process that died are taken over.
        """
        free = or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now,
                   outbox.c.claimed_by == owner)
        # Order within a case: never take a message while an earlier one of its case is held
        # by another process.
        earlier = outbox.alias("earlier")
        held_before = select(earlier.c.id).where(and_(
            earlier.c.dest == outbox.c.dest, earlier.c.case_id == outbox.c.case_id,
            earlier.c.state == OutboxState.PENDING, earlier.c.id < outbox.c.id,
            earlier.c.claimed_by != owner, earlier.c.claimed_until >= now)).exists()
        query = (select(outbox.c.id)
                 .where(and_(outbox.c.dest == dest, outbox.c.state == OutboxState.PENDING,
                             outbox.c.id > after_id, free, ~held_before))
                 .order_by(outbox.c.id).limit(limit))
        async with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # One claimer per destination at a time (so the case-order check above sees
                # every committed claim), and rows being sent are skipped, not waited for.
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": _lock_key("outbox:" + dest)})
                query = query.with_for_update(skip_locked=True)
            # Choose, claim and read in one statement (it was three: a claim runs after every
            # wake of a busy destination).
            rows = (await conn.execute(
                update(outbox).where(outbox.c.id.in_(query))
                .values(claimed_by=owner, claimed_until=now + lease)
                .returning(*self._cols))).all()
        return sorted((self._entry(r) for r in rows), key=lambda e: e.id)

    async def release(self, owner: str) -> int:
        """Graceful shutdown: hand this process's undelivered messages back at once."""
        async with self._engine.begin() as conn:
            result = await conn.execute(update(outbox).where(and_(
                outbox.c.claimed_by == owner, outbox.c.state == OutboxState.PENDING))
                .values(claimed_by=None, claimed_until=None))
        return int(result.rowcount)

    async def pending_for(self, dest: str, limit: int, after_id: int = 0) -> list[OutboxEntry]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(
                select(*self._cols)
                .where(and_(outbox.c.dest == dest, outbox.c.state == OutboxState.PENDING,
                            outbox.c.id > after_id))
                .order_by(outbox.c.id).limit(limit)
            )).all()
        return [self._entry(r) for r in rows]

    async def count(self, state: str) -> int:
        async with self._engine.connect() as conn:
            return int((await conn.execute(
                select(func.count()).select_from(outbox).where(outbox.c.state == state)
            )).scalar_one())

    async def delivery_times(self, first_id: int) -> list[tuple[float, float]]:
        """(queued, delivered) times of delivered messages from `first_id` on."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(
                select(outbox.c.created_at, outbox.c.delivered_at)
                .where(and_(outbox.c.id >= first_id, outbox.c.state == OutboxState.DELIVERED))
            )).all()
        return [(r.created_at, r.delivered_at) for r in rows]

    async def count_from(self, dest: str, first_id: int, state: str) -> int:
        async with self._engine.connect() as conn:
            return int((await conn.execute(
                select(func.count()).select_from(outbox)
                .where(and_(outbox.c.dest == dest, outbox.c.state == state,
                            outbox.c.id >= first_id))
            )).scalar_one())

    @staticmethod
    async def set_tokens(conn: AsyncConnection, rows: list[SignedCopy]) -> None:
        await conn.execute(
            _SET_TOKENS,
            [{"row_id": r.row_id, "new_jti": r.jti, "new_token": r.token,
              "new_token_exp": r.token_exp} for r in rows])

    @staticmethod
    async def mark_delivered(conn: AsyncConnection, rows: list[Delivery]) -> None:
        await conn.execute(
            _MARK_DELIVERED,
            [{"row_id": r.row_id, "new_receipt": r.receipt, "new_status": r.status,
              "at": r.at, "by": r.by or None} for r in rows])
        await AuditRepo.append(conn, [AuditRecord(
            at=r.at, direction="out", peer=r.dest, jti=r.jti, type=r.type, case_id=r.case_id,
            token=r.token, receipt=r.receipt) for r in rows if r.token])

    @staticmethod
    async def mark_attempt_failed(conn: AsyncConnection, row_id: int, *, error: str,
                                  now: float, dead: bool) -> None:
        await conn.execute(update(outbox).where(outbox.c.id == row_id).values(
            attempts=outbox.c.attempts + 1, last_attempt_at=now, last_error=error[:2000],
            state=OutboxState.DEAD if dead else OutboxState.PENDING))

    async def retry_dead(self, *, now: float, row_id: int | None = None) -> int:
        """Put dead letters back in the queue (all of them when `row_id` is None)."""
        query = update(outbox).where(outbox.c.state == OutboxState.DEAD)
        if row_id is not None:
            query = query.where(outbox.c.id == row_id)
        async with self._engine.begin() as conn:
            # The retry horizon starts again from now; the old signed copy is dropped.
            result = await conn.execute(query.values(state=OutboxState.PENDING, token=None,
                                                     token_exp=None, created_at=now))
        return int(result.rowcount)


@dataclass(frozen=True)
class DestinationState:
    dest: str
    failures: int
    retry_at: float
    last_error: str | None


class DestinationRepo:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, dest: str) -> DestinationState:
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                select(destinations).where(destinations.c.dest == dest))).first()
        if row is None:
            return DestinationState(dest, 0, 0.0, None)
        return DestinationState(row.dest, row.failures, row.retry_at, row.last_error)

    async def _upsert(self, dest: str, **values: Any) -> None:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(destinations).where(destinations.c.dest == dest).values(**values))
            if result.rowcount == 0:
                await conn.execute(insert(destinations).values(dest=dest, **values))

    async def record_failure(self, dest: str, *, failures: int, retry_at: float,
                             error: str) -> None:
        await self._upsert(dest, failures=failures, retry_at=retry_at, last_error=error[:2000])

    async def record_success(self, dest: str, now: float) -> None:
        await self._upsert(dest, failures=0, retry_at=0.0, last_error=None, last_success_at=now)
