"""Group commit: many small writes share one transaction.

Every inbound message and every delivery outcome is a small write, and on SQLite (one writer)
or PostgreSQL (one fsync per commit) the commit, not the write, is what costs. Callers hand an
operation to the `GroupCommitter` and await its result as if it ran alone: it is committed
before the await returns. Operations that arrive while a transaction is in progress wait for the
next one, so batches form by themselves under load and a lone write is not delayed.

The audit records the operations append are written once per transaction, just before the
commit (`AuditRepo.defer`/`flush`). If any operation of a batch raises, or that write does, the
batch is rolled back and each operation is run again in a transaction of its own, so one bad
message never takes others down with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.db.audit_repo import AuditRepo

log = logging.getLogger(__name__)

T = TypeVar("T")
Operation = Callable[[AsyncConnection], Awaitable[Any]]


class _BatchFailed(Exception):
    pass


class GroupCommitter:
    def __init__(self, engine: AsyncEngine, *, max_batch: int = 64) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: list[tuple[Operation, asyncio.Future[Any]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def run(self, operation: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run `operation` in a committed transaction (possibly shared) and return its result."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((operation, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain(), name="group-commit")
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            live = [(op, fut) for op, fut in batch if not fut.cancelled()]
            if live:
                await self._commit(live)

    async def _commit(self, batch: list[tuple[Operation, asyncio.Future[Any]]]) -> None:
        if len(batch) == 1:
            await self._alone(*batch[0])
            return
        results: list[Any] = []
        try:
            async with self._engine.begin() as conn:
                AuditRepo.defer(conn)
                for operation, _ in batch:
                    try:
                        results.append(await operation(conn))
                    except Exception as exc:
                        raise _BatchFailed from exc
                try:
                    await AuditRepo.flush(conn)
                except Exception as exc:  # one record of the batch may be at fault
                    raise _BatchFailed from exc
        except _BatchFailed:
            for operation, future in batch:
                await self._alone(operation, future)
            return
        except Exception as exc:  # the commit itself failed: nobody's write is durable
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _alone(self, operation: Operation, future: asyncio.Future[Any]) -> None:
        try:
            async with self._engine.begin() as conn:
                AuditRepo.defer(conn)
                result = await operation(conn)
                await AuditRepo.flush(conn)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(result)

    async def close(self) -> None:
        """Finish what is queued (callers are awaiting it), then stop."""
        if self._worker is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker


class WriteCoalescer(Generic[T]):
    """Rows of one kind, from many callers, written by one executemany in one transaction.

    `add` returns once the row is committed. Rows added while a write is in progress go into
    the next one, so under load each statement carries many rows; alone, a row is written at
    once.
    """

    def __init__(self, committer: GroupCommitter,
                 write: Callable[[AsyncConnection, list[T]], Awaitable[None]]) -> None:
        self._committer = committer
        self._write = write
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def add(self, row: T) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._flush(), name="write-coalescer")
        await future

    async def _write_rows(self, rows: list[T], conn: AsyncConnection) -> None:
        await self._write(conn, rows)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            rows = [row for row, _ in batch]
            try:
                await self._committer.run(functools.partial(self._write_rows, rows))
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
