"""Kill -9 at random moments: real gateway processes, real cases, nothing lost or done twice.

Doumen's portal files 200 online cases for Taoyuan, and each case runs its whole life: Taoyuan
acknowledges it, asks for a supplement, the applicant supplies it through the portal, Taoyuan
takes it in again, accepts, reviews, concludes and delivers, and the applicant evaluates it at
Doumen. That is 11 signed messages a case (3 from Doumen, 8 from Taoyuan), 2,200 in all, while a
chaos task kills the Doumen and the Taoyuan process with SIGKILL several times each and starts
them again. Each gateway is both a sender and a receiver, so every kill lands on both roles.
On PostgreSQL Taoyuan runs as two processes of one member on its one database (both deliver
its outbox and serve the officer, who reaches either), and the second is killed too; on SQLite
each member is a single process.

Afterwards: every message either side queued is delivered with a receipt that verifies against
the registry; each message appears exactly once in the history of both copies of its case (the
message id is on the event), so nothing was processed twice or lost; both copies hold the same
transitions, the whole planned life of the case; and each side applied the other's messages in
the order they were sent.

The portal and the clerk act like real clients: they retry while a gateway is down and read the
case before acting, so a request whose answer was lost in a kill is not made twice (a transition
is decided by the state it leaves; the one request, case.supplement, by the copy's history).
The portal files each case with an Idempotency-Key and resends with the same key until it has
an answer, so a 201 lost in a kill returns the case already filed: Doumen must end up with
exactly the 200 cases, none filed twice.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from casekit import (
    ONLINE_ITEM,
    PASSWORD,
    PORTAL_ID,
    PORTAL_SECRET,
    applicant,
    materials,
)
from fedkit import DbFactory, wait_for
from prockit import DOUMEN, KUNMING, TAOYUAN, TAOYUAN_2, ProcFederation, start_federation
from sqlalchemy import select

from gateway.cases.states import CaseState
from gateway.config import GatewayConfig
from gateway.db.case_repo import CaseRepo
from gateway.db.engine import make_engine
from gateway.db.repos import OutboxRepo, OutboxState, RegistryRepo
from gateway.db.schema import cases
from gateway.federation.receipts import verify_receipt
from gateway.localfed import stop_processes, wait_ready
from registry.versions import verify_version
from trust.anchor import load_anchor
from trust.keys import sha256_b64url

CASES = 200
KILLS_EACH = 3  # SIGKILLs of Doumen and of Taoyuan, in a random order at random moments
IN_FLIGHT = 40  # cases the portal and the officer work on at once
PACE = 0.2  # how a client paces its polls and retries (more often would starve the gateways)
DRIVE_TIMEOUT = 600  # for one case's whole life, kills included; a stuck case fails the test

# The transitions every case goes through, on both copies, in this order.
LIFE = ("submitted", "handler_received", "supplement_required", "submitted", "handler_received",
        "accepted", "in_review", "concluded", "delivered", "evaluated")
# Doumen sends case.submit, the request case.supplement and case.evaluate; Taoyuan the other
# eight transitions (handler_received twice, supplement_required, submitted, accepted,
# in_review, concluded, delivered), each announced by the side that owns it.
MESSAGES_PER_CASE = {DOUMEN.member_id: 3, TAOYUAN.member_id: 8}


async def setup(root: Path, db_factory: DbFactory, *,
                second_process: bool) -> ProcFederation:
    # A short claim lease: a killed process's messages are taken over within seconds.
    quick = {"delivery": {"claim_lease": 2}}
    return await start_federation(root, db_factory,
                                  settings={c.member_id: quick for c in (KUNMING, DOUMEN, TAOYUAN)},
                                  taoyuan_processes=2 if second_process else 1)


async def ready(fed: ProcFederation, http: aiohttp.ClientSession, member: str) -> None:
    await wait_ready(http, fed.url(member), time.monotonic() + 60, fed.procs[member],
                     fed.log(member))


async def until(attempt: Callable[[], Awaitable[bool]], what: str) -> None:
    """Repeat `attempt` (one read, maybe one action) until it reports done, or fail."""
    deadline = time.monotonic() + DRIVE_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if await attempt():
                return
        except (aiohttp.ClientError, TimeoutError):
            pass  # the gateway is down or was killed mid-request: read again, then decide
        await asyncio.sleep(PACE)  # pacing a client's retries, not waiting for an outcome
    raise AssertionError(f"timed out after {DRIVE_TIMEOUT} s: {what}")


@dataclass(frozen=True)
class Step:
    """One client action on one side, taken when that side's copy is ready for it."""

    member: str
    path: str  # under /api/v1/, with {case} for the case id
    body: Mapping[str, Any]
    state: str  # the acting side's copy is in this state when the step is due
    ready_at: int  # ... after this many transitions (states repeat: the history tells)
    done: Callable[[Sequence[Mapping[str, Any]]], bool]  # judged on that copy's history


def transitions(history: Sequence[Mapping[str, Any]]) -> int:
    return sum(1 for e in history if e["to"] is not None)


def reached(n: int) -> Callable[[Sequence[Mapping[str, Any]]], bool]:
    return lambda history: transitions(history) >= n


def supplied(history: Sequence[Mapping[str, Any]]) -> bool:
    return any(e["event"] == "case.supplement" for e in history) or transitions(history) >= 4


SUPPLEMENT = materials(ONLINE_ITEM)[0]
STEPS = (
    Step(TAOYUAN.member_id, "handling/cases/{case}/supplement-request",
         {"reason": "照片不清晰", "materials": [SUPPLEMENT["name"]]}, "handler_received", 2,
         reached(3)),
    Step(DOUMEN.member_id, "cases/{case}/supplement",
         {"materials": [{**SUPPLEMENT, "name": SUPPLEMENT["name"] + "（重新扫描）"}]},
         "supplement_required", 3, supplied),
    Step(TAOYUAN.member_id, "handling/cases/{case}/accept", {}, "handler_received", 5,
         reached(6)),
    Step(TAOYUAN.member_id, "handling/cases/{case}/review", {}, "accepted", 6, reached(7)),
    Step(TAOYUAN.member_id, "handling/cases/{case}/conclude",
         {"outcome": "approved", "result": "准予转移"}, "in_review", 7, reached(8)),
    Step(TAOYUAN.member_id, "handling/cases/{case}/deliver", {}, "concluded", 8, reached(9)),
    Step(DOUMEN.member_id, "cases/{case}/evaluation", {"level": 5}, "delivered", 9,
         reached(10)),
)
WATCHED = {member: sorted({s.state for s in STEPS if s.member == member})
           for member in (DOUMEN.member_id, TAOYUAN.member_id)}


class Clients:
    """Doumen's portal and Taoyuan's officer, each retrying like a real client."""

    def __init__(self, fed: ProcFederation, http: aiohttp.ClientSession, rng: random.Random
                 ) -> None:
        self.fed = fed
        self.http = http
        self.rng = rng
        self.portal = "Basic " + base64.b64encode(f"{PORTAL_ID}:{PORTAL_SECRET}".encode()
                                                  ).decode()
        self.officer: dict[str, str] = {}  # a session per Taoyuan process
        self.taoyuan = [m for m in fed.configs if m.startswith(TAOYUAN.member_id)]
        self.filed: list[str] = []
        self.replayed = 0  # filing answers that repeated a case a lost-201 try had filed
        self.steps_done = 0  # filings and steps, for the chaos task's timing
        self.advanced = asyncio.Event()
        self.board: dict[str, dict[str, str]] = {m: {} for m in WATCHED}
        self.refreshed = asyncio.Condition()
        self.generation = 0

    def progress(self) -> float:
        return self.steps_done / (CASES * (1 + len(STEPS)))

    def advance(self) -> None:
        self.steps_done += 1
        self.advanced.set()

    async def _auth(self, member: str) -> str:
        if member == DOUMEN.member_id:
            return self.portal
        if member not in self.officer:
            status, doc = await self._send(member, "POST", "login", {
                "username": "officer", "password": PASSWORD}, auth=None)
            if status != 200:
                raise aiohttp.ClientError(f"login: {status}")
            self.officer[member] = "Bearer " + doc["access_token"]
        return self.officer[member]

    async def _send(self, member: str, method: str, path: str, body: Any = None, *,
                    auth: str | None,
                    headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        async with self.http.request(
                method, f"{self.fed.url(member)}/api/v1/{path}",
                data=None if body is None else json.dumps(body),
                headers={"Content-Type": "application/json",
                         **({"Authorization": auth} if auth else {}), **(headers or {})},
                timeout=aiohttp.ClientTimeout(total=20)) as resp:
            text = await resp.text()
            self.replayed += resp.headers.get("Idempotent-Replayed") == "true"
            return resp.status, json.loads(text) if text.startswith("{") else text

    async def call(self, member: str, method: str, path: str, body: Any = None, *,
                   headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        if member == TAOYUAN.member_id:  # the officer's browser reaches either process
            member = self.rng.choice(self.taoyuan)
        status, doc = await self._send(member, method, path, body,
                                       auth=await self._auth(member), headers=headers)
        if status == 401 and member != DOUMEN.member_id:
            self.officer.pop(member, None)  # the session did not survive; log in again
        return status, doc

    async def file(self, index: int) -> str:
        body = {"item": ONLINE_ITEM, "handler": TAOYUAN.member_id, "loa": "L4",
                "applicant": applicant("430725", name=f"申请人{index}"),
                "materials": materials(ONLINE_ITEM), "delivery": {"method": "online"}}
        filed: list[str] = []
        # One key for every try: a try whose 201 was lost in a kill filed the case, and the
        # next try gets that case back instead of filing another.
        key = {"Idempotency-Key": f"chaos-{index}-{uuid.uuid4()}"}

        async def attempt() -> bool:
            status, doc = await self.call(DOUMEN.member_id, "POST", "cases", body, headers=key)
            if status == 201:
                filed.append(doc["case"]["case_id"])
            return status == 201

        await until(attempt, f"case {index} to be filed at Doumen")
        self.advance()
        self.filed.append(filed[0])
        return filed[0]

    async def history(self, member: str, case_id: str) -> list[Mapping[str, Any]] | None:
        status, doc = await self.call(member, "GET", f"cases/{case_id}")
        return doc["case"]["history"] if status == 200 else None

    async def watch(self, stop: asyncio.Event) -> None:
        """The officer's and the portal's list screens: the state of every case that may be
        due for a step, on each side, read every PACE. Drivers wait on these instead of each
        polling its case, which would keep the gateways busier than the messages do."""
        while not stop.is_set():
            for member, states in WATCHED.items():
                seen: dict[str, str] = {}
                try:
                    for state in states:
                        status, doc = await self.call(member, "GET", f"cases?state={state}")
                        if status != 200:
                            raise aiohttp.ClientError(f"list: {status}")
                        seen.update((c["case_id"], state) for c in doc["cases"])
                except (aiohttp.ClientError, TimeoutError):
                    continue  # down: the screen keeps showing what it showed
                self.board[member] = seen
            async with self.refreshed:
                self.generation += 1
                self.refreshed.notify_all()
            await asyncio.sleep(PACE)  # how often a list screen refreshes

    async def due(self, member: str, case_id: str, state: str, newer_than: int) -> int:
        """Waits for a list screen newer than `newer_than` to show the case in `state`."""
        def shown() -> bool:
            return self.generation > newer_than and self.board[member].get(case_id) == state

        async with asyncio.timeout(DRIVE_TIMEOUT), self.refreshed:
            await self.refreshed.wait_for(shown)
            return self.generation

    async def drive(self, case_id: str) -> None:
        for step in STEPS:
            unsure = False  # a try's answer was lost: its history says what happened
            seen = -1  # the list screen the last try went by

            async def attempt(step: Step = step) -> bool:
                nonlocal unsure, seen
                if not unsure:
                    seen = await self.due(step.member, case_id, step.state, seen)
                history = await self.history(step.member, case_id)
                if history is None:
                    return False
                if step.done(history):
                    return True
                if transitions(history) < step.ready_at:
                    unsure = False  # the screen showed an earlier visit to that state
                    return False
                unsure = True
                status, doc = await self.call(step.member, "POST",
                                              step.path.format(case=case_id), step.body)
                # 409 after a kill: it was done, and the next read says so.
                assert status in (200, 202, 409, 503), (status, doc)
                return status in (200, 202)

            await until(attempt, f"{step.path} of {case_id}")
            self.advance()


async def chaos(fed: ProcFederation, http: aiohttp.ClientSession, rng: random.Random,
                clients: Clients, done: asyncio.Event) -> list[tuple[str, float, bool]]:
    """Kills Doumen and Taoyuan KILLS_EACH times each, in a random order, at random points of
    the run (by the share of case steps done, so the kills spread over the run however fast
    the machine is); returns (victim, seconds until it answered again, cases still running).
    """
    victims = [DOUMEN.member_id, TAOYUAN.member_id] * KILLS_EACH
    if TAOYUAN_2 in fed.configs:
        victims += [TAOYUAN_2] * (KILLS_EACH - 1)
    rng.shuffle(victims)
    moments = sorted(rng.uniform(0.02, 0.85) for _ in victims)
    killed = []
    for victim, moment in zip(victims, moments, strict=True):
        while clients.progress() < moment:
            clients.advanced.clear()
            await clients.advanced.wait()
        busy = not done.is_set()
        fed.kill(victim)
        down = time.monotonic()
        await asyncio.sleep(rng.uniform(0.0, 1.5))  # how long it stays down
        fed.start(victim)
        await ready(fed, http, victim)
        killed.append((victim, time.monotonic() - down, busy))
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
        tmp_path: Path, db_factory: DbFactory, db_backend: str) -> None:
    # On PostgreSQL Taoyuan runs as two processes on its one database (issue 7: no message
    # sent twice, no transition applied twice); SQLite is for a single process.
    fed = await setup(tmp_path, db_factory, second_process=db_backend == "postgresql")
    doumen, taoyuan = fed.configs[DOUMEN.member_id], fed.configs[TAOYUAN.member_id]
    seed = random.SystemRandom().randrange(1 << 30)  # in every failure message, to replay
    try:
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=2 * IN_FLIGHT)) as http:
            for member in fed.configs:
                await ready(fed, http, member)
            clients = Clients(fed, http, random.Random(seed + 1))
            slots = asyncio.Semaphore(IN_FLIGHT)

            async def one_case(index: int) -> None:
                async with slots:
                    await clients.drive(await clients.file(index))

            done = asyncio.Event()

            async def run_cases() -> None:
                try:
                    await asyncio.gather(*(one_case(i) for i in range(CASES)))
                finally:
                    done.set()

            started = time.monotonic()
            stop = asyncio.Event()
            watching = asyncio.create_task(clients.watch(stop))
            _, killed = await asyncio.gather(run_cases(), chaos(
                fed, http, random.Random(seed), clients, done))
            stop.set()
            await watching
            took = time.monotonic() - started
        for member in (DOUMEN.member_id, TAOYUAN.member_id):  # while messages flowed
            assert sum(1 for k in killed if k[0] == member and k[2]) >= KILLS_EACH, (killed,
                                                                                     seed)
        total = CASES  # a case filed twice (a lost 201 retried) would make it more

        async def settled() -> bool:
            d, t = await state_of(doumen), await state_of(taoyuan)
            return all(len(s["cases"]) == total and all(
                c.state is CaseState.EVALUATED for c in s["cases"].values()) and all(
                e.state == OutboxState.DELIVERED for e in s["outbox"]) for s in (d, t))

        await wait_for(settled, timeout=120, what=f"every case evaluated at both sides ({seed})")
        d, t = await state_of(doumen), await state_of(taoyuan)
        sent = {member: list(state["outbox"]) for member, state in
                ((DOUMEN.member_id, d), (TAOYUAN.member_id, t))}
        # 11 messages a case: none lost, none queued twice (a repeated transition would be).
        for member, entries in sent.items():
            assert len(entries) == MESSAGES_PER_CASE[member] * total, (member, seed)
        if TAOYUAN_2 in fed.configs:
            # Both Taoyuan processes delivered part of its outbox.
            by = Counter(fed.delivered_by(e.claimed_by) for e in sent[TAOYUAN.member_id])
            assert by[TAOYUAN.member_id] > 0 and by[TAOYUAN_2] > 0, (by, seed)
            assert set(by) == {TAOYUAN.member_id, TAOYUAN_2}, (by, seed)
        jtis = {e.jti for entries in sent.values() for e in entries}
        assert len(jtis) == sum(len(entries) for entries in sent.values()) >= 2000
        assert set(d["cases"]) == set(t["cases"])
        # Every case Doumen holds is one the portal got an answer for, once.
        assert set(d["cases"]) == set(clients.filed) and len(clients.filed) == CASES, seed
        for case_id, mine in d["cases"].items():
            theirs = t["cases"][case_id]
            # The same transitions on both copies, the whole planned life.
            ours = [(e.event, e.from_state, e.to_state, e.actor, e.at,
                     json.dumps(e.detail, sort_keys=True)) for e in mine.events if e.to_state]
            assert ours == [(e.event, e.from_state, e.to_state, e.actor, e.at,
                             json.dumps(e.detail, sort_keys=True))
                            for e in theirs.events if e.to_state], (case_id, seed)
            assert [e.to_state.value for e in mine.events if e.to_state] == list(LIFE)
            # Every message of the case processed exactly once on each side.
            for copy in (mine, theirs):
                carried = [e.jti for e in copy.events if e.jti is not None]
                assert len(carried) == len(set(carried)) == 11, (case_id, seed)
            assert {e.jti for e in mine.events if e.jti} == {e.jti for e in theirs.events
                                                              if e.jti}
        # Applied in the order sent: each sender's seq per case rises along the receiver's
        # history.
        for receiver_state, sender in ((t, DOUMEN.member_id), (d, TAOYUAN.member_id)):
            seq_of = {e.jti: e.seq for e in sent[sender]}
            for case_ in receiver_state["cases"].values():
                seqs = [seq_of[e.jti] for e in case_.events if e.jti in seq_of]
                assert seqs == list(range(1, MESSAGES_PER_CASE[sender] + 1)), case_.case_id
        # Every message delivered, its receipt verifying against the registry.
        statuses: dict[str, int] = {}
        for config, peer in ((doumen, TAOYUAN.member_id), (taoyuan, DOUMEN.member_id)):
            snapshot = await snapshot_of(config)
            for entry in sent[config.member_id]:
                assert entry.receipt is not None and entry.token is not None
                verify_receipt(entry.receipt, snapshot=snapshot, receiver=peer,
                               sender=config.member_id, for_jti=entry.jti,
                               digest=sha256_b64url(entry.token.encode("ascii")),
                               now=time.time())
                statuses[entry.receipt_status or "-"] = \
                    statuses.get(entry.receipt_status or "-", 0) + 1
        assert set(statuses) <= {"accepted", "duplicate"}, statuses
        print(f"\nchaos seed {seed}: {total} cases ({clients.replayed} filing retries "
              f"answered from their Idempotency-Key), {len(jtis)} "
              f"messages, receipts {statuses}, kills {killed}, {took:.1f} s")
    finally:
        stop_processes(list(fed.procs.values()))
