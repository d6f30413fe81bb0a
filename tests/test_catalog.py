"""registry/catalog.py: the seed catalog; a bad catalog is refused naming the bad field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from registry.catalog import Catalog, Loa, load_catalog, parse_catalog, seed_catalog
from registry.document import Item, Mode
from registry.validation import InvalidInput
from trust.errors import ConfigError, ErrorCode, TongbanError

SEED = Path(__file__).resolve().parents[1] / "registry" / "data" / "catalog.json"
PREFIX = {"社保": "SB", "就业": "JY", "医保": "YB", "户籍": "HJ", "出入境": "CR", "交管": "JG",
          "公证": "GZ", "公积金": "GJ", "市场监管": "SJ", "不动产": "BD", "民政": "MZ",
          "卫健": "WJ", "残联": "CL"}


def seed_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(SEED.read_text(encoding="utf-8"))
    return doc


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


def refused(tmp_path: Path, doc: dict[str, Any]) -> str:
    path = write(tmp_path, doc)
    with pytest.raises(ConfigError) as info:
        load_catalog(path)
    return info.value.detail


def test_seed_loads_with_enough_items_each_with_a_required_material() -> None:
    catalog = load_catalog()
    assert len(catalog) >= 22
    for item in catalog.items():
        assert item.required_materials(), item.code
        assert item.modes, item.code


def test_seed_follows_the_code_scheme() -> None:
    seen: dict[str, int] = {}
    for item in load_catalog():
        match = re.fullmatch(r"KSTB-([A-Z]{2})-(\d{4})", item.code)
        assert match is not None, item.code
        assert match.group(1) == PREFIX[item.category], item.code
        seen[item.code] = seen.get(item.code, 0) + 1
    assert all(count == 1 for count in seen.values())


def test_seed_holds_the_policy_examples() -> None:
    names = {item.name for item in load_catalog()}
    for expected in ("户口迁移", "失业登记", "社会保障卡申领", "职业资格证书核验",
                     "市场主体登记注册", "正常退休提取住房公积金", "不动产抵押登记", "婚姻登记",
                     "学历公证", "驾驶证公证", "异地就医登记备案", "工业产品生产许可证"):
        assert expected in names


def test_seed_household_and_loa_facts() -> None:
    catalog = load_catalog()
    move = catalog.require("KSTB-HJ-0001")
    assert move.name == "户口迁移"
    assert move.household_bound
    assert move.min_loa is Loa.L4
    assert Mode.ONLINE not in move.modes
    bound = {item.code for item in catalog if item.household_bound}
    assert bound == {"KSTB-HJ-0001", "KSTB-HJ-0002"}
    licence = catalog.require("KSTB-SJ-0002")
    assert (licence.decision_days, licence.extension_days) == (20, 10)
    query = catalog.require("KSTB-GJ-0003")
    assert query.extension_days == 0
    assert query.modes == (Mode.ONLINE,)


def test_seed_is_consistent_for_online_items() -> None:
    for item in load_catalog():
        for material in item.materials:
            if material.cert_type is not None:
                assert material.electronic_ok, (item.code, material.code)
            if Mode.ONLINE in item.modes and material.required:
                assert material.electronic_ok, (item.code, material.code)


def test_seed_catalog_is_parsed_once() -> None:
    assert seed_catalog() is seed_catalog()
    assert seed_catalog().get("KSTB-SB-0001") == load_catalog().get("KSTB-SB-0001")


def test_get_and_require() -> None:
    catalog = load_catalog()
    assert catalog.get("KSTB-NOPE-0001") is None
    assert "KSTB-SB-0001" in catalog
    assert "KSTB-NOPE-0001" not in catalog
    with pytest.raises(TongbanError) as info:
        catalog.require("KSTB-NOPE-0001", field="items[2].code")
    assert info.value.code is ErrorCode.INVALID_BODY
    assert info.value.detail.startswith("items[2].code: unknown item code")
    with pytest.raises(InvalidInput) as info2:
        catalog.require(42)
    assert info2.value.errors[0].field == "item"


def test_loa_order() -> None:
    assert Loa.L4.satisfied_by("L5")
    assert Loa.L4.satisfied_by(Loa.L4)
    assert not Loa.L4.satisfied_by("L3")


def test_registry_item_all_and_subset_of_modes() -> None:
    item = load_catalog().require("KSTB-SB-0001")
    full = item.registry_item()
    assert full == Item(code="KSTB-SB-0001", name=item.name, modes=item.modes)
    subset = item.registry_item(["proxy", Mode.ONLINE, "proxy"])
    assert subset.modes == (Mode.PROXY, Mode.ONLINE)


def test_registry_item_refuses_modes_the_catalog_rules_out() -> None:
    item = load_catalog().require("KSTB-SB-0002")  # online only
    with pytest.raises(InvalidInput) as info:
        item.registry_item([Mode.ONLINE, Mode.PROXY, "fax"])
    fields = [e.field for e in info.value.errors]
    assert fields == ["modes[1]", "modes[2]"]
    assert "catalog allows online" in info.value.detail
    with pytest.raises(InvalidInput, match="at least one mode"):
        item.registry_item([])


def test_broken_enum_names_the_json_path(tmp_path: Path) -> None:
    doc = seed_doc()
    doc["items"][3]["modes"][0] = "fax"
    detail = refused(tmp_path, doc)
    assert detail.startswith(f"{tmp_path / 'catalog.json'}: items[3].modes[0]: ")
    assert "'online'" in detail


@pytest.mark.parametrize(("mutate", "path"), [
    (lambda d: d["items"][2]["materials"][1].update(required="yes"),
     "items[2].materials[1].required"),
    (lambda d: d["items"][0].update(min_loa="L9"), "items[0].min_loa"),
    (lambda d: d["items"][1].update(code="bad code!"), "items[1].code"),
    (lambda d: d["items"][4].update(decision_days=0), "items[4].decision_days"),
    (lambda d: d["items"][4].update(modes=[]), "items[4].modes"),
    (lambda d: d["items"][5].update(materials=[]), "items[5].materials"),
    (lambda d: d["items"][6].update(colour="red"), "items[6].colour"),
    (lambda d: d["items"][7].pop("policy"), "items[7].policy"),
    (lambda d: d.update(items=[]), "items"),
])
def test_schema_errors_name_the_field(tmp_path: Path, mutate: Any, path: str) -> None:
    doc = seed_doc()
    mutate(doc)
    assert f": {path}: " in refused(tmp_path, doc)


@pytest.mark.parametrize(("mutate", "path", "words"), [
    (lambda d: d["items"][5].update(code=d["items"][2]["code"]), "items[5].code",
     "first at items[2]"),
    (lambda d: d["items"][0].update(modes=["online", "proxy", "online"]), "items[0].modes[2]",
     "listed twice"),
    (lambda d: d["items"][0]["materials"][2].update(code="M01"), "items[0].materials[2].code",
     "first at materials[0]"),
    (lambda d: d["items"][16].update(household_bound=True), "items[16].household_bound",
     "company"),
    (lambda d: d["items"][0]["materials"][0].update(electronic_ok=False),
     "items[0].materials[0].electronic_ok", "cert_type"),
    (lambda d: d["items"][0]["materials"][1].update(electronic_ok=False),
     "items[0].materials[1].electronic_ok", "online"),
])
def test_consistency_errors_name_the_field(tmp_path: Path, mutate: Any, path: str,
                                           words: str) -> None:
    doc = seed_doc()
    assert doc["items"][16]["applicant"] == "company"  # the fixture the household case relies on
    mutate(doc)
    detail = refused(tmp_path, doc)
    assert f": {path}: " in detail
    assert words in detail


def test_all_problems_reported_at_once() -> None:
    doc = seed_doc()
    doc["items"][1]["modes"] = ["fax"]
    doc["items"][2]["min_loa"] = "L1"
    with pytest.raises(ConfigError) as info:
        parse_catalog(json.dumps(doc, ensure_ascii=False))
    assert "items[1].modes[0]" in info.value.detail
    assert "items[2].min_loa" in info.value.detail
    assert info.value.detail.startswith("catalog.json: ")


def test_not_json_and_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text('{"version": 1,\n "items": [,]}', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"not JSON: line 2 column"):
        load_catalog(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_catalog(tmp_path / "missing.json")


def test_custom_catalog_round_trip(tmp_path: Path) -> None:
    doc = seed_doc()
    doc["items"] = doc["items"][:2]
    doc["version"] = 7
    catalog = load_catalog(write(tmp_path, doc))
    assert isinstance(catalog, Catalog)
    assert catalog.version == 7
    assert [i.code for i in catalog.items()] == ["KSTB-SB-0001", "KSTB-SB-0002"]
