"""The schema comes from migrations, matches the code, and a gateway refuses a stale database."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fedkit import DOUMEN, TAOYUAN, DbFactory, build_federation, new_case
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import create_app
from gateway.db import migrate
from gateway.db.engine import make_engine
from gateway.db.repos import InboxRepo, OutboxRepo, OutboxState
from gateway.db.schema import inbox, metadata, outbox
from trust.errors import ConfigError


async def test_migrations_build_exactly_the_schema_of_the_code(db_factory: DbFactory) -> None:
    """Fails when a table or column changes in schema.py without a migration."""
    engine = make_engine(await db_factory("migrations"))
    try:
        before, after = await migrate.upgrade(engine)
        assert (before, after) == (None, migrate.head())
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata))
        assert diff == []
        assert await migrate.upgrade(engine) == (after, after)  # idempotent
    finally:
        await engine.dispose()


async def test_gateway_refuses_a_database_behind_or_ahead(tmp_path: Path,
                                                         db_factory: DbFactory) -> None:
    fed = await build_federation(tmp_path, db_factory, (DOUMEN,), start=False)
    config = fed[DOUMEN].config
    engine = make_engine(config.database.url)
    try:
        for expected in ("tongban db upgrade", "newer than this gateway"):
            runner = web.AppRunner(create_app(config, adapter_classes={}))
            with pytest.raises(ConfigError) as refused:
                await runner.setup()
            await runner.cleanup()
            assert expected in refused.value.detail
            if expected == "tongban db upgrade":
                await migrate.upgrade(engine)
                async with engine.begin() as conn:
                    await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        await engine.dispose()
        await fed.close()


async def _schema_diff(engine: AsyncEngine) -> list[object]:
    async with engine.connect() as conn:
        return list(await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)))


async def test_an_older_database_is_refused_then_upgraded_with_its_rows(
        tmp_path: Path, db_factory: DbFactory) -> None:
    """The database of an older tongban (schema 0001, a message sent and one received): the
    gateway refuses it and names the command; `tongban db upgrade` brings it to head with its
    rows (SQLite rebuilds the outbox table on the way), and then the gateway starts."""
    fed = await build_federation(tmp_path, db_factory, (DOUMEN,), start=False)
    node = fed[DOUMEN]
    config = node.config
    engine = make_engine(config.database.url)
    try:
        assert await migrate.upgrade(engine, to="0001") == (None, "0001")
        sent, got, case_id, now = str(uuid.uuid4()), str(uuid.uuid4()), new_case(DOUMEN), \
            time.time()
        async with engine.begin() as conn:  # only the columns 0001 has
            await conn.execute(insert(outbox).values(
                jti=sent, dest=TAOYUAN, type="case.submit", case_id=case_id, seq=1,
                payload='{"body":{}}', state=OutboxState.DELIVERED, token="t.o.k",
                token_exp=int(now) + 300, attempts=1, created_at=now, delivered_at=now,
                receipt="r.e.c", receipt_status="accepted"))
            await conn.execute(insert(inbox).values(
                jti=got, iss=TAOYUAN, type="case.accept", case_id=case_id, seq=1,
                digest="d" * 43, content_digest="c" * 43, token="i.n.t", received_at=now,
                receipt="r.e.c"))

        runner = web.AppRunner(create_app(config, adapter_classes={}))
        with pytest.raises(ConfigError) as refused:
            await runner.setup()
        await runner.cleanup()
        assert refused.value.detail == (
            f"database.url: the schema is at revision 0001, this gateway needs "
            f"{migrate.head()}; run `tongban db upgrade -c <config>`")
        assert await migrate.current(engine) == "0001"  # refusing changed nothing

        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli.main", "db", "upgrade",
            "-c", str(tmp_path / DOUMEN / "tongban.toml"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, out
        assert f"upgraded from 0001 to {migrate.head()}" in out.decode()
        assert await migrate.current(engine) == migrate.head()
        assert await _schema_diff(engine) == []

        [row] = await OutboxRepo(engine).list_entries()
        assert (row.jti, row.case_id, row.state, row.token, row.receipt_status,
                row.claimed_by) == (sent, case_id, OutboxState.DELIVERED, "t.o.k", "accepted",
                                    None)
        [received] = await InboxRepo().list_all(engine)
        assert (received.jti, received.iss, received.case_id, received.token) == \
            (got, TAOYUAN, case_id, "i.n.t")

        await fed.operator.start()  # Doumen fetches its registry from the operator
        await node.start()
        async with aiohttp.ClientSession() as http, \
                http.get(node.url + "/federation/v1/info") as resp:
            assert resp.status == 200
            assert (await resp.json())["member"] == DOUMEN
        assert node.app is not None
        assert [e.jti for e in await OutboxRepo(node.engine).list_entries()] == [sent]
    finally:
        await engine.dispose()
        await fed.close()
