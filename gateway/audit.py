"""Checking an exported audit trail offline, with only the file and its registry versions.

The auditor needs no database and no network: the chain is recomputed, each registry version
in the export is checked against the trust anchor, and every message and receipt signature is
checked against the key its signer had at the time of the entry: listed for that member by a
registry version in force then, and within the key's own `nbf`/`exp`. A key that was retired,
or not yet published, when the entry says the message went does not do. The export ends with
a head statement signed by the exporting member (chain tip, entry count, header digest), so
entries cut off at the end are found too. The first thing that fails is named.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from typing import Any

from registry.snapshot import RegistrySnapshot
from registry.versions import verify_version
from trust import jws
from trust.anchor import TrustAnchor
from trust.audit import GENESIS, AuditEntry, AuditHead, chain_hash
from trust.errors import TongbanError
from trust.keyring import VerifyingKey
from trust.keys import sha256_b64url

# Version 2 ends with the signed head line; version 1 exports had none, and a file without a
# head cannot show that it is complete, so they are refused rather than half-checked.
FORMAT = "tongban-audit/2"
# The gateways' clocks and the operator's may differ this much (the federation's default
# `max_skew`): an entry recorded just before a registry version's `iat` by the operator's
# clock was still checked under that version by the member.
CLOCK_SKEW = 300


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


def _time(at: float) -> str:
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _in_force(snapshot: RegistrySnapshot, at: float) -> bool:
    return snapshot.claims.iat - CLOCK_SKEW <= at < snapshot.exp + CLOCK_SKEW


def keys_at(snapshots: Sequence[RegistrySnapshot], iss: str, kid: str,
            at: float) -> list[VerifyingKey]:
    """The key `kid` of `iss` as each registry version in force at `at` lists it, if its own
    validity period covers `at`; raises AuditFailure saying why there is none."""
    listed = [(s, k) for s in snapshots if (k := s.get_key(iss, kid)) is not None]
    if not listed:
        raise AuditFailure(f"signed by {iss} with key {kid}, which no registry version in "
                           "the export lists")
    in_force = [k for s, k in listed if _in_force(s, at)]
    if not in_force:
        versions = ", ".join(str(s.version) for s, _ in listed)
        raise AuditFailure(f"signed by {iss} with key {kid}, which no registry version in "
                           f"force at {_time(at)} lists (listed in version {versions})")
    valid = [k for k in in_force if k.valid_at(at)]
    if not valid:
        raise AuditFailure(f"key {kid} of {iss} is outside its validity period at "
                           f"{_time(at)}")
    return valid


def _verify_signed(token: str, kind: jws.TokenType, snapshots: Sequence[RegistrySnapshot],
                   at: float) -> dict[str, Any]:
    parsed = jws.parse(token, kind)
    try:
        candidates = keys_at(snapshots, parsed.iss, parsed.kid, at)
    except AuditFailure as exc:
        raise AuditFailure(f"{kind.value} {exc}") from None
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


def verify_head(token: str | None, entries: Sequence[AuditEntry],
                snapshots: Sequence[RegistrySnapshot], member: str, header_digest: str) -> None:
    """The export's last line: signed by `member` with a key of the newest registry version
    in the export, and saying exactly what the file holds. Entries cut off at the end leave a
    head whose count and tip no longer match, or no head at all."""
    if token is None:
        raise AuditFailure("head: the export does not end with its signed head statement "
                           "(cut short?)")
    try:
        parsed = jws.parse(token, jws.TokenType.AUDIT_HEAD)
        head = AuditHead.from_claims(parsed.claims)
        if head.member != member:
            raise AuditFailure(f"signed by {head.member}, the export is {member}'s")
        # The version the exporter held when it exported (`Signer` picked from the same).
        newest = max(snapshots, key=lambda s: s.version, default=None)
        key = None if newest is None else newest.get_key(member, parsed.kid)
        if key is None:
            raise AuditFailure(f"key {parsed.kid} is not {member}'s in the newest registry "
                               "version of the export")
        if not key.valid_at(head.exported_at):
            raise AuditFailure(f"key {parsed.kid} of {member} is outside its validity period "
                               f"at the export time {_time(head.exported_at)}")
        jws.verify_signature(parsed, key)
    except AuditFailure as exc:
        raise AuditFailure(f"head: {exc}") from None
    except TongbanError as exc:
        raise AuditFailure(f"head: {exc.detail}") from None
    tip = entries[-1].entry_hash if entries else GENESIS
    if head.count != len(entries):
        raise AuditFailure(f"head: signed for {head.count} entries, the export holds "
                           f"{len(entries)} (entries removed or added at the end)")
    if head.tip != tip:
        raise AuditFailure("head: the chain's last entry is not the one signed for "
                           "(tip differs)")
    if head.header_digest != header_digest:
        raise AuditFailure("head: the export's header line differs from the one signed for")
