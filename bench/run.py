"""Benchmarks of the federation path, each figure next to the baseline that bounds it.

    .venv/bin/python -m bench.run [--backends sqlite,postgresql] [--out bench/results.json]

Runs, in one process tree: the HTTP baseline (a bare aiohttp server on the receiver's port, fed
2 KiB POSTs by an aiohttp client at the gateway's delivery concurrency), the crypto baseline
(raw Ed25519 sign+verify with `cryptography`), then per database backend two real gateway
processes on loopback: peak end-to-end throughput, latency at 50% and 90% of that peak, peak
RSS of each gateway; on PostgreSQL also the receiver run as two processes on one port; and the
per-message verification cost against registries of 10, 1,000 and 3,000 members.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

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

PG_ADMIN_URL = os.environ.get("TONGBAN_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
SENDER = City("CN-530100", "昆明市", "kunming")
RECEIVER = City("CN-440403", "珠海市斗门区", "doumen")
BODY = 2048
CONCURRENCY = 16


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def http_baseline(port: int, seconds: float) -> float:
    # Starting the child does not block; waiting for it is done by polling below.
    proc = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "bench.bare_server", "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, url, time.monotonic() + 20, proc)
            payload = b"x" * (BODY + 700)  # a signed 2 KiB message is about 2.7 KiB
            count = 0
            end = time.monotonic() + seconds

            async def worker() -> None:
                nonlocal count
                while time.monotonic() < end:
                    async with session.post(url + "/federation/v1/messages", data=payload,
                                            headers={"Content-Type": "application/jwt"}) as r:
                        await r.read()
                    count += 1

            started = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            return count / (time.monotonic() - started)
    finally:
        stop_processes([proc])


def crypto_baseline(seconds: float) -> dict[str, float]:
    from trust import jws
    from trust.keyring import VerifyingKey
    from trust.keys import generate

    key = generate()
    public = key.private.public_key()
    data = b"x" * BODY
    n, end = 0, time.monotonic() + seconds
    started = time.monotonic()
    while time.monotonic() < end:
        public.verify(key.private.sign(data), data)  # type: ignore[union-attr]
        n += 1
    raw = n / (time.monotonic() - started)
    token = jws.sign({"iss": "CN-440403", "body": {"data": "x" * BODY}}, key,
                     jws.TokenType.MESSAGE)
    verifying = VerifyingKey.from_jwk("CN-440403", key.public_jwk())
    n, end = 0, time.monotonic() + seconds
    started = time.monotonic()
    while time.monotonic() < end:
        jws.verify_signature(jws.parse(token, jws.TokenType.MESSAGE), verifying)
        n += 1
    return {"raw_sign_verify_per_second": raw,
            "jws_parse_verify_per_second": n / (time.monotonic() - started)}


def registry_scaling(sizes: tuple[int, ...] = (10, 1000, 3000)) -> dict[str, float]:
    """Per-message verification (parse, member and key lookup, signature) per registry size."""
    from registry.document import Member, Role, Status
    from registry.versions import build_next, sign_version
    from trust import jws
    from trust.keyring import Keyring
    from trust.keys import generate

    operator_key = generate()
    results = {}
    for size in sizes:
        keys = [generate() for _ in range(size)]
        members = [Member(id=f"CN-{100000 + i:06d}", name=f"m{i}", province="11",
                          endpoint="https://example.gov.cn", status=Status.ACTIVE,
                          keys=(k.public_jwk(),), roles=(Role.HANDLER,))
                   for i, k in enumerate(keys)]
        snapshot = sign_version(build_next(None, operator="CN-530100", alliance="bench",
                                           members=members, now=time.time(), validity=3600),
                                operator_key)
        probes = [(f"CN-{100000 + i:06d}", keys[i]) for i in range(0, size, max(1, size // 10))]
        tokens = [jws.sign({"iss": mid, "body": {"data": "x" * BODY}}, k, jws.TokenType.MESSAGE)
                  for mid, k in probes]
        ring = Keyring([snapshot])
        n, end = 0, time.monotonic() + 2
        started = time.monotonic()
        while time.monotonic() < end:
            token = tokens[n % len(tokens)]
            parsed = jws.parse(token, jws.TokenType.MESSAGE)
            assert snapshot.member(parsed.iss) is not None
            jws.verify_signature(parsed, ring.lookup(parsed.iss, parsed.kid, time.time()))
            n += 1
        results[str(size)] = 1e6 * (time.monotonic() - started) / n
    return results


class Backend:
    def __init__(self, name: str) -> None:
        self.name = name
        self.created: list[str] = []

    async def url(self, label: str) -> str:
        if self.name == "sqlite":
            return ""
        db = f"tongban_bench_{label}_{secrets.token_hex(4)}"
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(f'CREATE DATABASE "{db}"')
        finally:
            await conn.close()
        self.created.append(db)
        return PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://",
                                                      "postgresql+asyncpg://") + "/" + db

    async def drop(self) -> None:
        if not self.created:
            return
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            for db in self.created:
                await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        finally:
            await conn.close()


def run_sender(config: Path, log: Path, *args: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.sender", "--config", str(config), "--to",
           RECEIVER.member_id, "--body-size", str(BODY), *args]
    with log.open("ab") as err:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, check=False,
                             cwd=Path(__file__).resolve().parent.parent, timeout=900)
    if out.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise SystemExit(f"sender failed ({out.returncode}):\n" + "\n".join(tail))
    result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


async def federation_run(backend_name: str, root: Path, receiver_processes: int,
                         count: int) -> dict[str, Any]:
    backend = Backend(backend_name)
    sender_port, receiver_port = free_port(), free_port()
    settings = {"delivery": {"concurrency": CONCURRENCY, "poll_interval": 0.5},
                "server": {"reuse_port": receiver_processes > 1}}
    sender = LocalGateway(SENDER, sender_port, await backend.url("sender"), settings=settings)
    receiver = LocalGateway(RECEIVER, receiver_port, await backend.url("receiver"),
                            settings=settings)
    paths = write_configs(root, sender, [receiver], alliance="bench")
    configs = load_all(paths)
    await found_alliance(configs[SENDER.member_id], [configs[RECEIVER.member_id]],
                         operator_name=SENDER.name)
    log = root / "bench.log"
    receivers = [start_gateway(paths[RECEIVER.member_id], root / f"receiver{i}.log")
                 for i in range(receiver_processes)]
    result: dict[str, Any] = {"receiver_processes": receiver_processes}
    try:
        # The receiver gets its registry from the sender (the operator) once that runs; the
        # sender's warm-up round waits for it.
        for proc in receivers:
            if proc.poll() is not None:
                raise SystemExit(f"receiver exited; see {root}")
        sender_cfg = paths[SENDER.member_id]
        peak = run_sender(sender_cfg, log, "--mode", "peak", "--count", str(count))
        result["peak"] = peak
        if receiver_processes == 1:
            for share in (0.5, 0.9):
                rate = peak["per_second"] * share
                result[f"at_{int(share * 100)}pct"] = run_sender(
                    sender_cfg, log, "--mode", "rate", "--rate", f"{rate:.1f}",
                    "--duration", "8")
        result["receiver_peak_rss_mib"] = max(rss_mib(p.pid) for p in receivers)
        result["sender_peak_rss_mib"] = peak["sender_peak_rss_mib"]
    finally:
        stop_processes(receivers)
        await backend.drop()
    return result


def table(results: dict[str, Any]) -> str:
    http = results["baselines"]["http_posts_per_second"]
    crypto = results["baselines"]["crypto"]
    rows = [
        "| measure | value | ratio to baseline |",
        "|---|---|---|",
        f"| bare aiohttp POST 2.7 KiB, {CONCURRENCY} concurrent | {http:,.0f}/s | 1.00 (HTTP "
        "baseline) |",
        f"| raw Ed25519 sign+verify (cryptography) | "
        f"{crypto['raw_sign_verify_per_second']:,.0f}/s | 1.00 (crypto baseline) |",
        f"| JWS parse+verify (PyJWT) | {crypto['jws_parse_verify_per_second']:,.0f}/s | "
        f"{crypto['jws_parse_verify_per_second'] / crypto['raw_sign_verify_per_second']:.2f} "
        "x crypto |",
    ]
    for name, run in results["backends"].items():
        for label, data in run.items():
            peak = data["peak"]["per_second"]
            rows.append(f"| {name}, {label}: end-to-end signed+stored+receipted | {peak:,.0f}/s "
                        f"| {peak / http:.2f} x HTTP |")
            for key in ("at_50pct", "at_90pct"):
                if key in data:
                    d = data[key]
                    rows.append(f"| {name}, latency at {key[3:5]}% of peak "
                                f"({d['offered_per_second']:,.0f}/s offered) | p50 "
                                f"{d['p50_ms']:.1f} ms, p95 {d['p95_ms']:.1f} ms, p99 "
                                f"{d['p99_ms']:.1f} ms | |")
            rows.append(f"| {name}, {label}: peak RSS sender / receiver | "
                        f"{data['sender_peak_rss_mib']:.0f} / "
                        f"{data['receiver_peak_rss_mib']:.0f} MiB | |")
    scaling = results["registry_verification_us"]
    base = scaling["10"]
    for size, us in scaling.items():
        rows.append(f"| verify one message, registry of {size} members | {us:.0f} µs | "
                    f"{us / base:.2f} x 10-member |")
    return "\n".join(rows)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "when": time.strftime("%Y-%m-%d")},
        "baselines": {}, "backends": {},
    }
    step: Callable[[str], None] = lambda s: print(f"… {s}", file=sys.stderr, flush=True)  # noqa: E731
    step("HTTP baseline")
    results["baselines"]["http_posts_per_second"] = await http_baseline(free_port(), 5)
    step("crypto baseline")
    results["baselines"]["crypto"] = crypto_baseline(3)
    for name in args.backends.split(","):
        with tempfile.TemporaryDirectory(prefix=f"tongban-bench-{name}-") as tmp:
            step(f"{name}: one receiver process")
            runs = {"1 process": await federation_run(name, Path(tmp) / "one", 1, args.count)}
            if name == "postgresql":
                step(f"{name}: two receiver processes")
                runs["2 receiver processes"] = await federation_run(name, Path(tmp) / "two", 2,
                                                                    args.count)
            results["backends"][name] = runs
    step("registry scaling")
    results["registry_verification_us"] = registry_scaling()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--count", type=int, default=5000, help="messages in the peak run")
    parser.add_argument("--out", type=Path, default=Path("bench/results.json"))
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    args.out.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\n{results['machine']}; JSON in {args.out}")


if __name__ == "__main__":
    main()
