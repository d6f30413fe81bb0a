"""The audit trail: every message sent and received, with its receipt, in a hash chain that an
auditor checks offline; any tampering is named at the first bad entry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fedkit import DOUMEN, TAOYUAN, DbFactory, Federation, build_federation, new_case

from gateway.cli.main import main


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
    entries = [json.loads(line) for line in lines[1:]]
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
