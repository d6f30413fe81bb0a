"""A verified registry version with O(1) lookups by member and by (member, kid).

The per-message cost of verification must not grow with the alliance (about 2,800 counties), so
every lookup a message needs is a dict access built once per registry version.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from registry.document import Member, RegistryClaims, Role
from trust.errors import ErrorCode, RegistryError, TongbanError
from trust.keyring import VerifyingKey


@dataclass(frozen=True)
class RegistrySnapshot:
    claims: RegistryClaims
    jws: str
    digest: str
    _members: dict[str, Member] = field(repr=False)
    _keys: dict[tuple[str, str], VerifyingKey] = field(repr=False)

    @classmethod
    def build(cls, claims: RegistryClaims, jws: str, digest: str) -> RegistrySnapshot:
        members = {m.id: m for m in claims.members}
        keys: dict[tuple[str, str], VerifyingKey] = {}
        for member in claims.members:
            for i, jwk in enumerate(member.keys):
                try:
                    key = VerifyingKey.from_jwk(member.id, jwk)
                except TongbanError as exc:
                    raise RegistryError(f"member {member.id} keys[{i}]: {exc.detail}",
                                        code=ErrorCode.MALFORMED) from None
                keys[(member.id, key.kid)] = key
        return cls(claims=claims, jws=jws, digest=digest, _members=members, _keys=keys)

    @property
    def version(self) -> int:
        return self.claims.version

    @property
    def exp(self) -> int:
        return self.claims.exp

    def is_expired(self, now: float) -> bool:
        return now >= self.claims.exp

    def member(self, member_id: str) -> Member | None:
        return self._members.get(member_id)

    def members(self) -> Iterator[Member]:
        return iter(self.claims.members)

    def members_with_role(self, role: Role) -> list[Member]:
        return [m for m in self.claims.members if m.has_role(role)]

    def get_key(self, member_id: str, kid: str) -> VerifyingKey | None:
        """KeyFetcher: keys of any listed member; status is checked by the caller (§4 order)."""
        return self._keys.get((member_id, kid))

    def keys_of(self, member_id: str) -> list[VerifyingKey]:
        return [k for (mid, _), k in self._keys.items() if mid == member_id]
