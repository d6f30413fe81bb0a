"""SQL for clerks, bearer sessions and the gateway's own generated secrets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.db.schema import clerks, gateway_secrets, sessions


@dataclass(frozen=True)
class Clerk:
    username: str
    name: str
    role: str
    password_hash: str
    disabled: bool


@dataclass(frozen=True)
class Session:
    kind: str  # clerk | applicant
    subject: str
    role: str | None
    name: str | None
    loa: str | None
    sid: str | None
    client_id: str | None
    expires_at: float
    idn: str | None = None


class AuthRepo:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add_clerk(self, *, username: str, name: str, role: str, password_hash: str,
                        now: float) -> bool:
        """False when the username is taken."""
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(clerks).values(
                    username=username, name=name, role=role, password_hash=password_hash,
                    disabled=0, created_at=now))
        except IntegrityError:
            return False
        return True

    async def clerk(self, username: str) -> Clerk | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(clerks).where(clerks.c.username == username))
                   ).first()
        if row is None:
            return None
        return Clerk(row.username, row.name, row.role, row.password_hash, bool(row.disabled))

    async def clerks(self) -> list[Clerk]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(clerks).order_by(clerks.c.username))).all()
        return [Clerk(r.username, r.name, r.role, r.password_hash, bool(r.disabled))
                for r in rows]

    async def set_disabled(self, username: str, disabled: bool) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(update(clerks).where(clerks.c.username == username)
                                        .values(disabled=int(disabled)))
            if disabled:
                await conn.execute(delete(sessions).where(
                    (sessions.c.kind == "clerk") & (sessions.c.subject == username)))
        return bool(result.rowcount)

    async def create_session(self, *, token_hash: str, session: Session, now: float) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(delete(sessions).where(sessions.c.expires_at < now))
            await conn.execute(insert(sessions).values(
                token_hash=token_hash, kind=session.kind, subject=session.subject,
                role=session.role, name=session.name, loa=session.loa, sid=session.sid,
                client_id=session.client_id, idn=session.idn, expires_at=session.expires_at,
                created_at=now))

    async def session(self, token_hash: str, now: float) -> Session | None:
        async with self._engine.connect() as conn:
            row: Any = (await conn.execute(select(sessions).where(
                sessions.c.token_hash == token_hash))).first()
        if row is None or row.expires_at <= now:
            return None
        return Session(row.kind, row.subject, row.role, row.name, row.loa, row.sid,
                       row.client_id, row.expires_at, row.idn)

    async def logout_token(self, token_hash: str) -> None:
        await self.end_session(token_hash)

    async def end_session(self, token_hash: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(delete(sessions).where(sessions.c.token_hash == token_hash))

    async def end_sid(self, sid: str) -> int:
        """Ends every session derived from one SSO session id (PROTOCOL.md §6 logout)."""
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(sessions).where(sessions.c.sid == sid))
        return int(result.rowcount)

    @staticmethod
    async def end_sid_in(conn: AsyncConnection, sid: str) -> int:
        """As `end_sid`, inside the caller's transaction (an inbound sso.logout)."""
        result = await conn.execute(delete(sessions).where(sessions.c.sid == sid))
        return int(result.rowcount)

    async def secret(self, name: str, make: str) -> str:
        """The stored secret `name`, storing `make` first if there is none yet.

        Two processes of one member starting at once may both try to store theirs: the loser
        reads the winner's, so every process of a member uses the same secret.
        """
        query = select(gateway_secrets.c.value).where(gateway_secrets.c.name == name)
        async with self._engine.connect() as conn:
            value = (await conn.execute(query)).scalar()
        if value is not None:
            return str(value)
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(gateway_secrets).values(name=name, value=make))
            return make
        except IntegrityError:
            async with self._engine.connect() as conn:
                return str((await conn.execute(query)).scalar_one())
