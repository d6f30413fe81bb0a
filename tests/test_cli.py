"""The CLI: the admin verbs work end to end, and bad input is one line and a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.keystore import KeyStore


def operator_config(tmp_path: Path) -> Path:
    folder = tmp_path / "kunming"
    folder.mkdir()
    path = folder / "tongban.toml"
    path.write_text('[member]\nid = "CN-530100"\nname = "昆明市"\n'
                    '[server]\nport = 18700\n[operator]\nalliance = "yunshangban"\n',
                    encoding="utf-8")
    return path


def member_config(tmp_path: Path) -> Path:
    folder = tmp_path / "doumen"
    folder.mkdir()
    path = folder / "tongban.toml"
    path.write_text('[member]\nid = "CN-440403"\n[server]\nport = 18701\n'
                    '[registry]\nurl = "http://127.0.0.1:18700/registry/v1"\n', encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(result: tuple[int, str, str], fragment: str) -> None:
    code, _, err = result
    assert code == 1
    lines = [line for line in err.splitlines() if not line.startswith("20")]  # drop log lines
    assert len(lines) == 1, err
    assert lines[0].startswith("tongban: error: ")
    assert fragment in lines[0]


def test_alliance_lifecycle_through_the_cli(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    op = operator_config(tmp_path)
    member = member_config(tmp_path)
    code, out, _ = run(capsys, "alliance", "init", "-c", str(op), "--name", "昆明市")
    assert code == 0 and "registry version 1 published" in out
    anchor = op.parent / "anchor.json"
    assert json.loads(anchor.read_text())["operator"] == "CN-530100"

    code, out, _ = run(capsys, "key", "init", "-c", str(member))
    assert code == 0 and "created EdDSA key" in out
    jwks = tmp_path / "doumen.jwks"
    store = KeyStore(member.parent / "keys")
    store.load()
    jwks.write_text(json.dumps(store.public_jwks()))

    code, out, _ = run(capsys, "member", "add", "-c", str(op), "CN-440403", "--name", "斗门区",
                       "--endpoint", "http://127.0.0.1:18701", "--keys-file", str(jwks),
                       "--item", "CN-YDJY-0001:异地就医备案:online,proxy")
    assert code == 0 and "registry version 2" in out
    code, out, _ = run(capsys, "member", "suspend", "-c", str(op), "CN-440403")
    assert code == 0 and "suspended" in out and "version 3" in out
    code, out, _ = run(capsys, "member", "list", "-c", str(op))
    assert "CN-440403  suspended" in out
    code, out, _ = run(capsys, "member", "reinstate", "-c", str(op), "CN-440403")
    assert code == 0 and "active" in out
    code, out, _ = run(capsys, "registry", "publish", "-c", str(op))
    assert code == 0 and "version 5" in out
    code, out, _ = run(capsys, "registry", "show", "-c", str(op))
    shown = json.loads(out)
    assert shown["version"] == 5
    assert [m["status"] for m in shown["members"]] == ["active", "active"]
    assert shown["members"][1]["items"][0]["modes"] == ["online", "proxy"]

    # Offline verification of an exported version against the anchor.
    code, out, _ = run(capsys, "registry", "show", "-c", str(op), "--version", "2")
    assert json.loads(out)["version"] == 2
    code, out, _ = run(capsys, "registry", "show", "-c", str(op), "--jws")
    exported = tmp_path / "v5.jwt"
    exported.write_text(out)
    code, out, _ = run(capsys, "registry", "verify", "--anchor", str(anchor), str(exported))
    assert code == 0 and "signature valid" in out and "version 5" in out
    tampered = tmp_path / "tampered.jwt"
    token = exported.read_text()
    tampered.write_text(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))
    assert_one_line_error(run(capsys, "registry", "verify", "--anchor", str(anchor),
                              str(tampered)), "signature")

    # Bad input changes nothing.
    assert_one_line_error(run(capsys, "member", "add", "-c", str(op), "CN-12", "--endpoint",
                              "http://x", "--keys-file", str(jwks)), "id")
    assert_one_line_error(run(capsys, "member", "suspend", "-c", str(op), "CN-999999"),
                          "not a member")
    assert_one_line_error(run(capsys, "member", "add", "-c", str(op), "CN-430725",
                              "--endpoint", "http://127.0.0.1:1", "--keys-file",
                              str(tmp_path / "missing.jwks")), "cannot read")
    assert_one_line_error(run(capsys, "member", "add", "-c", str(op), "CN-430725",
                              "--endpoint", "http://127.0.0.1:1", "--keys-file", str(jwks),
                              "--item", "bad"), "CODE:NAME:MODES")
    assert_one_line_error(run(capsys, "alliance", "init", "-c", str(op)), "already initialised")
    code, out, _ = run(capsys, "registry", "show", "-c", str(op))
    assert json.loads(out)["version"] == 5  # nothing was published by the failures


def test_key_rotation_verbs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    member = member_config(tmp_path)
    assert run(capsys, "key", "init", "-c", str(member))[0] == 0
    assert_one_line_error(run(capsys, "key", "init", "-c", str(member)), "already holds keys")
    assert run(capsys, "key", "rotate", "-c", str(member))[0] == 0
    code, out, _ = run(capsys, "key", "list", "-c", str(member))
    assert code == 0
    kids = [line.split()[0] for line in out.splitlines()]
    assert len(kids) == 2
    assert run(capsys, "key", "retire", "-c", str(member), "--", kids[0])[0] == 0
    _, out, _ = run(capsys, "key", "list", "-c", str(member))
    assert [line.split()[0] for line in out.splitlines()] == kids[1:]
    assert_one_line_error(run(capsys, "key", "retire", "-c", str(member), "--", kids[1]),
                          "only key")
    assert_one_line_error(run(capsys, "key", "retire", "-c", str(member), "nope"), "no key")


def test_config_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(run(capsys, "serve", "-c", str(tmp_path / "none.toml")),
                          "cannot read config")
    bad = tmp_path / "bad.toml"
    bad.write_text('[member]\nid = "CN-440403"\n[server]\nport = "eighty"\n')
    assert_one_line_error(run(capsys, "serve", "-c", str(bad)), "server.port")
    assert_one_line_error(run(capsys, "config", "check", "-c", str(bad)), "server.port")
    good = member_config(tmp_path)
    assert_one_line_error(run(capsys, "serve", "-c", str(good)), "no keys")
    assert_one_line_error(run(capsys, "member", "list", "-c", str(good)), "[operator]")


def test_send_validates_before_queueing(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    member = member_config(tmp_path)
    assert_one_line_error(run(capsys, "send", "-c", str(member), "--to", "CN-430725",
                              "--body", "{not json"), "--body is not JSON")
    assert_one_line_error(run(capsys, "send", "-c", str(member), "--to", "CN-430725",
                              "--case", "nope"), "--case")


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["member", "frobnicate"])
    assert info.value.code == 2


async def test_send_verb_delivers_through_the_running_gateway(tmp_path: Path,
                                                              db_factory: object) -> None:
    """`tongban send` queues in the member's outbox; the running gateway delivers it."""
    import asyncio
    import sys

    from fedkit import DOUMEN, TAOYUAN, build_federation

    fed = await build_federation(tmp_path, db_factory)  # type: ignore[arg-type]
    try:
        config = fed[DOUMEN].config.keys.dir.parent / "tongban.toml"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli.main", "send", "-c", str(config), "--to", TAOYUAN,
            "--wait", "30", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, err.decode()
        assert "delivered: receipt status accepted, verified" in out.decode()
        assert "answered by CN-430725: cert.verify_response (invalid" in out.decode()
        [stored] = [e for e in await fed[TAOYUAN].inbox(cases_only=False)
                    if e.type.startswith("cert.")]
        assert stored.iss == DOUMEN and stored.type == "cert.verify_request"
        [answer] = [e for e in await fed[DOUMEN].inbox(cases_only=False)
                    if e.type.startswith("cert.")]
        assert answer.iss == TAOYUAN and answer.type == "cert.verify_response"
    finally:
        await fed.close()


def test_outbox_verbs_list_and_requeue_dead_letters(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio
    import time as _time

    from gateway.db.engine import create_schema, make_engine
    from gateway.db.repos import OutboxRepo
    from gateway.federation.outbox import enqueue

    member = member_config(tmp_path)
    url = f"sqlite+aiosqlite:///{member.parent / 'tongban.db'}"

    async def park() -> int:
        engine = make_engine(url)
        try:
            await create_schema(engine)
            repo = OutboxRepo(engine)
            async with engine.begin() as conn:
                entry = await enqueue(conn, repo, dest="CN-430725", type_="case.submit",
                                      body={}, case_id=None, now=_time.time())
                await repo.mark_attempt_failed(conn, entry.id, error="HTTP 422 invalid-body",
                                               now=_time.time(), dead=True)
            return entry.id
        finally:
            await engine.dispose()

    row = asyncio.run(park())
    code, out, _ = run(capsys, "outbox", "list", "-c", str(member), "--state", "dead")
    assert code == 0 and f"#{row}" in out and "invalid-body" in out
    assert_one_line_error(run(capsys, "outbox", "retry", "-c", str(member), "--id", "999"),
                          "not a dead letter")
    code, out, _ = run(capsys, "outbox", "retry", "-c", str(member), "--id", str(row))
    assert code == 0 and out.startswith("1 dead letter(s)")
    _, out, _ = run(capsys, "outbox", "list", "-c", str(member), "--state", "pending")
    assert f"#{row}" in out
    _, out, _ = run(capsys, "outbox", "list", "-c", str(member), "--state", "dead")
    assert out == ""


def test_database_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "pg"
    folder.mkdir()
    config = folder / "tongban.toml"
    config.write_text('[member]\nid = "CN-440403"\n[database]\n'
                      'url = "postgresql+asyncpg://postgres@127.0.0.1:5432/no_such_db_tongban"\n')
    assert_one_line_error(run(capsys, "outbox", "list", "-c", str(config)), "database")


def test_db_verbs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    member = member_config(tmp_path)
    code, out, _ = run(capsys, "db", "status", "-c", str(member))
    assert code == 0 and "database schema empty" in out and "behind" in out
    code, out, _ = run(capsys, "db", "upgrade", "-c", str(member))
    assert code == 0 and "upgraded from empty to" in out
    code, out, _ = run(capsys, "db", "upgrade", "-c", str(member))
    assert code == 0 and "already at" in out
    code, out, _ = run(capsys, "db", "status", "-c", str(member))
    assert code == 0 and "(current)" in out


def test_whole_numbers_are_ascii_digits() -> None:
    from gateway.numbers import whole_number

    assert whole_number("42") == 42
    assert whole_number("0") == 0
    for text in (None, "", "²", "١٢", "-1", "1.5", " 1", "x", str(2**62 + 1)):
        assert whole_number(text) is None, text
    assert whole_number("11", most=10) is None
