"""Signed receipts (PROTOCOL.md §4): the receiver's proof that it stored exactly these bytes."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from registry.snapshot import RegistrySnapshot
from trust import jws
from trust.errors import ErrorCode, VerificationError
from trust.keyring import Keyring
from trust.keys import SigningKey


class ReceiptStatus(enum.StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class Receipt:
    token: str
    status: ReceiptStatus


def make_receipt(key: SigningKey, *, receiver: str, sender: str, for_jti: str, digest: str,
                 status: ReceiptStatus, now: float) -> Receipt:
    claims = {"iss": receiver, "aud": sender, "iat": int(now), "jti": str(uuid.uuid4()),
              "for": for_jti, "digest": digest, "status": status.value}
    return Receipt(jws.sign(claims, key, jws.TokenType.RECEIPT), status)


def verify_receipt(token: str, *, snapshot: RegistrySnapshot, receiver: str, sender: str,
                   for_jti: str, digest: str, now: float) -> Receipt:
    """Check that `receiver` signed a receipt for exactly the bytes we sent."""
    parsed = jws.parse(token, jws.TokenType.RECEIPT)
    if parsed.iss != receiver:
        raise VerificationError(f"receipt issued by {parsed.iss}, expected {receiver}",
                                code=ErrorCode.BAD_SIGNATURE)
    key = Keyring([snapshot]).lookup(receiver, parsed.kid, now)
    jws.verify_signature(parsed, key)
    claims = parsed.claims
    if claims.get("aud") != sender:
        raise VerificationError("receipt addressed to another member",
                                code=ErrorCode.WRONG_AUDIENCE)
    if claims.get("for") != for_jti or claims.get("digest") != digest:
        raise VerificationError("receipt is for another message or other bytes",
                                code=ErrorCode.DIGEST_MISMATCH)
    status = claims.get("status")
    if status not in {s.value for s in ReceiptStatus}:
        raise VerificationError(f"receipt status {status!r} unknown", code=ErrorCode.MALFORMED)
    return Receipt(parsed.raw, ReceiptStatus(status))
