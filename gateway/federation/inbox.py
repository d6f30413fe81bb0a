"""Receiving a message: the normative check order of PROTOCOL.md §4, then durable storage.

The answer (a signed receipt) is produced only after the inbox row and the handler's effects
are committed in one transaction, so a receipt always proves storage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import rfc8785
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.db.audit_repo import AuditRecord, AuditRepo
from gateway.db.batching import GroupCommitter
from gateway.db.repos import InboxEntry, InboxRepo
from gateway.federation.messages import (
    CASE_ID_RE,
    UUID_RE,
    Attachment,
    HandlerRegistry,
    InboundMessage,
    InvalidBody,
    MessageHandler,
    MissingBlob,
    parse_attachments,
)
from gateway.federation.receipts import Receipt, ReceiptStatus, make_receipt
from gateway.keystore import Signer
from gateway.metrics import Metrics
from gateway.registry_client import RegistryHolder
from trust import jws
from trust.clock import Clock
from trust.errors import ErrorCode, RegistryError, TongbanError, VerificationError
from trust.keyring import Keyring
from trust.keys import sha256_b64url

log = logging.getLogger(__name__)

MAX_LIFETIME = 300


@dataclass(frozen=True)
class InboxSettings:
    member_id: str
    max_skew: int = 300


def content_digest(type_: str, case_id: str | None, seq: int | None,
                   body: Mapping[str, Any], att: Any) -> str:
    """What a message means, independent of its signature: used to spot a re-signed resend."""
    canonical = rfc8785.dumps({"type": type_, "case": case_id, "seq": seq, "body": body,
                               "att": att})
    return sha256_b64url(canonical)


class Inbox:
    def __init__(self, *, settings: InboxSettings, holder: RegistryHolder, signer: Signer,
                 engine: AsyncEngine, committer: GroupCommitter, repo: InboxRepo,
                 handlers: HandlerRegistry, clock: Clock,
                 on_peer_seen: Callable[[str], None] | None = None,
                 blob_size: Callable[[str], int | None] | None = None,
                 metrics: Metrics | None = None) -> None:
        """`blob_size(sha256)` is the size of a held material, None if not held (§5)."""
        self._metrics = metrics
        self._settings = settings
        self._holder = holder
        self._signer = signer
        self._engine = engine
        self._committer = committer
        self._repo = repo
        self._handlers = handlers
        self._clock = clock
        self._on_peer_seen = on_peer_seen
        self._blob_size = blob_size

    async def receive(self, raw: bytes) -> Receipt:
        seen: list[str] = []  # the message type, once parsed: a metrics label
        try:
            receipt = await self._receive(raw, seen)
        except TongbanError as exc:
            if self._metrics is not None:
                self._metrics.message("in", self._label(seen), exc.code.value)
            raise
        if self._metrics is not None:
            self._metrics.message("in", self._label(seen), receipt.status.value)
        return receipt

    def _label(self, seen: list[str]) -> str:
        """A bounded metrics label: unverified input must not create new label values."""
        if not seen:
            return "unparsable"
        return seen[0] if self._handlers.get(seen[0]) is not None else "other"

    async def _receive(self, raw: bytes, seen: list[str]) -> Receipt:
        me = self._settings.member_id
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise VerificationError("body is not a compact JWS", code=ErrorCode.MALFORMED) from None
        # 1-2. parse; typ and alg
        parsed = jws.parse(text, jws.TokenType.MESSAGE)
        seen.append(str(parsed.claims.get("type")))
        # 3. issuer in the registry (fail closed when the registry is stale, after one
        # rate-limited attempt to fetch a fresh one)
        try:
            snapshot = self._holder.require_fresh()
        except RegistryError:
            await self._holder.refresh_soon()
            snapshot = self._holder.require_fresh()
        iss = parsed.iss
        # An unknown member or kid may be an admission or a key rotation published after our
        # last poll: refresh once (rate-limited) before refusing, so rotations never bounce.
        if snapshot.get_key(iss, parsed.kid) is None and await self._holder.refresh_soon():
            snapshot = self._holder.require_fresh()
        sender = snapshot.member(iss)
        if sender is None:
            raise VerificationError(f"{iss} is not in registry version {snapshot.version}",
                                    code=ErrorCode.UNKNOWN_MEMBER)
        # 4. signature, with the key selected by (iss, kid) from the registry only
        now = self._clock()
        key = Keyring([snapshot]).lookup(iss, parsed.kid, now)
        jws.verify_signature(parsed, key)
        claims = parsed.claims
        # 5. audience
        if claims.get("aud") != me:
            raise VerificationError("message is addressed to another member",
                                    code=ErrorCode.WRONG_AUDIENCE)
        # 6. lifetime
        iat, exp = jws.check_lifetime(claims, now, max_skew=self._settings.max_skew,
                                      max_lifetime=MAX_LIFETIME)
        # 7. sender status and roles
        if not sender.is_active:
            raise VerificationError(f"{iss} is {sender.status.value}",
                                    code=ErrorCode.MEMBER_SUSPENDED)
        type_ = jws.require_str(claims, "type")
        handler = self._handlers.get(type_)
        if handler is not None and handler.sender_roles and not any(
            sender.has_role(r) for r in handler.sender_roles
        ):
            raise VerificationError(f"{type_} requires role "
                                    f"{'/'.join(sorted(handler.sender_roles))}",
                                    code=ErrorCode.NOT_AUTHORIZED)
        jti = jws.require_str(claims, "jti")
        if not UUID_RE.match(jti):
            raise VerificationError("jti must be a UUID", code=ErrorCode.MALFORMED)
        digest = sha256_b64url(parsed.raw.encode("ascii"))
        # Signed outside the transaction; used only if the message turns out to be new.
        signing_key = self._signer.current(snapshot)
        accepted = make_receipt(signing_key, receiver=me, sender=iss, for_jti=jti, digest=digest,
                                status=ReceiptStatus.ACCEPTED, now=now)

        async def store(conn: AsyncConnection) -> InboundMessage:
            # 9. type and body, then the materials it lists (§5). A body error on a reused jti
            # still answers `replay` (§4 order: replay before body), looked up only on this
            # rare path.
            try:
                message, meaning = self._validate(parsed.raw, claims, handler, type_, digest,
                                                  iss=iss, jti=jti, iat=iat, exp=exp)
                self._check_blobs(message.att)
            except (InvalidBody, MissingBlob):
                existing = await self._repo.by_jti(conn, jti)
                if existing is not None:
                    self._check_duplicate(existing, digest, iss)
                raise
            # 8 + 10. The unique constraints on jti and on (iss, case, seq) detect replays and
            # resends; the row goes in before the handler runs, so a duplicate never reaches
            # the case logic, and a handler refusal rolls the row back with everything else.
            await self._repo.insert(conn, jti=jti, iss=iss, type_=type_,
                                    case_id=message.case_id, seq=message.seq, digest=digest,
                                    content_digest=meaning, token=parsed.raw,
                                    receipt=accepted.token, now=now)
            await AuditRepo.append(conn, [AuditRecord(
                at=now, direction="in", peer=iss, jti=jti, type=type_,
                case_id=message.case_id, token=parsed.raw, receipt=accepted.token)])
            assert handler is not None
            await handler.apply(conn, message)
            return message

        receipt: Receipt | None = accepted
        message: InboundMessage | None = None
        try:
            message = await self._committer.run(store)
        except IntegrityError:
            await self._classify_conflict(jti, digest, iss, claims)
            receipt = None
        if receipt is None or message is None:
            return make_receipt(signing_key, receiver=me, sender=iss, for_jti=jti,
                                digest=digest, status=ReceiptStatus.DUPLICATE, now=now)
        log.debug("message %s from %s stored", jti, iss)
        if self._on_peer_seen is not None:
            self._on_peer_seen(iss)
        assert handler is not None
        try:
            await handler.after_commit(message)
        except TongbanError as exc:
            log.warning("after-commit step of %s failed: %s", type_, exc.detail)
        return receipt

    def _check_blobs(self, att: tuple[Attachment, ...]) -> None:
        for i, item in enumerate(att):
            size = None if self._blob_size is None else self._blob_size(item.sha256)
            if size is None:
                raise MissingBlob(f"att[{i}]: blob {item.sha256} has not been uploaded")
            if size != item.size:
                raise InvalidBody(f"att[{i}].size is {item.size}, the blob has {size} bytes")

    @staticmethod
    def _validate(raw: str, claims: dict[str, Any], handler: MessageHandler | None, type_: str,
                  digest: str, *, iss: str, jti: str, iat: int,
                  exp: int) -> tuple[InboundMessage, str]:
        if handler is None:
            raise InvalidBody(f"message type {type_!r} is not supported")
        body = claims.get("body")
        if not isinstance(body, dict):
            raise InvalidBody("body must be a JSON object")
        att_raw = claims.get("att")
        att = parse_attachments(att_raw)
        case_id, seq = claims.get("case"), claims.get("seq")
        if handler.case_bound:
            if not isinstance(case_id, str) or not CASE_ID_RE.match(case_id):
                raise InvalidBody("case must be '<member id>:<UUID>'")
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
                raise InvalidBody("seq must be a positive integer")
        else:
            case_id = case_id if isinstance(case_id, str) else None
            seq = None
        handler.validate(body)
        message = InboundMessage(token=raw, digest=digest, iss=iss, aud=str(claims["aud"]),
                                 jti=jti, iat=iat, exp=exp, type=type_, case_id=case_id,
                                 seq=seq, body=body, att=att)
        return message, content_digest(type_, case_id, seq, body, att_raw)

    async def _classify_conflict(self, jti: str, digest: str, iss: str,
                                 claims: dict[str, Any]) -> None:
        """A unique constraint fired: return for a harmless resend, raise `replay` otherwise."""
        async with self._engine.connect() as conn:
            existing = await self._repo.by_jti(conn, jti)
            if existing is not None:
                self._check_duplicate(existing, digest, iss)
                return
            case_id, seq = claims.get("case"), claims.get("seq")
            same_seq = (await self._repo.by_case_seq(conn, iss, case_id, seq)
                        if isinstance(case_id, str) and isinstance(seq, int) else None)
        if same_seq is None:
            raise VerificationError("message conflicts with a stored one", code=ErrorCode.REPLAY)
        meaning = content_digest(str(claims.get("type")), case_id, seq, claims.get("body") or {},
                                 claims.get("att"))
        if same_seq.content_digest != meaning:
            raise VerificationError("seq of this case was already used for other content",
                                    code=ErrorCode.REPLAY)
        # else: a re-signed resend of a message we hold; receipt it as a duplicate

    @staticmethod
    def _check_duplicate(existing: InboxEntry, digest: str, iss: str) -> None:
        if existing.digest != digest or existing.iss != iss:
            raise VerificationError("this jti was already used for other bytes",
                                    code=ErrorCode.REPLAY)
