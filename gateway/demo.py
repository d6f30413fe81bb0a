"""`tongban demo`: a real local federation of three cities doing a cross-region case.

Kunming (CN-530100) runs the alliance registry; Doumen (CN-440403) receives an application from
a Taoyuan-born worker at its window and forwards it to Taoyuan (CN-430725), which accepts it.
Each city is its own `tongban serve` process with its own SQLite file and loopback port, set up
with the same CLI verbs an alliance admin would use.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from gateway.alliance import Alliance
from gateway.cli.commands import queue_and_wait
from gateway.config import GatewayConfig, load_config
from gateway.db.engine import create_schema, make_engine
from gateway.db.repos import InboxRepo
from gateway.keystore import KeyStore
from registry.document import Item, Member, Mode, Role, Status
from trust.errors import TongbanError


@dataclass(frozen=True)
class City:
    member_id: str
    name: str
    slug: str


OPERATOR = City("CN-530100", "昆明市", "kunming")
DOUMEN = City("CN-440403", "珠海市斗门区", "doumen")
TAOYUAN = City("CN-430725", "常德市桃源县", "taoyuan")
CITIES = (OPERATOR, DOUMEN, TAOYUAN)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config_text(city: City, port: int, operator_port: int, *, is_operator: bool) -> str:
    lines = [
        f"# tongban gateway of {city.name} ({city.member_id}), written by `tongban demo`",
        "[member]", f'id = "{city.member_id}"', f'name = "{city.name}"', "",
        "[server]", 'host = "127.0.0.1"', f"port = {port}", "",
        "[database]", f'url = "sqlite+aiosqlite:///{city.slug}.db"', "",
        "[keys]", 'dir = "keys"', "",
        "[trust]", 'anchor = "../anchor.json"' if not is_operator else 'anchor = "anchor.json"', "",
        "[registry]", f'url = "http://127.0.0.1:{operator_port}/registry/v1"',
        "poll_interval = 5", "",
        "[delivery]", "poll_interval = 0.2", "initial_backoff = 0.2", "max_backoff = 2", "",
    ]
    if is_operator:
        lines += ["[operator]", 'alliance = "yunshangban"', ""]
    return "\n".join(lines)


def write_federation(root: Path, ports: dict[str, int]) -> dict[str, Path]:
    """Write one config folder per city; returns the config path of each member id."""
    paths = {}
    operator_port = ports[OPERATOR.member_id]
    for city in CITIES:
        folder = root / city.slug
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "tongban.toml"
        path.write_text(config_text(city, ports[city.member_id], operator_port,
                                    is_operator=city is OPERATOR), encoding="utf-8")
        paths[city.member_id] = path
    return paths


DEMO_ITEMS = {
    TAOYUAN.member_id: [Item(code="CN-YLBX-0001", name="养老保险关系转移接续",
                             modes=(Mode.ONLINE, Mode.PROXY))],
    DOUMEN.member_id: [Item(code="CN-YDJY-0001", name="异地就医备案",
                            modes=(Mode.ONLINE, Mode.PROXY))],
}


async def set_up_alliance(configs: dict[str, GatewayConfig]) -> None:
    """What the alliance admin and the member admins do by CLI, done in-process."""
    op = configs[OPERATOR.member_id]
    engine = make_engine(op.database.url)
    await create_schema(engine)
    try:
        alliance = Alliance(config=op, engine=engine,
                            keys=KeyStore(op.keys.dir, op.key_passphrase()), clock=time.time)
        await alliance.init(name=OPERATOR.name)
        anchor = op.trust.anchor.read_bytes()
        for city in (DOUMEN, TAOYUAN):
            cfg = configs[city.member_id]
            keys = KeyStore(cfg.keys.dir, cfg.key_passphrase())
            key = keys.create()
            cfg.trust.anchor.write_bytes(anchor)  # the member admin pins the operator's anchor
            await alliance.add_member(Member(
                id=city.member_id, name=city.name, province=city.member_id[3:5],
                endpoint=cfg.server.endpoint(), status=Status.ACTIVE,
                keys=(key.public_jwk(),),
                roles=(Role.SSO_ISSUER, Role.HANDLER, Role.RECEIVER),
                items=tuple(DEMO_ITEMS[city.member_id])))
    finally:
        await engine.dispose()


def start(config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
        [sys.executable, "-m", "gateway.cli.main", "serve", "--config", str(config_path)],
        stdout=log, stderr=subprocess.STDOUT, cwd=config_path.parent)


async def wait_ready(session: aiohttp.ClientSession, url: str, deadline: float,
                     proc: subprocess.Popen[bytes] | None = None) -> None:
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise TongbanError(f"gateway at {url} exited with code {proc.returncode}; see its log")
        try:
            async with session.get(url + "/healthz") as resp:
                if resp.status == 200 and (await resp.json())["registry_fresh"]:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise TongbanError(f"gateway at {url} did not become ready; see its log")


async def send_and_wait(cfg: GatewayConfig, *, to: str, type_: str, case_id: str,
                        body: dict[str, object], deadline: float) -> str:
    _, status = await queue_and_wait(cfg, to=to, type_=type_, case_id=case_id, body=body,
                                     wait=max(deadline - time.monotonic(), 1.0))
    return status


async def inbox_lines(cfg: GatewayConfig) -> list[str]:
    engine = make_engine(cfg.database.url)
    try:
        entries = await InboxRepo().list_all(engine)
    finally:
        await engine.dispose()
    return [f"{e.type:<18} from {e.iss} case …{(e.case_id or '-')[-8:]} seq {e.seq}"
            for e in entries if e.type.startswith("case.")]


def say(step: str) -> None:
    print(step, flush=True)


async def scenario(configs: dict[str, GatewayConfig],
                   procs: dict[str, subprocess.Popen[bytes]]) -> None:
    doumen, taoyuan = configs[DOUMEN.member_id], configs[TAOYUAN.member_id]
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        for member_id, cfg in configs.items():
            await wait_ready(session, cfg.server.endpoint(), deadline, procs.get(member_id))
        async with session.get(doumen.server.endpoint() + "/federation/v1/info") as resp:
            info = await resp.json()
    say(f"· three gateways up; registry version {info['registry_version']} of "
        f"{info['alliance']} held by every member")
    case_id = f"{DOUMEN.member_id}:{uuid.uuid4()}"
    say(f"· 斗门 window takes an application for 养老保险关系转移接续 from a Taoyuan-born "
        f"worker: case {case_id}")
    status = await send_and_wait(doumen, to=TAOYUAN.member_id, type_="case.submit",
                                 case_id=case_id, deadline=deadline, body={
                                     "item": "CN-YLBX-0001", "mode": "proxy",
                                     "applicant": {"id_masked": "430725********0014"}})
    say(f"· case.submit  斗门 → 桃源: signed, delivered, receipt verified ({status})")
    status = await send_and_wait(taoyuan, to=DOUMEN.member_id, type_="case.accept",
                                 case_id=case_id, deadline=deadline,
                                 body={"receipt_no": "TY-2026-000123"})
    say(f"· case.accept  桃源 → 斗门: signed, delivered, receipt verified ({status})")
    for city, cfg in ((TAOYUAN, taoyuan), (DOUMEN, doumen)):
        for line in await inbox_lines(cfg):
            say(f"  {city.name} inbox: {line}")


def run_demo(directory: Path | None, base_port: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="tongban-demo-")) if directory is None else directory
    if directory is not None and any(directory.glob("*/tongban.toml")):
        raise TongbanError(f"{directory} already holds a demo federation; use an empty folder")
    root.mkdir(parents=True, exist_ok=True)
    ports = {c.member_id: (base_port + i if base_port else free_port())
             for i, c in enumerate(CITIES)}
    paths = write_federation(root, ports)
    configs = {mid: load_config(p) for mid, p in paths.items()}
    say(f"tongban demo in {root}")
    asyncio.run(set_up_alliance(configs))
    say("· alliance yunshangban initialised by 昆明 (operator); 斗门 and 桃源 admitted")
    procs = {c.member_id: start(paths[c.member_id], root / f"{c.slug}.log") for c in CITIES}
    try:
        asyncio.run(scenario(configs, procs))
        say("done: every message above was signed by its sender, verified by its receiver, "
            "stored, and answered with a signed receipt the sender verified")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if os.environ.get("TONGBAN_DEMO_SHOW_LOGS"):
            for c in CITIES:
                print((root / f"{c.slug}.log").read_text(encoding="utf-8", errors="replace"))


