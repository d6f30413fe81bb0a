"""Used request-token ids (`tongban-req+jwt`): one row per token, until the token expires.

The primary key on `jti` makes a second use fail with an IntegrityError, also between several
gateway processes sharing one database. A token whose `exp` has passed is refused as `expired`
before its `jti` is looked at, so its row is no longer needed and is pruned (a minute later).
"""

from __future__ import annotations

from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.db.schema import request_jtis

_INSERT = insert(request_jtis)
PRUNE_EVERY = 60.0  # seconds between two prunes in one process
PRUNE_MARGIN = 60  # keep rows this long past `exp`: processes' clocks may differ a little


class RequestJtiRepo:
    def __init__(self) -> None:
        self._last_prune = float("-inf")

    async def use(self, conn: AsyncConnection, *, jti: str, iss: str, exp: int,
                  now: float) -> None:
        """Record `jti` as used; raises IntegrityError if it already was."""
        if now - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now
            await conn.execute(delete(request_jtis).where(
                request_jtis.c.exp < int(now) - PRUNE_MARGIN))
        await conn.execute(_INSERT, {"jti": jti, "iss": iss, "exp": exp})
