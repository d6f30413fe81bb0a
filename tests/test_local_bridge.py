"""The handling gateway and its authority's own case system, through a region adapter.

The adapter here is a fake over an in-memory local system (the real adapters are tested against
the reference system in their own tests): what matters is the gateway's side: calls queued with
the case change, made in order, retried while the local system is down without loss, a circuit
breaker, events applied exactly once, refusals kept.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import pytest
from casekit import ONLINE_ITEM, Api, applicant, case_federation, materials, reach, state
from fedkit import DOUMEN, TAOYUAN, DbFactory, Federation, wait_for

from adapters.base import (
    AdapterError,
    ConfigProblem,
    LocalCase,
    LocalEvent,
    RegionAdapter,
    WebhookRefused,
)
from gateway import appkeys as K
from gateway.db.local_repo import LocalRepo

# A local system's refusal that echoes the applicant's ID and mobile numbers.
REFUSAL = "身份证号 11010119900307123X 与电话 13812345678 不符"


@dataclass
class LocalSystem:
    """A city's case system, in memory: cases by case id, a feed of events, an off switch."""

    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    feed: list[LocalEvent] = field(default_factory=list)
    down: bool = False
    refuse: bool = False  # answers every call, polls too, with a permanent refusal (a 4xx)
    crash: bool = False  # the adapter itself fails with something other than AdapterError
    on_submit: Callable[[str], Awaitable[None]] | None = None  # runs before submit answers
    calls: list[str] = field(default_factory=list)
    # Whether the gateway's breaker is open right now (the test wires it to the bridge), and
    # every call that reached the system while it was.
    breaker_open: Callable[[], bool] = field(default=lambda: False)
    calls_while_open: list[str] = field(default_factory=list)
    pushes: bool = True  # False: the system is polled, and its adapter keeps the default webhook

    def decide(self, case_id: str, action: str, **body: Any) -> LocalEvent:
        event = LocalEvent(event_id=f"e{len(self.feed) + 1}", case_id=case_id, action=action,
                           body=body)
        self.feed.append(event)
        return event


def adapter_for(system: LocalSystem) -> type[RegionAdapter]:
    class FakeAdapter(RegionAdapter):
        name: ClassVar[str] = "fake"

        @classmethod
        def check_config(cls, config: Mapping[str, Any], *, base: Path) -> None:
            if "broken" in config:
                raise ConfigProblem("adapter.settings.broken: not an option")

        def _up(self, what: str) -> None:
            system.calls.append(what)
            if system.breaker_open():
                system.calls_while_open.append(what)
            if system.down:
                raise AdapterError("connection refused", transient=True)
            if system.refuse:
                raise AdapterError(f"400: {REFUSAL}", transient=False)
            if system.crash:
                raise RuntimeError("adapter bug")

        async def submit(self, case: LocalCase) -> str:
            self._up("submit")
            if system.on_submit is not None:
                await system.on_submit(case.case_id)
            system.cases.setdefault(case.case_id, {"item": case.item_code, "materials": []})
            return "LOCAL-" + case.case_id[-6:]

        async def supplement(self, ref: str, case_id: str,
                             materials: Sequence[Mapping[str, Any]]) -> None:
            self._up("supplement")
            system.cases[case_id]["materials"] = list(materials)

        async def withdraw(self, ref: str, case_id: str, reason: str) -> None:
            self._up("withdraw")
            system.cases[case_id]["withdrawn"] = reason

        async def poll(self, cursor: str | None) -> tuple[list[LocalEvent], str | None]:
            self._up("poll")
            start = int(cursor or 0)
            return system.feed[start:], str(len(system.feed))

        def webhook(self, headers: Mapping[str, str], body: bytes) -> list[LocalEvent]:
            if not system.pushes:
                return super().webhook(headers, body)
            if headers.get("X-Fake-Signature") != "ok":
                raise WebhookRefused("bad signature")
            try:
                doc = json.loads(body)
            except ValueError:
                raise AdapterError("not JSON", transient=False) from None
            return [LocalEvent(event_id=doc["id"], case_id=doc["case"], action=doc["action"],
                               body=doc.get("body", {}))]

    return FakeAdapter


@pytest.fixture
def system() -> LocalSystem:
    return LocalSystem()


async def start(tmp_path: Path, db_factory: DbFactory, system: LocalSystem, *,
                breaker_reset: float = 0.3) -> Federation:
    config = {"name": "fake", "poll_interval": 0.05, "initial_backoff": 0.05,
              "max_backoff": 0.2, "breaker_failures": 3, "breaker_reset": breaker_reset}
    return await case_federation(
        tmp_path, db_factory, (DOUMEN, TAOYUAN),
        adapters={DOUMEN: ({"fake": adapter_for(system)}, config)})


@pytest.fixture
async def fed(tmp_path: Path, db_factory: DbFactory,
              system: LocalSystem) -> AsyncIterator[Federation]:
    federation = await start(tmp_path, db_factory, system)
    try:
        yield federation
    finally:
        await federation.close()


@pytest.fixture
async def slow_reset_fed(tmp_path: Path, db_factory: DbFactory,
                         system: LocalSystem) -> AsyncIterator[Federation]:
    """A breaker that, once open, stays open for the whole test."""
    federation = await start(tmp_path, db_factory, system, breaker_reset=600.0)
    try:
        yield federation
    finally:
        await federation.close()



async def apply_online(fed: Federation, http: aiohttp.ClientSession) -> str:
    portal = Api(http, fed[TAOYUAN]).as_portal()
    doc = await portal.call("POST", "/api/v1/cases", {
        "item": ONLINE_ITEM, "handler": DOUMEN, "applicant": applicant("430725"), "loa": "L4",
        "materials": materials(ONLINE_ITEM)}, expect=201)
    return str(doc["case"]["case_id"])


async def test_local_system_decides_and_the_receiver_sees_it(
        fed: Federation, system: LocalSystem) -> None:
    async with aiohttp.ClientSession() as http:
        case_id = await apply_online(fed, http)
        # handler_received only once the local system has the case.
        await reach(fed[TAOYUAN], case_id, "handler_received")
        assert case_id in system.cases and system.cases[case_id]["item"] == ONLINE_ITEM
        system.decide(case_id, "supplement-request", reason="缺少凭证", materials=["M03"])
        await reach(fed[TAOYUAN], case_id, "supplement_required")
        portal = Api(http, fed[TAOYUAN]).as_portal()
        await portal.call("POST", f"/api/v1/cases/{case_id}/supplement",
                          {"materials": [{"code": "M03", "name": "缴费凭证（补）"}]},
                          expect=202)
        await reach(fed[TAOYUAN], case_id, "handler_received")  # after the local supplement
        assert any(m["code"] == "M03" for m in system.cases[case_id]["materials"])
        for action, body in (("accept", {}), ("review", {}),
                             ("conclude", {"outcome": "approved", "result": "准予"})):
            system.decide(case_id, action, **body)
        await reach(fed[TAOYUAN], case_id, "concluded")
    events = [e.event for e in (await fed[DOUMEN].app[K.CASES].get(case_id)).events  # type: ignore[index]
              if e.to_state is not None]
    assert events.count("case.accept") == 1 and events.count("case.conclude") == 1


async def test_local_outage_queues_and_nothing_is_lost(
        slow_reset_fed: Federation, system: LocalSystem) -> None:
    """The breaker (3 failures, 600 s) stops every call while open, lets exactly one probe
    through once the cool-down is over (on the bridge's clock, moved forward rather than
    waited for), and nothing queued meanwhile is lost."""
    fed = slow_reset_fed
    bridge = fed[DOUMEN].app[K.LOCAL]  # type: ignore[index]
    repo = LocalRepo(fed[DOUMEN].app[K.ENGINE])  # type: ignore[index]
    system.breaker_open = lambda: bool(bridge.breaker.open)
    system.down = True
    async with aiohttp.ClientSession() as http:
        case_ids = [await apply_online(fed, http) for _ in range(3)]

        async def breaker_open() -> bool:
            return bool(bridge.breaker.open)

        async def all_queued_and_due() -> bool:
            return len(await repo.due(fed.clock())) == len(case_ids)

        await wait_for(breaker_open, what="the circuit breaker to open")
        calls_when_open = len(system.calls)
        # Every case reaches the queue and is due, and none is sent: the worker and the poller
        # keep running meanwhile, and one more round of each, made here, calls nothing either.
        await wait_for(all_queued_and_due, what="the three submits to be queued and due")
        assert await bridge.process_due() == 0
        assert await bridge.poll_once() == 0
        assert len(system.calls) == calls_when_open
        assert system.calls_while_open == []
        for case_id in case_ids:
            assert await state(fed[TAOYUAN], case_id) == "submitted"

        # Cool-down over, system still down: one probe, which fails and opens the breaker again.
        fed.clock.advance(601)

        async def probed() -> bool:
            return len(system.calls) > calls_when_open and bool(bridge.breaker.open)

        await wait_for(probed, what="a half-open probe after the cool-down")
        assert await bridge.process_due() == 0
        assert len(system.calls) == calls_when_open + 1, system.calls[calls_when_open:]
        assert system.calls[-1] in ("poll", "submit")

        # Cool-down over again, system back: the probe succeeds, the breaker closes and the
        # queue drains.
        system.down = False
        fed.clock.advance(601)
        for case_id in case_ids:
            await reach(fed[TAOYUAN], case_id, "handler_received")
    assert set(system.cases) == set(case_ids)  # each once, none lost
    assert not bridge.breaker.open
    assert system.calls_while_open == []


async def test_events_apply_once_and_refusals_are_kept(
        fed: Federation, system: LocalSystem) -> None:
    async with aiohttp.ClientSession() as http:
        case_id = await apply_online(fed, http)
        await reach(fed[TAOYUAN], case_id, "handler_received")
        url = fed[DOUMEN].url + "/adapters/v1/events"
        event = {"id": "w-1", "case": case_id, "action": "accept", "body": {}}
        for expected in ("applied", "duplicate"):
            async with http.post(url, json=event, headers={"X-Fake-Signature": "ok"}) as resp:
                assert resp.status == 200
                assert (await resp.json())["events"][0]["result"] == expected
        async with http.post(url, json=event, headers={"X-Fake-Signature": "forged"}) as resp:
            assert resp.status == 401
            assert (await resp.json())["type"] == "urn:tongban:error:unauthenticated"
        # Signed but unreadable: the sender is known, the content is wrong, so 422, not 401.
        async with http.post(url, data=b"{not json", headers={"X-Fake-Signature": "ok"}) as resp:
            assert resp.status == 422
            assert (await resp.json())["type"] == "urn:tongban:error:invalid-body"
        # An event the lifecycle does not allow is refused, kept, and changes nothing.
        bad = {"id": "w-2", "case": case_id, "action": "deliver", "body": {}}
        async with http.post(url, json=bad, headers={"X-Fake-Signature": "ok"}) as resp:
            result = (await resp.json())["events"][0]["result"]
        assert result.startswith("refused:")
        await reach(fed[TAOYUAN], case_id, "accepted")
        assert await state(fed[DOUMEN], case_id) == "accepted"


async def test_a_push_where_nothing_takes_pushes_is_not_found(
        fed: Federation, system: LocalSystem) -> None:
    """A polled local system (DOUMEN's adapter keeps the default webhook) and no local system
    at all (TAOYUAN) are the same to a pusher: no such endpoint here, a 404 problem, not the
    422 that would blame the content of a push that can never be taken."""
    system.pushes = False
    event = {"id": "w-1", "case": "CN-430725:x", "action": "accept", "body": {}}
    async with aiohttp.ClientSession() as http:
        for node, detail in ((fed[DOUMEN], "does not push; its fake adapter polls"),
                             (fed[TAOYUAN], "has no local case system")):
            async with http.post(node.url + "/adapters/v1/events", json=event,
                                 headers={"X-Fake-Signature": "ok"}) as resp:
                assert resp.status == 404
                assert resp.content_type == "application/problem+json"
                doc = await resp.json()
            assert doc["type"] == "urn:tongban:error:not-found"
            assert detail in doc["detail"], doc
    assert "webhook" not in system.calls and system.feed == []


async def test_withdrawal_reaches_the_local_system(
        fed: Federation, system: LocalSystem) -> None:
    async with aiohttp.ClientSession() as http:
        case_id = await apply_online(fed, http)
        await reach(fed[TAOYUAN], case_id, "handler_received")
        portal = Api(http, fed[TAOYUAN]).as_portal()
        await portal.call("POST", f"/api/v1/cases/{case_id}/withdraw", {"reason": "不办了"},
                          expect=202)
        await reach(fed[TAOYUAN], case_id, "withdrawn")

        async def told() -> bool:
            return "withdrawn" in system.cases[case_id]

        await wait_for(told, what="the local system to hear of the withdrawal")


async def test_permanent_refusals_do_not_open_the_breaker(
        slow_reset_fed: Federation, system: LocalSystem,
        caplog: pytest.LogCaptureFixture) -> None:
    """Refused calls and polls (breaker_failures = 3) say nothing about the system being
    down: the next case must still be sent at once."""
    system.refuse = True
    repo = LocalRepo(slow_reset_fed[DOUMEN].app[K.ENGINE])  # type: ignore[index]
    bridge = slow_reset_fed[DOUMEN].app[K.LOCAL]  # type: ignore[index]
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            await apply_online(slow_reset_fed, http)

        async def three_parked() -> bool:
            return len(await repo.list_calls("dead")) == 3

        await wait_for(three_parked, what="three refused submits to be parked")
        assert not bridge.breaker.open
        for call in await repo.list_calls("dead"):
            assert call.last_error is not None
            assert "110101********123X" in call.last_error and "138****5678" in call.last_error
            assert "11010119900307123X" not in call.last_error
            assert "13812345678" not in call.last_error
        assert "11010119900307123X" not in caplog.text and "13812345678" not in caplog.text
        assert "110101********123X" in caplog.text
        system.refuse = False
        case_id = await apply_online(slow_reset_fed, http)
        await reach(slow_reset_fed[TAOYUAN], case_id, "handler_received")
    assert not bridge.breaker.open


async def test_an_adapter_crash_backs_off_and_does_not_block_the_queue(
        fed: Federation, system: LocalSystem) -> None:
    system.crash = True
    repo = LocalRepo(fed[DOUMEN].app[K.ENGINE])  # type: ignore[index]
    async with aiohttp.ClientSession() as http:
        case_id = await apply_online(fed, http)

        async def recorded() -> bool:
            return any(c.attempts >= 1 and "RuntimeError" in (c.last_error or "")
                       for c in await repo.list_calls("pending"))

        await wait_for(recorded, what="the crash to be recorded as a failed attempt")
        system.crash = False
        await reach(fed[TAOYUAN], case_id, "handler_received")


async def test_a_decision_pushed_before_the_submit_is_recorded_is_applied(
        fed: Federation, system: LocalSystem) -> None:
    """A fast local system accepts (by webhook) before its answer to the submit is back."""
    results: list[str] = []
    async with aiohttp.ClientSession() as http:
        url = fed[DOUMEN].url + "/adapters/v1/events"

        async def accept_at_once(case_id: str) -> None:
            event = {"id": f"fast-{case_id}", "case": case_id, "action": "accept", "body": {}}
            async with http.post(url, json=event, headers={"X-Fake-Signature": "ok"}) as resp:
                results.append((await resp.json())["events"][0]["result"])

        system.on_submit = accept_at_once
        case_id = await apply_online(fed, http)
        await reach(fed[TAOYUAN], case_id, "accepted")
    assert results == ["applied"]
    assert await state(fed[DOUMEN], case_id) == "accepted"
