"""The sending gateway of the benchmark: a real gateway process that also generates the load.

It runs the production app (`create_app`, logging as `tongban serve` does) and creates cases the
way `CaseService.submit` does for an online application from a portal: the application is
checked and routed once (`plan`: catalog, LOA, materials, the handler offers the item in this
mode), then every case is inserted and its `case.submit` queued by `send_submit` in the same
transaction, and the destination is woken after the commit. The only step of `submit` left
out is the scrypt hash of the applicant's query password (portal-API cost, not federation
cost; `--password-cost` measures it on its own).

What is measured is the whole path in both directions:

- `case.submit`: create case, queue, sign, POST, verify, check the application against the
  case machine, store case and inbox row, answer with a signed receipt, verify the receipt,
  mark delivered;
- the handler's automatic `case.status handler_received` (queued in the same transaction that
  stored the submission): sign, POST back, verify, apply to our copy of the case, store,
  receipt, verify.

A case is *complete* when our copy reached `handler_received`, i.e. both messages were
delivered, stored and applied. Prints one JSON line with its measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench import trace
from bench.sqlcount import StatementCounter
from bench.workload import ITEM, MODE, PORTAL, TRANSPORT_TYPE, application, transport_body
from gateway import appkeys as K
from gateway.app import create_app
from gateway.cases.applications import parse_application
from gateway.cases.model import Case
from gateway.cases.service import Actor, CaseService, Tx
from gateway.cases.states import CaseState
from gateway.config import load_config
from gateway.db.repos import OutboxState
from gateway.db.schema import cases, inbox, outbox
from gateway.federation.outbox import enqueue
from gateway.http.problems import RequestIdFilter
from trust import credentials


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of another process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def machine_busy() -> float:
    """CPU seconds all cores spent busy since boot (everything but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICK


def run_queue_wait(pid: int) -> float:
    """Seconds the main thread of `pid` was ready to run but waited for a core (schedstat)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def cpu_snapshot(pids: list[int]) -> list[float]:
    me = os.getpid()
    return [cpu_seconds(), machine_busy(), *(process_cpu(p) for p in pids),
            run_queue_wait(me), *(run_queue_wait(p) for p in pids)]


def cpu_cores(before: list[float], after: list[float], wall: float) -> dict[str, Any]:
    """Over `wall` seconds, on average: cores busy (this process, each watched one, the whole
    machine) and how much of the time each of our processes was runnable but waiting for a core
    (other load on the machine; 0 on an idle one)."""
    used = [(b - a) / wall for a, b in zip(before, after, strict=True)]
    n = (len(used) - 2) // 2
    return {"sender": used[0], "machine": used[1], "receivers": used[2:2 + n],
            "sender_waiting": used[2 + n], "receivers_waiting": used[3 + n:]}


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "n": 0}

    def pick(q: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * q))]

    return {"p50_ms": pick(0.50), "p95_ms": pick(0.95), "p99_ms": pick(0.99),
            "n": len(ordered)}


def password_cost(seconds: float = 2.0) -> float:
    """Milliseconds per query-password hash, as `CaseService.submit` makes one per case."""
    n, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        credentials.hash_password(credentials.new_query_password(), n=2**14)
        n += 1
    return 1000 * (time.monotonic() - started) / n


def setup_logging() -> None:
    """The handler and level of `tongban serve` (gateway/cli/main.py), output to stderr."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    setup_logging()
    config = load_config(args.config)
    if trace.ENABLED:
        trace.patch()
    app = create_app(config)
    if trace.ENABLED:
        trace.attach(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.server.host, config.server.port).start()
    try:
        return await drive(app, args)
    finally:
        await runner.cleanup()


async def drive(app: web.Application, args: argparse.Namespace) -> dict[str, Any]:
    service, holder, engine = app[K.CASES], app[K.HOLDER], app[K.ENGINE]
    statements = StatementCounter()
    statements.attach(engine)
    statements.time_execute()
    repo, dest = app[K.OUTBOX_REPO], args.to
    deadline = time.monotonic() + 30
    while True:  # the destination must be in our registry, offering the item
        member = holder.current.member(dest) if holder.current else None
        if member is not None and any(i.code == args.item for i in member.items):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"registry without {dest} offering {args.item}")
        await asyncio.sleep(0.05)
    body = application(dest, args.body_size, args.item)
    app_ = parse_application(body, today=service.today())
    route = service.plan(app_, intake=False)[0]  # what `submit` checks: item, LOA, materials, route
    if route.handler != dest:
        raise SystemExit(f"routed to {route.handler}, not {dest}")
    actor = Actor(kind="portal", subject=PORTAL)

    async def queue(count: int) -> None:
        """`count` new cases and their `case.submit` in one transaction, like `submit`."""
        async def op(tx: Tx) -> None:
            for _ in range(count):
                case_ = service._new_case(app=app_, actor=actor, kind="single",
                                          item=route.item.code, handler=route.handler,
                                          query_hash=None)
                service.stage_new(tx, case_)
                await service.send_submit(tx, case_, actor.label)

        await service._write(op)

    async def queue_transport(count: int) -> None:
        """`count` bench.transport messages, each of a new case id, in one transaction."""
        async with engine.begin() as conn:
            for _ in range(count):
                await enqueue(conn, repo, dest=dest, type_=TRANSPORT_TYPE,
                              case_id=f"{service.me}:{uuid.uuid4()}",
                              body=transport_body(submit_bytes), now=time.time())
        app[K.DISPATCHER].notify(dest)

    async def scalar(query: Any) -> Any:
        async with engine.connect() as conn:
            return (await conn.execute(query)).scalar()

    async def mark() -> tuple[int, int]:
        """(first outbox id of what comes next, cases complete so far)."""
        last = await scalar(select(func.max(outbox.c.id)))
        return int(last or 0) + 1, await complete_cases()

    async def complete_cases() -> int:
        if args.transport_only:  # nothing comes back: a message is complete once delivered
            return await repo.count_from(dest, 1, OutboxState.DELIVERED)
        return int(await scalar(select(func.count()).select_from(cases).where(
            cases.c.state == CaseState.HANDLER_RECEIVED.value)))

    async def wait(first_id: int, done_before: int, count: int,
                   limit: float) -> tuple[float, float]:
        """Wait until `count` submits are delivered and `count` cases complete; their times."""
        end = time.monotonic() + limit
        submitted_at = 0.0
        while True:
            now = time.monotonic()
            if not submitted_at:
                if await repo.count_from(dest, first_id, OutboxState.DELIVERED) >= count:
                    submitted_at = now
                elif dead := await repo.count_from(dest, first_id, OutboxState.DEAD):
                    raise SystemExit(f"{dead} case.submit parked as dead letters; see the log")
            if submitted_at and await complete_cases() - done_before >= count:
                return submitted_at, now
            if now > end:
                raise SystemExit(f"only part of {count} cases complete within {limit} s")
            await asyncio.sleep(0.1)  # two COUNT queries per poll: bench load, kept small

    result: dict[str, Any] = {}
    first, before = await mark()
    await queue(args.warmup)
    await wait(first, before, args.warmup, 60)
    token_bytes = await scalar(select(func.avg(func.length(outbox.c.token))).where(
        and_(outbox.c.id >= first, outbox.c.type == "case.submit")))
    result["token_bytes"] = round(float(token_bytes))
    submit_bytes = len(json.dumps(service.submit_body(
        await _one_case(service, engine)), separators=(",", ":")).encode())
    result["submit_body_bytes"] = submit_bytes
    if args.transport_only:
        queue = queue_transport  # the case.submit warm-up above sized the body
        first, before = await mark()
        await queue(args.warmup)
        await wait(first, before, args.warmup, 60)
        result["transport_token_bytes"] = round(float(await scalar(
            select(func.avg(func.length(outbox.c.token))).where(
                and_(outbox.c.id >= first, outbox.c.type == TRANSPORT_TYPE)))))
    cpu0, t0 = cpu_snapshot(args.watch_pid), time.monotonic()
    first, before = await mark()
    statements.reset()
    if args.mode == "peak":
        started = time.monotonic()
        for n in range(0, args.count, args.batch):
            await queue(min(args.batch, args.count - n))
        submitted, done = await wait(first, before, args.count, 300)
        result.update({
            "cases": args.count, "queue_seconds": time.monotonic() - started,
            "submit_seconds": submitted - started, "seconds": done - started,
            "submits_per_second": args.count / (submitted - started),
            "cases_per_second": args.count / (done - started),
            "messages_per_second": (1 if args.transport_only else 2) * args.count
            / (done - started)})
    else:
        tick = 0.01
        wall_start, started = time.time(), time.monotonic()
        owed, sent = 0.0, 0
        while time.monotonic() - started < args.duration:
            owed += args.rate * tick
            batch = int(owed)
            if batch:
                owed -= batch
                await queue(batch)
                sent += batch
            next_tick = started + sent / args.rate
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
        offered = sent / (time.monotonic() - started)
        await wait(first, before, sent, 120)
        async with engine.connect() as conn:
            submit = (await conn.execute(
                select(outbox.c.delivered_at - outbox.c.created_at).where(and_(
                    outbox.c.id >= first, outbox.c.type == "case.submit",
                    outbox.c.state == OutboxState.DELIVERED)))).scalars().all()
            # Round trip: case created here -> the handler's case.status stored here.
            trip = (await conn.execute(
                select(inbox.c.received_at - cases.c.created_at)
                .select_from(inbox.join(cases, inbox.c.case_id == cases.c.case_id))
                .where(and_(cases.c.created_at >= wall_start, inbox.c.type == "case.status"))
            )).scalars().all()
        result.update({"cases": sent, "offered_cases_per_second": offered,
                       "submit_latency": percentiles([float(v) for v in submit]),
                       "round_trip": percentiles([float(v) for v in trip])})
    wall = time.monotonic() - t0
    result["cpu_cores"] = cpu_cores(cpu0, cpu_snapshot(args.watch_pid), wall)
    # Includes the bench's own polling (two COUNTs every 100 ms) and the case creation.
    result["sql_per_case"] = statements.per(result["cases"])
    result["sql_execute"] = statements.execute_us(result["cases"])
    result["wall_seconds"] = wall
    result["sender_peak_rss_mib"] = peak_rss_mib()
    return result


async def _one_case(service: CaseService, engine: AsyncEngine) -> Case:
    async with engine.connect() as conn:
        case_id = (await conn.execute(select(cases.c.case_id).limit(1))).scalar_one()
        found = await service.repo.get(conn, case_id)
    assert found is not None
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--to", required=True)
    parser.add_argument("--item", default=ITEM)
    parser.add_argument("--mode", choices=["peak", "rate"], default="peak")
    parser.add_argument("--count", type=int, default=5000, help="cases in the peak run")
    parser.add_argument("--warmup", type=int, default=200, help="cases before measuring")
    parser.add_argument("--batch", type=int, default=20, help="cases per transaction (peak)")
    parser.add_argument("--rate", type=float, default=200, help="cases per second offered")
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--body-size", type=int, default=2048)
    parser.add_argument("--transport-only", action="store_true",
                        help=f"after the warm-up, send {TRANSPORT_TYPE} messages (stored, no "
                             "case machine; the receiver needs --transport-only too)")
    parser.add_argument("--watch-pid", type=int, action="append", default=[],
                        help="a receiving gateway process whose CPU use to report")
    parser.add_argument("--password-cost", action="store_true",
                        help="only measure the query-password hash of CaseService.submit")
    args = parser.parse_args()
    if args.password_cost:
        print(json.dumps({"query_password_ms": password_cost()}), flush=True)
        return
    assert MODE == "online"
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
