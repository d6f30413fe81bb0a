"""Every route answers errors as RFC 9457 problem+json with a stable code (Datasette's habit).

The table below must name every route the app serves; a new route without an error case here
fails `test_every_route_is_covered`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from fedkit import DOUMEN, DbFactory, Federation, build_federation

_SHA = "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"  # SHA-256 of nothing
_CASE = "CN-440403:3a2b5fb5-2024-446f-91e5-be90bf9fb74c"
ERROR_CASES: list[tuple[str, str, str, str, int, str]] = [
    # (route method, route path, request method, request path, status, code)
    ("POST", "/federation/v1/messages", "GET", "/federation/v1/messages", 405,
     "method-not-allowed"),
    ("POST", "/federation/v1/messages", "POST", "/federation/v1/messages", 400, "malformed"),
    ("GET", "/federation/v1/keys", "DELETE", "/federation/v1/keys", 405, "method-not-allowed"),
    ("GET", "/federation/v1/info", "POST", "/federation/v1/info", 405, "method-not-allowed"),
    ("GET", "/healthz", "PUT", "/healthz", 405, "method-not-allowed"),
    ("PUT", "/federation/v1/blobs/{sha256}", "GET", f"/federation/v1/blobs/{_SHA}", 405,
     "method-not-allowed"),
    ("PUT", "/federation/v1/blobs/{sha256}", "PUT", f"/federation/v1/blobs/{_SHA}", 401,
     "bad-signature"),
    ("PUT", "/federation/v1/blobs/{sha256}", "PUT", "/federation/v1/blobs/abc", 400, "malformed"),
    ("GET", "/registry/v1/current", "POST", "/registry/v1/current", 405, "method-not-allowed"),
    ("GET", "/registry/v1/versions/{n}", "GET", "/registry/v1/versions/abc", 400, "malformed"),
    ("GET", "/registry/v1/versions/{n}", "GET", "/registry/v1/versions/999", 404, "not-found"),
    # A superscript two passes str.isdigit() but is no version number.
    ("GET", "/registry/v1/versions/{n}", "GET", "/registry/v1/versions/%C2%B2", 400,
     "malformed"),
    # The portal and window API: every route refuses an anonymous or malformed call.
    ("POST", "/api/v1/login", "POST", "/api/v1/login", 422, "invalid-body"),
    ("POST", "/api/v1/logout", "POST", "/api/v1/logout", 401, "unauthenticated"),
    ("POST", "/api/v1/applicant-sessions", "POST", "/api/v1/applicant-sessions", 401,
     "unauthenticated"),
    ("POST", "/api/v1/materials", "POST", "/api/v1/materials", 401, "unauthenticated"),
    ("GET", "/api/v1/items", "GET", "/api/v1/items", 401, "unauthenticated"),
    ("POST", "/api/v1/cases", "POST", "/api/v1/cases", 401, "unauthenticated"),
    ("GET", "/api/v1/cases", "GET", "/api/v1/cases", 401, "unauthenticated"),
    ("GET", "/api/v1/cases/{case_id}", "GET", f"/api/v1/cases/{_CASE}", 401,
     "unauthenticated"),
    ("POST", "/api/v1/cases/{case_id}/supplement", "POST", f"/api/v1/cases/{_CASE}/supplement",
     401, "unauthenticated"),
    ("POST", "/api/v1/cases/{case_id}/withdraw", "POST", f"/api/v1/cases/{_CASE}/withdraw",
     401, "unauthenticated"),
    ("POST", "/api/v1/cases/{case_id}/delivery", "POST", f"/api/v1/cases/{_CASE}/delivery",
     401, "unauthenticated"),
    ("POST", "/api/v1/cases/{case_id}/evaluation", "POST", f"/api/v1/cases/{_CASE}/evaluation",
     401, "unauthenticated"),
    ("POST", "/api/v1/window/cases", "POST", "/api/v1/window/cases", 401, "unauthenticated"),
    ("POST", "/api/v1/window/cases/{case_id}/formal-check", "POST",
     f"/api/v1/window/cases/{_CASE}/formal-check", 401, "unauthenticated"),
    ("POST", "/api/v1/window/cases/{case_id}/forward", "POST",
     f"/api/v1/window/cases/{_CASE}/forward", 401, "unauthenticated"),
    ("POST", "/api/v1/window/cases/{case_id}/handover", "POST",
     f"/api/v1/window/cases/{_CASE}/handover", 401, "unauthenticated"),
    ("POST", "/api/v1/handling/cases/{case_id}/{action}", "POST",
     f"/api/v1/handling/cases/{_CASE}/accept", 401, "unauthenticated"),
    ("GET", "/api/v1/openapi.json", "POST", "/api/v1/openapi.json", 405, "method-not-allowed"),
    ("POST", "/adapters/v1/events", "POST", "/adapters/v1/events", 404, "not-found"),
    ("GET", "/metrics", "POST", "/metrics", 405, "method-not-allowed"),
    ("GET", "/admin/v1/outbox", "GET", "/admin/v1/outbox", 401, "unauthenticated"),
    ("POST", "/admin/v1/outbox/{row_id}/retry", "POST", "/admin/v1/outbox/1/retry", 401,
     "unauthenticated"),
    ("POST", "/admin/v1/outbox/retry-dead", "POST", "/admin/v1/outbox/retry-dead", 401,
     "unauthenticated"),
    ("GET", "/admin/v1/local-calls", "GET", "/admin/v1/local-calls", 401, "unauthenticated"),
    ("POST", "/admin/v1/local-calls/retry-dead", "POST", "/admin/v1/local-calls/retry-dead",
     401, "unauthenticated"),
    ("GET", "/readyz", "POST", "/readyz", 405, "method-not-allowed"),
    # The admin console: pages answer a wrong method as a problem; forms refuse anyone not
    # signed in (the login form: anyone without its CSRF token).
    ("GET", "/admin/static/console.css", "POST", "/admin/static/console.css", 405,
     "method-not-allowed"),
    ("GET", "/admin/", "DELETE", "/admin/", 405, "method-not-allowed"),
    ("POST", "/admin/login", "POST", "/admin/login", 403, "forbidden"),
    ("POST", "/admin/logout", "POST", "/admin/logout", 401, "unauthenticated"),
    ("GET", "/admin/members", "POST", "/admin/members", 405, "method-not-allowed"),
    ("POST", "/admin/members/{member_id}/status", "POST", "/admin/members/CN-440403/status",
     401, "unauthenticated"),
    ("GET", "/admin/registry", "POST", "/admin/registry", 405, "method-not-allowed"),
    ("GET", "/admin/registry/diff", "POST", "/admin/registry/diff", 405, "method-not-allowed"),
    ("GET", "/admin/keys", "POST", "/admin/keys", 405, "method-not-allowed"),
    ("POST", "/admin/keys/rotate", "POST", "/admin/keys/rotate", 401, "unauthenticated"),
    ("POST", "/admin/keys/{kid}/retire", "POST", "/admin/keys/abc/retire", 401,
     "unauthenticated"),
    ("GET", "/admin/cases", "POST", "/admin/cases", 405, "method-not-allowed"),
    ("GET", "/admin/outbox", "POST", "/admin/outbox", 405, "method-not-allowed"),
    ("POST", "/admin/outbox/{row_id}/retry", "POST", "/admin/outbox/1/retry", 401,
     "unauthenticated"),
    ("POST", "/admin/outbox/retry-dead", "POST", "/admin/outbox/retry-dead", 401,
     "unauthenticated"),
    ("POST", "/admin/local-calls/retry-dead", "POST", "/admin/local-calls/retry-dead", 401,
     "unauthenticated"),
    ("GET", "/admin/volume", "POST", "/admin/volume", 405, "method-not-allowed"),
    # Single sign-on answers its own refusals as RFC 6749 errors (tests/test_sso.py); the
    # portal answers with pages. Both still answer a wrong method as a problem.
    ("POST", "/sso/v1/token", "GET", "/sso/v1/token", 405, "method-not-allowed"),
    ("GET", "/portal/static/portal.css", "POST", "/portal/static/portal.css", 405,
     "method-not-allowed"),
    ("GET", "/portal/", "DELETE", "/portal/", 405, "method-not-allowed"),
    ("POST", "/portal/login", "GET", "/portal/login", 405, "method-not-allowed"),
    ("POST", "/portal/logout", "GET", "/portal/logout", 405, "method-not-allowed"),
    ("POST", "/portal/go", "GET", "/portal/go", 405, "method-not-allowed"),
    ("POST", "/portal/sso", "GET", "/portal/sso", 405, "method-not-allowed"),
    ("GET", "/portal/apply/{code}", "DELETE", "/portal/apply/KSTB-SB-0001", 405,
     "method-not-allowed"),
    ("POST", "/portal/apply/{code}", "PUT", "/portal/apply/KSTB-SB-0001", 405,
     "method-not-allowed"),
    ("GET", "/portal/cases", "POST", "/portal/cases", 405, "method-not-allowed"),
    ("GET", "/portal/cases/{case_id}", "POST", f"/portal/cases/{_CASE}", 405,
     "method-not-allowed"),
]
MEMBER_CASES = [
    # a member that is not the operator has no registry to serve
    ("GET", "/registry/v1/current", 404, "not-found"),
    ("GET", "/registry/v1/versions/1", 404, "not-found"),
    ("GET", "/no/such/route", 404, "not-found"),
]


@pytest.fixture
async def fed(tmp_path: Path, db_factory: DbFactory) -> AsyncIterator[Federation]:
    federation = await build_federation(tmp_path, db_factory, (DOUMEN,))
    try:
        yield federation
    finally:
        await federation.close()


def assert_problem(status: int, content_type: str, text: str, expected_status: int,
                   code: str) -> None:
    assert status == expected_status, text
    assert content_type == "application/problem+json"
    doc = json.loads(text)
    # `errors` is the one extension: field-by-field problems of an invalid body.
    assert set(doc) - {"errors"} == {"type", "title", "status", "detail", "instance"}
    for error in doc.get("errors", []):
        assert set(error) == {"field", "reason"} and error["field"] and error["reason"]
    assert doc["type"] == f"urn:tongban:error:{code}"
    assert doc["status"] == expected_status
    assert isinstance(doc["title"], str) and doc["title"]
    assert isinstance(doc["detail"], str)
    assert doc["instance"].startswith("urn:uuid:")


async def test_every_route_is_covered(fed: Federation) -> None:
    assert fed.operator.app is not None
    served = set()
    for route in fed.operator.app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        served.add((route.method, path))
    covered = {(m, p) for m, p, *_ in ERROR_CASES}
    assert served == covered


async def test_errors_are_problem_json(fed: Federation) -> None:
    async with aiohttp.ClientSession() as session:
        for _, _, method, path, status, code in ERROR_CASES:
            async with session.request(method, fed.operator.url + path,
                                       headers={"Content-Type": "application/json"},
                                       data=b"{}") as resp:
                assert_problem(resp.status, resp.content_type, await resp.text(), status, code)
                assert resp.headers["X-Request-Id"]
        for method, path, status, code in MEMBER_CASES:
            async with session.request(method, fed[DOUMEN].url + path) as resp:
                assert_problem(resp.status, resp.content_type, await resp.text(), status, code)


async def test_discovery_endpoints(fed: Federation) -> None:
    doumen = fed[DOUMEN]
    async with aiohttp.ClientSession() as session:
        async with session.get(doumen.url + "/federation/v1/info") as resp:
            info = await resp.json()
        async with session.get(doumen.url + "/federation/v1/keys") as resp:
            assert resp.content_type == "application/jwk-set+json"
            jwks = await resp.json(content_type=None)
        async with session.get(fed.operator.url + "/registry/v1/current") as resp:
            assert resp.content_type == "application/jwt"
            current = await resp.text()
    assert info["member"] == DOUMEN and info["alliance"] == "yunshangban"
    assert info["protocol"] == 1 and info["registry_version"] == 2
    assert info["registry_expires_at"].endswith("Z")
    assert [k["kid"] for k in jwks["keys"]] == [doumen.signing_key().kid]
    assert all("d" not in k for k in jwks["keys"])
    assert current.count(".") == 2
