"""A federation of real `tongban serve` processes for durability tests: Kunming (operator),
Doumen and Taoyuan founded as in tests/test_fault_injection.py, Taoyuan optionally as two
processes of one member on its one database, and the clients that talk to them (the portal at
Doumen, the handling officer at Taoyuan)."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from casekit import (
    ONLINE_ITEM,
    PASSWORD,
    PORTAL_ID,
    PORTAL_SECRET,
    applicant,
    every_item,
    materials,
)
from fedkit import DbFactory

from gateway.cases.model import Case
from gateway.config import GatewayConfig
from gateway.db.auth_repo import AuthRepo
from gateway.db.case_repo import CaseRepo
from gateway.db.engine import make_engine
from gateway.db.repos import InboxEntry, InboxRepo, OutboxEntry, OutboxRepo, RegistryRepo
from gateway.keystore import KeyStore
from gateway.localfed import (
    City,
    LocalGateway,
    found_alliance,
    free_port,
    load_all,
    start_gateway,
    wait_ready,
    write_configs,
)
from registry.snapshot import RegistrySnapshot
from registry.versions import verify_version
from trust.anchor import load_anchor
from trust.credentials import hash_password
from trust.keys import SigningKey

KUNMING = City("CN-530100", "昆明市", "kunming")
DOUMEN = City("CN-440403", "珠海市斗门区", "doumen")
TAOYUAN = City("CN-430725", "常德市桃源县", "taoyuan")
TAOYUAN_2 = TAOYUAN.member_id + "#2"  # Taoyuan's second process, when there is one
D, T = DOUMEN.member_id, TAOYUAN.member_id

Settings = Mapping[str, Mapping[str, Any]]


class ProcFederation:
    """Config files and processes by member id (`TAOYUAN_2` for a second Taoyuan process)."""

    def __init__(self, root: Path, configs: Mapping[str, GatewayConfig],
                 paths: Mapping[str, Path]) -> None:
        self.root = root
        self.configs = dict(configs)
        self.paths = dict(paths)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.pids: dict[str, set[int]] = {member: set() for member in configs}

    def log(self, member: str) -> Path:
        return self.root / f"{member}.log"

    def start(self, member: str) -> None:
        self.procs[member] = start_gateway(self.paths[member], self.log(member))
        self.pids[member].add(self.procs[member].pid)

    def delivered_by(self, owner: str | None) -> str | None:
        """The member key (TAOYUAN_2 for the second process) of an outbox row's deliverer,
        by the process id in `claimed_by` ("host:pid:nonce"), across restarts."""
        pid = int(owner.rsplit(":", 2)[1]) if owner else None
        return next((m for m, pids in self.pids.items() if pid in pids), None)

    def kill(self, member: str) -> None:
        """SIGKILL: a crash, with nothing flushed or released."""
        proc = self.procs[member]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def terminate(self, member: str) -> None:
        """SIGTERM: the graceful stop an operator's service manager sends."""
        self.procs[member].send_signal(signal.SIGTERM)

    def wait_exit(self, member: str, timeout: float = 15) -> int:
        return self.procs[member].wait(timeout=timeout)

    def url(self, member: str) -> str:
        return self.configs[member].server.endpoint()

    async def ready(self, http: aiohttp.ClientSession, *members: str) -> None:
        for member in members:
            await wait_ready(http, self.url(member), time.monotonic() + 30,
                             self.procs[member], self.log(member))

    def signing_key(self, member: str) -> SigningKey:
        config = self.configs[member]
        store = KeyStore(config.keys.dir, config.key_passphrase())
        store.load()
        return store.keys[-1]

    async def outbox(self, member: str) -> list[OutboxEntry]:
        engine = make_engine(self.configs[member].database.url)
        try:
            return await OutboxRepo(engine).list_entries(limit=100_000)
        finally:
            await engine.dispose()

    async def inbox(self, member: str) -> list[InboxEntry]:
        engine = make_engine(self.configs[member].database.url)
        try:
            return await InboxRepo().list_all(engine)
        finally:
            await engine.dispose()

    async def snapshot(self, member: str) -> RegistrySnapshot:
        """The registry `member` holds, verified against its anchor."""
        engine = make_engine(self.configs[member].database.url)
        try:
            stored = await RegistryRepo(engine).latest()
        finally:
            await engine.dispose()
        assert stored is not None
        return verify_version(stored.jws, load_anchor(self.configs[member].trust.anchor))

    async def case(self, member: str, case_id: str) -> Case | None:
        engine = make_engine(self.configs[member].database.url)
        try:
            async with engine.connect() as conn:
                return await CaseRepo().get(conn, case_id, with_events=True)
        finally:
            await engine.dispose()


async def start_federation(root: Path, db_factory: DbFactory, *,
                           settings: Mapping[str, Settings] | None = None,
                           taoyuan_processes: int = 1,
                           start: Sequence[str] | None = None) -> ProcFederation:
    """Founds the alliance, writes the configs and starts `start` (default: every process).

    `settings` adds config sections per member id, on top of quick delivery settings.
    """
    secret = root / "portal.secret"
    secret.write_text(PORTAL_SECRET, encoding="utf-8")
    common: dict[str, Mapping[str, Any]] = {
        f"api.clients.{PORTAL_ID}": {"secret_file": str(secret)},
        "delivery": {"poll_interval": 0.2, "initial_backoff": 0.1, "max_backoff": 1},
        "cases": {"scan_interval": 3600}}
    gateways = []
    for city in (KUNMING, DOUMEN, TAOYUAN):
        extra = (settings or {}).get(city.member_id, {})
        merged = {name: {**common.get(name, {}), **extra.get(name, {})}
                  for name in {*common, *extra}}
        gateways.append(LocalGateway(city, free_port(), await db_factory(city.slug),
                                     settings=merged))
    paths = write_configs(root, gateways[0], gateways[1:])
    configs = load_all(paths)
    items = {c.member_id: list(every_item(c.member_id)) for c in (DOUMEN, TAOYUAN)}
    await found_alliance(configs[KUNMING.member_id], [configs[D], configs[T]],
                         operator_name=KUNMING.name, items=items)
    engine = make_engine(configs[T].database.url)
    try:
        # A cheaper scrypt cost than production, as in casekit; the login path is the real one.
        assert await AuthRepo(engine).add_clerk(
            username="officer", name="handler clerk", role="handler",
            password_hash=hash_password(PASSWORD, n=2**14), now=time.time())
    finally:
        await engine.dispose()
    if taoyuan_processes == 2:
        # The same member, config, keys and database on another port; the registry names the
        # first one's endpoint.
        first = paths[T]
        second = first.with_name("tongban-2.toml")
        port = configs[T].server.port
        second.write_text(first.read_text(encoding="utf-8").replace(
            f"port = {port}\n", f"port = {free_port()}\n"), encoding="utf-8")
        paths[TAOYUAN_2] = second
        configs[TAOYUAN_2] = load_all({TAOYUAN_2: second})[TAOYUAN_2]
        assert configs[TAOYUAN_2].server.port != port
    fed = ProcFederation(root, configs, paths)
    for member in (start if start is not None else list(configs)):
        fed.start(member)
    return fed


PORTAL_AUTH = "Basic " + base64.b64encode(f"{PORTAL_ID}:{PORTAL_SECRET}".encode()).decode()


async def call(http: aiohttp.ClientSession, fed: ProcFederation, member: str, method: str,
               path: str, body: Any = None, *, auth: str | None = None) -> tuple[int, str, Any]:
    """(status, content type, JSON document or text) of one /api/v1 call."""
    async with http.request(
            method, f"{fed.url(member)}/api/v1/{path}",
            data=None if body is None else json.dumps(body),
            headers={"Content-Type": "application/json",
                     **({"Authorization": auth} if auth else {})},
            timeout=aiohttp.ClientTimeout(total=20)) as resp:
        text = await resp.text()
        doc = json.loads(text) if resp.content_type.endswith("json") else text
        return resp.status, resp.content_type, doc


async def file_case(http: aiohttp.ClientSession, fed: ProcFederation, index: int) -> str:
    """The portal files an online case at Doumen for Taoyuan; returns its id."""
    body = {"item": ONLINE_ITEM, "handler": T, "loa": "L4",
            "applicant": applicant("430725", name=f"申请人{index}"),
            "materials": materials(ONLINE_ITEM), "delivery": {"method": "online"}}
    status, _, doc = await call(http, fed, D, "POST", "cases", body, auth=PORTAL_AUTH)
    assert status == 201, doc
    return str(doc["case"]["case_id"])


async def officer(http: aiohttp.ClientSession, fed: ProcFederation, member: str) -> str:
    """A handling officer's session at one Taoyuan process: its Authorization header."""
    status, _, doc = await call(http, fed, member, "POST", "login",
                                {"username": "officer", "password": PASSWORD})
    assert status == 200, doc
    return "Bearer " + str(doc["access_token"])
