"""How fast a backlog drains when a peer that was down comes back (issue 7).

    .venv/bin/python -m bench.drain [--count 1000] [--backends sqlite,postgresql]
                                    [--out bench/results/drain.json]

Per database backend: two real gateway processes on loopback (gateway/localfed.py), the
sender also the alliance operator, the receiver offering the catalog items. The receiver is
stopped; the sender's portal files `--count` online cases for it (the real portal API, one
`case.submit` each), which pile up in the sender's outbox while delivery keeps failing. Then
the receiver starts again, and the clock runs until the sender's outbox is empty.

Reported per backend:

- `reconnect_s`: from the receiver answering /healthz to the first delivery. The sender only
  notices at its next retry of that destination, so this is bounded by `delivery.max_backoff`
  (5 s in these configs, 60 s by default);
- `drain_s` and `drain_per_s`: from the first delivery to the last (outbox empty), and the
  backlog divided by it: the drain rate;
- `total_s`: from the receiver answering to the outbox empty;
- `acked_s`: until the sender also holds every answer (`case.status handler_received` back
  from the receiver, which queued them while taking the backlog in);
- checks that nothing was lost or sent twice: delivered = filed, receipts all `accepted`,
  the receiver's inbox holds each case's submission once, nothing pending or dead.

Not a timed test: the figures depend on the machine (printed with its load) and go to the
JSON file, not into assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select

from bench.run import Backend, machine
from bench.sender import machine_busy
from bench.workload import PORTAL, application, offered_items
from gateway.config import GatewayConfig
from gateway.db.engine import make_engine
from gateway.db.repos import OutboxState
from gateway.db.schema import cases, inbox, outbox
from gateway.localfed import (
    City,
    LocalGateway,
    found_alliance,
    free_port,
    load_all,
    start_gateway,
    stop_processes,
    wait_ready,
    write_configs,
)

REPO = Path(__file__).resolve().parent.parent
SENDER = City("CN-530100", "昆明市", "kunming")
RECEIVER = City("CN-440403", "珠海市斗门区", "doumen")
SECRET = secrets.token_urlsafe(24)  # the portal's, for this run only
FILERS = 16  # portal requests in flight while filing the backlog
BODY = 2048
POLL = 0.05


def step(text: str) -> None:
    print(f"… {text}", flush=True)


async def counts(config: GatewayConfig) -> dict[str, Any]:
    engine = make_engine(config.database.url)
    try:
        async with engine.connect() as conn:
            # Case messages only: the operator (the sender here) also queues registry notices.
            by_state: dict[str, int] = dict((await conn.execute(
                select(outbox.c.state, func.count()).where(outbox.c.type.like("case.%"))
                .group_by(outbox.c.state))).all())
            statuses: dict[str, int] = dict((await conn.execute(
                select(outbox.c.receipt_status, func.count())
                .where(outbox.c.state == OutboxState.DELIVERED, outbox.c.type.like("case.%"))
                .group_by(outbox.c.receipt_status))).all())
            case_states: dict[str, int] = dict((await conn.execute(
                select(cases.c.state, func.count()).group_by(cases.c.state))).all())
            received: dict[str, int] = dict((await conn.execute(
                select(inbox.c.type, func.count()).group_by(inbox.c.type))).all())
            distinct = (await conn.execute(
                select(func.count(func.distinct(inbox.c.case_id)))
                .where(inbox.c.type == "case.submit"))).scalar_one()
    finally:
        await engine.dispose()
    return {"outbox": by_state, "receipts": statuses, "cases": case_states,
            "inbox": received, "submitted_cases": distinct}


async def file_backlog(http: aiohttp.ClientSession, url: str, count: int) -> float:
    """Files `count` cases at the sender's portal API; returns the seconds it took."""
    auth = "Basic " + base64.b64encode(f"{PORTAL}:{SECRET}".encode()).decode()
    body = application(RECEIVER.member_id, BODY)
    queue = iter(range(count))
    started = time.monotonic()

    async def filer() -> None:
        for _ in queue:
            async with http.post(url + "/api/v1/cases", json=body,
                                 headers={"Authorization": auth}) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"filing failed: {resp.status} {await resp.text()}")

    await asyncio.gather(*(filer() for _ in range(FILERS)))
    return time.monotonic() - started


async def drain_run(backend_name: str, root: Path, count: int) -> dict[str, Any]:
    backend = Backend(backend_name)
    secret = root / "portal.secret"
    settings = {f"api.clients.{PORTAL}": {"secret_file": str(secret)}}
    sender = LocalGateway(SENDER, free_port(), await backend.url("sender"), settings=settings)
    receiver = LocalGateway(RECEIVER, free_port(), await backend.url("receiver"),
                            settings=settings)
    paths = write_configs(root, sender, [receiver], alliance="bench")
    configs = load_all(paths)
    send_cfg, recv_cfg = configs[SENDER.member_id], configs[RECEIVER.member_id]
    await found_alliance(send_cfg, [recv_cfg], operator_name=SENDER.name,
                         items={RECEIVER.member_id: offered_items()})
    procs = {m: start_gateway(paths[m], root / f"{m}.log") for m in paths}
    result: dict[str, Any] = {"backlog": count}
    try:
        async with aiohttp.ClientSession() as http:
            for member, proc in procs.items():
                await wait_ready(http, configs[member].server.endpoint(),
                                 time.monotonic() + 60, proc, root / f"{member}.log")
            step(f"{backend_name}: receiver down, filing {count} cases at the sender")
            stop_processes([procs[RECEIVER.member_id]])
            result["filing_s"] = round(await file_backlog(
                http, send_cfg.server.endpoint(), count), 2)
            before = await counts(send_cfg)
            assert before["outbox"] == {OutboxState.PENDING: count}, before
            step(f"{backend_name}: receiver back")
            procs[RECEIVER.member_id] = start_gateway(paths[RECEIVER.member_id],
                                                      root / f"{RECEIVER.member_id}.log")
            await wait_ready(http, recv_cfg.server.endpoint(), time.monotonic() + 60,
                             procs[RECEIVER.member_id], root / f"{RECEIVER.member_id}.log")
            up, busy_up = time.monotonic(), machine_busy()
            first = drained = acked = None
            busy_drained = 0.0
            deadline = up + 600
            engine = make_engine(send_cfg.database.url)
            try:
                while acked is None and time.monotonic() < deadline:
                    async with engine.connect() as conn:
                        delivered = (await conn.execute(
                            select(func.count()).select_from(outbox)
                            .where(outbox.c.state == OutboxState.DELIVERED,
                                   outbox.c.type == "case.submit"))).scalar_one()
                        answered = (await conn.execute(
                            select(func.count()).select_from(cases)
                            .where(cases.c.state == "handler_received"))).scalar_one()
                    now = time.monotonic()
                    if first is None and delivered > 0:
                        first = now
                    if drained is None and delivered >= count:
                        drained, busy_drained = now, machine_busy()
                    if drained is not None and answered >= count:
                        acked = now
                    await asyncio.sleep(POLL)
            finally:
                await engine.dispose()
            if first is None or drained is None or acked is None:
                raise RuntimeError("the backlog did not drain within 600 s")
            # Cores busy on the whole machine (ours and anything else running), of
            # os.cpu_count(): how loaded the machine was while it drained.
            result["machine_cores_busy"] = round((busy_drained - busy_up) / (drained - up), 2)
        result.update({
            "reconnect_s": round(first - up, 2), "drain_s": round(drained - first, 2),
            "drain_per_s": round(count / max(drained - first, 1e-9), 1),
            "total_s": round(drained - up, 2), "total_per_s": round(count / (drained - up), 1),
            "acked_s": round(acked - up, 2)})
        after_send, after_recv = await counts(send_cfg), await counts(recv_cfg)
        result["sender"], result["receiver"] = after_send, after_recv
        result["nothing_lost_or_twice"] = (
            after_send["outbox"] == {OutboxState.DELIVERED: count}
            and after_send["receipts"] == {"accepted": count}
            and after_recv["inbox"].get("case.submit") == count
            and after_recv["submitted_cases"] == count)
    finally:
        stop_processes(list(procs.values()))
        await backend.drop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "drain.json")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": machine(), "backends": {}}
    for name in args.backends.split(","):
        with tempfile.TemporaryDirectory(prefix=f"tongban-drain-{name}-") as tmp:
            (Path(tmp) / "portal.secret").write_text(SECRET, encoding="utf-8")
            results["backends"][name] = asyncio.run(drain_run(name, Path(tmp), args.count))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    for name, r in results["backends"].items():
        print(f"{name}: {r['backlog']} backlogged case.submit drained in {r['drain_s']} s "
              f"= {r['drain_per_s']} msg/s (first delivery {r['reconnect_s']} s after the peer "
              f"answered; outbox empty after {r['total_s']} s = {r['total_per_s']} msg/s; "
              f"every answer back after {r['acked_s']} s); cores busy "
              f"{r['machine_cores_busy']} of {os.cpu_count()}; nothing lost or twice: "
              f"{r['nothing_lost_or_twice']}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
