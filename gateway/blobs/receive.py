"""Receiving a material: `PUT /federation/v1/blobs/{sha256}` without the HTTP (PROTOCOL.md §5).

The request token is checked in the order of §4, before a byte of the body is read: parse, typ
and alg; issuer in a fresh registry; signature with the key selected by (`iss`, `kid`); `aud`;
`iat`/`exp`; sender status; method and URL binding (`htm`, `htu`); then `jti`, which is
recorded as used (the only step with a side effect, hence last). Only then is the body
streamed into the store, which checks size and digest.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from gateway.blobs.store import BlobStore, StoredBlob, check_name
from gateway.db.batching import GroupCommitter
from gateway.db.jti_repo import RequestJtiRepo
from gateway.registry_client import RegistryHolder
from registry.snapshot import RegistrySnapshot
from trust import request as reqtoken
from trust.clock import Clock
from trust.errors import ErrorCode, RegistryError, VerificationError
from trust.keyring import Keyring

log = logging.getLogger(__name__)

UPLOAD_METHOD = "PUT"


@dataclass(frozen=True)
class UploadGrant:
    """A verified request token for one upload."""

    iss: str
    jti: str
    sha256: str


class BlobReceiver:
    def __init__(self, *, member_id: str, holder: RegistryHolder, store: BlobStore,
                 committer: GroupCommitter, jtis: RequestJtiRepo, clock: Clock,
                 max_skew: int = 300) -> None:
        self._me = member_id
        self._holder = holder
        self._store = store
        self._committer = committer
        self._jtis = jtis
        self._clock = clock
        self._max_skew = max_skew

    async def put(self, *, authorization: str | None, sha256: str, method: str, url: str,
                  chunks: AsyncIterable[bytes], content_length: int | None) -> StoredBlob:
        grant = await self.authorize(authorization, sha256=sha256, method=method, url=url)
        return await self.receive(grant, chunks, content_length=content_length)

    async def authorize(self, authorization: str | None, *, sha256: str, method: str,
                        url: str) -> UploadGrant:
        """Check the request token for a PUT of `sha256` to `url` (the URL as we are known)."""
        check_name(sha256)
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise VerificationError("Authorization: Bearer <tongban-req+jwt> is required",
                                    code=ErrorCode.BAD_SIGNATURE)
        # 1-2. parse; typ and alg
        parsed = reqtoken.parse_request(token.strip())
        # 3. issuer in a fresh registry (refresh once, rate-limited, before refusing)
        snapshot = await self._fresh()
        iss = parsed.iss
        if snapshot.get_key(iss, parsed.kid) is None and await self._holder.refresh_soon():
            snapshot = self._holder.require_fresh()
        sender = snapshot.member(iss)
        if sender is None:
            raise VerificationError(f"{iss} is not in registry version {snapshot.version}",
                                    code=ErrorCode.UNKNOWN_MEMBER)
        # 4-6. signature (key by iss and kid, registry only), audience, lifetime
        now = self._clock()
        key = Keyring([snapshot]).lookup(iss, parsed.kid, now)
        claims = reqtoken.verify_request(parsed, key, audience=self._me, now=now,
                                         max_skew=self._max_skew)
        # 7. sender status
        if not sender.is_active:
            raise VerificationError(f"{iss} is {sender.status.value}",
                                    code=ErrorCode.MEMBER_SUSPENDED)
        # 8. made for this request
        reqtoken.check_binding(claims, method=method, url=url)
        # 9. single use
        try:
            await self._committer.run(lambda conn: self._jtis.use(
                conn, jti=claims.jti, iss=iss, exp=claims.exp, now=now))
        except IntegrityError:
            raise VerificationError("request token already used",
                                    code=ErrorCode.REPLAY) from None
        return UploadGrant(iss=iss, jti=claims.jti, sha256=sha256)

    async def receive(self, grant: UploadGrant, chunks: AsyncIterable[bytes], *,
                      content_length: int | None) -> StoredBlob:
        stored = await self._store.write(chunks, expected=grant.sha256,
                                         content_length=content_length)
        log.info("blob %s from %s %s (%d bytes)", stored.sha256, grant.iss,
                 "stored" if stored.created else "already held", stored.size)
        return stored

    async def _fresh(self) -> RegistrySnapshot:
        try:
            return self._holder.require_fresh()
        except RegistryError:
            await self._holder.refresh_soon()
            return self._holder.require_fresh()
