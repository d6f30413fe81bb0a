"""JWS compact tokens with the alg and typ policy of PROTOCOL.md §2.

Verification is split in two so callers can follow the normative check order of §4: `parse`
refuses anything structurally wrong (including `none`/`HS*` algorithms and a wrong `typ`) before
any key is touched; `verify_signature` then checks the signature with a key the caller selected
by (`iss`, `kid`) from the registry. PyJWT does the actual parsing and cryptography.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

import jwt

from trust.errors import ErrorCode, VerificationError
from trust.keyring import VerifyingKey
from trust.keys import ALLOWED_ALGS, SigningKey

_JWS = jwt.PyJWS()
# PyJWT's own implementations, one per allowed algorithm; nothing else can be selected.
_ALGORITHMS = {name: jwt.get_algorithm_by_name(name) for name in ALLOWED_ALGS}


class TokenType(enum.StrEnum):
    REGISTRY = "tongban-registry+jwt"
    MESSAGE = "tongban-msg+jwt"
    RECEIPT = "tongban-receipt+jwt"
    SSO = "tongban-sso+jwt"
    REQUEST = "tongban-req+jwt"
    # The signed last line of an audit export (gateway/audit.py); never sent to a peer.
    AUDIT_HEAD = "tongban-audit-head+jwt"


@dataclass(frozen=True)
class ParsedToken:
    """A structurally valid token whose signature has NOT been checked yet."""

    raw: str
    alg: str
    kid: str
    typ: TokenType
    claims: dict[str, Any]
    signing_input: bytes = field(repr=False, default=b"")
    signature: bytes = field(repr=False, default=b"")

    @property
    def iss(self) -> str:
        iss = self.claims.get("iss")
        if not isinstance(iss, str):
            raise VerificationError("claim 'iss' missing or not a string", code=ErrorCode.MALFORMED)
        return iss


def sign(claims: dict[str, Any], key: SigningKey, typ: TokenType) -> str:
    return jwt.encode(claims, key.private, algorithm=key.alg.value,
                      headers={"typ": typ.value, "kid": key.kid})


def parse(token: str | bytes, expected: TokenType) -> ParsedToken:
    raw = token.decode("ascii", errors="replace") if isinstance(token, bytes) else token
    raw = raw.strip()
    try:
        # One decode by PyJWT (it validates the base64url alphabet character by character,
        # which is the dominant cost for a 2 KiB message, so it is done once, not per step).
        decoded = _JWS.decode_complete(raw, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise VerificationError("not a JWS in compact serialization",
                                code=ErrorCode.MALFORMED) from None
    header: dict[str, Any] = decoded["header"]
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGS:
        raise VerificationError(f"algorithm {alg!r} is not allowed (EdDSA or ES256 only)",
                                code=ErrorCode.BAD_SIGNATURE)
    typ = header.get("typ")
    if typ != expected.value:
        raise VerificationError(f"typ {typ!r} where {expected.value!r} is required",
                                code=ErrorCode.MALFORMED)
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise VerificationError("header lacks 'kid'", code=ErrorCode.MALFORMED)
    if "crit" in header:
        raise VerificationError("critical header extensions are not supported",
                                code=ErrorCode.MALFORMED)
    try:
        claims = json.loads(decoded["payload"])
    except ValueError:
        raise VerificationError("payload is not JSON", code=ErrorCode.MALFORMED) from None
    if not isinstance(claims, dict):
        raise VerificationError("payload is not a JSON object", code=ErrorCode.MALFORMED)
    # RFC 7515 §5.2: the signature covers the first two segments exactly as received.
    signing_input = raw.rsplit(".", 1)[0].encode("ascii")
    return ParsedToken(raw=raw, alg=alg, kid=kid, typ=expected, claims=claims,
                       signing_input=signing_input, signature=decoded["signature"])


def verify_signature(token: ParsedToken, key: VerifyingKey) -> None:
    """Check the signature with a key chosen by the caller; the header never picks the alg."""
    if token.alg != key.alg.value:
        raise VerificationError(f"key {key.kid} signs with {key.alg.value}, token says {token.alg}",
                                code=ErrorCode.BAD_SIGNATURE)
    algorithm = _ALGORITHMS[key.alg.value]
    if not algorithm.verify(token.signing_input, key.public, token.signature):
        raise VerificationError("signature does not verify", code=ErrorCode.BAD_SIGNATURE)


def require_int(claims: dict[str, Any], name: str) -> int:
    value = claims.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise VerificationError(f"claim {name!r} missing or not an integer",
                                code=ErrorCode.MALFORMED)
    return value


def require_str(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise VerificationError(f"claim {name!r} missing or not a string", code=ErrorCode.MALFORMED)
    return value


def check_lifetime(claims: dict[str, Any], now: float, *, max_skew: int,
                   max_lifetime: int) -> tuple[int, int]:
    """Check `iat`/`exp` the way every short-lived federation token needs; returns (iat, exp)."""
    iat, exp = require_int(claims, "iat"), require_int(claims, "exp")
    if exp <= iat or exp - iat > max_lifetime:
        raise VerificationError(f"exp must be after iat and at most {max_lifetime} s later",
                                code=ErrorCode.MALFORMED)
    if iat > now + max_skew:
        raise VerificationError("issued in the future beyond the allowed clock skew",
                                code=ErrorCode.EXPIRED)
    if iat < now - max_skew - max_lifetime:
        raise VerificationError("issued too long ago", code=ErrorCode.EXPIRED)
    if exp <= now:
        raise VerificationError("token has expired", code=ErrorCode.EXPIRED)
    return iat, exp
