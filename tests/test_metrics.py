"""Prometheus `/metrics` (parsed with the client library's own parser) and `/readyz`: every
series an operator alerts on must move when what it measures moves."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import asyncpg
import pytest
from casekit import ONLINE_ITEM, Api, applicant, case_federation, materials
from conftest import PG_ADMIN_URL
from fedkit import (
    DOUMEN,
    TAOYUAN,
    DbFactory,
    Federation,
    Node,
    build_federation,
    new_case,
    wait_for,
)
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from adapters.base import AdapterError, LocalCase, LocalEvent, RegionAdapter


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
    # The registry's age follows the clock (the gateway's, advanced here by an hour) until a
    # new version comes.
    age = sent[("tongban_registry_age_seconds", ())]
    assert 0 <= age < 600
    fed.clock.advance(3600)
    later = await scrape(http, doumen)
    assert 3600 <= later[("tongban_registry_age_seconds", ())] - age < 3600 + 600
    assert later[("tongban_registry_expires_in_seconds", ())] <= \
        sent[("tongban_registry_expires_in_seconds", ())] - 3600


async def test_readyz(fed: Federation, http: aiohttp.ClientSession) -> None:
    async with http.get(fed[DOUMEN].url + "/readyz") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "ready"
    fed.clock.advance(8 * 86400)  # the registry expires: not ready
    async with http.get(fed[DOUMEN].url + "/readyz") as resp:
        assert resp.status == 503
        assert (await resp.json())["type"] == "urn:tongban:error:registry-stale"


class DownLocalSystem(RegionAdapter):
    """A local case system that never answers: every call fails as a refused connection."""

    name: ClassVar[str] = "down"

    @classmethod
    def check_config(cls, config: Mapping[str, Any], *, base: Path) -> None:
        return None

    async def submit(self, case: LocalCase) -> str:
        raise AdapterError("connection refused", transient=True)

    async def supplement(self, ref: str, case_id: str,
                         materials: Sequence[Mapping[str, Any]]) -> None:
        raise AdapterError("connection refused", transient=True)

    async def withdraw(self, ref: str, case_id: str, reason: str) -> None:
        raise AdapterError("connection refused", transient=True)

    async def poll(self, cursor: str | None) -> tuple[list[LocalEvent], str | None]:
        return [], cursor  # polling is not a call the counter is about


async def test_adapter_errors_are_counted(tmp_path: Path, db_factory: DbFactory,
                                          http: aiohttp.ClientSession) -> None:
    """A case handed to a local case system that is down shows in
    `tongban_adapter_errors_total{kind="submit", transient="True"}`."""
    settings = {"name": "down", "poll_interval": 0.05, "initial_backoff": 0.05,
                "max_backoff": 0.2, "breaker_failures": 100}
    fed = await case_federation(tmp_path, db_factory, (DOUMEN, TAOYUAN),
                                adapters={DOUMEN: ({"down": DownLocalSystem}, settings)})
    try:
        doumen = fed[DOUMEN]
        key = ("tongban_adapter_errors_total", (("kind", "submit"), ("transient", "True")))
        assert (await scrape(http, doumen)).get(key, 0) == 0
        portal = Api(http, fed[TAOYUAN]).as_portal()
        await portal.call("POST", "/api/v1/cases", {
            "item": ONLINE_ITEM, "handler": DOUMEN, "applicant": applicant("430725"),
            "loa": "L4", "materials": materials(ONLINE_ITEM)}, expect=201)

        async def counted() -> bool:
            return (await scrape(http, doumen)).get(key, 0) >= 2  # the call and a retry

        await wait_for(counted, what="failed local calls in tongban_adapter_errors_total")
    finally:
        await fed.close()


@contextlib.asynccontextmanager
async def database_down(node: Node) -> AsyncIterator[None]:
    """Take the gateway's own database away for real, then give it back.

    PostgreSQL: the database stops accepting connections and the gateway's are terminated (what
    a failover or an administrator's lock-out looks like). SQLite: the file is moved aside and a
    folder takes its name, so no connection can open it; the pool is emptied, as after a crash
    of the file system underneath.
    """
    url = make_url(node.config.database.url)
    name = url.database or ""
    if url.get_backend_name() == "postgresql":
        admin = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE datname = $1", name)
            try:
                yield
            finally:
                await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        finally:
            await admin.close()
        return
    path = Path(name)
    moved = _move_aside(path)
    await node.engine.dispose()
    try:
        yield
    finally:
        _move_back(path, moved)
        await node.engine.dispose()


def _move_aside(path: Path) -> list[tuple[Path, Path]]:
    """The SQLite file and its WAL files renamed away, a folder in the file's place."""
    moved = [(p, p.with_name(p.name + ".away")) for p in
             (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))
             if p.exists()]
    for src, dst in moved:
        src.rename(dst)
    path.mkdir()
    return moved


def _move_back(path: Path, moved: list[tuple[Path, Path]]) -> None:
    path.rmdir()
    for src, dst in moved:
        dst.rename(src)


async def test_readyz_needs_a_database_that_answers(
        fed: Federation, http: aiohttp.ClientSession) -> None:
    doumen = fed[DOUMEN]

    async def ready() -> bool:
        async with http.get(doumen.url + "/readyz") as resp:
            return resp.status == 200

    assert await ready()
    async with database_down(doumen):
        async with http.get(doumen.url + "/readyz") as resp:
            assert resp.status == 503
            assert resp.content_type == "application/problem+json"
            body = await resp.json(content_type=None)
            assert body["type"] == "urn:tongban:error:unavailable"
            assert body["status"] == 503 and str(body["instance"]).startswith("urn:uuid:")
        async with http.get(doumen.url + "/healthz") as resp:  # the process still runs
            assert resp.status == 200
            assert (await resp.json())["status"] == "ok"
    await wait_for(ready, what="/readyz to answer 200 once the database is back")
