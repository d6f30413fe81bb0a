"""Filing a case is safe to retry with an Idempotency-Key.

A portal on a flaky network whose 201 never arrived cannot tell "not filed" from "filed, reply
lost"; it sends the same request again with the same key. A lost reply is observed exactly as a
second request with the same key, so that is what these tests send: the second answer must be
the first case (and its query password), and the database must hold one case.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from casekit import (
    HOUSEHOLD_ITEM,
    ONLINE_ITEM,
    PORTAL_ID,
    PORTAL_SECRET,
    Api,
    applicant,
    case_federation,
    materials,
    reach,
)
from fedkit import CHANGDE, DOUMEN, TAOYUAN, DbFactory, Federation, Node
from sqlalchemy import func, select

from gateway import appkeys as K
from gateway.db.schema import cases, idempotency_keys, outbox
from trust import credentials

OTHER_PORTAL = "other-portal"
OTHER_SECRET = "other-portal-secret-0123456789abcdef"


@pytest.fixture
async def fed(tmp_path: Path, db_factory: DbFactory) -> AsyncIterator[Federation]:
    secret = tmp_path / "other.secret"
    secret.write_text(OTHER_SECRET, encoding="utf-8")
    federation = await case_federation(
        tmp_path, db_factory,
        extra={"api.clients." + OTHER_PORTAL: {"secret_file": str(secret)}})
    try:
        yield federation
    finally:
        await federation.close()


async def count(node: Node, table: Any) -> int:
    async with node.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def post(http: aiohttp.ClientSession, node: Node, path: str, body: Any, *,
               key: str | None, auth: str) -> tuple[int, dict[str, str], Any]:
    """One POST with its response headers (the casekit client does not return them)."""
    headers = {"Content-Type": "application/json", "Authorization": auth}
    if key is not None:
        headers["Idempotency-Key"] = key
    async with http.post(node.url + path, data=json.dumps(body, ensure_ascii=False).encode(),
                         headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.json(content_type=None)


def basic(client_id: str = PORTAL_ID, secret: str = PORTAL_SECRET) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def online_body(**overrides: Any) -> dict[str, Any]:
    return {"item": ONLINE_ITEM, "handler": DOUMEN, "applicant": applicant("430725"),
            "loa": "L4", "materials": materials(ONLINE_ITEM), **overrides}


async def test_a_retry_with_the_same_key_returns_the_first_case(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    taoyuan = fed[TAOYUAN]
    key = str(uuid.uuid4())
    status, headers, first = await post(http, taoyuan, "/api/v1/cases", online_body(),
                                        key=key, auth=basic())
    assert status == 201, first
    assert "Idempotent-Replayed" not in headers
    case_id = first["case"]["case_id"]
    await reach(taoyuan, case_id, "handler_received")
    # The reply was "lost": the portal sends the same request again, re-serialised with the
    # keys in another order (a different client library) - still the same request.
    again = dict(reversed(list(online_body().items())))
    status, headers, second = await post(http, taoyuan, "/api/v1/cases", again, key=key,
                                         auth=basic())
    assert status == 201, second
    assert headers.get("Idempotent-Replayed") == "true"
    assert second["case"]["case_id"] == case_id
    assert second["case"]["state"] == "handler_received"  # the case as it is now
    # The query password of the lost reply works: the applicant's receipt is not orphaned.
    assert second["query_password"] == first["query_password"]
    anonymous = Api(http, taoyuan)
    seen = await anonymous.call("GET", f"/api/v1/cases/{case_id}",
                                headers={"X-Query-Password": second["query_password"]})
    assert seen["case"]["case_id"] == case_id
    assert await count(taoyuan, cases) == 1
    assert await count(taoyuan, idempotency_keys) == 1
    assert await count(taoyuan, outbox) == 1  # one case.submit, not two
    assert await count(fed[DOUMEN], cases) == 1


async def test_without_a_key_each_post_files_a_case(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    taoyuan = fed[TAOYUAN]
    ids = set()
    for _ in range(2):
        status, _, doc = await post(http, taoyuan, "/api/v1/cases", online_body(), key=None,
                                    auth=basic())
        assert status == 201, doc
        ids.add(doc["case"]["case_id"])
    assert len(ids) == 2
    assert await count(taoyuan, cases) == 2
    assert await count(taoyuan, idempotency_keys) == 0


async def test_the_same_key_with_another_body_is_refused_and_stores_nothing(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    taoyuan = fed[TAOYUAN]
    key = "order-2026-11-23-0001"
    status, _, first = await post(http, taoyuan, "/api/v1/cases", online_body(), key=key,
                                  auth=basic())
    assert status == 201, first
    other = online_body(applicant=applicant("430725", name="李四"))
    status, headers, doc = await post(http, taoyuan, "/api/v1/cases", other, key=key,
                                      auth=basic())
    assert status == 422, doc
    assert headers["Content-Type"].startswith("application/problem+json")
    assert doc["type"] == "urn:tongban:error:idempotency-key-reused"
    assert doc["status"] == 422
    assert await count(taoyuan, cases) == 1
    assert await count(taoyuan, idempotency_keys) == 1
    # A window clerk using the same string is another caller with its own keys.
    window = await Api(http, taoyuan).as_clerk("window")
    assert window.token is not None
    status, _, doc = await post(http, taoyuan, "/api/v1/window/cases", {
        "item": HOUSEHOLD_ITEM, "applicant": applicant("440403"),
        "identity_check": {"method": "id_card_reader"},
        "materials": materials(HOUSEHOLD_ITEM)}, key=key, auth=f"Bearer {window.token}")
    assert status == 201, doc
    assert await count(taoyuan, cases) == 2


@pytest.mark.parametrize("key", ["", "x" * 256, "über", "a\tb", '"quoted"inside"',
                                 "back\\slash"])
async def test_a_malformed_key_is_400_and_files_nothing(
        fed: Federation, http: aiohttp.ClientSession, key: str) -> None:
    taoyuan = fed[TAOYUAN]
    headers = {"Content-Type": "application/json", "Authorization": basic(),
               "Idempotency-Key": key}
    async with http.post(taoyuan.url + "/api/v1/cases", data=json.dumps(online_body()),
                         headers=headers) as resp:
        doc = await resp.json(content_type=None)
        assert resp.status == 400, doc
        assert resp.content_type == "application/problem+json"
    assert doc["type"] == "urn:tongban:error:malformed"
    assert "Idempotency-Key" in doc["detail"]
    assert await count(taoyuan, cases) == 0
    assert await count(taoyuan, idempotency_keys) == 0


async def test_two_keys_in_one_request_are_400(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    taoyuan = fed[TAOYUAN]
    headers = [("Content-Type", "application/json"), ("Authorization", basic()),
               ("Idempotency-Key", "one"), ("Idempotency-Key", "two")]
    async with http.post(taoyuan.url + "/api/v1/cases", data=json.dumps(online_body()),
                         headers=headers) as resp:
        assert resp.status == 400
    assert await count(taoyuan, cases) == 0


async def test_a_structured_field_string_is_the_same_key_as_the_bare_token(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    taoyuan = fed[TAOYUAN]
    key = str(uuid.uuid4())
    _, _, first = await post(http, taoyuan, "/api/v1/cases", online_body(), key=f'"{key}"',
                             auth=basic())
    status, headers, second = await post(http, taoyuan, "/api/v1/cases", online_body(),
                                         key=key, auth=basic())
    assert status == 201 and headers.get("Idempotent-Replayed") == "true"
    assert second["case"]["case_id"] == first["case"]["case_id"]


async def test_keys_belong_to_their_caller(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    """Another portal's identical key files its own case and learns nothing of the first."""
    taoyuan = fed[TAOYUAN]
    key = "shared-looking-key"
    status, _, mine = await post(http, taoyuan, "/api/v1/cases", online_body(), key=key,
                                 auth=basic())
    assert status == 201
    # A different body from the other portal: no 422, which would tell it the key is taken.
    status, headers, theirs = await post(
        http, taoyuan, "/api/v1/cases", online_body(applicant=applicant("430725", "王五")),
        key=key, auth=basic(OTHER_PORTAL, OTHER_SECRET))
    assert status == 201, theirs
    assert "Idempotent-Replayed" not in headers
    assert theirs["case"]["case_id"] != mine["case"]["case_id"]
    assert theirs["query_password"] != mine["query_password"]
    # And the applicant, with a session of their own, is a third caller.
    session = await Api(http, taoyuan).as_portal().call(
        "POST", "/api/v1/applicant-sessions", {"applicant": applicant("430725"), "loa": "L4"},
        expect=201)
    status, _, own = await post(http, taoyuan, "/api/v1/cases", online_body(), key=key,
                                auth=f"Bearer {session['access_token']}")
    assert status == 201, own
    assert own["case"]["case_id"] not in (mine["case"]["case_id"], theirs["case"]["case_id"])
    assert await count(taoyuan, cases) == 3
    assert await count(taoyuan, idempotency_keys) == 3


async def test_concurrent_duplicates_file_one_case(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    """A retry sent while the first try is still running: one case, both answers show it."""
    taoyuan = fed[TAOYUAN]
    key = str(uuid.uuid4())
    results = await asyncio.gather(*(post(http, taoyuan, "/api/v1/cases", online_body(),
                                          key=key, auth=basic()) for _ in range(6)))
    assert all(status == 201 for status, _, _ in results), results
    assert len({doc["case"]["case_id"] for _, _, doc in results}) == 1
    assert len({doc["query_password"] for _, _, doc in results}) == 1
    assert sum(h.get("Idempotent-Replayed") == "true" for _, h, _ in results) == 5
    assert await count(taoyuan, cases) == 1
    assert await count(taoyuan, idempotency_keys) == 1
    assert await count(taoyuan, outbox) == 1


async def test_bundle_and_window_intake_are_idempotent_too(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    doumen = fed[DOUMEN]
    bundle = {
        "items": [{"item": "KSTB-JY-0001", "handler": TAOYUAN},
                  {"item": "KSTB-JY-0002", "handler": CHANGDE}],
        "applicant": applicant("440403"), "loa": "L4",
        "materials": [*({**m, "item": "KSTB-JY-0001"} for m in materials("KSTB-JY-0001")),
                      *({**m, "item": "KSTB-JY-0002"} for m in materials("KSTB-JY-0002"))]}
    _, _, first = await post(http, doumen, "/api/v1/cases", bundle, key="bundle-1",
                             auth=basic())
    status, _, second = await post(http, doumen, "/api/v1/cases", bundle, key="bundle-1",
                                   auth=basic())
    assert status == 201, second
    assert second["case"]["case_id"] == first["case"]["case_id"]
    assert {p["case_id"] for p in second["case"]["parts"]} == \
        {p["case_id"] for p in first["case"]["parts"]}
    assert await count(doumen, cases) == 3  # the bundle and its two parts, once

    window = await Api(http, doumen).as_clerk("window")
    intake = {"item": HOUSEHOLD_ITEM, "applicant": applicant("430725"),
              "identity_check": {"method": "id_card_reader", "loa": "L4"},
              "materials": materials(HOUSEHOLD_ITEM)}
    answers = [await post(http, doumen, "/api/v1/window/cases", intake, key="desk-7-0001",
                          auth=f"Bearer {window.token}") for _ in range(2)]
    assert [status for status, _, _ in answers] == [201, 201]
    assert answers[0][2]["case"]["case_id"] == answers[1][2]["case"]["case_id"]
    assert answers[0][2]["query_password"] == answers[1][2]["query_password"]
    assert answers[1][1].get("Idempotent-Replayed") == "true"
    assert await count(doumen, cases) == 4
    status, _, doc = await post(http, doumen, "/api/v1/window/cases",
                                {**intake, "delivery": {"method": "window"}},
                                key="desk-7-0001", auth=f"Bearer {window.token}")
    assert status == 422 and doc["type"].endswith(":idempotency-key-reused"), doc


async def test_a_refused_application_does_not_use_up_its_key(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    """Nothing is stored on refusal, so the corrected application may keep the key."""
    taoyuan = fed[TAOYUAN]
    status, _, doc = await post(http, taoyuan, "/api/v1/cases",
                                online_body(materials=[]), key="k1", auth=basic())
    assert status == 422 and doc["type"].endswith(":invalid-body"), doc
    assert await count(taoyuan, idempotency_keys) == 0
    status, _, doc = await post(http, taoyuan, "/api/v1/cases", online_body(), key="k1",
                                auth=basic())
    assert status == 201, doc


async def test_keys_are_kept_a_day_then_swept(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    taoyuan = fed[TAOYUAN]
    assert taoyuan.app is not None
    service = taoyuan.app[K.CASES]
    status, _, _ = await post(http, taoyuan, "/api/v1/cases", online_body(), key="old",
                              auth=basic())
    assert status == 201
    fed.clock.advance(23 * 3600)
    assert await service.sweep_idempotency_keys() == 0
    fed.clock.advance(2 * 3600)
    assert await service.sweep_idempotency_keys() == 1
    assert await count(taoyuan, idempotency_keys) == 0
    assert await count(taoyuan, cases) == 1  # the case itself stays, of course


def test_a_derived_query_password_depends_on_caller_key_and_request() -> None:
    """A replay repeats the password; a key reused for another request (once forgotten, or by
    another caller) never hands out the first applicant's password."""
    secret = credentials.new_secret()
    first = credentials.derived_query_password(secret, "portal:a\nk\nf1")
    assert first == credentials.derived_query_password(secret, "portal:a\nk\nf1")
    assert len(first) == 8 and first.isdigit()
    others = {credentials.derived_query_password(secret, c)
              for c in ("portal:a\nk\nf2", "portal:b\nk\nf1", "portal:a\nk2\nf1")}
    assert first not in others
    assert first != credentials.derived_query_password(credentials.new_secret(),
                                                       "portal:a\nk\nf1")


async def test_supplement_withdraw_and_delivery_are_sent_once_per_key(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    """Requests to the handling side: a retry must not queue a second message (the handler
    would refuse it, and the sender would park it as a dead letter)."""
    taoyuan, doumen = fed[TAOYUAN], fed[DOUMEN]
    _, _, filed = await post(http, taoyuan, "/api/v1/cases", online_body(), key="file-1",
                             auth=basic())
    case_id = filed["case"]["case_id"]
    await reach(taoyuan, case_id, "handler_received")
    officer = await Api(http, doumen).as_clerk("officer")
    await officer.call("POST", f"/api/v1/handling/cases/{case_id}/supplement-request",
                       {"reason": "照片不清晰", "materials": ["M01"]})
    await reach(taoyuan, case_id, "supplement_required")

    def sent(entries: list[Any], type_: str) -> int:
        return sum(1 for e in entries if e.type == type_ and e.case_id == case_id)

    supplement = {"materials": [{"code": "M01", "name": "身份证明（重新扫描）"}]}
    path = f"/api/v1/cases/{case_id}/supplement"
    answers = [await post(http, taoyuan, path, supplement, key="supp-1", auth=basic())
               for _ in range(2)]
    assert [status for status, _, _ in answers] == [202, 202], answers
    assert "Idempotent-Replayed" not in answers[0][1]
    assert answers[1][1].get("Idempotent-Replayed") == "true"
    assert "query_password" not in answers[1][2]
    assert sent(await taoyuan.outbox(), "case.supplement") == 1
    # Another request with the same key: refused, nothing queued.
    status, _, doc = await post(http, taoyuan, f"/api/v1/cases/{case_id}/withdraw",
                                {"reason": "不办了"}, key="supp-1", auth=basic())
    assert status == 422 and doc["type"].endswith(":idempotency-key-reused"), doc
    await reach(taoyuan, case_id, "handler_received")

    delivery = {"method": "post", "address": "湖南省常德市桃源县漳江镇"}
    for _ in range(2):
        status, _, doc = await post(http, taoyuan, f"/api/v1/cases/{case_id}/delivery",
                                    delivery, key="deliv-1", auth=basic())
        assert status == 202, doc
    for _ in range(2):
        status, _, doc = await post(http, taoyuan, f"/api/v1/cases/{case_id}/withdraw",
                                    {"reason": "不办了"}, key="wd-1", auth=basic())
        assert status == 202, doc
    entries = await taoyuan.outbox()
    assert sent(entries, "case.withdraw") == 1
    assert sent(entries, "case.status") == 1  # the new delivery address, once
    await reach(taoyuan, case_id, "withdrawn")
    assert await count(taoyuan, idempotency_keys) == 4
    assert not [e for e in await taoyuan.outbox() if e.state == "dead"]
