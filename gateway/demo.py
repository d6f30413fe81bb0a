"""`tongban demo`: a real local federation of three cities doing a cross-region case.

Kunming (CN-530100) runs the alliance registry; Doumen (CN-440403) receives an application from
a Taoyuan-born worker at its window and forwards it to Taoyuan (CN-430725), which accepts it.
Each city is its own `tongban serve` process with its own SQLite file and loopback port, set up
with the same steps an alliance admin takes with the CLI.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from gateway.cli.commands import queue_and_wait
from gateway.config import GatewayConfig
from gateway.db.engine import make_engine
from gateway.db.repos import InboxRepo
from gateway.localfed import (
    City,
    LocalGateway,
    found_alliance,
    free_port,
    load_all,
    start_gateway,
    stop_processes,
    wait_ready,
    write_configs,
)
from registry.document import Item, Mode
from trust.errors import TongbanError

OPERATOR = City("CN-530100", "昆明市", "kunming")
DOUMEN = City("CN-440403", "珠海市斗门区", "doumen")
TAOYUAN = City("CN-430725", "常德市桃源县", "taoyuan")
CITIES = (OPERATOR, DOUMEN, TAOYUAN)

DEMO_ITEMS = {
    TAOYUAN.member_id: [Item(code="CN-YLBX-0001", name="养老保险关系转移接续",
                             modes=(Mode.ONLINE, Mode.PROXY))],
    DOUMEN.member_id: [Item(code="CN-YDJY-0001", name="异地就医备案",
                            modes=(Mode.ONLINE, Mode.PROXY))],
}


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
    gateways = [LocalGateway(city, base_port + i if base_port else free_port())
                for i, city in enumerate(CITIES)]
    paths = write_configs(root, gateways[0], gateways[1:])
    configs = load_all(paths)
    say(f"tongban demo in {root}")
    asyncio.run(found_alliance(configs[OPERATOR.member_id],
                               [configs[DOUMEN.member_id], configs[TAOYUAN.member_id]],
                               operator_name=OPERATOR.name, items=DEMO_ITEMS))
    say("· alliance yunshangban initialised by 昆明 (operator); 斗门 and 桃源 admitted")
    procs = {c.member_id: start_gateway(paths[c.member_id], root / f"{c.slug}.log")
             for c in CITIES}
    try:
        asyncio.run(scenario(configs, procs))
        say("done: every message above was signed by its sender, verified by its receiver, "
            "stored, and answered with a signed receipt the sender verified")
    finally:
        stop_processes(list(procs.values()))
        if os.environ.get("TONGBAN_DEMO_SHOW_LOGS"):
            for c in CITIES:
                print((root / f"{c.slug}.log").read_text(encoding="utf-8", errors="replace"))
