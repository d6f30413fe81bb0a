"""SQL for the calls to the local case system, its references and the events applied."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.db.schema import adapter_state, local_calls, local_events, local_refs


@dataclass(frozen=True)
class LocalCall:
    id: int
    case_id: str
    kind: str
    payload: dict[str, Any]
    state: str
    attempts: int
    created_at: float
    last_error: str | None


def _call(row: Any) -> LocalCall:
    return LocalCall(row.id, row.case_id, row.kind, json.loads(row.payload), row.state,
                     row.attempts, row.created_at, row.last_error)


class LocalRepo:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @staticmethod
    async def enqueue(conn: AsyncConnection, *, case_id: str, kind: str,
                      payload: dict[str, Any], now: float) -> None:
        await conn.execute(insert(local_calls).values(
            case_id=case_id, kind=kind, state="pending", attempts=0, next_at=now,
            payload=json.dumps(payload, ensure_ascii=False), created_at=now))

    async def due(self, now: float, limit: int = 50) -> list[LocalCall]:
        """The oldest pending call of each case, if it is due: order per case is kept."""
        first = (select(func.min(local_calls.c.id).label("id"))
                 .where(local_calls.c.state == "pending")
                 .group_by(local_calls.c.case_id).subquery())
        async with self._engine.connect() as conn:
            rows = (await conn.execute(
                select(local_calls).where(and_(local_calls.c.id.in_(select(first.c.id)),
                                               local_calls.c.next_at <= now))
                .order_by(local_calls.c.id).limit(limit))).all()
        return [_call(r) for r in rows]

    async def list_calls(self, state: str | None = None) -> list[LocalCall]:
        query = select(local_calls).order_by(local_calls.c.id)
        if state is not None:
            query = query.where(local_calls.c.state == state)
        async with self._engine.connect() as conn:
            return [_call(r) for r in (await conn.execute(query)).all()]

    @staticmethod
    async def finish(conn: AsyncConnection, call_id: int) -> None:
        await conn.execute(update(local_calls).where(local_calls.c.id == call_id).values(
            state="done", attempts=local_calls.c.attempts + 1, last_error=None))

    async def failed(self, call_id: int, *, error: str, next_at: float, dead: bool) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(update(local_calls).where(local_calls.c.id == call_id).values(
                state="dead" if dead else "pending", attempts=local_calls.c.attempts + 1,
                last_error=error[:2000], next_at=next_at))

    async def retry_dead(self, now: float) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(update(local_calls)
                                        .where(local_calls.c.state == "dead")
                                        .values(state="pending", next_at=now, created_at=now))
        return int(result.rowcount)

    @staticmethod
    async def set_ref(conn: AsyncConnection, case_id: str, ref: str) -> None:
        found = (await conn.execute(select(local_refs.c.ref)
                                    .where(local_refs.c.case_id == case_id))).first()
        if found is None:
            await conn.execute(insert(local_refs).values(case_id=case_id, ref=ref))

    async def ref(self, case_id: str) -> str | None:
        async with self._engine.connect() as conn:
            value = (await conn.execute(select(local_refs.c.ref)
                                        .where(local_refs.c.case_id == case_id))).scalar()
        return None if value is None else str(value)

    @staticmethod
    async def seen(conn: AsyncConnection, event_id: str) -> bool:
        return (await conn.execute(select(local_events.c.event_id)
                                   .where(local_events.c.event_id == event_id))).first() \
            is not None

    @staticmethod
    async def record_event(conn: AsyncConnection, *, event_id: str, case_id: str, outcome: str,
                           now: float) -> None:
        await conn.execute(insert(local_events).values(event_id=event_id, case_id=case_id,
                                                       outcome=outcome[:2000], applied_at=now))

    async def cursor(self, name: str) -> str | None:
        async with self._engine.connect() as conn:
            value = (await conn.execute(select(adapter_state.c.cursor)
                                        .where(adapter_state.c.name == name))).scalar()
        return None if value is None else str(value)

    async def set_cursor(self, name: str, cursor: str | None) -> None:
        async with self._engine.begin() as conn:
            result = await conn.execute(update(adapter_state)
                                        .where(adapter_state.c.name == name)
                                        .values(cursor=cursor))
            if result.rowcount == 0:
                await conn.execute(insert(adapter_state).values(name=name, cursor=cursor))
