"""Case operations: what a portal, a window clerk, a handling officer or a peer can do to a case.

Every operation runs in one database transaction: the case row is locked, the transition is
checked against the shared table (`states.find`), the new state and the event are written, and
the message that tells the other side is queued in the outbox in the same transaction (DESIGN.md
reliability model). Nothing is sent before the commit, and nothing is half-applied on refusal.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.cases import clocks
from gateway.cases.applications import (
    Application,
    Collector,
    Delivery,
    Material,
    check_loa,
    materials_for,
    missing_materials,
    parse_delivery,
    parse_materials,
)
from gateway.cases.model import Applicant, Case, CaseEvent

if TYPE_CHECKING:
    from gateway.cases.certs import CertService
    from gateway.cases.local import LocalBridge
from gateway.cases.states import (
    FINAL,
    UNDECIDED,
    CaseState,
    InvalidTransition,
    Request,
    Side,
    check_request,
    find,
)
from gateway.cases.workdays import WorkCalendar
from gateway.db.case_repo import CaseRepo
from gateway.db.idempotency_repo import IdempotencyRecord, IdempotencyRepo
from gateway.db.repos import OutboxRepo
from gateway.federation.outbox import enqueue
from gateway.registry_client import RegistryHolder
from registry.catalog import Catalog, CatalogItem
from registry.document import Mode
from registry.routing import Route, route
from registry.validation import FieldError, InvalidInput
from trust import credentials
from trust.clock import Clock
from trust.errors import ErrorCode, RegistryError, TongbanError

log = logging.getLogger(__name__)

CERT_ID_RE = re.compile(r"^[A-Za-z0-9.:_-]{1,128}$")
CHINA = datetime.timezone(datetime.timedelta(hours=8))  # no DST: a fixed offset is exact
S = CaseState
T = TypeVar("T")
DONE = frozenset({S.CONCLUDED, S.DELIVERED, S.EVALUATED})
# How long an Idempotency-Key is remembered: portals retry within minutes; a day leaves room
# for a phone that comes back online the next morning. The clock scan sweeps older keys.
IDEMPOTENCY_RETENTION = 24 * 3600.0


class NotFound(TongbanError):
    code = ErrorCode.NOT_FOUND


class Forbidden(TongbanError):
    code = ErrorCode.FORBIDDEN


@dataclass(frozen=True)
class Actor:
    """Who is acting, as authenticated by the API layer (or a peer, or the gateway itself)."""

    kind: str  # applicant | portal | clerk | peer | system
    subject: str
    role: str | None = None
    loa: str | None = None
    applicant_key: str | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.subject}" if self.kind != "peer" else self.subject


SYSTEM = Actor(kind="system", subject="gateway")


class IdempotencyKeyReused(TongbanError):
    code = ErrorCode.IDEMPOTENCY_KEY_REUSED


@dataclass(frozen=True)
class IdempotencyKey:
    """A caller's Idempotency-Key and the fingerprint of the request it came with."""

    key: str
    fingerprint: str

    @classmethod
    def of_request(cls, key: str, request: Any) -> IdempotencyKey:
        """Fingerprint the request as parsed (JSON-able parts), so the same request
        re-serialised by a retrying client still matches and any changed field does not."""
        canonical = json.dumps(request, ensure_ascii=False, sort_keys=True,
                               separators=(",", ":"))
        return cls(key, credentials.fingerprint(canonical.encode("utf-8")))


@dataclass(frozen=True)
class Outcome:
    """A keyed write as its reply shows it; `replayed`: done by an earlier request (same key).

    `password`: the query password of a case just filed (None for other actions)."""

    case: Case
    password: str | None = None
    status: int = 201
    replayed: bool = False


@dataclass(frozen=True)
class CaseSettings:
    member_id: str
    supplement_notice_days: int = 5
    supplement_reply_days: int = 20
    fix_days: int = 15


@dataclass
class Tx:
    """One transaction: its connection and the destinations to wake once it commits."""

    conn: AsyncConnection
    wake: set[str] = field(default_factory=set)
    # New cases whose INSERT waits until their first transitions are applied (`stage_new`),
    # so a case that arrives and moves on at once is written once, not inserted and updated.
    unsaved: dict[str, Case] = field(default_factory=dict)


class CaseService:
    def __init__(self, *, engine: AsyncEngine, repo: CaseRepo, outbox: OutboxRepo,
                 catalog: Catalog, holder: RegistryHolder, clock: Clock,
                 calendar: WorkCalendar, settings: CaseSettings, pseudonym_secret: str,
                 notify: Callable[[str | None], None],
                 blob_present: Callable[[str], bool] | None = None) -> None:
        self._engine = engine
        self.repo = repo
        self._outbox = outbox
        self.catalog = catalog
        self._holder = holder
        self._clock = clock
        self.calendar = calendar
        self.settings = settings
        self._secret = pseudonym_secret
        self._notify = notify
        self._blob_present = blob_present
        self.certs: CertService | None = None  # set by the app once certificates are wired
        self.local: LocalBridge | None = None  # set by the app when an adapter is configured
        self.idempotency = IdempotencyRepo()

    @property
    def me(self) -> str:
        return self.settings.member_id

    def today(self) -> datetime.date:
        return datetime.datetime.fromtimestamp(self._clock(), CHINA).date()

    def applicant_key(self, identity: str) -> str:
        return credentials.pseudonym(self._secret, identity)

    async def _write(self, operation: Callable[[Tx], Awaitable[T]]) -> T:
        async with self._engine.begin() as conn:
            tx = Tx(conn)
            result = await operation(tx)
        self.after_commit(tx)
        return result

    write = _write

    def after_commit(self, tx: Tx) -> None:
        """Wake whoever has new work from a committed transaction."""
        for dest in tx.wake:
            self._notify(dest)
        if self.local is not None:
            self.local.wake()

    # --- reading ----------------------------------------------------------------------
    async def get(self, case_id: str) -> Case:
        async with self._engine.connect() as conn:
            found = await self.repo.get(conn, case_id, with_events=True)
        if found is None:
            raise NotFound(f"no case {case_id}")
        return found

    async def parts(self, case_id: str) -> list[Case]:
        async with self._engine.connect() as conn:
            return await self.repo.children(conn, case_id)

    async def list_cases(self, **filters: Any) -> list[Case]:
        async with self._engine.connect() as conn:
            return await self.repo.list_cases(conn, **filters)

    async def count_by_state(self) -> dict[str, int]:
        async with self._engine.connect() as conn:
            return await self.repo.count_by_state(conn)

    async def volume_since(self, since: float) -> list[tuple[float, str, str]]:
        async with self._engine.connect() as conn:
            return await self.repo.volume_since(conn, since)

    # --- writing --------------------------------------------------------------------------
    def stage_new(self, tx: Tx, case_: Case) -> None:
        """A new case, inserted by `flush` (at the latest when `_after_enter` runs code that
        may read it back); until then `_move` changes the staged copy instead of the row."""
        tx.unsaved[case_.case_id] = case_

    async def flush(self, tx: Tx) -> None:
        while tx.unsaved:
            _, case_ = tx.unsaved.popitem()
            await self.repo.insert(tx.conn, case_)

    async def _save(self, tx: Tx, case_: Case) -> None:
        if case_.case_id in tx.unsaved:
            tx.unsaved[case_.case_id] = case_
        else:
            await self.repo.save(tx.conn, case_)

    # --- the one place a case changes state --------------------------------------------
    async def _move(self, tx: Tx, case_: Case, event: str, target: CaseState, *,
                    owner: Side, actor: str, body: Mapping[str, Any] | None = None,
                    send: bool, at: float | None = None, jti: str | None = None,
                    att: list[dict[str, Any]] | None = None,
                    data: Mapping[str, Any] | None = None) -> Case:
        """Apply one transition (already authorised) and, if we own it, tell the other side.

        `actor` is who acted here (a clerk, a portal) when we own the transition; it travels
        as `by`. The event's actor is always a member id, so both copies record the same.
        """
        find(event, case_.state, target, owner)
        at = self._clock() if at is None else at
        body = dict(body or {})
        if owner is case_.side or case_.is_local:
            body.setdefault("by", actor)
            member = self.me
        else:
            member = actor
        if event == "case.status":
            body["state"] = target.value
        moved = replace(case_, state=target, updated_at=self._clock(),
                        data={**case_.data, **(data or {})})
        moved = self._enter(moved, case_.state, target)
        if moved.side is Side.HANDLER and moved.decision_due and \
                (event == "case.accept" or target is S.IN_REVIEW):
            # The decision date travels with the message, so the receiver shows the same.
            body.setdefault("decision_due", moved.decision_due)
        await self._save(tx, moved)
        detail = {k: v for k, v in body.items() if k not in ("at", "applicant")}
        dest = moved.counterpart
        if send and dest is not None:
            entry = await enqueue(tx.conn, self._outbox, dest=dest, type_=event,
                                  body={**body, "at": at}, now=self._clock(),
                                  case_id=moved.case_id, att=att)
            jti = entry.jti
            tx.wake.add(dest)
        await self.repo.add_event(tx.conn, moved.case_id, event=event,
                                  from_state=case_.state, to_state=target, actor=member, at=at,
                                  jti=jti, detail=detail)
        log.info("case %s: %s %s -> %s by %s", moved.case_id, event,
                 case_.state.value if case_.state else "-", target.value, member)
        return await self._after_enter(tx, moved)

    def _enter(self, case_: Case, source: CaseState | None, target: CaseState) -> Case:
        """Statutory clocks (行政许可法 arts. 32, 42, 45): kept by the handler side."""
        today = self.today()
        clock = dict(case_.clock)
        supplement_due, decision_due = case_.supplement_due, case_.decision_due
        count = case_.supplement_count
        if case_.side is Side.HANDLER:
            if target is S.HANDLER_RECEIVED:
                clock["received"] = today.isoformat()
                supplement_due = self.calendar.add_workdays(
                    today, self.settings.supplement_notice_days).isoformat()
            elif target is S.SUPPLEMENT_REQUIRED:
                count += 1
                supplement_due = self.calendar.add_workdays(
                    today, self.settings.supplement_reply_days).isoformat()
            elif target is S.ACCEPTED:
                clock["accepted"] = today.isoformat()
                supplement_due = None
            elif target is S.SUSPENDED:
                clock["pauses"] = [*clock.get("pauses", []), [today.isoformat(), None]]
            elif target is S.IN_REVIEW and source is S.SUSPENDED:
                pauses = [list(p) for p in clock.get("pauses", [])]
                if pauses and pauses[-1][1] is None:
                    pauses[-1][1] = today.isoformat()
                clock["pauses"] = pauses
            if target in (S.ACCEPTED, S.SUSPENDED, S.IN_REVIEW) and "accepted" in clock:
                decision_due = self._decision_due(case_, clock)
            if target in (S.SUBMITTED, S.FORWARDED):
                supplement_due = None
        if target in DONE or target in FINAL:
            if target is S.CONCLUDED and decision_due and today.isoformat() > decision_due:
                clock["late"] = True
            supplement_due = None
        moved = replace(case_, clock=clock, supplement_due=supplement_due,
                        decision_due=decision_due, supplement_count=count)
        return replace(moved, overdue=self._is_overdue(moved, today))

    def _decision_due(self, case_: Case, clock: Mapping[str, Any]) -> str | None:
        item = self.catalog.get(case_.item_code or "")
        days = item.decision_days if item else 20
        extension = item.extension_days if item else 10
        kind = "decision"
        if case_.mode == Mode.JOINT.value:
            kind, days, extension = "joint", 45, 15
        pauses = [clocks.Pause(datetime.date.fromisoformat(a),
                               datetime.date.fromisoformat(b) if b else None)
                  for a, b in clock.get("pauses", [])]
        result = clocks.deadline(clocks.ClockSpec(kind, days, extension),
                                 datetime.date.fromisoformat(clock["accepted"]), pauses,
                                 bool(clock.get("extended")), self.calendar)
        if result.due is None:
            return case_.decision_due  # paused: the last known date stands until resumed
        return result.due.isoformat()

    def _is_overdue(self, case_: Case, today: datetime.date) -> bool:
        iso = today.isoformat()
        if case_.state is S.HANDLER_RECEIVED and case_.supplement_due:
            return iso > case_.supplement_due  # no supplement notice within 5 working days
        if case_.state in (S.ACCEPTED, S.IN_REVIEW) and case_.decision_due:
            return iso > case_.decision_due
        return False

    async def _after_enter(self, tx: Tx, case_: Case) -> Case:
        """What a state sets off by itself."""
        if case_.side is Side.HANDLER and case_.state in (S.SUBMITTED, S.FORWARDED) and \
                self.local is None:
            # No local system: the case waits in the handling officers' queue (the API).
            return await self._move(tx, case_, "case.status", S.HANDLER_RECEIVED,
                                    owner=Side.HANDLER, actor=self.me, send=True)
        await self.flush(tx)  # what follows may read the case back
        if case_.side is Side.HANDLER and case_.state in (S.SUBMITTED, S.FORWARDED) and \
                self.local is not None:
            # handler_received waits until the local case system has the case.
            await self.local.case_arrived(tx, case_)
            return case_
        if case_.side is Side.HANDLER and case_.state is S.WITHDRAWN and \
                self.local is not None:
            await self.local.case_withdrawn(tx, case_, "withdrawn by the applicant")
        if (case_.side is Side.RECEIVER or case_.is_local) and case_.parent_id is not None:
            from gateway.cases.parents import on_part_changed
            await on_part_changed(self, tx, case_)
        return case_

    # --- creating cases on the receiving side -----------------------------------------
    def _route(self, item: CatalogItem, mode: str, applicant: Applicant,
               handler: str | None, *, allow_local: bool) -> Route:
        snapshot = self._holder.require_fresh()
        division = applicant.id_number[:6] if applicant.id_number else None
        return route(snapshot, self.catalog, item_code=item.code, mode=mode,
                     applicant_division=division, handler=handler,
                     receiver=None if allow_local else self.me)

    def _check_materials(self, materials: Sequence[Material],
                         into: Collector | None = None) -> None:
        c = into or Collector()
        for i, material in enumerate(materials):
            if material.sha256 and self._blob_present is not None and \
                    not self._blob_present(material.sha256):
                c.add(f"materials[{i}].sha256", "no such material uploaded to this gateway")
        if into is None:
            c.done()

    def plan(self, app: Application, *, intake: bool) -> list[Route]:
        """Route every part of an application, or refuse it with every reason at once."""
        c = Collector()
        routes: list[Route] = []
        for i, part in enumerate(app.parts):
            prefix = "" if app.kind == "single" else (
                f"items[{i}]." if app.kind == "bundle" else f"handlers[{i}].")
            try:
                item = self.catalog.require(part.item, field=f"{prefix}item"
                                            if app.kind == "bundle" else "item")
                if not intake:
                    check_loa(item, app.loa)
                if not intake and (app.kind != "joint" or i == 0):
                    missing = missing_materials(item, materials_for(item.code, app.materials))
                    if missing:
                        where = f" for {item.code}" if app.kind == "bundle" else ""
                        c.add("materials", f"missing required materials{where}: "
                                           + "; ".join(missing))
                if item.applicant != app.applicant.kind:
                    c.add("applicant.kind", f"{item.name} is for a {item.applicant} applicant")
                routes.append(self._route(item, app.mode, app.applicant, part.handler,
                                          allow_local=not intake and app.kind == "single"))
            except InvalidInput as exc:
                c.guard(exc)
            except RegistryError:
                raise  # a stale registry is 503 registry-stale, not a problem of the input
            except TongbanError as exc:
                c.add(getattr(exc, "field", None) or f"{prefix}handler", exc.detail)
        self._check_materials(app.materials, into=c)
        c.done()
        return routes

    def _new_case(self, *, app: Application, actor: Actor, kind: str, item: str | None,
                  handler: str | None, parent_id: str | None = None, step: int | None = None,
                  query_hash: str | None) -> Case:
        now = self._clock()
        identity = app.applicant.identity
        materials = app.materials if item is None or parent_id is None else \
            materials_for(item, app.materials)
        return Case(
            case_id=f"{self.me}:{uuid.uuid4()}",
            side=Side.HANDLER if handler == self.me else Side.RECEIVER, kind=kind,
            mode=app.mode,
            receiver=self.me, handler=handler, state=None,
            applicant_key=self.applicant_key(identity), applicant=app.applicant,
            data={"form": dict(app.form), "materials": [m.to_json() for m in materials],
                  "delivery": app.delivery.to_json(), "loa": app.loa,
                  "courier": list(app.courier)},
            clock={}, created_at=now, updated_at=now, item_code=item, parent_id=parent_id,
            step=step, portal_client=actor.subject if actor.kind == "portal" else None,
            query_password_hash=query_hash)

    def submit_body(self, case_: Case, history: Sequence[CaseEvent] = ()) -> dict[str, Any]:
        """The `case.submit` body: the application as the handler needs it to decide."""
        body: dict[str, Any] = {
            "item": case_.item_code, "mode": case_.mode,
            "applicant": case_.applicant.to_json(), "loa": case_.data.get("loa"),
            "form": case_.data.get("form", {}), "materials": case_.data.get("materials", []),
            "delivery": case_.data.get("delivery", {}),
        }
        if case_.data.get("courier"):
            body["courier"] = case_.data["courier"]
        if case_.parent_id:
            body["parent"] = case_.parent_id
        if history:
            body["history"] = [{"event": e.event, "at": e.at, "actor": e.actor,
                                "detail": dict(e.detail)} for e in history]
        return body

    @staticmethod
    def attachments(case_: Case) -> list[dict[str, Any]] | None:
        att = []
        for m in case_.data.get("materials", []):
            if m.get("sha256"):
                att.append({"sha256": m["sha256"], "size": m.get("size") or 0,
                            "media_type": m.get("media_type") or "application/octet-stream",
                            "name": m.get("name") or m["code"]})
        return att or None

    async def send_submit(self, tx: Tx, case_: Case, actor: str) -> Case:
        history: list[CaseEvent] = []
        if case_.state is not None:
            history = [e for e in await self.repo.events(tx.conn, case_.case_id)
                       if e.is_transition]
        return await self._move(tx, case_, "case.submit",
                                S.FORWARDED if case_.state is S.FORMALLY_CHECKED
                                else S.SUBMITTED,
                                owner=Side.RECEIVER, actor=actor,
                                body=self.submit_body(case_, history), send=True,
                                att=self.attachments(case_))

    async def submit(self, actor: Actor, app: Application, *,
                     idempotency: IdempotencyKey | None = None) -> Outcome:
        """An online application from the portal (全程网办), a joint case, or a bundle."""
        earlier = await self._earlier(actor, idempotency)
        if earlier is not None:
            return earlier
        if actor.kind == "applicant" and actor.applicant_key != \
                self.applicant_key(app.applicant.identity):
            raise Forbidden("an applicant can only apply for themselves")
        if actor.kind == "applicant" and actor.loa:
            app = replace(app, loa=actor.loa)
        if app.mode == Mode.PROXY.value:
            raise InvalidInput(FieldError("mode", "proxy cases start at a window "
                                                  "(POST /api/v1/window/cases)"))
        routes = self.plan(app, intake=False)

        async def create(tx: Tx, query_hash: str) -> Case:
            if app.kind == "single":
                case_ = self._new_case(app=app, actor=actor, kind="single",
                                       item=routes[0].item.code, handler=routes[0].handler,
                                       query_hash=query_hash)
                self.stage_new(tx, case_)
                return await self.send_submit(tx, case_, actor.label)
            from gateway.cases.parents import create_parent
            return await create_parent(self, tx, app, routes, actor, query_hash)

        return await self._file(actor, idempotency, create)

    async def window_intake(self, actor: Actor, app: Application,
                            identity_check: Mapping[str, Any], *,
                            idempotency: IdempotencyKey | None = None) -> Outcome:
        """The receiving window takes an application (异地代收): identity checked in person."""
        earlier = await self._earlier(actor, idempotency)
        if earlier is not None:
            return earlier
        if app.kind != "single" or app.mode != Mode.PROXY.value:
            raise InvalidInput(FieldError("mode", "the window takes single proxy cases"))
        routes = self.plan(app, intake=True)
        check_loa(routes[0].item, app.loa)

        async def create(tx: Tx, query_hash: str) -> Case:
            case_ = self._new_case(app=app, actor=actor, kind="single",
                                   item=routes[0].item.code, handler=routes[0].handler,
                                   query_hash=query_hash)
            await self.repo.insert(tx.conn, case_)
            return await self._move(tx, case_, "window.intake", S.RECEIVED_AT_WINDOW,
                                    owner=Side.RECEIVER, actor=actor.label, send=False,
                                    body={"identity_check": dict(identity_check),
                                          "route": routes[0].reason})

        return await self._file(actor, idempotency, create)

    def _query_password(self, actor: Actor, idempotency: IdempotencyKey | None) -> str:
        """Random, or for a keyed request derived from it, so a replay can repeat it.

        The fingerprint is part of the derivation: a portal that reuses a key once the gateway
        has forgotten it, for another applicant, must not hand out the first one's password."""
        if idempotency is None:
            return credentials.new_query_password()
        return credentials.derived_query_password(
            self._secret, f"{actor.label}\n{idempotency.key}\n{idempotency.fingerprint}")

    async def _recorded(self, actor: Actor,
                        idempotency: IdempotencyKey | None) -> IdempotencyRecord | None:
        """What an earlier request with this caller's key did, if there was one."""
        if idempotency is None:
            return None
        async with self._engine.connect() as conn:
            record = await self.idempotency.get(conn, caller=actor.label,
                                                key=idempotency.key)
        if record is not None and record.fingerprint != idempotency.fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for a different request; a new request "
                "needs a new key")
        return record

    async def _earlier(self, actor: Actor,
                       idempotency: IdempotencyKey | None) -> Outcome | None:
        """The case an earlier request with this caller's key filed, if there was one.

        Looked up before the application is checked, so a retry gets its case back even when
        the same application would now be refused (a stale registry, a full quota)."""
        record = await self._recorded(actor, idempotency)
        if record is None:
            return None
        return Outcome(case=await self.get(record.case_id),
                       password=self._query_password(actor, idempotency),
                       status=record.status, replayed=True)

    async def _once(self, actor: Actor, idempotency: IdempotencyKey | None, status: int,
                    op: Callable[[Tx], Awaitable[Case]]) -> tuple[Case, bool]:
        """Run `op` unless this caller's key already did; (the case, whether it had).

        The key is recorded in `op`'s transaction, so the two commit together; a concurrent
        request with the same key fails on the primary key, is rolled back, and answers with
        what the one that committed did."""
        record = await self._recorded(actor, idempotency)
        if record is not None:
            return await self.get(record.case_id), True

        async def keyed(tx: Tx) -> Case:
            case_ = await op(tx)
            if idempotency is not None:
                await self.idempotency.record(
                    tx.conn, caller=actor.label, key=idempotency.key,
                    fingerprint=idempotency.fingerprint, case_id=case_.case_id,
                    status=status, now=self._clock())
            return case_

        try:
            return await self._write(keyed), False
        except IntegrityError:
            record = await self._recorded(actor, idempotency)
            if record is None:
                raise
            log.info("concurrent retry with one Idempotency-Key: answered with case %s",
                     record.case_id)
            return await self.get(record.case_id), True

    async def _file(self, actor: Actor, idempotency: IdempotencyKey | None,
                    create: Callable[[Tx, str], Awaitable[Case]]) -> Outcome:
        """Create a case and, in the same transaction, remember the key that filed it."""
        password = self._query_password(actor, idempotency)
        query_hash = credentials.hash_password(password, n=2**14)
        case_, replayed = await self._once(actor, idempotency, 201,
                                           lambda tx: create(tx, query_hash))
        return Outcome(case=case_, password=password, replayed=replayed)

    async def sweep_idempotency_keys(self) -> int:
        """Forget Idempotency-Keys older than IDEMPOTENCY_RETENTION; how many were dropped."""
        async with self._engine.begin() as conn:
            return await self.idempotency.sweep(
                conn, before=self._clock() - IDEMPOTENCY_RETENTION)

    async def _locked(self, tx: Tx, case_id: str) -> Case:
        found = await self.repo.get(tx.conn, case_id, for_update=True)
        if found is None:
            raise NotFound(f"no case {case_id}")
        return found

    async def formal_check(self, actor: Actor, case_id: str,
                           materials: Any = None) -> tuple[Case, list[str]]:
        """形式审查: complete → formally_checked; else the list of what is missing, once."""
        c = Collector()
        extra = parse_materials(c, materials)
        c.done()

        async def op(tx: Tx) -> tuple[Case, list[str]]:
            case_ = self._require_side(await self._locked(tx, case_id), Side.RECEIVER)
            find("window.formal_check", case_.state, S.FORMALLY_CHECKED, Side.RECEIVER)
            known = parse_materials(Collector(), case_.data.get("materials", []))
            merged = _merge_materials(known, extra)
            self._check_materials(merged)
            item = self.catalog.require(case_.item_code or "")
            missing = missing_materials(item, merged)
            data = {"materials": [m.to_json() for m in merged]}
            if missing:
                await self.repo.save(tx.conn, replace(case_, data={**case_.data, **data},
                                                      updated_at=self._clock()))
                return case_, missing
            moved = await self._move(tx, case_, "window.formal_check", S.FORMALLY_CHECKED,
                                     owner=Side.RECEIVER, actor=actor.label, send=False,
                                     body={"complete": True}, data=data)
            return moved, []

        return await self._write(op)

    async def forward(self, actor: Actor, case_id: str, courier: Sequence[str] = ()) -> Case:
        async def op(tx: Tx) -> Case:
            case_ = self._require_side(await self._locked(tx, case_id), Side.RECEIVER)
            find("case.submit", case_.state, S.FORWARDED, Side.RECEIVER)
            if courier:
                case_ = replace(case_, data={**case_.data, "courier": list(courier)})
            return await self.send_submit(tx, case_, actor.label)

        return await self._write(op)

    # --- requests from the receiving side ---------------------------------------------
    async def withdraw(self, actor: Actor, case_id: str, reason: str, *,
                       idempotency: IdempotencyKey | None = None) -> Outcome:
        async def op(tx: Tx) -> Case:
            case_ = self._require_side(await self._locked(tx, case_id), Side.RECEIVER)
            if case_.kind != "single":
                from gateway.cases.parents import withdraw_parent
                return await withdraw_parent(self, tx, case_, actor, reason)
            if case_.state in (S.RECEIVED_AT_WINDOW, S.FORMALLY_CHECKED):
                return await self._move(tx, case_, "window.withdraw", S.WITHDRAWN,
                                        owner=Side.RECEIVER, actor=actor.label, send=False,
                                        body={"reason": reason})
            return await self._request(tx, case_, Request.WITHDRAW, actor, {"reason": reason})

        return await self._requested(actor, idempotency, op)

    async def _requested(self, actor: Actor, idempotency: IdempotencyKey | None,
                         op: Callable[[Tx], Awaitable[Case]]) -> Outcome:
        """A request to the handling side, sent once per Idempotency-Key: a retry after a
        lost reply would otherwise queue a second message the handler then refuses."""
        case_, replayed = await self._once(actor, idempotency, 202, op)
        return Outcome(case=case_, status=202, replayed=replayed)

    async def supplement(self, actor: Actor, case_id: str, materials: Any,
                         note: str = "", *,
                         idempotency: IdempotencyKey | None = None) -> Outcome:
        c = Collector()
        given = parse_materials(c, materials)
        if not given:
            c.add("materials", "list the materials supplied")
        c.done()
        self._check_materials(given)

        async def op(tx: Tx) -> Case:
            case_ = self._require_side(await self._locked(tx, case_id), Side.RECEIVER)
            att = [a for a in (m.attachment() for m in given) if a is not None]
            return await self._request(tx, case_, Request.SUPPLEMENT, actor,
                                       {"materials": [m.to_json() for m in given],
                                        "note": note}, att=att or None)

        return await self._requested(actor, idempotency, op)

    async def choose_delivery(self, actor: Actor, case_id: str, value: Any, *,
                              idempotency: IdempotencyKey | None = None) -> Outcome:
        c = Collector()
        delivery = parse_delivery(c, value, path="")
        c.done()

        async def change(tx: Tx, case_: Case) -> Case:
            data = {"delivery": delivery.to_json()}
            if case_.state in (None, S.RECEIVED_AT_WINDOW, S.FORMALLY_CHECKED):
                updated = replace(case_, data={**case_.data, **data},
                                  updated_at=self._clock())
                await self.repo.save(tx.conn, updated)
                return updated
            # The handler's copy changes first and confirms; ours follows its confirmation.
            return await self._request(tx, case_, Request.NOTE, actor, data)

        async def op(tx: Tx) -> Case:
            case_ = self._require_side(await self._locked(tx, case_id), Side.RECEIVER)
            if case_.kind == "single":
                return await change(tx, case_)
            if case_.state is not S.SUBMITTED:
                raise InvalidTransition(f"the {case_.kind} case is decided; delivery is fixed")
            for child in await self.repo.children(tx.conn, case_.case_id):
                if child.state is None or child.state in UNDECIDED:
                    await change(tx, child)
            updated = replace(case_, data={**case_.data, "delivery": delivery.to_json()},
                              updated_at=self._clock())
            await self.repo.save(tx.conn, updated)
            return updated

        return await self._requested(actor, idempotency, op)

    async def _request(self, tx: Tx, case_: Case, request: Request, actor: Actor,
                       body: dict[str, Any], att: list[dict[str, Any]] | None = None) -> Case:
        assert case_.state is not None
        check_request(request, case_.state)
        at = self._clock()
        body = {**body, "by": actor.label}
        if case_.is_local:
            from gateway.cases.inbound import apply_request
            return await apply_request(self, tx, case_, request, body, jti=None, at=at,
                                       requester=self.me)
        dest = case_.counterpart
        assert dest is not None
        entry = await enqueue(tx.conn, self._outbox, dest=dest, type_=request.value,
                              body={**body, "at": at}, now=at, case_id=case_.case_id, att=att)
        tx.wake.add(dest)
        await self.repo.add_event(tx.conn, case_.case_id, event=request.value,
                                  from_state=case_.state, to_state=None, actor=self.me,
                                  at=at, jti=entry.jti, detail=body)
        return case_

    # --- after the decision, on the receiving side -----------------------------------
    async def handover(self, actor: Actor, case_id: str) -> Case:
        """The result handed over at the receiving window (审批结果送达)."""
        async def op(tx: Tx) -> Case:
            case_ = self._require_side(await self._locked(tx, case_id), Side.RECEIVER)
            if case_.kind != "single":
                from gateway.cases.parents import deliver_parent
                return await deliver_parent(self, tx, case_, actor)
            if case_.delivery_method != "window":
                raise InvalidTransition(f"the result goes by {case_.delivery_method}; "
                                        "the handling member delivers it")
            return await self._move(tx, case_, "case.deliver", S.DELIVERED,
                                    owner=Side.RECEIVER, actor=actor.label, send=True,
                                    body={"method": "window"})

        return await self._write(op)

    async def evaluate(self, actor: Actor, case_id: str, level: Any, comment: Any) -> Case:
        """好差评: five levels; 1-2 are bad reviews that open a fix task at the handler."""
        c = Collector()
        if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 5:
            c.add("level", "must be 1 (非常不满意) to 5 (非常满意)")
        if comment is not None and (not isinstance(comment, str) or len(comment) > 1000):
            c.add("comment", "must be text of at most 1000 characters")
        c.done()

        async def op(tx: Tx) -> Case:
            case_ = self._require_side(await self._locked(tx, case_id), Side.RECEIVER)
            body = {"level": level, "comment": comment or ""}
            if case_.kind != "single":
                from gateway.cases.parents import evaluate_parent
                return await evaluate_parent(self, tx, case_, actor, body)
            return await self._move(tx, case_, "case.evaluate", S.EVALUATED,
                                    owner=Side.RECEIVER, actor=actor.label, send=True,
                                    body=body, data={"evaluation": body})

        return await self._write(op)

    # --- the handling authority ------------------------------------------------------
    async def decide(self, actor: Actor, case_id: str, action: str,
                     body: Mapping[str, Any]) -> Case:
        """Accept, reject, ask for supplements, review, suspend, resume, conclude, deliver."""
        return await self._write(lambda tx: self.decide_tx(tx, actor, case_id, action, body))

    async def decide_tx(self, tx: Tx, actor: Actor, case_id: str, action: str,
                        body: Mapping[str, Any]) -> Case:
        """`decide` inside the caller's transaction (the local system's events)."""
        c = Collector()
        event, target, payload = _decision(c, action, body)
        c.done()

        async def op(tx: Tx) -> Case:
            case_ = self._require_side(await self._locked(tx, case_id), Side.HANDLER)
            data: dict[str, Any] = {}
            extra = dict(payload)
            if event == "case.accept":
                extra.setdefault("receipt_no", _receipt_no(self.me, case_))
                data["receipt_no"] = extra["receipt_no"]
            if event == "case.supplement_request":
                data["supplement"] = extra
            if event == "case.conclude":
                data["outcome"] = extra
            if event == "case.deliver":
                if case_.delivery_method == "window":
                    raise InvalidTransition("the applicant collects the result at the "
                                            "receiving window; it hands it over")
                extra["method"] = case_.delivery_method
                data["delivered"] = extra
            moved = await self._move(tx, case_, event, target, owner=Side.HANDLER,
                                     actor=actor.label, send=True, body=extra, data=data)
            certificate = extra.get("certificate")
            if event == "case.conclude" and extra.get("outcome") == "approved" and \
                    certificate and self.certs is not None:
                await self.certs.issue(tx, moved, certificate)
            return moved

        return await op(tx)

    async def acknowledge(self, tx: Tx, case_id: str, actor: Actor) -> None:
        """The local system has the case (again): the handler tells the receiver."""
        case_ = await self._locked(tx, case_id)
        if case_.state in (S.SUBMITTED, S.FORWARDED):
            await self._move(tx, case_, "case.status", S.HANDLER_RECEIVED, owner=Side.HANDLER,
                             actor=actor.label, send=True)

    def _require_side(self, case_: Case, side: Side) -> Case:
        if case_.side is not side and not case_.is_local:
            raise InvalidTransition(f"this gateway is the {case_.side.value} of case "
                                    f"{case_.case_id}; that action belongs to the "
                                    f"{side.value}")
        return case_

    # --- clocks ------------------------------------------------------------------------
    async def scan_clocks(self) -> dict[str, int]:
        """Close cases whose supplement time ran out; flag overdue ones. Run periodically."""
        today = self.today()
        closed = flagged = 0
        async with self._engine.connect() as conn:
            open_cases = await self.repo.open_handler_cases(
                conn, [S.HANDLER_RECEIVED, S.SUPPLEMENT_REQUIRED, S.ACCEPTED, S.IN_REVIEW])
        for case_ in open_cases:
            if case_.state is S.SUPPLEMENT_REQUIRED and case_.supplement_due and \
                    today.isoformat() > case_.supplement_due:
                async def timeout(tx: Tx, cid: str = case_.case_id) -> None:
                    await self._timeout(tx, cid)
                await self._write(timeout)
                closed += 1
                continue
            overdue = self._is_overdue(case_, today)
            if overdue != case_.overdue:
                async def flag(tx: Tx, cid: str = case_.case_id, value: bool = overdue) -> None:
                    current = await self._locked(tx, cid)
                    await self.repo.save(tx.conn, replace(current, overdue=value))
                await self._write(flag)
                flagged += int(overdue)
        return {"closed": closed, "overdue": flagged}

    async def _timeout(self, tx: Tx, case_id: str) -> None:
        case_ = await self._locked(tx, case_id)
        if case_.state is not S.SUPPLEMENT_REQUIRED:
            return
        await self._move(tx, case_, "case.status", S.CLOSED, owner=Side.HANDLER,
                         actor=self.me, send=True, body={"reason": "supplement_timeout"})


def _merge_materials(known: Sequence[Material], extra: Sequence[Material]) -> list[Material]:
    merged = {m.code: m for m in known}
    for m in extra:
        merged[m.code] = m
    return list(merged.values())


def _receipt_no(member: str, case_: Case) -> str:
    """受理回执号: member, date, and a short unique part of the case id."""
    day = datetime.datetime.fromtimestamp(case_.updated_at, CHINA).strftime("%Y%m%d")
    return f"{member[3:]}{day}{case_.case_id[-8:].upper()}"


def _decision(c: Collector, action: str,
              body: Mapping[str, Any]) -> tuple[str, CaseState, dict[str, Any]]:
    def text(key: str, required: bool = True) -> str | None:
        value = body.get(key)
        if value is None or value == "":
            if required:
                c.add(key, "is required")
            return None
        limit = 64 if key == "receipt_no" else 2000
        if not isinstance(value, str) or len(value) > limit:
            c.add(key, f"must be text of at most {limit} characters")
            return None
        return value

    if action == "accept":
        receipt = text("receipt_no", required=False)
        return "case.accept", S.ACCEPTED, ({"receipt_no": receipt} if receipt else {})
    if action == "reject":
        return "case.reject", S.REJECTED, {"reason": text("reason")}
    if action == "supplement-request":
        materials = body.get("materials")
        if not isinstance(materials, list) or not 0 < len(materials) <= 50 or \
                not all(isinstance(m, str) and 0 < len(m) <= 200 for m in materials):
            c.add("materials", "list every missing material at once (一次性告知), "
                               "up to 50 names of at most 200 characters")
        return ("case.supplement_request", S.SUPPLEMENT_REQUIRED,
                {"reason": text("reason"), "materials": materials})
    if action == "review":
        return "case.status", S.IN_REVIEW, {}
    if action == "suspend":
        procedure = body.get("procedure")
        if procedure not in ("hearing", "inspection", "expert_review", "other"):
            c.add("procedure", "must be hearing, inspection, expert_review or other")
        return "case.status", S.SUSPENDED, {"reason": text("reason"), "procedure": procedure}
    if action == "resume":
        return "case.status", S.IN_REVIEW, {}
    if action == "conclude":
        outcome = body.get("outcome")
        if outcome not in ("approved", "denied"):
            c.add("outcome", "must be approved or denied")
        payload: dict[str, Any] = {"outcome": outcome, "result": text("result")}
        cert = body.get("certificate")
        if cert is not None:
            if not isinstance(cert, Mapping) or not isinstance(cert.get("id"), str) or \
                    not CERT_ID_RE.match(cert["id"]):
                c.add("certificate.id", "an e-certificate id: 1-128 of A-Z a-z 0-9 . : _ -")
            elif outcome != "approved":
                c.add("certificate", "only an approved decision issues a certificate")
            else:
                payload["certificate"] = {"id": cert["id"]}
                if isinstance(cert.get("name"), str) and cert["name"]:
                    payload["certificate"]["name"] = cert["name"][:200]
        return "case.conclude", S.CONCLUDED, payload
    if action == "deliver":
        tracking = text("tracking", required=False)
        return "case.deliver", S.DELIVERED, ({"tracking": tracking} if tracking else {})
    c.add("action", "unknown action")
    return "", S.CLOSED, {}


__all__ = ["SYSTEM", "Actor", "CaseService", "CaseSettings", "Delivery", "Forbidden",
           "NotFound", "Tx"]
