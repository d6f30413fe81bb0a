"""The portal and window API (`/api/v1`): thin handlers over gateway.cases.

Each handler authenticates the caller, parses JSON, calls one domain function and renders the
result. Errors are raised as `TongbanError`s and rendered once, as RFC 9457 problems, by the
middleware in gateway/http/problems.py. The contract is gateway/http/openapi.json, served at
`/api/v1/openapi.json`; a test checks that every route here is described there.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Callable
from importlib import resources
from typing import Any
from urllib.parse import unquote

from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError

from gateway import appkeys as K
from gateway.blobs.materials import store_blob
from gateway.cases.access import (
    ROLES,
    Unauthenticated,
    can_see,
    require_caller,
    require_role,
)
from gateway.cases.applications import Collector, parse_applicant, parse_application
from gateway.cases.model import Case
from gateway.cases.service import Actor, IdempotencyKey, NotFound, Outcome
from registry.validation import FieldError, InvalidInput
from trust import credentials
from trust.errors import ErrorCode, TongbanError

routes = web.RouteTableDef()
ACTOR = web.RequestKey("actor", object)
HANDLING_ACTIONS = ("accept", "reject", "supplement-request", "review", "suspend", "resume",
                    "conclude", "deliver")


async def _actor(request: web.Request) -> Actor | None:
    header = request.headers.get("Authorization", "")
    auth = request.app[K.AUTH]
    scheme, _, value = header.partition(" ")
    if not header:
        return None
    if scheme.lower() == "basic":
        try:
            client_id, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthenticated("malformed Basic credentials") from None
        return auth.client(client_id, secret)
    if scheme.lower() == "bearer" and value:
        return await auth.bearer(value.strip())
    raise Unauthenticated("use Authorization: Basic (portal systems) or Bearer (sessions)")


async def _json(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise TongbanError("Content-Type must be application/json",
                           code=ErrorCode.UNSUPPORTED_MEDIA_TYPE)
    try:
        data = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise TongbanError("the body is not valid JSON", code=ErrorCode.MALFORMED) from None
    if not isinstance(data, dict):
        raise TongbanError("the body must be a JSON object", code=ErrorCode.MALFORMED)
    return data


IDEMPOTENCY_HEADER = "Idempotency-Key"


def _idempotency(request: web.Request, body: dict[str, Any]) -> IdempotencyKey | None:
    """The request's Idempotency-Key (draft-ietf-httpapi-idempotency-key-header), if any.

    The draft sends the key as a structured-field string ("..."); a bare token is accepted
    too, since portals commonly send a UUID unquoted. The fingerprint covers the route and the
    body as parsed, so the same JSON re-serialised by a retrying client still matches.
    """
    raw = request.headers.getall(IDEMPOTENCY_HEADER, [])
    if not raw:
        return None
    value = raw[0]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if len(raw) != 1 or not 1 <= len(value) <= 255 or \
            not all(" " <= ch <= "~" for ch in value) or '"' in value or "\\" in value:
        raise TongbanError(f"{IDEMPOTENCY_HEADER} must be one value of 1-255 printable ASCII "
                           "characters (for example a UUID)", code=ErrorCode.MALFORMED)
    return IdempotencyKey.of_request(value, [request.method, request.path, body])


async def _answer(request: web.Request, outcome: Outcome, actor: Actor) -> web.Response:
    extra = {} if outcome.password is None else {"query_password": outcome.password}
    response = await _render(request, outcome.case, outcome.status, actor=actor, **extra)
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


STAFF_ONLY = ("by", "identity_check", "route", "cause")


def _public(value: Any) -> Any:
    """Drop what only staff need (which officer acted, how identity was checked)."""
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if k not in STAFF_ONLY}
    return value


def _same(value: Any) -> Any:
    return value


def _view(case_: Case, parts: list[Case] | None = None, *, full: bool = True,
          staff: bool = True, anonymous: bool = False) -> dict[str, Any]:
    """What callers see of a case: personal data masked, no query password, no ID number.

    Applicants and portals do not see which officer acted; a caller with only the query
    password does not see the postal address either.
    """
    data = case_.data
    clean: Callable[[Any], Any] = _same if staff else _public
    delivery = dict(data.get("delivery") or {})
    if anonymous and delivery.get("address"):
        delivery["address"] = str(delivery["address"])[:6] + "…"
    out: dict[str, Any] = {
        "case_id": case_.case_id, "kind": case_.kind, "mode": case_.mode,
        "item": case_.item_code, "receiver": case_.receiver, "handler": case_.handler,
        "side": case_.side.value, "state": case_.state.value if case_.state else "pending",
        "applicant": case_.applicant.masked(), "decision_due": case_.decision_due,
        "supplement_due": case_.supplement_due, "overdue": case_.overdue,
        "supplement_count": case_.supplement_count, "receipt_no": data.get("receipt_no"),
        "delivery": delivery or None, "outcome": clean(data.get("outcome")),
        "supplement": clean(data.get("supplement")), "evaluation": data.get("evaluation"),
        "fix_task": data.get("fix_task"), "parent": case_.parent_id, "step": case_.step,
        "materials": [{k: v for k, v in m.items() if k in ("code", "name", "sha256", "size",
                                                             "cert", "original_checked", "item")}
                      for m in data.get("materials", [])],
    }
    if full:
        hidden = {"applicant", "form", "history"} | ({"address"} if anonymous else set())
        out["history"] = [{"n": e.n, "event": e.event,
                           "from": e.from_state.value if e.from_state else None,
                           "to": e.to_state.value if e.to_state else None,
                           "actor": e.actor, "at": e.at,
                           "detail": clean({k: v for k, v in e.detail.items()
                                            if k not in hidden and not
                                            (anonymous and k == "delivery")})}
                          for e in case_.events]
    if parts is not None:
        out["parts"] = [_view(p, full=False, staff=staff, anonymous=anonymous) for p in parts]
    return out


async def _case_for(request: web.Request, actor: Actor | None, *,
                    write: bool = False) -> Case:
    service = request.app[K.CASES]
    case_id = request.match_info["case_id"]
    password = request.headers.get("X-Query-Password")
    if actor is None and not password:
        raise Unauthenticated("log in, or give the case's query password (X-Query-Password)")
    try:
        case_ = await service.get(case_id)
    except NotFound:
        raise NotFound(f"no case {case_id} here") from None
    query_ok = False
    if not write and password and case_.query_password_hash:
        limiter = request.app[K.QUERY_LIMITER]
        limiter.check(case_id)
        query_ok = await asyncio.to_thread(credentials.verify_password, password,
                                           case_.query_password_hash)
        if not query_ok:
            limiter.failed(case_id)
    if not can_see(actor, case_, query_ok):
        # The same answer whether the case exists or not: no probing of case ids.
        raise NotFound(f"no case {case_id} here")
    return case_


async def _render(request: web.Request, case_: Case, status: int = 200, *,
                  actor: Actor | None, **extra: Any) -> web.Response:
    service = request.app[K.CASES]
    fresh = await service.get(case_.case_id)
    parts = await service.parts(case_.case_id) if fresh.kind != "single" else None
    view = _view(fresh, parts, staff=actor is not None and actor.kind == "clerk",
                 anonymous=actor is None)
    return web.json_response({**extra, "case": view}, status=status)


# --- sessions ---------------------------------------------------------------------------
@routes.post("/api/v1/login")
async def login(request: web.Request) -> web.Response:
    body = await _json(request)
    username, password = body.get("username"), body.get("password")
    missing = [FieldError(name, "is required") for name, value in
               (("username", username), ("password", password))
               if not isinstance(value, str) or not value]
    if missing:
        raise InvalidInput(missing)
    assert isinstance(username, str)
    assert isinstance(password, str)
    token, role = await request.app[K.AUTH].login(username, password)
    return web.json_response({"access_token": token.access_token, "token_type": "Bearer",
                              "expires_in": token.expires_in, "role": role})


@routes.post("/api/v1/logout")
async def logout(request: web.Request) -> web.Response:
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        raise Unauthenticated("logout needs the session's Bearer token")
    await request.app[K.AUTH].logout(header[7:].strip())
    return web.json_response({"status": "logged out"})


@routes.post("/api/v1/applicant-sessions")
async def applicant_session(request: web.Request) -> web.Response:
    """A home portal vouches for an applicant it has logged in; the applicant gets a token."""
    actor = require_caller(await _actor(request), "portal")
    body = await _json(request)
    service = request.app[K.CASES]
    if "id_token" in body:
        id_token = body["id_token"]
        if not isinstance(id_token, str):
            raise InvalidInput(FieldError("id_token", "must be the provider's ID token"))
        access, session = await request.app[K.OIDC].login(id_token, actor.subject)
        return web.json_response({"access_token": access, "token_type": "Bearer",
                                  "expires_in": int(session.expires_at
                                                    - request.app[K.CLOCK]())}, status=201)
    c = Collector()
    applicant = parse_applicant(c, body.get("applicant"), "applicant.", today=service.today())
    loa = body.get("loa")
    if loa not in ("L2", "L3", "L4", "L5"):
        c.add("loa", "must be L2, L3, L4 or L5 (the level the portal verified)")
    c.done()
    assert applicant is not None
    token = await request.app[K.AUTH].applicant_session(
        applicant_key=service.applicant_key(applicant.identity), name=applicant.name,
        loa=str(loa), client_id=actor.subject)
    return web.json_response({"access_token": token.access_token, "token_type": "Bearer",
                              "expires_in": token.expires_in}, status=201)


# --- materials ----------------------------------------------------------------------------
@routes.post("/api/v1/materials")
async def upload_material(request: web.Request) -> web.Response:
    require_caller(await _actor(request), "portal", "applicant", "clerk")
    media_type = request.content_type or "application/octet-stream"
    # Headers are Latin-1: a Chinese file name comes percent-encoded (UTF-8), e.g. %E8%BA%AB.
    name = unquote(request.headers.get("X-Material-Name", ""), errors="strict")
    if not name:
        raise InvalidInput(FieldError("X-Material-Name", "name the material (header, "
                                                         "percent-encoded UTF-8)"))

    async def chunks() -> Any:
        async for chunk in request.content.iter_chunked(256 * 1024):
            yield chunk

    try:
        att = await store_blob(request.app[K.BLOBS], chunks(), media_type=media_type,
                               name=name, content_length=request.content_length)
    except (ConnectionError, ClientPayloadError, HttpProcessingError):
        raise TongbanError("the upload was cut off; nothing was kept",
                           code=ErrorCode.MALFORMED) from None
    return web.json_response({"sha256": att.sha256, "size": att.size,
                              "media_type": att.media_type, "name": att.name}, status=201)


# --- applicants and portals ---------------------------------------------------------------
@routes.get("/api/v1/items")
async def items(request: web.Request) -> web.Response:
    require_caller(await _actor(request), "portal", "applicant", "clerk")
    catalog = request.app[K.CASES].catalog
    return web.json_response({"items": [
        {"code": i.code, "name": i.name, "modes": [m.value for m in i.modes],
         "applicant": i.applicant.value,
         "min_loa": i.min_loa, "household_bound": i.household_bound,
         "decision_days": i.decision_days,
         "materials": [{"code": m.code, "name": m.name, "required": m.required}
                       for m in i.materials]}
        for i in catalog.items()]})


@routes.post("/api/v1/cases")
async def submit(request: web.Request) -> web.Response:
    actor = require_caller(await _actor(request), "portal", "applicant")
    service = request.app[K.CASES]
    body = await _json(request)
    idempotency = _idempotency(request, body)
    app = parse_application(body, today=service.today(), default_mode="online")
    return await _answer(request, await service.submit(actor, app, idempotency=idempotency),
                        actor)


@routes.get("/api/v1/cases")
async def list_cases(request: web.Request) -> web.Response:
    actor = require_caller(await _actor(request), "applicant", "clerk", "portal")
    service = request.app[K.CASES]
    filters: dict[str, Any] = {"top_level": actor.kind != "clerk"}
    if actor.kind == "applicant":
        filters["applicant_key"] = actor.applicant_key
    state = request.query.get("state")
    if state:
        from gateway.cases.states import CaseState
        try:
            filters["states"] = [CaseState(state)]
        except ValueError:
            raise InvalidInput(FieldError("state", "not a case state")) from None
    found = await service.list_cases(**filters)
    if actor.kind == "portal":
        found = [c for c in found if c.portal_client == actor.subject]
    staff = actor.kind == "clerk"
    return web.json_response({"cases": [_view(c, full=False, staff=staff) for c in found]})


@routes.get("/api/v1/cases/{case_id}")
async def get_case(request: web.Request) -> web.Response:
    actor = await _actor(request)
    case_ = await _case_for(request, actor)
    return await _render(request, case_, actor=actor)


async def _applicant_action(request: web.Request) -> tuple[Actor, Case, dict[str, Any]]:
    actor = require_caller(await _actor(request), "applicant", "portal", "clerk")
    if actor.kind == "clerk":
        require_role(actor, "window")
    case_ = await _case_for(request, actor, write=True)
    return actor, case_, await _json(request)


@routes.post("/api/v1/cases/{case_id}/supplement")
async def supplement(request: web.Request) -> web.Response:
    actor, case_, body = await _applicant_action(request)
    idempotency = _idempotency(request, body)
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > 1000:
        raise InvalidInput(FieldError("note", "must be text of at most 1000 characters"))
    outcome = await request.app[K.CASES].supplement(actor, case_.case_id,
                                                    body.get("materials"),
                                                    note if isinstance(note, str) else "",
                                                    idempotency=idempotency)
    return await _answer(request, outcome, actor)


@routes.post("/api/v1/cases/{case_id}/withdraw")
async def withdraw(request: web.Request) -> web.Response:
    actor, case_, body = await _applicant_action(request)
    idempotency = _idempotency(request, body)
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
        raise InvalidInput(FieldError("reason", "is required, at most 500 characters"))
    outcome = await request.app[K.CASES].withdraw(actor, case_.case_id, reason,
                                                  idempotency=idempotency)
    return await _answer(request, outcome, actor)


@routes.post("/api/v1/cases/{case_id}/delivery")
async def delivery(request: web.Request) -> web.Response:
    actor, case_, body = await _applicant_action(request)
    idempotency = _idempotency(request, body)
    outcome = await request.app[K.CASES].choose_delivery(actor, case_.case_id, body,
                                                         idempotency=idempotency)
    return await _answer(request, outcome, actor)


@routes.post("/api/v1/cases/{case_id}/evaluation")
async def evaluation(request: web.Request) -> web.Response:
    actor, case_, body = await _applicant_action(request)
    updated = await request.app[K.CASES].evaluate(actor, case_.case_id, body.get("level"),
                                                  body.get("comment"))
    return await _render(request, updated, actor=actor)


# --- the receiving window ---------------------------------------------------------------
@routes.post("/api/v1/window/cases")
async def window_intake(request: web.Request) -> web.Response:
    actor = require_role(await _actor(request), "window")
    body = await _json(request)
    idempotency = _idempotency(request, body)
    service = request.app[K.CASES]
    check = body.get("identity_check")
    if not isinstance(check, dict) or check.get("method") not in ("id_card_reader", "face",
                                                                   "document"):
        raise InvalidInput(FieldError("identity_check.method",
                                      "must be id_card_reader, face or document (身份核验)"))
    loa = check.get("loa", "L4")
    if loa not in ("L2", "L3", "L4", "L5"):
        raise InvalidInput(FieldError("identity_check.loa", "must be L2, L3, L4 or L5"))
    # An in-person check with the card reader and face match is L4 unless stated otherwise.
    body["loa"] = loa
    app = parse_application(body, today=service.today(), default_mode="proxy")
    filed = await service.window_intake(actor, app, {"method": check["method"], "loa": loa},
                                        idempotency=idempotency)
    return await _answer(request, filed, actor)


@routes.post("/api/v1/window/cases/{case_id}/formal-check")
async def formal_check(request: web.Request) -> web.Response:
    actor = require_role(await _actor(request), "window")
    body = await _json(request)
    case_, missing = await request.app[K.CASES].formal_check(
        actor, request.match_info["case_id"], body.get("materials"))
    if missing:
        return await _render(request, case_, 200, complete=False, missing=missing,
                             actor=actor)
    return await _render(request, case_, 200, complete=True, missing=[], actor=actor)


@routes.post("/api/v1/window/cases/{case_id}/forward")
async def forward(request: web.Request) -> web.Response:
    actor = require_role(await _actor(request), "window")
    body = await _json(request)
    courier = body.get("courier", [])
    if not isinstance(courier, list) or len(courier) > 20 or \
            not all(isinstance(t, str) and 0 < len(t) <= 64 for t in courier):
        raise InvalidInput(FieldError("courier", "must list up to 20 tracking numbers "
                                                 "(1-64 characters each)"))
    case_ = await request.app[K.CASES].forward(actor, request.match_info["case_id"], courier)
    return await _render(request, case_, 202, actor=actor)


@routes.post("/api/v1/window/cases/{case_id}/handover")
async def handover(request: web.Request) -> web.Response:
    actor = require_role(await _actor(request), "window")
    case_ = await request.app[K.CASES].handover(actor, request.match_info["case_id"])
    return await _render(request, case_, actor=actor)


# --- the handling authority ---------------------------------------------------------------
@routes.post("/api/v1/handling/cases/{case_id}/{action}")
async def handling(request: web.Request) -> web.Response:
    actor = require_role(await _actor(request), "handler")
    action = request.match_info["action"]
    if action not in HANDLING_ACTIONS:
        raise NotFound(f"no action {action}; one of {', '.join(HANDLING_ACTIONS)}")
    body = await _json(request)
    case_ = await request.app[K.CASES].decide(actor, request.match_info["case_id"], action,
                                              body)
    return await _render(request, case_, actor=actor)


@routes.get("/api/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    text = resources.files("gateway").joinpath("http/openapi.json").read_text("utf-8")
    return web.Response(text=text, content_type="application/json")


__all__ = ["HANDLING_ACTIONS", "ROLES", "routes"]
