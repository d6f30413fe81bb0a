"""The audit trail's entries and their hash chain (责任追溯).

Each entry's hash covers its content (RFC 8785 canonical JSON) and the hash of the entry
before it, so an entry cannot be changed, removed or moved without breaking every later hash.
What the chain cannot show is entries cut off at the end: an export therefore ends with a head
statement, a JWS by the exporting member over the chain's tip, the entry count and the export's
header, which an auditor checks like any other signature.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import rfc8785

from trust import jws
from trust.keys import SigningKey, sha256_b64url

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditEntry:
    at: float
    direction: str  # in: we received `token` and answered `receipt`; out: the other way
    peer: str
    jti: str
    type: str
    case_id: str | None
    token: str
    receipt: str
    prev_hash: str
    entry_hash: str
    seq: int = 0

    def fields(self) -> dict[str, Any]:
        """What the hash covers (everything but the chain fields and the storage order)."""
        return {"at": self.at, "direction": self.direction, "peer": self.peer,
                "jti": self.jti, "type": self.type, "case_id": self.case_id,
                "token": self.token, "receipt": self.receipt}

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, **self.fields(), "prev_hash": self.prev_hash,
                "entry_hash": self.entry_hash}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> AuditEntry:
        return cls(at=float(doc["at"]), direction=str(doc["direction"]),
                   peer=str(doc["peer"]), jti=str(doc["jti"]), type=str(doc["type"]),
                   case_id=doc.get("case_id"), token=str(doc["token"]),
                   receipt=str(doc["receipt"]), prev_hash=str(doc["prev_hash"]),
                   entry_hash=str(doc["entry_hash"]), seq=int(doc.get("seq", 0)))


def chain_hash(entry: AuditEntry) -> str:
    canonical = rfc8785.dumps(entry.fields())
    return hashlib.sha256(entry.prev_hash.encode("ascii") + b"\n" + canonical).hexdigest()


@dataclass(frozen=True)
class AuditHead:
    """What the head statement of an export says: who exported how many entries, when, with
    which chain tip, under which header line (its digest binds the registry versions in it)."""

    member: str
    exported_at: int
    count: int
    tip: str
    header_digest: str

    def claims(self) -> dict[str, Any]:
        return {"iss": self.member, "iat": self.exported_at, "count": self.count,
                "tip": self.tip, "header": self.header_digest}

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> AuditHead:
        return cls(member=jws.require_str(claims, "iss"),
                   exported_at=jws.require_int(claims, "iat"),
                   count=jws.require_int(claims, "count"), tip=jws.require_str(claims, "tip"),
                   header_digest=jws.require_str(claims, "header"))


def header_digest(header_line: str) -> str:
    """The digest of the export's first line exactly as written (without its newline)."""
    return sha256_b64url(header_line.encode("utf-8"))


def sign_head(head: AuditHead, key: SigningKey) -> str:
    return jws.sign(head.claims(), key, jws.TokenType.AUDIT_HEAD)
