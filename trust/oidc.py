"""Checking an OpenID Connect ID token from the region's identity provider.

The provider's keys arrive as a JWK Set fetched by the caller (the gateway's own HTTP client;
PyJWT's `PyJWKClient` would fetch with blocking urllib). Only asymmetric algorithms are
accepted and the algorithm comes from the key, so an `HS256` token keyed with a public key, or
`none`, never verifies (RFC 8725 §3.1, §3.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jwt

from trust.errors import ErrorCode, VerificationError

ASYMMETRIC = ("RS256", "PS256", "ES256", "EdDSA")


def key_id(token: str) -> str | None:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise VerificationError("not a JWT", code=ErrorCode.MALFORMED) from None
    kid = header.get("kid")
    return kid if isinstance(kid, str) else None


def verify_id_token(token: str, jwks: Mapping[str, Any], *, issuer: str, audience: str,
                    now: float, leeway: int = 60) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise VerificationError("not a JWT", code=ErrorCode.MALFORMED) from None
    alg = header.get("alg")
    if alg not in ASYMMETRIC:
        raise VerificationError(f"algorithm {alg!r} not accepted", code=ErrorCode.BAD_SIGNATURE)
    kid = header.get("kid")
    candidates = [k for k in jwks.get("keys", []) if isinstance(k, dict)
                  and (kid is None or k.get("kid") == kid)]
    if not candidates:
        raise VerificationError("the provider lists no such key", code=ErrorCode.UNKNOWN_KEY)
    try:
        key = jwt.PyJWK(candidates[0])
    except jwt.PyJWTError:
        raise VerificationError("the provider's key is unusable",
                                code=ErrorCode.UNKNOWN_KEY) from None
    if key.algorithm_name != alg:
        raise VerificationError("the token's algorithm does not match the key",
                                code=ErrorCode.BAD_SIGNATURE)
    try:
        claims: dict[str, Any] = jwt.decode(
            token, key=key.key, algorithms=[alg], audience=audience, issuer=issuer,
            leeway=leeway, options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise VerificationError("the ID token has expired", code=ErrorCode.EXPIRED) from None
    except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
        raise VerificationError("the ID token is for another client or from another issuer",
                                code=ErrorCode.WRONG_AUDIENCE) from None
    except jwt.PyJWTError as exc:
        raise VerificationError(f"the ID token does not verify: {type(exc).__name__}",
                                code=ErrorCode.BAD_SIGNATURE) from None
    if claims.get("iat", 0) > now + leeway:
        raise VerificationError("the ID token is issued in the future",
                                code=ErrorCode.EXPIRED)
    return claims
