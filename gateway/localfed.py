"""A federation of gateway processes on one machine: config folders, founding, start and stop.

Used by `tongban demo`, the benchmarks and the compose set-up, so all three run the same
configs and the same founding steps an alliance admin takes with the CLI.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from gateway.alliance import Alliance
from gateway.config import GatewayConfig, load_config
from gateway.db.engine import create_schema, make_engine
from gateway.keystore import KeyStore
from registry.document import Item, Member, Role, Status
from trust.errors import TongbanError


@dataclass(frozen=True)
class City:
    member_id: str
    name: str
    slug: str


@dataclass(frozen=True)
class LocalGateway:
    city: City
    port: int
    database_url: str = ""  # empty: a SQLite file named after the city, in its folder
    items: tuple[Item, ...] = ()
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


_PORTS_FROM = 20000  # ports for local gateways: above the well-known services ...
_PORT_SLICE = 500  # ... a slice per parallel test worker
_handed_out: set[int] = set()


def _ephemeral_floor() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="ascii")
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default; elsewhere the bind check below still protects us


def free_port() -> int:
    """A loopback port for a gateway this process is about to configure and start.

    Taken below the kernel's ephemeral range: a port there is never picked as the local port
    of an outgoing connection, which otherwise can grab it between our choosing it and the
    gateway binding it (CI saw a gateway exit at start-up while the suite's other worker held
    hundreds of client connections). Parallel pytest-xdist workers take disjoint slices, and a
    port is handed out once per process, so two gateways set up together never share one.
    """
    floor = _ephemeral_floor()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else None
    if index is not None:
        low = _PORTS_FROM + index * _PORT_SLICE
        high = low + _PORT_SLICE
    else:
        low, high = _PORTS_FROM, floor
    if high > floor or high - low < 50:
        return _kernel_port()  # an unusual port range: let the kernel choose
    for _ in range(200):
        port = random.randrange(low, high)  # noqa: S311 - spreading ports, not a secret
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # held by something else (or in TIME_WAIT): try another
        _handed_out.add(port)
        return port
    return _kernel_port()


def _kernel_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):  # e.g. adapter.settings, as an inline table
        inner = ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def config_text(gateway: LocalGateway, *, operator_url: str, alliance: str | None,
                host: str = "127.0.0.1", public_url: str = "") -> str:
    city = gateway.city
    sections: dict[str, dict[str, Any]] = {
        "member": {"id": city.member_id, "name": city.name},
        "server": {"host": host, "port": gateway.port, **({"public_url": public_url}
                                                           if public_url else {})},
        "database": {"url": gateway.database_url or f"sqlite+aiosqlite:///{city.slug}.db"},
        "keys": {"dir": "keys"},
        "trust": {"anchor": "anchor.json"},
        "registry": {"url": f"{operator_url}/registry/v1", "poll_interval": 30},
        "delivery": {"poll_interval": 0.2, "initial_backoff": 0.2, "max_backoff": 5},
    }
    if alliance is not None:
        sections["operator"] = {"alliance": alliance}
    for name, values in gateway.settings.items():
        sections.setdefault(name, {}).update(values)
    lines = [f"# tongban gateway of {city.name} ({city.member_id})"]
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        lines.append("")
    return "\n".join(lines)


def write_configs(root: Path, operator: LocalGateway, members: Sequence[LocalGateway], *,
                  alliance: str = "yunshangban", host: str = "127.0.0.1",
                  address: Callable[[LocalGateway], str] | None = None) -> dict[str, Path]:
    """One folder per city holding its `tongban.toml`; returns the path per member id.

    By default the gateways listen and find each other on loopback (the demo, the
    benchmarks); `host` and `address` (a gateway's base URL as the others reach it) put the
    same configs on another network, e.g. compose's service names (gateway/deploy.py).
    """
    operator_url = address(operator) if address else f"http://127.0.0.1:{operator.port}"
    paths = {}
    for gateway in (operator, *members):
        folder = root / gateway.city.slug
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "tongban.toml"
        path.write_text(config_text(gateway, operator_url=operator_url,
                                    alliance=alliance if gateway is operator else None,
                                    host=host, public_url=address(gateway) if address else ""),
                        encoding="utf-8")
        paths[gateway.city.member_id] = path
    return paths


async def found_alliance(operator: GatewayConfig, members: Sequence[GatewayConfig], *,
                         operator_name: str, items: Mapping[str, Sequence[Item]] | None = None,
                         roles: Sequence[Role] = (Role.SSO_ISSUER, Role.HANDLER, Role.RECEIVER),
                         ) -> None:
    """`alliance init`, then per member `key init`, pin the anchor, and `member add`."""
    for cfg in members:  # `tongban db upgrade` on each member's database
        member_engine = make_engine(cfg.database.url)
        try:
            await create_schema(member_engine)
        finally:
            await member_engine.dispose()
    engine = make_engine(operator.database.url)
    await create_schema(engine)
    try:
        alliance = Alliance(config=operator, engine=engine,
                            keys=KeyStore(operator.keys.dir, operator.key_passphrase()),
                            clock=time.time)
        await alliance.init(name=operator.member.name)
        anchor = operator.trust.anchor.read_bytes()
        for cfg in members:
            key = KeyStore(cfg.keys.dir, cfg.key_passphrase()).create()
            cfg.trust.anchor.write_bytes(anchor)  # the member admin pins the operator's anchor
            await alliance.add_member(Member(
                id=cfg.member_id, name=cfg.member.name or cfg.member_id,
                province=cfg.member_id[3:5], endpoint=cfg.server.endpoint(),
                status=Status.ACTIVE, keys=(key.public_jwk(),), roles=tuple(roles),
                items=tuple((items or {}).get(cfg.member_id, ()))))
    finally:
        await engine.dispose()


def load_all(paths: Mapping[str, Path]) -> dict[str, GatewayConfig]:
    return {member_id: load_config(path) for member_id, path in paths.items()}


def start_process(args: Sequence[str], config_path: Path, log_path: Path, *,
                  env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `python -m <args> --config <path>` with its output in `log_path`; `env` is added
    to this process's environment (secrets named by the config)."""
    return start_module([*args, "--config", str(config_path)], config_path.parent, log_path,
                        env=env)


def start_module(args: Sequence[str], cwd: Path, log_path: Path, *,
                 env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `python -m <args>` in `cwd` with its output in `log_path`."""
    with log_path.open("wb") as log:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            [sys.executable, "-m", *args], stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
            env={**os.environ, **(env or {})})


def start_gateway(config_path: Path, log_path: Path, *,
                  env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    return start_process(["gateway.cli.main", "serve"], config_path, log_path, env=env)


async def wait_ready(session: aiohttp.ClientSession, url: str, deadline: float,
                     proc: subprocess.Popen[bytes] | None = None,
                     log: Path | None = None) -> None:
    """Poll /healthz until the gateway holds a fresh registry; fail fast if it exits.

    With `log`, a gateway that exits or never gets ready is reported with the end of its log,
    so a failure in an unattended run (CI) says why without the log file at hand.
    """
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise TongbanError(f"gateway at {url} exited with code {proc.returncode}"
                               f"{_log_tail(log)}")
        try:
            async with session.get(url + "/healthz") as resp:
                if resp.status == 200 and (await resp.json())["registry_fresh"]:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise TongbanError(f"gateway at {url} did not become ready{_log_tail(log)}")


def _log_tail(log: Path | None, lines: int = 15) -> str:
    if log is None:
        return "; see its log"
    try:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError as exc:
        return f"; its log {log} cannot be read: {exc.strerror}"
    return f"; the end of its log {log}:\n" + "\n".join(tail)


def stop_processes(procs: Sequence[subprocess.Popen[bytes]], timeout: float = 15) -> None:
    """SIGTERM (graceful shutdown), then SIGKILL whatever does not stop in time."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
