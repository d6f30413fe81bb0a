"""Single sign-on across members (PROTOCOL.md §6), against real gateways on loopback.

Every refusal is an RFC 6749 error object and opens no session; a good token opens exactly one;
logging out at home ends the sessions derived from it everywhere; and no token, password or
full ID number reaches a log line.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from casekit import ONLINE_ITEM, Api, applicant, case_federation, make_id, materials
from cryptography.hazmat.primitives import serialization
from fedkit import (
    CHANGDE,
    DOUMEN,
    TAOYUAN,
    DbFactory,
    Federation,
    hmac_token,
    message_claims,
    sign_message,
    unsigned_token,
    wait_for,
)
from sqlalchemy import func, select

from gateway.db.schema import sessions
from gateway.sso.accounts import add_local_account
from registry.document import Role, Status
from trust import sso
from trust.keys import SigningKey

WORKER_ID = make_id("430725", "19880412", "135")
PASSWORD = "taoyuan-2026-worker"
EXCHANGE = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt"}


@pytest.fixture
async def fed(tmp_path: Path, db_factory: DbFactory) -> AsyncIterator[Federation]:
    federation = await case_federation(tmp_path, db_factory)
    try:
        await add_local_account(federation[TAOYUAN].engine, id_number=WORKER_ID,
                                name="王桃源", loa="L4", password=PASSWORD, now=time.time())
        yield federation
    finally:
        await federation.close()


def token_for(fed: Federation, *, key: SigningKey | None = None, iss: str = TAOYUAN,
              aud: str = DOUMEN, loa: str = "L4", now: float | None = None) -> str:
    token, _ = sso.issue(key or fed[iss].signing_key(), iss=iss, aud=aud, sub="pairwise",
                         loa=loa, name="王桃源", sid="s-1",
                         now=fed.clock() if now is None else now, idn=WORKER_ID)
    return token


async def exchange(http: aiohttp.ClientSession, fed: Federation, token: str,
                   target: str = DOUMEN, **override: str) -> tuple[int, dict[str, Any]]:
    form = {**EXCHANGE, "subject_token": token, **override}
    async with http.post(fed[target].url + "/sso/v1/token", data=form) as resp:
        assert resp.headers.get("Cache-Control") == "no-store"
        return resp.status, await resp.json()


async def session_count(fed: Federation, member: str = DOUMEN) -> int:
    async with fed[member].engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(sessions)))
                   .scalar_one())


def _claims(fed: Federation, **change: Any) -> dict[str, Any]:
    now = int(fed.clock())
    return {"iss": TAOYUAN, "aud": DOUMEN, "sub": "x", "iat": now, "exp": now + 120,
            "jti": "j-1", "loa": "L4", "name": "王", "sid": "s", **change}


def alg_none(fed: Federation) -> str:
    kid = fed[TAOYUAN].signing_key().kid
    return unsigned_token({"alg": "none", "typ": "tongban-sso+jwt", "kid": kid}, _claims(fed))


def hmac_with_public_key(fed: Federation) -> str:
    key = fed[TAOYUAN].signing_key()
    public = key.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return hmac_token({"alg": "HS256", "typ": "tongban-sso+jwt", "kid": key.kid},
                      _claims(fed), public)


def message_as_sso(fed: Federation) -> str:
    claims = message_claims(TAOYUAN, DOUMEN, now=fed.clock())
    return sign_message(claims, fed[TAOYUAN].signing_key())


def forged(fed: Federation) -> str:
    """Signed by Doumen's key but claiming Taoyuan and Taoyuan's kid."""
    real = token_for(fed, key=fed[DOUMEN].signing_key())
    head = token_for(fed).split(".")[0]
    return ".".join([head, *real.split(".")[1:]])


REFUSALS: list[tuple[str, Callable[[Federation], str], str]] = [
    ("wrong aud", lambda fed: token_for(fed, aud=CHANGDE), "invalid_grant"),
    ("expired", lambda fed: token_for(fed, now=fed.clock() - 1000), "invalid_grant"),
    ("alg none", alg_none, "invalid_grant"),
    ("HS256 keyed with the public key", hmac_with_public_key, "invalid_grant"),
    ("message JWS presented as SSO token", message_as_sso, "invalid_grant"),
    ("forged signature", forged, "invalid_grant"),
    ("not a JWS", lambda fed: "not-a-token", "invalid_grant"),
]


@pytest.mark.parametrize(("name", "build", "error"), REFUSALS, ids=[r[0] for r in REFUSALS])
async def test_refused_token_opens_no_session(fed: Federation, http: aiohttp.ClientSession,
                                              name: str, build: Callable[[Federation], str],
                                              error: str) -> None:
    before = await session_count(fed)
    token = build(fed)
    status, doc = await exchange(http, fed, token)
    assert (status, doc["error"]) == (400, error), doc
    assert doc["error_description"] and token not in doc["error_description"]
    assert await session_count(fed) == before


async def test_good_token_works_once(fed: Federation, http: aiohttp.ClientSession) -> None:
    token = token_for(fed)
    status, doc = await exchange(http, fed, token)
    assert status == 200, doc
    assert doc["token_type"] == "Bearer" and doc["expires_in"] > 0
    assert doc["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    me = Api(http, fed[DOUMEN], token=doc["access_token"])
    assert (await me.call("GET", "/api/v1/cases"))["cases"] == []
    before = await session_count(fed)
    status, again = await exchange(http, fed, token)
    assert (status, again["error"]) == (400, "invalid_grant")
    assert "already used" in again["error_description"]
    assert await session_count(fed) == before


async def test_request_errors(fed: Federation, http: aiohttp.ClientSession) -> None:
    status, doc = await exchange(http, fed, token_for(fed), grant_type="password")
    assert (status, doc["error"]) == (400, "unsupported_grant_type")
    status, doc = await exchange(http, fed, token_for(fed), subject_token_type="saml")
    assert (status, doc["error"]) == (400, "invalid_request")
    async with http.post(fed[DOUMEN].url + "/sso/v1/token", json={"a": 1}) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_request"


async def test_suspended_issuer_refused(fed: Federation, http: aiohttp.ClientSession) -> None:
    version = await fed.publish(lambda a: a.set_status(TAOYUAN, Status.SUSPENDED))
    await fed[DOUMEN].wait_registry(version)
    before = await session_count(fed)
    status, doc = await exchange(http, fed, token_for(fed))
    assert (status, doc["error"]) == (400, "invalid_grant")
    assert "suspended" in doc["error_description"]
    assert await session_count(fed) == before


async def test_issuer_without_sso_role_refused(fed: Federation,
                                               http: aiohttp.ClientSession) -> None:
    version = await fed.publish(lambda a: a.update_member(
        TAOYUAN, lambda m: m.model_copy(update={"roles": (Role.HANDLER, Role.RECEIVER)})))
    await fed[DOUMEN].wait_registry(version)
    status, doc = await exchange(http, fed, token_for(fed))
    assert (status, doc["error"]) == (400, "invalid_grant")
    assert "sso-issuer" in doc["error_description"]


async def test_loa_too_low_for_the_item(fed: Federation, http: aiohttp.ClientSession) -> None:
    # Asked for the item at the exchange: refused there, and no session opens.
    before = await session_count(fed)
    status, doc = await exchange(http, fed, token_for(fed, loa="L3"), scope=ONLINE_ITEM)
    assert (status, doc["error"]) == (400, "invalid_scope")
    assert "L4" in doc["error_description"] and "L3" in doc["error_description"]
    assert await session_count(fed) == before
    # Without a scope the session opens, and the application itself is refused.
    status, doc = await exchange(http, fed, token_for(fed, loa="L3"))
    assert status == 200
    me = Api(http, fed[DOUMEN], token=doc["access_token"])
    got, _, problem = await me.raw("POST", "/api/v1/cases", {
        "item": ONLINE_ITEM, "handler": DOUMEN,
        "applicant": applicant("430725") | {"id_number": WORKER_ID, "name": "王桃源"},
        "materials": materials(ONLINE_ITEM)})
    assert got == 422
    [error] = [e for e in problem["errors"] if e["field"] == "loa"]
    assert "L4" in error["reason"] and "L3" in error["reason"]


async def test_home_login_handoff_and_logout_everywhere(
        fed: Federation, http: aiohttp.ClientSession,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    taoyuan, doumen = fed[TAOYUAN], fed[DOUMEN]
    assert taoyuan.app is not None
    from gateway import appkeys as K
    home = taoyuan.app[K.SSO_HOME]
    home_token, session = await home.login_local(WORKER_ID, PASSWORD)
    federation_token = await home.handoff(session, DOUMEN)
    status, doc = await exchange(http, fed, federation_token)
    assert status == 200
    access = doc["access_token"]
    me = Api(http, doumen, token=access)
    await me.call("GET", "/api/v1/cases")
    # The pairwise subject differs per target, so two members cannot correlate the person.
    assert sso.parse(federation_token).claims["sub"] != sso.parse(
        await home.handoff(session, CHANGDE)).claims["sub"]
    assert await home.logout(home_token) == 2

    async def ended() -> bool:
        status, _, _ = await me.raw("GET", "/api/v1/cases")
        return status == 401

    await wait_for(ended, what="sso.logout to end the session at Doumen")
    # Nothing secret reached the logs.
    text = caplog.text
    for secret in (home_token, federation_token, access, PASSWORD, WORKER_ID,
                   urllib.parse.quote(WORKER_ID)):
        assert secret not in text
