"""The OpenAPI document of the portal and window API (gateway/http/openapi.json) keeps up with
the code: it is valid enough to use, describes exactly the routes served under /api/v1, names
the same states, actions and levels as the code, is what the gateway serves, and describes what
a real response looks like.

jsonschema is not a dependency, so the last check is structural: required keys present, and
no key the document does not describe.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from casekit import ONLINE_ITEM, Api, applicant, case_federation, materials
from fedkit import CHANGDE, DOUMEN, TAOYUAN, DbFactory

from gateway.cases.access import ROLES
from gateway.cases.applications import DELIVERY_METHODS, LOA_LEVELS
from gateway.cases.states import CaseState
from gateway.http.api import HANDLING_ACTIONS, routes
from registry.document import Mode

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "gateway" / "http" / "openapi.json"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded = json.loads(DOCUMENT.read_text("utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(doc: dict[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/"), f"only local references: {pointer}"
    node: Any = doc
    for raw in pointer[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{pointer} does not resolve"
        node = node[part]
    return node


def _deref(doc: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = _resolve(doc, node["$ref"])
    return node


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method.upper(), path, operation


def test_document_parses_and_every_ref_resolves(doc: dict[str, Any]) -> None:
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"])
    assert doc["info"]["title"] and doc["info"]["version"]
    refs = set(_refs(doc))
    assert refs, "the document is expected to share its schemas through $ref"
    for ref in sorted(refs):
        target = _resolve(doc, ref)
        assert isinstance(target, dict), f"{ref} is not an object"


def test_document_describes_exactly_the_routes_served(doc: dict[str, Any]) -> None:
    served = {(r.method, r.path) for r in routes
              if isinstance(r, web.RouteDef) and r.path.startswith("/api/v1")}
    described = {(method, path) for method, path, _ in _operations(doc)}
    assert served, "no /api/v1 routes found in gateway.http.api.routes"
    assert served - described == set(), "served but not described"
    assert described - served == set(), "described but not served"


def test_every_operation_names_callers_and_parameters(doc: dict[str, Any]) -> None:
    schemes = set(doc["components"]["securitySchemes"])
    assert schemes == {"portalClient", "bearer"}
    assert doc["components"]["securitySchemes"]["portalClient"]["scheme"] == "basic"
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    ids = []
    for method, path, operation in _operations(doc):
        where = f"{method} {path}"
        ids.append(operation["operationId"])
        assert "Callers:" in operation["description"], where
        assert operation["x-callers"], where
        assert "security" in operation, where
        for requirement in operation["security"]:
            assert set(requirement) <= schemes, where
        params = [_deref(doc, p) for p in operation.get("parameters", [])]
        in_path = {p["name"] for p in params if p["in"] == "path"}
        assert in_path == set(re.findall(r"\{(\w+)\}", path)), where
        for status, response in operation["responses"].items():
            response = _deref(doc, response)
            if int(status) >= 400:
                assert "application/problem+json" in response["content"], f"{where} {status}"
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    get_case = doc["paths"]["/api/v1/cases/{case_id}"]["get"]
    assert "X-Query-Password" in {_deref(doc, p)["name"] for p in get_case["parameters"]}
    upload = doc["paths"]["/api/v1/materials"]["post"]
    assert "X-Material-Name" in {_deref(doc, p)["name"] for p in upload["parameters"]}


def test_enums_match_the_code(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert schemas["CaseState"]["enum"] == [s.value for s in CaseState]
    assert set(schemas["CaseViewState"]["enum"]) == {s.value for s in CaseState} | {"pending"}
    assert schemas["HandlingAction"]["enum"] == list(HANDLING_ACTIONS)
    assert schemas["DeliveryMethod"]["enum"] == list(DELIVERY_METHODS)
    assert schemas["Loa"]["enum"] == list(LOA_LEVELS)
    assert schemas["ClerkRole"]["enum"] == list(ROLES)
    assert schemas["Mode"]["enum"] == [m.value for m in Mode]
    level = schemas["EvaluationLevel"]
    assert (level["type"], level["minimum"], level["maximum"]) == ("integer", 1, 5)
    errors = schemas["Problem"]["properties"]["errors"]
    assert "errors" not in schemas["Problem"]["required"]
    assert set(_deref(doc, errors["items"])["required"]) == {"field", "reason"}


def test_document_is_package_data() -> None:
    """Installed from a wheel, the gateway still finds the file it serves."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    assert "http/openapi.json" in pyproject["tool"]["setuptools"]["package-data"]["gateway"]
    packaged = resources.files("gateway").joinpath("http/openapi.json").read_text("utf-8")
    assert packaged == DOCUMENT.read_text("utf-8")


def _check_keys(doc: dict[str, Any], schema_name: str, value: Any, where: str) -> None:
    """Required keys present, no undescribed key, the state a documented one."""
    schema = doc["components"]["schemas"][schema_name]
    assert isinstance(value, dict), where
    missing = set(schema["required"]) - set(value)
    assert not missing, f"{where}: missing {sorted(missing)}"
    extra = set(value) - set(schema["properties"])
    assert not extra, f"{where}: not in the {schema_name} schema: {sorted(extra)}"


def _check_case(doc: dict[str, Any], case_: Any, where: str, *, full: bool) -> None:
    _check_keys(doc, "Case", case_, where)
    schemas = doc["components"]["schemas"]
    assert case_["state"] in schemas["CaseViewState"]["enum"], where
    _check_keys(doc, "ApplicantView", case_["applicant"], f"{where}.applicant")
    for i, material in enumerate(case_["materials"]):
        _check_keys(doc, "MaterialView", material, f"{where}.materials[{i}]")
    assert ("history" in case_) is full, where
    for i, event in enumerate(case_.get("history", [])):
        _check_keys(doc, "HistoryEvent", event, f"{where}.history[{i}]")
        for key in ("from", "to"):
            assert event[key] is None or event[key] in schemas["CaseState"]["enum"], where
    for i, part in enumerate(case_.get("parts", [])):
        _check_case(doc, part, f"{where}.parts[{i}]", full=False)
        assert "parts" not in part, where


async def test_gateway_serves_the_document(tmp_path: Path, db_factory: DbFactory) -> None:
    fed = await case_federation(tmp_path, db_factory, (DOUMEN,))
    try:
        async with aiohttp.ClientSession() as session, \
                session.get(fed[DOUMEN].url + "/api/v1/openapi.json") as resp:
            assert resp.status == 200
            assert resp.content_type == "application/json"
            served = await resp.json()
    finally:
        await fed.close()
    assert served == json.loads(DOCUMENT.read_text("utf-8"))


async def test_real_responses_have_the_documented_shape(
        tmp_path: Path, db_factory: DbFactory, doc: dict[str, Any]) -> None:
    fed = await case_federation(tmp_path, db_factory)
    try:
        async with aiohttp.ClientSession() as session:
            portal = Api(session, fed[TAOYUAN]).as_portal()
            created = await portal.call("POST", "/api/v1/cases", {
                "item": ONLINE_ITEM, "handler": DOUMEN, "applicant": applicant("430725"),
                "materials": materials(ONLINE_ITEM), "loa": "L4",
                "delivery": {"method": "post", "address": "常德市桃源县漳江镇"}}, expect=201)
            _check_keys(doc, "CaseCreated", created, "created")
            assert re.fullmatch(doc["components"]["schemas"]["CaseCreated"]["properties"]
                                ["query_password"]["pattern"], created["query_password"])
            case_id = created["case"]["case_id"]
            _check_case(doc, created["case"], "created.case", full=True)
            for caller, headers in ((portal, {}),
                                    (Api(session, fed[TAOYUAN]),
                                     {"X-Query-Password": created["query_password"]})):
                seen = await caller.call("GET", f"/api/v1/cases/{case_id}", headers=headers)
                _check_keys(doc, "CaseEnvelope", seen, "seen")
                _check_case(doc, seen["case"], "seen.case", full=True)
                assert seen["case"]["history"], "a submitted case has a history"
            listed = await portal.call("GET", "/api/v1/cases")
            _check_keys(doc, "CaseList", listed, "listed")
            for i, summary in enumerate(listed["cases"]):
                _check_case(doc, summary, f"listed.cases[{i}]", full=False)
            # A joint case (多地联办): the parent answers with its parts.
            doumen_portal = Api(session, fed[DOUMEN]).as_portal()
            joint = await doumen_portal.call("POST", "/api/v1/cases", {
                "item": ONLINE_ITEM, "mode": "joint", "handlers": [TAOYUAN, CHANGDE],
                "applicant": applicant("440403"), "loa": "L4",
                "materials": materials(ONLINE_ITEM)}, expect=201)
            _check_case(doc, joint["case"], "joint.case", full=True)
            assert len(joint["case"]["parts"]) == 2
            # A refusal: a problem with every field error at once.
            status, content_type, problem = await portal.raw(
                "POST", "/api/v1/cases", {"item": ONLINE_ITEM, "applicant": {"name": ""},
                                          "loa": "L9"})
            assert (status, content_type) == (422, "application/problem+json")
            _check_keys(doc, "Problem", problem, "problem")
            assert {e["field"] for e in problem["errors"]} >= {"applicant.name", "loa"}
            for i, error in enumerate(problem["errors"]):
                _check_keys(doc, "FieldError", error, f"problem.errors[{i}]")
    finally:
        await fed.close()
