"""Outgoing messages: durable queue, one delivery queue per destination (as Synapse does it).

A message is queued in the same transaction as the change that caused it (`enqueue`). Each
destination has one `PeerQueue` task. It sends the oldest pending message of every case in
parallel (so order within a case is kept and unrelated cases do not wait on each other), and
on a transient failure backs the whole destination off with exponential backoff and jitter
(tenacity's wait policy; the state lives in the `destinations` table, so it survives a restart).
Messages still undelivered after `dead_after` park as dead letters.

Signed bytes are stored before the first attempt and resent unchanged, so a receiver that stored
a message but whose answer was lost replies `duplicate`. Only once those bytes expire (exp =
iat + 300 s) is the message signed again, under a new `jti`; the receiver recognises the resend
by (`iss`, `case`, `seq`) and the content digest.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy.ext.asyncio import AsyncConnection
from tenacity import RetryCallState, wait_exponential_jitter

from gateway.config import DeliverySection
from gateway.db.repos import DestinationRepo, OutboxEntry, OutboxRepo
from gateway.federation.receipts import verify_receipt
from gateway.keystore import Signer
from gateway.registry_client import RegistryHolder
from trust import jws
from trust.clock import Clock
from trust.errors import TongbanError
from trust.keys import sha256_b64url

log = logging.getLogger(__name__)

# Answers that will not change by retrying: the message itself is wrong for the receiver.
PERMANENT_CODES = frozenset({"malformed", "invalid-body", "invalid-transition", "too-large",
                             "replay", "not-authorized", "wrong-audience", "digest-mismatch"})
RESIGN_MARGIN = 10  # seconds of validity a stored token must still have to be resent


async def enqueue(conn: AsyncConnection, repo: OutboxRepo, *, dest: str, type_: str,
                  body: dict[str, Any], now: float, case_id: str | None = None,
                  att: list[dict[str, Any]] | None = None) -> OutboxEntry:
    payload: dict[str, Any] = {"body": body}
    if att:
        payload["att"] = att
    return await repo.enqueue(conn, dest=dest, type_=type_, case_id=case_id, payload=payload,
                              now=now)


@dataclass(frozen=True)
class SendOutcome:
    delivered: bool
    permanent: bool = False
    error: str = ""


def endpoint_allowed(url: str, development_mode: bool) -> bool:
    """https always; plain http only to loopback or when development mode is on (§4)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if development_mode:
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DeliveryContext:
    """What every peer queue shares; passed explicitly instead of a god object."""

    def __init__(self, *, member_id: str, repo: OutboxRepo, destinations: DestinationRepo,
                 holder: RegistryHolder, signer: Signer, session: aiohttp.ClientSession,
                 settings: DeliverySection, message_ttl: int, development_mode: bool,
                 endpoint_overrides: dict[str, str], clock: Clock) -> None:
        self.member_id = member_id
        self.repo = repo
        self.destinations = destinations
        self.holder = holder
        self.signer = signer
        self.session = session
        self.settings = settings
        self.message_ttl = message_ttl
        self.development_mode = development_mode
        self.endpoint_overrides = endpoint_overrides
        self.clock = clock
        self._wait = wait_exponential_jitter(multiplier=settings.initial_backoff,
                                             max=settings.max_backoff,
                                             jitter=settings.initial_backoff)

    def backoff(self, failures: int) -> float:
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = failures
        return float(self._wait(state))


class PeerQueue:
    def __init__(self, dest: str, ctx: DeliveryContext) -> None:
        self.dest = dest
        self._ctx = ctx
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(seconds, 0.0))

    async def run(self) -> None:
        ctx = self._ctx
        while True:
            try:
                state = await ctx.destinations.get(self.dest)
                delay = state.retry_at - ctx.clock()
                if delay > 0:
                    await self._sleep(min(delay, ctx.settings.poll_interval))
                    continue
                batch = await ctx.repo.pending_for(self.dest, ctx.settings.concurrency * 8)
                if not batch:
                    await self._sleep(ctx.settings.poll_interval)
                    continue
                await self._send_round(batch, state.failures)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery loop for %s failed; retrying", self.dest)
                await self._sleep(ctx.settings.poll_interval)

    async def _send_round(self, batch: list[OutboxEntry], failures: int) -> None:
        ctx = self._ctx
        heads: list[OutboxEntry] = []
        seen_cases: set[str] = set()
        for entry in batch:
            key = entry.case_id or entry.jti
            if key in seen_cases:
                continue
            seen_cases.add(key)
            heads.append(entry)
            if len(heads) >= ctx.settings.concurrency:
                break
        outcomes = await asyncio.gather(*(self._deliver(e) for e in heads))
        transient = [o for o in outcomes if not o.delivered and not o.permanent]
        if transient:
            failures += 1
            retry_in = ctx.backoff(failures)
            await ctx.destinations.record_failure(self.dest, failures=failures,
                                                  retry_at=ctx.clock() + retry_in,
                                                  error=transient[0].error)
            log.warning("delivery to %s failed (%s); retry in %.1f s", self.dest,
                        transient[0].error, retry_in)
        elif failures:
            await ctx.destinations.record_success(self.dest, ctx.clock())

    async def _deliver(self, entry: OutboxEntry) -> SendOutcome:
        ctx = self._ctx
        now = ctx.clock()
        outcome = await self._attempt(entry, now)
        if outcome.delivered:
            return outcome
        dead = outcome.permanent or (now - entry.created_at) > ctx.settings.dead_after
        await ctx.repo.mark_attempt_failed(entry.id, error=outcome.error, now=now, dead=dead)
        if dead:
            log.error("message %s to %s parked as dead letter: %s", entry.jti, self.dest,
                      outcome.error)
            return SendOutcome(False, permanent=True, error=outcome.error)
        return outcome

    async def _attempt(self, entry: OutboxEntry, now: float) -> SendOutcome:
        ctx = self._ctx
        try:
            snapshot = ctx.holder.require_fresh()
        except TongbanError as exc:
            return SendOutcome(False, error=exc.detail)
        member = snapshot.member(self.dest)
        if member is None:
            return SendOutcome(False, error=f"{self.dest} not in the registry")
        if not member.is_active:
            return SendOutcome(False, error=f"{self.dest} is {member.status.value}")
        endpoint = ctx.endpoint_overrides.get(self.dest) or member.endpoint
        if not endpoint_allowed(endpoint, ctx.development_mode):
            return SendOutcome(False, permanent=True,
                               error=f"refusing plain http to non-loopback {endpoint}")
        token, jti = entry.token, entry.jti
        if token is None or entry.token_exp is None or entry.token_exp - now < RESIGN_MARGIN:
            if token is not None:
                jti = str(uuid.uuid4())  # expired bytes: a new message id for the new bytes
            iat = int(now)
            claims: dict[str, Any] = {
                "iss": ctx.member_id, "aud": self.dest, "jti": jti, "iat": iat,
                "exp": iat + ctx.message_ttl, "type": entry.type, **entry.payload,
            }
            if entry.case_id is not None:
                claims["case"] = entry.case_id
                claims["seq"] = entry.seq
            token = jws.sign(claims, ctx.signer.current(snapshot), jws.TokenType.MESSAGE)
            await ctx.repo.set_token(entry.id, jti=jti, token=token,
                                     token_exp=iat + ctx.message_ttl)
        digest = sha256_b64url(token.encode("ascii"))
        try:
            async with ctx.session.post(
                f"{endpoint}/federation/v1/messages", data=token.encode("ascii"),
                headers={"Content-Type": "application/jwt"},
                timeout=aiohttp.ClientTimeout(total=ctx.settings.request_timeout),
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return SendOutcome(False, error=f"{type(exc).__name__}: {exc}"[:300])
        if status != 200:
            code = _problem_code(text)
            return SendOutcome(False, permanent=code in PERMANENT_CODES,
                               error=f"HTTP {status} {code or ''}".strip())
        try:
            receipt = verify_receipt(text.strip(), snapshot=snapshot, receiver=self.dest,
                                     sender=ctx.member_id, for_jti=jti, digest=digest, now=now)
        except TongbanError as exc:
            return SendOutcome(False, error=f"receipt refused: {exc.detail}")
        await ctx.repo.mark_delivered(entry.id, receipt=receipt.token, status=receipt.status.value,
                                      now=ctx.clock())
        return SendOutcome(True)


def _problem_code(text: str) -> str | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    type_ = doc.get("type") if isinstance(doc, dict) else None
    if isinstance(type_, str) and type_.startswith("urn:tongban:error:"):
        return type_.removeprefix("urn:tongban:error:")
    return None


class Dispatcher:
    """Starts a `PeerQueue` per destination with pending messages and wakes it on new work."""

    def __init__(self, ctx: DeliveryContext) -> None:
        self._ctx = ctx
        self._queues: dict[str, PeerQueue] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()

    def notify(self, dest: str | None = None) -> None:
        """New work for `dest` (or some destination): deliver without waiting for the poll."""
        if dest is not None and dest in self._queues:
            self._queues[dest].wake()
        else:
            self._wake.set()

    async def peer_seen(self, dest: str) -> None:
        """A peer just talked to us, so it is up: forget its backoff (Synapse does the same)."""
        state = await self._ctx.destinations.get(dest)
        if state.failures:
            await self._ctx.destinations.record_success(dest, self._ctx.clock())
            self.notify(dest)

    def _ensure(self, dest: str) -> None:
        if dest not in self._queues:
            queue = PeerQueue(dest, self._ctx)
            self._queues[dest] = queue
            self._tasks[dest] = asyncio.create_task(queue.run(), name=f"peer-queue-{dest}")

    async def run(self) -> None:
        while True:
            try:
                for dest in await self._ctx.repo.pending_destinations():
                    self._ensure(dest)
                    self._queues[dest].wake()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox scan failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._ctx.settings.poll_interval)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
