"""Every refusal of PROTOCOL.md §4/§7 answers with its code and stores nothing."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from fedkit import (
    DOUMEN,
    OPERATOR_ID,
    TAOYUAN,
    DbFactory,
    Federation,
    build_federation,
    hmac_token,
    message_claims,
    post_message,
    problem_code,
    sign_message,
    unsigned_token,
)

from registry.document import Status
from trust import jws
from trust.keys import generate


@pytest.fixture
async def fed(tmp_path: Path, db_factory: DbFactory) -> AsyncIterator[Federation]:
    federation = await build_federation(tmp_path, db_factory)
    try:
        yield federation
    finally:
        await federation.close()


@dataclass(frozen=True)
class Attack:
    name: str
    build: Callable[[Federation], str | bytes]
    status: int
    code: str


def _doumen(fed: Federation, **overrides: object) -> dict[str, object]:
    claims = message_claims(DOUMEN, TAOYUAN, now=fed.clock())
    claims.update(overrides)
    return claims


def _sign(fed: Federation, claims: dict[str, object]) -> str:
    return sign_message(claims, fed[DOUMEN].signing_key())


def tampered(fed: Federation) -> str:
    head, payload, sig = _sign(fed, _doumen(fed)).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["body"] = {"injected": True}
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{sig}"


def signed_as_other_member(fed: Federation) -> str:
    """Doumen's key, claiming to be Taoyuan, sending to Taoyuan: the kid is not Taoyuan's."""
    claims = message_claims(TAOYUAN, TAOYUAN, now=fed.clock())
    return sign_message(claims, fed[DOUMEN].signing_key())


def signed_as_other_member_with_their_kid(fed: Federation) -> str:
    claims = message_claims(TAOYUAN, TAOYUAN, now=fed.clock())
    header = {"alg": "EdDSA", "typ": "tongban-msg+jwt", "kid": fed[TAOYUAN].signing_key().kid}
    real = sign_message(claims, fed[DOUMEN].signing_key())
    _, payload, sig = real.split(".")
    head = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return f"{head}.{payload}.{sig}"


def alg_none(fed: Federation) -> str:
    header = {"alg": "none", "typ": "tongban-msg+jwt", "kid": fed[DOUMEN].signing_key().kid}
    return unsigned_token(header, _doumen(fed))


def hs256_with_public_key(fed: Federation) -> str:
    key = fed[DOUMEN].signing_key()
    pem = key.public.public_bytes(serialization.Encoding.PEM,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "tongban-msg+jwt", "kid": key.kid}
    return hmac_token(header, _doumen(fed), pem)


def wrong_typ(fed: Federation) -> str:
    return jws.sign(_doumen(fed), fed[DOUMEN].signing_key(), jws.TokenType.RECEIPT)


def wrong_aud(fed: Federation) -> str:
    return _sign(fed, _doumen(fed, aud=OPERATOR_ID))


def expired(fed: Federation) -> str:
    now = int(fed.clock())
    return _sign(fed, _doumen(fed, iat=now - 400, exp=now - 100))


def issued_in_future(fed: Federation) -> str:
    now = int(fed.clock())
    return _sign(fed, _doumen(fed, iat=now + 3600, exp=now + 3700))


def lifetime_too_long(fed: Federation) -> str:
    now = int(fed.clock())
    return _sign(fed, _doumen(fed, iat=now, exp=now + 3600))


def unknown_member(fed: Federation) -> str:
    return sign_message(message_claims("CN-110105", TAOYUAN, now=fed.clock()), generate())


def too_large(fed: Federation) -> bytes:
    return b"x" * (1024 * 1024 + 1)


def not_json(fed: Federation) -> str:
    return "this is not a token"


def payload_not_json(fed: Federation) -> str:
    header = {"alg": "EdDSA", "typ": "tongban-msg+jwt", "kid": fed[DOUMEN].signing_key().kid}
    head = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return f"{head}.{base64.urlsafe_b64encode(b'not json').rstrip(b'=').decode()}.AAAA"


def _without(name: str) -> Callable[[Federation], str]:
    def build(fed: Federation) -> str:
        claims = _doumen(fed)
        del claims[name]
        return _sign(fed, claims)

    return build


def unknown_type(fed: Federation) -> str:
    return _sign(fed, _doumen(fed, type="case.teleport"))


def body_not_object(fed: Federation) -> str:
    return _sign(fed, _doumen(fed, body=["a", "list"]))


def bad_case_id(fed: Federation) -> str:
    return _sign(fed, _doumen(fed, case="not-a-case"))


def registry_update_from_member(fed: Federation) -> str:
    claims = _doumen(fed, type="registry.updated", body={"version": 99})
    del claims["case"], claims["seq"]
    return _sign(fed, claims)


ATTACKS = [
    Attack("tampered payload", tampered, 401, "bad-signature"),
    Attack("member A signing as member B", signed_as_other_member, 401, "unknown-key"),
    Attack("A's signature under B's kid", signed_as_other_member_with_their_kid, 401,
           "bad-signature"),
    Attack("alg none", alg_none, 401, "bad-signature"),
    Attack("HS256 keyed with the public key", hs256_with_public_key, 401, "bad-signature"),
    Attack("wrong typ", wrong_typ, 400, "malformed"),
    Attack("wrong aud", wrong_aud, 401, "wrong-audience"),
    Attack("expired", expired, 401, "expired"),
    Attack("iat far in the future", issued_in_future, 401, "expired"),
    Attack("exp more than 300 s after iat", lifetime_too_long, 400, "malformed"),
    Attack("unknown member", unknown_member, 401, "unknown-member"),
    Attack("body over 1 MiB", too_large, 413, "too-large"),
    Attack("not JSON", not_json, 400, "malformed"),
    Attack("payload not JSON", payload_not_json, 400, "malformed"),
    Attack("missing iss", _without("iss"), 400, "malformed"),
    Attack("missing jti", _without("jti"), 400, "malformed"),
    Attack("missing exp", _without("exp"), 400, "malformed"),
    Attack("missing type", _without("type"), 400, "malformed"),
    Attack("missing seq", _without("seq"), 422, "invalid-body"),
    Attack("unknown message type", unknown_type, 422, "invalid-body"),
    Attack("body not an object", body_not_object, 422, "invalid-body"),
    Attack("case id malformed", bad_case_id, 422, "invalid-body"),
    Attack("registry.updated from a non-operator", registry_update_from_member, 403,
           "not-authorized"),
]


async def assert_refused(fed: Federation, token: str | bytes, status: int, code: str, *,
                         content_type: str = "application/jwt") -> None:
    taoyuan = fed[TAOYUAN]
    async with aiohttp.ClientSession() as session:
        got_status, ctype, text = await post_message(session, taoyuan, token,
                                                     content_type=content_type)
    assert (got_status, ctype) == (status, "application/problem+json"), text
    doc = json.loads(text)
    assert problem_code(text) == code
    assert doc["status"] == status and doc["title"] and doc["detail"]
    assert doc["instance"].startswith("urn:uuid:")
    stored = await taoyuan.inbox(cases_only=False)
    assert [e for e in stored if e.type != "registry.updated"] == []
    assert taoyuan.counter.applied == []


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
async def test_refused_and_nothing_stored(fed: Federation, attack: Attack) -> None:
    await assert_refused(fed, attack.build(fed), attack.status, attack.code)


async def test_wrong_content_type_refused(fed: Federation) -> None:
    token = _sign(fed, _doumen(fed))
    await assert_refused(fed, token, 400, "malformed", content_type="application/json")


async def test_suspended_member_refused(fed: Federation) -> None:
    version = await fed.publish(lambda a: a.set_status(DOUMEN, Status.SUSPENDED))
    await fed[TAOYUAN].wait_registry(version)
    await assert_refused(fed, _sign(fed, _doumen(fed)), 403, "member-suspended")


async def test_revoked_member_refused(fed: Federation) -> None:
    version = await fed.publish(lambda a: a.set_status(DOUMEN, Status.REVOKED))
    await fed[TAOYUAN].wait_registry(version)
    await assert_refused(fed, _sign(fed, _doumen(fed)), 403, "member-suspended")


async def test_registry_past_exp_fails_closed(fed: Federation) -> None:
    fed.clock.advance(8 * 24 * 3600)  # past the 7-day registry validity
    await assert_refused(fed, _sign(fed, _doumen(fed)), 503, "registry-stale")
