"""The inline SQLite driver: real SQL through sqlite3, lock waits that never freeze the loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text

from gateway.db.engine import make_engine


async def test_statements_round_trip(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (:k, :v)"),
                               [{"k": "a", "v": 1}, {"k": "b'; DROP TABLE t; --", "v": 2}])
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT k, v FROM t ORDER BY v"))).all()
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
        assert [tuple(r) for r in rows] == [("a", 1), ("b'; DROP TABLE t; --", 2)]
        assert mode == "wal"
    finally:
        await engine.dispose()


async def test_waiting_for_the_write_lock_does_not_block_the_loop(tmp_path: Path) -> None:
    """Two engines of one process on one file (a gateway and an admin tool in tests)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'b.db'}"
    first, second = make_engine(url), make_engine(url)
    try:
        async with first.begin() as conn:
            await conn.execute(text("CREATE TABLE t (v INTEGER)"))
        holding = asyncio.Event()
        release = asyncio.Event()

        async def hold_lock() -> None:
            async with first.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES (1)"))
                holding.set()
                await release.wait()

        async def write_after() -> None:
            async with second.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES (2)"))

        holder = asyncio.create_task(hold_lock())
        await holding.wait()
        waiter = asyncio.create_task(write_after())
        await asyncio.sleep(0)  # the waiter now spins on SQLITE_BUSY, asynchronously
        assert not waiter.done()
        release.set()  # only possible because the loop is still running
        await asyncio.wait_for(asyncio.gather(holder, waiter), timeout=10)
        async with second.connect() as conn:
            values = (await conn.execute(text("SELECT v FROM t ORDER BY rowid"))).scalars().all()
        assert values == [1, 2]
    finally:
        await first.dispose()
        await second.dispose()
