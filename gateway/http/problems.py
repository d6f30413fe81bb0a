"""RFC 9457 problem details and request ids, for every route, in one middleware."""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.db.engine import database_unreachable
from trust.errors import ErrorCode, TongbanError

log = logging.getLogger(__name__)

PROBLEM_TYPE = "urn:tongban:error:"
REQUEST_ID = web.RequestKey("request_id", str)
# The id of the request being handled, for log lines written anywhere below the handler.
CURRENT_REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id",
                                                                         default="-")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_HTTP_CODES = {400: ErrorCode.MALFORMED, 403: ErrorCode.FORBIDDEN, 404: ErrorCode.NOT_FOUND,
               405: ErrorCode.METHOD_NOT_ALLOWED, 413: ErrorCode.TOO_LARGE,
               415: ErrorCode.UNSUPPORTED_MEDIA_TYPE}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(code: ErrorCode, detail: str, request_id: str,
            errors: list[dict[str, str]] | None = None) -> web.Response:
    body: dict[str, object] = {
        "type": PROBLEM_TYPE + code.value, "title": code.problem_title, "status": code.status,
        "detail": detail, "instance": f"urn:uuid:{request_id}"}
    if errors:
        body["errors"] = errors  # RFC 9457 §3.2 extension: every field problem at once
    response = web.json_response(body, status=code.status,
                                 content_type="application/problem+json")
    response.headers["X-Request-Id"] = request_id
    return response


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record, so an `instance` in a problem can be found in logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = CURRENT_REQUEST_ID.get()
        return True


def request_id(request: web.Request) -> str:
    value: str = request.get(REQUEST_ID, "")
    return value


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    rid = str(uuid.uuid4())
    request[REQUEST_ID] = rid
    CURRENT_REQUEST_ID.set(rid)
    if incoming and _REQUEST_ID_RE.match(incoming):
        log.debug("peer request id %s is ours %s", incoming, rid)
    try:
        response = await handler(request)
    except TongbanError as exc:
        log.info("%s %s -> %s: %s", request.method, request.path, exc.code.value, exc.detail)
        fields = getattr(exc, "errors", None)
        errors = ([{"field": str(e.field), "reason": str(e.reason)} for e in fields]
                  if isinstance(fields, tuple) else None)
        return problem(exc.code, exc.detail, rid, errors)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, ErrorCode.MALFORMED if exc.status < 500
                               else ErrorCode.INTERNAL)
        return problem(code, exc.reason or code.problem_title, rid)
    except Exception as exc:
        if database_unreachable(exc):
            log.warning("%s %s -> unavailable: database not reachable: %s", request.method,
                        request.path, type(exc.__cause__ or exc).__name__)
            response = problem(ErrorCode.UNAVAILABLE,
                               "the database is not reachable just now; try again shortly", rid)
            response.headers["Retry-After"] = "1"
            return response
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(ErrorCode.INTERNAL, "internal error; quote the instance id", rid)
    response.headers["X-Request-Id"] = rid
    return response
