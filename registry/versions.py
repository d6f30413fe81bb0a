"""Building, signing, verifying and chaining registry versions (PROTOCOL.md §3).

A member only ever moves forward: each accepted version is signed by the pinned anchor, is newer
than the one held, and, when it is the direct successor, names the held version's digest in
`prev`. Skipped versions are fetched and chained one by one (see `gateway.registry_client`), so
a member never accepts a version whose ancestry it has not verified.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

from registry.document import MAX_VALIDITY_SECONDS, Member, RegistryClaims
from registry.snapshot import RegistrySnapshot
from trust import jws
from trust.anchor import TrustAnchor
from trust.errors import ErrorCode, RegistryError, TongbanError
from trust.keys import SigningKey, sha256_b64url


def build_next(previous: RegistrySnapshot | None, *, operator: str, alliance: str,
               members: Sequence[Member], now: float, validity: int) -> RegistryClaims:
    if not 0 < validity <= MAX_VALIDITY_SECONDS:
        raise RegistryError(f"validity must be between 1 s and {MAX_VALIDITY_SECONDS} s",
                            code=ErrorCode.MALFORMED)
    iat = int(now)
    return RegistryClaims(
        iss=operator,
        alliance=alliance,
        version=1 if previous is None else previous.version + 1,
        iat=iat,
        exp=iat + validity,
        prev=None if previous is None else previous.digest,
        members=tuple(members),
    )


def sign_version(claims: RegistryClaims, key: SigningKey) -> RegistrySnapshot:
    token = jws.sign(claims.model_dump(mode="json", exclude_none=True), key,
                     jws.TokenType.REGISTRY)
    return RegistrySnapshot.build(claims, token, sha256_b64url(token.encode("ascii")))


def verify_version(token: str, anchor: TrustAnchor) -> RegistrySnapshot:
    """Verify a registry JWS against the pinned anchor; freshness is the caller's decision."""
    parsed = jws.parse(token, jws.TokenType.REGISTRY)
    if parsed.iss != anchor.operator:
        raise RegistryError(f"registry issued by {parsed.iss}, anchor pins {anchor.operator}",
                            code=ErrorCode.BAD_SIGNATURE)
    key = anchor.fetcher().get_key(anchor.operator, parsed.kid)
    if key is None:
        raise RegistryError("registry not signed by a pinned trust-anchor key",
                            code=ErrorCode.UNKNOWN_KEY)
    jws.verify_signature(parsed, key)
    signed_at = parsed.claims.get("iat")
    if not isinstance(signed_at, int) or not key.valid_at(signed_at):
        raise RegistryError("registry signed outside the anchor key's validity period",
                            code=ErrorCode.UNKNOWN_KEY)
    try:
        claims = RegistryClaims.model_validate(parsed.claims)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RegistryError(f"registry claims invalid at {where}: {first['msg']}",
                            code=ErrorCode.MALFORMED) from None
    if claims.alliance != anchor.alliance:
        raise RegistryError(f"registry of alliance {claims.alliance!r}, anchor pins "
                            f"{anchor.alliance!r}", code=ErrorCode.MALFORMED)
    if not 0 < claims.exp - claims.iat <= MAX_VALIDITY_SECONDS:
        raise RegistryError("registry validity exceeds 7 days", code=ErrorCode.MALFORMED)
    if claims.version > 1 and claims.prev is None:
        raise RegistryError(f"version {claims.version} lacks 'prev'", code=ErrorCode.MALFORMED)
    try:
        return RegistrySnapshot.build(claims, parsed.raw, sha256_b64url(parsed.raw.encode()))
    except TongbanError as exc:
        raise RegistryError(exc.detail, code=ErrorCode.MALFORMED) from None


def check_successor(held: RegistrySnapshot | None, new: RegistrySnapshot) -> bool:
    """Decide whether `new` may replace `held`: True to take it, False if it is the same version.

    Raises for a lower version, a different document under the held version number, or a
    direct successor whose `prev` does not name the held version.
    """
    if held is None:
        return True
    if new.version < held.version:
        raise RegistryError(f"version {new.version} is older than held version {held.version}",
                            code=ErrorCode.MALFORMED)
    if new.version == held.version:
        if new.digest != held.digest:
            raise RegistryError(f"two different documents claim version {new.version}",
                                code=ErrorCode.MALFORMED)
        return False
    if new.version == held.version + 1 and new.claims.prev != held.digest:
        raise RegistryError(f"version {new.version} does not chain to held version "
                            f"{held.version} (prev mismatch)", code=ErrorCode.MALFORMED)
    return True
