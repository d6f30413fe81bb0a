"""registry/: signed versions, the prev chain, and the member-side holder that enforces them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.db.engine import create_schema, make_engine
from gateway.db.repos import RegistryRepo
from gateway.registry_client import FetchError, RegistryHolder
from registry.document import Member, Role, Status
from registry.snapshot import RegistrySnapshot
from registry.versions import build_next, sign_version, verify_version
from trust.anchor import anchor_document, parse_anchor
from trust.clock import FakeClock
from trust.errors import RegistryError
from trust.keys import SigningKey, generate

OPERATOR = "CN-530100"


def member(member_id: str, key: SigningKey, status: Status = Status.ACTIVE) -> Member:
    return Member(id=member_id, name=member_id, province=member_id[3:5],
                  endpoint=f"https://{member_id.lower()}.example.gov.cn", status=status,
                  keys=(key.public_jwk(),), roles=(Role.HANDLER,))


class Operator:
    """Publishes a chain of versions the way `gateway.alliance` does, for unit tests."""

    def __init__(self, clock: FakeClock) -> None:
        self.key = generate()
        self.clock = clock
        self.anchor = parse_anchor(anchor_document("yunshangban", OPERATOR,
                                                   [self.key.public_jwk()]))
        self.versions: list[RegistrySnapshot] = []
        self.op_member = member(OPERATOR, self.key)

    def publish(self, *extra: Member, key: SigningKey | None = None,
                prev: RegistrySnapshot | None = None, validity: int = 3600) -> RegistrySnapshot:
        previous = prev if prev is not None else (self.versions[-1] if self.versions else None)
        claims = build_next(previous, operator=OPERATOR, alliance="yunshangban",
                            members=[self.op_member, *extra], now=self.clock(),
                            validity=validity)
        snapshot = sign_version(claims, key or self.key)
        self.versions.append(snapshot)
        return snapshot


class FakeSource:
    def __init__(self, operator: Operator) -> None:
        self.operator = operator
        self.fetched: list[int] = []
        self.override: dict[int, str] = {}

    async def fetch_current(self) -> str:
        if not self.operator.versions:
            raise FetchError("nothing published")
        return self.operator.versions[-1].jws

    async def fetch_version(self, version: int) -> str:
        self.fetched.append(version)
        if version in self.override:
            return self.override[version]
        for snap in self.operator.versions:
            if snap.version == version:
                return snap.jws
        raise FetchError(f"no version {version}")


@pytest.fixture
async def repo(db_factory: object) -> AsyncIterator[RegistryRepo]:
    engine = make_engine(await db_factory("registry"))  # type: ignore[operator]
    await create_schema(engine)
    yield RegistryRepo(engine)
    await engine.dispose()


def holder_for(op: Operator, repo: RegistryRepo, source: FakeSource | None = None
               ) -> RegistryHolder:
    return RegistryHolder(anchor=op.anchor, repo=repo, source=source or FakeSource(op),
                          clock=op.clock, min_refresh_interval=0)


def test_version_signed_by_other_key_is_refused() -> None:
    op = Operator(FakeClock())
    forged = op.publish(key=generate())
    with pytest.raises(RegistryError) as info:
        verify_version(forged.jws, op.anchor)
    assert info.value.code.value == "unknown-key"


def test_version_by_other_issuer_is_refused() -> None:
    op = Operator(FakeClock())
    other = generate()
    claims = build_next(None, operator="CN-110100", alliance="yunshangban",
                        members=[op.op_member], now=op.clock(), validity=60)
    with pytest.raises(RegistryError, match="anchor pins"):
        verify_version(sign_version(claims, other).jws, op.anchor)


def test_validity_over_seven_days_cannot_be_built() -> None:
    op = Operator(FakeClock())
    with pytest.raises(RegistryError, match="validity"):
        op.publish(validity=8 * 24 * 3600)


async def test_holder_moves_forward_only_along_the_chain(repo: RegistryRepo) -> None:
    op = Operator(FakeClock())
    holder = holder_for(op, repo)
    v1, v2 = op.publish(), op.publish()
    assert await holder.accept(v1.jws)
    assert await holder.accept(v2.jws)
    assert not await holder.accept(v2.jws)  # same version again: no change
    with pytest.raises(RegistryError, match="older"):
        await holder.accept(v1.jws)
    # Another document numbered 2 (equivocation by a compromised or buggy operator).
    fork = op.publish(member("CN-440403", generate()), prev=v1)
    assert fork.version == 2
    with pytest.raises(RegistryError, match="two different documents"):
        await holder.accept(fork.jws)
    assert holder.current is not None and holder.current.digest == v2.digest


async def test_broken_prev_chain_is_refused(repo: RegistryRepo) -> None:
    op = Operator(FakeClock())
    holder = holder_for(op, repo)
    v1 = op.publish()
    v2 = op.publish()
    await holder.accept(v1.jws)
    await holder.accept(v2.jws)
    # A version 3 whose prev names v1, not v2.
    claims = build_next(v2, operator=OPERATOR, alliance="yunshangban", members=[op.op_member],
                        now=op.clock(), validity=3600).model_copy(update={"prev": v1.digest})
    bad = sign_version(claims, op.key)
    with pytest.raises(RegistryError, match="does not chain"):
        await holder.accept(bad.jws)
    assert holder.current is not None and holder.current.version == 2


async def test_skipped_versions_are_fetched_and_chained(repo: RegistryRepo) -> None:
    op = Operator(FakeClock())
    source = FakeSource(op)
    holder = holder_for(op, repo, source)
    await holder.accept(op.publish().jws)
    op.publish()
    op.publish()
    v4 = op.publish()
    assert await holder.accept(v4.jws)
    assert source.fetched == [2, 3]
    assert holder.current is not None and holder.current.version == 4
    assert (await repo.get(3)) is not None


async def test_skipped_version_that_does_not_chain_is_refused(repo: RegistryRepo) -> None:
    op = Operator(FakeClock())
    source = FakeSource(op)
    holder = holder_for(op, repo, source)
    v1 = op.publish()
    await holder.accept(v1.jws)
    op.publish()
    v3 = op.publish()
    # The operator's server hands out a forked version 2 that does not lead to v3.
    fork = sign_version(build_next(v1, operator=OPERATOR, alliance="yunshangban",
                                   members=[op.op_member, member("CN-440403", generate())],
                                   now=op.clock(), validity=3600), op.key)
    source.override[2] = fork.jws
    with pytest.raises(RegistryError, match="does not chain"):
        await holder.accept(v3.jws)
    assert holder.current is not None and holder.current.version == 1
    assert await repo.get(2) is None


async def test_expired_registry_fails_closed(repo: RegistryRepo) -> None:
    clock = FakeClock(1_000_000)
    op = Operator(clock)
    holder = holder_for(op, repo)
    await holder.accept(op.publish(validity=600).jws)
    assert holder.require_fresh().version == 1
    clock.advance(601)
    with pytest.raises(RegistryError) as info:
        holder.require_fresh()
    assert info.value.code.value == "registry-stale"
    stale = op.publish(validity=60)
    clock.advance(61)
    with pytest.raises(RegistryError, match="already expired"):
        await holder.accept(stale.jws)


async def test_holder_resumes_from_stored_version(repo: RegistryRepo) -> None:
    op = Operator(FakeClock())
    first = holder_for(op, repo)
    await first.accept(op.publish().jws)
    await first.accept(op.publish().jws)
    second = holder_for(op, repo)
    await second.load()
    assert second.current is not None and second.current.version == 2
    other_anchor = Operator(FakeClock())
    third = RegistryHolder(anchor=other_anchor.anchor, repo=repo, source=FakeSource(op),
                           clock=op.clock)
    await third.load()  # stored versions no longer verify under another anchor
    assert third.current is None


def test_lookup_is_indexed_for_a_national_registry() -> None:
    op = Operator(FakeClock())
    keys = {}
    members = []
    for n in range(3000):
        member_id = f"CN-{100000 + n:06d}"
        key = generate()
        keys[member_id] = key
        members.append(member(member_id, key, Status.ACTIVE if n % 7 else Status.SUSPENDED))
    snap = verify_version(op.publish(*members).jws, op.anchor)
    assert len(snap.claims.members) == 3001
    probe = "CN-102345"
    found = snap.get_key(probe, keys[probe].kid)
    assert found is not None and found.member_id == probe
    assert snap.get_key("CN-102346", keys[probe].kid) is None
    assert snap.member("CN-100000") is not None
    assert snap.member("CN-100000").status is Status.SUSPENDED  # type: ignore[union-attr]
