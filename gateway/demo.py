"""`tongban demo`: a real local federation of three cities doing a cross-region case.

Kunming (CN-530100) runs the alliance registry. A worker born in Taoyuan (Changde, Hunan) who
lives in Doumen (Zhuhai, Guangdong) applies at Doumen's window to move their household
registration (户口迁移), which only Taoyuan may decide: Doumen's window checks identity and
materials and forwards the case (异地代收), Taoyuan asks for a supplement, accepts, reviews and
decides (属地办理), and the worker collects the result at Doumen's window and rates the service.
Each city is its own `tongban serve` process with its own SQLite file and loopback port, set up
with the same steps an alliance admin and a member admin take with the CLI; every step below
goes through the window and handling API over HTTP.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from stdnum.cn import ric

from gateway.cli.commands import add_clerk
from gateway.config import GatewayConfig
from gateway.db.engine import create_schema, make_engine
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
from gateway.sso.accounts import add_local_account
from registry.catalog import load_catalog
from registry.document import Item
from trust.errors import TongbanError

OPERATOR = City("CN-530100", "昆明市", "kunming")
DOUMEN = City("CN-440403", "珠海市斗门区", "doumen")
TAOYUAN = City("CN-430725", "常德市桃源县", "taoyuan")
CITIES = (OPERATOR, DOUMEN, TAOYUAN)
NAMES = {OPERATOR.member_id: "昆明", DOUMEN.member_id: "斗门", TAOYUAN.member_id: "桃源"}
ITEM = "KSTB-HJ-0001"  # 户口迁移: decided where the household is registered
CHINA = datetime.timezone(datetime.timedelta(hours=8))


def say(step: str) -> None:
    print(step, flush=True)


def demo_items() -> dict[str, list[Item]]:
    """Both cities offer every item of the seed catalog, in every mode it allows."""
    catalog = load_catalog()
    offered = [item.registry_item() for item in catalog]
    return {DOUMEN.member_id: offered, TAOYUAN.member_id: offered}


def worker_id() -> str:
    body = "430725" + "19880412" + "135"
    return body + ric.calc_check_digit(body + "0")


class DemoError(TongbanError):
    pass


class Client:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self._session = session
        self._base = base
        self._token = ""

    async def login(self, username: str, password: str) -> None:
        doc = await self.call("POST", "/api/v1/login",
                              {"username": username, "password": password})
        self._token = doc["access_token"]

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        async with self._session.request(method, self._base + path, json=body,
                                         headers=headers) as resp:
            doc = await resp.json(content_type=None)
            if resp.status >= 300:
                raise DemoError(f"{method} {path}: HTTP {resp.status}: {doc.get('detail')}")
            return doc


async def wait_state(client: Client, case_id: str, wanted: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        doc = await client.call("GET", f"/api/v1/cases/{case_id}")
        if doc["case"]["state"] == wanted:
            return
        await asyncio.sleep(0.05)
    raise DemoError(f"case {case_id} did not reach {wanted} in time")


def timeline(history: list[Mapping[str, Any]]) -> list[str]:
    lines = []
    for e in history:
        if e["to"] is None:
            continue
        at = datetime.datetime.fromtimestamp(e["at"], CHINA).strftime("%H:%M:%S.%f")[:-3]
        by = e["detail"].get("by", "")
        lines.append(f"  {at}  {NAMES.get(e['actor'], e['actor'])}  {e['event']:<24} "
                     f"{e['from'] or '—':>19} → {e['to']:<19} {by}")
    return lines


async def scenario(configs: Mapping[str, GatewayConfig],
                   procs: Mapping[str, subprocess.Popen[bytes]],
                   passwords: Mapping[str, str]) -> None:
    doumen, taoyuan = configs[DOUMEN.member_id], configs[TAOYUAN.member_id]
    deadline = time.monotonic() + 90
    async with aiohttp.ClientSession() as session:
        for member_id, cfg in configs.items():
            await wait_ready(session, cfg.server.endpoint(), deadline, procs.get(member_id))
        async with session.get(doumen.server.endpoint() + "/federation/v1/info") as resp:
            info = await resp.json()
        say(f"· three gateways up; registry version {info['registry_version']} of "
            f"{info['alliance']} held by every member")
        window = Client(session, doumen.server.endpoint())
        await window.login("dm-window", passwords["dm-window"])
        officer = Client(session, taoyuan.server.endpoint())
        await officer.login("ty-officer", passwords["ty-officer"])
        doc = await window.call("POST", "/api/v1/window/cases", {
            "item": ITEM,
            "applicant": {"kind": "person", "name": "王桃源", "id_number": worker_id(),
                          "phone": "13912345678"},
            "identity_check": {"method": "id_card_reader", "loa": "L4"},
            "materials": [{"code": "M01", "name": "居民户口簿"},
                          {"code": "M02", "name": "居民身份证", "original_checked": True}],
            "delivery": {"method": "window"}})
        case = doc["case"]
        case_id = case["case_id"]
        masked = case["applicant"]["id_number"]
        say(f"· 斗门 window: 户口迁移 for a Taoyuan-born worker (ID {masked}), routed to "
            f"{case['handler']} 桃源; case {case_id}, query password issued")
        check = await window.call("POST", f"/api/v1/window/cases/{case_id}/formal-check", {})
        say(f"· 斗门 formal check: missing {'; '.join(check['missing'])} (told once, 一次性告知)")
        await window.call("POST", f"/api/v1/window/cases/{case_id}/formal-check",
                          {"materials": [{"code": "M03", "name": "准予迁入证明"}]})
        await window.call("POST", f"/api/v1/window/cases/{case_id}/forward",
                          {"courier": ["SF1402758833"]})
        await wait_state(window, case_id, "handler_received", deadline)
        say("· 斗门 → 桃源: case.submit signed, delivered, receipt verified; 桃源 acknowledged")
        await officer.call("POST", f"/api/v1/handling/cases/{case_id}/supplement-request",
                           {"reason": "户口簿扫描件不清晰", "materials": ["M01 居民户口簿"]})
        await wait_state(window, case_id, "supplement_required", deadline)
        await window.call("POST", f"/api/v1/cases/{case_id}/supplement",
                          {"materials": [{"code": "M01", "name": "居民户口簿（重新扫描）"}]})
        await wait_state(window, case_id, "handler_received", deadline)
        say("· 桃源 asked for a supplement; 斗门 window relayed it; 桃源 has the case again")
        for action, body in (("accept", {}), ("review", {}),
                             ("conclude", {"outcome": "approved", "result": "准予迁移"})):
            await officer.call("POST", f"/api/v1/handling/cases/{case_id}/{action}", body)
        await wait_state(window, case_id, "concluded", deadline)
        say("· 桃源 accepted, reviewed and approved; the result waits at 斗门's window")
        await window.call("POST", f"/api/v1/window/cases/{case_id}/handover")
        await window.call("POST", f"/api/v1/cases/{case_id}/evaluation",
                          {"level": 5, "comment": "不用回老家就办好了"})
        await wait_state(officer, case_id, "evaluated", deadline)
        mine = (await window.call("GET", f"/api/v1/cases/{case_id}"))["case"]
        theirs = (await officer.call("GET", f"/api/v1/cases/{case_id}"))["case"]
        say(f"· handed over at 斗门, rated 5/5; decision was due {mine['decision_due']}, "
            f"receipt no. {mine['receipt_no']}")
        say(f"timeline of case {case_id} (斗门's copy):")
        for line in timeline(mine["history"]):
            say(line)
        same = [e for e in mine["history"] if e["to"]] == \
            [e for e in theirs["history"] if e["to"]]
        if not same:
            raise DemoError("the two copies of the case differ")
        say("· 桃源's copy holds the same transitions, times and details")


async def _add_worker(config: GatewayConfig, password: str) -> None:
    engine = make_engine(config.database.url)
    try:
        await create_schema(engine)
        await add_local_account(engine, id_number=worker_id(), name="王桃源", loa="L4",
                                password=password, now=time.time())
    finally:
        await engine.dispose()


def run_demo(directory: Path | None, base_port: int, *, keep: bool = False) -> None:
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
                               operator_name=OPERATOR.name, items=demo_items()))
    say("· alliance yunshangban initialised by 昆明 (operator); 斗门 and 桃源 admitted, "
        "each offering the 26 items of the seed catalog")
    passwords = {"dm-window": secrets.token_urlsafe(12), "ty-officer": secrets.token_urlsafe(12)}
    asyncio.run(add_clerk(configs[DOUMEN.member_id], username="dm-window", name="斗门窗口",
                          role="window", password=passwords["dm-window"]))
    asyncio.run(add_clerk(configs[TAOYUAN.member_id], username="ty-officer", name="桃源户政",
                          role="handler", password=passwords["ty-officer"]))
    worker_password = secrets.token_urlsafe(12)
    asyncio.run(_add_worker(configs[TAOYUAN.member_id], worker_password))
    logins = root / "logins.txt"
    logins.write_text(
        "# clerks (POST /api/v1/login)\n"
        + "".join(f"{u} {p}\n" for u, p in passwords.items())
        + f"# applicant at {configs[TAOYUAN.member_id].server.endpoint()}/portal/\n"
        + f"{worker_id()} {worker_password}\n", encoding="utf-8")
    logins.chmod(0o600)
    procs = {c.member_id: start_gateway(paths[c.member_id], root / f"{c.slug}.log")
             for c in CITIES}
    try:
        asyncio.run(scenario(configs, procs, passwords))
        say("done: after the window's own two steps, every transition above was one signed "
            "message, verified and stored by the other city and answered with a signed receipt")
        if keep:
            say(f"the three gateways keep running; the applicant portal is at "
                f"{configs[TAOYUAN.member_id].server.endpoint()}/portal/ (login in "
                f"{logins}); Ctrl-C stops them")
            try:
                while all(p.poll() is None for p in procs.values()):
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
    finally:
        stop_processes(list(procs.values()))
        if os.environ.get("TONGBAN_DEMO_SHOW_LOGS"):
            for c in CITIES:
                print((root / f"{c.slug}.log").read_text(encoding="utf-8", errors="replace"))
