"""A small applicant portal on every gateway: server-rendered pages, no build step.

It shows the applicant's path across members (单点登录、全国漫游、无感切换): log in at home,
pick a partner city's item, land on the partner's portal already signed in (a federation token
posted by the browser, never put in a URL, so it cannot leak through logs or `Referer`), apply,
and watch the case move. Every form that changes something carries a CSRF token bound to the
session; the session cookie is HttpOnly and SameSite=Lax.
"""

from __future__ import annotations

import datetime
import functools
import re
import secrets
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web

from gateway import appkeys as K
from gateway.cases.applications import Application, Delivery, Material, Part
from gateway.cases.model import Applicant
from gateway.cases.service import Actor, IdempotencyKey, IdempotencyKeyReused
from gateway.db.auth_repo import Session
from gateway.sso.exchange import OAuthError
from registry.document import Mode
from registry.validation import mask_id
from trust import credentials
from trust.csrf import csrf_matches
from trust.csrf import csrf_token as make_csrf
from trust.errors import ErrorCode, TongbanError

routes = web.RouteTableDef()
FORM_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")  # as token_urlsafe(16) makes them
CHINA = datetime.timezone(datetime.timedelta(hours=8))

STATE_NAMES = {
    "submitted": "已提交", "received_at_window": "窗口已收件", "formally_checked": "形式审查通过",
    "forwarded": "已转办", "handler_received": "办理单位已接收", "accepted": "已受理",
    "rejected": "不予受理", "supplement_required": "需补正材料", "in_review": "审查中",
    "suspended": "特别程序中", "concluded": "已办结", "delivered": "已送达",
    "evaluated": "已评价", "withdrawn": "已撤回", "closed": "已关闭", "pending": "待办理",
}


@functools.cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("gateway", "http/templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined)


def render_page(request: web.Request, template: str, *, status: int = 200,
          form_targets: str = "", **values: Any) -> web.Response:
    settings = request.app[K.PORTAL]
    nonce = secrets.token_urlsafe(12)
    values.setdefault("error", None)
    values.setdefault("refresh", None)
    html = _templates().get_template(template).render(
        member_name=settings.member_name, nonce=nonce, **values)
    response = web.Response(text=html, content_type="text/html", status=status)
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'nonce-{nonce}'; style-src 'self'; "
        f"form-action 'self' {form_targets}".strip() + "; frame-ancestors 'none'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def csrf_token(request: web.Request, token: str) -> str:
    return make_csrf(request.app[K.PORTAL].csrf_secret, token)


def csrf_valid(request: web.Request, given: str, token: str) -> bool:
    return csrf_matches(given, request.app[K.PORTAL].csrf_secret, token)


async def _session(request: web.Request) -> tuple[str, Session] | None:
    token = request.cookies.get(request.app[K.PORTAL].cookie_name)
    if not token:
        return None
    found = await request.app[K.AUTH_REPO].session(credentials.token_hash(token),
                                                   request.app[K.CLOCK]())
    if found is None or found.kind != "applicant":
        return None
    return token, found


async def _signed_in(request: web.Request) -> tuple[str, Session]:
    """The applicant's session, or back to the login page."""
    current = await _session(request)
    if current is None:
        raise web.HTTPSeeOther("/portal/")
    return current


def _set_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    response.set_cookie(request.app[K.PORTAL].cookie_name, token, httponly=True,
                        samesite="Lax", path="/",
                        secure=request.app[K.PORTAL].secure_cookie)


async def read_form(request: web.Request, token: str | None) -> dict[str, str]:
    form = await request.post()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if token is not None and not csrf_valid(request, fields.get("csrf", ""), token):
        raise web.HTTPForbidden(reason="the form expired; reload the page")
    return fields


def _redirect(location: str) -> web.Response:
    """A 303 that can carry a cookie (aiohttp wants HTTP exceptions raised, not returned)."""
    return web.Response(status=303, headers={"Location": location})


def _person(session: Session) -> str:
    name = session.name or ""
    return name[:1] + "*" * max(len(name) - 1, 0)


@routes.get("/portal/static/portal.css")
async def stylesheet(request: web.Request) -> web.Response:
    css = resources.files("gateway").joinpath("http/static/portal.css").read_text("utf-8")
    return web.Response(text=css, content_type="text/css",
                        headers={"Cache-Control": "max-age=3600"})


@routes.get("/portal/")
async def home(request: web.Request) -> web.Response:
    current = await _session(request)
    if current is None:
        return render_page(request, "login.html", title="登录")
    token, session = current
    service = request.app[K.CASES]
    snapshot = request.app[K.HOLDER].require_fresh()
    me = service.me
    catalog = service.catalog

    def online_items(member_id: str) -> list[Any]:
        member = snapshot.member(member_id)
        codes = [i.code for i in (member.items if member else ())
                 if Mode.ONLINE in i.modes]
        return [item for code in codes if (item := catalog.get(code)) is not None
                and item.applicant.value == "person"]

    home_member = (session.sid or "").split(":", 1)[0]
    via = None
    partners = []
    if home_member == me:
        for member in snapshot.members():
            if member.id != me and member.is_active and member.items:
                items = online_items(member.id)
                if items:
                    partners.append({"id": member.id, "name": member.name, "offers": items})
    else:
        found = snapshot.member(home_member)
        via = found.name if found else home_member
    return render_page(request, "home.html", title="首页", person=_person(session),
                 loa=session.loa, via=via, csrf=csrf_token(request, token),
                 local_items=online_items(me), partners=partners)


@routes.post("/portal/login")
async def login(request: web.Request) -> web.StreamResponse:
    if not request.app[K.CONFIG].sso.local_login:
        raise web.HTTPNotFound()
    fields = await read_form(request, None)
    try:
        token, _ = await request.app[K.SSO_HOME].login_local(fields.get("id_number", ""),
                                                             fields.get("password", ""))
    except TongbanError:
        return render_page(request, "login.html", title="登录", status=401,
                     error="身份证号或密码不正确")
    response = _redirect("/portal/")
    _set_cookie(request, response, token)
    return response


@routes.post("/portal/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    current = await _session(request)
    if current is not None:
        await read_form(request, current[0])
        await request.app[K.SSO_HOME].logout(current[0])
    response = _redirect("/portal/")
    response.del_cookie(request.app[K.PORTAL].cookie_name, path="/")
    return response


@routes.post("/portal/go")
async def go(request: web.Request) -> web.Response:
    """Hand the signed-in applicant to a partner member, landing on one of its items."""
    current = await _signed_in(request)
    fields = await read_form(request, current[0])
    target, item = fields.get("target", ""), fields.get("item", "")
    snapshot = request.app[K.HOLDER].require_fresh()
    member = snapshot.member(target)
    if member is None or request.app[K.CASES].catalog.get(item) is None:
        raise TongbanError("unknown member or item", code=ErrorCode.INVALID_BODY)
    token = await request.app[K.SSO_HOME].handoff(current[1], target)
    return render_page(request, "handoff.html", title="跨城办理", target_name=member.name,
                 action=f"{member.endpoint}/portal/sso", token=token,
                 next=f"/portal/apply/{item}", form_targets=member.endpoint)


@routes.post("/portal/sso")
async def arrive(request: web.Request) -> web.StreamResponse:
    """The target side of the browser hand-off: exchange the token, open a local session."""
    form = await request.post()
    token = form.get("token")
    target = form.get("next")
    next_path = target if isinstance(target, str) and target.startswith("/portal/") and \
        "//" not in target else "/portal/"
    if not isinstance(token, str) or not token:
        return render_page(request, "login.html", title="登录", status=400,
                     error="缺少登录凭证，请从您所在城市的门户重新进入")
    # The item the applicant came for: a sign-on below its assurance level stops here.
    scope = [next_path.removeprefix("/portal/apply/")] \
        if next_path.startswith("/portal/apply/") else []
    try:
        result = await request.app[K.SSO_EXCHANGE].exchange(token, scope=scope)
    except OAuthError as exc:
        return render_page(request, "login.html", title="登录", status=exc.status,
                     error=f"免登录失败（{exc.error}）：{exc.description}")
    response = _redirect(next_path)
    _set_cookie(request, response, result.access_token)
    return response


def _actor(session: Session) -> Actor:
    return Actor(kind="applicant", subject=session.subject, loa=session.loa,
                 applicant_key=session.subject, name=session.name)


@routes.get("/portal/apply/{code}")
async def apply_form(request: web.Request) -> web.Response:
    token, session = await _signed_in(request)
    item = request.app[K.CASES].catalog.get(request.match_info["code"])
    if item is None:
        raise web.HTTPNotFound()
    return render_page(request, "apply.html", title="在线申请", item=item, person=_person(session),
                 masked_id=mask_id(session.idn or ""), csrf=csrf_token(request, token),
                 form_id=secrets.token_urlsafe(16))


def _form_key(request: web.Request, form: Any) -> IdempotencyKey | None:
    """The application form's own id as its idempotency key, so a double click or a reload
    that posts the form again files one case, not two (the API's Idempotency-Key, for
    browsers). The fingerprint covers the fields the applicant chose."""
    form_id = str(form.get("form_id", ""))
    if not FORM_ID_RE.match(form_id):
        return None
    fields = sorted((k, str(v)) for k, v in form.items() if k not in ("csrf", "form_id"))
    return IdempotencyKey.of_request("form:" + form_id, [request.path, fields])


@routes.post("/portal/apply/{code}")
async def apply(request: web.Request) -> web.StreamResponse:
    token, session = await _signed_in(request)
    form = await request.post()
    if not csrf_valid(request, str(form.get("csrf", "")), token):
        raise web.HTTPForbidden(reason="the form expired; reload the page")
    service = request.app[K.CASES]
    item = service.catalog.get(request.match_info["code"])
    if item is None or not session.idn:
        raise web.HTTPNotFound()
    chosen = {str(v) for v in form.getall("material", [])}
    materials = tuple(Material(code=m.code, name=m.name) for m in item.materials
                      if m.code in chosen)
    method = str(form.get("delivery", "online"))
    address = str(form.get("address", "")).strip() or None
    application = Application(
        mode=Mode.ONLINE.value,
        applicant=Applicant(kind="person", name=session.name or "", id_number=session.idn),
        loa=session.loa, form={}, materials=materials,
        delivery=Delivery(method=method if method in ("online", "post", "window") else "online",
                          address=address),
        parts=(Part(item=item.code, handler=service.me, step=1),))
    key = _form_key(request, form)
    try:
        case_ = (await service.submit(_actor(session), application, idempotency=key)).case
    except IdempotencyKeyReused:
        # The same form, already filed, posted again with other choices (back button): the
        # first application stands; a new one starts from a fresh form.
        return render_page(request, "apply.html", title="在线申请", item=item, status=409,
                     person=_person(session), masked_id=mask_id(session.idn),
                     csrf=csrf_token(request, token), form_id=secrets.token_urlsafe(16),
                     error="这份申请表已经提交过，请在“我的办件”中查看；如需再次申请，请使用本页新表单。")
    except TongbanError as exc:
        # Nothing was stored, so the corrected form may keep its id.
        return render_page(request, "apply.html", title="在线申请", item=item, status=422,
                     person=_person(session), masked_id=mask_id(session.idn),
                     csrf=csrf_token(request, token), form_id=key.key[5:] if key else "",
                     error=f"未能提交：{exc.detail}")
    raise web.HTTPSeeOther(f"/portal/cases/{case_.case_id}")


@routes.get("/portal/cases")
async def my_cases(request: web.Request) -> web.Response:
    current = await _signed_in(request)
    service = request.app[K.CASES]
    found = await service.list_cases(applicant_key=current[1].subject, top_level=True)
    rows = []
    for c in found:
        item = service.catalog.get(c.item_code or "")
        state = c.state.value if c.state else "pending"
        rows.append({"case_id": c.case_id, "item_name": item.name if item else c.kind,
                     "state_name": STATE_NAMES.get(state, state)})
    return render_page(request, "cases.html", title="我的办件", cases=rows)


@routes.get("/portal/cases/{case_id}")
async def case_page(request: web.Request) -> web.Response:
    current = await _signed_in(request)
    service = request.app[K.CASES]
    try:
        case_ = await service.get(request.match_info["case_id"])
    except TongbanError:
        raise web.HTTPNotFound() from None
    if case_.applicant_key != current[1].subject:
        raise web.HTTPNotFound()
    item = service.catalog.get(case_.item_code or "")
    snapshot = request.app[K.HOLDER].current
    handler = snapshot.member(case_.handler or "") if snapshot else None
    history = []
    for e in case_.events:
        if e.to_state is None:
            continue
        when = datetime.datetime.fromtimestamp(e.at, CHINA).strftime("%m-%d %H:%M:%S")
        history.append({"when": when, "what": STATE_NAMES.get(e.to_state.value,
                                                              e.to_state.value)})
    state = case_.state.value if case_.state else "pending"
    view = {"case_id": case_.case_id, "state": state, "decision_due": case_.decision_due,
            "supplement": case_.data.get("supplement") if state == "supplement_required"
            else None}
    return render_page(request, "case.html", title="办件进度", refresh=3, case=view,
                 state_name=STATE_NAMES.get(state, state),
                 item_name=item.name if item else case_.kind,
                 handler_name=handler.name if handler else case_.handler, history=history)
