"""Where a gateway process waits under load: sampled queue depths and timed pipeline stages.

Enabled by `TONGBAN_BENCH_TRACE=1` in a bench process (bench/sender.py, bench/receiver.py).
Every second while there is traffic it logs one line `trace {...}` with, over that second:

- `flight`/`buffer`: mean messages in flight / buffered per destination queue (sampled every
  10 ms), `commit_q`: mean operations waiting for the group committer;
- `batches`, `batch`: group-commit transactions and their mean size, `commit_ms`: their mean
  duration (the event loop is blocked for most of it on the inline SQLite driver);
- `attempt_ms`: a delivery attempt (sign if needed, POST, receiver's work, verify receipt, wait
  for the delivered mark's commit), `sign_ms`: of that, signing and waiting for the commit of
  the signed copy, `deliver_ms`: the attempt and, on failure, recording it;
- `refill_ms`, `n_refill`: claims of outbox rows (a whole-queue rescan reads up to
  `concurrency` x 16 rows);
- `busy_wait_ms`, `n_busy`: statements that met SQLITE_BUSY and waited in `_while_busy`;
- `receive_ms`: an inbound message from parse to receipt, `store_wait_ms`: of that, waiting
  for its group commit;
- `lag_ms`: mean and max lateness of a 10 ms timer: how long the loop was busy without yielding;
- `cpu`: cores this process used.

It patches methods of the running process, so it measures the production code as it is, plus
the cost of the timing itself (a few µs per stage).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from gateway import appkeys as K
from gateway.db import sqlite_inline
from gateway.db.batching import GroupCommitter
from gateway.federation import outbox as outbox_module
from gateway.federation.inbox import Inbox

log = logging.getLogger("bench.trace")
T = TypeVar("T")

ENABLED = os.environ.get("TONGBAN_BENCH_TRACE") == "1"


class Stats:
    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self.maxes: dict[str, float] = defaultdict(float)

    def add(self, name: str, value: float) -> None:
        self.sums[name] += value
        self.counts[name] += 1
        self.maxes[name] = max(self.maxes[name], value)

    def mean(self, name: str) -> float:
        return self.sums[name] / self.counts[name] if self.counts[name] else 0.0


STATS = Stats()


def _timed(name: str, method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            STATS.add(name, 1000 * (time.perf_counter() - started))
    return wrapper


def patch() -> None:
    """Time the stages (class-level, so every instance in the process is covered)."""
    commit = GroupCommitter._commit

    async def timed_commit(self: GroupCommitter, batch: list[Any]) -> None:
        STATS.add("batch", len(batch))
        started = time.perf_counter()
        try:
            await commit(self, batch)
        finally:
            STATS.add("commit_ms", 1000 * (time.perf_counter() - started))

    GroupCommitter._commit = timed_commit  # type: ignore[method-assign]
    run = GroupCommitter.run

    async def timed_run(self: GroupCommitter, operation: Any) -> Any:
        started = time.perf_counter()
        try:
            return await run(self, operation)
        finally:
            STATS.add("committer_run_ms", 1000 * (time.perf_counter() - started))

    GroupCommitter.run = timed_run  # type: ignore[method-assign]
    queue = outbox_module.PeerQueue
    queue._attempt = _timed("attempt_ms", queue._attempt)  # type: ignore[method-assign,assignment]
    queue._deliver = _timed("deliver_ms", queue._deliver)  # type: ignore[method-assign,assignment]
    queue._refill = _timed("refill_ms", queue._refill)  # type: ignore[method-assign,assignment]
    queue._sign = _timed("sign_ms", queue._sign)  # type: ignore[method-assign,assignment]
    busy = sqlite_inline._while_busy

    async def counted_busy(call: Callable[[], object]) -> None:
        tries = 0

        def once() -> object:
            nonlocal tries
            tries += 1
            return call()

        started = time.perf_counter()
        await busy(once)
        if tries > 1:  # SQLITE_BUSY: the loop slept waiting for another connection's lock
            STATS.add("busy_wait_ms", 1000 * (time.perf_counter() - started))

    sqlite_inline._while_busy = counted_busy
    Inbox.receive = _timed("receive_ms", Inbox.receive)  # type: ignore[method-assign,assignment]


async def _sample(app: web.Application) -> None:
    cpu0, wall0 = _cpu(), time.monotonic()
    depth: dict[str, list[float]] = defaultdict(list)
    while True:
        expected = time.perf_counter() + 0.01
        await asyncio.sleep(0.01)
        STATS.add("lag_ms", max(0.0, 1000 * (time.perf_counter() - expected)))
        dispatcher = app.get(K.DISPATCHER)
        if dispatcher is not None:
            for queue in dispatcher._queues.values():
                depth["flight"].append(len(queue._in_flight))
                depth["buffer"].append(len(queue._buffer))
        committer = app.get(K.COMMITTER)
        if committer is not None:
            depth["commit_q"].append(len(committer._queue))
        now = time.monotonic()
        if now - wall0 < 1.0:
            continue
        cpu = _cpu()
        if STATS.counts.get("commit_ms") or STATS.counts.get("attempt_ms"):
            line: dict[str, Any] = {k: round(sum(v) / len(v), 1) for k, v in depth.items() if v}
            line["batches"] = STATS.counts.get("commit_ms", 0)
            for name in ("batch", "commit_ms", "committer_run_ms", "attempt_ms", "deliver_ms",
                         "sign_ms", "refill_ms", "receive_ms", "lag_ms", "busy_wait_ms"):
                if STATS.counts.get(name):
                    line[name] = round(STATS.mean(name), 1)
            line["n_attempt"] = STATS.counts.get("attempt_ms", 0)
            line["n_receive"] = STATS.counts.get("receive_ms", 0)
            line["n_refill"] = STATS.counts.get("refill_ms", 0)
            line["n_busy"] = STATS.counts.get("busy_wait_ms", 0)
            line["lag_max_ms"] = round(STATS.maxes.get("lag_ms", 0.0), 1)
            line["cpu"] = round((cpu - cpu0) / (now - wall0), 2)
            log.info("trace %s", json.dumps(line))
        STATS.__init__()  # type: ignore[misc]
        depth.clear()
        cpu0, wall0 = cpu, now


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def start(app: web.Application) -> asyncio.Task[None]:
    return asyncio.create_task(_sample(app), name="bench-trace")


def attach(app: web.Application) -> None:
    """Start sampling once `app` has started (its cleanup contexts have run)."""
    tasks: list[asyncio.Task[None]] = []

    async def on_startup(app: web.Application) -> None:
        tasks.append(start(app))

    app.on_startup.append(on_startup)
