"""Durable delivery: outages, restarts, per-case order, re-signing and dead letters."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fedkit import (
    DOUMEN,
    TAOYUAN,
    DbFactory,
    Federation,
    Node,
    build_federation,
    new_case,
    wait_for,
)

from gateway import appkeys as K
from gateway.db.repos import DestinationRepo, InboxEntry, OutboxRepo, OutboxState
from trust import jws


@pytest.fixture
async def fed(tmp_path: Path, db_factory: DbFactory) -> AsyncIterator[Federation]:
    federation = await build_federation(tmp_path, db_factory)
    try:
        yield federation
    finally:
        await federation.close()


async def queue_cases(node: Node, to: str, cases: int, per_case: int) -> dict[str, int]:
    """Interleave messages of several cases, as real traffic does."""
    case_ids = [new_case(node.member_id) for _ in range(cases)]
    for step in range(per_case):
        for case_id in case_ids:
            await node.send(to, "case.status", case_id=case_id, body={"step": step})
    return dict.fromkeys(case_ids, per_case)


def assert_in_order(entries: list[InboxEntry], expected: dict[str, int]) -> None:
    seqs: dict[str, list[int]] = defaultdict(list)
    for entry in sorted(entries, key=lambda e: e.id):
        assert entry.case_id is not None and entry.seq is not None
        seqs[entry.case_id].append(entry.seq)
    assert {c: s for c, s in seqs.items()} == {c: list(range(1, n + 1))
                                               for c, n in expected.items()}


async def wait_destination_failing(node: Node, dest: str) -> None:
    assert node.app is not None
    repo = DestinationRepo(node.engine)

    async def failing() -> bool:
        return (await repo.get(dest)).failures >= 2

    await wait_for(failing, what=f"{node.member_id} to notice {dest} is down")


async def test_receiver_down_then_back_everything_delivered_in_order(fed: Federation) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    await taoyuan.stop()
    expected = await queue_cases(doumen, TAOYUAN, cases=5, per_case=4)
    await wait_destination_failing(doumen, TAOYUAN)
    pending = await doumen.outbox(OutboxState.PENDING)
    assert len(pending) == 20
    assert all(e.receipt is None for e in pending)
    await taoyuan.start()
    delivered = await doumen.wait_delivered(20)
    assert {e.receipt_status for e in delivered} == {"accepted"}
    entries = await taoyuan.inbox()
    assert len(entries) == 20
    assert_in_order(entries, expected)
    assert len(taoyuan.counter.applied) == 20


async def test_sender_restarted_while_receiver_down_loses_nothing(fed: Federation) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    await taoyuan.stop()
    expected = await queue_cases(doumen, TAOYUAN, cases=3, per_case=3)
    await wait_destination_failing(doumen, TAOYUAN)
    await doumen.stop()
    await taoyuan.start()
    assert await doumen.outbox(OutboxState.DELIVERED) == []
    await doumen.start()
    await doumen.wait_delivered(9)
    entries = await taoyuan.inbox()
    assert len(entries) == 9
    assert_in_order(entries, expected)


async def test_sender_restarted_mid_flow_delivers_each_once(fed: Federation) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    expected = await queue_cases(doumen, TAOYUAN, cases=10, per_case=6)

    async def some_delivered() -> bool:
        return len(await doumen.outbox(OutboxState.DELIVERED)) >= 5

    await wait_for(some_delivered, what="first deliveries")
    await doumen.stop()
    partially = len(await doumen.outbox(OutboxState.DELIVERED))
    await doumen.start()
    await doumen.wait_delivered(60)
    entries = await taoyuan.inbox()
    assert len(entries) == 60, f"{partially} delivered before the restart"
    assert_in_order(entries, expected)
    assert len(taoyuan.counter.applied) == 60
    assert len(set(taoyuan.counter.applied)) == 60


async def test_message_is_signed_as_it_is_queued_and_sent_as_stored(fed: Federation) -> None:
    """The bytes are signed in the transaction that queues the message, so they are stored
    before any attempt and the receiver gets exactly them (a resend after a crash would be
    byte-identical)."""
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    await taoyuan.stop()
    case_id = new_case(DOUMEN)
    entry = await doumen.send(TAOYUAN, "case.submit", case_id=case_id, body={"n": 1})
    assert entry.token is not None and entry.token_exp is not None
    [stored] = await doumen.outbox(OutboxState.PENDING)
    assert (stored.token, stored.token_exp, stored.jti) == (entry.token, entry.token_exp,
                                                              entry.jti)
    claims = jws.parse(entry.token, jws.TokenType.MESSAGE).claims
    assert {k: claims[k] for k in ("iss", "aud", "jti", "type", "case", "seq", "body")} == {
        "iss": DOUMEN, "aud": TAOYUAN, "jti": entry.jti, "type": "case.submit",
        "case": case_id, "seq": 1, "body": {"n": 1}}
    assert claims["iat"] == int(entry.created_at)
    assert entry.token_exp == claims["exp"] and claims["exp"] - claims["iat"] <= 300
    await taoyuan.start()
    [delivered] = await doumen.wait_delivered(1)
    assert (delivered.jti, delivered.token) == (entry.jti, entry.token)
    [received] = await taoyuan.inbox()
    assert (received.jti, received.token) == (entry.jti, entry.token)


async def test_expired_signed_copy_is_resigned_and_delivered_once(fed: Federation) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    await taoyuan.stop()
    entry = await doumen.send(TAOYUAN, "case.submit", case_id=new_case(DOUMEN))
    await wait_destination_failing(doumen, TAOYUAN)
    [first] = await doumen.outbox(OutboxState.PENDING)
    assert first.token is not None and first.jti == entry.jti
    fed.clock.advance(600)  # the signed copy (exp = iat + 300) is now useless
    await taoyuan.start()
    [delivered] = await doumen.wait_delivered(1)
    assert delivered.jti != entry.jti  # new bytes, new message id
    assert delivered.token != first.token
    [stored] = await taoyuan.inbox()
    assert stored.jti == delivered.jti
    assert len(taoyuan.counter.applied) == 1


async def test_undeliverable_message_parks_as_dead_letter_and_can_be_retried(
        fed: Federation) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    await taoyuan.stop()
    entry = await doumen.send(TAOYUAN, "case.submit", case_id=new_case(DOUMEN))
    await wait_destination_failing(doumen, TAOYUAN)
    fed.clock.advance(73 * 3600)  # past delivery.dead_after (72 h by default)

    async def parked() -> bool:
        return len(await doumen.outbox(OutboxState.DEAD)) == 1

    await wait_for(parked, what="the message to park as a dead letter")
    [dead] = await doumen.outbox(OutboxState.DEAD)
    assert dead.id == entry.id and dead.last_error
    await taoyuan.start()
    assert doumen.app is not None
    assert await OutboxRepo(doumen.engine).retry_dead(now=fed.clock(), row_id=entry.id) == 1
    doumen.app[K.DISPATCHER].notify(TAOYUAN)
    [delivered] = await doumen.wait_delivered(1)
    assert delivered.id == entry.id
    assert len(await taoyuan.inbox()) == 1


async def test_permanent_refusal_parks_at_once(fed: Federation) -> None:
    """An answer that retrying cannot change (here `invalid-body`) is not retried forever."""
    doumen = fed[DOUMEN]
    await doumen.send(TAOYUAN, "case.teleport", case_id=new_case(DOUMEN))

    async def parked() -> bool:
        return len(await doumen.outbox(OutboxState.DEAD)) == 1

    await wait_for(parked, what="the refused message to park")
    [dead] = await doumen.outbox(OutboxState.DEAD)
    assert dead.attempts == 1
    assert dead.last_error is not None and "invalid-body" in dead.last_error
