"""Applying a region mapping: our records to local documents, local events to ours.

Both transports work on the same plain tree (dicts, lists, texts, numbers): JSON is one
already, and `adapters.xmltree` turns XML into one. XML cannot tell a list of one from a single
element, so a tree read from XML is *lenient* about lists; a JSON tree is not. Anything that
does not fit (a missing field, a state or code not in the tables, a wrong type) raises
`AdapterError(transient=False)`: a local answer is never guessed at.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from adapters.actions import SLOTS, check_body
from adapters.base import AdapterError, LocalEvent
from adapters.mapping import FieldSpec, RegionMapping

MISSING = object()


def _bad(message: str) -> AdapterError:
    return AdapterError(message, transient=False)


# --- outbound ---------------------------------------------------------------------------
def build(fields: Mapping[str, FieldSpec], record: Mapping[str, Any],
          mapping: RegionMapping) -> dict[str, Any]:
    """The local document for one call, from our record (a case, or a call's arguments)."""
    doc: dict[str, Any] = {}
    for local, spec in fields.items():
        value = _outbound_value(local, spec, record, mapping)
        if value is not MISSING:
            _put(doc, local, value)
    return doc


def _outbound_value(local: str, spec: FieldSpec, record: Mapping[str, Any],
                    mapping: RegionMapping) -> Any:
    value = spec.value if spec.source is None else lookup_ours(record, spec.source)
    if (value is None or value is MISSING) and spec.default is not None:
        value = spec.default
    if value is None or value is MISSING:
        if spec.required:
            raise _bad(f"the local field {local} needs {spec.source}, which this case lacks")
        return MISSING
    if spec.each is not None:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise _bad(f"{spec.source} is not a list")
        records = [element for element in value if isinstance(element, Mapping)]
        if len(records) != len(value):
            raise _bad(f"{spec.source} is not a list of records")
        return [build(spec.each, element, mapping) for element in records]
    if spec.codes is not None:
        table = mapping.codes[spec.codes]
        if str(value) not in table:
            raise _bad(f"no local code for {spec.source} {value!r} in table {spec.codes}")
        value = table[str(value)]
    if spec.encode == "json":
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return value


def lookup_ours(record: Mapping[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return MISSING
        value = value[part]
    return value


def _put(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        child = tree.setdefault(part, {})
        if not isinstance(child, dict):
            raise _bad(f"the mapping puts both a value and fields at {part}")
        tree = child
    tree[last] = value


# --- inbound ----------------------------------------------------------------------------
def lookup(doc: Any, path: str, *, many: bool = False, lenient: bool = False) -> Any:
    """The value at a dotted path of a local answer, or MISSING. `many`: a list is wanted."""
    value = doc
    for part in path.split("."):
        if lenient and isinstance(value, list) and len(value) == 1:
            value = value[0]
        if lenient and value == "":  # an empty XML element: an empty list, or nothing
            return [] if many else MISSING
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    if many:
        if isinstance(value, list):
            return value
        if lenient:
            return [] if value == "" or value is None else [value]
        raise _bad(f"{path} is not a list")
    if isinstance(value, list):
        if lenient and len(value) == 1:
            return value[0]
        raise _bad(f"{path} is a list where one value was expected")
    return value


def scalar(doc: Any, path: str, *, what: str, lenient: bool = False) -> str:
    """A required id-like value: text, or a whole number (JSON ids often are)."""
    value = lookup(doc, path, lenient=lenient)
    if value is MISSING or value is None or value == "":
        raise _bad(f"the local answer has no {what} ({path})")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _bad(f"the local answer's {what} ({path}) is not text")
    return str(value)


def events_from(doc: Any, mapping: RegionMapping, *, lenient: bool = False) -> list[LocalEvent]:
    """Every event of an answer or webhook body; raises on the first that does not fit, so a
    batch is taken whole or not at all."""
    if not isinstance(doc, dict):
        raise _bad("the local answer is not a document")
    items = lookup(doc, mapping.events.list, many=True, lenient=lenient)
    if items is MISSING:
        raise _bad(f"the local answer has no event list ({mapping.events.list})")
    events = []
    for item in items:
        event = event_from(item, mapping, lenient=lenient)
        if event is not None:
            events.append(event)
    return events


def event_from(item: Any, mapping: RegionMapping, *, lenient: bool = False
               ) -> LocalEvent | None:
    """One local event in our terms; None for a state the mapping says to ignore."""
    spec = mapping.events
    if not isinstance(item, dict):
        raise _bad("a local event is not a record")
    event_id = scalar(item, spec.event_id, what="event id", lenient=lenient)
    case_id = scalar(item, spec.case_id, what="case id", lenient=lenient)
    state = scalar(item, spec.state, what="state", lenient=lenient)
    if state in spec.ignore:
        return None
    rule = None
    if spec.previous is not None:
        before = lookup(item, spec.previous, lenient=lenient)
        if isinstance(before, str | int) and not isinstance(before, bool):
            rule = spec.states.get(f"{before}>{state}")
    if rule is None:
        rule = spec.states.get(state)
    if rule is None:
        raise _bad(f"event {event_id}: unknown local state {state!r}")
    flat: dict[str, Any] = {}
    for key, body_spec in rule.body.items():
        many = SLOTS[rule.action][key].many
        value = lookup(item, body_spec.source, many=many, lenient=lenient)
        if value is MISSING or value is None:
            continue
        if body_spec.codes is not None:
            value = _decode(value, mapping.reverse(body_spec.codes), f"event {event_id}: "
                            f"{body_spec.source}")
        flat[key] = value
    try:
        body = check_body(rule.action, flat)
    except AdapterError as exc:
        raise _bad(f"event {event_id} (state {state}): {exc}") from None
    return LocalEvent(event_id=event_id, case_id=case_id, action=rule.action, body=body)


def _decode(value: Any, table: Mapping[str, str], where: str) -> Any:
    if isinstance(value, list):
        return [_decode(v, table, where) for v in value]
    if not isinstance(value, str) or value not in table:
        raise _bad(f"{where}: unknown local code {value!r}")
    return table[value]
