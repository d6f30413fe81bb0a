"""A database that cannot take us (down, or out of connections) is a 503 with Retry-After that
a portal or a peer retries, not a 500 that reads as a bug in the gateway."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from conftest import PG_ADMIN_URL
from fedkit import reserve_port
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.db.engine import database_unreachable, make_engine
from gateway.http.problems import problem_middleware

ROUTE = "/probe"


async def _serve(engine: AsyncEngine) -> AsyncIterator[str]:
    async def probe(_request: web.Request) -> web.Response:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[problem_middleware])
    app.router.add_get(ROUTE, probe)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = reserve_port()
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}{ROUTE}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def limited_role() -> AsyncIterator[str]:
    """A login role of its own, so its connection limit can be taken to 0 as a full server
    would refuse it, without touching anything else on the shared server."""
    role = f"tongban_limited_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 5')
        yield role
        await admin.execute(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
    finally:
        await admin.close()


async def _status(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, object], str]:
    async with http.get(url) as resp:
        return resp.status, await resp.json(content_type=None), resp.headers.get(
            "Retry-After", "")


async def test_out_of_connections_is_503_and_recovers(
        limited_role: str, http: aiohttp.ClientSession) -> None:
    host = PG_ADMIN_URL.split("@", 1)[1].rsplit("/", 1)[0]
    engine = make_engine(f"postgresql+asyncpg://{limited_role}@{host}/test", pool_size=1)
    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        async for url in _serve(engine):
            status, body, _ = await _status(http, url)
            assert (status, body) == (200, {"ok": True})
            # The server is full for this role: the pooled connection is gone and a new one is
            # refused with SQLSTATE 53300.
            await admin.execute(f'ALTER ROLE "{limited_role}" CONNECTION LIMIT 0')
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                f"WHERE usename = '{limited_role}'")
            await engine.dispose()
            status, body, retry_after = await _status(http, url)
            assert status == 503
            assert body["type"] == "urn:tongban:error:unavailable"
            assert body["status"] == 503 and str(body["instance"]).startswith("urn:uuid:")
            assert retry_after == "1"
            await admin.execute(f'ALTER ROLE "{limited_role}" CONNECTION LIMIT 5')
            status, body, _ = await _status(http, url)
            assert (status, body) == (200, {"ok": True})
    finally:
        await admin.close()
        await engine.dispose()


async def test_server_not_listening_is_unreachable() -> None:
    sock = reserve_port()  # held, never listening: connecting is refused
    engine = make_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{sock.getsockname()[1]}/x")
    try:
        with pytest.raises(Exception) as caught:  # noqa: PT011 - any error; the check is below
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        assert database_unreachable(caught.value)
    finally:
        sock.close()
        await engine.dispose()


def test_a_wrong_statement_is_not_unreachability() -> None:
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    assert not database_unreachable(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not database_unreachable(ProgrammingError("SELECT", {}, Exception("syntax")))
    assert not database_unreachable(ValueError("not a database error"))
