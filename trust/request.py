"""Request tokens (`tongban-req+jwt`, PROTOCOL.md §5): a signed, single-use HTTP authorization.

A request token binds one HTTP request (method `htm` and target URL `htu`, as in DPoP,
RFC 9449) to a member, for at most 300 s. Verification is split like messages so the caller
can follow the §4 check order: `parse_request` refuses anything structurally wrong (alg, typ,
kid) before a key is touched; the caller selects the key by (`iss`, `kid`) from its registry;
`verify_request` then checks signature, audience and lifetime; `check_binding` checks that the
token was made for this very request. Replay (`jti`) needs storage and is the caller's job.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from trust import jws
from trust.errors import ErrorCode, VerificationError
from trust.keyring import VerifyingKey
from trust.keys import SigningKey

MAX_LIFETIME = 300
MAX_JTI_LENGTH = 128
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class RequestClaims:
    iss: str
    aud: str
    jti: str
    iat: int
    exp: int
    htm: str
    htu: str


def normalize_htu(url: str) -> str:
    """The form `htu` is compared in: scheme and host lower-cased, default port, query and
    fragment dropped (RFC 9449 §4.3), path kept exactly as written."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise VerificationError("htu is not a URL", code=ErrorCode.MALFORMED) from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if not scheme or not host:
        raise VerificationError("htu must be an absolute URL", code=ErrorCode.MALFORMED)
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", "", ""))


def sign_request(key: SigningKey, *, iss: str, aud: str, htm: str, htu: str, now: float,
                 ttl: int = MAX_LIFETIME, jti: str | None = None) -> str:
    """A fresh request token for one `htm` request to `htu`, valid for `ttl` seconds."""
    if not 0 < ttl <= MAX_LIFETIME:
        raise ValueError(f"ttl must be in 1..{MAX_LIFETIME}")
    iat = int(now)
    claims: dict[str, Any] = {
        "iss": iss, "aud": aud, "iat": iat, "exp": iat + ttl,
        "jti": jti if jti is not None else str(uuid.uuid4()),
        "htm": htm, "htu": htu,
    }
    return jws.sign(claims, key, jws.TokenType.REQUEST)


def parse_request(token: str | bytes) -> jws.ParsedToken:
    """Parse; refuse a wrong `alg` (before any key is used), a wrong `typ` or a missing `kid`."""
    return jws.parse(token, jws.TokenType.REQUEST)


def verify_request(parsed: jws.ParsedToken, key: VerifyingKey, *, audience: str, now: float,
                   max_skew: int) -> RequestClaims:
    """Signature with the caller's key (chosen by `iss`, `kid`), then `aud`, then lifetime."""
    if key.member_id != parsed.iss:
        raise VerificationError(f"key {key.kid} does not belong to {parsed.iss}",
                                code=ErrorCode.UNKNOWN_KEY)
    jws.verify_signature(parsed, key)
    claims = parsed.claims
    if claims.get("aud") != audience:
        raise VerificationError("request token is addressed to another member",
                                code=ErrorCode.WRONG_AUDIENCE)
    iat, exp = jws.check_lifetime(claims, now, max_skew=max_skew, max_lifetime=MAX_LIFETIME)
    jti = jws.require_str(claims, "jti")
    if len(jti) > MAX_JTI_LENGTH:
        raise VerificationError(f"jti longer than {MAX_JTI_LENGTH} characters",
                                code=ErrorCode.MALFORMED)
    htm, htu = jws.require_str(claims, "htm"), jws.require_str(claims, "htu")
    return RequestClaims(iss=parsed.iss, aud=audience, jti=jti, iat=iat, exp=exp, htm=htm,
                         htu=htu)


def check_binding(claims: RequestClaims, *, method: str, url: str) -> None:
    """The token must have been made for this method and this URL (`wrong-audience` if not)."""
    if claims.htm != method:
        raise VerificationError(f"request token is not for method {method}",
                                code=ErrorCode.WRONG_AUDIENCE)
    if normalize_htu(claims.htu) != normalize_htu(url):
        raise VerificationError("request token is for another URL", code=ErrorCode.WRONG_AUDIENCE)
