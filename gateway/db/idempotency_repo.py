"""Idempotency-Key records: which case a caller's keyed request filed, kept for a day.

The record is written in the transaction that files the case, so either both exist or
neither does; a reply lost after the commit can then be repeated by looking the key up. The
primary key (caller, key) makes a second, concurrent insert fail with an IntegrityError (also
between gateway processes sharing the database), which rolls the loser's case back.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, bindparam, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.db.schema import idempotency_keys

_t = idempotency_keys
_INSERT = insert(_t)
_GET = select(_t.c.fingerprint, _t.c.case_id, _t.c.status, _t.c.created_at).where(
    and_(_t.c.caller == bindparam("k_caller"), _t.c.key == bindparam("k_key")))


@dataclass(frozen=True)
class IdempotencyRecord:
    fingerprint: str
    case_id: str
    status: int
    created_at: float


class IdempotencyRepo:
    async def get(self, conn: AsyncConnection, *, caller: str,
                  key: str) -> IdempotencyRecord | None:
        row = (await conn.execute(_GET, {"k_caller": caller, "k_key": key})).first()
        if row is None:
            return None
        return IdempotencyRecord(row.fingerprint, row.case_id, row.status, row.created_at)

    async def record(self, conn: AsyncConnection, *, caller: str, key: str, fingerprint: str,
                     case_id: str, status: int, now: float) -> None:
        """Raises IntegrityError when the caller already used `key` (a concurrent retry)."""
        await conn.execute(_INSERT, {"caller": caller, "key": key, "fingerprint": fingerprint,
                                     "case_id": case_id, "status": status, "created_at": now})

    async def sweep(self, conn: AsyncConnection, *, before: float) -> int:
        result = await conn.execute(delete(_t).where(_t.c.created_at < before))
        return int(result.rowcount or 0)
