"""Two `tongban serve` processes of one member on one PostgreSQL database, hit at the same
moment (issue 7): the inbox stores a message once however many processes receive it, and the
transitions of one case are serialized across processes (`SELECT ... FOR UPDATE` on the case).

PostgreSQL only: several processes on one SQLite database are not supported (README, Operator).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fedkit import DbFactory, wait_for
from prockit import (
    KUNMING,
    TAOYUAN_2,
    D,
    ProcFederation,
    T,
    call,
    file_case,
    officer,
    start_federation,
)

from gateway.cases.states import CaseState
from gateway.db.engine import create_schema, make_engine
from gateway.db.repos import RegistryRepo
from gateway.federation.receipts import verify_receipt
from gateway.localfed import stop_processes
from trust import jws
from trust.keys import sha256_b64url

pytestmark = pytest.mark.backends("postgresql")

ROUNDS = 3  # messages posted to both processes at once


async def test_processes_storing_one_registry_version_at_once(db_factory: DbFactory) -> None:
    """Two processes starting together on a fresh database both fetch and store the registry:
    one stores it, the other finds it stored (it exited with a duplicate-key error)."""
    engine = make_engine(await db_factory("registry"))
    # Four processes' connections, open and idle, so the four stores run side by side.
    engines = [make_engine(engine.url.render_as_string(hide_password=False)) for _ in range(4)]
    try:
        await create_schema(engine)
        for other in engines:
            async with other.connect():
                pass
        repos = [RegistryRepo(other) for other in engines]
        await asyncio.gather(*(r.store_if_absent(version=1, jws="a.b.c", digest="d1", iat=0,
                                                 exp=1, now=0.0) for r in repos))
        assert [(v.version, v.jws) for v in await repos[0].all_versions()] == [(1, "a.b.c")]
    finally:
        for other in engines:
            await other.dispose()
        await engine.dispose()


async def post(http: aiohttp.ClientSession, fed: ProcFederation, member: str,
               token: str) -> tuple[int, str]:
    async with http.post(f"{fed.url(member)}/federation/v1/messages", data=token.encode(),
                         headers={"Content-Type": "application/jwt"}) as resp:
        return resp.status, await resp.text()


async def test_one_message_posted_to_two_processes_at_once_is_stored_once(
        tmp_path: Path, db_factory: DbFactory) -> None:
    fed = await start_federation(tmp_path, db_factory, taoyuan_processes=2,
                                 start=[KUNMING.member_id, D])
    try:
        async with aiohttp.ClientSession() as http:
            await fed.ready(http, KUNMING.member_id, D)
            cases = [await file_case(http, fed, i) for i in range(ROUNDS + 1)]

            async def signed() -> bool:  # Taoyuan is down: signed copies wait in the outbox
                rows = await fed.outbox(D)
                return len(rows) == ROUNDS + 1 and all(r.token for r in rows)

            await wait_for(signed, what="Doumen to sign its case.submit messages")
            fed.terminate(D)  # from here on only this test sends Doumen's messages
            await wait_for(lambda: _exited(fed, D), what="Doumen to stop")
            rows = {r.case_id: r for r in await fed.outbox(D)}
            fed.start(T)
            fed.start(TAOYUAN_2)
            await fed.ready(http, T, TAOYUAN_2)
            snapshot = await fed.snapshot(D)

            # The same bytes to both processes at once: one stores it, the other answers
            # `duplicate`, both with a receipt for exactly those bytes.
            for case_id in cases[:ROUNDS]:
                row = rows[case_id]
                assert row.token is not None
                answers = await asyncio.gather(post(http, fed, T, row.token),
                                               post(http, fed, TAOYUAN_2, row.token))
                assert [status for status, _ in answers] == [200, 200], answers
                statuses = sorted(verify_receipt(
                    text.strip(), snapshot=snapshot, receiver=T, sender=D, for_jti=row.jti,
                    digest=sha256_b64url(row.token.encode()), now=time.time()).status.value
                    for _, text in answers)
                assert statuses == ["accepted", "duplicate"], case_id

            # The same jti with other bytes (re-signed a second earlier), at once with the
            # original: one is stored, the other refused as a replay.
            last = rows[cases[ROUNDS]]
            assert last.token is not None
            claims = dict(jws.parse(last.token, jws.TokenType.MESSAGE).claims)
            claims["iat"] -= 1
            claims["exp"] -= 1
            other = jws.sign(claims, fed.signing_key(D), jws.TokenType.MESSAGE)
            answers = await asyncio.gather(post(http, fed, T, last.token),
                                           post(http, fed, TAOYUAN_2, other))
            assert sorted(status for status, _ in answers) == [200, 409], answers
            refused = next(text for status, text in answers if status == 409)
            assert json.loads(refused)["type"] == "urn:tongban:error:replay"

        # Processed once: one inbox row per message, one case.submit on each case.
        inbox = [e for e in await fed.inbox(T) if e.type == "case.submit"]
        assert sorted(e.case_id or "" for e in inbox) == sorted(cases)
        stored = {e.case_id: e for e in inbox}
        kept = last.token if answers[0][0] == 200 else other  # the one answered 200
        assert stored[cases[ROUNDS]].digest == sha256_b64url(kept.encode())
        for case_id in cases:
            case_ = await fed.case(T, case_id)
            assert case_ is not None
            submits = [e for e in case_.events if e.event == "case.submit"]
            assert len(submits) == 1 and submits[0].jti == rows[case_id].jti, case_id
    finally:
        stop_processes(list(fed.procs.values()))


async def _exited(fed: ProcFederation, member: str) -> bool:
    return fed.procs[member].poll() is not None


# (action at Taoyuan's first process, action at its second), each pair sent at once.
RACES: tuple[tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]], ...] = (
    (("accept", {}), ("reject", {"reason": "不属于本地管辖"})),
    (("reject", {"reason": "材料不全"}), ("accept", {})),
    (("accept", {}), ("accept", {})),
)
DECIDED = {"accept": (CaseState.ACCEPTED, "case.accept"),
           "reject": (CaseState.REJECTED, "case.reject")}


async def test_conflicting_transitions_at_two_processes_one_wins(
        tmp_path: Path, db_factory: DbFactory) -> None:
    fed = await start_federation(tmp_path, db_factory, taoyuan_processes=2)
    try:
        async with aiohttp.ClientSession() as http:
            await fed.ready(http, *fed.configs)
            cases = [await file_case(http, fed, i) for i in range(len(RACES))]

            async def received() -> bool:
                copies = [await fed.case(T, c) for c in cases]
                return all(c is not None and c.state is CaseState.HANDLER_RECEIVED
                           for c in copies)

            await wait_for(received, what="Taoyuan to take in every case")
            sessions = {m: await officer(http, fed, m) for m in (T, TAOYUAN_2)}
            winners = []
            for case_id, race in zip(cases, RACES, strict=True):
                answers = await asyncio.gather(*(
                    call(http, fed, member, "POST", f"handling/cases/{case_id}/{action}", body,
                         auth=sessions[member])
                    for member, (action, body) in zip((T, TAOYUAN_2), race, strict=True)))
                statuses = [status for status, _, _ in answers]
                # The loser read the case after the winner's commit (the row lock), so it
                # is refused as a transition from the state the winner left.
                assert sorted(statuses) == [200, 422], (case_id, answers)
                _, media, problem = answers[statuses.index(422)]
                assert media == "application/problem+json", problem
                assert problem["type"] == "urn:tongban:error:invalid-transition", problem
                won = race[statuses.index(200)][0]
                assert f"from {DECIDED[won][0].value};" in problem["detail"], problem
                winners.append(won)

        outbox = await fed.outbox(T)
        for case_id, won in zip(cases, winners, strict=True):
            state, event = DECIDED[won]
            case_ = await fed.case(T, case_id)
            assert case_ is not None and case_.state is state
            decisions = [e for e in case_.events if e.from_state is CaseState.HANDLER_RECEIVED]
            assert [(e.event, e.to_state) for e in decisions] == [(event, state)], case_id
            sent = [r.type for r in outbox if r.case_id == case_id]
            assert sent == ["case.status", event], (case_id, sent)  # handler_received, decision

        async def doumen_agrees() -> bool:
            for case_id, won in zip(cases, winners, strict=True):
                copy = await fed.case(D, case_id)
                if copy is None or copy.state is not DECIDED[won][0]:
                    return False
            return True

        await wait_for(doumen_agrees, what="Doumen's copies to hold the one decision")
    finally:
        stop_processes(list(fed.procs.values()))
