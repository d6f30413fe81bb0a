"""The audit trail's entries and their hash chain (责任追溯).

Each entry's hash covers its content (RFC 8785 canonical JSON) and the hash of the entry
before it, so an entry cannot be changed, removed or moved without breaking every later hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import rfc8785

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
