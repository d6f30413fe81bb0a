"""Federation endpoints of PROTOCOL.md §4 and §8."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from gateway.appkeys import CLOCK, CONFIG, HOLDER, INBOX, KEYS
from trust.errors import ErrorCode, TongbanError

routes = web.RouteTableDef()


async def read_limited(request: web.Request, limit: int) -> bytes:
    """Read the body, refusing with 413 before parsing anything once it exceeds `limit`."""
    if request.content_length is not None and request.content_length > limit:
        raise TongbanError(f"body exceeds {limit} bytes", code=ErrorCode.TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise TongbanError(f"body exceeds {limit} bytes", code=ErrorCode.TOO_LARGE)
        chunks.append(chunk)
    return b"".join(chunks)


@routes.post("/federation/v1/messages")
async def post_message(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    raw = await read_limited(request, config.federation.max_message_bytes)
    if request.content_type != "application/jwt":
        raise TongbanError("Content-Type must be application/jwt", code=ErrorCode.MALFORMED)
    receipt = await request.app[INBOX].receive(raw)
    return web.Response(text=receipt.token, content_type="application/jwt")


@routes.get("/federation/v1/keys")
async def get_keys(request: web.Request) -> web.Response:
    keys = request.app[KEYS]
    keys.reload_if_changed()
    return web.json_response(keys.public_jwks(),
                             content_type="application/jwk-set+json")


@routes.get("/federation/v1/info")
async def get_info(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    snapshot = request.app[HOLDER].current
    expires = None
    if snapshot is not None:
        expires = datetime.fromtimestamp(snapshot.exp, UTC).isoformat().replace("+00:00", "Z")
    alliance = snapshot.claims.alliance if snapshot is not None else None
    return web.json_response({
        "member": config.member_id, "alliance": alliance,
        "registry_version": snapshot.version if snapshot is not None else None,
        "registry_expires_at": expires, "protocol": 1,
    })


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    holder = request.app[HOLDER]
    snapshot = holder.current
    fresh = snapshot is not None and not snapshot.is_expired(request.app[CLOCK]())
    return web.json_response({"status": "ok", "registry_fresh": fresh})
