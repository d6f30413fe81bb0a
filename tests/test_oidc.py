"""The home side signs applicants in with the region's OpenID Connect provider.

A fake provider on loopback publishes its JWK Set; the portal hands the gateway an ID token,
which is checked (signature by the provider's key, issuer, audience, expiry, asymmetric
algorithms only) before a home session opens.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from casekit import Api, case_federation, make_id
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fedkit import TAOYUAN, DbFactory, Federation, reserve_port

ISSUER_PATH = "/idp"
AUDIENCE = "taoyuan-gateway"
PERSON = make_id("430725", "19880412", "135")


class FakeProvider:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        jwk: dict[str, Any] = jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key(),
                                                                as_dict=True)
        self.jwk = {**jwk, "kid": "idp-1", "use": "sig", "alg": "ES256"}
        self.sock = reserve_port()
        self.port = int(self.sock.getsockname()[1])
        self.issuer = f"http://127.0.0.1:{self.port}{ISSUER_PATH}"

    def id_token(self, **change: Any) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": AUDIENCE, "sub": "u-1", "iat": now,
                  "exp": now + 300, "idn": PERSON, "name": "王桃源", "loa": "L4", **change}
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": "idp-1"})

    async def jwks(self, _request: web.Request) -> web.Response:
        return web.json_response({"keys": [self.jwk]})


@pytest.fixture
async def provider() -> AsyncIterator[FakeProvider]:
    fake = FakeProvider()
    app = web.Application()
    app.router.add_get(ISSUER_PATH + "/jwks", fake.jwks)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, fake.sock).start()
    try:
        yield fake
    finally:
        await runner.cleanup()


@pytest.fixture
async def fed(tmp_path: Path, db_factory: DbFactory,
              provider: FakeProvider) -> AsyncIterator[Federation]:
    federation = await case_federation(tmp_path, db_factory, extra={"sso.oidc": {
        "issuer": provider.issuer, "jwks_url": provider.issuer + "/jwks",
        "audience": AUDIENCE}})
    try:
        yield federation
    finally:
        await federation.close()


async def test_id_token_opens_a_home_session(fed: Federation,
                                             provider: FakeProvider) -> None:
    async with aiohttp.ClientSession() as http:
        portal = Api(http, fed[TAOYUAN]).as_portal()
        doc = await portal.call("POST", "/api/v1/applicant-sessions",
                                {"id_token": provider.id_token()}, expect=201)
        me = Api(http, fed[TAOYUAN], token=doc["access_token"])
        assert (await me.call("GET", "/api/v1/cases"))["cases"] == []


@pytest.mark.parametrize("case", ["wrong audience", "wrong issuer", "expired", "unknown key",
                                  "hmac with the public key", "not an assurance level"])
async def test_bad_id_tokens_are_refused(fed: Federation, provider: FakeProvider,
                                         case: str) -> None:
    now = int(time.time())
    if case == "wrong audience":
        token = provider.id_token(aud="someone-else")
    elif case == "wrong issuer":
        token = provider.id_token(iss="https://evil.example/")
    elif case == "expired":
        token = provider.id_token(iat=now - 3600, exp=now - 1800)
    elif case == "unknown key":
        other = ec.generate_private_key(ec.SECP256R1())
        token = jwt.encode({"iss": provider.issuer, "aud": AUDIENCE, "sub": "u", "iat": now,
                            "exp": now + 300, "idn": PERSON, "loa": "L4"}, other,
                           algorithm="ES256", headers={"kid": "idp-2"})
    elif case == "hmac with the public key":
        public = provider.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        import base64
        import hashlib
        import hmac
        import json

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        head = b64(json.dumps({"alg": "HS256", "kid": "idp-1"}).encode()) + "." + b64(
            json.dumps({"iss": provider.issuer, "aud": AUDIENCE, "sub": "u", "iat": now,
                        "exp": now + 300, "idn": PERSON, "loa": "L4"}).encode())
        token = head + "." + b64(hmac.new(public, head.encode(), hashlib.sha256).digest())
    else:
        token = provider.id_token(loa="very high")
    async with aiohttp.ClientSession() as http:
        portal = Api(http, fed[TAOYUAN]).as_portal()
        status, _, problem = await portal.raw("POST", "/api/v1/applicant-sessions",
                                              {"id_token": token})
    assert status == 401, problem
    assert problem["type"] == "urn:tongban:error:unauthenticated"
    assert token not in problem["detail"] and PERSON not in problem["detail"]
