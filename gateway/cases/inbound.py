"""Case messages from the other gateway of a case: ordered by `seq`, checked, applied.

Runs inside the inbox transaction (gateway/federation/inbox.py), so a refused message leaves
nothing behind and an accepted one is stored together with its effects. A message that arrives
before its predecessor (a `seq` gap) is stored and held; it applies, in order, once the gap is
filled (DESIGN.md: "per-case seq gaps wait for the missing message").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.cases.applications import parse_application, parse_materials
from gateway.cases.model import Case
from gateway.cases.service import CaseService, Tx
from gateway.cases.states import (
    CaseState,
    InvalidTransition,
    Request,
    Side,
    check_request,
    find,
)
from gateway.federation.messages import InboundMessage, InvalidBody
from registry.document import Role
from registry.validation import InvalidInput
from trust.errors import ErrorCode, TongbanError, VerificationError

log = logging.getLogger(__name__)
S = CaseState


@dataclass(frozen=True)
class CaseMessage:
    """The parts of a verified message the case logic needs (also what a held one keeps)."""

    type: str
    iss: str
    jti: str
    case_id: str
    seq: int
    body: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "iss": self.iss, "jti": self.jti, "case": self.case_id,
                "seq": self.seq, "body": dict(self.body)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CaseMessage:
        return cls(type=data["type"], iss=data["iss"], jti=data["jti"], case_id=data["case"],
                   seq=int(data["seq"]), body=data["body"])


class CaseMessageHandler:
    """Serves every `case.*` type; registered on the app's HandlerRegistry."""

    case_bound = True
    sender_roles: ClassVar[frozenset[Role]] = frozenset()

    def __init__(self, service: CaseService) -> None:
        self._service = service
        # Destinations each stored message queued for, woken once its transaction commits.
        self._wakes: dict[str, set[str]] = {}

    def validate(self, body: Mapping[str, Any]) -> None:
        at = body.get("at")
        if not isinstance(at, int | float) or isinstance(at, bool):
            raise InvalidBody("body.at (the time of the transition, in seconds) is required")
        state = body.get("state")
        if state is not None and state not in {s.value for s in CaseState}:
            raise InvalidBody(f"body.state {state!r} is not a case state")

    async def apply(self, conn: AsyncConnection, message: InboundMessage) -> None:
        assert message.case_id is not None
        assert message.seq is not None
        msg = CaseMessage(type=message.type, iss=message.iss, jti=message.jti,
                          case_id=message.case_id, seq=message.seq, body=message.body)
        repo = self._service.repo
        last = await repo.last_applied(conn, msg.case_id, msg.iss)
        if msg.seq <= last:
            raise InvalidBody(f"seq {msg.seq} of this case was already applied")
        if msg.seq > last + 1:
            await repo.hold(conn, msg.case_id, msg.iss, msg.seq, msg.to_json(),
                            self._service._clock())
            log.info("case %s: seq %d from %s held until seq %d arrives", msg.case_id,
                     msg.seq, msg.iss, last + 1)
            return
        tx = Tx(conn)
        await apply_case_message(self._service, tx, msg)
        await repo.set_last_applied(conn, msg.case_id, msg.iss, msg.seq, first=last == 0)
        seq = msg.seq
        while (held := await repo.take_held(conn, msg.case_id, msg.iss, seq + 1)) is not None:
            seq += 1
            waiting = CaseMessage.from_json(held)
            try:
                await apply_case_message(self._service, tx, waiting)
            except TongbanError as exc:
                # It was receipted when it arrived; its refusal is recorded, not lost.
                await repo.add_event(conn, msg.case_id, event=waiting.type, from_state=None,
                                     to_state=None, actor=waiting.iss,
                                     at=self._service._clock(), jti=waiting.jti,
                                     detail={"refused": exc.detail})
                log.warning("case %s: held seq %d refused: %s", msg.case_id, seq, exc.detail)
            await repo.set_last_applied(conn, msg.case_id, msg.iss, seq)
        if tx.wake:
            self._wakes[message.jti] = tx.wake

    async def after_commit(self, message: InboundMessage) -> None:
        for dest in self._wakes.pop(message.jti, ()):
            self._service._notify(dest)
        if self._service.local is not None:
            self._service.local.wake()


async def apply_case_message(service: CaseService, tx: Tx, msg: CaseMessage) -> None:
    if msg.type == "case.submit":
        await _receive_submission(service, tx, msg)
        return
    case_ = await service.repo.get(tx.conn, msg.case_id, for_update=True)
    if case_ is None:
        raise InvalidTransition(f"no case {msg.case_id} here; it starts with case.submit")
    sender_side = Side.HANDLER if msg.iss == case_.handler else (
        Side.RECEIVER if msg.iss == case_.receiver else None)
    if sender_side is None or sender_side is case_.side:
        raise VerificationError(f"{msg.iss} is not the other side of this case",
                                code=ErrorCode.NOT_AUTHORIZED)
    body = dict(msg.body)
    at = float(body["at"])
    detail = {k: v for k, v in body.items() if k not in ("at", "applicant")}
    if case_.side is Side.HANDLER and msg.type in {r.value for r in Request} and \
            not (msg.type == "case.status" and "state" in body):
        await apply_request(service, tx, case_, Request(msg.type), body, jti=msg.jti, at=at,
                            requester=msg.iss)
        return
    if msg.type == "case.status" and "state" not in body:
        # A note from the handler: it applied a change the receiver asked for (delivery).
        if case_.side is not Side.RECEIVER:
            raise InvalidBody("case.status without state is a request to the handler")
        if isinstance(body.get("delivery"), dict):
            updated = replace(case_, data={**case_.data, "delivery": body["delivery"]},
                              updated_at=service._clock())
            await service.repo.save(tx.conn, updated)
        await service.repo.add_event(tx.conn, case_.case_id, event=msg.type,
                                     from_state=case_.state, to_state=None, actor=msg.iss,
                                     at=at, jti=msg.jti, detail=detail)
        return
    target = CaseState(body["state"]) if msg.type == "case.status" else None
    transition = find(msg.type, case_.state, target, sender_side)
    if msg.type == "case.deliver":
        expects = Side.RECEIVER if case_.delivery_method == "window" else Side.HANDLER
        if sender_side is not expects:
            raise InvalidTransition(f"the result goes by {case_.delivery_method}; "
                                    f"the {expects.value} delivers it")
    data: dict[str, Any] = {}
    if msg.type == "case.accept":
        data["receipt_no"] = body.get("receipt_no")
    elif msg.type == "case.supplement_request":
        data["supplement"] = detail
    elif msg.type == "case.conclude":
        data["outcome"] = detail
    elif msg.type == "case.deliver":
        data["delivered"] = detail
    elif msg.type == "case.evaluate":
        data["evaluation"] = detail
        level = body.get("level")
        if isinstance(level, int) and level <= 2:
            due = service.calendar.add_workdays(service.today(), service.settings.fix_days)
            data["fix_task"] = {"due": due.isoformat(), "status": "open"}
    if case_.side is Side.RECEIVER and isinstance(body.get("decision_due"), str):
        case_ = replace(case_, decision_due=body["decision_due"])
    await service._move(tx, case_, msg.type, transition.target,
                        owner=sender_side, actor=msg.iss, body=body, send=False, at=at,
                        jti=msg.jti, data=data)


async def apply_request(service: CaseService, tx: Tx, case_: Case, request: Request,
                        body: Mapping[str, Any], *, jti: str | None, at: float,
                        requester: str) -> Case:
    """The handler applies what the receiver asked for, and announces the transition."""
    assert case_.state is not None
    check_request(request, case_.state)
    detail = {k: v for k, v in body.items() if k not in ("at", "applicant")}
    await service.repo.add_event(tx.conn, case_.case_id, event=request.value,
                                 from_state=case_.state, to_state=None, actor=requester, at=at,
                                 jti=jti, detail=detail)
    me = service.me
    cause = {"cause": jti} if jti else {}
    if request is Request.WITHDRAW:
        return await service._move(tx, case_, "case.status", S.WITHDRAWN,
                                   owner=Side.HANDLER, actor=me, send=True,
                                   body={"reason": body.get("reason", ""), **cause})
    if request is Request.SUPPLEMENT:
        from gateway.cases.applications import Collector
        c = Collector()
        given = parse_materials(c, body.get("materials"))
        try:
            c.done()
        except InvalidInput as exc:
            raise InvalidBody(f"case.supplement: {exc.detail}") from None
        known = {m["code"]: m for m in case_.data.get("materials", [])}
        for m in given:
            known[m.code] = m.to_json()
        return await service._move(tx, case_, "case.status", S.SUBMITTED,
                                   owner=Side.HANDLER, actor=me, send=True, body=cause,
                                   data={"materials": list(known.values())})
    from gateway.cases.applications import Collector, parse_delivery
    c = Collector()
    delivery = parse_delivery(c, body.get("delivery"))
    try:
        c.done()
    except InvalidInput as exc:
        raise InvalidBody(f"case.status: {exc.detail}") from None
    updated = replace(case_, data={**case_.data, "delivery": delivery.to_json()},
                      updated_at=service._clock())
    await service.repo.save(tx.conn, updated)
    dest = updated.counterpart
    if dest is None:
        return updated
    # Confirm, so the receiver's copy changes only once the handler's has.
    from gateway.federation.outbox import enqueue
    entry = await enqueue(tx.conn, service._outbox, dest=dest, type_="case.status",
                          body={"delivery": delivery.to_json(), **cause,
                                "at": service._clock()},
                          now=service._clock(), case_id=case_.case_id)
    tx.wake.add(dest)
    await service.repo.add_event(tx.conn, case_.case_id, event="case.status",
                                 from_state=case_.state, to_state=None, actor=me,
                                 at=service._clock(), jti=entry.jti,
                                 detail={"delivery": delivery.to_json(), **cause})
    return updated


async def _receive_submission(service: CaseService, tx: Tx, msg: CaseMessage) -> None:
    """A new case for us to handle: re-checked here, never trusted because a peer sent it."""
    prefix = msg.case_id.split(":", 1)[0]
    if prefix != msg.iss:
        raise InvalidBody(f"case {msg.case_id} was not received by {msg.iss}: a case id "
                          "starts with the receiving member's id")
    if await service.repo.get(tx.conn, msg.case_id) is not None:
        raise InvalidTransition(f"case {msg.case_id} already exists here")
    body = dict(msg.body)
    try:
        app = parse_application({k: v for k, v in body.items() if k != "handler"},
                                today=service.today(), part=True)
    except InvalidInput as exc:
        raise InvalidBody(f"case.submit: {exc.detail}") from None
    item = service.catalog.get(str(body.get("item")))
    if item is None:
        raise InvalidBody(f"case.submit: item {body.get('item')!r} is not in the catalog")
    snapshot = service._holder.require_fresh()
    me_entry = snapshot.member(service.me)
    offered = next((i for i in (me_entry.items if me_entry else ()) if i.code == item.code),
                   None)
    if offered is None or app.mode not in {m.value for m in offered.modes}:
        raise InvalidBody(f"{service.me} does not handle {item.code} in mode {app.mode}")
    history = body.get("history") or []
    if not isinstance(history, list):
        raise InvalidBody("case.submit: history must be a list")
    identity = app.applicant.identity
    now = service._clock()
    case_ = Case(
        case_id=msg.case_id, side=Side.HANDLER, kind="single", mode=app.mode,
        receiver=msg.iss, handler=service.me, state=None,
        applicant_key=service.applicant_key(identity), applicant=app.applicant,
        data={"form": dict(app.form), "materials": [m.to_json() for m in app.materials],
              "delivery": app.delivery.to_json(), "loa": app.loa,
              "courier": list(app.courier), "parent": body.get("parent")},
        clock={}, created_at=now, updated_at=now, item_code=item.code)
    service.stage_new(tx, case_)  # inserted once its first transitions are applied
    # The window's steps, as the receiver recorded them, so both histories match.
    for i, step in enumerate(history):
        if not isinstance(step, Mapping) or not isinstance(step.get("event"), str):
            raise InvalidBody(f"case.submit: history[{i}] must be an event")
        transition = find(step["event"], case_.state, None, Side.RECEIVER)
        at = step.get("at")
        if not isinstance(at, int | float):
            raise InvalidBody(f"case.submit: history[{i}].at is required")
        await service.repo.add_event(tx.conn, case_.case_id, event=step["event"],
                                     from_state=case_.state, to_state=transition.target,
                                     actor=msg.iss, at=float(at),
                                     jti=None,
                                     detail=dict(step.get("detail") or {}))
        case_ = replace(case_, state=transition.target)  # written by the _move below
    target = S.FORWARDED if case_.state is S.FORMALLY_CHECKED else S.SUBMITTED
    case_ = await service._move(tx, case_, "case.submit", target, owner=Side.RECEIVER,
                                actor=msg.iss, body=body, send=False, at=float(body["at"]),
                                jti=msg.jti)
    await service.flush(tx)
    if service.certs is not None:
        await service.certs.request_checks(tx, case_)
