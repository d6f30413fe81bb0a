"""Who may call the portal and window API, and who may see which case.

Three kinds of caller (issue: every call is authenticated): a home portal system with its own
client credentials, a clerk with a login and a role, an applicant with a session token derived
from their login at the home portal (or, later, from single sign-on). An applicant sees only
their own cases; a clerk only cases this member holds; anonymous callers only one case, with
its query password (查询密码).
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass

from gateway.cases.model import Case
from gateway.cases.service import Actor, Forbidden
from gateway.db.auth_repo import AuthRepo, Session
from trust import credentials
from trust.clock import Clock
from trust.errors import ErrorCode, TongbanError

# window: receiving window; handler: handling officer; admin: the member admin (outbox, dead
# letters, keys); auditor: reads only; alliance-admin: suspends and reinstates members, on the
# operator's gateway only (see gateway.console); supervisor: reserved.
ROLES = ("window", "handler", "admin", "auditor", "alliance-admin", "supervisor")


class Unauthenticated(TongbanError):
    code = ErrorCode.UNAUTHENTICATED


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int


class Authenticator:
    def __init__(self, *, repo: AuthRepo, clients: dict[str, str], clock: Clock,
                 session_ttl: int, applicant_key: object) -> None:
        self._repo = repo
        self._clients = clients  # client id -> secret
        self._clock = clock
        self._ttl = session_ttl
        self._applicant_key = applicant_key

    def client(self, client_id: str, secret: str) -> Actor:
        expected = self._clients.get(client_id)
        # Compare even for an unknown id, so timing does not tell which ids exist.
        if not credentials.same_secret(secret, expected or "\x00" * 32) or expected is None:
            raise Unauthenticated("unknown client or wrong secret")
        return Actor(kind="portal", subject=client_id)

    async def login(self, username: str, password: str) -> tuple[IssuedToken, str]:
        clerk = await self._repo.clerk(username)
        stored = clerk.password_hash if clerk else _dummy_hash()
        # scrypt takes a third of a second on purpose: never on the event loop.
        ok = await asyncio.to_thread(credentials.verify_password, password, stored)
        if clerk is None or not ok or clerk.disabled:
            raise Unauthenticated("wrong username or password")
        token = await self._issue(Session(kind="clerk", subject=clerk.username,
                                          role=clerk.role, name=clerk.name, loa=None, sid=None,
                                          client_id=None, expires_at=0))
        return token, clerk.role

    async def applicant_session(self, *, applicant_key: str, name: str, loa: str,
                                client_id: str | None, sid: str | None = None) -> IssuedToken:
        return await self._issue(Session(kind="applicant", subject=applicant_key, role=None,
                                         name=name, loa=loa, sid=sid, client_id=client_id,
                                         expires_at=0))

    async def _issue(self, session: Session) -> IssuedToken:
        token = credentials.new_token()
        now = self._clock()
        stored = Session(**{**session.__dict__, "expires_at": now + self._ttl})
        await self._repo.create_session(token_hash=credentials.token_hash(token),
                                        session=stored, now=now)
        return IssuedToken(token, self._ttl)

    async def bearer(self, token: str) -> Actor:
        session = await self._repo.session(credentials.token_hash(token), self._clock())
        if session is None:
            raise Unauthenticated("the token is unknown or expired; log in again")
        if session.kind == "clerk":
            return Actor(kind="clerk", subject=session.subject, role=session.role,
                         name=session.name)
        return Actor(kind="applicant", subject=session.subject, loa=session.loa,
                     applicant_key=session.subject, name=session.name)

    async def logout(self, token: str) -> None:
        await self._repo.end_session(credentials.token_hash(token))


@functools.cache
def _dummy_hash() -> str:
    """Checked for unknown usernames, so a wrong name costs as much as a wrong password."""
    return credentials.hash_password("timing-equaliser")


def require_role(actor: Actor | None, *roles: str) -> Actor:
    if actor is None:
        raise Unauthenticated("log in first (Authorization: Bearer <token>)")
    if actor.kind != "clerk" or actor.role not in roles:
        raise Forbidden(f"this needs a clerk with role {' or '.join(roles)}")
    return actor


def require_caller(actor: Actor | None, *kinds: str) -> Actor:
    if actor is None:
        raise Unauthenticated("authentication required")
    if actor.kind not in kinds:
        raise Forbidden(f"this is for {' or '.join(kinds)} callers")
    return actor


def can_see(actor: Actor | None, case_: Case, query_ok: bool) -> bool:
    if query_ok:
        return True
    if actor is None:
        return False
    if actor.kind == "clerk":
        return True  # every case in this gateway's database is this member's case
    if actor.kind == "applicant":
        return actor.applicant_key == case_.applicant_key
    if actor.kind == "portal":
        return case_.portal_client == actor.subject
    return False
