"""SQL for electronic certificates issued here and checks asked of other members."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.db.schema import cert_checks, certificates


@dataclass(frozen=True)
class IssuedCert:
    cert_id: str
    name: str
    holder_key: str
    status: str


@dataclass(frozen=True)
class CertCheck:
    request_id: str
    case_id: str
    material: str
    cert_id: str
    issuer: str
    status: str
    reason: str | None


class CertRepo:
    async def issue(self, conn: AsyncConnection, *, cert_id: str, name: str, holder_key: str,
                    case_id: str, now: float) -> bool:
        """False when the id is already taken (certificate ids are unique per issuer)."""
        exists = (await conn.execute(select(certificates.c.cert_id)
                                     .where(certificates.c.cert_id == cert_id))).first()
        if exists is not None:
            return False
        await conn.execute(insert(certificates).values(
            cert_id=cert_id, name=name, holder_key=holder_key, case_id=case_id, status="valid",
            issued_at=now))
        return True

    async def issued(self, conn: AsyncConnection, cert_id: str) -> IssuedCert | None:
        row = (await conn.execute(select(certificates)
                                  .where(certificates.c.cert_id == cert_id))).first()
        return None if row is None else IssuedCert(row.cert_id, row.name, row.holder_key,
                                                   row.status)

    async def add_check(self, conn: AsyncConnection, check: CertCheck, now: float) -> None:
        await conn.execute(insert(cert_checks).values(
            request_id=check.request_id, case_id=check.case_id, material=check.material,
            cert_id=check.cert_id, issuer=check.issuer, status=check.status,
            reason=check.reason, requested_at=now))

    async def check(self, conn: AsyncConnection, request_id: str) -> CertCheck | None:
        row = (await conn.execute(select(cert_checks)
                                  .where(cert_checks.c.request_id == request_id))).first()
        if row is None:
            return None
        return CertCheck(row.request_id, row.case_id, row.material, row.cert_id, row.issuer,
                         row.status, row.reason)

    async def answer(self, conn: AsyncConnection, request_id: str, *, status: str,
                     reason: str, now: float) -> None:
        await conn.execute(update(cert_checks).where(cert_checks.c.request_id == request_id)
                           .values(status=status, reason=reason, answered_at=now))
