"""Config: sane defaults, relative paths, and bad values named by their option."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from gateway.config import load_config, parse_config
from trust.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tongban.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_config_gets_defaults_and_resolves_paths(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[member]\nid = "CN-440403"\n'))
    assert config.member_id == "CN-440403"
    assert config.keys.dir == tmp_path / "keys"
    assert config.trust.anchor == tmp_path / "anchor.json"
    assert config.database.url == f"sqlite+aiosqlite:///{tmp_path / 'tongban.db'}"
    assert config.federation.message_ttl == 300
    assert config.federation.max_message_bytes == 1024 * 1024
    assert config.server.endpoint() == "http://127.0.0.1:8700"
    assert config.registry_url() == "http://127.0.0.1:8700/registry/v1"
    assert not config.is_operator


def test_relative_sqlite_path_is_relative_to_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[member]\nid = "CN-440403"\n[database]\n'
                                         'url = "sqlite+aiosqlite:///data/d.db"\n'))
    assert config.database.url == f"sqlite+aiosqlite:///{tmp_path / 'data/d.db'}"


@pytest.mark.parametrize(("text", "message"), [
    ('[member]\nid = "440403"\n', "member.id: String should match pattern"),
    ('[member]\nid = "CN-440403"\n[server]\nport = 70000\n', "server.port"),
    ('[member]\nid = "CN-440403"\n[delivery]\nmax_backoff = -1\n', "delivery.max_backoff"),
    ('[member]\nid = "CN-440403"\n[federation]\nmessage_ttl = 301\n', "federation.message_ttl"),
    ('[member]\nid = "CN-440403"\n[delivery]\nretries = 3\n', "delivery.retries: unknown option"),
    ('[member]\nid = "CN-440403"\n[operator]\nalliance = "Yun Shang"\n', "operator.alliance"),
    ('[server]\nport = 1\n', "member: Field required"),
    ('[member\nid=', "not valid TOML"),
    ('[member]\nid = "CN-440403"\n[peers."CN-1"]\nendpoint = "x"\n', "peers.CN-1"),
])
def test_bad_values_name_the_option(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert message in info.value.detail
    assert str(tmp_path) in info.value.detail


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.toml")


def test_passphrase_comes_from_environment_not_toml(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config({"member": {"id": "CN-440403"},
                           "keys": {"passphrase_env": "TB_TEST_PASS"}}, source="t", base=tmp_path)
    monkeypatch.delenv("TB_TEST_PASS", raising=False)
    with pytest.raises(ConfigError, match=r"keys\.passphrase_env"):
        config.key_passphrase()
    monkeypatch.setenv("TB_TEST_PASS", "s3cret")
    assert config.key_passphrase() == b"s3cret"
    with pytest.raises(ConfigError, match="unknown option"):
        parse_config({"member": {"id": "CN-440403"}, "keys": {"passphrase": "x"}}, source="t",
                     base=tmp_path)


def test_unsupported_database_driver_fails_at_start(tmp_path: Path) -> None:
    from gateway.db.engine import make_engine

    with pytest.raises(ConfigError, match=r"database\.url"):
        make_engine("mysql+pymysql://root@localhost/x")


def test_database_password_comes_from_environment_or_file_not_toml(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pg = "postgresql+asyncpg://tongban@db.example:5432/doumen"
    with pytest.raises(ConfigError, match=r"database\.url: holds a password") as info:
        load_config(write(tmp_path, '[member]\nid = "CN-440403"\n[database]\n'
                                    'url = "postgresql+asyncpg://tongban:hunter2@db/doumen"\n'))
    assert "hunter2" not in info.value.detail and str(tmp_path) in info.value.detail
    text = f'[member]\nid = "CN-440403"\n[database]\nurl = "{pg}"\npassword_env = "TB_TEST_DB"\n'
    monkeypatch.delenv("TB_TEST_DB", raising=False)
    with pytest.raises(ConfigError, match=r"database\.password_env: .*TB_TEST_DB"):
        load_config(write(tmp_path, text))
    monkeypatch.setenv("TB_TEST_DB", "p@ss:w/rd")  # characters a URL must escape
    url = make_url(load_config(write(tmp_path, text)).database.url)
    assert (url.username, url.password, url.host, url.database) == (
        "tongban", "p@ss:w/rd", "db.example", "doumen")
    (tmp_path / "db.secret").write_text("from-a-file\n", encoding="utf-8")
    config = load_config(write(tmp_path, f'[member]\nid = "CN-440403"\n[database]\nurl = "{pg}"\n'
                                         'password_file = "db.secret"\n'))
    assert make_url(config.database.url).password == "from-a-file"
    with pytest.raises(ConfigError, match=r"database\.password_file"):
        load_config(write(tmp_path, f'[member]\nid = "CN-440403"\n[database]\nurl = "{pg}"\n'
                                    'password_file = "missing.secret"\n'))
    with pytest.raises(ConfigError, match="SQLite has no password"):
        load_config(write(tmp_path, '[member]\nid = "CN-440403"\n[database]\n'
                                    'password_file = "db.secret"\n'))
