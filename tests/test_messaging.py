"""A message from A reaches B once, with a receipt A verifies; resends are harmless."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from fedkit import (
    DOUMEN,
    TAOYUAN,
    DbFactory,
    Federation,
    build_federation,
    message_claims,
    new_case,
    post_message,
    problem_code,
    sign_message,
)

from gateway import appkeys as K
from gateway.federation.receipts import verify_receipt
from trust import jws
from trust.keys import sha256_b64url


@pytest.fixture
async def fed(tmp_path: Path, db_factory: DbFactory) -> AsyncIterator[Federation]:
    federation = await build_federation(tmp_path, db_factory)
    try:
        yield federation
    finally:
        await federation.close()


async def test_message_delivered_once_with_verified_receipt(fed: Federation) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    case_id = new_case(DOUMEN)
    entry = await doumen.send(TAOYUAN, "case.submit", case_id=case_id, body={"item": "X-0001"})
    [delivered] = await doumen.wait_delivered(1)
    assert delivered.id == entry.id
    assert delivered.receipt_status == "accepted"
    assert delivered.token is not None and delivered.receipt is not None
    # The receipt kept by the sender verifies against the registry, for exactly those bytes.
    assert doumen.app is not None
    holder = doumen.app[K.HOLDER]
    receipt = verify_receipt(delivered.receipt, snapshot=holder.require_fresh(), receiver=TAOYUAN,
                             sender=DOUMEN, for_jti=delivered.jti,
                             digest=sha256_b64url(delivered.token.encode()), now=fed.clock())
    assert receipt.status.value == "accepted"
    [stored] = await taoyuan.inbox()
    assert (stored.iss, stored.case_id, stored.seq, stored.type) == (DOUMEN, case_id, 1,
                                                                      "case.submit")
    assert stored.token == delivered.token
    assert taoyuan.counter.applied == [(DOUMEN, case_id, 1)]


async def test_same_bytes_again_is_duplicate_and_not_processed(fed: Federation) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    token = sign_message(message_claims(DOUMEN, TAOYUAN), doumen.signing_key())
    async with aiohttp.ClientSession() as session:
        first = await post_message(session, taoyuan, token)
        second = await post_message(session, taoyuan, token)
    assert first[0] == 200 and second[0] == 200
    assert second[1] == "application/jwt"
    statuses = [jws.parse(r[2], jws.TokenType.RECEIPT).claims["status"] for r in (first, second)]
    assert statuses == ["accepted", "duplicate"]
    assert len(await taoyuan.inbox()) == 1
    assert len(taoyuan.counter.applied) == 1


async def test_same_jti_other_bytes_is_replay(fed: Federation) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    claims = message_claims(DOUMEN, TAOYUAN, body={"n": 1})
    other = {**claims, "body": {"n": 2}}
    async with aiohttp.ClientSession() as session:
        ok = await post_message(session, taoyuan, sign_message(claims, doumen.signing_key()))
        status, ctype, text = await post_message(session, taoyuan,
                                                 sign_message(other, doumen.signing_key()))
    assert ok[0] == 200
    assert (status, ctype, problem_code(text)) == (409, "application/problem+json", "replay")
    [stored] = await taoyuan.inbox()
    assert stored.jti == claims["jti"]
    assert len(taoyuan.counter.applied) == 1


async def test_resigned_resend_of_same_case_seq_is_duplicate(fed: Federation) -> None:
    """After its signed bytes expire a sender re-signs under a new jti; that is no new message."""
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    claims = message_claims(DOUMEN, TAOYUAN, body={"n": 1})
    resent = {**message_claims(DOUMEN, TAOYUAN, case_id=claims["case"], body={"n": 1}),
              "seq": 1}
    conflicting = {**message_claims(DOUMEN, TAOYUAN, case_id=claims["case"], body={"n": 9}),
                   "seq": 1}
    key = doumen.signing_key()
    async with aiohttp.ClientSession() as session:
        assert (await post_message(session, taoyuan, sign_message(claims, key)))[0] == 200
        status, _, text = await post_message(session, taoyuan, sign_message(resent, key))
        bad = await post_message(session, taoyuan, sign_message(conflicting, key))
    assert status == 200
    assert jws.parse(text, jws.TokenType.RECEIPT).claims["status"] == "duplicate"
    assert (bad[0], problem_code(bad[2])) == (409, "replay")
    assert len(await taoyuan.inbox()) == 1
    assert len(taoyuan.counter.applied) == 1
