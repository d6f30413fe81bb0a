"""Key rotation without refusals, and suspension reaching every member within one refresh."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fedkit import (
    CHANGDE,
    DOUMEN,
    OPERATOR_ID,
    TAOYUAN,
    DbFactory,
    Federation,
    build_federation,
    message_claims,
    new_case,
    post_message,
    problem_code,
    sign_message,
    wait_for,
)

from gateway import appkeys as K
from gateway.db.repos import OutboxState
from gateway.federation.messages import BaseHandler
from gateway.federation.registry_updates import RegistryUpdatedHandler
from registry.document import Role, Status


@pytest.fixture
async def fed(tmp_path: Path, db_factory: DbFactory) -> AsyncIterator[Federation]:
    federation = await build_federation(tmp_path, db_factory, (DOUMEN, TAOYUAN, CHANGDE))
    try:
        yield federation
    finally:
        await federation.close()


async def published_keys(url: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(
            url + "/federation/v1/keys") as resp:
        assert resp.status == 200
        doc = await resp.json(content_type=None)
    keys: list[dict[str, Any]] = doc["keys"]
    return keys


class IgnoredNotice(BaseHandler):
    """Stands in for `registry.updated` on a member whose notices are late."""

    sender_roles = frozenset({Role.OPERATOR})


def ignore_notices(fed: Federation, member_id: str) -> None:
    """Make `member_id` lag one registry version: the operator's notices change nothing."""
    fed[member_id].handlers.register("registry.updated", IgnoredNotice())


def heed_notices(fed: Federation, member_id: str) -> None:
    node = fed[member_id]
    assert node.app is not None
    node.handlers.register("registry.updated", RegistryUpdatedHandler(node.app[K.HOLDER]))


async def test_rotation_overlap_refuses_nothing_and_old_key_dies(fed: Federation) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    old = doumen.signing_key()
    # Member admin: `tongban key rotate` while the gateway runs.
    doumen.keys().create()
    new = doumen.signing_key()
    assert new.kid != old.kid
    assert {k["kid"] for k in await published_keys(doumen.url)} == {old.kid, new.kid}
    # Not in the registry yet: the gateway keeps signing with the old key.
    await doumen.send(TAOYUAN, case_id=new_case(DOUMEN))
    [first] = await doumen.wait_delivered(1)

    # Alliance admin: `tongban member sync-keys`, while Taoyuan is held one version behind.
    ignore_notices(fed, TAOYUAN)
    before = await taoyuan.registry_version()
    jwks = await published_keys(doumen.url)
    version = await fed.publish(lambda a: a.set_keys(DOUMEN, jwks))
    await doumen.wait_registry(version)
    assert await taoyuan.registry_version() == before  # Taoyuan has not seen the new key
    await doumen.send(TAOYUAN, case_id=new_case(DOUMEN))
    delivered = await doumen.wait_delivered(2)
    second = next(e for e in delivered if e.id != first.id)
    assert second.attempts == 1  # accepted at the first try: no refusal in the overlap
    assert second.token is not None and new.kid in _header_kid(second.token)
    assert first.token is not None and old.kid in _header_kid(first.token)
    assert await taoyuan.registry_version() == version  # it refreshed on the unknown kid
    heed_notices(fed, TAOYUAN)

    # Member admin retires the old key; the operator syncs again.
    doumen.keys().retire(old.kid)
    jwks = await published_keys(doumen.url)
    assert [k["kid"] for k in jwks] == [new.kid]
    version = await fed.publish(lambda a: a.set_keys(DOUMEN, jwks))
    await taoyuan.wait_registry(version)
    stale = sign_message(message_claims(DOUMEN, TAOYUAN, now=fed.clock()), old)
    async with aiohttp.ClientSession() as session:
        status, _, text = await post_message(session, taoyuan, stale)
    assert (status, problem_code(text)) == (401, "unknown-key")
    assert len(await taoyuan.inbox()) == 2


def _header_kid(token: str) -> str:
    from trust import jws

    return jws.parse(token, jws.TokenType.MESSAGE).kid


async def test_suspension_shuts_member_out_everywhere_and_reinstatement_resumes(
        fed: Federation) -> None:
    doumen, taoyuan, changde = fed[DOUMEN], fed[TAOYUAN], fed[CHANGDE]
    version = await fed.publish(lambda a: a.set_status(DOUMEN, Status.SUSPENDED))
    for node in (taoyuan, changde):
        await node.wait_registry(version)
    async with aiohttp.ClientSession() as session:
        for node in (taoyuan, changde):
            token = sign_message(message_claims(DOUMEN, node.member_id, now=fed.clock()),
                                 doumen.signing_key())
            status, _, text = await post_message(session, node, token)
            assert (status, problem_code(text)) == (403, "member-suspended")
    # Traffic to the suspended member waits; nothing is lost or sent.
    await taoyuan.send(DOUMEN, case_id=new_case(TAOYUAN))
    await doumen.send(CHANGDE, case_id=new_case(DOUMEN))

    async def attempted() -> bool:
        held = await taoyuan.outbox(OutboxState.PENDING)
        refused = await doumen.outbox(OutboxState.PENDING)
        return bool(held and held[0].last_error and refused and refused[0].last_error)

    await wait_for(attempted, what="deliveries to and from the suspended member to be held")
    assert await doumen.inbox() == [] and await changde.inbox() == []
    [held] = await taoyuan.outbox(OutboxState.PENDING)
    assert held.last_error is not None and "suspended" in held.last_error

    version = await fed.publish(lambda a: a.set_status(DOUMEN, Status.ACTIVE))
    for node in (doumen, taoyuan, changde):
        await node.wait_registry(version)
    await taoyuan.wait_delivered(1)
    await doumen.wait_delivered(1)
    assert len(await doumen.inbox()) == 1 and len(await changde.inbox()) == 1


async def test_suspension_takes_effect_within_one_poll_without_notice(fed: Federation) -> None:
    taoyuan = fed[TAOYUAN]
    ignore_notices(fed, TAOYUAN)
    version = await fed.publish(lambda a: a.set_status(DOUMEN, Status.SUSPENDED))
    assert taoyuan.app is not None
    assert await taoyuan.app[K.HOLDER].refresh()  # one scheduled poll
    assert await taoyuan.registry_version() == version
    token = sign_message(message_claims(DOUMEN, TAOYUAN, now=fed.clock()),
                         fed[DOUMEN].signing_key())
    async with aiohttp.ClientSession() as session:
        status, _, text = await post_message(session, taoyuan, token)
    assert (status, problem_code(text)) == (403, "member-suspended")


async def test_operator_cannot_suspend_itself(fed: Federation) -> None:
    from gateway.alliance import AllianceError

    with pytest.raises(AllianceError, match="cannot suspend"):
        await fed.alliance().set_status(OPERATOR_ID, Status.SUSPENDED)
