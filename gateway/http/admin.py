"""`/admin/v1`: what a member admin watches and mends, over HTTP (the CLI does the same).

Dead letters, the messages that could not be delivered within the retry horizon or were
refused for good, are listed with their last error and put back in the queue from here, as with
`tongban outbox list|retry`; the calls to the local case system likewise.
"""

from __future__ import annotations

from aiohttp import web

from gateway import appkeys as K
from gateway.cases.access import require_role
from gateway.db.local_repo import LocalRepo
from gateway.db.repos import OutboxEntry, OutboxState
from gateway.http.api import _actor
from gateway.numbers import LARGEST, whole_number
from trust.errors import ErrorCode, TongbanError

routes = web.RouteTableDef()
STATES = (OutboxState.PENDING, OutboxState.DELIVERED, OutboxState.DEAD)


def _entry(e: OutboxEntry) -> dict[str, object]:
    """No message bytes and no body: those carry personal data."""
    return {"id": e.id, "dest": e.dest, "type": e.type, "case_id": e.case_id, "seq": e.seq,
            "state": e.state, "attempts": e.attempts, "created_at": e.created_at,
            "last_error": e.last_error, "receipt_status": e.receipt_status}


PAGE = 500


def _whole_number(request: web.Request, name: str, *, default: int, most: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    number = whole_number(raw, most=most)
    if number is None:
        raise TongbanError(f"{name} must be a whole number up to {most}",
                           code=ErrorCode.INVALID_BODY)
    return number


@routes.get("/admin/v1/outbox")
async def outbox(request: web.Request) -> web.Response:
    require_role(await _actor(request), "admin", "auditor")
    state = request.query.get("state")
    if state is not None and state not in STATES:
        raise TongbanError(f"state must be one of {', '.join(STATES)}",
                           code=ErrorCode.INVALID_BODY)
    after = _whole_number(request, "after", default=0, most=LARGEST)
    limit = _whole_number(request, "limit", default=PAGE, most=PAGE)
    if limit == 0:
        raise TongbanError("limit must be at least 1", code=ErrorCode.INVALID_BODY)
    entries = await request.app[K.OUTBOX_REPO].list_entries(state=state, limit=limit,
                                                            after=after)
    # A full page may have more behind it: the client asks again from the last id it saw.
    following = entries[-1].id if len(entries) == limit else None
    return web.json_response({"messages": [_entry(e) for e in entries],
                              "next_after": following})


@routes.post("/admin/v1/outbox/{row_id}/retry")
async def retry(request: web.Request) -> web.Response:
    require_role(await _actor(request), "admin")
    raw = request.match_info["row_id"]
    row_id = whole_number(raw)
    if row_id is None:
        raise TongbanError("not an outbox id", code=ErrorCode.NOT_FOUND)
    count = await request.app[K.OUTBOX_REPO].retry_dead(now=request.app[K.CLOCK](),
                                                       row_id=row_id)
    if count == 0:
        raise TongbanError(f"outbox #{raw} is not a dead letter", code=ErrorCode.NOT_FOUND)
    request.app[K.DISPATCHER].notify()
    return web.json_response({"requeued": count})


@routes.post("/admin/v1/outbox/retry-dead")
async def retry_all(request: web.Request) -> web.Response:
    require_role(await _actor(request), "admin")
    count = await request.app[K.OUTBOX_REPO].retry_dead(now=request.app[K.CLOCK]())
    request.app[K.DISPATCHER].notify()
    return web.json_response({"requeued": count})


@routes.get("/admin/v1/local-calls")
async def local_calls(request: web.Request) -> web.Response:
    require_role(await _actor(request), "admin", "auditor")
    calls = await LocalRepo(request.app[K.ENGINE]).list_calls(request.query.get("state"))
    return web.json_response({"calls": [
        {"id": c.id, "case_id": c.case_id, "kind": c.kind, "state": c.state,
         "attempts": c.attempts, "last_error": c.last_error} for c in calls]})


@routes.post("/admin/v1/local-calls/retry-dead")
async def local_retry(request: web.Request) -> web.Response:
    require_role(await _actor(request), "admin")
    count = await LocalRepo(request.app[K.ENGINE]).retry_dead(request.app[K.CLOCK]())
    bridge = request.app.get(K.LOCAL)
    if bridge is not None:
        bridge.wake()
    return web.json_response({"requeued": count})
