"""The admin console over plain HTTP: logins and roles, CSRF on every form, what each role may
do, the registry diff, key rotation, dead letters, masking and the volume chart.

The browser test (tests/test_console_browser.py) walks the alliance admin's path; this file
checks the refusals and the pages one by one.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from casekit import (
    ONLINE_ITEM,
    PASSWORD,
    Api,
    add_clerk_with_role,
    applicant,
    case_federation,
    materials,
)
from fedkit import DOUMEN, OPERATOR_ID, TAOYUAN, DbFactory, Federation, Node, new_case, wait_for

from gateway import appkeys as K
from gateway import console
from gateway.alliance import AllianceError
from gateway.cases.model import Applicant, Case
from gateway.cases.states import CaseState, Side
from gateway.cli.commands import add_clerk
from gateway.db.repos import OutboxState
from registry.document import Item, Mode, Status
from registry.validation import mask_id

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def fed(tmp_path: Path, db_factory: DbFactory) -> AsyncIterator[Federation]:
    federation = await case_federation(tmp_path, db_factory, (DOUMEN, TAOYUAN))
    try:
        await add_clerk_with_role(federation.operator, "alliance", console.ALLIANCE_ADMIN)
        yield federation
    finally:
        await federation.close()


@dataclass
class Browser:
    """A clerk's browser without script: a cookie jar, forms posted with their CSRF field."""

    http: aiohttp.ClientSession
    node: Node
    csrf: str = ""

    @classmethod
    def open(cls, node: Node) -> Browser:
        # unsafe: keep cookies of a bare IP address (the test servers listen on 127.0.0.1)
        return cls(aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)), node)

    async def close(self) -> None:
        await self.http.close()

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(self.node.url + path, allow_redirects=False) as resp:
            text = await resp.text()
        found = CSRF_RE.search(text)
        if found:
            self.csrf = found.group(1)
        return resp.status, text

    async def post(self, path: str, fields: dict[str, str] | None = None, *,
                   csrf: str | None = None) -> tuple[int, str, str]:
        data = dict(fields or {})
        token = self.csrf if csrf is None else csrf
        if token:
            data["csrf"] = token
        async with self.http.post(self.node.url + path, data=data,
                                  allow_redirects=False) as resp:
            return resp.status, resp.content_type, await resp.text()

    async def login(self, username: str, password: str = PASSWORD) -> int:
        await self.get("/admin/")
        status, _, _ = await self.post("/admin/login",
                                       {"username": username, "password": password})
        if status == 303:
            await self.get("/admin/")
        return status


def problem(status: int, content_type: str, text: str) -> tuple[int, str]:
    assert content_type == "application/problem+json", text
    return status, json.loads(text)["type"].rsplit(":", 1)[-1]


async def status_of(node: Node, member_id: str) -> str:
    snapshot = node.app[K.HOLDER].current if node.app is not None else None
    member = snapshot.member(member_id) if snapshot is not None else None
    return member.status.value if member is not None else "unknown"


async def test_roles_and_csrf(fed: Federation) -> None:
    operator = fed.operator
    anonymous, member_admin, alliance_admin, auditor, window = (
        Browser.open(operator) for _ in range(5))
    try:
        # Not signed in: pages send to the login page, forms are refused as problems.
        assert (await anonymous.get("/admin/members"))[0] == 303
        status, text = await anonymous.get("/admin/")
        assert status == 200 and 'action="/admin/login"' in text
        assert problem(*await anonymous.post(f"/admin/members/{DOUMEN}/status",
                                             {"status": "suspended"})) == (401,
                                                                           "unauthenticated")
        # The login form has its own CSRF token, bound to a pre-login cookie.
        assert problem(*await anonymous.post("/admin/login", {
            "username": "alliance", "password": PASSWORD}, csrf="forged")) == (403, "forbidden")
        # A token that is not even ASCII is refused the same way, not a 500.
        assert problem(*await anonymous.post("/admin/login", {
            "username": "alliance", "password": PASSWORD}, csrf="伪造")) == (403, "forbidden")
        assert await anonymous.login("alliance", "wrong password 123") == 401
        assert await window.login("window") == 403  # no console role
        assert await member_admin.login("admin") == 303
        assert await alliance_admin.login("alliance") == 303
        assert await auditor.login("auditor") == 303

        # Only the alliance admin on the operator sees suspend buttons.
        _, page = await alliance_admin.get("/admin/members")
        assert f'action="/admin/members/{DOUMEN}/status"' in page
        for browser in (member_admin, auditor):
            _, page = await browser.get("/admin/members")
            assert DOUMEN in page and "/status\"" not in page

        version = operator.app[K.HOLDER].require_fresh().version
        # A member admin's forged suspension, with its own valid CSRF token: refused.
        assert problem(*await member_admin.post(f"/admin/members/{DOUMEN}/status",
                                                {"status": "suspended"})) == (403, "forbidden")
        # The alliance admin's post without, with a wrong, or with another session's token.
        for token in ("", "0" * 32, member_admin.csrf):
            sent = await alliance_admin.post(f"/admin/members/{DOUMEN}/status",
                                             {"status": "suspended"}, csrf=token)
            assert problem(*sent) == (403, "forbidden")
        assert operator.app[K.HOLDER].require_fresh().version == version
        assert await status_of(operator, DOUMEN) == "active"

        # The real thing: a new registry version, which reaches the other members.
        status, _, _ = await alliance_admin.post(f"/admin/members/{DOUMEN}/status",
                                                 {"status": "suspended"})
        assert status == 303
        assert operator.app[K.HOLDER].require_fresh().version == version + 1
        assert await status_of(operator, DOUMEN) == "suspended"

        async def taoyuan_knows() -> bool:
            return await status_of(fed[TAOYUAN], DOUMEN) == "suspended"

        await wait_for(taoyuan_knows, what="the suspension to reach Taoyuan")
        _, page = await alliance_admin.get("/admin/members")
        assert f"恢复 {DOUMEN}" in page
        # Only the fixed notices are shown: a crafted link cannot put words on the page.
        _, page = await alliance_admin.get("/admin/members?done=call-0123-now")
        assert "call-0123-now" not in page and 'role="status"' not in page
        # The operator cannot suspend itself; revocation stays with the CLI.
        assert problem(*await alliance_admin.post(f"/admin/members/{OPERATOR_ID}/status",
                                                  {"status": "suspended"}))[0] == 400
        assert problem(*await alliance_admin.post(f"/admin/members/{TAOYUAN}/status",
                                                  {"status": "revoked"})) == (422,
                                                                              "invalid-body")
        status, _, _ = await alliance_admin.post(f"/admin/members/{DOUMEN}/status",
                                                 {"status": "active"})
        assert status == 303 and await status_of(operator, DOUMEN) == "active"

        # The diff of the last two versions names the change.
        _, page = await auditor.get(f"/admin/registry/diff?from={version + 1}&to={version + 2}")
        assert 'class="change-status"' in page and "suspended" in page
        _, page = await auditor.get("/admin/registry")
        assert f"<td>{version + 2}</td>" in page

        # The auditor reads but changes nothing.
        for path in ("/admin/outbox/retry-dead", "/admin/keys/rotate",
                     "/admin/local-calls/retry-dead"):
            assert problem(*await auditor.post(path)) == (403, "forbidden"), path
        # Logging out needs the form's token too, and ends the session.
        assert problem(*await auditor.post("/admin/logout", csrf="x" * 32))[0] == 403
        assert (await auditor.post("/admin/logout"))[0] == 303
        assert (await auditor.get("/admin/cases"))[0] == 303
    finally:
        for browser in (anonymous, member_admin, alliance_admin, auditor, window):
            await browser.close()


async def test_alliance_admin_only_on_the_operator(fed: Federation) -> None:
    doumen = fed[DOUMEN]
    with pytest.raises(AllianceError, match="only for the alliance operator"):
        await add_clerk(doumen.config, username="ally", name="", role=console.ALLIANCE_ADMIN,
                        password=PASSWORD)
    # As if the CLI had been bypassed:
    await add_clerk_with_role(doumen, "ally", console.ALLIANCE_ADMIN)
    stray, admin = Browser.open(doumen), Browser.open(doumen)
    try:
        assert await stray.login("ally") == 403
        assert await admin.login("admin") == 303
        _, page = await admin.get("/admin/members")
        assert "/status\"" not in page and "由联盟运营方发布" in page
        assert problem(*await admin.post(f"/admin/members/{TAOYUAN}/status",
                                         {"status": "suspended"})) == (403, "forbidden")
        assert await status_of(doumen, TAOYUAN) == "active"
    finally:
        await stray.close()
        await admin.close()


async def test_pages_mask_personal_data(fed: Federation, http: aiohttp.ClientSession) -> None:
    taoyuan = fed[TAOYUAN]
    person = applicant("430725")
    token = await Api(http, taoyuan).as_portal().call(
        "POST", "/api/v1/applicant-sessions", {"applicant": person, "loa": "L4"}, expect=201)
    me = Api(http, taoyuan, token=token["access_token"])
    doc = await me.call("POST", "/api/v1/cases", {
        "item": ONLINE_ITEM, "handler": DOUMEN, "applicant": person,
        "materials": materials(ONLINE_ITEM), "delivery": {"method": "online"},
        "form": {"转出地": "珠海市斗门区", "转入地": "常德市桃源县"}}, expect=201)
    case_id = doc["case"]["case_id"]
    browser = Browser.open(taoyuan)
    try:
        assert await browser.login("auditor") == 303
        pages = {}
        for path in ("/admin/", "/admin/members", "/admin/registry", "/admin/keys",
                     "/admin/cases", "/admin/outbox?state=delivered", "/admin/outbox",
                     "/admin/volume"):
            status, pages[path] = await browser.get(path)
            assert status == 200, path
            assert person["id_number"] not in pages[path], path
            assert person["phone"] not in pages[path] and person["name"] not in pages[path]
        cases = pages["/admin/cases"]
        assert case_id in cases
        assert mask_id(person["id_number"]) in cases
        assert "138****8000" in cases and "张*" in cases
        # The chart: today's bar is one online case received at Taoyuan.
        assert f"online · {TAOYUAN}：1" in pages["/admin/volume"]
        assert pages["/admin/volume"].count("<rect x=") == 1
        # A filter by state, and an unknown state refused as a problem.
        _, page = await browser.get("/admin/cases?state=withdrawn")
        assert case_id not in page
        async with browser.http.get(taoyuan.url + "/admin/cases?state=lost") as resp:
            assert resp.status == 422 and resp.content_type == "application/problem+json"
        # Every console page sends a CSP without inline script.
        async with browser.http.get(taoyuan.url + "/admin/volume") as resp:
            assert "script-src 'nonce-" in resp.headers["Content-Security-Policy"]
            assert resp.headers["Cache-Control"] == "no-store"
    finally:
        await browser.close()


async def test_dead_letters_and_keys(fed: Federation) -> None:
    doumen = fed[DOUMEN]
    entry = await doumen.send(TAOYUAN, "case.accept", case_id=new_case(DOUMEN),
                              body={"at": doumen.clock()})

    async def parked() -> bool:
        return len(await doumen.outbox(OutboxState.DEAD)) == 1

    await wait_for(parked, what="the refused message to park")
    admin, auditor = Browser.open(doumen), Browser.open(doumen)
    try:
        assert await admin.login("admin") == 303
        assert await auditor.login("auditor") == 303
        _, page = await auditor.get("/admin/outbox")
        assert "invalid-transition" in page and "/retry\"" not in page
        _, page = await admin.get("/admin/outbox")
        assert f'action="/admin/outbox/{entry.id}/retry"' in page
        assert problem(*await admin.post("/admin/outbox/999999/retry")) == (404, "not-found")
        assert (await admin.post(f"/admin/outbox/{entry.id}/retry"))[0] == 303

        async def tried_again() -> bool:
            [row] = [e for e in await doumen.outbox() if e.id == entry.id]
            return row.attempts >= 2

        await wait_for(tried_again, what="the requeued message to be tried again")

        # Key rotation: a new key, published but not yet signing; the signing key stays.
        signing = doumen.signing_key().kid
        assert (await admin.post("/admin/keys/rotate"))[0] == 303
        assert doumen.app is not None
        kids = [k.kid for k in doumen.app[K.KEYS].keys]
        assert len(kids) == 2 and kids[0] == signing
        new = kids[1]
        async with admin.http.get(doumen.url + "/federation/v1/keys") as resp:
            assert new in {k["kid"] for k in (await resp.json(content_type=None))["keys"]}
        _, page = await admin.get("/admin/keys")
        assert new in page and f'action="/admin/keys/{new}/retire"' in page
        assert f'action="/admin/keys/{signing}/retire"' not in page
        sent = await admin.post(f"/admin/keys/{signing}/retire")
        assert problem(*sent) == (422, "invalid-body")
        assert (await admin.post(f"/admin/keys/{new}/retire"))[0] == 303
        assert [k.kid for k in doumen.app[K.KEYS].keys] == [signing]
    finally:
        await admin.close()
        await auditor.close()


def _case(case_id: str, *, overdue: bool, created_at: float) -> Case:
    return Case(case_id=case_id, side=Side.HANDLER, kind="single", mode="online",
                receiver=TAOYUAN, handler=DOUMEN, state=CaseState.ACCEPTED,
                applicant_key="k", applicant=Applicant(kind="person", name="李四五",
                                                       id_number="430725199003071234",
                                                       phone="13912345678"),
                data={}, clock={}, created_at=created_at, updated_at=created_at,
                overdue=overdue)


def test_case_rows_overdue_first_and_masked() -> None:
    rows = console.case_rows([_case("a", overdue=False, created_at=3),
                              _case("b", overdue=True, created_at=2),
                              _case("c", overdue=False, created_at=1),
                              _case("d", overdue=True, created_at=0)])
    assert [r.case_id for r in rows] == ["b", "d", "a", "c"]
    assert {(r.applicant, r.id_number, r.phone) for r in rows} == {
        ("李**", "430725********1234", "139****5678")}


def test_volume_chart_stacks_by_mode_and_member() -> None:
    today = datetime.date(2026, 11, 23)
    noon = datetime.datetime(2026, 11, 23, 12, tzinfo=console.CHINA).timestamp()
    rows = [(noon, "online", DOUMEN), (noon, "online", DOUMEN), (noon, "proxy", TAOYUAN),
            (noon - 86400, "online", DOUMEN), (noon - 30 * 86400, "online", DOUMEN)]
    counts = console.daily_volume(rows, today=today, days=14)
    assert counts == {(today, f"online · {DOUMEN}"): 2, (today, f"proxy · {TAOYUAN}"): 1,
                      (today - datetime.timedelta(days=1), f"online · {DOUMEN}"): 1}
    chart = console.volume_chart(counts, today=today, days=14, height=240)
    assert chart.peak == 3 and chart.total == 4 and len(chart.bars) == 3
    tallest = [b for b in chart.bars if b.label.startswith("2026-11-23")]
    # Today's two series stack to the full plot height (240 - 20 bottom - 10 top).
    assert round(sum(b.height for b in tallest), 6) == 210
    assert chart.days[-1][1] == "11-23" and len(chart.days) == 14
    assert [name for _, name, _ in chart.legend] == [f"online · {DOUMEN}",
                                                     f"proxy · {TAOYUAN}"]


async def test_registry_diff_members_keys_items(fed: Federation) -> None:
    before = await fed.alliance().current()
    item = Item(code=ONLINE_ITEM, name="养老保险转移", modes=(Mode.ONLINE,))
    await fed.publish(lambda a: a.set_items(DOUMEN, [item]))
    await fed.publish(lambda a: a.set_status(TAOYUAN, Status.SUSPENDED))
    after = await fed.alliance().current()
    changes = {(c.member, c.what) for c in console.registry_diff(before, after)}
    assert (TAOYUAN, "status") in changes and (DOUMEN, "items") in changes
    assert all(m != OPERATOR_ID for m, _ in changes)
    assert console.registry_diff(after, after) == []


async def test_non_ascii_digits_are_refused_as_problems(fed: Federation) -> None:
    """`str.isdigit` admits "²" and "١", which `int()` refuses (or reads): a 500 before."""
    browser = Browser.open(fed.operator)
    try:
        assert await browser.login("admin") == 303
        async with browser.http.get(fed.operator.url + "/admin/registry/diff?from=²&to=1",
                                    allow_redirects=False) as resp:
            assert resp.status == 422 and resp.content_type == "application/problem+json"
        for row in ("²", "١"):
            assert problem(*await browser.post(f"/admin/outbox/{row}/retry")) == (
                404, "not-found")
    finally:
        await browser.close()
