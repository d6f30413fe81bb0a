"""The three modes end to end, through the portal and window API of real gateways.

Each case runs to `evaluated`, and the two copies of every case (receiver and handler) hold the
same transitions in the same order, with the same times and details.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
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
from fedkit import CHANGDE, DOUMEN, TAOYUAN, DbFactory, Federation, Node


@pytest.fixture
async def fed(tmp_path: Path, db_factory: DbFactory) -> AsyncIterator[Federation]:
    federation = await case_federation(tmp_path, db_factory)
    try:
        yield federation
    finally:
        await federation.close()



async def same_history(a: Node, b: Node, case_id: str) -> list[tuple[object, ...]]:
    ha, hb = await history(a, case_id), await history(b, case_id)
    assert ha == hb
    return ha


async def test_proxy_case_taoyuan_born_worker_at_doumen_window(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    window = await Api(http, doumen).as_clerk("window")
    officer = await Api(http, taoyuan).as_clerk("officer")
    # 户口迁移 is decided where the household is registered: the ID number says Taoyuan.
    doc = await window.call("POST", "/api/v1/window/cases", {
        "item": HOUSEHOLD_ITEM, "applicant": applicant("430725"),
        "identity_check": {"method": "id_card_reader", "loa": "L4"},
        "materials": materials(HOUSEHOLD_ITEM, skip=("M03",)),
        "delivery": {"method": "post", "address": "珠海市斗门区井岸镇"}}, expect=201)
    case_id = doc["case"]["case_id"]
    assert case_id.startswith(DOUMEN + ":")
    assert doc["case"]["handler"] == TAOYUAN and doc["case"]["state"] == "received_at_window"
    assert len(doc["query_password"]) == 8
    assert "430725" in doc["case"]["applicant"]["id_number"]
    assert "*" in doc["case"]["applicant"]["id_number"]
    # The formal check names what is missing, once (一次性告知), and changes nothing else.
    check = await window.call("POST", f"/api/v1/window/cases/{case_id}/formal-check", {})
    assert check["complete"] is False and any("M03" in m for m in check["missing"])
    assert check["case"]["state"] == "received_at_window"
    check = await window.call("POST", f"/api/v1/window/cases/{case_id}/formal-check",
                              {"materials": [{"code": "M03", "name": "迁入地准迁证明",
                                              "original_checked": True}]})
    assert check["complete"] is True and check["case"]["state"] == "formally_checked"
    await window.call("POST", f"/api/v1/window/cases/{case_id}/forward",
                      {"courier": ["SF1234567890"]}, expect=202)
    await reach(doumen, case_id, "handler_received")
    assert await state(taoyuan, case_id) == "handler_received"
    # The handler asks for a supplement; the applicant supplies it through the window.
    await officer.call("POST", f"/api/v1/handling/cases/{case_id}/supplement-request",
                       {"reason": "照片不清晰", "materials": ["M01 户口簿"]})
    await reach(doumen, case_id, "supplement_required")
    await window.call("POST", f"/api/v1/cases/{case_id}/supplement",
                      {"materials": [{"code": "M01", "name": "户口簿（重新扫描）"}]},
                      expect=202)
    await reach(doumen, case_id, "handler_received")
    for action, body, wanted in (
            ("accept", {}, "accepted"), ("review", {}, "in_review"),
            ("conclude", {"outcome": "approved", "result": "准予迁移"}, "concluded"),
            ("deliver", {"tracking": "EMS9876543210"}, "delivered")):
        doc = await officer.call("POST", f"/api/v1/handling/cases/{case_id}/{action}", body)
        assert doc["case"]["state"] == wanted
        await reach(doumen, case_id, wanted)
    seen = await window.call("GET", f"/api/v1/cases/{case_id}")
    assert seen["case"]["receipt_no"] and seen["case"]["decision_due"]
    assert seen["case"]["supplement_count"] == 0  # counted by the handler; see its copy
    handler_view = await officer.call("GET", f"/api/v1/cases/{case_id}")
    assert handler_view["case"]["supplement_count"] == 1
    await window.call("POST", f"/api/v1/cases/{case_id}/evaluation",
                      {"level": 5, "comment": "很方便"})
    await reach(taoyuan, case_id, "evaluated")
    events = await same_history(doumen, taoyuan, case_id)
    assert [e[2].value for e in events] == [  # type: ignore[attr-defined]
        "received_at_window", "formally_checked", "forwarded", "handler_received",
        "supplement_required", "submitted", "handler_received", "accepted", "in_review",
        "concluded", "delivered", "evaluated"]


async def test_online_case_from_taoyuan_portal_to_doumen(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    portal = Api(http, taoyuan).as_portal()
    token = await portal.call("POST", "/api/v1/applicant-sessions",
                              {"applicant": applicant("430725"), "loa": "L4"}, expect=201)
    me = Api(http, taoyuan, token=token["access_token"])
    doc = await me.call("POST", "/api/v1/cases", {
        "item": ONLINE_ITEM, "handler": DOUMEN, "applicant": applicant("430725"),
        "materials": materials(ONLINE_ITEM), "delivery": {"method": "online"},
        "form": {"转出地": "珠海市斗门区", "转入地": "常德市桃源县"}}, expect=201)
    case_id = doc["case"]["case_id"]
    password = doc["query_password"]
    await reach(taoyuan, case_id, "handler_received")
    officer = await Api(http, doumen).as_clerk("officer")
    for action, body, wanted in (
            ("accept", {"receipt_no": "SL2026001"}, "accepted"),
            ("conclude", {"outcome": "approved", "result": "已办结"}, "concluded"),
            ("deliver", {}, "delivered")):
        await officer.call("POST", f"/api/v1/handling/cases/{case_id}/{action}", body)
        await reach(taoyuan, case_id, wanted)
    mine = await me.call("GET", "/api/v1/cases")
    assert [c["case_id"] for c in mine["cases"]] == [case_id]
    # Anyone with the query password can look it up, without a login.
    anonymous = Api(http, taoyuan)
    found = await anonymous.call("GET", f"/api/v1/cases/{case_id}",
                                 headers={"X-Query-Password": password})
    assert found["case"]["receipt_no"] == "SL2026001"
    await anonymous.call("GET", f"/api/v1/cases/{case_id}",
                         headers={"X-Query-Password": "00000000"}, expect=404)
    await me.call("POST", f"/api/v1/cases/{case_id}/evaluation", {"level": 4})
    await reach(doumen, case_id, "evaluated")
    events = await same_history(taoyuan, doumen, case_id)
    assert [e[2].value for e in events] == [  # type: ignore[attr-defined]
        "submitted", "handler_received", "accepted", "concluded", "delivered", "evaluated"]


async def test_joint_case_across_three_members(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    doumen, taoyuan, changde = fed[DOUMEN], fed[TAOYUAN], fed[CHANGDE]
    portal = Api(http, doumen).as_portal()
    doc = await portal.call("POST", "/api/v1/cases", {
        "item": ONLINE_ITEM, "mode": "joint", "handlers": [TAOYUAN, CHANGDE],
        "applicant": applicant("440403"), "loa": "L4",
        "materials": materials(ONLINE_ITEM), "delivery": {"method": "window"}}, expect=201)
    parent = doc["case"]
    assert parent["kind"] == "joint" and parent["state"] == "submitted"
    parts = {p["handler"]: p["case_id"] for p in parent["parts"]}
    assert set(parts) == {TAOYUAN, CHANGDE}
    for member, node in ((TAOYUAN, taoyuan), (CHANGDE, changde)):
        await reach(doumen, parts[member], "handler_received")
        officer = await Api(http, node).as_clerk("officer")
        for action, body in (("accept", {}), ("review", {}),
                             ("conclude", {"outcome": "approved", "result": "同意"})):
            await officer.call("POST", f"/api/v1/handling/cases/{parts[member]}/{action}",
                               body)
        await reach(doumen, parts[member], "concluded")
        if member == TAOYUAN:  # fan-in waits for every part
            assert await state(doumen, parent["case_id"]) == "submitted"
    assert await state(doumen, parent["case_id"]) == "concluded"
    window = await Api(http, doumen).as_clerk("window")
    doc = await window.call("POST", f"/api/v1/window/cases/{parent['case_id']}/handover")
    assert doc["case"]["state"] == "delivered"
    doc = await portal.call("POST", f"/api/v1/cases/{parent['case_id']}/evaluation",
                            {"level": 2, "comment": "等太久"})
    assert doc["case"]["state"] == "evaluated"
    for member, node in ((TAOYUAN, taoyuan), (CHANGDE, changde)):
        await reach(node, parts[member], "evaluated")
        events = await same_history(doumen, node, parts[member])
        assert events[-1][0] == "case.evaluate"
        officer = await Api(http, node).as_clerk("officer")
        seen = await officer.call("GET", f"/api/v1/cases/{parts[member]}")
        # A bad review (差评) opens a fix task due in 15 working days.
        assert seen["case"]["fix_task"]["status"] == "open"
