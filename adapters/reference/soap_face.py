"""The reference system's SOAP 1.1 face, as an older provincial web service would offer it:
one endpoint (`POST /soap`), four operations, PascalCase pinyin element names and numeric codes
(states 01-09, modes 1-3, ...) where the REST face uses letters.

    ShouJian (收件)  BuZheng (补正)  CheHui (撤回)  ChaXunShiJian (查询事件)

Requests are read with the same defusedxml parser the adapter uses: a service is as exposed to
hostile XML as a client is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from adapters.base import AdapterError
from adapters.reference.context import STORE, read, write
from adapters.reference.faults import distort_events, distort_reply
from adapters.reference.states import SOAP_PROCEDURES, SOAP_RESULTS, SOAP_STATES
from adapters.reference.store import Conflict, Event, Invalid, Material, NewCase, NotFound
from adapters.xmltree import SOAP_NS, envelope, local_name, parse, to_tree

NAMESPACE = "urn:reference-banjian:soap:1"
SOAP_MODES = {"WB": "1", "DB": "2", "LB": "3"}
SOAP_KINDS = {"GR": "1", "FR": "2"}
SOAP_DELIVERY = {"YJ": "1", "WL": "2", "CK": "3"}
FEED_LIMIT = 100
MAX_REQUEST = 1024 * 1024

routes = web.RouteTableDef()


def _back(table: Mapping[str, str], code: Any, what: str) -> str:
    for ours, theirs in table.items():
        if theirs == code:
            return ours
    raise Invalid(f"{what} 代码 {code!r} 未知")


def _one(tree: Mapping[str, Any], key: str) -> Any:
    value = tree.get(key, "")
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _many(value: Any) -> list[Any]:
    if value in ("", None):
        return []
    return value if isinstance(value, list) else [value]


def _materials(value: Any) -> list[Material]:
    out = []
    for m in _many(value):
        if not isinstance(m, Mapping):
            raise Invalid("CaiLiao 须含 BianMa、MingCheng")
        out.append(Material(bm=str(_one(m, "BianMa")), mc=str(_one(m, "MingCheng")),
                            hash=str(_one(m, "HashZhi")) or None))
    return out


def _sub(tree: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = _one(tree, key)
    return value if isinstance(value, Mapping) else {}


def event_xml(event: Event) -> dict[str, Any]:
    d = event.detail
    doc: dict[str, Any] = {
        "XuHao": event.seq, "BanJianBianHao": event.bjbh, "WaiBuBianHao": event.wbbh,
        "ZhuangTai": SOAP_STATES[event.zt], "YuanZhuangTai": SOAP_STATES.get(event.yzt, ""),
        "ShouLiHuiZhiHao": d.get("slhzh"), "YuanYin": d.get("yy"),
        "BuZhengCaiLiao": {"MingCheng": list(d.get("bzcl", []))} if d.get("bzcl") else None,
        "TeBieChengXu": SOAP_PROCEDURES.get(d.get("tbcx", "")),
        "BanJieJieGuo": SOAP_RESULTS.get(d.get("bjjg", "")), "JieGuoShuoMing": d.get("jgsm"),
        "ZhengZhaoBianHao": d.get("zzbh"), "ZhengZhaoMingCheng": d.get("zzmc"),
        "KuaiDiDanHao": d.get("kddh"),
    }
    return {k: v for k, v in doc.items() if v not in (None, "")}


async def _shoujian(request: web.Request, args: Mapping[str, Any]) -> dict[str, Any]:
    applicant = _sub(args, "ShenQingRen")
    delivery = _sub(args, "SongDa")
    try:
        form = json.loads(str(_one(args, "BiaoDan")) or "{}")
    except ValueError:
        raise Invalid("BiaoDan 须为 JSON 文本") from None
    received = str(_one(args, "ShouJianShiJian"))
    mode, kind = str(_one(args, "BanLiLeiXing")), str(_one(applicant, "LeiXing"))
    method = str(_one(delivery, "FangShi"))
    new = NewCase(
        wbbh=str(_one(args, "WaiBuBianHao")), sxbm=str(_one(args, "ShiXiangBianMa")),
        bllx=_back(SOAP_MODES, mode, "BanLiLeiXing"),
        sqr={"lx": _back(SOAP_KINDS, kind, "LeiXing"),
             "xm": str(_one(applicant, "XingMing")),
             "zjhm": str(_one(applicant, "ZhengJianHaoMa")),
             "tyshxydm": str(_one(applicant, "XinYongDaiMa")),
             "lxdh": str(_one(applicant, "LianXiDianHua"))},
        bd=form if isinstance(form, dict) else {}, cl=_materials(args.get("CaiLiao")),
        sdfs={"fs": _back(SOAP_DELIVERY, method, "FangShi"),
              "dz": str(_one(delivery, "DiZhi"))},
        sjd=str(_one(args, "ShouJianDi")),
        sjsj=float(received) if received.replace(".", "", 1).isdigit() else None,
        jsdm={"bllx": mode, "sqr.lx": kind, "sdfs.fs": method})  # as sent, for the admin view
    case, _created = await write(request, request.app[STORE].create, new)
    return distort_reply(request.app, {"BanJianBianHao": case.bjbh,
                                       "ZhuangTai": SOAP_STATES[case.zt]}, "BanJianBianHao")


async def _buzheng(request: web.Request, args: Mapping[str, Any]) -> dict[str, Any]:
    case = await write(request, request.app[STORE].supplement,
                       str(_one(args, "BanJianBianHao")), str(_one(args, "WaiBuBianHao")),
                       _materials(args.get("CaiLiao")))
    return {"BanJianBianHao": case.bjbh, "ZhuangTai": SOAP_STATES[case.zt]}


async def _chehui(request: web.Request, args: Mapping[str, Any]) -> dict[str, Any]:
    case = await write(request, request.app[STORE].withdraw,
                       str(_one(args, "BanJianBianHao")), str(_one(args, "WaiBuBianHao")),
                       str(_one(args, "YuanYin")))
    return {"BanJianBianHao": case.bjbh, "ZhuangTai": SOAP_STATES[case.zt]}


async def _chaxun(request: web.Request, args: Mapping[str, Any]) -> dict[str, Any]:
    raw = str(_one(args, "YouBiao") or "0")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise Invalid("YouBiao 须为非负整数")
    events = await read(request.app[STORE].events_after, int(raw), FEED_LIMIT)
    items = distort_events(request.app, [event_xml(e) for e in events], state_key="ZhuangTai")
    following = events[-1].seq if events else int(raw)
    return {"ShiJianLieBiao": {"ShiJian": items}, "XiaYiYouBiao": str(following)}


OPERATIONS = {"ShouJian": _shoujian, "BuZheng": _buzheng, "CheHui": _chehui,
              "ChaXunShiJian": _chaxun}


def fault(code: str, message: str) -> web.Response:
    body = (f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP_NS}">'
            f"<soap:Body><soap:Fault><faultcode>soap:{code}</faultcode>"
            f"<faultstring>{escape(message)}</faultstring></soap:Fault></soap:Body>"
            "</soap:Envelope>")
    return web.Response(status=500, body=body.encode(), content_type="text/xml",
                        charset="utf-8")


@routes.post("/soap")
async def soap(request: web.Request) -> web.Response:
    data = await request.content.read(MAX_REQUEST + 1)
    if len(data) > MAX_REQUEST:
        return fault("Client", "请求过大")
    try:
        root = parse(data)
    except AdapterError as exc:
        return fault("Client", str(exc))
    body = root.find(f"{{{SOAP_NS}}}Body")
    if body is None or len(body) != 1:
        return fault("Client", "SOAP Body 须含一个操作")
    operation = local_name(body[0].tag)
    handler = OPERATIONS.get(operation)
    if handler is None:
        return fault("Client", f"没有操作 {operation}")
    try:
        args = to_tree(body[0])
        answer = await handler(request, args if isinstance(args, dict) else {})
    except (AdapterError, Invalid, NotFound, Conflict) as exc:
        return fault("Client", str(exc))
    return web.Response(body=envelope(operation + "Response", NAMESPACE, answer),
                        content_type="text/xml", charset="utf-8")
