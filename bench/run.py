"""Benchmarks of the federation path, each figure next to the baseline that bounds it.

    .venv/bin/python -m bench.run [--quick] [--backends sqlite,postgresql]
                                  [--out bench/results/latest.json] [--workdir DIR]
    .venv/bin/python -m bench.run --profile DIR      # peak runs under py-spy only

One run measures, in this order:

1. per database backend, two real gateway processes on loopback, founded as an alliance with
   gateway/localfed.py (the receiver offers the 26 catalog items in all their modes): the
   sender creates online cases and sends each one's `case.submit` (a valid application, about
   2 KiB of JSON); the receiver checks it against its case machine, stores it and answers
   `case.status handler_received`, which the sender verifies, stores and applies
   (bench/sender.py). Peak throughput, latency at 50% and 90% of that peak, peak RSS, CPU and
   SQL statements per case of each process. For comparison, the same pair with a message type
   that is only stored (`bench.transport`, no case machine). On PostgreSQL also: two processes
   of one member started at once on a fresh database; the receiving member as two processes on
   one port (`server.reuse_port`), first with one of them delivering its outbox (the safe
   set-up until outbox rows are claimed, issue #7), then both (stock `tongban serve`), counting
   what went wrong;
2. the HTTP baseline: a bare aiohttp server on the receiver's port answering POSTs of the size
   of the real signed `case.submit` with 200, fed by an aiohttp client at the gateway's delivery
   concurrency (bench/bare_server.py);
3. the crypto baseline: raw Ed25519 sign+verify of `cryptography` on the same bytes;
4. registry lookups: the receiving side's per-message verification (inbox.py steps 1-7) and
   routing against registries of 10, 1,000 and 3,000 members, and what verifying and holding
   such a registry version costs.

Prints a table and writes the JSON (`--out`; the previous `latest.json` becomes
`previous.json`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import re
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import func, select

from bench.sender import machine_busy, process_cpu
from bench.sqlcount import StatementCounter
from bench.workload import ITEM, MODE, TRANSPORT_TYPE, offered_items
from gateway.config import GatewayConfig
from gateway.db.engine import make_engine
from gateway.db.schema import inbox, outbox
from gateway.localfed import (
    City,
    LocalGateway,
    found_alliance,
    free_port,
    load_all,
    stop_processes,
    wait_ready,
    write_configs,
)

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("TONGBAN_BENCH_PG_URL",
                              "postgresql://postgres@127.0.0.1:5432/postgres")
SENDER = City("CN-530100", "昆明市", "kunming")
RECEIVER = City("CN-440403", "珠海市斗门区", "doumen")
BODY = 2048
CONCURRENCY = int(os.environ.get("TONGBAN_BENCH_CONCURRENCY", "16"))  # delivery.concurrency, and
# the HTTP baseline's client concurrency; the environment variable is for experiments
TARGETS = {"sqlite": 0.25, "postgresql": 0.15}
P99_TARGET_MS = 50.0
RSS_TARGET_MIB = 150.0
FLAT_TARGET = 0.10


def step(text: str) -> None:
    print(f"… {text}", file=sys.stderr, flush=True)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_now_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss() -> None:
    """Start VmHWM over from the current RSS (Linux: 5 > /proc/self/clear_refs)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def bench_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


# --- baselines ------------------------------------------------------------------------------

async def http_baseline(port: int, seconds: float, size: int) -> dict[str, float]:
    # Starting the child does not block; waiting for it is done by polling below.
    proc = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "bench.bare_server", "--port", str(port)], cwd=REPO,
        env=bench_env())
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await wait_ready(session, url, time.monotonic() + 20, proc)
            payload = b"x" * size
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
            before = [machine_busy(), process_cpu(os.getpid()), process_cpu(proc.pid)]
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            wall = time.monotonic() - started
            after = [machine_busy(), process_cpu(os.getpid()), process_cpu(proc.pid)]
            busy, client, server = ((b - a) / wall for a, b in zip(before, after, strict=True))
            return {"posts_per_second": count / wall, "machine_cores_busy": busy,
                    "client_cores": client, "server_cores": server}
    finally:
        stop_processes([proc])


def rate(fn: Callable[[], object], seconds: float) -> float:
    n, started = 0, time.monotonic()
    end = started + seconds
    while time.monotonic() < end:
        fn()
        n += 1
    return n / (time.monotonic() - started)


def crypto_baseline(seconds: float, size: int) -> dict[str, float]:
    """Raw Ed25519 (cryptography) on `size` bytes, and the same through our JWS layer."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from trust import jws
    from trust.keyring import VerifyingKey
    from trust.keys import generate

    key = generate()
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    data = b"x" * size
    signature = private.sign(data)
    raw_pair = rate(lambda: public.verify(private.sign(data), data), seconds)
    raw_verify = rate(lambda: public.verify(signature, data), seconds / 2)
    claims = {"iss": "CN-440403", "aud": "CN-530100", "type": "case.submit",
              "body": {"form": "x" * (size * 3 // 4)}}
    token = jws.sign(claims, key, jws.TokenType.MESSAGE)
    verifying = VerifyingKey.from_jwk("CN-440403", key.public_jwk())
    jws_sign = rate(lambda: jws.sign(claims, key, jws.TokenType.MESSAGE), seconds / 2)
    jws_verify = rate(lambda: jws.verify_signature(jws.parse(token, jws.TokenType.MESSAGE),
                                                   verifying), seconds / 2)
    return {"raw_sign_verify_per_second": raw_pair, "raw_verify_per_second": raw_verify,
            "jws_sign_per_second": jws_sign, "jws_parse_verify_per_second": jws_verify,
            "bytes": size}


# --- registry scaling -------------------------------------------------------------------------

def registry_scaling(sizes: tuple[int, ...], rounds: int, seconds: float) -> dict[str, Any]:
    """Per-message verification exactly as Inbox.receive steps 1-7 do it, and routing."""
    from registry.catalog import load_catalog
    from registry.document import Member, Role, Status
    from registry.routing import route
    from registry.versions import build_next, sign_version, verify_version
    from trust import jws
    from trust.anchor import parse_anchor
    from trust.errors import VerificationError
    from trust.keyring import Keyring
    from trust.keys import generate

    catalog = load_catalog()
    items = tuple(offered_items())
    operator_key = generate()
    anchor = parse_anchor({"alliance": "bench", "operator": "CN-530100",
                           "keys": [operator_key.public_jwk()]})
    me = "CN-999999"
    setups = {}
    for size in sizes:
        keys = [generate() for _ in range(size)]
        members = [Member(id=f"CN-{100000 + i:06d}", name=f"m{i}", province="11",
                          endpoint="https://example.gov.cn", status=Status.ACTIVE,
                          keys=(k.public_jwk(),), roles=(Role.HANDLER, Role.RECEIVER),
                          items=items)
                   for i, k in enumerate(keys)]
        members.append(Member(id=me, name="me", province="99", endpoint="https://me.gov.cn",
                              status=Status.ACTIVE, keys=(generate().public_jwk(),),
                              roles=(Role.HANDLER,), items=items))
        signed = sign_version(build_next(None, operator="CN-530100", alliance="bench",
                                         members=members, now=time.time(), validity=3600),
                              operator_key)
        token = signed.jws
        del signed, members
        gc.collect()
        rss_before = rss_now_mib()
        reset_peak_rss()
        started = time.perf_counter()
        snapshot = verify_version(token, anchor)
        load_ms = 1000 * (time.perf_counter() - started)
        held_mib = rss_now_mib() - rss_before
        peak_mib = rss_mib(os.getpid()) - rss_before
        picks = range(0, size, max(1, size // 20))
        now = int(time.time())
        tokens = [jws.sign({"iss": f"CN-{100000 + i:06d}", "aud": me, "iat": now,
                            "exp": now + 300, "jti": secrets.token_hex(16), "type": "case.submit",
                            "body": {"form": "x" * 1500}}, keys[i], jws.TokenType.MESSAGE)
                  for i in picks]
        handlers = [f"CN-{100000 + i:06d}" for i in picks]
        setups[size] = (snapshot, tokens, handlers, load_ms, len(token), held_mib, peak_mib)

    def verify(snapshot: Any, token: str) -> None:
        parsed = jws.parse(token, jws.TokenType.MESSAGE)            # 1-2
        iss = parsed.iss
        if snapshot.get_key(iss, parsed.kid) is None:               # 3 (refresh check)
            raise VerificationError("unknown key")
        sender = snapshot.member(iss)
        assert sender is not None
        key = Keyring([snapshot]).lookup(iss, parsed.kid, time.time())  # 4
        jws.verify_signature(parsed, key)
        if parsed.claims.get("aud") != me:                          # 5
            raise VerificationError("aud")
        jws.check_lifetime(parsed.claims, time.time(), max_skew=300, max_lifetime=300)  # 6
        assert sender.is_active                                     # 7
        jws.require_str(parsed.claims, "type")

    verify_us: dict[int, list[float]] = {s: [] for s in sizes}
    route_us: dict[int, list[float]] = {s: [] for s in sizes}
    for _ in range(rounds):  # interleaved, so drift in machine load hits every size alike
        for size in sizes:
            snapshot, tokens, handlers, *_ = setups[size]
            n = 0

            def one_verify(s: Any = snapshot, t: list[str] = tokens) -> None:
                nonlocal n
                verify(s, t[n % len(t)])
                n += 1

            verify_us[size].append(1e6 / rate(one_verify, seconds))
            m = 0

            def one_route(s: Any = snapshot, h: list[str] = handlers) -> None:
                nonlocal m
                route(s, catalog, item_code=ITEM, mode=MODE, handler=h[m % len(h)],
                      receiver=me)
                m += 1

            route_us[size].append(1e6 / rate(one_route, seconds / 4))
    # Best of the rounds: machine noise (other processes) only ever adds time.
    return {str(size): {"verify_us": min(verify_us[size]),
                        "verify_us_median": statistics.median(verify_us[size]),
                        "verify_us_rounds": verify_us[size],
                        "route_us": min(route_us[size]),
                        "registry_load_ms": setups[size][3],
                        "registry_jws_kib": setups[size][4] / 1024,
                        "registry_rss_mib": setups[size][5],
                        "registry_load_peak_mib": setups[size][6]}
            for size in sizes}


# --- the federation -----------------------------------------------------------------------

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
        self.created = []


def start_receiver(config: Path, log: Path, *, deliver: bool,
                   transport_only: bool) -> subprocess.Popen[bytes]:
    """`tongban serve` (through bench/receiver.py, which can turn delivery off)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.receiver", "--config", str(config),
             "--sql-stats", str(log.with_suffix(".sql.json")),
             *([] if deliver else ["--no-delivery"]),
             *(["--transport-only"] if transport_only else [])],
            stdout=out, stderr=subprocess.STDOUT, cwd=config.parent, env=bench_env())


def spy(pid: int, output: Path) -> subprocess.Popen[bytes]:
    """py-spy on a running process until it exits, as collapsed stacks (bench/profile_top.py)."""
    spy_bin = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen([str(spy_bin), "record", "--pid", str(pid), "--rate", "250",
                             "--format", "raw", "--nonblocking", "--output", str(output)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_sender(config: Path, log: Path, *args: str,
               profile: Path | None = None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.sender", "--config", str(config), "--to",
           RECEIVER.member_id, "--body-size", str(BODY), *args]
    with log.open("ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, cwd=REPO,
                                env=bench_env())
        spying = spy(proc.pid, profile) if profile is not None else None
        try:
            stdout, _ = proc.communicate(timeout=900)
        finally:
            if proc.poll() is None:
                proc.kill()
            if spying is not None:
                spying.wait(timeout=60)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-20:]
        raise SystemExit(f"sender failed ({proc.returncode}):\n" + "\n".join(tail))
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return result


async def database_counts(config: GatewayConfig) -> dict[str, Any]:
    """Outbox rows by type/state/receipt status, inbox rows by type, resent rows."""
    engine = make_engine(config.database.url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(
                select(outbox.c.type, outbox.c.state, outbox.c.receipt_status, func.count(),
                       func.sum(outbox.c.attempts))
                .group_by(outbox.c.type, outbox.c.state, outbox.c.receipt_status))).all()
            received = (await conn.execute(
                select(inbox.c.type, func.count()).group_by(inbox.c.type))).all()
    finally:
        await engine.dispose()
    return {"outbox": [{"type": t, "state": s, "receipt": r, "rows": n, "attempts": int(a or 0)}
                       for t, s, r, n, a in rows],
            "inbox": {t: n for t, n in received}}


def log_counts(*logs: Path) -> dict[str, int]:
    """Refusals and failures the gateways logged (problem middleware, outbox, exceptions)."""
    # registry-stale: a receiver refuses until it has fetched its first registry from the
    # operator (the sender), i.e. the first messages after start-up; counted apart.
    patterns = {"refused_replay": r"-> replay:",
                "refused_other": r"-> (?!replay|registry-stale)[a-z-]+:",
                "refused_at_startup": r"-> registry-stale:",
                "dead_letters": r"parked as dead letter",
                "delivery_failures": r"delivery to .* failed", "errors": r" ERROR "}
    text = "\n".join(p.read_text(errors="replace") for p in logs if p.exists())
    return {name: len(re.findall(pattern, text)) for name, pattern in patterns.items()}


def failure_reasons(log: Path) -> dict[str, int]:
    """Why one gateway's delivery attempts failed, by the reason its outbox logged ("HTTP 503
    registry-stale", "TimeoutError", ...): a retried message is only wrong if it was stored
    twice (a duplicate receipt), so the reasons tell a retry from a fault."""
    found = re.findall(r"delivery to \S+ failed \(([^:;)]+)", log_text(log))
    return dict(Counter(reason.strip() for reason in found))


def anomalies(counts: dict[str, Any], logs: dict[str, int]) -> dict[str, int]:
    """What would be wrong in production: a message sent twice, parked dead, or refused."""
    rows = counts["outbox"]
    return {"sent_more_than_once": sum(r["attempts"] - r["rows"] for r in rows
                                       if r["state"] == "delivered"),
            "duplicate_receipts": sum(r["rows"] for r in rows if r["receipt"] == "duplicate"),
            "dead": sum(r["rows"] for r in rows if r["state"] == "dead"),
            "pending": sum(r["rows"] for r in rows if r["state"] == "pending"),
            "refused": logs["refused_replay"] + logs["refused_other"],
            "errors": logs["errors"]}


def exit_reason(log: str, code: int | None) -> str:
    """Why a gateway stopped: the CLI's one-line error, else the last ERROR or the exit code."""
    lines = log.splitlines()
    for marker in ("tongban: error:", " ERROR ", "Error:"):
        found = [line for line in lines if marker in line]
        if found:
            return found[-1]
    return f"exit code {code}"


def log_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


async def wait_serving(proc: subprocess.Popen[bytes], log: Path, limit: float = 60) -> None:
    """Until `tongban serve` prints that it serves (schema created, secrets loaded, bound)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_text(log).splitlines()[-5:]
            raise SystemExit(f"receiver exited ({proc.returncode}):\n" + "\n".join(tail))
        if "serving on" in log_text(log):
            return
        await asyncio.sleep(0.05)
    raise SystemExit(f"receiver did not start within {limit} s; see {log}")


async def startup_race(root: Path, port: int, tries: int) -> dict[str, Any]:
    """Two processes of one member started at the same moment on a fresh PostgreSQL database:
    does each come up? (Each creates the schema and its secrets at start-up.)"""
    outcomes = []
    for attempt in range(tries):
        backend = Backend("postgresql")
        folder = root / f"race{attempt}"
        receiver = LocalGateway(RECEIVER, port, await backend.url("race"),
                                settings={"server": {"reuse_port": True}})
        paths = write_configs(folder, LocalGateway(SENDER, free_port()), [receiver],
                              alliance="bench")
        configs = load_all(paths)
        await found_alliance(configs[SENDER.member_id], [configs[RECEIVER.member_id]],
                             operator_name=SENDER.name)
        logs = [folder / f"receiver{i}.log" for i in range(2)]
        procs = [start_receiver(paths[RECEIVER.member_id], log, deliver=True,
                                transport_only=False) for log in logs]
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if all(p.poll() is not None or "serving on" in log_text(log)
                       for p, log in zip(procs, logs, strict=True)):
                    break
                await asyncio.sleep(0.05)
            failed = [exit_reason(log_text(log), p.returncode)
                      for p, log in zip(procs, logs, strict=True) if p.poll() is not None]
        finally:
            stop_processes(procs)
            await backend.drop()
        outcomes.append(failed)
    return {"tries": tries, "failed_starts": sum(len(f) for f in outcomes),
            "errors": sorted({e for f in outcomes for e in f})}


async def federation_run(backend_name: str, root: Path, *, port: int, processes: int,
                         deliver_all: bool, count: int, latency: bool,
                         rate_seconds: float, profile: Path | None = None,
                         transport_only: bool = False) -> dict[str, Any]:
    backend = Backend(backend_name)
    sender_port = free_port()
    settings: dict[str, dict[str, Any]] = {
        "delivery": {"concurrency": CONCURRENCY, "poll_interval": 0.5},
                "server": {"reuse_port": processes > 1}}
    sender = LocalGateway(SENDER, sender_port, await backend.url("sender"), settings=settings)
    receiver = LocalGateway(RECEIVER, port, await backend.url("receiver"), settings=settings)
    paths = write_configs(root, sender, [receiver], alliance="bench")
    configs = load_all(paths)
    await found_alliance(configs[SENDER.member_id], [configs[RECEIVER.member_id]],
                         operator_name=SENDER.name,
                         items={RECEIVER.member_id: offered_items()})
    sender_log = root / "sender.log"
    receiver_logs = [root / f"receiver{i}.log" for i in range(processes)]
    receivers = []
    for i in range(processes):  # one after the other: see startup_race for why
        receivers.append(start_receiver(paths[RECEIVER.member_id], receiver_logs[i],
                                        deliver=deliver_all or i == 0,
                                        transport_only=transport_only))
        await wait_serving(receivers[-1], receiver_logs[i])
    result: dict[str, Any] = {"receiver_processes": processes,
                              "receivers_delivering": processes if deliver_all else 1}
    spies = ([spy(p.pid, profile / f"{backend_name}-{root.name}-receiver{i}.txt")
              for i, p in enumerate(receivers)] if profile is not None else [])
    try:
        # The receivers fetch the registry from the sender (the operator) once it runs; the
        # sender's warm-up round waits for that.
        sender_cfg = paths[SENDER.member_id]
        watch = [arg for p in receivers for arg in ("--watch-pid", str(p.pid))]
        watch += ["--transport-only"] if transport_only else []
        peak = run_sender(sender_cfg, sender_log, "--mode", "peak", "--count", str(count),
                          *watch, profile=profile / f"{backend_name}-{root.name}-sender.txt"
                          if profile is not None else None)
        result["peak"] = peak
        if latency:
            for share in (0.5, 0.9):
                offered = peak["cases_per_second"] * share
                result[f"at_{int(share * 100)}pct"] = run_sender(
                    sender_cfg, sender_log, "--mode", "rate", "--rate", f"{offered:.1f}",
                    "--duration", str(rate_seconds), *watch)
        result["receiver_peak_rss_mib"] = [rss_mib(p.pid) for p in receivers]
        result["sender_peak_rss_mib"] = max(
            v["sender_peak_rss_mib"] for k, v in result.items() if isinstance(v, dict)
            and "sender_peak_rss_mib" in v)
    finally:
        stop_processes(receivers)
        for spying in spies:
            spying.wait(timeout=60)
    try:
        logs = log_counts(*receiver_logs, sender_log)
        receiver_db = await database_counts(configs[RECEIVER.member_id])
        sender_db = await database_counts(configs[SENDER.member_id])
        result["receiver_db"], result["sender_db"], result["logs"] = receiver_db, sender_db, logs
        received = receiver_db["inbox"].get(TRANSPORT_TYPE if transport_only
                                            else "case.submit", 0)
        statements = StatementCounter()
        for log in receiver_logs:
            if log.with_suffix(".sql.json").exists():
                dumped = json.loads(log.with_suffix(".sql.json").read_text())
                statements.counts.update(dumped["counts"])
                for kind, seconds in dumped["seconds"].items():
                    statements.seconds[kind] = statements.seconds.get(kind, 0.0) + seconds
                statements.calls.update(dumped["calls"])
                statements.misses.update(dumped["misses"])
                statements.uncacheable.update(dumped["uncacheable"])
        result["receiver_sql_per_case"] = statements.per(received)
        result["receiver_sql_execute"] = statements.execute_us(received)
        result["anomalies"] = {"receiver_outbox": anomalies(receiver_db, logs),
                               "sender_outbox": anomalies(sender_db, logs)}
        receiver_reasons: Counter[str] = Counter()
        for log in receiver_logs:
            receiver_reasons.update(failure_reasons(log))
        result["retry_reasons"] = {"receiver_outbox": dict(receiver_reasons),
                                   "sender_outbox": failure_reasons(sender_log)}
    finally:
        await backend.drop()
    return result


# --- output ---------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    pg = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        pg = subprocess.run(["psql", PG_ADMIN_URL, "-Atc", "show server_version"],
                            capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    code = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--",
                                "gateway", "registry", "trust", "adapters"],
                               capture_output=True, text=True, timeout=10, check=True)
        code = head.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip()
                                      else "")
    import aiohttp as _aiohttp
    import cryptography
    import jwt
    return {"code": os.environ.get("TONGBAN_BENCH_CODE", code),
            "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "postgresql": pg,
            "aiohttp": _aiohttp.__version__, "cryptography": cryptography.__version__,
            "pyjwt": jwt.__version__, "platform": platform.platform(),
            "when": time.strftime("%Y-%m-%d %H:%M %Z")}


def _cpu(d: dict[str, Any]) -> str:
    cpu = d["cpu_cores"]
    receivers = "+".join(f"{c:.2f}" for c in cpu["receivers"])
    waiting = "+".join(f"{c:.2f}" for c in cpu["receivers_waiting"])
    return (f"sender {cpu['sender']:.2f}, receiver {receivers}, whole machine "
            f"{cpu['machine']:.2f} of {os.cpu_count()}; waiting for a core: sender "
            f"{cpu['sender_waiting']:.2f}, receiver {waiting}")


def _error(line: str) -> str:
    """`duplicate key value violates unique constraint "x"` out of a log line."""
    return line.split("database: ", 1)[-1].split("error: ", 1)[-1][:100]


def _http_cpu(base: dict[str, Any]) -> str:
    cpu = base.get("http_cpu")
    if not cpu:
        return ""
    return (f" (client {cpu['client_cores']:.2f}, server {cpu['server_cores']:.2f}, whole "
            f"machine {cpu['machine_cores_busy']:.2f} cores busy)")


def _r(ratio: float) -> str:
    return f"{ratio:.3f}" if ratio < 0.1 else f"{ratio:.2f}"


def ok(good: bool) -> str:
    return "yes" if good else "**no**"


def _per_case(d: dict[str, Any], data: dict[str, Any]) -> str:
    """CPU milliseconds and SQL statements per case (per message for transport only)."""
    cpu, n = d["cpu_cores"], d["cases"]
    sender_ms = 1000 * cpu["sender"] * d["wall_seconds"] / n
    receiver_ms = 1000 * sum(cpu["receivers"]) * d["wall_seconds"] / n
    sql_s, sql_r = d.get("sql_execute", {}), data.get("receiver_sql_execute", {})
    return (f"CPU {sender_ms:.1f} / {receiver_ms:.1f} ms; SQL statements "
            f"{d['sql_per_case'].get('total', 0):.0f} / "
            f"{data.get('receiver_sql_per_case', {}).get('total', 0):.0f}, in execute "
            f"{sql_s.get('total_us_per_case', 0) / 1000:.1f} / "
            f"{sql_r.get('total_us_per_case', 0) / 1000:.1f} ms")


def table(results: dict[str, Any]) -> str:
    base = results["baselines"]
    http = base["http_posts_per_second"]
    crypto = base["crypto"]
    raw = crypto["raw_sign_verify_per_second"]
    rows = [
        "| measure | result | ratio | target |",
        "|---|---|---|---|",
        f"| HTTP baseline: bare aiohttp, POST {base['payload_bytes']:,} B, {CONCURRENCY} "
        f"concurrent{_http_cpu(base)} | {http:,.0f}/s | 1.00 | |",
        f"| crypto baseline: raw Ed25519 sign+verify, {crypto['bytes']:,} B (cryptography) | "
        f"{raw:,.0f}/s | 1.00 | |",
        f"| Ed25519 verify only / JWS sign / JWS parse+verify (PyJWT) | "
        f"{crypto['raw_verify_per_second']:,.0f} / {crypto['jws_sign_per_second']:,.0f} / "
        f"{crypto['jws_parse_verify_per_second']:,.0f} per s | | |",
    ]
    for name, runs in results["backends"].items():
        for label, data in runs.items():
            peak = data["peak"]
            msgs = peak["messages_per_second"]
            head = f"{name}, {label}"
            target = TARGETS[name]
            if label == "1 process":
                rows.append(
                    f"| {head}: signed+stored+receipted messages, both directions "
                    f"({peak['cases']:,} case.submit + {peak['cases']:,} case.status) | "
                    f"{msgs:,.0f}/s | {_r(msgs / http)} x HTTP, {_r(msgs / raw)} x crypto | "
                    f"≥ {target} x HTTP: {ok(msgs / http >= target)} |")
                rows.append(
                    f"| {head}: case.submit delivered / cases complete (both messages) | "
                    f"{peak['submits_per_second']:,.0f}/s / {peak['cases_per_second']:,.0f}/s | "
                    f"{_r(peak['submits_per_second'] / http)} x HTTP (submits) | |")
                rows.append(f"| {head}: CPU at peak (cores busy) | {_cpu(peak)} | | |")
                rows.append(f"| {head}: per case, sender / receiver | "
                            f"{_per_case(peak, data)} | | |")
            elif label == "transport only":
                rows.append(
                    f"| {head} ({TRANSPORT_TYPE}, {peak['transport_token_bytes']:,} B, stored "
                    f"and receipted, no case machine, one direction) | {msgs:,.0f}/s | "
                    f"{_r(msgs / http)} x HTTP, {_r(msgs / raw)} x crypto | (comparison) |")
                rows.append(f"| {head}: CPU at peak | {_cpu(peak)} | | |")
                rows.append(f"| {head}: per message, sender / receiver | "
                            f"{_per_case(peak, data)} | | |")
            else:
                one = runs["1 process"]["peak"]["messages_per_second"]
                anomalies_ = data["anomalies"]["receiver_outbox"]
                rows.append(
                    f"| {head}: messages, both directions | {msgs:,.0f}/s | "
                    f"{msgs / one:.2f} x 1 process, {_r(msgs / http)} x HTTP | |")
                rows.append(f"| {head}: CPU at peak | {_cpu(peak)} | | |")
                reasons = data.get("retry_reasons", {}).get("receiver_outbox", {})
                why = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "none"
                rows.append(
                    f"| {head}: receiver outbox stored twice (duplicate receipts) / dead / "
                    f"refused | {anomalies_['duplicate_receipts']} / {anomalies_['dead']} / "
                    f"{anomalies_['refused']} | | must be 0 / 0 / 0 |")
                rows.append(
                    f"| {head}: receiver outbox attempts beyond the first (failed attempts: "
                    f"{why}) | {anomalies_['sent_more_than_once']} | | retries, not "
                    f"duplicates |")
            for key in ("at_50pct", "at_90pct"):
                if key in data:
                    d = data[key]
                    lat, trip = d["submit_latency"], d["round_trip"]
                    check = (f"p99 < {P99_TARGET_MS:.0f} ms: {ok(lat['p99_ms'] < P99_TARGET_MS)}"
                             if key == "at_50pct" else "")
                    rows.append(
                        f"| {head}: latency at {key[3:5]}% of peak "
                        f"({d['offered_cases_per_second']:,.0f} cases/s) — case.submit queued "
                        f"→ receipted | p50 {lat['p50_ms']:.1f}, p95 {lat['p95_ms']:.1f}, "
                        f"p99 {lat['p99_ms']:.1f} ms | | {check} |")
                    rows.append(
                        f"| {head}: … round trip: case created → handler's case.status stored"
                        f" | p50 {trip['p50_ms']:.1f}, p95 {trip['p95_ms']:.1f}, p99 "
                        f"{trip['p99_ms']:.1f} ms | | |")
            rss = max([data["sender_peak_rss_mib"], *data["receiver_peak_rss_mib"]])
            receivers = " + ".join(f"{r:.0f}" for r in data["receiver_peak_rss_mib"])
            rows.append(f"| {head}: peak RSS sender / receiver | "
                        f"{data['sender_peak_rss_mib']:.0f} / {receivers} MiB | | "
                        f"< {RSS_TARGET_MIB:.0f} MiB: {ok(rss < RSS_TARGET_MIB)} |")
    race = results.get("startup_race")
    if race:
        rows.append(f"| postgresql: two processes of one member started at once on a fresh "
                    f"database | {race['failed_starts']} of {2 * race['tries']} starts failed"
                    f"{': ' if race['errors'] else ''}"
                    f"{'; '.join(_error(e) for e in race['errors'])} | | must be 0 |")
    scaling = results["registry"]
    small = scaling[min(scaling, key=int)]
    for size, data in scaling.items():
        ratio = data["verify_us"] / small["verify_us"]
        rows.append(
            f"| registry of {int(size):,} members ({data['registry_jws_kib']:,.0f} KiB JWS): "
            f"verify one message / route one case / verify+load the version (memory held) | "
            f"{data['verify_us']:.0f} µs / {data['route_us']:.1f} µs / "
            f"{data['registry_load_ms']:,.0f} ms ({data['registry_rss_mib']:.0f} MiB held, "
            f"{data['registry_load_peak_mib']:.0f} MiB peak) | "
            f"{ratio:.2f} x 10 members | within ±{FLAT_TARGET:.0%}: "
            f"{ok(abs(ratio - 1) <= FLAT_TARGET)} |")
    return "\n".join(rows)


def key_figures(results: dict[str, Any]) -> dict[str, str]:
    """The figures the issue sets targets for, one line each, for comparing runs."""
    base = results["baselines"]
    http = base["http_posts_per_second"]
    out = {"HTTP baseline (bare aiohttp POSTs/s)": f"{http:,.0f}",
           "crypto baseline (raw Ed25519 sign+verify/s)":
               f"{base['crypto']['raw_sign_verify_per_second']:,.0f}"}
    for name, runs in results["backends"].items():
        one = runs["1 process"]
        msgs = one["peak"]["messages_per_second"]
        out[f"{name}: messages/s, both directions (x HTTP; target ≥ {TARGETS[name]})"] = (
            f"{msgs:,.0f} ({_r(msgs / http)})")
        out[f"{name}: cases/s complete (submit + status)"] = (
            f"{one['peak']['cases_per_second']:,.0f}")
        lat = one["at_50pct"]["submit_latency"]
        out[f"{name}: p50 / p95 / p99 at 50% of peak, ms (target p99 < 50)"] = (
            f"{lat['p50_ms']:.0f} / {lat['p95_ms']:.0f} / {lat['p99_ms']:.0f}")
        lat = one["at_90pct"]["submit_latency"]
        out[f"{name}: p50 / p95 / p99 at 90% of peak, ms"] = (
            f"{lat['p50_ms']:.0f} / {lat['p95_ms']:.0f} / {lat['p99_ms']:.0f}")
        cpu = one["peak"]["cpu_cores"]
        per = one["peak"]["wall_seconds"] / one["peak"]["cases"]
        out[f"{name}: CPU ms per case, sender / receiver"] = (
            f"{1000 * cpu['sender'] * per:.1f} / {1000 * sum(cpu['receivers']) * per:.1f}")
        out[f"{name}: whole machine busy at peak (cores of {os.cpu_count()})"] = (
            f"{cpu['machine']:.2f}")
        rss = max([one["sender_peak_rss_mib"], *one["receiver_peak_rss_mib"]])
        out[f"{name}: peak RSS, largest gateway, MiB (target < 150)"] = f"{rss:.0f}"
        if "transport only" in runs:
            t = runs["transport only"]["peak"]["messages_per_second"]
            out[f"{name}: transport only, messages/s (x HTTP)"] = f"{t:,.0f} ({_r(t / http)})"
        if "2 receiver processes" in runs:
            two = runs["2 receiver processes"]["peak"]["messages_per_second"]
            out[f"{name}: 2 receiving processes (1 delivering), x 1 process"] = (
                f"{two / msgs:.2f}")
        if "2 receiver processes, both delivering" in runs:
            both = runs["2 receiver processes, both delivering"]
            out[f"{name}: 2 receiving processes (both delivering), x 1 process"] = (
                f"{both['peak']['messages_per_second'] / msgs:.2f}")
            a = both["anomalies"]["receiver_outbox"]
            out[f"{name}: 2 processes both delivering: stored twice / dead / refused "
                f"(attempts beyond the first)"] = (
                f"{a['duplicate_receipts']} / {a['dead']} / {a['refused']} "
                f"({a['sent_more_than_once']})")
    race = results.get("startup_race")
    if race:
        out["postgresql: simultaneous starts that failed"] = (
            f"{race['failed_starts']} of {2 * race['tries']}")
    reg = results["registry"]
    small = reg[min(reg, key=int)]["verify_us"]
    out["verify µs per message at 10 / 1,000 / 3,000 members (target flat ±10%)"] = " / ".join(
        f"{reg[k]['verify_us']:.0f}" for k in sorted(reg, key=int)) + " (" + " / ".join(
        f"{reg[k]['verify_us'] / small:.2f}" for k in sorted(reg, key=int)) + ")"
    out["registry of 3,000: verify+load ms / MiB held"] = (
        f"{reg['3000']['registry_load_ms']:,.0f} / {reg['3000']['registry_rss_mib']:.0f}"
        if "3000" in reg else "")
    return out


def compare(paths: list[Path]) -> str:
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    figures = [key_figures(r) for r in runs]
    head = " | ".join(f"{r['machine']['when']}" for r in runs)
    rows = [f"| measure | {head} |", "|---" * (len(runs) + 1) + "|"]
    for key in figures[0]:
        rows.append(f"| {key} | " + " | ".join(f.get(key, "") for f in figures) + " |")
    return "\n".join(rows)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    count = args.count or (400 if quick else 1000)
    rate_seconds = 4.0 if quick else 8.0
    results: dict[str, Any] = {"machine": machine(), "quick": quick,
                               "settings": {"cases": count, "rate_seconds": rate_seconds,
                                            "body_bytes": BODY, "concurrency": CONCURRENCY,
                                            "item": ITEM, "mode": MODE},
                               "backends": {}, "baselines": {}}
    port = free_port()  # the receiver's port, later the bare server's
    token_bytes = 0
    profile = args.profile
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
    for name in args.backends.split(","):
        if args.workdir is not None:  # kept, with the gateways' logs and SQLite files
            folder = args.workdir / f"{name}-{time.strftime('%H%M%S')}"
            folder.mkdir(parents=True)
            holder: contextlib.AbstractContextManager[str] = contextlib.nullcontext(str(folder))
        else:
            holder = tempfile.TemporaryDirectory(prefix=f"tongban-bench-{name}-")
        with holder as tmp:
            step(f"{name}: one receiving process")
            runs = {"1 process": await federation_run(
                name, Path(tmp) / "one", port=port, processes=1, deliver_all=True, count=count,
                latency=profile is None and not args.peak_only, rate_seconds=rate_seconds,
                profile=profile)}
            token_bytes = token_bytes or runs["1 process"]["peak"]["token_bytes"]
            if profile is not None or args.peak_only:
                results["backends"][name] = runs
                continue
            step(f"{name}: transport only ({TRANSPORT_TYPE}: stored, no case machine)")
            runs["transport only"] = await federation_run(
                name, Path(tmp) / "transport", port=port, processes=1, deliver_all=True,
                count=count, latency=False, rate_seconds=rate_seconds, transport_only=True)
            if name == "postgresql":
                step(f"{name}: two processes of one member started at once, fresh database")
                results["startup_race"] = await startup_race(Path(tmp), port, 1 if quick else 3)
                step(f"{name}: two receiving processes, one of them delivering")
                runs["2 receiver processes"] = await federation_run(
                    name, Path(tmp) / "two", port=port, processes=2, deliver_all=False,
                    count=count, latency=False, rate_seconds=rate_seconds)
                step(f"{name}: two receiving processes, both delivering (stock config)")
                runs["2 receiver processes, both delivering"] = await federation_run(
                    name, Path(tmp) / "two-stock", port=port, processes=2, deliver_all=True,
                    count=count // 2, latency=False, rate_seconds=rate_seconds)
            results["backends"][name] = runs
    if profile is not None or args.peak_only:
        return results
    step("HTTP baseline")
    results["baselines"]["payload_bytes"] = token_bytes
    http = await http_baseline(port, 3 if quick else 6, token_bytes)
    results["baselines"]["http_posts_per_second"] = http.pop("posts_per_second")
    results["baselines"]["http_cpu"] = http
    step("crypto baseline")
    results["baselines"]["crypto"] = crypto_baseline(2 if quick else 4, token_bytes)
    step("registry scaling")
    results["registry"] = registry_scaling((10, 1000, 3000), rounds=3 if quick else 7,
                                           seconds=0.3 if quick else 0.5)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--quick", action="store_true",
                        help="400 cases per peak run (default 1,000) and shorter phases")
    parser.add_argument("--count", type=int, default=0, help="cases in each peak run")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "latest.json")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the gateways' folders (configs, logs, SQLite files) here "
                             "(default: a temporary folder, removed)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="only the peak runs, each gateway under py-spy; collapsed stacks "
                             "in DIR (summarise with python -m bench.profile_top DIR/*.txt)")
    parser.add_argument("--peak-only", action="store_true",
                        help="only the one-process peak run of each backend, printed as a "
                             "line (for measuring one change quickly; no baselines, no JSON)")
    parser.add_argument("--table", type=Path, default=None, metavar="JSON",
                        help="only print the table of an earlier run's JSON")
    parser.add_argument("--compare", type=Path, nargs="+", default=None, metavar="JSON",
                        help="only print the key figures of earlier runs side by side")
    args = parser.parse_args()
    if args.compare:
        print(compare(args.compare))
        return
    if args.table is not None:
        print(table(json.loads(args.table.read_text(encoding="utf-8"))))
        return
    results = asyncio.run(main_async(args))
    if args.profile is not None or args.peak_only:
        for name, runs in results["backends"].items():
            run = runs["1 process"]
            peak = run["peak"]
            print(f"{name}: {peak['messages_per_second']:,.0f} messages/s"
                  f"{' under py-spy' if args.profile is not None else ''}; CPU {_cpu(peak)}; "
                  f"per case {_per_case(peak, run)}")
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    previous = args.out.with_name("previous.json")
    if args.out.exists() and args.out.name == "latest.json":
        args.out.replace(previous)  # the run before, kept for comparing two runs
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    print(table(results))
    m = results["machine"]
    print(f"\n{m['cpu']}, {m['cores']} cores; Python {m['python']}, SQLite {m['sqlite']}, "
          f"PostgreSQL {m['postgresql']}; {results['settings']['cases']:,} cases per peak "
          f"run; JSON in {args.out}")


if __name__ == "__main__":
    main()
