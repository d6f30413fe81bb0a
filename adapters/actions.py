"""What each handling action's body must hold, checked before an event leaves an adapter.

The gateway would refuse a malformed body too, but only after the event was taken as the local
system's word: an adapter that checks here reports a malformed local answer as an
`AdapterError` instead, so a bad answer never reaches a case (the contract kit relies on it).
The rules mirror the handling API (`_decision` in gateway/cases/service.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.base import ACTIONS, AdapterError

TEXT_LIMIT = 2000
CERT_ID_RE = re.compile(r"^[A-Za-z0-9.:_-]{1,128}$")


@dataclass(frozen=True)
class Slot:
    """One key of an action's body (dotted for nested keys, e.g. `certificate.id`)."""

    required: bool = False
    many: bool = False  # a list of texts
    choices: tuple[str, ...] = ()
    limit: int = TEXT_LIMIT
    pattern: re.Pattern[str] | None = None


SLOTS: dict[str, dict[str, Slot]] = {
    "accept": {"receipt_no": Slot(limit=64)},
    "reject": {"reason": Slot(required=True)},
    "supplement-request": {"reason": Slot(required=True),
                           "materials": Slot(required=True, many=True, limit=200)},
    "review": {},
    "suspend": {"reason": Slot(required=True),
                "procedure": Slot(required=True, choices=("hearing", "inspection",
                                                          "expert_review", "other"))},
    "resume": {},
    "conclude": {"outcome": Slot(required=True, choices=("approved", "denied")),
                 "result": Slot(required=True),
                 "certificate.id": Slot(limit=128, pattern=CERT_ID_RE),
                 "certificate.name": Slot(limit=200)},
    "deliver": {"tracking": Slot()},
}
assert set(SLOTS) == set(ACTIONS)
MAX_MATERIALS = 50


def check_body(action: str, flat: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a flat body (dotted keys) and return it nested, as the handling API takes it."""
    slots = SLOTS.get(action)
    if slots is None:
        raise AdapterError(f"unknown action {action!r}", transient=False)
    unknown = set(flat) - set(slots)
    if unknown:
        raise AdapterError(f"{action}: unexpected body keys {sorted(unknown)}", transient=False)
    body: dict[str, Any] = {}
    for key, slot in slots.items():
        value = flat.get(key)
        if value is None or value == "" or value == []:
            if slot.required:
                raise AdapterError(f"{action}: the local answer has no {key}", transient=False)
            continue
        _check_value(action, key, slot, value)
        _put(body, key, value)
    if "certificate" in body and "id" not in body["certificate"]:
        raise AdapterError(f"{action}: a certificate name without an id", transient=False)
    if "certificate" in body and body.get("outcome") != "approved":
        raise AdapterError(f"{action}: only an approved decision issues a certificate",
                           transient=False)
    return body


def _check_value(action: str, key: str, slot: Slot, value: Any) -> None:
    values = value if slot.many else [value]
    if slot.many and (not isinstance(value, list) or len(value) > MAX_MATERIALS):
        raise AdapterError(f"{action}: {key} must be a list of at most {MAX_MATERIALS} texts",
                           transient=False)
    for one in values:
        if not isinstance(one, str) or not one or len(one) > slot.limit:
            raise AdapterError(f"{action}: {key} must be text of 1-{slot.limit} characters",
                               transient=False)
        if slot.choices and one not in slot.choices:
            raise AdapterError(f"{action}: {key} {one!r} is not one of {slot.choices}",
                               transient=False)
        if slot.pattern is not None and not slot.pattern.match(one):
            raise AdapterError(f"{action}: {key} {one!r} has characters it may not have",
                               transient=False)


def _put(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[last] = value
