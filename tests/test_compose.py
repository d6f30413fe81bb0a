"""docker/: no engine runs here, so the test checks what the compose set-up is made of."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def test_compose_configs_and_services(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "compose"
    assert main(["compose", "--out", str(out)]) == 0
    compose = json.loads((out / "compose.yaml").read_text(encoding="utf-8"))  # JSON is YAML
    services = compose["services"]
    assert {"db", "setup", "kunming", "doumen", "taoyuan", "changde"} <= set(services)
    for slug in ("kunming", "doumen", "taoyuan", "changde"):
        config = load_config(out / "config" / slug / "tongban.toml")  # the real loader
        assert config.database.url.startswith("postgresql+asyncpg://postgres@db:5432/")
        assert config.server.host == "0.0.0.0"  # noqa: S104 - inside its container
        assert config.server.endpoint() == f"http://{slug}:8700"
        assert services[slug]["command"] == ["serve", "-c",
                                             f"/etc/tongban/{slug}/tongban.toml"]
        assert services[slug]["depends_on"]["setup"]["condition"] == \
            "service_completed_successfully"
    assert load_config(out / "config" / "kunming" / "tongban.toml").is_operator
    setup = (out / "config" / "setup.sh").read_text(encoding="utf-8")
    assert setup.count("tongban db upgrade") == 4 and "tongban alliance init" in setup
    assert setup.count("tongban member add") == 3
    databases = (out / "initdb" / "databases.sql").read_text(encoding="utf-8")
    assert databases.count("CREATE DATABASE") == 4
    # Writing into a folder that holds something is refused, in one line.
    assert main(["compose", "--out", str(out)]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_dockerfile_is_slim_and_unprivileged() -> None:
    text = (ROOT / "docker" / "Dockerfile").read_text(encoding="utf-8")
    assert "FROM python:3.11-slim" in text
    assert "\nUSER tongban\n" in text and "useradd --system" in text
    assert "/readyz" in text  # the health check asks for readiness, not mere liveness
