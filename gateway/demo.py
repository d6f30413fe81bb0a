"""`tongban demo`: a real local federation of three cities doing a cross-region case.

Kunming (CN-530100) runs the alliance registry. A worker born in Taoyuan (Changde, Hunan) who
lives in Doumen (Zhuhai, Guangdong) applies at Doumen's window to move their household
registration (户口迁移), which only Taoyuan may decide: Doumen's window checks identity and
materials and forwards the case (异地代收), Taoyuan asks for a supplement, accepts, reviews and
decides (属地办理), and the worker collects the result at Doumen's window and rates the service.
Each city is its own `tongban serve` process with its own SQLite file and loopback port, set up
with the same steps an alliance admin and a member admin take with the CLI.

Both member authorities keep their own case system (the reference local case system, each a
process with its own database): Taoyuan's is reached through the REST adapter and pushes what
its officers do by signed webhook; Doumen's is an older SOAP service, polled. Officers decide on
those systems' clerk pages, and the federation follows; a second, shorter case goes the other
way, from Taoyuan's window to Doumen's SOAP system.
"""

from __future__ import annotations

import asyncio
import datetime
import html
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
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
    start_module,
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
EXAMPLES = Path(__file__).resolve().parent.parent / "adapters" / "examples"
# Taoyuan's system speaks REST and pushes; Doumen's speaks SOAP and is polled.
LOCAL_SYSTEMS = {TAOYUAN.member_id: ("rest", "rest-reference.toml", "桃源县政务服务办件系统"),
                 DOUMEN.member_id: ("soap", "soap-reference.toml", "斗门区政务服务办件系统")}
ENV_API_KEY = "TONGBAN_DEMO_LOCAL_API_KEY"
ENV_WEBHOOK = "TONGBAN_DEMO_LOCAL_WEBHOOK_SECRET"


def say(step: str) -> None:
    print(step, flush=True)


def demo_items(members: Sequence[City] = (DOUMEN, TAOYUAN)) -> dict[str, list[Item]]:
    """Every member offers every item of the seed catalog, in every mode it allows (the
    compose set-up admits a third member on the same terms)."""
    catalog = load_catalog()
    offered = [item.registry_item() for item in catalog]
    return {city.member_id: offered for city in members}


def worker_id(division: str = "430725") -> str:
    body = division + "19880412" + "135"
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


class ClerkPage:
    """An officer at a local case system's clerk page: the page, a form, its CSRF token."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self._session = session
        self._base = base

    async def find(self, case_id: str, deadline: float) -> str:
        """The local case number (办件编号) of one of our cases, once the system has it."""
        pattern = re.compile(r'<tr id="case-([A-Z0-9]+)">\s*<td>[^<]*</td>\s*<td>'
                             + re.escape(html.escape(case_id)) + "</td>")
        while time.monotonic() < deadline:
            async with self._session.get(self._base + "/clerk") as resp:
                match = pattern.search(await resp.text())
            if match is not None:
                return match.group(1)
            await asyncio.sleep(0.1)
        raise DemoError(f"the local system did not receive case {case_id} in time")

    async def act(self, bjbh: str, step: str, **form: str) -> None:
        async with self._session.get(self._base + "/clerk") as resp:
            page = await resp.text()
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        if token is None or f'action="/clerk/{bjbh}/{step}"' not in page:
            raise DemoError(f"the clerk page offers no {step} for {bjbh}")
        async with self._session.post(f"{self._base}/clerk/{bjbh}/{step}",
                                      data={"csrf": token.group(1), **form},
                                      allow_redirects=False) as resp:
            where = resp.headers.get("Location", "")
            if resp.status != 303 or "ok=1" not in where:
                raise DemoError(f"clerk step {step} on {bjbh} failed: {resp.status} {where}")


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
                   passwords: Mapping[str, str], local_urls: Mapping[str, str]) -> None:
    doumen, taoyuan = configs[DOUMEN.member_id], configs[TAOYUAN.member_id]
    deadline = time.monotonic() + 90
    jar = aiohttp.CookieJar(unsafe=True)  # the clerk pages' CSRF cookie, on 127.0.0.1
    async with aiohttp.ClientSession() as session, \
            aiohttp.ClientSession(cookie_jar=jar) as pages:
        for url in local_urls.values():
            await wait_local(pages, url, deadline)
        ty_clerk = ClerkPage(pages, local_urls[TAOYUAN.member_id])
        dm_clerk = ClerkPage(pages, local_urls[DOUMEN.member_id])
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
        bjbh = await ty_clerk.find(case_id, deadline)
        say("· 斗门 → 桃源: case.submit signed, delivered, receipt verified; 桃源's own case "
            f"system (REST adapter) took it as {bjbh}; 桃源 acknowledged")
        await ty_clerk.act(bjbh, "buzheng", yy="户口簿扫描件不清晰", bzcl="M01 居民户口簿")
        await wait_state(window, case_id, "supplement_required", deadline)
        await window.call("POST", f"/api/v1/cases/{case_id}/supplement",
                          {"materials": [{"code": "M01", "name": "居民户口簿（重新扫描）"}]})
        await wait_state(window, case_id, "handler_received", deadline)
        say("· 桃源's officer asked for a supplement on its system's clerk page (pushed by signed "
            "webhook); 斗门 window relayed it; the supplement reached 桃源's system")
        await ty_clerk.act(bjbh, "shouli")
        await ty_clerk.act(bjbh, "shencha")
        await ty_clerk.act(bjbh, "banjie", bjjg="PZ", jgsm="准予迁移")
        await wait_state(window, case_id, "concluded", deadline)
        say("· 桃源 accepted, reviewed and approved on its clerk page; the result waits at 斗门's "
            "window")
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
        await other_way(session, configs, passwords, dm_clerk, deadline)


async def other_way(session: aiohttp.ClientSession, configs: Mapping[str, GatewayConfig],
                    passwords: Mapping[str, str], dm_clerk: ClerkPage, deadline: float) -> None:
    """A Doumen-born worker at Taoyuan's window: Doumen decides, in its SOAP system."""
    window = Client(session, configs[TAOYUAN.member_id].server.endpoint())
    await window.login("ty-window", passwords["ty-window"])
    doc = await window.call("POST", "/api/v1/window/cases", {
        "item": ITEM,
        "applicant": {"kind": "person", "name": "李斗门", "id_number": worker_id("440403"),
                      "phone": "13712345678"},
        "identity_check": {"method": "id_card_reader", "loa": "L4"},
        "materials": [{"code": "M01", "name": "居民户口簿"},
                      {"code": "M02", "name": "居民身份证", "original_checked": True},
                      {"code": "M03", "name": "准予迁入证明"}],
        "delivery": {"method": "window"}})
    case_id = doc["case"]["case_id"]
    await window.call("POST", f"/api/v1/window/cases/{case_id}/formal-check", {})
    await window.call("POST", f"/api/v1/window/cases/{case_id}/forward",
                      {"courier": ["SF1402758834"]})
    await wait_state(window, case_id, "handler_received", deadline)
    bjbh = await dm_clerk.find(case_id, deadline)
    say(f"· the other way: 桃源 window → {doc['case']['handler']} 斗门, whose own case system is "
        f"a SOAP service (SOAP adapter, polled); it took case {case_id} as {bjbh}")
    await dm_clerk.act(bjbh, "shouli")
    await dm_clerk.act(bjbh, "banjie", bjjg="PZ", jgsm="准予迁移")
    await wait_state(window, case_id, "concluded", deadline)
    say("· 斗门's officer accepted and approved it on the SOAP system's clerk page; 桃源's window "
        "sees it concluded")


async def wait_local(session: aiohttp.ClientSession, url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            async with session.get(url + "/health") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise DemoError(f"the local case system at {url} did not start; see its log")


async def _add_worker(config: GatewayConfig, password: str) -> None:
    engine = make_engine(config.database.url)
    try:
        await create_schema(engine)
        await add_local_account(engine, id_number=worker_id(), name="王桃源", loa="L4",
                                password=password, now=time.time())
    finally:
        await engine.dispose()


def adapter_settings(city: City, local_urls: Mapping[str, str]
                     ) -> dict[str, dict[str, Any]]:
    """The `[adapter]` section of a member whose authority keeps its own case system, with
    the system at `local_urls[member id]`: shared with `tongban compose` (gateway/deploy.py), so
    the compose federation's members reach their case systems exactly as the demo's do."""
    if city.member_id not in LOCAL_SYSTEMS:
        return {}
    name = LOCAL_SYSTEMS[city.member_id][0]
    section: dict[str, Any] = {
        "name": name, "poll_interval": 5.0 if name == "rest" else 0.5,
        "initial_backoff": 0.2, "max_backoff": 3.0, "breaker_reset": 3.0,
        "settings": {"mapping": "local-system.toml", "base_url": local_urls[city.member_id]}}
    if name == "rest":
        section["secrets"] = {"api_key": ENV_API_KEY, "webhook_secret": ENV_WEBHOOK}
    return {"adapter": section}


def copy_mapping(city: City, folder: Path) -> Path:
    """The region's mapping file, next to its config, where `adapter_settings` names it."""
    target = folder / "local-system.toml"
    shutil.copy(EXAMPLES / LOCAL_SYSTEMS[city.member_id][1], target)
    return target


def reference_args(city: City, *, port: int, db: str, gateway_url: str,
                   host: str | None = None) -> list[str]:
    """The arguments of `python -m adapters.reference` for the authority's own case system:
    shared with `tongban compose`. Secrets are named by environment variable, never given, and
    a REST system pushes to `gateway_url`'s webhook, signed."""
    name, _mapping, title = LOCAL_SYSTEMS[city.member_id]
    args = ["--port", str(port), "--db", db, "--title", title,
            "--prefix", "TY" if city is TAOYUAN else "DM"]
    if host is not None:
        args += ["--host", host]
    if name == "rest":
        args += ["--api-key-env", ENV_API_KEY, "--webhook", gateway_url + "/adapters/v1/events",
                 "--webhook-secret-env", ENV_WEBHOOK]
    return args


def _start_local(root: Path, city: City, port: int, taoyuan_url: str,
                 env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """The authority's own case system: a reference system process with its own database."""
    args = reference_args(city, port=port, db=str(root / city.slug / "local-system.sqlite"),
                          gateway_url=taoyuan_url)
    return start_module(["adapters.reference", *args], root / city.slug,
                        root / f"{city.slug}-local.log", env=env)


def run_demo(directory: Path | None, base_port: int, *, keep: bool = False) -> None:
    root = Path(tempfile.mkdtemp(prefix="tongban-demo-")) if directory is None else directory
    if directory is not None and any(directory.glob("*/tongban.toml")):
        raise TongbanError(f"{directory} already holds a demo federation; use an empty folder")
    root.mkdir(parents=True, exist_ok=True)
    ports = [base_port + i if base_port else free_port() for i in range(len(CITIES) + 2)]
    local_ports = {TAOYUAN.member_id: ports[3], DOUMEN.member_id: ports[4]}
    local_urls = {m: f"http://127.0.0.1:{p}" for m, p in local_ports.items()}
    gateways = [LocalGateway(city, ports[i], settings=adapter_settings(city, local_urls))
                for i, city in enumerate(CITIES)]
    paths = write_configs(root, gateways[0], gateways[1:])
    for city in (DOUMEN, TAOYUAN):
        copy_mapping(city, root / city.slug)
    configs = load_all(paths)
    say(f"tongban demo in {root}")
    asyncio.run(found_alliance(configs[OPERATOR.member_id],
                               [configs[DOUMEN.member_id], configs[TAOYUAN.member_id]],
                               operator_name=OPERATOR.name, items=demo_items()))
    say("· alliance yunshangban initialised by 昆明 (operator); 斗门 and 桃源 admitted, "
        "each offering the 26 items of the seed catalog")
    passwords = {"dm-window": secrets.token_urlsafe(12), "ty-officer": secrets.token_urlsafe(12),
                 "ty-window": secrets.token_urlsafe(12)}
    asyncio.run(add_clerk(configs[DOUMEN.member_id], username="dm-window", name="斗门窗口",
                          role="window", password=passwords["dm-window"]))
    asyncio.run(add_clerk(configs[TAOYUAN.member_id], username="ty-officer", name="桃源户政",
                          role="handler", password=passwords["ty-officer"]))
    asyncio.run(add_clerk(configs[TAOYUAN.member_id], username="ty-window", name="桃源窗口",
                          role="window", password=passwords["ty-window"]))
    worker_password = secrets.token_urlsafe(12)
    asyncio.run(_add_worker(configs[TAOYUAN.member_id], worker_password))
    logins = root / "logins.txt"
    logins.write_text(
        "# clerks (POST /api/v1/login)\n"
        + "".join(f"{u} {p}\n" for u, p in passwords.items())
        + f"# applicant at {configs[TAOYUAN.member_id].server.endpoint()}/portal/\n"
        + f"{worker_id()} {worker_password}\n", encoding="utf-8")
    logins.chmod(0o600)
    env = {ENV_API_KEY: secrets.token_urlsafe(24), ENV_WEBHOOK: secrets.token_urlsafe(32)}
    locals_ = [_start_local(root, city, local_ports[city.member_id],
                            configs[TAOYUAN.member_id].server.endpoint(), env)
               for city in (TAOYUAN, DOUMEN)]
    procs = {c.member_id: start_gateway(paths[c.member_id], root / f"{c.slug}.log", env=env)
             for c in CITIES}
    say(f"· local case systems: 桃源 {local_urls[TAOYUAN.member_id]}/clerk (REST, pushes), "
        f"斗门 {local_urls[DOUMEN.member_id]}/clerk (SOAP, polled)")
    try:
        asyncio.run(scenario(configs, procs, passwords, local_urls))
        say("done: after the window's own two steps, every transition above was one signed "
            "message, verified and stored by the other city and answered with a signed receipt")
        if keep:
            say(f"the three gateways keep running; the applicant portal is at "
                f"{configs[TAOYUAN.member_id].server.endpoint()}/portal/ (login in "
                f"{logins}); Ctrl-C stops them")
            try:
                while all(p.poll() is None for p in [*procs.values(), *locals_]):
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
    finally:
        stop_processes([*procs.values(), *locals_])
        if os.environ.get("TONGBAN_DEMO_SHOW_LOGS"):
            for c in CITIES:
                print((root / f"{c.slug}.log").read_text(encoding="utf-8", errors="replace"))
