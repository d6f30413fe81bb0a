"""The audit trail: every message sent and received, with its receipt, in a hash chain that an
auditor checks offline; any tampering is named at the first bad entry, entries cut off at the
end are caught by the signed head, and a signature counts only with a key its signer held at
the time of the entry."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fedkit import DOUMEN, TAOYUAN, DbFactory, Federation, build_federation, new_case

from gateway.cli.main import main
from trust.audit import GENESIS, AuditEntry, AuditHead, chain_hash, header_digest, sign_head


@pytest.fixture
async def fed(tmp_path: Path, db_factory: DbFactory) -> AsyncIterator[Federation]:
    federation = await build_federation(tmp_path, db_factory)
    try:
        yield federation
    finally:
        await federation.close()


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The CLI as an auditor runs it (its own event loop, so in a thread here)."""
    code = await asyncio.to_thread(main, list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def rewrite(path: Path, target: Path, change: object) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines = change(lines)  # type: ignore[operator]
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")


async def test_export_verifies_and_tampering_is_named(
        fed: Federation, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    case_id = new_case(DOUMEN)
    for _ in range(3):
        await doumen.send(TAOYUAN, case_id=case_id)
    await taoyuan.send(DOUMEN, "case.accept", case_id=case_id)
    await doumen.wait_delivered(3)
    await taoyuan.wait_delivered(1)
    config = str(doumen.config.keys.dir.parent / "tongban.toml")
    anchor = str(doumen.config.trust.anchor)
    export = tmp_path / "doumen-audit.jsonl"
    code, out, err = await cli(capsys, "audit", "export", "-c", config, "--out", str(export))
    assert code == 0, err
    lines = export.read_text(encoding="utf-8").splitlines()
    entries = [json.loads(line) for line in lines[1:-1]]
    head = json.loads(lines[-1])["head"]
    assert json.loads(base64.urlsafe_b64decode(head.split(".")[0] + "=="))["typ"] == \
        "tongban-audit-head+jwt"
    # Doumen's own: three sent (out) and one received (in), each with its receipt.
    assert sorted(e["direction"] for e in entries if e["type"].startswith("case.")) == \
        ["in", "out", "out", "out"]
    code, out, _ = await cli(capsys, "audit", "verify", "--anchor", anchor, str(export))
    assert code == 0 and "chain intact" in out
    # The file is never overwritten.
    code, _, err = await cli(capsys, "audit", "export", "-c", config, "--out", str(export))
    assert code == 1 and len(err.strip().splitlines()) == 1

    def payload(lines: list[str]) -> list[str]:
        doc = json.loads(lines[2])
        head, body, sig = doc["token"].split(".")
        doc["token"] = f"{head}.{body[:-2]}AA.{sig}"
        return [*lines[:2], json.dumps(doc), *lines[3:]]

    def order(lines: list[str]) -> list[str]:
        return [lines[0], lines[2], lines[1], *lines[3:]]

    def signature(lines: list[str]) -> list[str]:
        doc = json.loads(lines[3])
        head, body, sig = doc["receipt"].split(".")
        doc["receipt"] = f"{head}.{body}.{sig[:-4]}AAAA"
        return [*lines[:3], json.dumps(doc), *lines[4:]]

    for name, change, position in (("payload", payload, 2), ("order", order, 1),
                                   ("signature", signature, 3)):
        bad = tmp_path / f"tampered-{name}.jsonl"
        rewrite(export, bad, change)
        code, out, err = await cli(capsys, "audit", "verify", "--anchor", anchor, str(bad))
        assert code == 1, name
        assert f"entry {position} " in err and len(err.strip().splitlines()) == 1, err


async def test_truncation_backdating_and_a_foreign_head_are_named(
        fed: Federation, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    case_id = new_case(DOUMEN)
    for _ in range(2):
        await doumen.send(TAOYUAN, case_id=case_id)
    await doumen.wait_delivered(2)
    config = str(doumen.config.keys.dir.parent / "tongban.toml")
    anchor = str(doumen.config.trust.anchor)
    export = tmp_path / "doumen-audit.jsonl"
    code, _, err = await cli(capsys, "audit", "export", "-c", config, "--out", str(export))
    assert code == 0, err
    lines = export.read_text(encoding="utf-8").splitlines()
    count = len(lines) - 2

    async def verify(name: str, change: object) -> str:
        bad = tmp_path / f"changed-{name}.jsonl"
        rewrite(export, bad, change)
        code, out, err = await cli(capsys, "audit", "verify", "--anchor", anchor, str(bad))
        assert code == 1, (name, out)
        assert len(err.strip().splitlines()) == 1, err
        return err

    # The last entry dropped, the head kept: every remaining hash still chains.
    err = await verify("last-entry", lambda ls: [*ls[:-2], ls[-1]])
    assert f"head: signed for {count} entries, the export holds {count - 1}" in err
    # The head dropped too, or alone: nothing says the file is complete.
    for name, change in (("no-head", lambda ls: ls[:-1]),
                         ("cut-short", lambda ls: ls[:-2])):
        err = await verify(name, change)
        assert "head: the export does not end with its signed head statement" in err
    # A head that says the right things, signed by another member.
    header = lines[0]
    tip = json.loads(lines[-2])["entry_hash"]
    foreign = sign_head(AuditHead(member=DOUMEN, exported_at=int(fed.clock()), count=count,
                                  tip=tip, header_digest=header_digest(header)),
                        taoyuan.signing_key())
    err = await verify("foreign-head", lambda ls: [*ls[:-1], json.dumps({"head": foreign})])
    assert "head: key" in err and "newest registry version" in err

    # An entry moved back a day, before the alliance existed, and the chain recomputed after
    # it (anyone can rehash an unkeyed chain): its message was signed with a key no registry
    # version in force then lists.
    def backdate(ls: list[str]) -> list[str]:
        prev, rechained = GENESIS, []
        for position, line in enumerate(ls[1:-1]):
            entry = AuditEntry.from_json(json.loads(line))
            if position == 0:
                entry = dataclasses.replace(entry, at=entry.at - 86400)
            entry = dataclasses.replace(entry, prev_hash=prev)
            entry = dataclasses.replace(entry, entry_hash=chain_hash(entry))
            prev = entry.entry_hash
            rechained.append(json.dumps(entry.to_json()))
        return [ls[0], *rechained, ls[-1]]

    err = await verify("backdated", backdate)
    assert "entry 1 " in err and "which no registry version in force at" in err

    code, out, _ = await cli(capsys, "audit", "verify", "--anchor", anchor, str(export))
    assert code == 0 and "chain intact and complete" in out
