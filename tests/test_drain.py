"""A peer down for a while: the backlog waits in the outbox and drains in order once it is back.

Taoyuan is stopped while Doumen queues 10 messages for each of 40 cases, interleaved across the
cases as they would be in a working day. Doumen keeps trying and failing; nothing is given up.
When Taoyuan starts again the whole backlog arrives: every message once, and each case's
messages arrive (inbox rows) and are applied in the order they were queued. The drain rate is
measured by bench/drain.py, not here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fedkit import DOUMEN, TAOYUAN, DbFactory, Federation, build_federation, new_case, wait_for

from gateway.db.repos import OutboxState

CASES = 40
PER_CASE = 10


@pytest.fixture
async def fed(tmp_path: Path, db_factory: DbFactory) -> AsyncIterator[Federation]:
    federation = await build_federation(tmp_path, db_factory)
    try:
        yield federation
    finally:
        await federation.close()


async def test_backlog_drains_in_order_per_case_when_the_peer_is_back(fed: Federation) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    await taoyuan.stop()
    cases = [new_case(DOUMEN) for _ in range(CASES)]
    queued = []
    for round_ in range(PER_CASE):
        for case_id in cases:
            queued.append(await doumen.send(
                TAOYUAN, "case.submit" if round_ == 0 else "case.status", case_id=case_id,
                body={"round": round_}))

    async def failing() -> bool:
        # Delivery tried Taoyuan more than once and still holds every message.
        entries = await doumen.outbox()
        return any(e.attempts >= 2 for e in entries) and \
            all(e.state == OutboxState.PENDING for e in entries)

    await wait_for(failing, timeout=30, what="Doumen to keep trying the stopped Taoyuan")
    assert taoyuan.counter.applied == []

    await taoyuan.start()
    delivered = await doumen.wait_delivered(CASES * PER_CASE, timeout=120)
    assert len(delivered) == CASES * PER_CASE
    assert {e.receipt_status for e in delivered} == {"accepted"}
    assert await doumen.outbox(OutboxState.PENDING) == []
    assert await doumen.outbox(OutboxState.DEAD) == []
    # Nothing lost, nothing twice, and per case in the order queued.
    applied = taoyuan.counter.applied
    assert len(applied) == len(set(applied)) == CASES * PER_CASE
    seq_of = {e.jti: e.seq for e in queued}
    assert sorted(seq_of.values()) == sorted(e.seq for e in delivered)
    for case_id in cases:
        assert [seq for iss, case, seq in applied if case == case_id] == \
            list(range(1, PER_CASE + 1))
    # Stored on arrival in the same order: the inbox rows of each case rise by seq.
    inbox = sorted(await taoyuan.inbox(), key=lambda e: e.id)
    assert sorted(e.jti for e in inbox) == sorted(seq_of)
    for case_id in cases:
        assert [e.seq for e in inbox if e.case_id == case_id] == list(range(1, PER_CASE + 1))
