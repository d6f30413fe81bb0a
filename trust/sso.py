"""Federation SSO tokens (PROTOCOL.md §6): issuing at the home member, checking at the target.

Kept in `trust/` with the other signatures. The pairwise subject is an HMAC of the ID number
under the issuer's secret *and the target's member id*, so two members that receive tokens
for the same person get different `sub` values and cannot correlate them (RFC 8693 leaves the
subject's form to the issuer; OpenID Connect calls this a pairwise identifier).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from typing import Any

from trust import jws
from trust.errors import ErrorCode, VerificationError
from trust.keyring import VerifyingKey
from trust.keys import SigningKey

MAX_LIFETIME = 300
LOA_LEVELS = ("L2", "L3", "L4", "L5")


def pairwise_sub(secret: bytes, target: str, id_number: str) -> str:
    mac = hmac.new(secret, f"{target}\x00{id_number}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class SsoClaims:
    iss: str
    aud: str
    sub: str
    iat: int
    exp: int
    jti: str
    loa: str
    name: str
    sid: str
    idn: str | None = None


def issue(key: SigningKey, *, iss: str, aud: str, sub: str, loa: str, name: str, sid: str,
          now: float, idn: str | None = None, ttl: int = 120) -> tuple[str, SsoClaims]:
    iat = int(now)
    claims = SsoClaims(iss=iss, aud=aud, sub=sub, iat=iat, exp=iat + min(ttl, MAX_LIFETIME),
                       jti=str(uuid.uuid4()), loa=loa, name=name, sid=sid, idn=idn)
    payload: dict[str, Any] = {k: v for k, v in claims.__dict__.items() if v is not None}
    return jws.sign(payload, key, jws.TokenType.SSO), claims


def parse(token: str) -> jws.ParsedToken:
    """Structure, alg and typ (a message JWS presented as an SSO token is refused here)."""
    return jws.parse(token, jws.TokenType.SSO)


def verify(parsed: jws.ParsedToken, key: VerifyingKey, *, audience: str, now: float,
           max_skew: int = 60) -> SsoClaims:
    jws.verify_signature(parsed, key)
    claims = parsed.claims
    if claims.get("aud") != audience:
        raise VerificationError("token is for another member", code=ErrorCode.WRONG_AUDIENCE)
    iat, exp = jws.check_lifetime(claims, now, max_skew=max_skew, max_lifetime=MAX_LIFETIME)
    loa = jws.require_str(claims, "loa")
    if loa not in LOA_LEVELS:
        raise VerificationError(f"loa {loa!r} is not one of {', '.join(LOA_LEVELS)}",
                                code=ErrorCode.MALFORMED)
    idn = claims.get("idn")
    if idn is not None and not isinstance(idn, str):
        raise VerificationError("claim 'idn' must be a string", code=ErrorCode.MALFORMED)
    return SsoClaims(iss=parsed.iss, aud=audience, sub=jws.require_str(claims, "sub"), iat=iat,
                     exp=exp, jti=jws.require_str(claims, "jti"), loa=loa,
                     name=str(claims.get("name") or ""), sid=jws.require_str(claims, "sid"),
                     idn=idn)
