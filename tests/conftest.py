"""Shared fixtures: fresh databases per gateway on SQLite and PostgreSQL, and loopback gateways.

Every test that asks for `db_factory` runs once per backend named by `--db` (default: both).
PostgreSQL databases get random names and are dropped afterwards, so runs never collide.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from browserkit import ensure_chromium

PG_ADMIN_URL = os.environ.get("TONGBAN_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ("sqlite", "postgresql")

DbFactory = Callable[[str], Awaitable[str]]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--db", default=",".join(BACKENDS),
                     help="comma-separated database backends to run on (sqlite,postgresql)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "backends(*names): run only on these database backends (a feature of one "
                   "backend, e.g. several processes on one PostgreSQL database)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_backend" in metafunc.fixturenames:
        chosen = [b.strip() for b in metafunc.config.getoption("--db").split(",") if b.strip()]
        unknown = set(chosen) - set(BACKENDS)
        if unknown:
            raise pytest.UsageError(f"--db: unknown backend(s) {', '.join(sorted(unknown))}")
        only = metafunc.definition.get_closest_marker("backends")
        if only is not None:
            chosen = [b for b in chosen if b in only.args]
        metafunc.parametrize("db_backend", chosen, scope="function")


@pytest.fixture
async def db_factory(db_backend: str, tmp_path: Path) -> AsyncIterator[DbFactory]:
    """Returns `make(name) -> SQLAlchemy URL` of a new, empty database."""
    created: list[str] = []

    async def make(name: str) -> str:
        if db_backend == "sqlite":
            return f"sqlite+aiosqlite:///{tmp_path / (name + '.db')}"
        db = f"tongban_test_{name.lower()}_{secrets.token_hex(6)}"
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(f'CREATE DATABASE "{db}"')
        finally:
            await conn.close()
        created.append(db)
        base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        return f"{base}/{db}"

    yield make
    if created:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            for db in created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """Tests that run the CLI in-process let it configure logging, which adds a handler bound
    to that test's captured stderr; left on the root logger it would write to a closed stream
    in a later test of the same worker. Put the root logger back as it was."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        # pytest's own capture handler of the teardown phase stays; it removes it itself
        if handler not in handlers and not type(handler).__module__.startswith("_pytest"):
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """One client session per test, as a portal or a clerk's browser would hold."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture(scope="session")
def chromium() -> str:
    """The browser tests' Chromium (installed with apt on first use)."""
    return ensure_chromium()
