"""docker/: no engine runs here, so the tests check what the compose set-up is made of, and
that the example committed under docker/ is exactly what `tongban compose` writes today."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from adapters.reference.__main__ import parse as parse_reference
from gateway import adapter_loading
from gateway.cli.main import build_parser, main
from gateway.config import check_serving, load_config
from gateway.demo import CITIES, DOUMEN, EXAMPLES, LOCAL_SYSTEMS, TAOYUAN, demo_items
from gateway.deploy import write_compose
from gateway.localfed import City
from trust.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
GATEWAYS = ("kunming", "doumen", "taoyuan", "changde")
# The members whose authority keeps its own case system, as in the demo: service -> city.
LOCAL = {"taoyuan-local": TAOYUAN, "doumen-local": DOUMEN}
# The only form a secret may take in compose.yaml: compose interpolates it from .env or the
# shell, and refuses to start without it.
FROM_ENV = re.compile(r"\$\{([A-Z][A-Z0-9_]*):\?[^}$]+\}")


def generated(folder: Path) -> dict[str, str]:
    """Every file `tongban compose` owns in `folder`, by relative path (the Dockerfile is
    written by hand; .env is the operator's own, holding the secrets, never committed)."""
    return {str(p.relative_to(folder)): p.read_text(encoding="utf-8")
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in ("Dockerfile", ".env")}


def compose_file() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    return loaded  # JSON is YAML


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
    compose = compose_file()
    services = compose["services"]
    assert set(services) == {"db", "setup", *GATEWAYS, *LOCAL}
    assert set(compose["volumes"]) == {"pgdata", "config", *LOCAL}
    dockerfile = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    uid = re.search(r"useradd [^\n]*--uid (\d+)", dockerfile)
    assert uid is not None
    for name in ("setup", *GATEWAYS, *LOCAL):
        service = services[name]
        # `docker compose up --build` builds the image from the source tree.
        context = DOCKER / service["build"]["context"]
        assert (context / service["build"]["dockerfile"]).resolve() == DOCKER / "Dockerfile"
    for name in ("setup", *GATEWAYS):
        assert "config:/etc/tongban" in services[name]["volumes"]
    for slug in GATEWAYS:
        service = services[slug]
        assert service["user"] == f"{uid.group(1)}:{uid.group(1)}"  # never root
        assert service["command"] == ["serve", "-c", f"/etc/tongban/{slug}/tongban.toml"]
        assert service["depends_on"]["setup"]["condition"] == "service_completed_successfully"
        # A gateway with an adapter starts once its case system answers; none waits on
        # another's, and Changde (no adapter) on none.
        assert set(service["depends_on"]) - {"setup"} == \
            {f"{slug}-local"} & set(LOCAL)
        for name in set(service["depends_on"]) - {"setup"}:
            assert service["depends_on"][name]["condition"] == "service_healthy"
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


def test_reference_systems_are_the_demos_on_the_compose_network() -> None:
    services = compose_file()["services"]
    home = re.search(r"useradd [^\n]*--home-dir (\S+)",
                     (DOCKER / "Dockerfile").read_text(encoding="utf-8"))
    assert home is not None
    for name, city in LOCAL.items():
        service = services[name]
        assert service["user"] == services[city.slug]["user"]  # the image's user, not root
        assert service["entrypoint"] == ["python", "-m", "adapters.reference"]
        args = parse_reference(service["command"])  # a command line it accepts
        face, _mapping, title = LOCAL_SYSTEMS[city.member_id]
        assert (args.host, args.title) == ("0.0.0.0", title)  # noqa: S104 - in its container
        # Its SQLite file lives in its own named volume, mounted over the image user's home:
        # Docker fills a new volume from the image with that folder's owner, so it is writable.
        assert service["volumes"] == [f"{name}:{home.group(1)}"]
        assert args.db.parent == Path(home.group(1))
        check = service["healthcheck"]["test"]
        assert check[:2] == ["CMD", "python"] and f":{args.port}/health'" in check[-1]
        assert all(p.startswith("127.0.0.1:") and p.endswith(f":{args.port}")
                   for p in service["ports"])  # the clerk page: host loopback only
        # The gateway's adapter reaches it by service name, on the port it listens on.
        config = load_config(DOCKER / "config" / city.slug / "tongban.toml")
        assert config.adapter.name == face
        assert config.adapter.settings["base_url"] == f"http://{name}:{args.port}"
        environment = service.get("environment", {})
        if face == "rest":  # pushes its feed, signed, to its gateway's webhook
            assert args.webhook == f"{config.server.endpoint()}/adapters/v1/events"
            # The system and the gateway read the same secrets from the same variables.
            assert {args.api_key_env, args.webhook_secret_env} == \
                set(config.adapter.secrets.values())
        else:  # polled, without credentials, as in the demo
            assert (args.webhook, args.api_key_env, config.adapter.secrets) == (None, None, {})
        assert set(environment) == {args.api_key_env, args.webhook_secret_env} - {None}
        assert set(services[city.slug].get("environment", {})) == \
            set(config.adapter.secrets.values())


@pytest.mark.parametrize("city", [DOUMEN, TAOYUAN], ids=lambda c: c.slug)
def test_adapters_pass_the_gateways_own_check(city: City,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """As `tongban serve` checks an adapter at start: the config loader, the adapter's own
    check of its settings (the mapping file next to the config) and its secrets."""
    folder = DOCKER / "config" / city.slug
    mapping = (folder / "local-system.toml").read_text(encoding="utf-8")
    assert mapping == (EXAMPLES / LOCAL_SYSTEMS[city.member_id][1]).read_text(encoding="utf-8")
    config = load_config(folder / "tongban.toml")
    check_serving(config)
    classes = adapter_loading.discover()
    for env in config.adapter.secrets.values():
        monkeypatch.delenv(env, raising=False)
    if config.adapter.secrets:  # the file names the variables, it holds no value
        with pytest.raises(ConfigError, match=r"environment variable TONGBAN_\w+ is not set"):
            adapter_loading.check(config, classes)
    for env in config.adapter.secrets.values():
        monkeypatch.setenv(env, f"value-of-{env}")
    adapter_loading.check(config, classes)
    # The section is the demo's own (gateway/demo.py builds both), but for the base URL.
    section = tomllib.loads((folder / "tongban.toml").read_text(encoding="utf-8"))["adapter"]
    assert section["settings"]["mapping"] == "local-system.toml"
    assert (section["name"], "secrets" in section) == \
        (LOCAL_SYSTEMS[city.member_id][0], LOCAL_SYSTEMS[city.member_id][0] == "rest")
    for slug in ("kunming", "changde"):  # no adapter: officers decide over the handling API
        assert not load_config(DOCKER / "config" / slug / "tongban.toml").adapter.name
        assert not (DOCKER / "config" / slug / "local-system.toml").exists()


def test_no_secret_values_in_the_committed_set_up() -> None:
    """Secrets reach the containers only by compose interpolation from the operator's .env
    (or shell); the generated files name the variables and hold no value."""
    services = compose_file()["services"]
    named: set[str] = set()
    for service in services.values():
        for variable, value in service.get("environment", {}).items():
            if variable == "POSTGRES_HOST_AUTH_METHOD":
                continue
            match = FROM_ENV.fullmatch(value)
            assert match is not None and match.group(1) == variable, (variable, value)
            named.add(variable)
    assert named, "the REST system's secrets are passed by environment"
    example = (DOCKER / ".env.example").read_text(encoding="utf-8").splitlines()
    settings = [line for line in example if line and not line.startswith("#")]
    assert sorted(settings) == sorted(f"{v}=" for v in named)  # names, empty values
    for path in (DOCKER / "config").rglob("tongban.toml"):
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        for env in doc.get("adapter", {}).get("secrets", {}).values():
            assert env in named  # a variable's name, which compose passes in
    git = shutil.which("git")
    if git is not None and (ROOT / ".git").exists():
        tracked = subprocess.run([git, "ls-files", "docker"], cwd=ROOT, check=True,
                                 capture_output=True, text=True).stdout.split()
        assert "docker/.env" not in tracked


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
