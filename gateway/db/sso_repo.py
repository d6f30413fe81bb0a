"""SQL for single sign-on: used token ids, hand-offs to other members, local IdP accounts."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.auth_repo import Session
from gateway.db.schema import applicant_accounts, sessions, sso_handoffs, sso_jtis


@dataclass(frozen=True)
class Account:
    applicant_key: str
    id_number: str
    name: str
    loa: str
    password_hash: str


class SsoRepo:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def redeem(self, *, iss: str, jti: str, exp: int, token_hash: str, session: Session,
                     now: float) -> bool:
        """Use up a federation token and open its session, in one transaction.

        False when the token was used before: nothing is created then.
        """
        try:
            async with self._engine.begin() as conn:
                await conn.execute(delete(sso_jtis).where(sso_jtis.c.exp < now - 600))
                await conn.execute(insert(sso_jtis).values(iss=iss, jti=jti, exp=exp))
                await conn.execute(insert(sessions).values(
                    token_hash=token_hash, kind=session.kind, subject=session.subject,
                    role=session.role, name=session.name, loa=session.loa, sid=session.sid,
                    client_id=session.client_id, idn=session.idn,
                    expires_at=session.expires_at, created_at=now))
        except IntegrityError:
            return False
        return True

    async def record_handoff(self, sid: str, target: str, now: float) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(sso_handoffs).values(sid=sid, target=target, at=now))
        except IntegrityError:
            pass  # already handed to that member in this session

    async def take_handoffs(self, sid: str) -> list[str]:
        async with self._engine.begin() as conn:
            rows = (await conn.execute(select(sso_handoffs.c.target)
                                       .where(sso_handoffs.c.sid == sid))).all()
            await conn.execute(delete(sso_handoffs).where(sso_handoffs.c.sid == sid))
        return [r.target for r in rows]

    async def add_account(self, account: Account, now: float) -> bool:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(applicant_accounts).values(
                    applicant_key=account.applicant_key, id_number=account.id_number,
                    name=account.name, loa=account.loa, password_hash=account.password_hash,
                    created_at=now))
        except IntegrityError:
            return False
        return True

    async def account(self, applicant_key: str) -> Account | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(applicant_accounts).where(
                applicant_accounts.c.applicant_key == applicant_key))).first()
        if row is None:
            return None
        return Account(row.applicant_key, row.id_number, row.name, row.loa, row.password_hash)
