"""The alliance operator's work: admit, suspend, reinstate, revoke members, publish versions.

Every change is published at once as a new signed registry version, and a `registry.updated`
message to each active member is queued in the same transaction, so a suspension reaches every
member within one delivery round (and within one poll interval at worst).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.config import GatewayConfig
from gateway.db.repos import OutboxRepo, RegistryRepo
from gateway.federation.outbox import enqueue
from gateway.keystore import KeyStore
from registry.document import Item, Member, Role, Status
from registry.snapshot import RegistrySnapshot
from registry.versions import build_next, sign_version, verify_version
from trust.anchor import TrustAnchor, anchor_document, load_anchor
from trust.clock import Clock
from trust.errors import ConfigError, ErrorCode, RegistryError, TongbanError
from trust.keyring import VerifyingKey
from trust.keys import Alg, SigningKey


class AllianceError(TongbanError):
    code = ErrorCode.MALFORMED


@dataclass(frozen=True)
class Published:
    version: int
    notified: tuple[str, ...]


def write_anchor(path: Path, anchor_doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(anchor_doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class Alliance:
    """Operator-side registry management over the operator gateway's own database."""

    def __init__(self, *, config: GatewayConfig, engine: AsyncEngine, keys: KeyStore,
                 clock: Clock) -> None:
        if config.operator is None:
            raise ConfigError("operator: this gateway's config has no [operator] section; only "
                              "the alliance operator manages members")
        self._config = config
        self._operator = config.operator
        self._engine = engine
        self._keys = keys
        self._clock = clock
        self._registry = RegistryRepo(engine)
        self._outbox = OutboxRepo(engine)

    @property
    def member_id(self) -> str:
        return self._config.member_id

    def _anchor(self) -> TrustAnchor:
        return load_anchor(self._config.trust.anchor)

    def _registry_key(self, anchor: TrustAnchor) -> SigningKey:
        pinned = {k.kid for k in anchor.keys}
        for key in reversed(self._keys.keys):
            if key.kid in pinned:
                return key
        raise ConfigError("keys.dir: none of the operator's keys is in the trust anchor")

    async def init(self, *, name: str, province: str | None = None,
                   alg: Alg = Alg.EDDSA) -> Published:
        if await self._registry.latest() is not None:
            raise AllianceError("the alliance is already initialised (registry version exists)")
        key = self._keys.load()[-1] if self._keys.exists() else self._keys.create(alg)
        write_anchor(self._config.trust.anchor,
                     anchor_document(self._operator.alliance, self.member_id,
                                     [key.public_jwk()]))
        operator = Member(
            id=self.member_id, name=name or self.member_id,
            province=province or self.member_id[3:5],
            endpoint=self._config.server.endpoint(), status=Status.ACTIVE,
            keys=(key.public_jwk(),),
            roles=(Role.OPERATOR, Role.SSO_ISSUER, Role.HANDLER, Role.RECEIVER),
        )
        return await self._publish(None, [operator])

    async def current(self) -> RegistrySnapshot:
        latest = await self._registry.latest()
        if latest is None:
            raise AllianceError("no registry yet; run `tongban alliance init` first")
        return verify_version(latest.jws, self._anchor())

    async def add_member(self, member: Member) -> Published:
        current = await self.current()
        if current.member(member.id) is not None:
            raise AllianceError(f"{member.id} is already a member; use `member sync-keys`, "
                                f"`member suspend` or `member reinstate` to change it")
        for i, jwk in enumerate(member.keys):
            try:
                VerifyingKey.from_jwk(member.id, jwk)
            except TongbanError as exc:
                raise AllianceError(f"keys[{i}]: {exc.detail}") from None
        return await self._publish(current, [*current.members(), member])

    async def update_member(self, member_id: str,
                            change: Callable[[Member], Member]) -> Published:
        current = await self.current()
        existing = current.member(member_id)
        if existing is None:
            raise AllianceError(f"{member_id} is not a member")
        if existing.status is Status.REVOKED:
            raise AllianceError(f"{member_id} is revoked; revocation is final")
        updated = change(existing)
        if member_id == self.member_id and updated.status is not Status.ACTIVE:
            raise AllianceError("the operator cannot suspend or revoke itself")
        members = [updated if m.id == member_id else m for m in current.members()]
        return await self._publish(current, members)

    async def set_status(self, member_id: str, status: Status) -> Published:
        return await self.update_member(
            member_id, lambda m: m.model_copy(update={"status": status}))

    async def set_keys(self, member_id: str, jwks: Sequence[dict[str, Any]]) -> Published:
        if not jwks:
            raise AllianceError("a member needs at least one key")
        for i, jwk in enumerate(jwks):
            try:
                VerifyingKey.from_jwk(member_id, jwk)
            except TongbanError as exc:
                raise AllianceError(f"keys[{i}]: {exc.detail}") from None
        return await self.update_member(
            member_id, lambda m: m.model_copy(update={"keys": tuple(jwks)}))

    async def set_items(self, member_id: str, items: Sequence[Item]) -> Published:
        return await self.update_member(
            member_id, lambda m: m.model_copy(update={"items": tuple(items)}))

    async def republish(self) -> Published:
        current = await self.current()
        return await self._publish(current, list(current.members()))

    async def _publish(self, current: RegistrySnapshot | None,
                       members: Sequence[Member]) -> Published:
        anchor = self._anchor()
        now = self._clock()
        try:
            claims = build_next(current, operator=self.member_id, alliance=self._operator.alliance,
                                members=members, now=now,
                                validity=self._operator.registry_validity)
        except ValueError as exc:
            raise AllianceError(f"registry not valid: {exc}") from None
        snapshot = sign_version(claims, self._registry_key(anchor))
        verify_version(snapshot.jws, anchor)  # never publish what members would refuse
        notified = tuple(m.id for m in members if m.is_active and m.id != self.member_id)
        try:
            async with self._engine.begin() as conn:
                await self._registry.store(conn, version=snapshot.version, jws=snapshot.jws,
                                           digest=snapshot.digest, iat=claims.iat,
                                           exp=claims.exp, now=now)
                for dest in notified:
                    await enqueue(conn, self._outbox, dest=dest, type_="registry.updated",
                                  body={"version": snapshot.version}, now=now)
        except IntegrityError:
            raise RegistryError("another publication of this version happened at the same time; "
                                "run the command again", code=ErrorCode.REPLAY) from None
        return Published(snapshot.version, notified)
