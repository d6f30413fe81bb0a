"""docker/: no engine runs here, so the tests check what the compose set-up is made of, and
that the example committed under docker/ is exactly what `tongban compose` writes today."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from gateway.cli.main import build_parser, main
from gateway.config import load_config
from gateway.demo import CITIES, DOUMEN, demo_items
from gateway.deploy import write_compose

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
GATEWAYS = ("kunming", "doumen", "taoyuan", "changde")


def generated(folder: Path) -> dict[str, str]:
    """Every file `tongban compose` owns in `folder`, by relative path (the Dockerfile is
    written by hand)."""
    return {str(p.relative_to(folder)): p.read_text(encoding="utf-8")
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "Dockerfile"}


def test_committed_example_is_what_the_generator_writes(tmp_path: Path) -> None:
    """Regenerate as `tongban compose --out docker` does from the checkout and compare: a
    change to the demo's cities, items or config writer shows up here until docker/ is
    regenerated and committed."""
    out = tmp_path / "docker"
    write_compose(out, build_context="..")
    fresh, committed = generated(out), generated(DOCKER)
    assert sorted(committed) == sorted(fresh), "regenerate docker/: tongban compose --out docker"
    for name, text in fresh.items():
        assert committed[name] == text, f"docker/{name} drifted; regenerate it"
    # No private key, key folder or anchor is committed: the setup service makes them.
    assert not [p for p in DOCKER.rglob("*") if p.suffix == ".pem" or p.name in
                ("keys", "anchor.json", "public-keys.json")]


def test_compose_services() -> None:
    compose = json.loads((DOCKER / "compose.yaml").read_text(encoding="utf-8"))  # JSON is YAML
    services = compose["services"]
    assert set(services) == {"db", "setup", *GATEWAYS}
    assert set(compose["volumes"]) == {"pgdata", "config"}
    dockerfile = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    uid = re.search(r"useradd [^\n]*--uid (\d+)", dockerfile)
    assert uid is not None
    for name in ("setup", *GATEWAYS):
        service = services[name]
        # `docker compose up --build` builds the image from the source tree.
        context = DOCKER / service["build"]["context"]
        assert (context / service["build"]["dockerfile"]).resolve() == DOCKER / "Dockerfile"
        assert "config:/etc/tongban" in service["volumes"]
    for slug in GATEWAYS:
        service = services[slug]
        assert service["user"] == f"{uid.group(1)}:{uid.group(1)}"  # never root
        assert service["command"] == ["serve", "-c", f"/etc/tongban/{slug}/tongban.toml"]
        assert service["depends_on"]["setup"]["condition"] == "service_completed_successfully"
        check = service["healthcheck"]["test"]
        assert check[:2] == ["CMD", "python"] and "/readyz" in check[-1]
        assert not any(v.startswith("./") for v in service["volumes"])  # no host bind mount
    assert services["db"]["healthcheck"]["test"][1] == "pg_isready"
    assert services["setup"]["depends_on"]["db"]["condition"] == "service_healthy"
    # The setup service, as root, hands the named config volume to the gateways' user.
    setup = (DOCKER / "config" / "setup.sh").read_text(encoding="utf-8")
    assert services["setup"]["user"] == "0:0"
    assert setup.rstrip().endswith(f"chown -R {uid.group(1)}:{uid.group(1)} /etc/tongban")
    assert "./config:/tongban-config:ro" in services["setup"]["volumes"]
    databases = (DOCKER / "initdb" / "databases.sql").read_text(encoding="utf-8")
    assert databases.split() == " ".join(f"CREATE DATABASE {s};" for s in GATEWAYS).split()


def test_configs_are_the_demos_on_the_compose_network() -> None:
    for i, slug in enumerate(GATEWAYS):
        config = load_config(DOCKER / "config" / slug / "tongban.toml")  # the real loader
        assert config.database.url == f"postgresql+asyncpg://postgres@db:5432/{slug}"
        assert config.server.host == "0.0.0.0"  # noqa: S104 - inside its container
        assert config.server.endpoint() == f"http://{slug}:8700"
        assert config.registry.url == "http://kunming:8700/registry/v1"
        assert config.is_operator == (i == 0)
        if i < len(CITIES):  # the demo's own cities, by the demo's ids and names
            assert (config.member_id, config.member.name) == \
                (CITIES[i].member_id, CITIES[i].name)


def test_setup_script_admits_the_members_with_the_demos_items() -> None:
    script = (DOCKER / "config" / "setup.sh").read_text(encoding="utf-8")
    assert subprocess.run(["sh", "-n"], input=script.encode(), check=False).returncode == 0
    parser = build_parser()
    commands = [shlex.split(part.strip()) for line in script.replace("\\\n", " ").splitlines()
                for part in re.split(r"\|\||\||&&|>", line)
                if part.strip().startswith("tongban ")]
    for argv in commands:  # every step is a command line tongban itself accepts
        parser.parse_args(argv[1:])
    adds = [argv for argv in commands if argv[1:3] == ["member", "add"]]
    assert [a[5] for a in adds] == ["CN-440403", "CN-430725", "CN-430700"]
    offered = [f"{i.code}:{i.name}:{','.join(m.value for m in i.modes)}"
               for i in demo_items()[DOUMEN.member_id]]
    for argv in adds:
        assert [argv[j + 1] for j, a in enumerate(argv) if a == "--item"] == offered
    assert sum(argv[1:3] == ["db", "upgrade"] for argv in commands) == 4
    assert sum(argv[1:3] == ["alliance", "init"] for argv in commands) == 1


def test_cli_writes_only_into_a_new_folder(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "federation"
    assert main(["compose", "--out", str(out), "--source", str(ROOT)]) == 0
    compose = json.loads((out / "compose.yaml").read_text(encoding="utf-8"))
    context = out / compose["services"]["setup"]["build"]["context"]
    assert context.resolve() == ROOT
    assert main(["compose", "--out", str(out)]) == 1  # never over an earlier set-up
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["compose", "--out", str(tmp_path / "x"), "--source", str(tmp_path)]) == 1


def test_dockerfile_is_slim_and_unprivileged() -> None:
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    assert "FROM python:3.11-slim" in text
    assert "\nUSER tongban\n" in text and "useradd --system" in text
    assert "/readyz" in text  # the health check asks for readiness, not mere liveness
