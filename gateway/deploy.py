"""`tongban compose`: a docker compose set-up of an operator and three members on PostgreSQL.

It writes the same config files the local demo uses (gateway/localfed.py), pointed at the
compose network and a PostgreSQL service, plus a compose file whose one-shot `setup` service
takes the steps an alliance admin and the member admins take (`db upgrade`, `key init`,
`alliance init`, `member add`). The compose file is written as JSON, which is valid YAML.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gateway.localfed import City, LocalGateway, config_text
from trust.errors import TongbanError

CITIES = (City("CN-530100", "昆明市", "kunming"), City("CN-440403", "珠海市斗门区", "doumen"),
          City("CN-430725", "常德市桃源县", "taoyuan"), City("CN-430700", "常德市", "changde"))
PORT = 8700
IMAGE = "tongban:latest"
SAMPLE_ITEM = "KSTB-SB-0001:企业职工基本养老保险关系转移接续:online,proxy,joint"


def _setup_script(cities: tuple[City, ...]) -> str:
    operator, members = cities[0], cities[1:]
    lines = ["set -eu", "cd /etc/tongban"]
    for city in cities:
        lines.append(f"tongban db upgrade -c {city.slug}/tongban.toml")
    lines.append(f"[ -f {operator.slug}/anchor.json ] || tongban alliance init "
                 f"-c {operator.slug}/tongban.toml --name {operator.name}")
    for city in members:
        lines.append(f"[ -d {city.slug}/keys ] || tongban key init -c {city.slug}/tongban.toml")
        lines.append(f"tongban key list -c {city.slug}/tongban.toml --jwks > "
                     f"{city.slug}/public-keys.json")
        lines.append(f"cp {operator.slug}/anchor.json {city.slug}/anchor.json")
    for city in members:
        lines.append(f"tongban member list -c {operator.slug}/tongban.toml | grep -q "
                     f"{city.member_id} || tongban member add -c {operator.slug}/tongban.toml "
                     f"{city.member_id} --name {city.name} --endpoint http://{city.slug}:{PORT} "
                     f"--keys-file {city.slug}/public-keys.json --item {SAMPLE_ITEM}")
    return " && ".join(lines[:2]) + "\n" + "\n".join(lines[2:]) + "\n"


def write_compose(out: Path) -> list[Path]:
    if out.exists() and any(out.iterdir()):
        raise TongbanError(f"{out} is not empty; use a new folder")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    operator = CITIES[0]
    for city in CITIES:
        folder = out / "config" / city.slug
        folder.mkdir(parents=True)
        gateway = LocalGateway(
            city, PORT, f"postgresql+asyncpg://postgres@db:5432/{city.slug}",
            settings={"federation": {"development_mode": True},
                      "registry": {"poll_interval": 30}})
        text = config_text(gateway, operator_url=f"http://{operator.slug}:{PORT}",
                           alliance="yunshangban" if city is operator else None,
                           host="0.0.0.0", public_url=f"http://{city.slug}:{PORT}")  # noqa: S104
        path = folder / "tongban.toml"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    script = out / "config" / "setup.sh"
    script.write_text(_setup_script(CITIES), encoding="utf-8")
    written.append(script)
    compose: dict[str, Any] = {
        "name": "tongban",
        "services": {
            "db": {"image": "postgres:15", "environment": {"POSTGRES_HOST_AUTH_METHOD": "trust"},
                   "volumes": ["./initdb:/docker-entrypoint-initdb.d:ro", "pgdata:/var/lib/"
                               "postgresql/data"],
                   "healthcheck": {"test": ["CMD", "pg_isready", "-U", "postgres"],
                                   "interval": "5s"}},
            "setup": {"image": IMAGE, "entrypoint": ["sh", "/etc/tongban/setup.sh"],
                      "volumes": ["./config:/etc/tongban"],
                      "depends_on": {"db": {"condition": "service_healthy"}}},
        },
        "volumes": {"pgdata": {}},
    }
    for city in CITIES:
        compose["services"][city.slug] = {
            "image": IMAGE, "command": ["serve", "-c", f"/etc/tongban/{city.slug}/tongban.toml"],
            "volumes": ["./config:/etc/tongban"],
            "depends_on": {"setup": {"condition": "service_completed_successfully"}},
            "ports": [f"{PORT + CITIES.index(city)}:{PORT}"],
        }
    initdb = out / "initdb"
    initdb.mkdir()
    sql = initdb / "databases.sql"
    sql.write_text("".join(f"CREATE DATABASE {c.slug};\n" for c in CITIES), encoding="utf-8")
    compose_file = out / "compose.yaml"
    compose_file.write_text(json.dumps(compose, ensure_ascii=False, indent=2) + "\n",
                            encoding="utf-8")
    return [*written, sql, compose_file]
