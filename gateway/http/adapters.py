"""`POST /adapters/v1/events`: the local case system pushes what the authority did."""

from __future__ import annotations

from aiohttp import web

from adapters.base import AdapterError, PushesNotTaken, WebhookRefused
from gateway import appkeys as K
from gateway.http.federation import read_limited
from trust.errors import ErrorCode, TongbanError

routes = web.RouteTableDef()
MAX_WEBHOOK_BYTES = 1024 * 1024


@routes.post("/adapters/v1/events")
async def events(request: web.Request) -> web.Response:
    bridge = request.app.get(K.LOCAL)
    # No local system, or one that is polled: either way nothing here takes pushes, so both
    # are the same 404 (not a 422, which would blame the content of the push).
    if bridge is None:
        raise TongbanError("this member has no local case system: nothing here takes pushes",
                           code=ErrorCode.NOT_FOUND)
    body = await read_limited(request, MAX_WEBHOOK_BYTES)
    try:
        received = bridge.adapter.webhook(dict(request.headers), body)
    except PushesNotTaken as exc:
        raise TongbanError(str(exc), code=ErrorCode.NOT_FOUND) from None
    except WebhookRefused as exc:
        raise TongbanError(f"webhook refused: {exc}", code=ErrorCode.UNAUTHENTICATED) from None
    except AdapterError as exc:
        raise TongbanError(f"webhook not understood: {exc}",
                           code=ErrorCode.INVALID_BODY) from None
    outcomes = [await bridge.apply(event) for event in received]
    return web.json_response({"events": [{"id": o.event_id, "result": o.result}
                                         for o in outcomes]})
