"""What a case refuses, and what it does by itself when time runs out.

Every refusal answers with a clear reason and leaves the case (and the database) as it was.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from casekit import (
    CATALOG,
    HOUSEHOLD_ITEM,
    ONLINE_ITEM,
    PORTAL_ID,
    PORTAL_SECRET,
    Api,
    applicant,
    case_federation,
    history,
    make_id,
    materials,
    reach,
    state,
)
from fedkit import (
    CHANGDE,
    DOUMEN,
    TAOYUAN,
    DbFactory,
    Federation,
    Node,
    message_claims,
    post_message,
    problem_code,
    sign_message,
    wait_for,
)
from sqlalchemy import func, select

from gateway import appkeys as K
from gateway.db.schema import cases
from registry.document import Mode


@pytest.fixture
async def fed(tmp_path: Path, db_factory: DbFactory) -> AsyncIterator[Federation]:
    federation = await case_federation(tmp_path, db_factory)
    try:
        yield federation
    finally:
        await federation.close()


async def count_cases(node: Node) -> int:
    async with node.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(cases))).scalar_one())



async def online_case(fed: Federation, http: aiohttp.ClientSession,
                      **overrides: Any) -> tuple[str, Api]:
    """An online case from Taoyuan's portal to Doumen, acknowledged by Doumen."""
    portal = Api(http, fed[TAOYUAN]).as_portal()
    body = {"item": ONLINE_ITEM, "handler": DOUMEN, "applicant": applicant("430725"),
            "loa": "L4", "materials": materials(ONLINE_ITEM), **overrides}
    doc = await portal.call("POST", "/api/v1/cases", body, expect=201)
    case_id = doc["case"]["case_id"]
    await reach(fed[TAOYUAN], case_id, "handler_received")
    return case_id, portal


async def refused(api: Api, method: str, path: str, body: Any, status: int, code: str,
                  field: str | None = None) -> dict[str, Any]:
    got, ctype, doc = await api.raw(method, path, body)
    assert (got, ctype) == (status, "application/problem+json"), doc
    assert doc["type"] == f"urn:tongban:error:{code}"
    if field is not None:
        assert field in [e["field"] for e in doc.get("errors", [])], doc
    return dict(doc)


# --- bad applications: nothing is stored ------------------------------------------------
@pytest.mark.parametrize(("change", "field", "reason_part"), [
    ({"item": "KSTB-XX-9999"}, "item", "unknown item"),
    ({"item": "KSTB-SB-0002", "mode": "joint", "handlers": [DOUMEN, CHANGDE]}, "mode",
     "joint"),
    ({"applicant": {**applicant("430725"), "id_number": make_id("430725")[:-1] + "0"}},
     "applicant.id_number", "check character"),
    ({"applicant": {**applicant("430725"), "id_number": "990000199003071234"}},
     "applicant.id_number", None),
    ({"loa": "L3"}, "loa", "L4"),
    ({"materials": materials(ONLINE_ITEM, skip=("M02",))}, "materials", "M02"),
    ({"materials": [{"code": "M01", "name": "x", "sha256": "A" * 43, "size": 3},
                    *materials(ONLINE_ITEM, skip=("M01",))]},
     "materials[0].sha256", "no such material"),
    ({"handler": "CN-999999"}, "handler", None),
])
async def test_bad_application_refused_and_nothing_stored(
        fed: Federation, http: aiohttp.ClientSession, change: dict[str, Any], field: str,
        reason_part: str | None) -> None:
    portal = Api(http, fed[TAOYUAN]).as_portal()
    body = {"item": ONLINE_ITEM, "handler": DOUMEN, "applicant": applicant("430725"),
            "loa": "L4", "materials": materials(ONLINE_ITEM), **change}
    doc = await refused(portal, "POST", "/api/v1/cases", body, 422, "invalid-body", field)
    if reason_part is not None:
        reasons = " ".join(e["reason"] for e in doc["errors"] if e["field"] == field)
        assert reason_part in reasons
    number = body["applicant"]["id_number"]
    assert number not in str(doc)  # an ID number is never echoed
    assert await count_cases(fed[TAOYUAN]) == 0
    assert await count_cases(fed[DOUMEN]) == 0


async def test_company_credit_code_checked(fed: Federation, http: aiohttp.ClientSession) -> None:
    portal = Api(http, fed[TAOYUAN]).as_portal()
    company = {"kind": "company", "name": "某某有限公司", "credit_code": "91110000600037341M"}
    await refused(portal, "POST", "/api/v1/cases", {
        "item": "KSTB-SJ-0001", "handler": DOUMEN, "applicant": company, "loa": "L4",
        "materials": materials("KSTB-SJ-0001")}, 422, "invalid-body", "applicant.credit_code")
    company["credit_code"] = "91110000600037341L"
    doc = await portal.call("POST", "/api/v1/cases", {
        "item": "KSTB-SJ-0001", "handler": DOUMEN, "applicant": company, "loa": "L4",
        "materials": materials("KSTB-SJ-0001")}, expect=201)
    assert doc["case"]["applicant"]["credit_code"] == "91110000600037341L"


async def test_mode_a_member_does_not_offer_is_refused_with_reason(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    item = CATALOG.get(ONLINE_ITEM)
    assert item is not None
    version = await fed.publish(lambda a: a.set_items(
        CHANGDE, [item.registry_item([Mode.ONLINE])]))
    await fed[DOUMEN].wait_registry(version)
    portal = Api(http, fed[DOUMEN]).as_portal()
    doc = await refused(portal, "POST", "/api/v1/cases", {
        "item": ONLINE_ITEM, "mode": "joint", "handlers": [TAOYUAN, CHANGDE],
        "applicant": applicant("440403"), "loa": "L4", "materials": materials(ONLINE_ITEM)},
        422, "invalid-body")
    assert any("does not offer" in e["reason"] and "online" in e["reason"]
               for e in doc["errors"]), doc
    assert await count_cases(fed[DOUMEN]) == 0


async def test_household_item_goes_to_the_home_authority_only(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    window = await Api(http, fed[DOUMEN]).as_clerk("window")
    body = {"item": HOUSEHOLD_ITEM, "applicant": applicant("430725"),
            "identity_check": {"method": "id_card_reader"},
            "materials": materials(HOUSEHOLD_ITEM)}
    doc = await refused(window, "POST", "/api/v1/window/cases", {**body, "handler": CHANGDE},
                        422, "invalid-body", "handler")
    assert "CN-430725" in " ".join(e["reason"] for e in doc["errors"])
    doc = await window.call("POST", "/api/v1/window/cases", body, expect=201)
    assert doc["case"]["handler"] == TAOYUAN


# --- illegal transitions --------------------------------------------------------------
async def test_illegal_transition_from_the_api_changes_nothing(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    case_id, _ = await online_case(fed, http)
    officer = await Api(http, fed[DOUMEN]).as_clerk("officer")
    before = await history(fed[DOUMEN], case_id)
    outbox_before = len(await fed[DOUMEN].outbox())
    doc = await refused(officer, "POST", f"/api/v1/handling/cases/{case_id}/conclude",
                        {"outcome": "approved", "result": "x"}, 422, "invalid-transition")
    assert "handler_received" in doc["detail"]
    assert await history(fed[DOUMEN], case_id) == before
    assert len(await fed[DOUMEN].outbox()) == outbox_before
    # The receiving side cannot decide, and a window clerk is not a handling officer.
    taoyuan_officer = await Api(http, fed[TAOYUAN]).as_clerk("officer")
    await refused(taoyuan_officer, "POST", f"/api/v1/handling/cases/{case_id}/accept", {},
                  422, "invalid-transition")
    window = await Api(http, fed[DOUMEN]).as_clerk("window")
    await refused(window, "POST", f"/api/v1/handling/cases/{case_id}/accept", {}, 403,
                  "forbidden")


async def test_illegal_transition_by_message_is_refused_and_not_stored(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    case_id, _ = await online_case(fed, http)
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    claims = message_claims(DOUMEN, TAOYUAN, now=fed.clock(), type_="case.conclude",
                            case_id=case_id, seq=2,
                            body={"at": fed.clock(), "outcome": "approved", "result": "x"})
    inbox_before = len(await taoyuan.inbox())
    status, _, text = await post_message(http, taoyuan, sign_message(claims,
                                                                      doumen.signing_key()))
    assert status == 422 and problem_code(text) == "invalid-transition"
    assert len(await taoyuan.inbox()) == inbox_before
    assert await state(taoyuan, case_id) == "handler_received"
    # A peer that is not the other side of the case may not move it at all.
    claims = message_claims(CHANGDE, TAOYUAN, now=fed.clock(), type_="case.accept",
                            case_id=case_id, seq=1, body={"at": fed.clock()})
    status, _, text = await post_message(http, taoyuan, sign_message(
        claims, fed[CHANGDE].signing_key()))
    assert status == 403 and problem_code(text) == "not-authorized"
    assert await state(taoyuan, case_id) == "handler_received"


async def test_out_of_order_message_waits_for_the_gap(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    case_id, _ = await online_case(fed, http)
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    key = doumen.signing_key()
    # Doumen's gateway sent seq 1 (handler_received); we play its next two messages.
    now = fed.clock()
    accept = message_claims(DOUMEN, TAOYUAN, now=now, type_="case.accept", case_id=case_id,
                            seq=2, body={"at": now, "receipt_no": "R-1"})
    review = message_claims(DOUMEN, TAOYUAN, now=now, type_="case.status", case_id=case_id,
                            seq=3, body={"at": now + 1, "state": "in_review"})
    status, _, _ = await post_message(http, taoyuan, sign_message(review, key))
    assert status == 200  # stored and receipted, but held
    assert await state(taoyuan, case_id) == "handler_received"
    status, _, _ = await post_message(http, taoyuan, sign_message(accept, key))
    assert status == 200
    assert await state(taoyuan, case_id) == "in_review"
    events = [e[0] for e in await history(taoyuan, case_id)]
    assert events[-2:] == ["case.accept", "case.status"]


# --- requests from the receiving side ----------------------------------------------------
async def test_withdraw_before_decision_and_not_after(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    case_id, portal = await online_case(fed, http)
    await portal.call("POST", f"/api/v1/cases/{case_id}/withdraw",
                      {"reason": "不再需要"}, expect=202)
    await reach(fed[TAOYUAN], case_id, "withdrawn")
    assert await state(fed[DOUMEN], case_id) == "withdrawn"
    assert await history(fed[DOUMEN], case_id) == await history(fed[TAOYUAN], case_id)
    second, _ = await online_case(fed, http)
    officer = await Api(http, fed[DOUMEN]).as_clerk("officer")
    for action, body in (("accept", {}), ("conclude", {"outcome": "denied",
                                                       "result": "不符合条件"})):
        await officer.call("POST", f"/api/v1/handling/cases/{second}/{action}", body)
    await reach(fed[TAOYUAN], second, "concluded")
    await refused(portal, "POST", f"/api/v1/cases/{second}/withdraw", {"reason": "晚了"},
                  422, "invalid-transition")


async def test_applicants_see_only_their_own_cases(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    case_id, portal = await online_case(fed, http)
    other = await portal.call("POST", "/api/v1/applicant-sessions",
                              {"applicant": applicant("430725", name="李四") |
                               {"id_number": make_id("430725", sequence="457")},
                               "loa": "L4"}, expect=201)
    stranger = Api(http, fed[TAOYUAN], token=other["access_token"])
    await refused(stranger, "GET", f"/api/v1/cases/{case_id}", None, 404, "not-found")
    assert (await stranger.call("GET", "/api/v1/cases"))["cases"] == []
    await refused(stranger, "POST", f"/api/v1/cases/{case_id}/withdraw", {"reason": "x"}, 404,
                  "not-found")
    await refused(Api(http, fed[TAOYUAN], token="not-a-token"), "GET", "/api/v1/cases", None,
                  401, "unauthenticated")
    await refused(Api(http, fed[TAOYUAN], basic=("home-portal", "wrong")), "GET",
                  "/api/v1/cases", None, 401, "unauthenticated")


# --- materials travel with the case ------------------------------------------------------
async def test_uploaded_material_reaches_the_handler(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    portal = Api(http, fed[TAOYUAN]).as_portal()
    async with http.post(fed[TAOYUAN].url + "/api/v1/materials", data=b"%PDF-1.7 scan",
                         headers={"Content-Type": "application/pdf",
                                  "X-Material-Name": "身份证.pdf",
                                  "Authorization": "Basic " + base64.b64encode(
                                      f"{PORTAL_ID}:{PORTAL_SECRET}".encode()).decode()}
                         ) as resp:
        assert resp.status == 201
        blob = await resp.json()
    files = materials(ONLINE_ITEM)
    files[0] |= {"sha256": blob["sha256"], "size": blob["size"], "media_type": "application/pdf"}
    doc = await portal.call("POST", "/api/v1/cases", {
        "item": ONLINE_ITEM, "handler": DOUMEN, "applicant": applicant("430725"), "loa": "L4",
        "materials": files}, expect=201)
    await reach(fed[TAOYUAN], doc["case"]["case_id"], "handler_received")
    assert fed[DOUMEN].app is not None
    assert fed[DOUMEN].app[K.BLOBS].has(blob["sha256"])


# --- clocks -------------------------------------------------------------------------
async def fresh_registry(fed: Federation) -> None:
    """After a jump in time, the operator republishes, as its running gateway would."""
    version = await fed.publish(lambda a: a.republish())
    for node in fed.nodes:
        await node.wait_registry(version)


async def test_supplement_timeout_closes_the_case(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    case_id, _ = await online_case(fed, http)
    doumen = fed[DOUMEN]
    officer = await Api(http, doumen).as_clerk("officer")
    await officer.call("POST", f"/api/v1/handling/cases/{case_id}/supplement-request",
                       {"reason": "缺少证明", "materials": ["M03"]})
    await reach(fed[TAOYUAN], case_id, "supplement_required")
    assert doumen.app is not None
    service = doumen.app[K.CASES]
    assert await service.scan_clocks() == {"closed": 0, "overdue": 0}
    fed.clock.advance(45 * 86400)  # 20 working days are over, whatever the holidays
    await fresh_registry(fed)
    assert (await service.scan_clocks())["closed"] == 1
    await reach(fed[TAOYUAN], case_id, "closed")
    last = (await history(fed[TAOYUAN], case_id))[-1]
    assert last[0] == "case.status" and "supplement_timeout" in last[5]


async def test_overdue_decision_is_flagged_and_listed_first(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    late, _ = await online_case(fed, http)
    on_time, _ = await online_case(fed, http)
    doumen = fed[DOUMEN]
    officer = await Api(http, doumen).as_clerk("officer")
    await officer.call("POST", f"/api/v1/handling/cases/{late}/accept", {})
    fed.clock.advance(40 * 86400)  # past the 15 working days of this item, plus holidays
    await fresh_registry(fed)
    await refused(officer, "GET", "/api/v1/cases", None, 401, "unauthenticated")  # expired
    officer = await Api(http, doumen).as_clerk("officer")
    await officer.call("POST", f"/api/v1/handling/cases/{on_time}/accept", {})
    assert doumen.app is not None
    result = await doumen.app[K.CASES].scan_clocks()
    assert result["overdue"] >= 1
    listed = (await officer.call("GET", "/api/v1/cases"))["cases"]
    assert listed[0]["case_id"] == late and listed[0]["overdue"] is True
    assert {c["case_id"]: c["overdue"] for c in listed}[on_time] is False


async def test_ordered_bundle_runs_step_by_step(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    portal = Api(http, fed[DOUMEN]).as_portal()
    doc = await portal.call("POST", "/api/v1/cases", {
        "items": [{"item": "KSTB-JY-0001", "handler": TAOYUAN},
                  {"item": "KSTB-JY-0002", "handler": CHANGDE}],
        "ordered": True, "applicant": applicant("440403"), "loa": "L4",
        "materials": [{**m, "item": "KSTB-JY-0001"} for m in materials("KSTB-JY-0001")]},
        expect=422)
    assert "for KSTB-JY-0002" in doc["detail"]  # each item's own materials are required
    doc = await portal.call("POST", "/api/v1/cases", {
        "items": [{"item": "KSTB-JY-0001", "handler": TAOYUAN},
                  {"item": "KSTB-JY-0002", "handler": CHANGDE}],
        "ordered": True, "applicant": applicant("440403"), "loa": "L4",
        "materials": [*({**m, "item": "KSTB-JY-0001"} for m in materials("KSTB-JY-0001")),
                      *({**m, "item": "KSTB-JY-0002"} for m in materials("KSTB-JY-0002"))]},
        expect=201)
    parent = doc["case"]
    first, second = (p["case_id"] for p in sorted(parent["parts"], key=lambda p: p["step"]))
    step_two = (await portal.call("GET", f"/api/v1/cases/{second}"))["case"]
    assert {m.get("item") for m in step_two["materials"]} == {"KSTB-JY-0002"}
    await reach(fed[DOUMEN], first, "handler_received")
    assert await state(fed[DOUMEN], second) is None  # waits for step 1
    officer = await Api(http, fed[TAOYUAN]).as_clerk("officer")
    for action, body in (("accept", {}), ("conclude", {"outcome": "approved", "result": "ok"})):
        await officer.call("POST", f"/api/v1/handling/cases/{first}/{action}", body)
    await reach(fed[DOUMEN], second, "handler_received")
    seen = await portal.call("GET", f"/api/v1/cases/{parent['case_id']}")
    assert seen["case"]["state"] == "submitted"
    assert [p["state"] for p in seen["case"]["parts"]] == ["concluded", "handler_received"]


# --- electronic certificates (电子证照) -----------------------------------------------------
async def test_e_certificate_checked_with_its_issuer(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    cert_id = "CN440403.SB.2026.000001"
    case_id, portal = await online_case(fed, http)
    officer = await Api(http, fed[DOUMEN]).as_clerk("officer")
    await officer.call("POST", f"/api/v1/handling/cases/{case_id}/accept", {})
    await officer.call("POST", f"/api/v1/handling/cases/{case_id}/conclude", {
        "outcome": "approved", "result": "已转移",
        "certificate": {"id": cert_id, "name": "参保缴费凭证"}})

    async def apply_with(person: dict[str, Any], cert: str) -> str:
        files = materials(ONLINE_ITEM)
        files[2] |= {"cert": {"id": cert, "issuer": DOUMEN}}
        doc = await portal.call("POST", "/api/v1/cases", {
            "item": ONLINE_ITEM, "handler": CHANGDE, "applicant": person, "loa": "L4",
            "materials": files}, expect=201)
        return str(doc["case"]["case_id"])

    other = applicant("430725", name="李四") | {"id_number": make_id("430725", sequence="457")}
    cases_ = {"own": await apply_with(applicant("430725"), cert_id),
              "someone else's": await apply_with(other, cert_id),
              "unknown": await apply_with(applicant("430725"), "CN440403.SB.2026.999999")}
    changde_officer = await Api(http, fed[CHANGDE]).as_clerk("officer")

    async def status_of(case_id: str) -> str | None:
        status, _, doc = await changde_officer.raw("GET", f"/api/v1/cases/{case_id}")
        if status == 404:
            return None  # the case has not reached the handling member yet
        return str(doc["case"]["materials"][2]["cert"].get("status"))

    for label, cid in cases_.items():
        async def answered(cid: str = cid) -> bool:
            return await status_of(cid) in ("valid", "invalid")

        await wait_for(answered, what=f"the issuer's answer for the {label} certificate")
    assert await status_of(cases_["own"]) == "valid"
    assert await status_of(cases_["someone else's"]) == "invalid"
    assert await status_of(cases_["unknown"]) == "invalid"
    # A decision cannot issue the same certificate id twice.
    again, _ = await online_case(fed, http)
    await officer.call("POST", f"/api/v1/handling/cases/{again}/accept", {})
    await refused(officer, "POST", f"/api/v1/handling/cases/{again}/conclude", {
        "outcome": "approved", "result": "x", "certificate": {"id": cert_id}}, 422,
        "invalid-body")
    assert await state(fed[DOUMEN], again) == "accepted"


async def test_delivery_change_goes_through_the_handler_and_stops_at_the_decision(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    case_id, portal = await online_case(fed, http)
    doc = await portal.call("POST", f"/api/v1/cases/{case_id}/delivery",
                            {"method": "post", "address": "湖南省常德市桃源县漳江镇1号"},
                            expect=202)

    async def confirmed() -> bool:
        seen = await portal.call("GET", f"/api/v1/cases/{case_id}")
        return bool(seen["case"]["delivery"]["method"] == "post")

    await wait_for(confirmed, what="the handler to confirm the new delivery")
    officer = await Api(http, fed[DOUMEN]).as_clerk("officer")
    handler_view = await officer.call("GET", f"/api/v1/cases/{case_id}")
    assert handler_view["case"]["delivery"]["method"] == "post"
    for action, body in (("accept", {}), ("conclude", {"outcome": "approved", "result": "ok"})):
        await officer.call("POST", f"/api/v1/handling/cases/{case_id}/{action}", body)
    await reach(fed[TAOYUAN], case_id, "concluded")
    await refused(portal, "POST", f"/api/v1/cases/{case_id}/delivery", {"method": "window"},
                  422, "invalid-transition")
    await refused(portal, "POST", f"/api/v1/cases/{case_id}/delivery", {"method": "drone"},
                  422, "invalid-body", "method")
    await officer.call("POST", f"/api/v1/handling/cases/{case_id}/deliver",
                       {"tracking": "EMS0001"})
    await reach(fed[TAOYUAN], case_id, "delivered")
    # What applicants see: no officer names; with only the query password, no address either.
    mine = (await portal.call("GET", f"/api/v1/cases/{case_id}"))["case"]
    assert "by" not in mine["outcome"]
    assert all("by" not in e["detail"] for e in mine["history"])
    assert doc["case"]["delivery"]["method"] == "window"  # unchanged until confirmed


async def test_query_password_guessing_is_limited(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    portal = Api(http, fed[TAOYUAN]).as_portal()
    doc = await portal.call("POST", "/api/v1/cases", {
        "item": ONLINE_ITEM, "handler": DOUMEN, "applicant": applicant("430725"), "loa": "L4",
        "materials": materials(ONLINE_ITEM),
        "delivery": {"method": "post", "address": "湖南省常德市桃源县漳江镇1号"}}, expect=201)
    case_id, password = doc["case"]["case_id"], doc["query_password"]
    anonymous = Api(http, fed[TAOYUAN])
    seen = await anonymous.call("GET", f"/api/v1/cases/{case_id}",
                                headers={"X-Query-Password": password})
    assert "漳江镇" not in str(seen)  # the address is not shown to a password holder
    for _ in range(5):
        await anonymous.call("GET", f"/api/v1/cases/{case_id}",
                             headers={"X-Query-Password": "12345678"}, expect=404)
    status, _, body = await anonymous.raw("GET", f"/api/v1/cases/{case_id}",
                                          headers={"X-Query-Password": password})
    assert status == 429 and body["type"] == "urn:tongban:error:rate-limited"


async def test_stale_registry_refuses_new_cases_with_503(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    portal = Api(http, fed[TAOYUAN]).as_portal()
    fed.clock.advance(8 * 86400)  # past the registry's 7-day validity; nobody republished
    await refused(portal, "POST", "/api/v1/cases", {
        "item": ONLINE_ITEM, "handler": DOUMEN, "applicant": applicant("430725"), "loa": "L4",
        "materials": materials(ONLINE_ITEM)}, 503, "registry-stale")
    assert await count_cases(fed[TAOYUAN]) == 0


async def test_special_procedure_stops_the_decision_clock(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    case_id, _ = await online_case(fed, http)
    doumen = fed[DOUMEN]
    officer = await Api(http, doumen).as_clerk("officer")
    accepted = await officer.call("POST", f"/api/v1/handling/cases/{case_id}/accept", {})
    due_before = accepted["case"]["decision_due"]
    await officer.call("POST", f"/api/v1/handling/cases/{case_id}/review", {})
    await refused(officer, "POST", f"/api/v1/handling/cases/{case_id}/suspend",
                  {"reason": "专家评审", "procedure": "séance"}, 422, "invalid-body",
                  "procedure")
    await officer.call("POST", f"/api/v1/handling/cases/{case_id}/suspend",
                       {"reason": "组织专家评审", "procedure": "expert_review"})
    await reach(fed[TAOYUAN], case_id, "suspended")  # delivered before time jumps
    fed.clock.advance(14 * 86400)  # two weeks of expert review
    await fresh_registry(fed)
    officer = await Api(http, doumen).as_clerk("officer")
    resumed = await officer.call("POST", f"/api/v1/handling/cases/{case_id}/resume", {})
    due_after = resumed["case"]["decision_due"]
    assert due_after > due_before  # the paused working days are added to the deadline
    assert doumen.app is not None
    calendar = doumen.app[K.CASES].calendar
    paused = calendar.workdays_between(datetime.date.fromisoformat(due_before),
                                       datetime.date.fromisoformat(due_after))
    assert 8 <= paused <= 11  # 15 calendar days of pause, as working days
    portal = Api(http, fed[TAOYUAN]).as_portal()

    async def receiver_knows() -> bool:
        seen = await portal.call("GET", f"/api/v1/cases/{case_id}")
        return bool(seen["case"]["decision_due"] == due_after)

    await wait_for(receiver_knows, what="the receiver to show the new decision date")
