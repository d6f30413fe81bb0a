"""What the benchmark sends: real online applications, each one new case and one `case.submit`.

The application is valid for the case machine of the receiving member (gateway/cases/inbound.py
re-checks it there): an item of the seed catalog that the handler offers in the mode used, a
person applicant with a valid resident ID, the LOA the item requires, every required material,
and a `form` padded so that the `case.submit` body is about `size` bytes of JSON.
"""

from __future__ import annotations

import json
import time
from typing import Any

from stdnum.cn import ric

from registry.catalog import load_catalog
from registry.document import Item

# 企业职工基本养老保险关系转移接续: online, proxy and joint; L4; three required materials. Not
# household-bound, so the handler is the member the application names.
ITEM = "KSTB-SB-0001"
MODE = "online"
PORTAL = "bench-portal"
TRANSPORT_TYPE = "bench.transport"  # the transport-only comparison (bench/receiver.py)


def resident_id(division: str = "530102", born: str = "19900307", sequence: str = "123") -> str:
    """A valid resident ID number (GB 11643), as tests/casekit.py builds them."""
    body = division + born + sequence
    return str(body + ric.calc_check_digit(body + "0"))


def offered_items() -> list[Item]:
    """Every item of the seed catalog in every mode it allows (as gateway/demo.py offers)."""
    return [item.registry_item() for item in load_catalog()]


def application(handler: str, size: int, item_code: str = ITEM) -> dict[str, Any]:
    """An application body (portal API shape) whose `case.submit` body is about `size` bytes."""
    item = load_catalog().get(item_code)
    assert item is not None, item_code
    body: dict[str, Any] = {
        "item": item_code, "mode": MODE, "handler": handler, "loa": "L4",
        "applicant": {"kind": "person", "name": "张三", "id_number": resident_id(),
                      "phone": "13800138000"},
        "materials": [{"code": m.code, "name": m.name} for m in item.materials if m.required],
        "delivery": {"method": "online"},
        "form": {"employer": "昆明市某制造有限公司", "insured_since": "2012-07",
                 "transfer_to": handler, "notes": ""},
    }
    body["form"]["notes"] = "x" * max(0, size - len(_submit_body_json(body)))
    return body


def _submit_body_json(app: dict[str, Any]) -> bytes:
    """Roughly what CaseService.submit_body + `_move` put on the wire (by, at, nulls)."""
    wire = {"item": app["item"], "mode": app["mode"],
            "applicant": {**app["applicant"], "credit_code": None},
            "loa": app["loa"], "form": app["form"], "materials": app["materials"],
            "delivery": {**app["delivery"], "address": None},
            "by": f"portal:{PORTAL}", "at": time.time()}
    return json.dumps(wire, separators=(",", ":")).encode()


def transport_body(size: int) -> dict[str, Any]:
    """The body of a `bench.transport` message: as large as a `case.submit` body."""
    body: dict[str, Any] = {"at": time.time(), "form": ""}
    body["form"] = "x" * max(0, size - len(json.dumps(body, separators=(",", ":"))))
    return body
