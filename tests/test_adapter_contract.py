"""The REST and SOAP adapters against the reference local case system, through the contract kit;
and the kit itself, which must fail adapters that break the contract."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from adapters.base import (
    AdapterError,
    ConfigProblem,
    LocalCase,
    LocalEvent,
    PushesNotTaken,
    RegionAdapter,
)
from adapters.reference.faults import EXTERNAL_ENTITY, XML_BOMB
from adapters.rest import RestAdapter
from adapters.soap import SoapAdapter
from adapters.testing import ContractFailure, run_contract, sample_case
from adapters.testing.reference import ReferenceDriver, ReferenceSystem
from adapters.xmltree import answer

EXAMPLES = Path(__file__).parent.parent / "adapters" / "examples"
API_KEY = "reference-api-key-for-tests"
HOOK_SECRET = "reference-webhook-secret-0123456789"
# The local codes the reference system's two faces must receive, written here from the codes the
# mappings were designed for (the REST face's letters, the SOAP face's numbers), not read from
# the mapping files under test: a wrong row in a mapping's code tables must fail the kit, not
# agree with itself.
REST_CODES = {
    "items": {"KSTB-SB-0001": "XS-SB-1001", "KSTB-SB-0002": "XS-SB-1002",
              "KSTB-HJ-0001": "XS-HJ-1001"},
    "modes": {"online": "WB", "proxy": "DB", "joint": "LB"},
    "applicant_kinds": {"person": "GR", "company": "FR"},
    "delivery": {"post": "YJ", "online": "WL", "window": "CK"},
}
SOAP_CODES = {
    "items": {"KSTB-SB-0001": "CS-SB-2001", "KSTB-SB-0002": "CS-SB-2002",
              "KSTB-JY-0001": "CS-JY-2001"},
    "modes": {"online": "1", "proxy": "2", "joint": "3"},
    "applicant_kinds": {"person": "1", "company": "2"},
    "delivery": {"post": "1", "online": "2", "window": "3"},
}


@pytest.fixture
async def reference(tmp_path: Path) -> AsyncIterator[ReferenceSystem]:
    system = await ReferenceSystem(tmp_path / "local.sqlite", api_key=API_KEY).start()
    try:
        yield system
    finally:
        await system.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def rest_adapter(url: str, http: aiohttp.ClientSession, *, cls: type[RestAdapter] = RestAdapter,
                 mapping: Path | None = None) -> RestAdapter:
    settings = {"mapping": str(mapping or EXAMPLES / "rest-reference.toml"), "base_url": url}
    cls.check_config(settings, base=EXAMPLES)
    return cls(settings, base=EXAMPLES, session=http,
               secrets={"api_key": API_KEY, "webhook_secret": HOOK_SECRET})


def soap_adapter(url: str, http: aiohttp.ClientSession, *,
                 mapping: Path | None = None) -> SoapAdapter:
    settings = {"mapping": str(mapping or EXAMPLES / "soap-reference.toml"), "base_url": url}
    SoapAdapter.check_config(settings, base=EXAMPLES)
    return SoapAdapter(settings, base=EXAMPLES, session=http, secrets={})


def driver(reference: ReferenceSystem, http: aiohttp.ClientSession, *,
           hooks: bool = True) -> ReferenceDriver:
    return ReferenceDriver(reference.url, http, api_key=API_KEY,
                           webhook_secret=HOOK_SECRET if hooks else None)


async def test_rest_adapter_passes_the_contract(reference: ReferenceSystem,
                                                http: aiohttp.ClientSession) -> None:
    await run_contract(rest_adapter(reference.url, http), driver(reference, http),
                       **REST_CODES)


@pytest.fixture
async def open_reference(tmp_path: Path) -> AsyncIterator[ReferenceSystem]:
    system = await ReferenceSystem(tmp_path / "open.sqlite").start()
    try:
        yield system
    finally:
        await system.close()


async def test_soap_adapter_passes_the_contract(
        open_reference: ReferenceSystem, http: aiohttp.ClientSession) -> None:
    await run_contract(soap_adapter(open_reference.url, http),
                       ReferenceDriver(open_reference.url, http), **SOAP_CODES)


# --- the kit fails what breaks the contract ------------------------------------------------
class SwallowingAdapter(RestAdapter):
    """Treats every failed poll as 'nothing new': a local outage or garbage goes unnoticed."""

    async def poll(self, cursor: str | None) -> tuple[list[LocalEvent], str | None]:
        try:
            return await super().poll(cursor)
        except AdapterError:
            return [], cursor


class ForgetfulAdapter(RestAdapter):
    """Sends a new external number each time, so a retried submit makes a second local case."""

    sent = 0

    async def submit(self, case: LocalCase) -> str:
        self.sent += 1
        return await super().submit(replace(case, case_id=f"{case.case_id}-{self.sent}"))


async def test_the_kit_catches_an_adapter_that_swallows_errors(
        reference: ReferenceSystem, http: aiohttp.ClientSession) -> None:
    with pytest.raises(ContractFailure) as caught:
        await run_contract(rest_adapter(reference.url, http, cls=SwallowingAdapter),
                           driver(reference, http), **REST_CODES)
    failures = caught.value.failures
    assert any(f.startswith("outage: poll while down") for f in failures)
    assert any(f.startswith("malformed[xml_bomb]: poll") for f in failures)
    assert not any(f.startswith("round_trip") for f in failures)  # the rest still works


async def test_the_kit_catches_a_non_idempotent_submit(
        reference: ReferenceSystem, http: aiohttp.ClientSession) -> None:
    with pytest.raises(ContractFailure) as caught:
        await run_contract(rest_adapter(reference.url, http, cls=ForgetfulAdapter),
                           driver(reference, http), **REST_CODES)
    assert any("not idempotent" in f for f in caught.value.failures)


async def test_the_kit_catches_a_wrongly_mapped_state(
        reference: ReferenceSystem, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    text = (EXAMPLES / "rest-reference.toml").read_text(encoding="utf-8")
    # A plausible slip: 特别程序 (suspend) and its resumption swapped with plain review.
    broken = text.replace('[events.states."TBCX>SCZ"]           # 审查中 again after a special '
                          'procedure\naction = "resume"', '[events.states."TBCX>SCZ"]\n'
                          'action = "review"')
    assert broken != text
    path = tmp_path / "broken.toml"
    path.write_text(broken, encoding="utf-8")
    with pytest.raises(ContractFailure) as caught:
        await run_contract(rest_adapter(reference.url, http, mapping=path),
                           driver(reference, http), **REST_CODES)
    assert [f for f in caught.value.failures if f.startswith("round_trip[full]")], \
        caught.value.failures
    assert "resume" in "\n".join(caught.value.failures)


async def test_the_kit_catches_wrongly_mapped_item_codes(
        reference: ReferenceSystem, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """Two rows of [codes.items] swapped: every code is still well-formed and one-to-one, so the
    mapping loads and the reference system takes the cases; only the kit's item check sees that
    社保 item 0001 arrives as the local 1002 and back."""
    text = (EXAMPLES / "rest-reference.toml").read_text(encoding="utf-8")
    rows = '"KSTB-SB-0001" = "XS-SB-1001"\n"KSTB-SB-0002" = "XS-SB-1002"'
    assert rows in text
    swapped = text.replace(rows, '"KSTB-SB-0001" = "XS-SB-1002"\n"KSTB-SB-0002" = "XS-SB-1001"')
    path = tmp_path / "swapped-items.toml"
    path.write_text(swapped, encoding="utf-8")
    with pytest.raises(ContractFailure) as caught:
        await run_contract(rest_adapter(reference.url, http, mapping=path),
                           driver(reference, http), **REST_CODES)
    failures = caught.value.failures
    assert any("item KSTB-SB-0001 arrived as 'XS-SB-1002', not as the local system's "
               "'XS-SB-1001'" in f for f in failures), failures
    assert any("item KSTB-SB-0002 arrived as 'XS-SB-1001'" in f for f in failures), failures
    assert all("arrived as" in f for f in failures), failures  # nothing else is wrong


@pytest.mark.parametrize(("face", "rows", "swapped", "expected"), [
    ("rest", 'online = "WB"\nproxy = "DB"', 'online = "DB"\nproxy = "WB"',
     ["mode online arrived as 'DB', not as the local system's 'WB'",
      "mode proxy arrived as 'WB', not as the local system's 'DB'"]),
    ("rest", 'person = "GR"\ncompany = "FR"', 'person = "FR"\ncompany = "GR"',
     ["applicant kind person arrived as 'FR', not as the local system's 'GR'",
      "applicant kind company arrived as 'GR', not as the local system's 'FR'"]),
    ("soap", 'post = "1"\nonline = "2"\nwindow = "3"', 'post = "3"\nonline = "2"\nwindow = "1"',
     ["delivery post arrived as '3', not as the local system's '1'",
      "delivery window arrived as '1', not as the local system's '3'"]),
], ids=["modes", "applicant_kinds", "delivery"])
async def test_the_kit_catches_swapped_codes(
        face: str, rows: str, swapped: str, expected: list[str], reference: ReferenceSystem,
        open_reference: ReferenceSystem, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """Two rows of a code table swapped: still one-to-one and known to the local system, so the
    mapping loads and every case is taken (the SOAP face even turns the wrong numbers into its
    own letters); only comparing what arrived with the local codes shows the mix-up."""
    text = (EXAMPLES / f"{face}-reference.toml").read_text(encoding="utf-8")
    assert text.count(rows) == 1
    path = tmp_path / f"swapped-{face}.toml"
    path.write_text(text.replace(rows, swapped), encoding="utf-8")
    adapter: RegionAdapter
    if face == "rest":
        adapter, local, codes = (rest_adapter(reference.url, http, mapping=path),
                                 driver(reference, http), REST_CODES)
    else:
        adapter, local, codes = (soap_adapter(open_reference.url, http, mapping=path),
                                 ReferenceDriver(open_reference.url, http), SOAP_CODES)
    with pytest.raises(ContractFailure) as caught:
        await run_contract(adapter, local, **codes)
    failures = caught.value.failures
    for message in expected:
        assert any(message in f for f in failures), failures
    assert any(f.startswith("codes: ") for f in failures), failures  # the table-wide check
    assert all("arrived as" in f for f in failures), failures  # nothing else is wrong


@pytest.mark.parametrize(("change", "message"), [
    ({"modes": {}}, "at least one mode"),
    ({"applicant_kinds": {"person": "GR"}}, "both applicant kinds"),
    ({"delivery": {"post": "YJ"}}, "at least two delivery methods"),
    ({"modes": {"onlien": "WB"}}, "unknown mode onlien"),
])
async def test_the_kit_refuses_tables_that_leave_codes_unchecked(
        change: dict[str, dict[str, str]], message: str, http: aiohttp.ClientSession) -> None:
    """A table without both applicant kinds or with one delivery method would let a swapped row
    pass unseen, so the kit refuses it before touching the local system."""
    with pytest.raises(ValueError, match=message):
        await run_contract(rest_adapter("http://127.0.0.1:9", http),
                           ReferenceDriver("http://127.0.0.1:9", http),
                           **{**REST_CODES, **change})


def test_the_reference_system_keeps_the_codes_each_face_received(tmp_path: Path) -> None:
    """The SOAP face turns its numbers into the system's letters; the case keeps the numbers too
    (what the kit compares for a SOAP mapping), and a database from before they were kept
    reports the system's own codes."""
    import sqlite3

    from adapters.reference.store import NewCase, Store

    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as db:
        db.executescript(SCHEMA_BEFORE_RECEIVED_CODES)
        db.execute("INSERT INTO banjian VALUES (1, 'BJ00000001', 'TB-OLD', 'XS-SB-1001', 'DB',"
                   " '{\"lx\": \"FR\", \"xm\": \"x\"}', '{}', '[]', '{\"fs\": \"CK\"}',"
                   " 'm', NULL, 'DSL', 0, 0)")
    store = Store(old)
    try:
        [case] = store.by_external("TB-OLD")
        assert case.jsdm == {"bllx": "DB", "sqr.lx": "FR", "sdfs.fs": "CK"}
        soap, _ = store.create(NewCase(
            wbbh="TB-SOAP", sxbm="CS-SB-2001", bllx="WB", sqr={"lx": "GR", "xm": "张三"},
            bd={}, cl=[], sdfs={"fs": "YJ"}, sjd="m", sjsj=None,
            jsdm={"bllx": "1", "sqr.lx": "1", "sdfs.fs": "1"}))
        assert (soap.bllx, soap.jsdm["bllx"]) == ("WB", "1")
        rest, _ = store.create(NewCase(
            wbbh="TB-REST", sxbm="XS-SB-1001", bllx="LB", sqr={"lx": "FR", "xm": "某公司"},
            bd={}, cl=[], sdfs={"fs": "WL"}, sjd="m", sjsj=None))
        assert rest.jsdm == {"bllx": "LB", "sqr.lx": "FR", "sdfs.fs": "WL"}
    finally:
        store.close()


SCHEMA_BEFORE_RECEIVED_CODES = """
CREATE TABLE banjian (
    id INTEGER PRIMARY KEY AUTOINCREMENT, bjbh TEXT NOT NULL UNIQUE, wbbh TEXT NOT NULL UNIQUE,
    sxbm TEXT NOT NULL, bllx TEXT NOT NULL, sqr TEXT NOT NULL, bd TEXT NOT NULL,
    cl TEXT NOT NULL, sdfs TEXT NOT NULL, sjd TEXT NOT NULL, sjsj REAL, zt TEXT NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL);
"""


# --- hostile and broken answers, one by one ------------------------------------------------
@pytest.mark.parametrize("kind", ["xml_bomb", "external_entity", "oversized", "garbage"])
async def test_soap_refuses_hostile_answers(open_reference: ReferenceSystem,
                                            http: aiohttp.ClientSession, kind: str) -> None:
    adapter = soap_adapter(open_reference.url, http)
    local = ReferenceDriver(open_reference.url, http)
    await local.fail(kind)
    with pytest.raises(AdapterError) as caught:
        await adapter.submit(sample_case("TB-HOSTILE-1", "KSTB-SB-0001"))
    assert not caught.value.transient
    expected = {"xml_bomb": "unsafe XML", "external_entity": "unsafe XML",
                "oversized": "byte limit", "garbage": "not XML"}[kind]
    assert expected in str(caught.value)


def test_xml_bomb_is_refused_before_expansion() -> None:
    for hostile in (XML_BOMB, EXTERNAL_ENTITY):
        with pytest.raises(AdapterError, match="unsafe XML"):
            answer(hostile, "ShouJian")


async def test_rest_refuses_an_oversized_answer(reference: ReferenceSystem,
                                                http: aiohttp.ClientSession) -> None:
    adapter = rest_adapter(reference.url, http)
    await driver(reference, http).fail("oversized")
    with pytest.raises(AdapterError, match="byte limit") as caught:
        await adapter.poll(None)
    assert not caught.value.transient


async def test_rest_api_key_is_required(reference: ReferenceSystem,
                                        http: aiohttp.ClientSession) -> None:
    settings = {"mapping": "rest-reference.toml", "base_url": reference.url}
    adapter = RestAdapter(settings, base=EXAMPLES, session=http,
                          secrets={"api_key": "wrong", "webhook_secret": HOOK_SECRET})
    with pytest.raises(AdapterError, match="401") as caught:
        await adapter.poll(None)
    assert not caught.value.transient


# --- the mapping files ---------------------------------------------------------------------
# The *-gateway.toml examples are [adapter] tables of a tongban.toml, checked in
# tests/test_adapter_examples.py; the rest are mapping files.
@pytest.mark.parametrize("path", sorted(p for p in EXAMPLES.glob("*.toml")
                                        if not p.name.endswith("-gateway.toml")),
                         ids=lambda p: p.name)
def test_example_mappings_load(path: Path) -> None:
    adapters: dict[str, type[RegionAdapter]] = {"rest": RestAdapter, "soap": SoapAdapter}
    kind = path.name.split("-")[0]
    adapters[kind].check_config({"mapping": path.name}, base=EXAMPLES)


@pytest.mark.parametrize(("change", "message"), [
    (('action = "review"', 'action = "approve"'), "is not one of"),
    (('body = { reason = "xq.yy" }', 'body = { }'), "reject needs reason"),
    (('proxy = "DB"', 'proxy = "WB"'), "both map to 'WB'"),
    (('endpoint = "GET /api/shijian"', 'endpoint = "FETCH /api/shijian"'), "METHOD /path"),
    (('previous = "yzt"\n', ''), "previous"),
    (('sjd = "receiver"', 'sjd = "owner"'), "must start with one of"),
])
def test_a_bad_mapping_names_the_problem(tmp_path: Path, change: tuple[str, str],
                                         message: str) -> None:
    text = (EXAMPLES / "rest-reference.toml").read_text(encoding="utf-8")
    assert change[0] in text
    (tmp_path / "m.toml").write_text(text.replace(change[0], change[1], 1), encoding="utf-8")
    with pytest.raises(ConfigProblem, match=r"adapter\.settings\.mapping") as caught:
        RestAdapter.check_config({"mapping": "m.toml"}, base=tmp_path)
    assert message in str(caught.value)


def test_soap_mapping_with_a_webhook_is_refused(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "soap-reference.toml", tmp_path / "s.toml")
    with (tmp_path / "s.toml").open("a", encoding="utf-8") as f:
        f.write('\n[webhook]\nsecret = "x"\n')
    with pytest.raises(ConfigProblem, match="takes no webhooks"):
        SoapAdapter.check_config({"mapping": "s.toml"}, base=tmp_path)


async def test_a_polled_adapter_says_it_takes_no_pushes(
        tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """SOAP always polls, REST polls when its mapping has no [webhook]: both raise
    PushesNotTaken, which the gateway answers 404 rather than 422 (tests/test_local_bridge)."""
    soap = soap_adapter("http://127.0.0.1:9", http)
    with pytest.raises(PushesNotTaken, match="does not push; its soap adapter polls"):
        soap.webhook({}, b"{}")
    text = (EXAMPLES / "rest-reference.toml").read_text(encoding="utf-8")
    start = text.index("\n[webhook]")
    end = text.index("\n[", start + 1)
    (tmp_path / "polled.toml").write_text(text[:start] + text[end:], encoding="utf-8")
    rest = rest_adapter("http://127.0.0.1:9", http, mapping=tmp_path / "polled.toml")
    assert rest.mapping.webhook is None
    with pytest.raises(PushesNotTaken, match="has no \\[webhook\\] section"):
        rest.webhook({}, b"{}")


def test_config_check_validates_the_region_mapping(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.cli.main import main

    shutil.copy(EXAMPLES / "rest-reference.toml", tmp_path / "region.toml")
    config = tmp_path / "tongban.toml"
    base = ('[member]\nid = "CN-440403"\n[server]\nport = 18701\n'
            '[registry]\nurl = "http://127.0.0.1:18700/registry/v1"\n'
            '[adapter]\nname = "rest"\n[adapter.secrets]\napi_key = "TB_T_KEY"\n'
            'webhook_secret = "TB_T_HOOK"\n[adapter.settings]\n')
    monkeypatch.setenv("TB_T_KEY", "k")
    monkeypatch.setenv("TB_T_HOOK", "h")

    def check(settings: str) -> str:
        config.write_text(base + settings, encoding="utf-8")
        assert main(["config", "check", "-c", str(config)]) == 1
        return capsys.readouterr().err

    assert "adapter.settings.mapping: cannot read" in check('mapping = "nowhere.toml"\n')
    (tmp_path / "bad.toml").write_text(
        (tmp_path / "region.toml").read_text(encoding="utf-8").replace(
            'action = "review"', 'action = "approve"'), encoding="utf-8")
    assert "bad.toml: events.states.SCZ: action 'approve'" in check('mapping = "bad.toml"\n')
    monkeypatch.delenv("TB_T_HOOK")
    assert "adapter.secrets.webhook_secret" in check('mapping = "region.toml"\n')
    monkeypatch.setenv("TB_T_HOOK", "h")
    # A valid region passes on to the next check (this folder has no signing keys).
    assert "adapter" not in check('mapping = "region.toml"\n')


async def test_a_slow_local_system_times_out_as_transient(
        open_reference: ReferenceSystem, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    text = (EXAMPLES / "soap-reference.toml").read_text(encoding="utf-8")
    fast = text.replace("timeout = 5.0", "timeout = 0.3").replace("attempts = 3", "attempts = 2")
    (tmp_path / "fast.toml").write_text(fast, encoding="utf-8")
    settings = {"mapping": "fast.toml", "base_url": open_reference.url}
    adapter = SoapAdapter(settings, base=tmp_path, session=http, secrets={})
    async with http.put(open_reference.url + "/admin/faults",
                        json={"active": ["slow"], "slow_seconds": 1.0}) as resp:
        assert resp.status == 200
    with pytest.raises(AdapterError, match=r"no answer within 0\.3 s") as caught:
        await adapter.poll(None)
    assert caught.value.transient


def test_the_kit_runs_from_the_command_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    good = subprocess.run([sys.executable, "-m", "adapters.testing", "soap",
                           str(EXAMPLES / "soap-reference.toml")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("contract passed: soap")
    text = (EXAMPLES / "soap-reference.toml").read_text(encoding="utf-8")
    broken = text.replace('approved = "1"\ndenied = "0"', 'approved = "0"\ndenied = "1"')
    assert broken != text
    (tmp_path / "swapped.toml").write_text(broken, encoding="utf-8")
    bad = subprocess.run([sys.executable, "-m", "adapters.testing", "soap",
                          str(tmp_path / "swapped.toml")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 1
    assert "contract FAILED" in bad.stderr and "round_trip[full]" in bad.stderr, bad.stderr


def test_the_command_line_checks_the_item_codes_it_is_given(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Without --item the kit expects the mapping's own [codes.items]; --item gives the local
    codes from the authority's catalog, so a row that disagrees with it fails."""
    from adapters.testing.__main__ import main

    mapping = str(EXAMPLES / "soap-reference.toml")
    assert main(["soap", mapping, "--item", "KSTB-SB-0001=CS-SB-2009"]) == 1
    err = capsys.readouterr().err
    assert "item KSTB-SB-0001 arrived as 'CS-SB-2001', not as the local system's 'CS-SB-2009'" \
        in err, err
    with pytest.raises(SystemExit) as exited:
        main(["soap", mapping, "--item", "KSTB-SB-0001"])
    assert exited.value.code == 2
    assert "expected OURS=LOCAL" in capsys.readouterr().err


def test_the_command_line_checks_the_other_codes_it_is_given(
        capsys: pytest.CaptureFixture[str]) -> None:
    """--mode, --applicant-kind and --delivery each replace one of the mapping's tables, as
    --item does, so a table that disagrees with the local system's codes fails; one that would
    leave codes unchecked is refused."""
    from adapters.testing.__main__ import main

    mapping = str(EXAMPLES / "soap-reference.toml")
    assert main(["soap", mapping, "--mode", "online=2", "--mode", "proxy=1",
                 "--delivery", "post=1", "--delivery", "online=3"]) == 1
    err = capsys.readouterr().err
    assert "mode online arrived as '1', not as the local system's '2'" in err, err
    assert "mode proxy arrived as '2', not as the local system's '1'" in err, err
    assert "delivery online arrived as '2', not as the local system's '3'" in err, err
    assert "delivery post arrived as" not in err, err
    assert main(["soap", mapping, "--applicant-kind", "person=1"]) == 1
    assert "both applicant kinds" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["soap", mapping, "--delivery", "post"])
    assert exited.value.code == 2
    assert "--delivery 'post': expected OURS=LOCAL, e.g. post=YJ" in capsys.readouterr().err
