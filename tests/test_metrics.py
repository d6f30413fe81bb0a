"""Prometheus `/metrics` (parsed with the client library's own parser) and `/readyz`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from fedkit import DOUMEN, TAOYUAN, DbFactory, Federation, Node, build_federation, new_case
from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture
async def fed(tmp_path: Path, db_factory: DbFactory) -> AsyncIterator[Federation]:
    federation = await build_federation(tmp_path, db_factory)
    try:
        yield federation
    finally:
        await federation.close()


async def scrape(http: aiohttp.ClientSession, node: Node) -> dict[tuple[str, tuple[
        tuple[str, str], ...]], float]:
    async with http.get(node.url + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_counters_move(fed: Federation, http: aiohttp.ClientSession) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    before = await scrape(http, taoyuan)
    case_id = new_case(DOUMEN)
    for _ in range(3):
        await doumen.send(TAOYUAN, case_id=case_id)
    await doumen.wait_delivered(3)
    async with http.post(taoyuan.url + "/federation/v1/messages", data=b"junk",
                         headers={"Content-Type": "application/jwt"}) as resp:
        assert resp.status == 400
    after = await scrape(http, taoyuan)
    accepted = ("tongban_messages_total", (("direction", "in"), ("result", "accepted"),
                                           ("type", "case.submit")))
    assert after[accepted] - before.get(accepted, 0) == 3
    refused = ("tongban_messages_total", (("direction", "in"), ("result", "malformed"),
                                          ("type", "unparsable")))
    assert after[refused] == 1
    sent = await scrape(http, doumen)
    assert sent[("tongban_messages_total", (("direction", "out"), ("result", "accepted"),
                                           ("type", "case.submit")))] == 3
    assert sent[("tongban_delivery_seconds_count", ())] == 3
    assert sent[("tongban_outbox_messages", (("state", "pending"),))] == 0
    assert sent[("tongban_registry_version", ())] >= 2
    assert sent[("tongban_registry_expires_in_seconds", ())] > 0


async def test_readyz(fed: Federation, http: aiohttp.ClientSession) -> None:
    async with http.get(fed[DOUMEN].url + "/readyz") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "ready"
    fed.clock.advance(8 * 86400)  # the registry expires: not ready
    async with http.get(fed[DOUMEN].url + "/readyz") as resp:
        assert resp.status == 503
        assert (await resp.json())["type"] == "urn:tongban:error:registry-stale"
