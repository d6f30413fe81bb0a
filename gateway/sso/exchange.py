"""The target side of single sign-on: RFC 8693 token exchange at `/sso/v1/token`.

A federation token from another member's home gateway becomes a short-lived local session
bound to the applicant. Every check of PROTOCOL.md §6 runs before anything is stored; the
token's `jti` is used up in the same transaction that opens the session, so a token can open
exactly one session however often it is replayed. Errors are RFC 6749 error objects, never a
problem document (§6), and never echo the token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gateway.db.auth_repo import Session
from gateway.db.sso_repo import SsoRepo
from gateway.registry_client import RegistryHolder
from registry.catalog import Catalog
from registry.document import Role
from trust import credentials, sso
from trust.clock import Clock
from trust.errors import RegistryError, TongbanError
from trust.keyring import Keyring

log = logging.getLogger(__name__)

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a URN


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: `error` is the code, `description` is safe to show."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class ExchangeResult:
    access_token: str
    expires_in: int
    session: Session


class TokenExchange:
    def __init__(self, *, member_id: str, holder: RegistryHolder, repo: SsoRepo,
                 applicant_key: object, clock: Clock, catalog: Catalog | None = None,
                 session_ttl: int = 900, max_skew: int = 60) -> None:
        self._me = member_id
        self._catalog = catalog
        self._holder = holder
        self._repo = repo
        self._applicant_key = applicant_key
        self._clock = clock
        self._ttl = session_ttl
        self._skew = max_skew

    async def exchange_form(self, form: dict[str, str]) -> ExchangeResult:
        """The RFC 8693 request parameters, as posted."""
        grant = form.get("grant_type", "")
        if grant != GRANT_TYPE:
            raise OAuthError("unsupported_grant_type", f"grant_type must be {GRANT_TYPE}")
        token = form.get("subject_token", "")
        if not token:
            raise OAuthError("invalid_request", "subject_token is required")
        if form.get("subject_token_type") != JWT_TYPE:
            raise OAuthError("invalid_request", f"subject_token_type must be {JWT_TYPE}")
        scope = form.get("scope", "").split()
        return await self.exchange(token, scope=scope)

    async def exchange(self, token: str, *, scope: list[str] | None = None) -> ExchangeResult:
        """`scope`: item codes the applicant came for; one whose minimum assurance level the
        sign-on does not reach refuses the exchange (`invalid_scope`), before any session."""
        try:
            return await self._exchange(token, scope or [])
        except OAuthError as exc:
            log.info("sign-on refused: %s (%s)", exc.error, exc.description)
            raise

    def _check_scope(self, scope: list[str], loa: str) -> None:
        for code in scope:
            item = self._catalog.get(code) if self._catalog is not None else None
            if item is None:
                raise OAuthError("invalid_scope", f"{code} is not an item of the catalog")
            if not item.min_loa.satisfied_by(loa):
                raise OAuthError("invalid_scope", f"{item.code} {item.name} requires identity "
                                                  f"assurance {item.min_loa.value}; this "
                                                  f"sign-on is {loa}")

    async def _exchange(self, token: str, scope: list[str]) -> ExchangeResult:
        try:
            parsed = sso.parse(token)
            iss = parsed.iss
        except TongbanError as exc:
            raise OAuthError("invalid_grant", exc.detail) from None
        try:
            snapshot = self._holder.require_fresh()
        except RegistryError:
            raise OAuthError("temporarily_unavailable",
                             "the trust registry is stale; try again later", 503) from None
        if snapshot.get_key(iss, parsed.kid) is None and await self._holder.refresh_soon():
            snapshot = self._holder.require_fresh()
        issuer = snapshot.member(iss)
        if issuer is None:
            raise OAuthError("invalid_grant", f"{iss} is not a member of the alliance")
        if not issuer.is_active:
            raise OAuthError("invalid_grant", f"{iss} is {issuer.status.value}")
        if not issuer.has_role(Role.SSO_ISSUER):
            raise OAuthError("invalid_grant", f"{iss} may not issue sign-on tokens "
                                              "(no sso-issuer role)")
        now = self._clock()
        try:
            key = Keyring([snapshot]).lookup(iss, parsed.kid, now)
            claims = sso.verify(parsed, key, audience=self._me, now=now, max_skew=self._skew)
        except TongbanError as exc:
            raise OAuthError("invalid_grant", exc.detail) from None
        self._check_scope(scope, claims.loa)
        if claims.idn is not None:
            subject = self._applicant_key(claims.idn)  # type: ignore[operator]
        else:
            subject = f"sso:{claims.iss}:{claims.sub}"
        access = credentials.new_token()
        session = Session(kind="applicant", subject=str(subject), role=None, name=claims.name,
                          loa=claims.loa, sid=f"{claims.iss}:{claims.sid}", client_id=None,
                          expires_at=now + self._ttl, idn=claims.idn)
        if not await self._repo.redeem(iss=claims.iss, jti=claims.jti, exp=claims.exp,
                                       token_hash=credentials.token_hash(access),
                                       session=session, now=now):
            raise OAuthError("invalid_grant", "this sign-on token was already used")
        log.info("sso session opened for an applicant from %s (loa %s)", claims.iss, claims.loa)
        return ExchangeResult(access, self._ttl, session)
