"""Materials endpoint of PROTOCOL.md §5: `PUT /federation/v1/blobs/{sha256}` (thin handler)."""

from __future__ import annotations

import aiohttp
from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.appkeys import BLOB_RECEIVER, CONFIG
from gateway.config import GatewayConfig
from trust.errors import ErrorCode, TongbanError

routes = web.RouteTableDef()

CHUNK = 64 * 1024


def known_url(request: web.Request, config: GatewayConfig) -> str:
    """The URL of this request as the sender must have named it in `htu`.

    Behind a reverse proxy the request URL aiohttp sees (scheme, host, port) is the proxy's
    upstream, so with `server.public_url` set the URL is that base plus the path.
    """
    path = request.rel_url.raw_path
    public = config.server.public_url.rstrip("/")
    if public:
        return public + path
    return str(request.url.with_query(None))


@routes.put("/federation/v1/blobs/{sha256}")
async def put_blob(request: web.Request) -> web.Response:
    try:
        stored = await request.app[BLOB_RECEIVER].put(
            authorization=request.headers.get(hdrs.AUTHORIZATION),
            sha256=request.match_info["sha256"], method=request.method,
            url=known_url(request, request.app[CONFIG]),
            chunks=request.content.iter_chunked(CHUNK), content_length=request.content_length)
    except (ConnectionError, HttpProcessingError, aiohttp.ClientPayloadError):
        # The sender went away or broke the framing mid-body; the store kept nothing.
        raise TongbanError("upload interrupted or badly framed",
                           code=ErrorCode.MALFORMED) from None
    return web.json_response({"sha256": stored.sha256, "size": stored.size},
                             status=201 if stored.created else 200)
