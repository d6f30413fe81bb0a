"""SQLite for the async engine without a thread hop per call.

SQLAlchemy's asyncio SQLite dialect drives `aiosqlite`, which runs every call on a helper
thread; SQLAlchemy's adapter makes four or five such calls per statement, so a statement that
takes about 17 µs in `sqlite3` costs about 470 µs (measured on the 2-core development machine,
see bench/). For the embedded, single-process default this overhead bounded the whole gateway.

This module gives the same dialect a stand-in for `aiosqlite` whose coroutines call `sqlite3`
directly and complete without suspending: SQL still goes through `sqlite3` with bound
parameters, SQLAlchemy still builds every statement; only the thread is gone. The price is that
a statement blocks the event loop while it runs, which is microseconds in WAL mode. Waiting for
another connection's write lock does not block: SQLite's busy timeout is 0 and the wait is an
asyncio sleep (`_while_busy`). Deployments with several processes use PostgreSQL.

It relies on the shape SQLAlchemy's aiosqlite dialect expects of the `aiosqlite` module
(checked by the test suite, which runs on this driver); SQLAlchemy is pinned below 2.2.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import types
from collections.abc import Callable, Generator, Iterable
from typing import Any

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi, SQLiteDialect_aiosqlite

BUSY_TIMEOUT_SECONDS = 30.0


async def _while_busy(call: Callable[[], object]) -> None:
    """Run `call`; while another connection holds the write lock, wait without blocking.

    SQLite's own busy handler would sleep inside the call, freezing the event loop, and with it
    the connection that holds the lock if that one lives in the same process: so the busy
    timeout is 0 and the waiting happens here, on the loop.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    pause = 0.001
    while True:
        try:
            call()
            return
        except sqlite3.OperationalError as exc:
            message = str(exc)
            if ("locked" not in message and "busy" not in message) or \
                    time.monotonic() > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)


class _ImmediateQueue:
    """Stands in for aiosqlite's request queue: runs the request at once."""

    def put_nowait(self, item: tuple[Any, Any]) -> None:
        future, function = item
        try:
            result = function()
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)


class InlineCursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        await _while_busy(lambda: self._cursor.execute(sql, parameters))
        return self

    async def executemany(self, sql: str, seq: Iterable[Any]) -> InlineCursor:
        rows = list(seq)
        await _while_busy(lambda: self._cursor.executemany(sql, rows))
        return self

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def close(self) -> None:
        self._cursor.close()


class InlineConnection:
    """Awaitable like `aiosqlite.connect(...)`; opens the `sqlite3` connection when awaited."""

    def __init__(self, database: str, **kwargs: Any) -> None:
        self._database = database
        self._kwargs = kwargs
        self._conn: sqlite3.Connection | None = None
        self._tx = _ImmediateQueue()
        self._thread = types.SimpleNamespace(daemon=True)  # SQLAlchemy marks it daemon

    def __await__(self) -> Generator[Any, None, InlineConnection]:
        return self._open().__await__()

    async def _open(self) -> InlineConnection:
        kwargs = dict(self._kwargs)
        kwargs["timeout"] = 0  # never sleep inside sqlite3; see _while_busy
        kwargs["check_same_thread"] = False  # pool clean-up may run on another thread
        self._conn = sqlite3.connect(self._database, **kwargs)
        return self

    @property
    def _connection(self) -> sqlite3.Connection | None:
        return self._conn

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ValueError("no active connection")
        return self._conn

    @property
    def isolation_level(self) -> str | None:
        return self._require().isolation_level

    def cursor(self) -> InlineCursor:
        # Like aiosqlite: not a coroutine, but an async context manager the adapter enters.
        return InlineCursor(self._require().cursor())

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        cursor = InlineCursor(self._require().cursor())
        await cursor.execute(sql, parameters)
        return cursor

    async def commit(self) -> None:
        # The commit is where SQLite writes the WAL to disk (synchronous=FULL: an fsync). It
        # runs on a worker thread, which releases the GIL while it waits for the disk, so the
        # loop goes on receiving, verifying and signing. Nobody else can use the connection
        # meanwhile: the pool holds this one connection and the transaction keeps it checked
        # out until the commit returns.
        await asyncio.to_thread(self._require().commit)

    async def rollback(self) -> None:
        self._require().rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._require().create_function(*args, **kwargs)

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _driver_module() -> types.ModuleType:
    module = types.ModuleType("tongban_inline_sqlite")
    module.__dict__.update(
        connect=InlineConnection, Connection=InlineConnection, __version__="1.0",
        DatabaseError=sqlite3.DatabaseError, Error=sqlite3.Error,
        IntegrityError=sqlite3.IntegrityError, NotSupportedError=sqlite3.NotSupportedError,
        OperationalError=sqlite3.OperationalError, ProgrammingError=sqlite3.ProgrammingError,
        sqlite_version=sqlite3.sqlite_version, sqlite_version_info=sqlite3.sqlite_version_info,
    )
    return module


class InlineSQLiteDialect(SQLiteDialect_aiosqlite):
    driver = "tongban_inline"
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> AsyncAdapt_aiosqlite_dbapi:
        return AsyncAdapt_aiosqlite_dbapi(_driver_module(), sqlite3)


registry.register("sqlite.tongban_inline", __name__, "InlineSQLiteDialect")
