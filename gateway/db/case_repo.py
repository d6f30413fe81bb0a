"""SQL for cases, their events, and inbound ordering. Callers pass the transaction."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.cases.model import Applicant, Case, CaseEvent
from gateway.cases.states import CaseState, Side
from gateway.db.schema import case_events, case_held, case_inbound, cases


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _state(value: str | None) -> CaseState | None:
    return None if value is None else CaseState(value)


def _case(row: Any) -> Case:
    return Case(
        case_id=row.case_id, side=Side(row.side), kind=row.kind, mode=row.mode,
        receiver=row.receiver, handler=row.handler, state=_state(row.state),
        applicant_key=row.applicant_key, applicant=Applicant.from_json(json.loads(row.applicant)),
        data=json.loads(row.data), clock=json.loads(row.clock), created_at=row.created_at,
        updated_at=row.updated_at, item_code=row.item_code, parent_id=row.parent_id,
        step=row.step, portal_client=row.portal_client,
        query_password_hash=row.query_password_hash, decision_due=row.decision_due,
        supplement_due=row.supplement_due, overdue=bool(row.overdue),
        supplement_count=row.supplement_count)


def _event(row: Any) -> CaseEvent:
    return CaseEvent(n=row.n, event=row.event, from_state=_state(row.from_state),
                     to_state=_state(row.to_state), actor=row.actor, at=row.at, jti=row.jti,
                     detail=json.loads(row.detail))


# The statements of the federation path, built once with bound parameters: building a Core
# statement per call (and computing its cache key) cost about twice as much as executing it
# (measured on SQLite: 170 µs built per call, 57 µs prebuilt, for a one-row SELECT).
_INSERT_CASE = insert(cases)
_GET_CASE = select(cases).where(cases.c.case_id == bindparam("key"))
_GET_CASE_FOR_UPDATE = _GET_CASE.with_for_update()  # serializes transitions (PostgreSQL)
_SAVE_CASE = update(cases).where(cases.c.case_id == bindparam("key"))  # SET from the params
_ADD_EVENT = insert(case_events).values(
    n=select(func.coalesce(func.max(case_events.c.n), 0) + 1)
    .where(case_events.c.case_id == bindparam("n_case_id")).scalar_subquery()
).returning(case_events.c.n)
_INBOUND_KEY = and_(case_inbound.c.case_id == bindparam("key_case"),
                    case_inbound.c.iss == bindparam("key_iss"))
_LAST_APPLIED = select(case_inbound.c.last_applied).where(_INBOUND_KEY)
_INSERT_INBOUND = insert(case_inbound)
_UPDATE_INBOUND = update(case_inbound).where(_INBOUND_KEY)
_HELD_KEY = and_(case_held.c.case_id == bindparam("key_case"),
                 case_held.c.iss == bindparam("key_iss"), case_held.c.seq == bindparam("key_seq"))
_TAKE_HELD = select(case_held.c.message).where(_HELD_KEY)
_DELETE_HELD = delete(case_held).where(_HELD_KEY)


class CaseRepo:
    async def insert(self, conn: AsyncConnection, case_: Case) -> None:
        await conn.execute(_INSERT_CASE, {
            "case_id": case_.case_id, "side": case_.side.value, "kind": case_.kind,
            "parent_id": case_.parent_id, "step": case_.step, "item_code": case_.item_code,
            "mode": case_.mode, "receiver": case_.receiver, "handler": case_.handler,
            "state": case_.state.value if case_.state else None,
            "applicant_key": case_.applicant_key,
            "applicant": _dumps(case_.applicant.to_json()),
            "portal_client": case_.portal_client,
            "query_password_hash": case_.query_password_hash,
            "data": _dumps(case_.data), "clock": _dumps(case_.clock),
            "decision_due": case_.decision_due, "supplement_due": case_.supplement_due,
            "overdue": int(case_.overdue), "supplement_count": case_.supplement_count,
            "created_at": case_.created_at, "updated_at": case_.updated_at})

    async def get(self, conn: AsyncConnection, case_id: str, *, for_update: bool = False,
                  with_events: bool = False) -> Case | None:
        query = _GET_CASE_FOR_UPDATE if for_update else _GET_CASE
        row = (await conn.execute(query, {"key": case_id})).first()
        if row is None:
            return None
        found = _case(row)
        if with_events:
            from dataclasses import replace
            found = replace(found, events=tuple(await self.events(conn, case_id)))
        return found

    async def save(self, conn: AsyncConnection, case_: Case) -> None:
        """Write back what a transition may change; identity columns never change."""
        await conn.execute(_SAVE_CASE, {
            "key": case_.case_id, "state": case_.state.value if case_.state else None,
            "data": _dumps(case_.data), "clock": _dumps(case_.clock),
            "decision_due": case_.decision_due, "supplement_due": case_.supplement_due,
            "overdue": int(case_.overdue), "supplement_count": case_.supplement_count,
            "updated_at": case_.updated_at, "handler": case_.handler})

    async def add_event(self, conn: AsyncConnection, case_id: str, *, event: str,
                        from_state: CaseState | None, to_state: CaseState | None, actor: str,
                        at: float, jti: str | None, detail: dict[str, Any]) -> CaseEvent:
        # One statement: the next number is computed in the INSERT (callers hold the case row,
        # so numbers of one case never race).
        n = (await conn.execute(_ADD_EVENT, {
            "n_case_id": case_id, "case_id": case_id, "event": event,
            "from_state": from_state.value if from_state else None,
            "to_state": to_state.value if to_state else None, "actor": actor, "at": at,
            "jti": jti, "detail": _dumps(detail)})).scalar_one()
        return CaseEvent(int(n), event, from_state, to_state, actor, at, jti, detail)

    async def events(self, conn: AsyncConnection, case_id: str) -> list[CaseEvent]:
        rows = (await conn.execute(select(case_events).where(case_events.c.case_id == case_id)
                                   .order_by(case_events.c.n))).all()
        return [_event(r) for r in rows]

    async def children(self, conn: AsyncConnection, parent_id: str) -> list[Case]:
        rows = (await conn.execute(select(cases).where(cases.c.parent_id == parent_id)
                                   .order_by(cases.c.step, cases.c.case_id))).all()
        return [_case(r) for r in rows]

    async def list_cases(self, conn: AsyncConnection, *, applicant_key: str | None = None,
                   states: Iterable[CaseState] | None = None, side: Side | None = None,
                   top_level: bool = False, overdue_first: bool = True,
                   limit: int = 200) -> list[Case]:
        query = select(cases)
        if applicant_key is not None:
            query = query.where(cases.c.applicant_key == applicant_key)
        if states is not None:
            query = query.where(cases.c.state.in_([s.value for s in states]))
        if side is not None:
            query = query.where(cases.c.side == side.value)
        if top_level:
            query = query.where(cases.c.parent_id.is_(None))
        order: list[Any] = []
        if overdue_first:
            order.append(case((cases.c.overdue == 1, 0), else_=1))
        order.append(cases.c.created_at.desc())
        rows = (await conn.execute(query.order_by(*order).limit(limit))).all()
        return [_case(r) for r in rows]

    async def volume_since(self, conn: AsyncConnection,
                           since: float) -> list[tuple[float, str, str]]:
        """(created_at, mode, receiving member) of every top-level case created since then,
        for the console's daily volume chart."""
        rows = (await conn.execute(
            select(cases.c.created_at, cases.c.mode, cases.c.receiver)
            .where((cases.c.created_at >= since) & cases.c.parent_id.is_(None))
            .order_by(cases.c.created_at))).all()
        return [(float(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def count_by_state(self, conn: AsyncConnection) -> dict[str, int]:
        rows = (await conn.execute(select(cases.c.state, func.count())
                                   .group_by(cases.c.state))).all()
        return {str(r[0]): int(r[1]) for r in rows}

    # --- inbound order -----------------------------------------------------------------
    async def last_applied(self, conn: AsyncConnection, case_id: str, iss: str) -> int:
        value = (await conn.execute(_LAST_APPLIED, {"key_case": case_id,
                                                   "key_iss": iss})).scalar()
        return int(value or 0)

    async def set_last_applied(self, conn: AsyncConnection, case_id: str, iss: str,
                               seq: int, *, first: bool = False) -> None:
        """`first`: the caller saw no record yet (last applied 0), so one INSERT does."""
        row = {"case_id": case_id, "iss": iss, "last_applied": seq}
        if first:
            await conn.execute(_INSERT_INBOUND, row)
            return
        result = await conn.execute(_UPDATE_INBOUND, {"key_case": case_id, "key_iss": iss,
                                                      "last_applied": seq})
        if result.rowcount == 0:
            await conn.execute(_INSERT_INBOUND, row)

    async def hold(self, conn: AsyncConnection, case_id: str, iss: str, seq: int,
                   message: dict[str, Any], now: float) -> None:
        await conn.execute(insert(case_held).values(case_id=case_id, iss=iss, seq=seq,
                                                    message=_dumps(message), held_at=now))

    async def take_held(self, conn: AsyncConnection, case_id: str, iss: str,
                        seq: int) -> dict[str, Any] | None:
        key = {"key_case": case_id, "key_iss": iss, "key_seq": seq}
        raw = (await conn.execute(_TAKE_HELD, key)).scalar()
        if raw is None:
            return None
        await conn.execute(_DELETE_HELD, key)
        loaded: dict[str, Any] = json.loads(raw)
        return loaded

    async def held_count(self, conn: AsyncConnection, case_id: str) -> int:
        return int((await conn.execute(select(func.count()).select_from(case_held)
                                       .where(case_held.c.case_id == case_id))).scalar_one())

    async def open_handler_cases(self, conn: AsyncConnection,
                                 states: Sequence[CaseState]) -> list[Case]:
        """Cases whose statutory clocks run here (the handler side)."""
        rows = (await conn.execute(select(cases).where(and_(
            cases.c.side == Side.HANDLER.value,
            cases.c.state.in_([s.value for s in states]))))).all()
        return [_case(r) for r in rows]
