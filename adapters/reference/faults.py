"""Misbehaving on purpose: the outages and bad answers a real local system produces, switched on
through the admin face so the contract kit and the demo can show what an adapter does with them.

They apply to the machine faces (/api, /soap) only; the clerk page keeps working, as a clerk's
screen does when the integration endpoint is down.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from adapters.reference.context import FAULTS

OVERSIZED_BYTES = 4 * 1024 * 1024
MACHINE_PREFIXES = ("/api/", "/soap")

# The classic "billion laughs": nine levels (lol1 to lol9) of ten references each, under a
# kilobyte that a naive parser expands to 10**9 copies of "lol" (3 GB). A safe parser refuses the
# DTD before expanding anything.
XML_BOMB = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + b"".join(
        b' <!ENTITY lol%d "%s">\n' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10))
    + b']>\n<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
      b"<soap:Body><x>&lol9;</x></soap:Body></soap:Envelope>"
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
    b"<soap:Body><x>&xxe;</x></soap:Body></soap:Envelope>"
)


def _machine(request: web.Request) -> bool:
    return request.path.startswith(MACHINE_PREFIXES)


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    faults = request.app[FAULTS]
    if not faults.active or not _machine(request):
        return await handler(request)
    if faults.on("unavailable"):
        return web.Response(status=503, text="系统维护中")
    if faults.on("slow"):
        await asyncio.sleep(faults.slow_seconds)  # a slow system, not test synchronisation
    response = await handler(request)
    soap = request.path.startswith("/soap")
    if faults.on("lost_answer"):
        return web.Response(status=502, text="网关超时")  # done, but the answer never arrives
    if faults.on("garbage"):
        return web.Response(status=200, body=b"\x00{<not a document",
                            content_type="text/xml" if soap else "application/json")
    if faults.on("xml_bomb"):
        return web.Response(status=200, body=XML_BOMB, content_type="text/xml")
    if faults.on("external_entity"):
        return web.Response(status=200, body=EXTERNAL_ENTITY, content_type="text/xml")
    if faults.on("oversized"):
        return await _oversized(request, soap)
    return response


async def _oversized(request: web.Request, soap: bool) -> web.StreamResponse:
    """A huge answer sent chunked, with no Content-Length to refuse it by."""
    stream = web.StreamResponse(status=200)
    stream.content_type = "text/xml" if soap else "application/json"
    stream.enable_chunked_encoding()
    await stream.prepare(request)
    chunk = b" " * 65536
    try:
        for _ in range(OVERSIZED_BYTES // len(chunk)):
            await stream.write(chunk)
        await stream.write_eof()
    except ConnectionError:
        pass  # the reader gave up, as it should
    return stream


def distort_reply(app: web.Application, doc: dict[str, Any], key: str) -> dict[str, Any]:
    """`missing_field`: the answer lacks the field that matters."""
    if app[FAULTS].on("missing_field"):
        return {k: v for k, v in doc.items() if k != key}
    return doc


def distort_events(app: web.Application, events: list[dict[str, Any]], *,
                   state_key: str) -> list[dict[str, Any]]:
    """`missing_field` drops each event's state; `unknown_state` gives one no mapping knows."""
    faults = app[FAULTS]
    if faults.on("missing_field"):
        return [{k: v for k, v in e.items() if k != state_key} for e in events]
    if faults.on("unknown_state"):
        return [{**e, state_key: "ZZZ"} for e in events]
    return events
