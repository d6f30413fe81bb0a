"""The schema comes from migrations, matches the code, and a gateway refuses a stale database."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fedkit import DOUMEN, DbFactory, build_federation
from sqlalchemy import text

from gateway.app import create_app
from gateway.db import migrate
from gateway.db.engine import make_engine
from gateway.db.schema import metadata
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
