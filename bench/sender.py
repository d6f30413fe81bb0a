"""The sending gateway of the benchmark: a real gateway process that also generates load.

It runs the production app (`create_app`) and queues messages the way domain code does (one
transaction per batch, then a wake-up of the destination queue), so what is measured is the
whole path: queue, sign, POST, verify, store, receipt, verify receipt, mark delivered.
Prints one JSON line with its measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway import appkeys as K
from gateway.app import create_app
from gateway.config import load_config
from gateway.db.repos import OutboxState
from gateway.federation.outbox import enqueue


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    config = load_config(args.config)
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.server.host, config.server.port).start()
    try:
        holder, repo = app[K.HOLDER], app[K.OUTBOX_REPO]
        engine, dispatcher = app[K.ENGINE], app[K.DISPATCHER]
        deadline = time.monotonic() + 30
        while holder.current is None or holder.current.member(args.to) is None:
            if time.monotonic() > deadline:
                raise SystemExit("registry without the destination")
            await asyncio.sleep(0.05)
        body = {"data": "x" * args.body_size}

        async def queue(count: int) -> int:
            first = 0
            async with engine.begin() as conn:
                for i in range(count):
                    entry = await enqueue(conn, repo, dest=args.to, type_="case.status",
                                          case_id=f"{config.member_id}:{uuid.uuid4()}",
                                          body=body, now=time.time())
                    if i == 0:
                        first = entry.id
            dispatcher.notify(args.to)
            return first

        async def wait_delivered(first_id: int, count: int, limit: float) -> None:
            end = time.monotonic() + limit
            while await repo.count_from(args.to, first_id, OutboxState.DELIVERED) < count:
                if time.monotonic() > end:
                    raise SystemExit(f"only part of {count} delivered within {limit} s")
                await asyncio.sleep(0.05)

        warm = await queue(200)
        await wait_delivered(warm, 200, 60)
        result: dict[str, Any] = {}
        if args.mode == "peak":
            started = time.monotonic()
            first = 0
            for n in range(0, args.count, args.batch):
                first_of_batch = await queue(min(args.batch, args.count - n))
                first = first or first_of_batch
            await wait_delivered(first, args.count, 300)
            elapsed = time.monotonic() - started
            result = {"messages": args.count, "seconds": elapsed,
                      "per_second": args.count / elapsed}
        else:
            tick = 0.01
            per_tick = args.rate * tick
            started = time.monotonic()
            owed, sent, first = 0.0, 0, 0
            while time.monotonic() - started < args.duration:
                owed += per_tick
                batch = int(owed)
                if batch:
                    owed -= batch
                    first_of_batch = await queue(batch)
                    first = first or first_of_batch
                    sent += batch
                next_tick = started + (sent / args.rate)
                await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
            offered = sent / (time.monotonic() - started)
            await wait_delivered(first, sent, 120)
            times = sorted(d - q for q, d in await repo.delivery_times(first))
            result = {"messages": sent, "offered_per_second": offered,
                      "p50_ms": 1000 * times[len(times) // 2],
                      "p95_ms": 1000 * times[int(len(times) * 0.95)],
                      "p99_ms": 1000 * times[int(len(times) * 0.99)]}
        result["sender_peak_rss_mib"] = peak_rss_mib()
        return result
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--to", required=True)
    parser.add_argument("--mode", choices=["peak", "rate"], default="peak")
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--body-size", type=int, default=2048)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
