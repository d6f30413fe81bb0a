"""SQL for the hash-chained audit trail. Appends happen inside the transaction that stores or
delivers the message, so the trail holds exactly what happened."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.db.schema import audit_log
from trust.audit import GENESIS, AuditEntry, chain_hash


@dataclass(frozen=True)
class AuditRecord:
    """What to append: the chain fields are computed here."""

    at: float
    direction: str
    peer: str
    jti: str
    type: str
    case_id: str | None
    token: str
    receipt: str


# Built once: this runs for every message in and out (see case_repo for the cost).
_TIP = select(audit_log.c.entry_hash).order_by(audit_log.c.seq.desc()).limit(1)
_INSERT = insert(audit_log)
_LOCK = text("SELECT pg_advisory_xact_lock(7306195)")


_TIP_KEY = "tongban_audit_tip"
_DEFERRED_KEY = "tongban_audit_deferred"


def _transaction(conn: AsyncConnection) -> object | None:
    return conn.sync_connection.get_transaction() if conn.sync_connection else None


class AuditRepo:
    @staticmethod
    def defer(conn: AsyncConnection) -> None:
        """Collect this transaction's appends and write them in one INSERT at `flush`.

        The group committer runs many messages in one transaction; appended one by one, each
        cost its own INSERT (on PostgreSQL a round trip), and the first took the chain's lock
        early and held it while the rest of the batch ran. The records keep their order, and
        `flush` runs before the commit, so the trail still holds exactly what the transaction
        stored.
        """
        conn.info[_DEFERRED_KEY] = (_transaction(conn), [])

    @staticmethod
    async def flush(conn: AsyncConnection) -> None:
        deferred = conn.info.pop(_DEFERRED_KEY, None)
        if deferred is not None and deferred[0] is _transaction(conn) and deferred[1]:
            await AuditRepo._write(conn, deferred[1])

    @staticmethod
    async def append(conn: AsyncConnection, records: Sequence[AuditRecord]) -> None:
        if not records:
            return
        deferred = conn.info.get(_DEFERRED_KEY)
        if deferred is not None and deferred[0] is not None and \
                deferred[0] is _transaction(conn):
            deferred[1].extend(records)
            return
        await AuditRepo._write(conn, records)

    @staticmethod
    async def _write(conn: AsyncConnection, records: Sequence[AuditRecord]) -> None:
        # A group commit appends for many messages in one transaction: the tip this
        # transaction wrote last is the chain's tip (the lock below, or SQLite's single writer,
        # keeps others out until it ends), so only its first append reads it (and locks). The
        # cache is keyed by the transaction object, so a rolled-back or later transaction on
        # the same pooled connection reads the tip again.
        transaction = _transaction(conn)
        cached = conn.info.get(_TIP_KEY)
        if transaction is not None and cached is not None and cached[0] is transaction:
            prev = cached[1]
        else:
            if conn.dialect.name == "postgresql":
                # One appender at a time across processes: the chain has one tip.
                await conn.execute(_LOCK)
            last = (await conn.execute(_TIP)).scalar()
            prev = str(last) if last is not None else GENESIS
        rows = []
        for r in records:
            entry = AuditEntry(at=r.at, direction=r.direction, peer=r.peer, jti=r.jti,
                               type=r.type, case_id=r.case_id, token=r.token,
                               receipt=r.receipt, prev_hash=prev, entry_hash="")
            digest = chain_hash(entry)
            rows.append({**entry.fields(), "prev_hash": prev, "entry_hash": digest})
            prev = digest
        await conn.execute(_INSERT, rows)
        conn.info[_TIP_KEY] = (transaction, prev) if transaction is not None else None

    @staticmethod
    async def export(engine: AsyncEngine) -> list[AuditEntry]:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(audit_log).order_by(audit_log.c.seq))).all()
        return [AuditEntry(seq=r.seq, at=r.at, direction=r.direction, peer=r.peer, jti=r.jti,
                           type=r.type, case_id=r.case_id, token=r.token, receipt=r.receipt,
                           prev_hash=r.prev_hash, entry_hash=r.entry_hash) for r in rows]
