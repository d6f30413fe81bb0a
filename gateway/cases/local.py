"""The bridge between the handling gateway and its authority's own case system.

Outbound, every call the local system needs (a new case, supplied materials, a withdrawal) is
queued in the same transaction as the case change that caused it, then made by a worker that
keeps order per case, retries with exponential backoff and jitter, and stops calling a system
that keeps failing (a circuit breaker), so a slow local system never holds up the federation and
nothing is lost while it is down. Inbound, what the authority did (polled, or pushed by webhook)
is applied to the case exactly once per event id, through the same domain function a handling
officer's API call uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from tenacity import RetryCallState, wait_exponential_jitter

from adapters.base import ACTIONS, AdapterError, LocalCase, LocalEvent, RegionAdapter
from gateway.cases.model import Case
from gateway.cases.service import Actor, CaseService, Tx
from gateway.config import AdapterSection
from gateway.db.local_repo import LocalCall, LocalRepo
from gateway.metrics import Metrics
from registry.validation import mask_numbers
from trust.clock import Clock
from trust.errors import TongbanError

log = logging.getLogger(__name__)


class CircuitBreaker:
    """Open after `failures` failures in a row; let one call through after `reset` seconds."""

    def __init__(self, failures: int, reset: float, clock: Clock) -> None:
        self._limit = failures
        self._reset = reset
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0

    @property
    def open(self) -> bool:
        return self._failures >= self._limit and self._clock() < self._open_until

    def success(self) -> None:
        self._failures = 0

    def failure(self) -> None:
        self._failures += 1
        if self._failures >= self._limit:
            self._open_until = self._clock() + self._reset


@dataclass(frozen=True)
class Outcome:
    event_id: str
    result: str  # applied | duplicate | refused: ...


class LocalBridge:
    def __init__(self, *, adapter: RegionAdapter, repo: LocalRepo, service: CaseService,
                 settings: AdapterSection, clock: Clock) -> None:
        self.adapter = adapter
        self._repo = repo
        self._service = service
        self._settings = settings
        self._clock = clock
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_reset, clock)
        self._wait = wait_exponential_jitter(multiplier=settings.initial_backoff,
                                             max=settings.max_backoff,
                                             jitter=settings.initial_backoff)
        self._wake = asyncio.Event()
        self.actor = Actor(kind="system", subject=f"adapter:{adapter.name}")
        self.metrics: Metrics | None = None

    # --- what the case service asks for, inside its transaction -------------------------
    async def case_arrived(self, tx: Tx, case_: Case) -> None:
        if case_.supplement_count > 0:
            await self._repo.enqueue(tx.conn, case_id=case_.case_id, kind="supplement",
                                     payload={"materials": list(case_.data.get("materials",
                                                                               []))},
                                     now=self._clock())
        else:
            await self._repo.enqueue(tx.conn, case_id=case_.case_id, kind="submit",
                                     payload=_local_case(case_), now=self._clock())

    async def case_withdrawn(self, tx: Tx, case_: Case, reason: str) -> None:
        await self._repo.enqueue(tx.conn, case_id=case_.case_id, kind="withdraw",
                                 payload={"reason": reason}, now=self._clock())

    def wake(self) -> None:
        self._wake.set()

    # --- outbound worker ---------------------------------------------------------------
    def _backoff(self, attempts: int) -> float:
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = max(attempts, 1)
        return float(self._wait(state))

    async def process_due(self) -> int:
        """Make every due call once; returns how many succeeded."""
        done = 0
        for call in await self._repo.due(self._clock()):
            if self.breaker.open:
                break
            try:
                await self._make(call)
            except AdapterError as exc:
                # Only a system that does not answer trips the breaker: a permanent refusal
                # (a 4xx, a case the mapping cannot express) is about one call, and counting
                # it would stop every other case's calls.
                if exc.transient:
                    self.breaker.failure()
                if self.metrics is not None:
                    self.metrics.adapter_errors.labels(call.kind, str(exc.transient)).inc()
                age = self._clock() - call.created_at
                dead = not exc.transient or age > self._settings.dead_after
                said = mask_numbers(str(exc))  # a local error may echo the applicant's data
                await self._repo.failed(call.id, error=said, dead=dead,
                                        next_at=self._clock() + self._backoff(
                                            call.attempts + 1))
                log.log(logging.ERROR if dead else logging.WARNING,
                        "local %s of case %s failed%s: %s", call.kind, call.case_id,
                        " for good" if dead else "; retrying", said)
                continue
            self.breaker.success()
            done += 1
        return done

    async def _make(self, call: LocalCall) -> None:
        ref = await self._send(call)

        async def record(tx: Tx) -> None:
            await self._repo.finish(tx.conn, call.id)
            if call.kind == "submit":
                await self._repo.set_ref(tx.conn, call.case_id, ref)
            if call.kind in ("submit", "supplement"):
                await self._service.acknowledge(tx, call.case_id, self.actor)

        await self._service.write(record)

    async def _send(self, call: LocalCall) -> str:
        """Make the adapter call; returns the local reference.

        An adapter is a plugin: any exception but `AdapterError` is its bug, and is turned
        into a transient `AdapterError` so the call still backs off and is parked after
        `dead_after`, instead of escaping the worker loop, which would retry it every second
        and hold up every call queued behind it.
        """
        try:
            if call.kind == "submit":
                return await self.adapter.submit(LocalCase(**call.payload))
            ref = await self._repo.ref(call.case_id) or ""
            if not ref:
                raise AdapterError(f"case {call.case_id} has no local reference yet",
                                   transient=True)
            if call.kind == "supplement":
                await self.adapter.supplement(ref, call.case_id, call.payload["materials"])
            else:
                await self.adapter.withdraw(ref, call.case_id, call.payload["reason"])
            return ref
        except AdapterError:
            raise
        except Exception as exc:
            log.exception("the %s adapter failed on the local %s of case %s",
                          self.adapter.name, call.kind, call.case_id)
            raise AdapterError(f"the {self.adapter.name} adapter failed: "
                               f"{type(exc).__name__}", transient=True) from None

    async def run(self) -> None:
        while True:
            try:
                await self.process_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("local call worker failed; retrying")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)

    # --- inbound -----------------------------------------------------------------------
    async def apply(self, event: LocalEvent) -> Outcome:
        """Apply one event of the local system, once."""
        event_id = f"{self.adapter.name}:{event.event_id}"
        if event.action not in ACTIONS:
            return await self._refused(event_id, event, f"unknown action {event.action!r}")

        async def op(tx: Tx) -> str:
            if await self._repo.seen(tx.conn, event_id):
                return "duplicate"
            # The local system can decide before the worker has recorded that the submit
            # succeeded (a webhook racing the submit's answer): deciding proves it has the
            # case, so take that as the acknowledgement, or the event would be refused for
            # good as a transition from `submitted`. A no-op once acknowledged; rolled back
            # with the rest if the decision is refused.
            await self._service.acknowledge(tx, event.case_id, self.actor)
            await self._service.decide_tx(tx, self.actor, event.case_id, event.action,
                                          dict(event.body))
            await self._repo.record_event(tx.conn, event_id=event_id, case_id=event.case_id,
                                          outcome="applied", now=self._clock())
            return "applied"

        try:
            return Outcome(event_id, await self._service.write(op))
        except IntegrityError:
            return Outcome(event_id, "duplicate")  # applied meanwhile by another path
        except TongbanError as exc:
            return await self._refused(event_id, event, exc.detail)

    async def _refused(self, event_id: str, event: LocalEvent, reason: str) -> Outcome:
        """Keep the refusal, so the same event is not tried again and an admin can see it."""
        log.warning("local event %s for case %s refused: %s", event_id, event.case_id, reason)

        async def op(tx: Tx) -> None:
            if not await self._repo.seen(tx.conn, event_id):
                await self._repo.record_event(tx.conn, event_id=event_id,
                                              case_id=event.case_id,
                                              outcome=f"refused: {reason}", now=self._clock())

        with contextlib.suppress(IntegrityError):
            await self._service.write(op)
        return Outcome(event_id, f"refused: {reason}")

    async def poll_once(self) -> int:
        cursor = await self._repo.cursor(self.adapter.name)
        # Checked after the cursor read, right before the call: checked before it, a poll could
        # pass a closed breaker, wait for the database while the worker's calls open it, and
        # call the local system anyway (a second probe when the breaker half-opens).
        if self.breaker.open:
            return 0
        try:
            events, next_cursor = await self.adapter.poll(cursor)
        except AdapterError as exc:
            if exc.transient:  # as for calls: a bad answer is not a system that is down
                self.breaker.failure()
            log.warning("polling the local system failed: %s", mask_numbers(str(exc)))
            return 0
        self.breaker.success()
        applied = 0
        for event in events:
            outcome = await self.apply(event)
            applied += outcome.result == "applied"
        if next_cursor != cursor:
            await self._repo.set_cursor(self.adapter.name, next_cursor)
        return applied

    async def poll_forever(self) -> None:
        while True:
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("polling the local system failed; retrying")
            await asyncio.sleep(self._settings.poll_interval)


def _local_case(case_: Case) -> dict[str, Any]:
    return {"case_id": case_.case_id, "item_code": case_.item_code or "", "mode": case_.mode,
            "receiver": case_.receiver, "applicant": case_.applicant.to_json(),
            "form": dict(case_.data.get("form", {})),
            "materials": list(case_.data.get("materials", [])),
            "delivery": dict(case_.data.get("delivery", {})),
            "received_at": case_.created_at}
