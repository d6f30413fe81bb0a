"""Schema migrations (alembic): `tongban db upgrade`, and the check that stops a gateway whose
database is behind its code.

A gateway never changes its schema by itself when it starts: with several processes on one
database, or a database shared with an older version during a rolling upgrade, a silent change
at start-up is how data gets lost. The admin runs `tongban db upgrade`; a gateway that finds the
schema older (or newer) than its code refuses to start and says so.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from trust.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head() -> str:
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None
    return revision


async def current(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision())


async def upgrade(engine: AsyncEngine, to: str = "head") -> tuple[str | None, str]:
    """Bring the schema to the code's head (or to revision `to`, e.g. to build the database
    of an older version in a test); returns (before, after)."""
    before = await current(engine)
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync: command.upgrade(_config(sync), to))
    return before, head() if to == "head" else to


async def require_current(engine: AsyncEngine) -> None:
    have, need = await current(engine), head()
    if have == need:
        return
    if have is None:
        raise ConfigError("database.url: the database has no tongban schema yet; run "
                          "`tongban db upgrade -c <config>` first")
    if have not in {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}:
        raise ConfigError(f"database.url: the schema is at revision {have}, newer than this "
                          f"gateway ({need}); upgrade the gateway")
    raise ConfigError(f"database.url: the schema is at revision {have}, this gateway needs "
                      f"{need}; run `tongban db upgrade -c <config>`")
