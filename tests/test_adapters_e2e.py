"""Two members whose authorities keep their own case systems: Taoyuan's reached through the REST
adapter (events pushed by signed webhook), Doumen's through the SOAP adapter (events polled).
Both are the reference local case system, each with its own database, and officers work on its
clerk page; the federation sees the result."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from casekit import (
    HOUSEHOLD_ITEM,
    ONLINE_ITEM,
    Api,
    applicant,
    case_federation,
    history,
    materials,
    reach,
    state,
)
from fedkit import DOUMEN, TAOYUAN, DbFactory, Federation, reserve_port, wait_for

from adapters.reference.context import PUSHER
from adapters.reference.hooks import MARKER
from adapters.rest import RestAdapter
from adapters.soap import SoapAdapter
from adapters.testing.reference import ReferenceDriver, ReferenceSystem
from gateway import appkeys as K

EXAMPLES = Path(__file__).parent.parent / "adapters" / "examples"
API_KEY = "reference-api-key-for-e2e"
HOOK_SECRET = "reference-webhook-secret-e2e-0123456789"
BRIDGE = {"initial_backoff": 0.05, "max_backoff": 0.3, "breaker_failures": 3,
          "breaker_reset": 0.3}


@dataclass
class World:
    fed: Federation
    rest: ReferenceSystem  # Taoyuan's local system
    soap: ReferenceSystem  # Doumen's local system
    http: aiohttp.ClientSession


@pytest.fixture
async def world(tmp_path: Path, db_factory: DbFactory,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    monkeypatch.setenv("TB_TEST_LOCAL_API_KEY", API_KEY)
    monkeypatch.setenv("TB_TEST_LOCAL_HOOK", HOOK_SECRET)
    sock = reserve_port()
    rest_port = sock.getsockname()[1]
    sock.close()  # the reference system binds it once Taoyuan's webhook URL is known
    soap = await ReferenceSystem(tmp_path / "doumen-local.sqlite", prefix="CS").start()
    rest_config = {"name": "rest", "poll_interval": 3600.0, **BRIDGE,  # pushes only
                   "settings": {"mapping": str(EXAMPLES / "rest-reference.toml"),
                                "base_url": f"http://127.0.0.1:{rest_port}"},
                   "secrets": {"api_key": "TB_TEST_LOCAL_API_KEY",
                               "webhook_secret": "TB_TEST_LOCAL_HOOK"}}
    soap_config = {"name": "soap", "poll_interval": 0.1, **BRIDGE,
                   "settings": {"mapping": str(EXAMPLES / "soap-reference.toml"),
                                "base_url": soap.url}}
    fed = await case_federation(
        tmp_path, db_factory, (DOUMEN, TAOYUAN),
        adapters={TAOYUAN: ({"rest": RestAdapter}, rest_config),
                  DOUMEN: ({"soap": SoapAdapter}, soap_config)})
    rest = ReferenceSystem(tmp_path / "taoyuan-local.sqlite", api_key=API_KEY, port=rest_port,
                           webhook_url=fed[TAOYUAN].url + "/adapters/v1/events",
                           webhook_secret=HOOK_SECRET)
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        await rest.start()
        yield World(fed, rest, soap, http)
    finally:
        await http.close()
        await fed.close()
        await rest.close()
        await soap.close()


async def clerk(world: World, system: ReferenceSystem, bjbh: str, step: str,
                **form: str) -> None:
    """An officer at the reference system's clerk page: load it, submit one form."""
    async with world.http.get(system.url + "/clerk") as resp:
        page = await resp.text()
    assert f'action="/clerk/{bjbh}/{step}"' in page, f"no {step} form for {bjbh}"
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None
    async with world.http.post(f"{system.url}/clerk/{bjbh}/{step}",
                               data={"csrf": match.group(1), **form},
                               allow_redirects=False) as resp:
        assert resp.status == 303
        assert "ok=1" in resp.headers["Location"], resp.headers["Location"]


async def local_case(system: ReferenceSystem, case_id: str) -> str:
    cases = system.store.by_external(case_id)
    assert len(cases) == 1, f"{len(cases)} local cases for {case_id}"
    return cases[0].bjbh


async def test_proxy_case_handled_in_taoyuans_rest_system(world: World) -> None:
    doumen, taoyuan = world.fed[DOUMEN], world.fed[TAOYUAN]
    window = await Api(world.http, doumen).as_clerk("window")
    doc = await window.call("POST", "/api/v1/window/cases", {
        "item": HOUSEHOLD_ITEM, "applicant": applicant("430725"),
        "identity_check": {"method": "id_card_reader", "loa": "L4"},
        "materials": materials(HOUSEHOLD_ITEM),
        "delivery": {"method": "post", "address": "珠海市斗门区井岸镇"}}, expect=201)
    case_id = doc["case"]["case_id"]
    assert doc["case"]["handler"] == TAOYUAN
    await window.call("POST", f"/api/v1/window/cases/{case_id}/formal-check", {})
    await window.call("POST", f"/api/v1/window/cases/{case_id}/forward",
                      {"courier": ["SF1234567890"]}, expect=202)
    # handler_received only once Taoyuan's own system has the case, in its own codes.
    await reach(doumen, case_id, "handler_received")
    bjbh = await local_case(world.rest, case_id)
    local = world.rest.store.case(bjbh)
    assert local is not None
    assert (local.sxbm, local.bllx, local.sdfs["fs"], local.sqr["lx"]) == \
        ("XS-HJ-1001", "DB", "YJ", "GR")
    # A forged form post is refused (CSRF), and changes nothing.
    async with world.http.post(f"{world.rest.url}/clerk/{bjbh}/shouli",
                               data={"csrf": "forged"}) as resp:
        assert resp.status == 403
    # The officer asks for a supplement on the clerk page; the window supplies it.
    await clerk(world, world.rest, bjbh, "buzheng", yy="照片不清晰", bzcl="户口簿")
    await reach(doumen, case_id, "supplement_required")
    await window.call("POST", f"/api/v1/cases/{case_id}/supplement",
                      {"materials": [{"code": "M01", "name": "户口簿（重新扫描）"}]},
                      expect=202)
    await reach(doumen, case_id, "handler_received")
    local = world.rest.store.case(bjbh)
    assert local is not None and local.zt == "DSL"
    assert any(m.mc == "户口簿（重新扫描）" for m in local.cl)
    await clerk(world, world.rest, bjbh, "shouli", slhzh="TY-2026-001")
    await reach(doumen, case_id, "accepted")
    await clerk(world, world.rest, bjbh, "banjie", bjjg="PZ", jgsm="准予迁移",
                zzbh="QY-2026-0001", zzmc="准予迁入证明")
    await reach(doumen, case_id, "concluded")
    seen = await window.call("GET", f"/api/v1/cases/{case_id}")
    assert seen["case"]["receipt_no"] == "TY-2026-001"
    # The whole feed pushed again: every event is a duplicate, nothing changes.
    pusher = world.rest.app[PUSHER]
    sent = pusher.sent
    last = world.rest.store.events_of(bjbh)[-1].seq
    async with world.http.post(world.rest.url + "/admin/redeliver") as resp:
        assert resp.status == 200

    async def redelivered() -> bool:
        return pusher.sent > sent and int(world.rest.store.meta(MARKER, "0")) >= last

    await wait_for(redelivered, what="the reference system to push its feed again")
    assert await state(taoyuan, case_id) == "concluded"
    steps = [e[0] for e in await history(taoyuan, case_id)]
    assert steps.count("case.accept") == 1 and steps.count("case.conclude") == 1, steps


async def apply_online(world: World) -> str:
    portal = Api(world.http, world.fed[TAOYUAN]).as_portal()
    doc = await portal.call("POST", "/api/v1/cases", {
        "item": ONLINE_ITEM, "handler": DOUMEN, "applicant": applicant("430725"), "loa": "L4",
        "materials": materials(ONLINE_ITEM)}, expect=201)
    return str(doc["case"]["case_id"])


async def test_doumens_soap_system_down_then_back_loses_nothing(world: World) -> None:
    doumen, taoyuan = world.fed[DOUMEN], world.fed[TAOYUAN]
    local = ReferenceDriver(world.soap.url, world.http)
    await local.fail("unavailable")
    case_ids = [await apply_online(world) for _ in range(3)]
    bridge = doumen.app[K.LOCAL]  # type: ignore[index]

    async def breaker_open() -> bool:
        return bool(bridge.breaker.open)

    await wait_for(breaker_open, what="the circuit breaker to open")
    for case_id in case_ids:
        assert await state(taoyuan, case_id) == "submitted"
    assert world.soap.store.cases() == []
    await local.fail(None)
    for case_id in case_ids:
        await reach(taoyuan, case_id, "handler_received")
    refs = [await local_case(world.soap, case_id) for case_id in case_ids]  # once each
    # A malformed feed is an error, not a decision: the case does not move while it lasts.
    await local.fail("unknown_state")
    await clerk(world, world.soap, refs[0], "shouli", slhzh="DM-1")  # the page still works
    assert await bridge.poll_once() == 0
    assert await state(doumen, case_ids[0]) == "handler_received"
    await local.fail("xml_bomb")
    assert await bridge.poll_once() == 0
    assert await state(doumen, case_ids[0]) == "handler_received"
    await local.fail(None)
    await reach(taoyuan, case_ids[0], "accepted")
    await clerk(world, world.soap, refs[0], "shencha")
    await reach(taoyuan, case_ids[0], "in_review")
    await clerk(world, world.soap, refs[0], "zanting", yy="需现场核查", tbcx="XCHC")
    await reach(taoyuan, case_ids[0], "suspended")
    await clerk(world, world.soap, refs[0], "huifu")
    await reach(taoyuan, case_ids[0], "in_review")
    await clerk(world, world.soap, refs[0], "banjie", bjjg="BPZ", jgsm="缴费年限不足")
    await reach(taoyuan, case_ids[0], "concluded")
    # The applicant withdraws another case: Doumen's system hears of it.
    portal = Api(world.http, taoyuan).as_portal()
    await portal.call("POST", f"/api/v1/cases/{case_ids[1]}/withdraw", {"reason": "不办了"},
                      expect=202)

    async def withdrawn_locally() -> bool:
        case = world.soap.store.case(refs[1])
        return case is not None and case.zt == "YCH"

    await wait_for(withdrawn_locally, what="Doumen's system to hear of the withdrawal")
    await reach(taoyuan, case_ids[1], "withdrawn")
