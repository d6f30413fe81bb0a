"""The reference local case system as one aiohttp application: the REST and SOAP faces a gateway's
adapter talks to, the clerk page where a handling-authority officer works, and (with `admin`)
the switches tests and demos use to make it misbehave.

It stands in for a city's own system, so it shares nothing with the gateway but the safe XML
parser and the webhook signature scheme; its rules and vocabulary are its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from adapters.reference import rest_face, soap_face
from adapters.reference.context import (
    FAULT_KINDS,
    FAULTS,
    PUSHER,
    SETTINGS,
    STORE,
    Faults,
    Settings,
    read,
    write,
)
from adapters.reference.faults import fault_middleware
from adapters.reference.hooks import Pusher
from adapters.reference.states import CLERK_ACTIONS, PROCEDURES, RESULTS, STATES
from adapters.reference.store import Case, Conflict, Invalid, NotFound, Store
from trust.credentials import same_secret

CSRF_COOKIE = "bj_csrf"
TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"cwdm": status, "cwxx": message}, status=status)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The API key on the machine faces, and the system's own error answers on /api."""
    settings = request.app[SETTINGS]
    if settings.api_key and request.path.startswith(("/api/", "/soap")):
        given = request.headers.get("X-Api-Key", "")
        if not same_secret(given, settings.api_key):
            if request.path.startswith("/soap"):
                return soap_face.fault("Client", "接口密钥错误")
            return _error(401, "接口密钥错误")
    try:
        return await handler(request)
    except Invalid as exc:
        return _error(400, str(exc))
    except NotFound as exc:
        return _error(404, str(exc))
    except Conflict as exc:
        return _error(409, str(exc))


# --- the clerk page ------------------------------------------------------------------------
def _masked(sqr: Mapping[str, str]) -> str:
    name = sqr.get("xm", "")
    if sqr.get("lx") == "GR":
        name = name[:1] + "*" * max(len(name) - 1, 0)
    number = sqr.get("zjhm") or sqr.get("tyshxydm") or ""
    return f"{name} {number[:4]}****{number[-2:]}" if len(number) > 6 else name


async def clerk_page(request: web.Request) -> web.Response:
    token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    cases: list[Case] = await read(request.app[STORE].cases)
    html = TEMPLATES.get_template("clerk.html").render(
        title=request.app[SETTINGS].title, cases=cases, actions=CLERK_ACTIONS, states=STATES,
        procedures=PROCEDURES, results=RESULTS, csrf=token, masked=_masked,
        message=request.query.get("msg", ""), ok=request.query.get("ok") == "1")
    response = web.Response(text=html, content_type="text/html")
    response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="Strict")
    return response


async def clerk_act(request: web.Request) -> web.Response:
    form = await request.post()
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = str(form.get("csrf", ""))
    if not cookie or not same_secret(sent, cookie):
        return web.Response(status=403, text="表单已失效（CSRF 校验失败），请刷新页面后重试")
    fields = {k: str(v) for k, v in form.items() if k != "csrf" and isinstance(v, str)}
    bjbh, action = request.match_info["bjbh"], request.match_info["action"]
    try:
        case = await write(request, request.app[STORE].act, bjbh, action, fields)
    except (Invalid, Conflict, NotFound) as exc:
        raise web.HTTPSeeOther(f"/clerk?{_query(str(exc), ok=False)}") from None
    raise web.HTTPSeeOther(f"/clerk?{_query(f'{case.bjbh}：{STATES[case.zt]}', ok=True)}")


def _query(message: str, *, ok: bool) -> str:
    return urlencode({"msg": message, "ok": "1" if ok else "0"})


# --- admin (tests and demos only) ------------------------------------------------------------
def case_json(case: Case) -> dict[str, Any]:
    """A case for scripts and the contract kit: its codes as the system keeps them and, in
    `jsdm`, the coded fields as its face received them (the SOAP face's numbers), so a check
    of a mapping's code tables compares with what that mapping sent."""
    return {"bjbh": case.bjbh, "wbbh": case.wbbh, "sxbm": case.sxbm, "bllx": case.bllx,
            "zt": case.zt, "cl": [m.to_json() for m in case.cl], "sdfs": case.sdfs,
            "sqr_lx": case.sqr.get("lx"), "jsdm": case.jsdm}


async def admin_faults(request: web.Request) -> web.Response:
    doc = await request.json()
    active = doc.get("active", []) if isinstance(doc, dict) else None
    if not isinstance(active, list) or not set(active) <= set(FAULT_KINDS):
        return _error(400, f"active 须为 {', '.join(FAULT_KINDS)} 中的若干项")
    faults = request.app[FAULTS]
    faults.active = set(active)
    if isinstance(doc.get("slow_seconds"), int | float):
        faults.slow_seconds = float(doc["slow_seconds"])
    return web.json_response({"active": sorted(faults.active)})


async def admin_cases(request: web.Request) -> web.Response:
    store = request.app[STORE]
    wbbh = request.query.get("wbbh")
    cases = await read(store.by_external, wbbh) if wbbh else await read(store.cases)
    return web.json_response({"cases": [case_json(c) for c in cases]})


async def admin_act(request: web.Request) -> web.Response:
    """A clerk's step without the page (scripts and the contract kit)."""
    doc = await request.json()
    if not isinstance(doc, dict):
        raise Invalid("须为 JSON 对象")
    case = await write(request, request.app[STORE].act, request.match_info["bjbh"],
                       request.match_info["action"], {k: str(v) for k, v in doc.items()})
    return web.json_response(case_json(case))


async def admin_redeliver(request: web.Request) -> web.Response:
    pusher = request.app.get(PUSHER)
    if pusher is None:
        return _error(409, "未配置 webhook")
    await pusher.redeliver()
    return web.json_response({"ok": True})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "faults": sorted(request.app[FAULTS].active)})


# --- the application -------------------------------------------------------------------------
def build_app(store: Store, settings: Settings) -> web.Application:
    app = web.Application(middlewares=[guard, fault_middleware],
                          client_max_size=soap_face.MAX_REQUEST)
    app[STORE] = store
    app[SETTINGS] = settings
    app[FAULTS] = Faults()
    app.add_routes(rest_face.routes)
    app.add_routes(soap_face.routes)
    app.router.add_get("/", root)
    app.router.add_get("/clerk", clerk_page)
    app.router.add_post("/clerk/{bjbh}/{action}", clerk_act)
    app.router.add_get("/health", health)
    if settings.admin:
        app.router.add_put("/admin/faults", admin_faults)
        app.router.add_get("/admin/cases", admin_cases)
        app.router.add_post("/admin/act/{bjbh}/{action}", admin_act)
        app.router.add_post("/admin/redeliver", admin_redeliver)
    if settings.webhook_url and settings.webhook_secret:
        app[PUSHER] = Pusher(store, settings.webhook_url, settings.webhook_secret,
                             rest_face.render_push)
        app.cleanup_ctx.append(_run_pusher)
    return app


async def root(request: web.Request) -> web.Response:
    raise web.HTTPFound("/clerk")


async def _run_pusher(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[PUSHER].run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

