"""Where verifying keys come from.

A `Keyring` asks its fetchers in order; the registry is one fetcher, a pinned trust anchor another,
and tests pass fakes. Fetchers are synchronous because every source we trust is already in memory
(a verified registry snapshot); refreshing that snapshot is the caller's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from trust.errors import ErrorCode, VerificationError
from trust.keys import Alg, PublicKey, public_key_from_jwk, thumbprint


@dataclass(frozen=True)
class VerifyingKey:
    member_id: str
    kid: str
    alg: Alg
    public: PublicKey
    nbf: int | None = None
    exp: int | None = None

    def valid_at(self, now: float) -> bool:
        return (self.nbf is None or now >= self.nbf) and (self.exp is None or now < self.exp)

    @classmethod
    def from_jwk(cls, member_id: str, jwk: dict[str, Any]) -> VerifyingKey:
        """Parse a registry JWK; a `kid` that is not the key's own thumbprint is refused."""
        public, alg = public_key_from_jwk(jwk)
        kid = thumbprint(jwk)
        if jwk.get("kid", kid) != kid:
            raise VerificationError(
                f"key of {member_id} has kid {jwk.get('kid')!r}, thumbprint is {kid!r}",
                code=ErrorCode.MALFORMED,
            )
        declared = jwk.get("alg")
        if declared is not None and declared != alg.value:
            raise VerificationError(f"key {kid} declares alg {declared}", code=ErrorCode.MALFORMED)
        nbf, exp = jwk.get("nbf"), jwk.get("exp")
        for name, value in (("nbf", nbf), ("exp", exp)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise VerificationError(f"key {kid}: {name} must be an integer",
                                        code=ErrorCode.MALFORMED)
        return cls(member_id=member_id, kid=kid, alg=alg, public=public, nbf=nbf, exp=exp)


class KeyFetcher(Protocol):
    def get_key(self, member_id: str, kid: str) -> VerifyingKey | None:
        """The key `kid` of `member_id`, or None when this source does not know it."""
        ...


class StaticKeyFetcher:
    """A fixed set of keys, e.g. the pinned trust anchor of the alliance operator."""

    def __init__(self, keys: Iterable[VerifyingKey]) -> None:
        self._keys = {(k.member_id, k.kid): k for k in keys}

    def get_key(self, member_id: str, kid: str) -> VerifyingKey | None:
        return self._keys.get((member_id, kid))


class Keyring:
    def __init__(self, key_fetchers: Sequence[KeyFetcher]) -> None:
        self._fetchers = tuple(key_fetchers)

    def lookup(self, member_id: str, kid: str, now: float) -> VerifyingKey:
        for fetcher in self._fetchers:
            key = fetcher.get_key(member_id, kid)
            if key is None:
                continue
            if not key.valid_at(now):
                raise VerificationError(
                    f"key {kid} of {member_id} is outside its validity period",
                    code=ErrorCode.UNKNOWN_KEY,
                )
            return key
        raise VerificationError(f"no key {kid} listed for {member_id}", code=ErrorCode.UNKNOWN_KEY)
