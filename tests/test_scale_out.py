"""Two gateway processes of one member share one database: each message is sent once, in
order per case, and a process that stops hands its messages back at once."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fedkit import (
    DOUMEN,
    TAOYUAN,
    CountingHandler,
    DbFactory,
    Federation,
    Node,
    build_federation,
    new_case,
    reserve_port,
    wait_for,
)
from sqlalchemy import select

from gateway import appkeys as K
from gateway.db.schema import outbox
from gateway.federation.messages import default_handlers


@pytest.fixture
async def fed(tmp_path: Path, db_factory: DbFactory) -> AsyncIterator[Federation]:
    federation = await build_federation(tmp_path, db_factory)
    try:
        yield federation
    finally:
        await federation.close()


def second_process(node: Node) -> Node:
    """The same member, config, keys and database, on another port."""
    sock = reserve_port()
    server = node.config.server.model_copy(update={"port": int(sock.getsockname()[1])})
    config = node.config.model_copy(update={"server": server})
    handlers = default_handlers()
    return Node(config=config, clock=node.clock, handlers=handlers, counter=CountingHandler(),
                reserved=sock, adapter_classes={})


CASES = 200  # the load of issue 7: 2,000 messages across 200 cases
ROUNDS = 10


async def test_two_processes_send_each_message_once_in_order(fed: Federation) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    other = second_process(doumen)
    await other.start()
    try:
        cases = [new_case(DOUMEN) for _ in range(CASES)]
        for round_ in range(ROUNDS):
            for case_id in cases:
                await doumen.send(TAOYUAN, "case.submit" if round_ == 0 else "case.status",
                                  case_id=case_id, body={"round": round_})
        assert other.app is not None
        other.app[K.DISPATCHER].notify()

        delivered = await doumen.wait_delivered(CASES * ROUNDS, timeout=300)
        assert len(delivered) == CASES * ROUNDS
        # A second send of the same message would have been receipted `duplicate`.
        assert {e.receipt_status for e in delivered} == {"accepted"}
        # Both processes delivered part of the outbox (a delivered row names its sender).
        assert doumen.app is not None
        owners = (doumen.app[K.DISPATCHER].owner, other.app[K.DISPATCHER].owner)
        by = Counter(e.claimed_by for e in delivered)
        assert set(by) == set(owners) and all(by[o] > 0 for o in owners), by
        applied = taoyuan.counter.applied
        assert len(applied) == len(set(applied)) == CASES * ROUNDS
        for case_id in cases:
            seqs = [seq for _, case, seq in applied if case == case_id]
            assert seqs == list(range(1, ROUNDS + 1))  # in order per case
    finally:
        await other.stop()


async def test_stopping_hands_claims_back(fed: Federation) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    await taoyuan.stop()  # nothing can be delivered: Doumen's process holds its claims
    case_id = new_case(DOUMEN)
    for _ in range(3):
        await doumen.send(TAOYUAN, case_id=case_id)

    async def holders() -> list[str | None]:
        async with doumen._engine() as engine, engine.connect() as conn:
            return list((await conn.execute(select(outbox.c.claimed_by))).scalars().all())

    async def claimed() -> bool:
        return all(h is not None for h in await holders()) and \
            any(e.attempts > 0 for e in await doumen.outbox())

    await wait_for(claimed, what="Doumen's process to claim and try its messages")
    await doumen.stop()
    assert await holders() == [None, None, None]  # released on a clean stop
