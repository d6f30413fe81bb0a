"""Dead letters are visible and retryable through the admin API, for the admin role only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from casekit import Api, case_federation
from fedkit import DOUMEN, TAOYUAN, DbFactory, Federation, new_case, wait_for

from gateway.db.repos import OutboxState


@pytest.fixture
async def fed(tmp_path: Path, db_factory: DbFactory) -> AsyncIterator[Federation]:
    federation = await case_federation(tmp_path, db_factory, (DOUMEN, TAOYUAN))
    try:
        yield federation
    finally:
        await federation.close()


async def test_dead_letters_listed_and_requeued(fed: Federation,
                                                http: aiohttp.ClientSession) -> None:
    doumen = fed[DOUMEN]
    # A step of a case Taoyuan has never seen: refused for good (422), parked at once.
    entry = await doumen.send(TAOYUAN, "case.accept", case_id=new_case(DOUMEN),
                              body={"at": doumen.clock()})

    async def parked() -> bool:
        return len(await doumen.outbox(OutboxState.DEAD)) == 1

    await wait_for(parked, what="the refused message to park")
    admin = await Api(http, doumen).as_clerk("admin")
    listed = (await admin.call("GET", "/admin/v1/outbox?state=dead"))["messages"]
    assert [m["id"] for m in listed] == [entry.id]
    assert "invalid-transition" in listed[0]["last_error"]
    assert "token" not in listed[0] and "payload" not in listed[0]  # no personal data
    auditor = await Api(http, doumen).as_clerk("auditor")
    assert len((await auditor.call("GET", "/admin/v1/outbox?state=dead"))["messages"]) == 1
    await auditor.call("POST", f"/admin/v1/outbox/{entry.id}/retry", expect=403)
    window = await Api(http, doumen).as_clerk("window")
    await window.call("GET", "/admin/v1/outbox", expect=403)
    await admin.call("GET", "/admin/v1/outbox?state=lost", expect=422)
    for bad in ("limit=0", "limit=501", "after=-1", "after=%C2%B2", "limit=x"):
        await admin.call("GET", f"/admin/v1/outbox?{bad}", expect=422)
    assert (await admin.call("POST", f"/admin/v1/outbox/{entry.id}/retry"))["requeued"] == 1
    await admin.call("POST", "/admin/v1/outbox/999999/retry", expect=404)
    await admin.call("POST", "/admin/v1/outbox/%C2%B2/retry", expect=404)  # not an id, no 500

    async def tried_again() -> bool:
        [row] = [e for e in await doumen.outbox() if e.id == entry.id]
        return row.attempts >= 2

    await wait_for(tried_again, what="the requeued message to be tried again")


async def test_outbox_listing_pages_by_id(fed: Federation, http: aiohttp.ClientSession) -> None:
    doumen = fed[DOUMEN]
    for _ in range(5):
        await doumen.send(TAOYUAN, "case.accept", case_id=new_case(DOUMEN),
                          body={"at": doumen.clock()})
    every = [e.id for e in await doumen.outbox()]
    admin = await Api(http, doumen).as_clerk("auditor")
    seen: list[int] = []
    after = 0
    while True:
        page = await admin.call("GET", f"/admin/v1/outbox?limit=2&after={after}")
        seen += [m["id"] for m in page["messages"]]
        assert len(page["messages"]) <= 2
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == every  # each once, in order, none skipped
