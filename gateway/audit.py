"""Checking an exported audit trail offline, with only the file and its registry versions.

The auditor needs no database and no network: the chain is recomputed, each registry version
in the export is checked against the trust anchor, and every message and receipt signature is
checked against the keys those versions list. The first entry that fails is named.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from registry.snapshot import RegistrySnapshot
from registry.versions import verify_version
from trust import jws
from trust.anchor import TrustAnchor
from trust.audit import GENESIS, AuditEntry, chain_hash
from trust.errors import TongbanError
from trust.keys import sha256_b64url

FORMAT = "tongban-audit/1"


class AuditFailure(Exception):
    """The first entry that does not check, and why."""


def registry_snapshots(versions: Iterable[str], anchor: TrustAnchor) -> list[RegistrySnapshot]:
    snapshots = []
    for i, token in enumerate(versions):
        try:
            snapshots.append(verify_version(token, anchor))
        except TongbanError as exc:
            raise AuditFailure(f"registry version #{i + 1} in the export: {exc.detail}") \
                from None
    return snapshots


def _verify_signed(token: str, kind: jws.TokenType, snapshots: Sequence[RegistrySnapshot],
                   at: float) -> dict[str, Any]:
    parsed = jws.parse(token, kind)
    keys = [s.get_key(parsed.iss, parsed.kid) for s in snapshots]
    candidates = [k for k in keys if k is not None]
    if not candidates:
        raise AuditFailure(f"{kind.value} signed by {parsed.iss} with key {parsed.kid}, which "
                           "no registry version in the export lists")
    errors = []
    for key in candidates:
        try:
            jws.verify_signature(parsed, key)
            return parsed.claims
        except TongbanError as exc:
            errors.append(exc.detail)
    raise AuditFailure(f"{kind.value} signature does not verify: {errors[0]}")


def verify_trail(entries: Sequence[AuditEntry], snapshots: Sequence[RegistrySnapshot],
                 member: str) -> int:
    """Check the chain and every signature; returns the number of entries checked."""
    prev = GENESIS
    last_seq = 0
    for position, entry in enumerate(entries, start=1):
        where = f"entry {position} (seq {entry.seq})"
        try:
            if entry.seq <= last_seq:
                raise AuditFailure("out of order")
            if entry.prev_hash != prev:
                raise AuditFailure("does not follow the entry before it (prev_hash differs)")
            if chain_hash(entry) != entry.entry_hash:
                raise AuditFailure("content changed (entry_hash differs)")
            message = _verify_signed(entry.token, jws.TokenType.MESSAGE, snapshots, entry.at)
            receipt = _verify_signed(entry.receipt, jws.TokenType.RECEIPT, snapshots, entry.at)
            sender, receiver = (entry.peer, member) if entry.direction == "in" else \
                (member, entry.peer)
            if message.get("iss") != sender or message.get("aud") != receiver:
                raise AuditFailure("message sender or recipient does not match the entry")
            if receipt.get("iss") != receiver or receipt.get("for") != message.get("jti"):
                raise AuditFailure("receipt is not the recipient's receipt for this message")
            if receipt.get("digest") != sha256_b64url(entry.token.encode("ascii")):
                raise AuditFailure("receipt digest does not match the message bytes")
        except AuditFailure as exc:
            raise AuditFailure(f"{where}: {exc}") from None
        except TongbanError as exc:
            raise AuditFailure(f"{where}: {exc.detail}") from None
        prev, last_seq = entry.entry_hash, entry.seq
    return len(entries)
