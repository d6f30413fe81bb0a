"""The home side of single sign-on: the applicant's own login, and hand-offs to partners.

The home gateway accepts its region's login, from its identity provider (an OIDC ID token,
`gateway/sso/oidc.py`) or, for the local demo, from its own small password login with an
assurance level per account. It then issues a federation token (`tongban-sso+jwt`) for one
named partner at a time, and remembers where it sent the session, so that logging out at home
ends the derived sessions everywhere (`sso.logout`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.auth_repo import AuthRepo, Session
from gateway.db.repos import OutboxRepo
from gateway.db.sso_repo import SsoRepo
from gateway.federation.outbox import enqueue
from gateway.keystore import Signer
from gateway.registry_client import RegistryHolder
from registry.document import Role
from trust import credentials, sso
from trust.clock import Clock
from trust.errors import ErrorCode, TongbanError

log = logging.getLogger(__name__)


class LoginFailed(TongbanError):
    code = ErrorCode.UNAUTHENTICATED


@functools.cache
def _dummy_hash() -> str:
    return credentials.hash_password("timing-equaliser")


class HomeSignOn:
    def __init__(self, *, member_id: str, engine: AsyncEngine, signer: Signer,
                 holder: RegistryHolder, sso_repo: SsoRepo, auth_repo: AuthRepo,
                 outbox: OutboxRepo, applicant_key: Callable[[str], str], clock: Clock,
                 subject_secret: bytes, session_ttl: int, send_idn: bool,
                 notify: Callable[[str | None], None]) -> None:
        self._me = member_id
        self._engine = engine
        self._signer = signer
        self._holder = holder
        self._sso = sso_repo
        self._auth = auth_repo
        self._outbox = outbox
        self._applicant_key = applicant_key
        self._clock = clock
        self._secret = subject_secret
        self._ttl = session_ttl
        self._send_idn = send_idn
        self._notify = notify

    async def login_local(self, id_number: str, password: str) -> tuple[str, Session]:
        account = await self._sso.account(self._applicant_key(id_number.strip().upper()))
        stored = account.password_hash if account else _dummy_hash()
        ok = await asyncio.to_thread(credentials.verify_password, password, stored)
        if account is None or not ok:
            raise LoginFailed("wrong ID number or password")
        return await self.open_session(id_number=account.id_number, name=account.name,
                                       loa=account.loa)

    async def open_session(self, *, id_number: str, name: str, loa: str,
                           client_id: str | None = None) -> tuple[str, Session]:
        """A home session: what the applicant's own login (any identity provider) becomes."""
        token = credentials.new_token()
        now = self._clock()
        session = Session(kind="applicant", subject=self._applicant_key(id_number), role=None,
                          name=name, loa=loa, sid=f"{self._me}:{uuid.uuid4()}",
                          client_id=client_id, expires_at=now + self._ttl, idn=id_number)
        await self._auth.create_session(token_hash=credentials.token_hash(token),
                                        session=session, now=now)
        return token, session

    async def handoff(self, session: Session, target: str) -> str:
        """A federation token that signs this applicant in at `target` (one use, 2 minutes)."""
        if session.kind != "applicant" or not session.idn or not session.sid:
            raise TongbanError("only an applicant signed in here can be handed on",
                               code=ErrorCode.FORBIDDEN)
        if not session.sid.startswith(self._me + ":"):
            raise TongbanError("a session that came from another member's sign-on cannot be "
                               "handed on again", code=ErrorCode.FORBIDDEN)
        snapshot = self._holder.require_fresh()
        member = snapshot.member(target)
        if member is None or not member.is_active or target == self._me:
            raise TongbanError(f"{target} is not an active partner member",
                               code=ErrorCode.INVALID_BODY)
        me = snapshot.member(self._me)
        if me is None or not me.has_role(Role.SSO_ISSUER):
            raise TongbanError("this member has no sso-issuer role in the registry",
                               code=ErrorCode.FORBIDDEN)
        local_sid = session.sid.split(":", 2)[-1]
        token, _ = sso.issue(self._signer.current(snapshot), iss=self._me, aud=target,
                             sub=sso.pairwise_sub(self._secret, target, session.idn),
                             loa=session.loa or "L2", name=session.name or "",
                             sid=local_sid, now=self._clock(),
                             idn=session.idn if self._send_idn else None)
        await self._sso.record_handoff(session.sid, target, self._clock())
        return token

    async def logout(self, token: str) -> int:
        """End the home session and, by `sso.logout`, every session derived from it."""
        session = await self._auth.session(credentials.token_hash(token), self._clock())
        await self._auth.logout_token(credentials.token_hash(token))
        if session is None or not session.sid or not session.sid.startswith(self._me + ":"):
            return 0
        targets = await self._sso.take_handoffs(session.sid)
        local_sid = session.sid.split(":", 2)[-1]
        async with self._engine.begin() as conn:
            for target in targets:
                await enqueue(conn, self._outbox, dest=target, type_="sso.logout",
                              body={"sid": local_sid}, now=self._clock())
        for target in targets:
            self._notify(target)
        await self._auth.end_sid(session.sid)
        return len(targets)
