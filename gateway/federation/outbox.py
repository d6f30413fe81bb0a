"""Outgoing messages: durable queue, one delivery queue per destination (as Synapse does it).

A message is queued in the same transaction as the change that caused it (`enqueue`). Each
destination has one `PeerQueue` task. It sends the oldest pending message of every case in
parallel (so order within a case is kept and unrelated cases do not wait on each other), and
on a transient failure backs the whole destination off with exponential backoff and jitter
(tenacity's wait policy; the state lives in the `destinations` table, so it survives a restart).
Messages still undelivered after `dead_after` park as dead letters.

A message is signed in the transaction that queues it (`MessageSealer`), so its bytes are stored
before the first attempt and resent unchanged: a receiver that stored a message but whose answer
was lost replies `duplicate`. Only once those bytes expire (exp =
iat + 300 s) is the message signed again, under a new `jti`; the receiver recognises the resend
by (`iss`, `case`, `seq`) and the content digest.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy.ext.asyncio import AsyncConnection
from tenacity import RetryCallState, wait_exponential_jitter

from gateway.config import DeliverySection
from gateway.db.batching import GroupCommitter, WriteCoalescer
from gateway.db.repos import Delivery, DestinationRepo, OutboxEntry, OutboxRepo, SignedCopy
from gateway.federation.receipts import verify_receipt
from gateway.keystore import Signer
from gateway.metrics import Metrics
from gateway.registry_client import RegistryHolder
from registry.snapshot import RegistrySnapshot
from trust import jws
from trust.clock import Clock
from trust.errors import ErrorCode, TongbanError
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


class MessageSealer:
    """Builds and signs the JWS of an outgoing message: at enqueue (`seal`, handed to
    `OutboxRepo`) and again at delivery when stored bytes are about to expire.

    Signing as the message is queued stores its bytes in the same transaction as the change
    that caused it, so a resend after a crash is byte-identical (answered `duplicate`) without
    a write and a commit wait before the first attempt. The token's `iat` is then the time the
    message was queued; a message that waits longer than `exp` allows (peer down) is signed
    again before it is sent.
    """

    def __init__(self, *, member_id: str, signer: Signer, holder: RegistryHolder,
                 message_ttl: int) -> None:
        self._member_id = member_id
        self._signer = signer
        self._holder = holder
        self._ttl = message_ttl

    def sign(self, *, dest: str, type_: str, payload: Mapping[str, Any], case_id: str | None,
             seq: int | None, jti: str, now: float,
             snapshot: RegistrySnapshot | None) -> tuple[str, int]:
        iat = int(now)
        claims: dict[str, Any] = {
            "iss": self._member_id, "aud": dest, "jti": jti, "iat": iat,
            "exp": iat + self._ttl, "type": type_, **payload,
        }
        if case_id is not None:
            claims["case"] = case_id
            claims["seq"] = seq
        token = jws.sign(claims, self._signer.current(snapshot), jws.TokenType.MESSAGE)
        return token, iat + self._ttl

    def seal(self, *, dest: str, type_: str, payload: dict[str, Any], case_id: str | None,
             seq: int | None, jti: str, now: float) -> tuple[str, int] | None:
        """Sign at enqueue; None (signed by the sender later) without a fresh registry, which
        names the key to sign with."""
        snapshot = self._holder.current
        if snapshot is None or snapshot.is_expired(now):
            return None
        return self.sign(dest=dest, type_=type_, payload=payload, case_id=case_id, seq=seq,
                         jti=jti, now=now, snapshot=snapshot)


@dataclass(frozen=True)
class SendOutcome:
    delivered: bool
    permanent: bool = False
    error: str = ""


class AttachmentUploader(Protocol):
    """Puts the materials a message lists at its destination first (PROTOCOL.md §5)."""

    async def upload(self, *, dest: str, endpoint: str, identity_endpoint: str,
                     att: Sequence[Mapping[str, Any]],
                     snapshot: RegistrySnapshot) -> SendOutcome | None:
        """None once `dest` holds every blob of `att`; otherwise why not (transient or not)."""
        ...

    def forget(self, dest: str, sha256s: Iterable[str]) -> None:
        """`dest` says it lacks these blobs after all: upload them again next time."""
        ...


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

    def __init__(self, *, member_id: str, repo: OutboxRepo, committer: GroupCommitter,
                 destinations: DestinationRepo,
                 holder: RegistryHolder, sealer: MessageSealer,
                 session: aiohttp.ClientSession, settings: DeliverySection,
                 development_mode: bool, endpoint_overrides: dict[str, str], clock: Clock,
                 uploader: AttachmentUploader | None = None,
                 metrics: Metrics | None = None) -> None:
        """`sealer`: the one `repo` signs with at enqueue; it signs again bytes that expired."""
        self.member_id = member_id
        self.repo = repo
        self.committer = committer
        self.signed_copies = WriteCoalescer(committer, repo.set_tokens)
        self.deliveries = WriteCoalescer(committer, repo.mark_delivered)
        self.destinations = destinations
        self.holder = holder
        self.sealer = sealer
        self.session = session
        self.settings = settings
        self.development_mode = development_mode
        self.endpoint_overrides = endpoint_overrides
        self.clock = clock
        self.uploader = uploader
        self.metrics = metrics
        # This process, as it claims outbox rows (several processes may share the outbox).
        self.owner = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wait = wait_exponential_jitter(multiplier=settings.initial_backoff,
                                             max=settings.max_backoff,
                                             jitter=settings.initial_backoff)

    def backoff(self, failures: int) -> float:
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = failures
        return float(self._wait(state))


class PeerQueue:
    """The delivery pipeline to one destination.

    Up to `delivery.concurrency` messages are in flight at once, never two of the same case,
    and a case's next message starts only after the previous one is settled (delivered or
    parked), so order within a case holds. A transient failure backs off the destination;
    nothing new starts until `retry_at`, and the failed message is retried first.
    """

    def __init__(self, dest: str, ctx: DeliveryContext) -> None:
        self.dest = dest
        self._ctx = ctx
        self._wake = asyncio.Event()
        self._buffer: dict[int, OutboxEntry] = {}
        self._max_seen = 0
        # task -> (case key, outbox id)
        self._in_flight: dict[asyncio.Task[tuple[SendOutcome, OutboxEntry]], tuple[str, int]] = {}
        self._failures = 0
        self._retry_at = 0.0
        self._rescan = True
        # Whether the outbox may hold rows the buffer lacks: something was queued for this
        # destination (`wake`), or the last claim filled its page. Without either, a refill
        # would be an empty claim transaction after every settled send.
        self._maybe_more = True
        # When the whole queue was last claimed again (`_refill` with `_rescan`): that renews
        # our claims, so it must come well within `claim_lease`, but not at every poll.
        self._rescanned_at = 0.0
        self._stopping = False  # graceful stop: sends in flight go on, no new one starts

    def wake(self, *, rescan: bool = False) -> None:
        if rescan:
            self._rescan = True
        self._maybe_more = True
        self._wake.set()

    def poll(self) -> None:
        """The dispatcher's periodic look: new rows, and now and then the whole queue.

        A busy queue used to claim its whole pending queue again at every poll (up to
        `concurrency` × 16 rows read and JSON-decoded, 10% of a busy sender's CPU). New rows of
        other processes have higher ids, so the cheap claim past `_max_seen` finds them; what
        only a full rescan finds (our claims renewed, rows below `_max_seen` requeued or freed
        by another process) waits at most a quarter of `claim_lease` on a busy queue. An idle
        queue rescans at every poll anyway (`_step`), and `Dispatcher.notify()` (a requeue
        from the admin API or console) still asks every queue for a full rescan.
        """
        settings = self._ctx.settings
        every = max(settings.poll_interval, settings.claim_lease / 4)
        self.wake(rescan=self._ctx.clock() - self._rescanned_at >= every)

    def stop_starting(self) -> list[asyncio.Task[tuple[SendOutcome, OutboxEntry]]]:
        """Graceful stop: start no new send; returns the sends in flight, which go on."""
        self._stopping = True
        self._wake.set()
        return list(self._in_flight)

    @property
    def backed_off(self) -> bool:
        return bool(self._failures or self._retry_at)

    async def reset_backoff(self) -> None:
        """The peer just proved it is up: forget its backoff.

        Without a backoff there is nothing to forget, and nothing to look at again: a rescan
        here, once per inbound message, re-read and re-decoded the whole pending queue.
        """
        if not self.backed_off:
            return
        self._failures, self._retry_at = 0, 0.0
        await self._ctx.destinations.record_success(self.dest, self._ctx.clock())
        self.wake(rescan=True)

    async def _idle(self, seconds: float) -> None:
        """Wait for new work, a finished send, or the timeout, whichever comes first."""
        self._wake.clear()
        waiters: set[asyncio.Future[Any]] = set(self._in_flight)
        wake = asyncio.ensure_future(self._wake.wait())
        waiters.add(wake)
        try:
            await asyncio.wait(waiters, timeout=max(seconds, 0.0),
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()

    async def run(self) -> None:
        ctx = self._ctx
        state = await ctx.destinations.get(self.dest)
        self._failures, self._retry_at = state.failures, state.retry_at
        try:
            while True:
                try:
                    await self._step()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("delivery loop for %s failed; retrying", self.dest)
                    await self._idle(ctx.settings.poll_interval)
        finally:
            for task in self._in_flight:
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _step(self) -> None:
        ctx = self._ctx
        await self._settle_finished()
        if self._stopping:  # only settle what is in flight (its outcome is stored already)
            await self._idle(ctx.settings.poll_interval)
            return
        waiting = self._retry_at - ctx.clock()
        if waiting > 0:
            await self._idle(min(waiting, ctx.settings.poll_interval))
            # Claims may have lapsed while we waited: take again from the database what we
            # still hold (or can), rather than send from memory what another process took.
            self._rescan = True
            return
        if self._rescan or (self._maybe_more and
                            len(self._buffer) < ctx.settings.concurrency * 4):
            await self._refill()
        started = self._start_eligible()
        if not self._in_flight:
            self._rescan = True  # idle: next time, look at the whole queue again
            await self._idle(ctx.settings.poll_interval)
        elif not started:
            await self._idle(ctx.settings.poll_interval)

    async def _refill(self) -> None:
        ctx = self._ctx
        if self._rescan:
            # Start over from the database (dead letters may have been requeued meanwhile),
            # keeping only what is in flight.
            flying = self._flight_ids()
            self._buffer = {k: v for k, v in self._buffer.items() if k in flying}
        after = 0 if self._rescan else self._max_seen
        limit = ctx.settings.concurrency * 16
        self._maybe_more = False  # a wake during the claim below sets it again
        if self._rescan:
            self._rescanned_at = ctx.clock()
        try:
            rows = await ctx.repo.claim_for(self.dest, limit, after,
                                            owner=ctx.owner, lease=ctx.settings.claim_lease,
                                            now=ctx.clock())
        except Exception:
            self._maybe_more = True
            raise
        if len(rows) >= limit:
            self._maybe_more = True
        for row in rows:
            if row.id not in self._buffer:
                self._buffer[row.id] = row
            self._max_seen = max(self._max_seen, row.id)
        if self._rescan:
            self._buffer = dict(sorted(self._buffer.items()))
        self._rescan = False

    def _flight_ids(self) -> set[int]:
        return {entry_id for _, entry_id in self._in_flight.values()}

    def _start_eligible(self) -> int:
        ctx = self._ctx
        busy_cases = {case for case, _ in self._in_flight.values()}
        busy_ids = self._flight_ids()
        seen: set[str] = set()
        started = 0
        for entry in self._buffer.values():
            if len(self._in_flight) >= ctx.settings.concurrency:
                break
            case = entry.case_id or f"-{entry.id}"
            if case in seen:
                continue  # an earlier message of this case is not settled yet
            seen.add(case)
            if case in busy_cases or entry.id in busy_ids:
                continue
            task = asyncio.create_task(self._deliver(entry))
            self._in_flight[task] = (case, entry.id)
            started += 1
        return started

    async def _settle_finished(self) -> None:
        ctx = self._ctx
        for task in [t for t in self._in_flight if t.done()]:
            del self._in_flight[task]
            outcome, entry = task.result()
            if outcome.delivered or outcome.permanent:
                self._buffer.pop(entry.id, None)
                if outcome.delivered and self._failures:
                    self._failures, self._retry_at = 0, 0.0
                    await ctx.destinations.record_success(self.dest, ctx.clock())
                continue
            self._buffer[entry.id] = entry  # keeps the stored token for the retry
            if self._retry_at <= ctx.clock():  # one backoff step per outage window
                self._failures += 1
                retry_in = ctx.backoff(self._failures)
                self._retry_at = ctx.clock() + retry_in
                await ctx.destinations.record_failure(self.dest, failures=self._failures,
                                                      retry_at=self._retry_at,
                                                      error=outcome.error)
                log.warning("delivery to %s failed (%s); retry in %.1f s", self.dest,
                            outcome.error, retry_in)

    async def _deliver(self, entry: OutboxEntry) -> tuple[SendOutcome, OutboxEntry]:
        ctx = self._ctx
        now = ctx.clock()
        outcome, entry = await self._attempt(entry, now)
        if outcome.delivered:
            return outcome, entry
        dead = outcome.permanent or (now - entry.created_at) > ctx.settings.dead_after
        if ctx.metrics is not None:
            ctx.metrics.message("out", entry.type, "dead" if dead else "retry")
        await ctx.committer.run(lambda conn: ctx.repo.mark_attempt_failed(
            conn, entry.id, error=outcome.error, now=now, dead=dead))
        if dead:
            log.error("message %s to %s parked as dead letter: %s", entry.jti, self.dest,
                      outcome.error)
            return SendOutcome(False, permanent=True, error=outcome.error), entry
        return outcome, entry

    async def _attempt(self, entry: OutboxEntry, now: float) -> tuple[SendOutcome, OutboxEntry]:
        ctx = self._ctx
        try:
            snapshot = ctx.holder.require_fresh()
        except TongbanError as exc:
            return SendOutcome(False, error=exc.detail), entry
        member = snapshot.member(self.dest)
        if member is None:
            return SendOutcome(False, error=f"{self.dest} not in the registry"), entry
        if not member.is_active:
            return SendOutcome(False, error=f"{self.dest} is {member.status.value}"), entry
        endpoint = ctx.endpoint_overrides.get(self.dest) or member.endpoint
        if not endpoint_allowed(endpoint, ctx.development_mode):
            return SendOutcome(False, permanent=True,
                               error=f"refusing plain http to non-loopback {endpoint}"), entry
        att = entry.payload.get("att")
        if att:  # materials first (§5), before signing: an upload may take a while
            if ctx.uploader is None:
                return SendOutcome(False, permanent=True,
                                   error="message lists materials but no blob store is set"), entry
            failed = await ctx.uploader.upload(dest=self.dest, endpoint=endpoint,
                                               identity_endpoint=member.endpoint, att=att,
                                               snapshot=snapshot)
            if failed is not None:
                return failed, entry
        if entry.token is None or entry.token_exp is None or \
                entry.token_exp - now < RESIGN_MARGIN:
            entry = await self._sign(entry, snapshot, now)
        token, jti = entry.token, entry.jti
        assert token is not None
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
            return SendOutcome(False, error=f"{type(exc).__name__}: {exc}"[:300]), entry
        if status != 200:
            code = _problem_code(text)
            if code == ErrorCode.MISSING_BLOB.value and att and ctx.uploader is not None:
                ctx.uploader.forget(self.dest, (a.get("sha256") for a in att))
            # The peer's detail says why (e.g. which field); the admin sees it in `outbox list`.
            detail = _problem_detail(text)
            error = f"HTTP {status} {code or ''}".strip() + (f": {detail}" if detail else "")
            return SendOutcome(False, permanent=code in PERMANENT_CODES, error=error), entry
        try:
            receipt = verify_receipt(text.strip(), snapshot=snapshot, receiver=self.dest,
                                     sender=ctx.member_id, for_jti=jti, digest=digest, now=now)
        except TongbanError as exc:
            if exc.code is ErrorCode.UNKNOWN_KEY:
                await ctx.holder.refresh_soon()  # the peer may have rotated its key
            return SendOutcome(False, error=f"receipt refused: {exc.detail}"), entry
        delivered_at = ctx.clock()
        if ctx.metrics is not None:
            ctx.metrics.message("out", entry.type, receipt.status.value)
            ctx.metrics.delivery_seconds.observe(max(delivered_at - entry.created_at, 0.0))
        await ctx.deliveries.add(Delivery(entry.id, receipt.token, receipt.status.value,
                                          at=delivered_at, token=token, jti=jti,
                                          dest=self.dest, type=entry.type,
                                          case_id=entry.case_id, by=ctx.owner))
        return SendOutcome(True), entry

    async def _sign(self, entry: OutboxEntry, snapshot: RegistrySnapshot,
                    now: float) -> OutboxEntry:
        """Sign the message and store the bytes before they leave, so a resend is identical."""
        ctx = self._ctx
        # Bytes that expired unanswered get a new message id: the same jti with other bytes
        # would be refused as a replay.
        jti = entry.jti if entry.token is None else str(uuid.uuid4())
        token, exp = ctx.sealer.sign(dest=self.dest, type_=entry.type, payload=entry.payload,
                                     case_id=entry.case_id, seq=entry.seq, jti=jti, now=now,
                                     snapshot=snapshot)
        await ctx.signed_copies.add(SignedCopy(entry.id, jti, token, exp))
        return dataclasses.replace(entry, jti=jti, token=token, token_exp=exp)


def _problem_code(text: str) -> str | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    type_ = doc.get("type") if isinstance(doc, dict) else None
    if isinstance(type_, str) and type_.startswith("urn:tongban:error:"):
        return type_.removeprefix("urn:tongban:error:")
    return None


def _problem_detail(text: str) -> str:
    try:
        doc = json.loads(text)
    except ValueError:
        return ""
    detail = doc.get("detail") if isinstance(doc, dict) else None
    return detail[:500] if isinstance(detail, str) else ""


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

    def backed_off(self, dest: str) -> bool:
        """Whether `peer_seen(dest)` would have anything to do (checked on every inbound
        message, so a task is started only when it has)."""
        queue = self._queues.get(dest)
        return queue is not None and queue.backed_off

    async def peer_seen(self, dest: str) -> None:
        """A peer just talked to us, so it is up: forget its backoff (Synapse does the same)."""
        queue = self._queues.get(dest)
        if queue is not None:  # no queue: nothing pending for it, so no backoff to forget
            await queue.reset_backoff()

    def _ensure(self, dest: str) -> None:
        if dest not in self._queues:
            queue = PeerQueue(dest, self._ctx)
            self._queues[dest] = queue
            self._tasks[dest] = asyncio.create_task(queue.run(), name=f"peer-queue-{dest}")

    async def run(self) -> None:
        notified = True
        while True:
            try:
                for dest in await self._ctx.repo.pending_destinations():
                    self._ensure(dest)
                    if notified:
                        # Look at the whole queue again: rows may have been requeued
                        # (dead-letter retry).
                        self._queues[dest].wake(rescan=True)
                    else:  # rows may have been queued by another process (`tongban send`)
                        self._queues[dest].poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox scan failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._ctx.settings.poll_interval)
                notified = True
            except TimeoutError:
                notified = False

    @property
    def owner(self) -> str:
        """This process as it claims and delivers outbox rows (`claimed_by`)."""
        return self._ctx.owner

    async def close(self, grace: float = 0.0) -> None:
        """Stop delivering: no new send starts, and those already on the wire get up to
        `grace` seconds to be answered and their receipts stored (cancelled, a send would be
        resent after the next start and answered `duplicate`). Then the claims on every
        undelivered message are released, so another process takes them over at once."""
        flying = [t for queue in self._queues.values() for t in queue.stop_starting()]
        if flying and grace > 0:
            log.info("stopping delivery: waiting up to %.1f s for %d message(s) in flight",
                     grace, len(flying))
            _, unfinished = await asyncio.wait(flying, timeout=grace)
            if unfinished:
                log.warning("stopping delivery: %d message(s) still in flight after %.1f s are "
                            "cancelled; they go out again after the next start",
                            len(unfinished), grace)
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        released = await self._ctx.repo.release(self._ctx.owner)
        if released:
            log.info("released %d undelivered message(s) for other processes", released)
