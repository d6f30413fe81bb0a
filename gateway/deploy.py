"""`tongban compose`: a docker compose set-up of an operator and three members on PostgreSQL.

It is the local demo moved onto a compose network: the demo's cities (gateway/demo.py) plus a
third member, each offering the demo's items (the seed catalog), with config files written by
the demo's own `write_configs` (gateway/localfed.py), only listening on all interfaces and
pointed at the compose service names and a PostgreSQL service. A one-shot `setup` service
takes the steps an alliance admin and the member admins take (`db upgrade`, `key init`,
`alliance init`, `member add`); the gateways start once it has finished.

The demo's region adapters come along: Taoyuan's and Doumen's authorities keep their own case
system, each a reference system service (`<slug>-local`) with the `[adapter]` section, mapping
file and command line the demo builds (gateway/demo.py), only reached by service name. Its
SQLite database lives in a named volume mounted over the image user's home, which Docker fills
from the image with that folder's owner, so the unprivileged user can write it. The secrets the
REST system and Taoyuan's gateway share are environment variables that compose takes from
`.env` next to compose.yaml or the shell (`${VAR:?...}`: compose refuses to start without
them); this generator writes only their names (`.env.example`), never values, so the committed
example under docker/ holds none. Changde keeps no adapter: its officers decide through the
handling API.

The config files are copied from the generated folder (mounted read-only) into a named volume
at first start, and the setup service gives that volume to the image's unprivileged user: a
bind mount of the host folder would be owned by the host's user, and the gateways, which run as
uid 10001, could not write their keys or read their anchor there. Private keys are made inside
the volume by the setup service, never written by this generator. The compose file is written
as JSON, which is valid YAML.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from gateway.demo import (
    CITIES,
    LOCAL_SYSTEMS,
    adapter_settings,
    copy_mapping,
    demo_items,
    reference_args,
)
from gateway.localfed import City, LocalGateway, write_configs
from trust.errors import TongbanError

# The demo's operator and members, and one more member: a federation of four. The operator
# comes first (write_configs and setup.sh take it from there).
CHANGDE = City("CN-430700", "常德市", "changde")
COMPOSE_CITIES = (*CITIES, CHANGDE)
PORT = 8700
IMAGE = "tongban:latest"
UID = 10001  # the `tongban` user of docker/Dockerfile
CONFIG = "/etc/tongban"  # the named volume the gateways read
TEMPLATE = "/tongban-config"  # the generated folder, mounted read-only into setup
LOCAL_PORT = 8600  # a reference case system's port in its container
LOCAL_HOST_PORT = 8710  # its clerk page on the host's loopback, one port per system
LOCAL_HOME = "/var/lib/tongban"  # the image user's home (docker/Dockerfile), owned by it
SECRETS_FILE = ".env.example"


def _probe(port: int, path: str) -> str:
    return ("import urllib.request,sys; sys.exit(0 if urllib.request.urlopen("
            f"'http://127.0.0.1:{port}{path}').status == 200 else 1)")


HEALTHCHECK = _probe(PORT, "/readyz")


def address(gateway: LocalGateway) -> str:
    """A gateway's URL on the compose network: its service name."""
    return f"http://{gateway.city.slug}:{PORT}"


def local_address(city: City) -> str:
    """The URL of a member's own case system on the compose network: its service name."""
    return f"http://{local_service(city)}:{LOCAL_PORT}"


def local_service(city: City) -> str:
    return f"{city.slug}-local"


def _from_env(variable: str) -> str:
    """A compose interpolation, never a value: compose stops with this message when the
    operator has not set the variable (in .env or the shell)."""
    return f"${{{variable}:?set {variable} in .env next to compose.yaml}}"


def _gateway(city: City) -> LocalGateway:
    """A gateway config as the demo's, on compose's network and PostgreSQL."""
    local_urls = {city.member_id: local_address(city)}
    return LocalGateway(city, PORT, f"postgresql+asyncpg://postgres@db:5432/{city.slug}",
                        settings={**adapter_settings(city, local_urls),
                                  "federation": {"development_mode": True}})


def _secret_variables(cities: tuple[City, ...]) -> list[str]:
    """Every environment variable an adapter or a reference system reads a secret from."""
    names: list[str] = []
    for city in cities:
        adapter = _gateway(city).settings.get("adapter", {})
        names += [v for v in adapter.get("secrets", {}).values() if v not in names]
    return names


def _item_spec(code: str, name: str, modes: tuple[str, ...]) -> str:
    return f"{code}:{name}:{','.join(modes)}"


def _setup_script(cities: tuple[City, ...]) -> str:
    """Idempotent: a restarted project skips what the first start did."""
    operator, members = cities[0], cities[1:]
    items = demo_items(members)
    lines = ["set -eu", f"cp -Rn {TEMPLATE}/. {CONFIG}/", f"cd {CONFIG}"]
    for city in cities:
        lines.append(f"tongban db upgrade -c {city.slug}/tongban.toml")
    lines.append(f"[ -f {operator.slug}/anchor.json ] || tongban alliance init "
                 f"-c {operator.slug}/tongban.toml --name {shlex.quote(operator.name)}")
    for city in members:
        lines.append(f"[ -d {city.slug}/keys ] || tongban key init -c {city.slug}/tongban.toml")
        lines.append(f"tongban key list -c {city.slug}/tongban.toml --jwks > "
                     f"{city.slug}/public-keys.json")
        lines.append(f"cp {operator.slug}/anchor.json {city.slug}/anchor.json")
    for city in members:
        offered = "".join(
            " \\\n  --item "
            + shlex.quote(_item_spec(i.code, i.name, tuple(m.value for m in i.modes)))
            for i in items[city.member_id])
        lines.append(f"tongban member list -c {operator.slug}/tongban.toml | grep -q "
                     f"{city.member_id} || tongban member add -c {operator.slug}/tongban.toml "
                     f"{city.member_id} --name {shlex.quote(city.name)} "
                     f"--endpoint http://{city.slug}:{PORT} "
                     f"--keys-file {city.slug}/public-keys.json{offered}")
    # Made as root; read and written by the gateways as the image's user from here on.
    lines.append(f"chown -R {UID}:{UID} {CONFIG}")
    return "\n".join(lines) + "\n"


def _compose(cities: tuple[City, ...], build_context: str) -> dict[str, Any]:
    build = {"context": build_context, "dockerfile": "docker/Dockerfile"}
    services: dict[str, Any] = {
        "db": {"image": "postgres:15", "environment": {"POSTGRES_HOST_AUTH_METHOD": "trust"},
               "volumes": ["./initdb:/docker-entrypoint-initdb.d:ro",
                           "pgdata:/var/lib/postgresql/data"],
               "healthcheck": {"test": ["CMD", "pg_isready", "-U", "postgres"],
                               "interval": "5s", "timeout": "3s", "retries": 10}},
        "setup": {"image": IMAGE, "build": build, "user": "0:0",
                  "entrypoint": ["sh", f"{TEMPLATE}/setup.sh"],
                  "volumes": [f"./config:{TEMPLATE}:ro", f"config:{CONFIG}"],
                  "depends_on": {"db": {"condition": "service_healthy"}}},
    }
    volumes: dict[str, Any] = {"pgdata": {}, "config": {}}
    with_system = [city for city in cities if city.member_id in LOCAL_SYSTEMS]
    for i, city in enumerate(with_system):
        name = local_service(city)
        args = reference_args(city, port=LOCAL_PORT, db=f"{LOCAL_HOME}/local-system.sqlite",
                              gateway_url=address(_gateway(city)), host="0.0.0.0")  # noqa: S104
        variables = _secret_variables((city,))  # the ones its gateway's adapter shares
        services[name] = {
            "image": IMAGE, "build": build, "user": f"{UID}:{UID}",
            "entrypoint": ["python", "-m", "adapters.reference"], "command": args,
            **({"environment": {v: _from_env(v) for v in variables}} if variables else {}),
            "volumes": [f"{name}:{LOCAL_HOME}"],
            # The clerk page has no login of its own: on the host's loopback only.
            "ports": [f"127.0.0.1:{LOCAL_HOST_PORT + i}:{LOCAL_PORT}"],
            "healthcheck": {"test": ["CMD", "python", "-c", _probe(LOCAL_PORT, "/health")],
                            "interval": "10s", "timeout": "3s", "retries": 5,
                            "start_period": "10s"},
            "restart": "unless-stopped",
        }
        volumes[name] = {}
    for i, city in enumerate(cities):
        depends: dict[str, Any] = {"setup": {"condition": "service_completed_successfully"}}
        if city in with_system:  # its adapter starts calling its case system at once
            depends[local_service(city)] = {"condition": "service_healthy"}
        service: dict[str, Any] = {
            "image": IMAGE, "build": build, "user": f"{UID}:{UID}",
            "command": ["serve", "-c", f"{CONFIG}/{city.slug}/tongban.toml"],
        }
        if variables := _secret_variables((city,)):
            service["environment"] = {v: _from_env(v) for v in variables}
        services[city.slug] = {
            **service,
            "volumes": [f"config:{CONFIG}"],
            "depends_on": depends,
            "ports": [f"{PORT + i}:{PORT}"],
            "healthcheck": {"test": ["CMD", "python", "-c", HEALTHCHECK],
                            "interval": "15s", "timeout": "3s", "retries": 5,
                            "start_period": "20s"},
            "restart": "unless-stopped",
        }
    return {"name": "tongban", "services": services, "volumes": volumes}


def _secrets_example(cities: tuple[City, ...]) -> str:
    """The names of the secrets compose needs, without values: the operator copies it to
    .env and fills it in; the values never enter a generated (or committed) file."""
    lines = ["# Secrets shared by a member's gateway (adapter.secrets) and its own case system.",
             "# Copy to .env next to compose.yaml (never commit it) and give each a random value,",
             "# e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"]
    return "\n".join([*lines, *(f"{v}=" for v in _secret_variables(cities))]) + "\n"


def source_tree() -> Path | None:
    """The checkout tongban runs from, if it holds docker/Dockerfile (an installed wheel
    does not)."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "docker" / "Dockerfile").is_file() else None


def write_compose(out: Path, *, build_context: str) -> list[Path]:
    """Write the set-up into `out`; `build_context` is the source tree (holding
    docker/Dockerfile) as seen from `out`, for `docker compose up --build`."""
    targets = [out / "compose.yaml", out / "config", out / "initdb", out / SECRETS_FILE]
    taken = [p for p in targets if p.exists()]
    if taken:
        raise TongbanError(f"{taken[0]} exists; write the set-up into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    gateways = [_gateway(city) for city in COMPOSE_CITIES]
    paths = write_configs(out / "config", gateways[0], gateways[1:],
                          host="0.0.0.0", address=address)  # noqa: S104 - in its container
    written = list(paths.values())
    written += [copy_mapping(city, out / "config" / city.slug)
                for city in COMPOSE_CITIES if city.member_id in LOCAL_SYSTEMS]
    script = out / "config" / "setup.sh"
    script.write_text(_setup_script(COMPOSE_CITIES), encoding="utf-8")
    initdb = out / "initdb"
    initdb.mkdir()
    sql = initdb / "databases.sql"
    sql.write_text("".join(f"CREATE DATABASE {c.slug};\n" for c in COMPOSE_CITIES),
                   encoding="utf-8")
    compose_file = out / "compose.yaml"
    compose_file.write_text(json.dumps(_compose(COMPOSE_CITIES, build_context),
                                       ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    example = out / SECRETS_FILE
    example.write_text(_secrets_example(COMPOSE_CITIES), encoding="utf-8")
    return [*written, script, sql, compose_file, example]

