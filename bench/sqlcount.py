"""Counting and timing the SQL statements of a gateway process, by kind and table (diagnostic).

`StatementCounter.attach(engine)` counts what reaches the driver (a cursor execute).
`StatementCounter.time_execute()` also times every `AsyncConnection.execute` call of the
process, from the statement object to the result: SQLAlchemy's compile and parameter work plus
the driver. The kind of a timed call is the one the driver saw last (named from the SQL text,
cached per text): naming it from the statement object (`get_final_froms`) compiled every SELECT
a second time and cost the measured process about a fifth of its CPU. On SQLite the driver
runs inline on the event loop (gateway/db/sqlite_inline.py), so
that time is CPU time of the loop; on PostgreSQL it includes the network round trip.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)


def statement_kind(sql: str) -> str:
    verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"
    match = _TABLE.search(sql)
    return f"{verb} {match[1]}" if match else verb


class StatementCounter:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.misses: Counter[str] = Counter()
        self.uncacheable: Counter[str] = Counter()
        self.seconds: dict[str, float] = {}
        self.calls: Counter[str] = Counter()
        self._kinds: dict[str, str] = {}
        # Kind of the last statement each (sync) connection sent: execute calls of several
        # connections interleave on PostgreSQL.
        self._last: dict[int, str] = {}

    def attach(self, engine: AsyncEngine) -> AsyncEngine:
        def count(conn: Any, _cursor: Any, statement: str, _params: Any, context: Any,
                  _many: bool) -> None:
            kind = self._kinds.get(statement)
            if kind is None:
                kind = self._kinds[statement] = statement_kind(statement)
            self._last[id(conn)] = kind
            self.counts[kind] += 1
            # Statements compiled afresh instead of taken from SQLAlchemy's compiled cache.
            hit = getattr(context, "cache_hit", None)
            if hit is not None and context.dialect.CACHE_MISS is hit:
                self.misses[kind] += 1
            elif hit is not None and hit in (context.dialect.NO_CACHE_KEY,
                                             context.dialect.CACHING_DISABLED):
                self.uncacheable[kind] += 1

        event.listen(engine.sync_engine, "before_cursor_execute", count)
        return engine

    def time_execute(self) -> None:
        original = AsyncConnection.execute
        seconds, calls, last = self.seconds, self.calls, self._last

        async def timed(conn: AsyncConnection, statement: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(conn, statement, *args, **kwargs)
            finally:
                sync = conn.sync_connection
                kind = (last.pop(id(sync), None) if sync is not None else None) or \
                    str(getattr(statement, "__visit_name__", "?")).upper()
                seconds[kind] = seconds.get(kind, 0.0) + time.perf_counter() - started
                calls[kind] += 1

        setattr(AsyncConnection, "execute", timed)  # noqa: B010

    def reset(self) -> None:
        self.counts.clear()
        self.misses.clear()
        self.uncacheable.clear()
        self.seconds.clear()
        self.calls.clear()

    def per(self, n: int) -> dict[str, float]:
        """Statements per case (or message), by kind."""
        if not n:
            return {}
        out = {k: v / n for k, v in self.counts.most_common()}
        return {"total": sum(self.counts.values()) / n,
                "compiled_afresh": sum(self.misses.values()) / n,
                "not_cacheable": sum(self.uncacheable.values()) / n, **out}

    def execute_us(self, n: int) -> dict[str, Any]:
        """Microseconds per case spent in `AsyncConnection.execute`, by kind, and per call."""
        if not n or not self.calls:
            return {}
        rows = {k: {"us_per_case": 1e6 * s / n, "us_per_call": 1e6 * s / self.calls[k],
                    "calls_per_case": self.calls[k] / n}
                for k, s in sorted(self.seconds.items(), key=lambda kv: -kv[1])}
        return {"total_us_per_case": 1e6 * sum(self.seconds.values()) / n, "by_kind": rows}

    def dump(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "seconds": dict(self.seconds),
                "calls": dict(self.calls), "misses": dict(self.misses),
                "uncacheable": dict(self.uncacheable)}
