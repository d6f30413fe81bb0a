"""`/admin/`: the admin console, server-rendered pages over the same functions as the CLI.

Logged-in clerks with a console role (see `gateway.console`) only. The session is a clerk
bearer token in an HttpOnly, SameSite=Strict cookie scoped to `/admin/`; every form carries a
CSRF token bound to it (the portal's helper), and the login form one bound to a pre-login
cookie. Refusals are RFC 9457 problems like everywhere else, so a script gets a code and a
browser a readable reason. Handlers stay thin: what to show and what is allowed is decided in
`gateway.console`.
"""

from __future__ import annotations

import datetime
import logging
import re
from importlib import resources
from typing import Any

from aiohttp import web

from gateway import appkeys as K
from gateway import console
from gateway.alliance import Alliance
from gateway.cases.access import Unauthenticated
from gateway.cases.service import Forbidden
from gateway.cases.states import CaseState
from gateway.console import Action
from gateway.db.auth_repo import Session
from gateway.db.local_repo import LocalRepo
from gateway.db.repos import OutboxState
from gateway.http.portal import csrf_token, csrf_valid, read_form, render_page
from gateway.numbers import whole_number
from trust import credentials
from trust.anchor import load_anchor
from trust.errors import ErrorCode, TongbanError

log = logging.getLogger(__name__)
routes = web.RouteTableDef()
PRE_LOGIN = "tbadmin_pre"
VOLUME_DAYS = 14


def _cookie(request: web.Request) -> str:
    return "tbadmin_" + request.app[K.CONFIG].member_id.replace("-", "_")


def _operator(request: web.Request) -> bool:
    return request.app[K.CONFIG].is_operator


class Clerk:
    """The signed-in console user of one request."""

    def __init__(self, request: web.Request, token: str, session: Session) -> None:
        self.token = token
        self.username = session.subject
        self.role = session.role or ""
        self.operator = _operator(request)
        self.csrf = csrf_token(request, token)

    def can(self, action: Action | str) -> bool:
        return console.allowed(self.role, Action(action), operator=self.operator)


async def _clerk(request: web.Request) -> Clerk | None:
    token = request.cookies.get(_cookie(request))
    if not token:
        return None
    found = await request.app[K.AUTH_REPO].session(credentials.token_hash(token),
                                                   request.app[K.CLOCK]())
    if found is None or found.kind != "clerk" or \
            not console.can_log_in(found.role, operator=_operator(request)):
        return None
    return Clerk(request, token, found)


async def _viewer(request: web.Request) -> Clerk:
    """A page: the signed-in clerk, or back to the login page."""
    clerk = await _clerk(request)
    if clerk is None:
        raise web.HTTPSeeOther("/admin/")
    return clerk


async def _acting(request: web.Request, action: Action) -> tuple[Clerk, dict[str, str]]:
    """A form post: signed in, allowed, and carrying this session's CSRF token."""
    clerk = await _clerk(request)
    if clerk is None:
        raise Unauthenticated("log in to the console first")
    fields = await read_form(request, clerk.token)
    if not clerk.can(action):
        raise Forbidden(f"role {clerk.role} may not {action.value} on this gateway")
    return clerk, fields


def _page(request: web.Request, template: str, clerk: Clerk | None, title: str, *,
          status: int = 200, **values: Any) -> web.Response:
    return render_page(request, f"admin/{template}", status=status, title=title, clerk=clerk,
                       operator=_operator(request), **values)


NOTICE_RE = re.compile(r"^(v[0-9]{1,9}|rotated|retired|requeued)$")


def _back(location: str, notice: str | None = None) -> web.Response:
    # The notice travels in the query string: short, fixed texts only, never personal data.
    target = location if notice is None else f"{location}?done={notice}"
    return web.Response(status=303, headers={"Location": target})


def _notice(request: web.Request) -> str | None:
    """Only the notices `_back` sends: a crafted link must not put words on the page."""
    done = request.query.get("done", "")
    return done if NOTICE_RE.match(done) else None


@routes.get("/admin/static/console.css")
async def stylesheet(request: web.Request) -> web.Response:
    css = resources.files("gateway").joinpath("http/static/console.css").read_text("utf-8")
    return web.Response(text=css, content_type="text/css",
                        headers={"Cache-Control": "max-age=3600"})


async def _login_page(request: web.Request, *, status: int = 200,
                      error: str | None = None) -> web.Response:
    pre = credentials.new_token()
    response = _page(request, "login.html", None, "登录", status=status, error=error,
                     csrf=csrf_token(request, "login:" + pre))
    response.set_cookie(PRE_LOGIN, pre, httponly=True, samesite="Strict", path="/admin/",
                        secure=request.app[K.PORTAL].secure_cookie)
    return response


@routes.get("/admin/")
async def home(request: web.Request) -> web.Response:
    clerk = await _clerk(request)
    if clerk is None:
        return await _login_page(request)
    counts = await request.app[K.CASES].count_by_state()
    outbox = request.app[K.OUTBOX_REPO]
    snapshot = request.app[K.HOLDER].current
    return _page(request, "home.html", clerk, "概览", counts=sorted(counts.items()),
                 dead=await outbox.count(OutboxState.DEAD),
                 pending=await outbox.count(OutboxState.PENDING),
                 registry_version=snapshot.version if snapshot else None)


@routes.post("/admin/login")
async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    pre = request.cookies.get(PRE_LOGIN, "")
    if not pre or not csrf_valid(request, fields.get("csrf", ""), "login:" + pre):
        raise Forbidden("the login form expired; reload the page")
    try:
        issued, role = await request.app[K.AUTH].login(fields.get("username", ""),
                                                       fields.get("password", ""))
    except TongbanError:
        return await _login_page(request, status=401, error="用户名或密码不正确")
    if not console.can_log_in(role, operator=_operator(request)):
        await request.app[K.AUTH].logout(issued.access_token)
        return await _login_page(request, status=403,
                                 error=f"角色 {role} 无权使用管理控制台")
    log.info("console login by %s (%s)", fields.get("username"), role)
    response = _back("/admin/")
    response.set_cookie(_cookie(request), issued.access_token, httponly=True,
                        samesite="Strict", path="/admin/",
                        secure=request.app[K.PORTAL].secure_cookie)
    response.del_cookie(PRE_LOGIN, path="/admin/")
    return response


@routes.post("/admin/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    clerk, _ = await _acting(request, Action.VIEW)
    await request.app[K.AUTH].logout(clerk.token)
    response = _back("/admin/")
    response.del_cookie(_cookie(request), path="/admin/")
    return response


@routes.get("/admin/members")
async def members(request: web.Request) -> web.Response:
    clerk = await _viewer(request)
    snapshot = request.app[K.HOLDER].require_fresh()
    return _page(request, "members.html", clerk, "成员", members=list(snapshot.members()),
                 version=snapshot.version, me=request.app[K.CONFIG].member_id,
                 done=_notice(request))


@routes.post("/admin/members/{member_id}/status")
async def member_status(request: web.Request) -> web.Response:
    clerk, fields = await _acting(request, Action.SET_MEMBER_STATUS)
    member_id = request.match_info["member_id"]
    app = request.app
    alliance = Alliance(config=app[K.CONFIG], engine=app[K.ENGINE], keys=app[K.KEYS],
                        clock=app[K.CLOCK])
    published = await console.set_member_status(alliance, app[K.HOLDER],
                                                app[K.DISPATCHER].notify, member_id,
                                                fields.get("status", ""))
    log.info("console: %s set %s to %s (registry version %d)", clerk.username, member_id,
             fields.get("status"), published.version)
    return _back("/admin/members", f"v{published.version}")


def _anchor(request: web.Request) -> Any:
    return load_anchor(request.app[K.CONFIG].trust.anchor)


@routes.get("/admin/registry")
async def registry(request: web.Request) -> web.Response:
    clerk = await _viewer(request)
    rows = await console.versions(request.app[K.REGISTRY_REPO], _anchor(request))
    return _page(request, "registry.html", clerk, "注册表版本", versions=rows)


def _version_number(raw: str | None, name: str) -> int:
    number = whole_number(raw)
    if number is None:
        raise TongbanError(f"{name} must be a registry version number",
                           code=ErrorCode.INVALID_BODY)
    return number


@routes.get("/admin/registry/diff")
async def registry_diff(request: web.Request) -> web.Response:
    clerk = await _viewer(request)
    old_n = _version_number(request.query.get("from"), "from")
    new_n = _version_number(request.query.get("to"), "to")
    repo, anchor = request.app[K.REGISTRY_REPO], _anchor(request)
    old = await console.version(repo, anchor, old_n)
    new = await console.version(repo, anchor, new_n)
    return _page(request, "diff.html", clerk, f"版本 {old_n} → {new_n}", old=old_n, new=new_n,
                 changes=console.registry_diff(old, new))


def _keys_view(request: web.Request) -> list[console.KeyRow]:
    app = request.app
    return console.key_rows(app[K.KEYS], app[K.SIGNER], app[K.HOLDER].current,
                            app[K.CONFIG].member_id)


@routes.get("/admin/keys")
async def keys(request: web.Request) -> web.Response:
    clerk = await _viewer(request)
    return _page(request, "keys.html", clerk, "签名密钥", keys=_keys_view(request),
                 done=_notice(request))


@routes.post("/admin/keys/rotate")
async def rotate(request: web.Request) -> web.Response:
    clerk, _ = await _acting(request, Action.ROTATE_KEYS)
    key = console.rotate_key(request.app[K.KEYS], request.app[K.CONFIG].keys.algorithm)
    log.info("console: %s created key %s", clerk.username, key.kid)
    return _back("/admin/keys", "rotated")


@routes.post("/admin/keys/{kid}/retire")
async def retire(request: web.Request) -> web.Response:
    clerk, _ = await _acting(request, Action.ROTATE_KEYS)
    kid = request.match_info["kid"]
    app = request.app
    console.retire_key(app[K.KEYS], app[K.SIGNER], app[K.HOLDER].current, kid)
    log.info("console: %s retired key %s", clerk.username, kid)
    return _back("/admin/keys", "retired")


@routes.get("/admin/cases")
async def cases(request: web.Request) -> web.Response:
    clerk = await _viewer(request)
    raw = request.query.get("state") or None
    states = [s.value for s in CaseState]
    if raw is not None and raw not in states:
        raise TongbanError(f"state must be one of {', '.join(states)}",
                           code=ErrorCode.INVALID_BODY)
    service = request.app[K.CASES]
    found = await service.list_cases(states=[CaseState(raw)] if raw else None,
                                     overdue_first=True, limit=200)
    counts = await service.count_by_state()
    return _page(request, "cases.html", clerk, "办件", rows=console.case_rows(found),
                 counts=sorted(counts.items()), chosen=raw or "")


@routes.get("/admin/outbox")
async def outbox(request: web.Request) -> web.Response:
    clerk = await _viewer(request)
    state = request.query.get("state") or OutboxState.DEAD
    if state not in (OutboxState.PENDING, OutboxState.DELIVERED, OutboxState.DEAD):
        raise TongbanError("state must be pending, delivered or dead",
                           code=ErrorCode.INVALID_BODY)
    entries = await request.app[K.OUTBOX_REPO].list_entries(state=state, limit=200)
    calls = await LocalRepo(request.app[K.ENGINE]).list_calls("dead")
    return _page(request, "outbox.html", clerk, "发件箱与死信", entries=entries, state=state,
                 calls=calls, when=console.when, done=_notice(request))


@routes.post("/admin/outbox/{row_id}/retry")
async def retry(request: web.Request) -> web.Response:
    clerk, _ = await _acting(request, Action.RETRY)
    raw = request.match_info["row_id"]
    row_id = whole_number(raw)
    count = 0 if row_id is None else await request.app[K.OUTBOX_REPO].retry_dead(
        now=request.app[K.CLOCK](), row_id=row_id)
    if count == 0:
        raise TongbanError(f"outbox #{raw} is not a dead letter", code=ErrorCode.NOT_FOUND)
    request.app[K.DISPATCHER].notify()
    log.info("console: %s requeued outbox #%s", clerk.username, raw)
    return _back("/admin/outbox", "requeued")


@routes.post("/admin/outbox/retry-dead")
async def retry_all(request: web.Request) -> web.Response:
    clerk, _ = await _acting(request, Action.RETRY)
    count = await request.app[K.OUTBOX_REPO].retry_dead(now=request.app[K.CLOCK]())
    request.app[K.DISPATCHER].notify()
    log.info("console: %s requeued %d dead letter(s)", clerk.username, count)
    return _back("/admin/outbox", "requeued")


@routes.get("/admin/volume")
async def volume(request: web.Request) -> web.Response:
    clerk = await _viewer(request)
    service = request.app[K.CASES]
    today = service.today()
    first = datetime.datetime.combine(today - datetime.timedelta(days=VOLUME_DAYS - 1),
                                      datetime.time(), console.CHINA)
    rows = await service.volume_since(first.timestamp())
    counts = console.daily_volume(rows, today=today, days=VOLUME_DAYS)
    return _page(request, "volume.html", clerk, "每日办件量",
                 chart=console.volume_chart(counts, today=today, days=VOLUME_DAYS))


@routes.post("/admin/local-calls/retry-dead")
async def local_retry(request: web.Request) -> web.Response:
    clerk, _ = await _acting(request, Action.RETRY)
    count = await LocalRepo(request.app[K.ENGINE]).retry_dead(request.app[K.CLOCK]())
    bridge = request.app.get(K.LOCAL)
    if bridge is not None:
        bridge.wake()
    log.info("console: %s requeued %d local call(s)", clerk.username, count)
    return _back("/admin/outbox", "requeued")
