"""Engine set-up for the embedded default (SQLite, WAL) and production (PostgreSQL, asyncpg)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.db import sqlite_inline  # noqa: F401 - registers the sqlite+tongban_inline dialect
from trust.errors import ConfigError

SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("database.url: not a database URL") from None
    if parsed.drivername not in SUPPORTED_DRIVERS:
        raise ConfigError(f"database.url: driver {parsed.drivername!r} not supported; use one "
                          f"of {', '.join(SUPPORTED_DRIVERS)}")
    if parsed.drivername.startswith("sqlite"):
        # One connection per process: SQLite has one writer anyway, and queueing in the pool is
        # cheaper than SQLITE_BUSY retries. BEGIN IMMEDIATE keeps the CLI and the gateway (two
        # processes) from deadlocking on a read-to-write lock upgrade. Statements run inline on
        # the event loop (see sqlite_inline for why and what it costs).
        engine = create_async_engine(parsed.set(drivername="sqlite+tongban_inline"),
                                     pool_size=1, max_overflow=0)

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk (the WAL fsynced) before we answer, so a receipt we
            # signed survives a power cut too, as it does on PostgreSQL. NORMAL would keep it
            # only through a process crash; FULL costs one fsync per group commit (~0.25 ms on
            # the development machine's disk), not per message.
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size,
                               pool_pre_ping=True)


def database_unreachable(exc: BaseException) -> bool:
    """True when `exc` says the database could not be reached or had no room for us (server
    down or restarting, too many clients, pool exhausted), not that a statement was wrong: the
    request may succeed if tried again, so callers answer 503 rather than a 500 that reads as
    our bug. PostgreSQL's SQLSTATE classes 08 (connection), 53 (insufficient resources, e.g.
    53300 too many connections) and 57P (shutdown, cannot connect now) say so; asyncpg's errors
    reach us as a plain DBAPIError carrying the code."""
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout)):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        state = str(getattr(exc.orig, "sqlstate", None) or "")
        return state.startswith(("08", "53", "57P"))
    return isinstance(exc, (ConnectionError, TimeoutError))


async def create_schema(engine: AsyncEngine) -> None:
    """Bring the database to the code's schema (alembic migrations; `tongban db upgrade`)."""
    from gateway.db.migrate import upgrade

    await upgrade(engine)
