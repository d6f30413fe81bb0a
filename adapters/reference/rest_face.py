"""The reference system's REST/JSON face, in its own vocabulary (pinyin field names, local codes).

    POST /api/banjian                      create (idempotent on wbbh)   -> {bjbh, zt}
    POST /api/banjian/{bjbh}/buzheng       materials after 补正告知
    POST /api/banjian/{bjbh}/chehui        withdrawal
    GET  /api/shijian?yb=N                 the feed after cursor N      -> {shijian, xyyb}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from adapters.reference.context import STORE, read, write
from adapters.reference.faults import distort_events, distort_reply
from adapters.reference.store import Event, Invalid, Material, NewCase

routes = web.RouteTableDef()
FEED_LIMIT = 100


def event_json(event: Event) -> dict[str, Any]:
    """One feed entry as the REST face (and its webhook pushes) show it."""
    return {"xh": event.seq, "bjbh": event.bjbh, "wbbh": event.wbbh, "zt": event.zt,
            "yzt": event.yzt, "sj": event.at, "xq": event.detail}


def feed_json(events: list[Event], cursor: int) -> dict[str, Any]:
    following = events[-1].seq if events else cursor
    return {"shijian": [event_json(e) for e in events], "xyyb": str(following)}


def render_push(events: list[Event]) -> bytes:
    return json.dumps(feed_json(events, 0), ensure_ascii=False).encode()


async def _doc(request: web.Request) -> dict[str, Any]:
    try:
        doc = await request.json()
    except ValueError:
        raise Invalid("请求不是 JSON") from None
    if not isinstance(doc, dict):
        raise Invalid("请求须为 JSON 对象")
    return doc


def _materials(value: Any) -> list[Material]:
    if not isinstance(value, list) or len(value) > 100:
        raise Invalid("cl 须为材料列表")
    out = []
    for m in value:
        if not isinstance(m, Mapping):
            raise Invalid("材料须为对象")
        out.append(Material(bm=str(m.get("bm") or ""), mc=str(m.get("mc") or ""),
                            hash=m.get("hash") or None))
    return out


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Invalid(f"{what} 须为对象")
    return dict(value)


@routes.post("/api/banjian")
async def create(request: web.Request) -> web.Response:
    doc = await _doc(request)
    sjsj = doc.get("sjsj")
    new = NewCase(wbbh=str(doc.get("wbbh") or ""), sxbm=str(doc.get("sxbm") or ""),
                  bllx=str(doc.get("bllx") or ""), sqr=_mapping(doc.get("sqr"), "sqr"),
                  bd=_mapping(doc.get("bd"), "bd"), cl=_materials(doc.get("cl", [])),
                  sdfs=_mapping(doc.get("sdfs"), "sdfs"), sjd=str(doc.get("sjd") or ""),
                  sjsj=float(sjsj) if isinstance(sjsj, int | float) else None)
    case, created = await write(request, request.app[STORE].create, new)
    answer = distort_reply(request.app, {"bjbh": case.bjbh, "zt": case.zt}, "bjbh")
    return web.json_response(answer, status=201 if created else 200)


@routes.post("/api/banjian/{bjbh}/buzheng")
async def supplement(request: web.Request) -> web.Response:
    doc = await _doc(request)
    case = await write(request, request.app[STORE].supplement, request.match_info["bjbh"],
                       str(doc.get("wbbh") or ""), _materials(doc.get("cl")))
    return web.json_response({"bjbh": case.bjbh, "zt": case.zt})


@routes.post("/api/banjian/{bjbh}/chehui")
async def withdraw(request: web.Request) -> web.Response:
    doc = await _doc(request)
    case = await write(request, request.app[STORE].withdraw, request.match_info["bjbh"],
                       str(doc.get("wbbh") or ""), str(doc.get("yy") or ""))
    return web.json_response({"bjbh": case.bjbh, "zt": case.zt})


@routes.get("/api/shijian")
async def feed(request: web.Request) -> web.Response:
    raw = request.query.get("yb", "0")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise Invalid("yb 须为非负整数")
    events = await read(request.app[STORE].events_after, int(raw), FEED_LIMIT)
    doc = feed_json(events, int(raw))
    doc["shijian"] = distort_events(request.app, doc["shijian"], state_key="zt")
    return web.json_response(doc)
