"""registry/routing.py: which member decides a case, and every reason a route is refused."""

from __future__ import annotations

import pytest

from registry.catalog import Catalog, load_catalog
from registry.document import Item, Member, Mode, RegistryClaims, Role, Status
from registry.routing import Route, RoutingError, offering, route, successor
from registry.snapshot import RegistrySnapshot
from trust.errors import ErrorCode, TongbanError

MOVE = "KSTB-HJ-0001"  # 户口迁移: household-bound, proxy and joint
PENSION = "KSTB-SB-0001"  # 养老保险关系转移接续: online, proxy, joint
QUERY = "KSTB-SB-0002"  # 参保缴费记录查询: online only
MEDICAL = "KSTB-YB-0001"  # 异地就医登记备案
ALL = (Mode.ONLINE, Mode.PROXY, Mode.JOINT)
ID_NUMBER = "430725199001011234"  # shape of an ID number; must never appear in a reason


def item(code: str, *modes: Mode) -> Item:
    return Item(code=code, name=code, modes=modes)


def member(member_id: str, *items: Item, status: Status = Status.ACTIVE,
           roles: tuple[Role, ...] = (Role.HANDLER, Role.RECEIVER)) -> Member:
    return Member(id=member_id, name=member_id, province=member_id[3:5],
                  endpoint=f"https://{member_id.lower()}.example.gov.cn", status=status,
                  keys=(), roles=roles, items=items)


def snapshot(*members: Member) -> RegistrySnapshot:
    claims = RegistryClaims(iss="CN-530100", alliance="yunshangban", version=1, iat=0,
                            exp=3600, members=members)
    return RegistrySnapshot.build(claims, jws="x", digest="y")


MEMBERS = (
    member("CN-530100", item(MOVE, Mode.PROXY, Mode.JOINT),
           roles=(Role.OPERATOR, Role.HANDLER, Role.RECEIVER)),                 # 昆明市
    member("CN-440403", item(PENSION, Mode.ONLINE, Mode.PROXY),
           item(MOVE, Mode.PROXY)),                                             # 斗门区
    member("CN-430725", item(MOVE, Mode.PROXY, Mode.JOINT), item(PENSION, *ALL)),  # 桃源县
    member("CN-430700", item(MOVE, Mode.PROXY)),                                # 常德市
    member("CN-420000", item(MOVE, Mode.PROXY)),                                # 湖北省
    member("CN-430781", item(MOVE, Mode.PROXY), item(PENSION, *ALL),
           status=Status.SUSPENDED),                                            # 津市市
    member("CN-110105", item(PENSION, *ALL), roles=(Role.RECEIVER,)),           # 朝阳区
)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def registry() -> RegistrySnapshot:
    return snapshot(*MEMBERS)


def refused(registry: RegistrySnapshot, catalog: Catalog, **kwargs: object) -> RoutingError:
    kwargs.setdefault("item_code", MOVE)
    kwargs.setdefault("mode", Mode.PROXY)
    with pytest.raises(RoutingError) as info:
        route(registry, catalog, **kwargs)  # type: ignore[arg-type]
    error = info.value
    assert isinstance(error, TongbanError)
    assert error.code is ErrorCode.INVALID_BODY
    assert error.detail == f"{error.field}: {error.reason}"
    return error


# -- household-bound items: the handler follows the ID number's division ---------------------

def test_household_county_member(registry: RegistrySnapshot, catalog: Catalog) -> None:
    found = route(registry, catalog, item_code=MOVE, mode="proxy",
                  applicant_division="430725", receiver="CN-440403")
    assert isinstance(found, Route)
    assert found.handler == "CN-430725"
    assert found.mode is Mode.PROXY
    assert found.item.name == "户口迁移"
    assert "户籍地 CN-430725" in found.reason
    assert "430725" in found.reason


def test_household_county_not_member_city_is(registry: RegistrySnapshot,
                                             catalog: Catalog) -> None:
    found = route(registry, catalog, item_code=MOVE, mode=Mode.PROXY,
                  applicant_division="430721", receiver="CN-440403")  # 安乡县, 常德市
    assert found.handler == "CN-430700"
    assert "430721" in found.reason
    assert "not a member itself" in found.reason


def test_household_province_fallback(registry: RegistrySnapshot, catalog: Catalog) -> None:
    found = route(registry, catalog, item_code=MOVE, mode=Mode.PROXY,
                  applicant_division="420102")  # 武汉市江岸区; neither it nor 武汉市 is a member
    assert found.handler == "CN-420000"


def test_household_nobody_covers(registry: RegistrySnapshot, catalog: Catalog) -> None:
    error = refused(registry, catalog, applicant_division="620102")  # 兰州市城关区
    assert error.field == "applicant.id_number"
    assert "620102" in error.reason
    assert "no alliance member covers" in error.reason


def test_household_historical_code_covered_by_its_city(catalog: Catalog) -> None:
    # 呈贡县 530121 became 呈贡区 530114 in 2011; an older ID still carries 530121.
    registry = snapshot(*MEMBERS)
    found = route(registry, catalog, item_code=MOVE, mode=Mode.JOINT,
                  applicant_division="530121", receiver="CN-440403")
    assert found.handler == "CN-530100"
    assert "530121" in found.reason


def test_household_historical_code_found_through_renamed_successor(catalog: Catalog) -> None:
    # 斗门县 440421 (1983-2001) is now 斗门区 440403; 珠海市 is not a member.
    assert successor("440421") == "440403"
    assert successor("430725") is None  # current codes have no successor
    registry = snapshot(*MEMBERS)
    found = route(registry, catalog, item_code=MOVE, mode=Mode.PROXY,
                  applicant_division="440421", receiver="CN-430725")
    assert found.handler == "CN-440403"
    assert "now 440403" in found.reason


def test_household_suspended_authority_is_not_replaced_by_its_city(
        registry: RegistrySnapshot, catalog: Catalog) -> None:
    error = refused(registry, catalog, applicant_division="430781")  # 津市市, suspended
    assert error.field == "handler"
    assert "CN-430781 is suspended" in error.reason
    assert "户籍地" in error.reason


def test_household_handler_must_be_the_household_authority(registry: RegistrySnapshot,
                                                           catalog: Catalog) -> None:
    error = refused(registry, catalog, applicant_division="430725", handler="CN-440403")
    assert error.field == "handler"
    assert "CN-430725" in error.reason
    same = route(registry, catalog, item_code=MOVE, mode=Mode.PROXY,
                 applicant_division="430725", handler="CN-430725")
    assert same.handler == "CN-430725"


def test_household_needs_a_division(registry: RegistrySnapshot, catalog: Catalog) -> None:
    assert refused(registry, catalog).field == "applicant.id_number"
    whole_number = refused(registry, catalog, applicant_division=ID_NUMBER)
    assert whole_number.field == "applicant.id_number"
    assert ID_NUMBER not in whole_number.detail
    never_existed = refused(registry, catalog, applicant_division="440499")
    assert "not in GB/T 2260" in never_existed.reason


# -- items with a chosen handler ----------------------------------------------------------------

def test_explicit_handler(registry: RegistrySnapshot, catalog: Catalog) -> None:
    found = route(registry, catalog, item_code=PENSION, mode="joint", handler="CN-430725",
                  receiver="CN-440403", applicant_division="620102")  # division ignored here
    assert found.handler == "CN-430725"
    assert found.mode is Mode.JOINT
    assert "CN-430725" in found.reason


def test_explicit_handler_required(registry: RegistrySnapshot, catalog: Catalog) -> None:
    error = refused(registry, catalog, item_code=PENSION, mode=Mode.ONLINE)
    assert error.field == "handler"
    assert "required" in error.reason


def test_suspended_handler(registry: RegistrySnapshot, catalog: Catalog) -> None:
    error = refused(registry, catalog, item_code=PENSION, mode=Mode.ONLINE, handler="CN-430781")
    assert error.field == "handler"
    assert "suspended" in error.reason


def test_handler_without_handler_role(registry: RegistrySnapshot, catalog: Catalog) -> None:
    error = refused(registry, catalog, item_code=PENSION, mode=Mode.ONLINE, handler="CN-110105")
    assert error.field == "handler"
    assert "handler role" in error.reason


def test_handler_not_a_member(registry: RegistrySnapshot, catalog: Catalog) -> None:
    error = refused(registry, catalog, item_code=PENSION, mode=Mode.ONLINE, handler="CN-999999")
    assert error.field == "handler"
    assert "not a member" in error.reason


def test_item_not_offered(registry: RegistrySnapshot, catalog: Catalog) -> None:
    error = refused(registry, catalog, item_code=MEDICAL, mode=Mode.ONLINE, handler="CN-440403")
    assert error.field == "handler"
    assert f"CN-440403 does not offer {MEDICAL}" in error.reason


def test_mode_not_offered_by_the_member(registry: RegistrySnapshot, catalog: Catalog) -> None:
    error = refused(registry, catalog, item_code=PENSION, mode=Mode.JOINT, handler="CN-440403")
    assert error.field == "mode"
    assert error.reason == (f"CN-440403 does not offer {PENSION} in mode joint; "
                            "it offers online, proxy")


def test_mode_not_in_the_catalog(registry: RegistrySnapshot, catalog: Catalog) -> None:
    error = refused(registry, catalog, item_code=QUERY, mode=Mode.PROXY, handler="CN-440403")
    assert error.field == "mode"
    assert "catalog allows online" in error.reason
    unknown = refused(registry, catalog, item_code=QUERY, mode="fax", handler="CN-440403")
    assert unknown.field == "mode"
    assert "one of online, proxy, joint" in unknown.reason


def test_receiver_cannot_be_the_handler(registry: RegistrySnapshot, catalog: Catalog) -> None:
    error = refused(registry, catalog, item_code=PENSION, mode=Mode.ONLINE,
                    handler="CN-440403", receiver="CN-440403")
    assert error.field == "handler"
    assert "local business" in error.reason
    household = refused(registry, catalog, applicant_division="430725", receiver="CN-430725")
    assert household.field == "handler"


def test_unknown_item(registry: RegistrySnapshot, catalog: Catalog) -> None:
    error = refused(registry, catalog, item_code="KSTB-XX-9999", handler="CN-440403")
    assert error.field == "item"
    assert "KSTB-XX-9999" in error.reason


# -- indexes per registry version ---------------------------------------------------------------

def test_offering_lists_active_handlers(registry: RegistrySnapshot) -> None:
    assert {m.id for m in offering(registry, PENSION)} == {"CN-440403", "CN-430725"}
    assert [m.id for m in offering(registry, PENSION, Mode.JOINT)] == ["CN-430725"]
    assert offering(registry, MEDICAL) == []


def test_index_follows_the_snapshot_not_its_digest(catalog: Catalog) -> None:
    # Same placeholder digest, different content: a cache keyed by digest would answer wrongly.
    before = snapshot(member("CN-440403", item(PENSION, Mode.ONLINE)))
    after = snapshot(member("CN-440403", item(PENSION, Mode.PROXY)))
    assert before.digest == after.digest
    assert route(before, catalog, item_code=PENSION, mode=Mode.ONLINE,
                 handler="CN-440403").handler == "CN-440403"
    error = refused(after, catalog, item_code=PENSION, mode=Mode.ONLINE, handler="CN-440403")
    assert error.field == "mode"
    assert [m.id for m in offering(after, PENSION, Mode.PROXY)] == ["CN-440403"]
    assert offering(before, PENSION, Mode.PROXY) == []


def test_large_registry_routes_by_lookup(catalog: Catalog) -> None:
    members = [member(f"CN-{code}", item(PENSION, Mode.ONLINE)) for code in
               (f"{430000 + i:06d}" for i in range(1, 3001))]
    big = snapshot(*members)
    for code in ("430001", "431500", "433000"):
        found = route(big, catalog, item_code=PENSION, mode=Mode.ONLINE, handler=f"CN-{code}",
                      receiver="CN-440403")
        assert found.handler == f"CN-{code}"
    assert len(offering(big, PENSION)) == 3000
