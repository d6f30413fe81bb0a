"""The operator's registry endpoints (PROTOCOL.md §3); other members answer 404."""

from __future__ import annotations

from aiohttp import web

from gateway.appkeys import CONFIG, REGISTRY_REPO
from gateway.numbers import whole_number
from trust.errors import ErrorCode, TongbanError

routes = web.RouteTableDef()


def _require_operator(request: web.Request) -> None:
    if not request.app[CONFIG].is_operator:
        raise TongbanError("this gateway is not the alliance operator; ask the operator",
                           code=ErrorCode.NOT_FOUND)


@routes.get("/registry/v1/current")
async def current(request: web.Request) -> web.Response:
    _require_operator(request)
    latest = await request.app[REGISTRY_REPO].latest()
    if latest is None:
        raise TongbanError("no registry published yet", code=ErrorCode.NOT_FOUND)
    return web.Response(text=latest.jws, content_type="application/jwt",
                        headers={"Cache-Control": "no-cache"})


@routes.get("/registry/v1/versions/{n}")
async def version(request: web.Request) -> web.Response:
    _require_operator(request)
    raw = request.match_info["n"]
    number = whole_number(raw, most=999_999_999)
    if number is None:
        raise TongbanError("version must be a positive integer", code=ErrorCode.MALFORMED)
    stored = await request.app[REGISTRY_REPO].get(number)
    if stored is None:
        raise TongbanError(f"no registry version {raw}", code=ErrorCode.NOT_FOUND)
    return web.Response(text=stored.jws, content_type="application/jwt",
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})
