"""Kill -9 at random moments: real gateway processes, real cases, nothing lost or done twice.

Doumen's portal files online cases for Taoyuan to handle while a chaos task kills the Doumen
or the Taoyuan process with SIGKILL and starts it again. Afterwards every case Doumen holds is
at Taoyuan too, each acknowledged once, both copies of every case hold the same transitions,
and every receipt each side keeps verifies against the registry.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from casekit import ONLINE_ITEM, PORTAL_ID, PORTAL_SECRET, applicant, every_item, materials
from fedkit import DbFactory, wait_for
from sqlalchemy import select

from gateway.cases.states import CaseState
from gateway.config import GatewayConfig
from gateway.db.case_repo import CaseRepo
from gateway.db.engine import make_engine
from gateway.db.repos import OutboxRepo, OutboxState, RegistryRepo
from gateway.db.schema import cases
from gateway.federation.receipts import verify_receipt
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
from registry.versions import verify_version
from trust.anchor import load_anchor
from trust.keys import sha256_b64url

KUNMING = City("CN-530100", "昆明市", "kunming")
DOUMEN = City("CN-440403", "珠海市斗门区", "doumen")
TAOYUAN = City("CN-430725", "常德市桃源县", "taoyuan")
CASES = 60
KILLS = 4
RETRY_PAUSE = 0.05  # how a portal paces its retries while the gateway is down


class Federation:
    def __init__(self, root: Path, configs: Mapping[str, GatewayConfig],
                 paths: Mapping[str, Path]) -> None:
        self.root = root
        self.configs = configs
        self.paths = paths
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, member: str) -> None:
        log = self.root / f"{member}.log"
        with log.open("ab"):
            pass
        self.procs[member] = start_gateway(self.paths[member], log)

    def kill(self, member: str) -> None:
        proc = self.procs[member]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def url(self, member: str) -> str:
        return self.configs[member].server.endpoint()


async def setup(root: Path, db_factory: DbFactory) -> Federation:
    secret = root / "portal.secret"
    secret.write_text(PORTAL_SECRET, encoding="utf-8")
    # A short claim lease: a killed process's messages are taken over within seconds.
    portal = {f"api.clients.{PORTAL_ID}": {"secret_file": str(secret)},
              "delivery": {"poll_interval": 0.2, "initial_backoff": 0.1, "max_backoff": 1,
                           "claim_lease": 2}}
    gateways = [LocalGateway(city, free_port(), await db_factory(city.slug), settings=portal)
                for city in (KUNMING, DOUMEN, TAOYUAN)]
    paths = write_configs(root, gateways[0], gateways[1:])
    configs = load_all(paths)
    items = {c.member_id: list(every_item(c.member_id)) for c in (DOUMEN, TAOYUAN)}
    await found_alliance(configs[KUNMING.member_id],
                         [configs[DOUMEN.member_id], configs[TAOYUAN.member_id]],
                         operator_name=KUNMING.name, items=items)
    fed = Federation(root, configs, paths)
    for member in configs:
        fed.start(member)
    return fed


async def ready(fed: Federation, http: aiohttp.ClientSession, member: str) -> None:
    await wait_ready(http, fed.url(member), time.monotonic() + 60, fed.procs[member])


async def file_cases(fed: Federation, http: aiohttp.ClientSession) -> int:
    """File CASES cases at Doumen, retrying while it is down; returns how many were filed."""
    auth = "Basic " + base64.b64encode(f"{PORTAL_ID}:{PORTAL_SECRET}".encode()).decode()
    body = {"item": ONLINE_ITEM, "handler": TAOYUAN.member_id, "applicant": applicant("430725"),
            "loa": "L4", "materials": materials(ONLINE_ITEM)}
    filed = 0
    while filed < CASES:
        try:
            async with http.post(fed.url(DOUMEN.member_id) + "/api/v1/cases", json=body,
                                 headers={"Authorization": auth},
                                 timeout=aiohttp.ClientTimeout(total=10)) as resp:
                if resp.status == 201:
                    filed += 1
                    continue
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(RETRY_PAUSE)  # Doumen is down: the portal tries again shortly
    return filed


async def chaos(fed: Federation, http: aiohttp.ClientSession, seed: int) -> list[str]:
    rng = random.Random(seed)
    killed = []
    for _ in range(KILLS):
        await asyncio.sleep(rng.uniform(0.3, 1.2))
        victim = rng.choice([DOUMEN.member_id, TAOYUAN.member_id])
        fed.kill(victim)
        killed.append(victim)
        await asyncio.sleep(rng.uniform(0.1, 0.8))
        fed.start(victim)
        await ready(fed, http, victim)
    return killed


async def snapshot_of(config: GatewayConfig) -> Any:
    engine = make_engine(config.database.url)
    try:
        stored = await RegistryRepo(engine).latest()
    finally:
        await engine.dispose()
    assert stored is not None
    return verify_version(stored.jws, load_anchor(config.trust.anchor))


async def state_of(config: GatewayConfig) -> dict[str, Any]:
    engine = make_engine(config.database.url)
    try:
        async with engine.connect() as conn:
            ids = [r[0] for r in (await conn.execute(select(cases.c.case_id))).all()]
            repo = CaseRepo()
            held = {cid: await repo.get(conn, cid, with_events=True) for cid in ids}
        outbox = await OutboxRepo(engine).list_entries(limit=100_000)
    finally:
        await engine.dispose()
    return {"cases": held, "outbox": outbox}


async def test_kill_nine_loses_nothing_and_does_nothing_twice(
        tmp_path: Path, db_factory: DbFactory) -> None:
    fed = await setup(tmp_path, db_factory)
    doumen, taoyuan = fed.configs[DOUMEN.member_id], fed.configs[TAOYUAN.member_id]
    try:
        async with aiohttp.ClientSession() as http:
            for member in fed.configs:
                await ready(fed, http, member)
            seed = random.SystemRandom().randrange(1 << 30)  # in the failure report, to replay
            filed, killed = await asyncio.gather(file_cases(fed, http),
                                                 chaos(fed, http, seed=seed))
            assert filed == CASES and len(killed) == KILLS, seed

            async def settled() -> bool:
                d = await state_of(doumen)
                return len(d["cases"]) >= CASES and all(
                    c.state is CaseState.HANDLER_RECEIVED for c in d["cases"].values())

            await wait_for(settled, timeout=120,
                           what="every case filed at Doumen to come back acknowledged")
        d, t = await state_of(doumen), await state_of(taoyuan)
        # Every case Doumen holds reached Taoyuan, once, with the same transitions.
        assert set(d["cases"]) == set(t["cases"])
        for case_id, mine in d["cases"].items():
            theirs = t["cases"][case_id]
            assert [(e.event, e.from_state, e.to_state, e.at) for e in mine.events
                    if e.to_state] == [(e.event, e.from_state, e.to_state, e.at)
                                       for e in theirs.events if e.to_state]
            assert [e.event for e in theirs.events].count("case.submit") == 1
        # Every message delivered once, its receipt verifying against the registry.
        for config, state, peer in ((doumen, d, TAOYUAN.member_id),
                                    (taoyuan, t, DOUMEN.member_id)):
            snapshot = await snapshot_of(config)
            delivered = [e for e in state["outbox"] if e.state == OutboxState.DELIVERED]
            assert len(delivered) == len(state["outbox"]) == len(d["cases"])
            for entry in delivered:
                assert entry.receipt is not None and entry.token is not None
                verify_receipt(entry.receipt, snapshot=snapshot, receiver=peer,
                               sender=config.member_id, for_jti=entry.jti,
                               digest=sha256_b64url(entry.token.encode("ascii")),
                               now=time.time())
    finally:
        stop_processes(list(fed.procs.values()))
