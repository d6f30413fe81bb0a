"""`tongban compose`: a docker compose set-up of an operator and three members on PostgreSQL.

It is the local demo moved onto a compose network: the demo's cities (gateway/demo.py) plus a
third member, each offering the demo's items (the seed catalog), with config files written by
the demo's own `write_configs` (gateway/localfed.py), only listening on all interfaces and
pointed at the compose service names and a PostgreSQL service. A one-shot `setup` service
takes the steps an alliance admin and the member admins take (`db upgrade`, `key init`,
`alliance init`, `member add`); the gateways start once it has finished.

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

from gateway.demo import CITIES, demo_items
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
HEALTHCHECK = ("import urllib.request,sys; sys.exit(0 if urllib.request.urlopen("
               f"'http://127.0.0.1:{PORT}/readyz').status == 200 else 1)")


def address(gateway: LocalGateway) -> str:
    """A gateway's URL on the compose network: its service name."""
    return f"http://{gateway.city.slug}:{PORT}"


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
    for i, city in enumerate(cities):
        services[city.slug] = {
            "image": IMAGE, "build": build, "user": f"{UID}:{UID}",
            "command": ["serve", "-c", f"{CONFIG}/{city.slug}/tongban.toml"],
            "volumes": [f"config:{CONFIG}"],
            "depends_on": {"setup": {"condition": "service_completed_successfully"}},
            "ports": [f"{PORT + i}:{PORT}"],
            "healthcheck": {"test": ["CMD", "python", "-c", HEALTHCHECK],
                            "interval": "15s", "timeout": "3s", "retries": 5,
                            "start_period": "20s"},
            "restart": "unless-stopped",
        }
    return {"name": "tongban", "services": services, "volumes": {"pgdata": {}, "config": {}}}


def source_tree() -> Path | None:
    """The checkout tongban runs from, if it holds docker/Dockerfile (an installed wheel
    does not)."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "docker" / "Dockerfile").is_file() else None


def write_compose(out: Path, *, build_context: str) -> list[Path]:
    """Write the set-up into `out`; `build_context` is the source tree (holding
    docker/Dockerfile) as seen from `out`, for `docker compose up --build`."""
    targets = [out / "compose.yaml", out / "config", out / "initdb"]
    taken = [p for p in targets if p.exists()]
    if taken:
        raise TongbanError(f"{taken[0]} exists; write the set-up into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    gateways = [LocalGateway(city, PORT, f"postgresql+asyncpg://postgres@db:5432/{city.slug}",
                             settings={"federation": {"development_mode": True}})
                for city in COMPOSE_CITIES]
    paths = write_configs(out / "config", gateways[0], gateways[1:],
                          host="0.0.0.0", address=address)  # noqa: S104 - in its container
    written = list(paths.values())
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
    return [*written, script, sql, compose_file]

