"""Turning an application (a JSON body from a portal, a window or a peer) into checked values.

Every problem is collected with its field path before anything is stored, so a clerk or a
portal gets the whole list at once (一次性告知) and a refused application leaves no trace.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.cases.model import Applicant
from registry.catalog import CatalogItem
from registry.document import Mode
from registry.validation import (
    FieldError,
    InvalidInput,
    check_credit_code,
    check_resident_id,
)

LOA_LEVELS = ("L2", "L3", "L4", "L5")
DELIVERY_METHODS = ("post", "online", "window")
PHONE_RE = re.compile(r"^\+?[0-9][0-9 -]{5,19}$")
SHA256_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
MEMBER_RE = re.compile(r"^CN-\d{6}$")
MAX_TEXT = 2000


@dataclass(frozen=True)
class Material:
    code: str
    name: str
    sha256: str | None = None
    size: int | None = None
    media_type: str | None = None
    cert_id: str | None = None
    cert_issuer: str | None = None
    original_checked: bool = False
    paper: bool = False
    item: str | None = None  # in a bundle: the item this material is for (None: every item)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "name": self.name}
        if self.item:
            out["item"] = self.item
        if self.sha256:
            out.update(sha256=self.sha256, size=self.size, media_type=self.media_type)
        if self.cert_id:
            out["cert"] = {"id": self.cert_id, "issuer": self.cert_issuer}
        if self.original_checked:
            out["original_checked"] = True
        if self.paper:
            out["paper"] = True
        return out

    def attachment(self) -> dict[str, Any] | None:
        """The `att` entry of PROTOCOL.md §4 for this material, when it is a file."""
        if not self.sha256:
            return None
        return {"sha256": self.sha256, "size": self.size or 0,
                "media_type": self.media_type or "application/octet-stream",
                "name": self.name}


@dataclass(frozen=True)
class Delivery:
    method: str = "window"
    address: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "address": self.address}


@dataclass(frozen=True)
class Part:
    """One item of a bundle, or one member's share of a joint case."""

    item: str
    handler: str | None
    step: int


@dataclass(frozen=True)
class Application:
    mode: str
    applicant: Applicant
    loa: str | None
    form: Mapping[str, Any]
    materials: tuple[Material, ...]
    delivery: Delivery
    parts: tuple[Part, ...]  # one part for a single case
    kind: str = "single"  # single | joint | bundle
    ordered: bool = False  # bundles: steps one after another
    courier: tuple[str, ...] = field(default=())


class Collector:
    """Collects field errors; `done()` raises them all at once."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, field_: str, reason: str) -> None:
        self.errors.append(FieldError(field_, reason))

    def guard(self, exc: InvalidInput) -> None:
        self.errors.extend(exc.errors)

    def done(self) -> None:
        if self.errors:
            raise InvalidInput(self.errors)


def _text(c: Collector, data: Mapping[str, Any], key: str, path: str, *, required: bool = True,
          limit: int = 200) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        if required:
            c.add(f"{path}{key}", "is required")
        return None
    if not isinstance(value, str):
        c.add(f"{path}{key}", "must be a string")
        return None
    if len(value) > limit:
        c.add(f"{path}{key}", f"must be at most {limit} characters")
        return None
    return value


def parse_applicant(c: Collector, value: Any, path: str, *,
                    today: datetime.date) -> Applicant | None:
    if not isinstance(value, Mapping):
        c.add(path.rstrip("."), "must be an object")
        return None
    kind = value.get("kind", "person")
    if kind not in ("person", "company"):
        c.add(f"{path}kind", "must be person or company")
        return None
    name = _text(c, value, "name", path)
    phone = _text(c, value, "phone", path, required=False, limit=24)
    if phone is not None and not PHONE_RE.match(phone):
        c.add(f"{path}phone", "is not a phone number")
    id_number = credit_code = None
    if kind == "person":
        try:
            id_number = check_resident_id(value.get("id_number"), f"{path}id_number",
                                          today=today).number
        except InvalidInput as exc:
            c.guard(exc)
    else:
        try:
            credit_code = check_credit_code(value.get("credit_code"), f"{path}credit_code")
        except InvalidInput as exc:
            c.guard(exc)
    if name is None or (id_number is None and credit_code is None):
        return None
    return Applicant(kind=kind, name=name, id_number=id_number, credit_code=credit_code,
                     phone=phone)


def parse_materials(c: Collector, value: Any, path: str = "materials") -> tuple[Material, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        c.add(path, "must be a list")
        return ()
    out: list[Material] = []
    for i, item in enumerate(value):
        where = f"{path}[{i}]."
        if not isinstance(item, Mapping):
            c.add(f"{path}[{i}]", "must be an object")
            continue
        code = _text(c, item, "code", where, limit=64)
        name = _text(c, item, "name", where, required=False) or code or ""
        sha = item.get("sha256")
        if sha is not None and (not isinstance(sha, str) or not SHA256_RE.match(sha)):
            c.add(f"{where}sha256", "must be a base64url SHA-256 (43 characters)")
            sha = None
        size = item.get("size")
        if sha is not None and (not isinstance(size, int) or isinstance(size, bool)
                                or size < 0):
            c.add(f"{where}size", "must be the file size in bytes")
        media = _text(c, item, "media_type", where, required=False, limit=100)
        for_item = _text(c, item, "item", where, required=False, limit=64)
        cert = item.get("cert")
        cert_id = cert_issuer = None
        if cert is not None:
            if not isinstance(cert, Mapping):
                c.add(f"{where}cert", "must be an object with id and issuer")
            else:
                cert_id = _text(c, cert, "id", f"{where}cert.", limit=128)
                cert_issuer = _text(c, cert, "issuer", f"{where}cert.", limit=16)
                if cert_issuer and not MEMBER_RE.match(cert_issuer):
                    c.add(f"{where}cert.issuer", "must be a member id (CN- and 6 digits)")
        if code is not None:
            out.append(Material(code=code, name=name, sha256=sha,
                                size=size if isinstance(size, int) else None,
                                media_type=media, cert_id=cert_id, cert_issuer=cert_issuer,
                                original_checked=bool(item.get("original_checked", False)),
                                paper=bool(item.get("paper", False)), item=for_item))
    return tuple(out)


def parse_delivery(c: Collector, value: Any, path: str = "delivery") -> Delivery:
    if value is None:
        return Delivery()
    if not isinstance(value, Mapping):
        c.add(path, "must be an object")
        return Delivery()
    prefix = f"{path}." if path else ""
    method = value.get("method", "window")
    if method not in DELIVERY_METHODS:
        c.add(f"{prefix}method", f"must be one of {', '.join(DELIVERY_METHODS)}")
        return Delivery()
    address = _text(c, value, "address", prefix, required=method == "post", limit=500)
    return Delivery(method=method, address=address)


def parse_application(body: Mapping[str, Any], *, today: datetime.date,
                      default_mode: str | None = None, part: bool = False) -> Application:
    """A single case (`item`), a joint case (`item` + `handlers`) or a bundle (`items`).

    `part`: the body is one part of a joint case or bundle, as a handler receives it.
    """
    c = Collector()
    mode = body.get("mode", default_mode)
    if mode not in {m.value for m in Mode}:
        c.add("mode", "must be online, proxy or joint")
    applicant = parse_applicant(c, body.get("applicant"), "applicant.", today=today)
    loa = body.get("loa")
    if loa is not None and loa not in LOA_LEVELS:
        c.add("loa", f"must be one of {', '.join(LOA_LEVELS)}")
    form = body.get("form", {})
    if not isinstance(form, Mapping):
        c.add("form", "must be an object")
        form = {}
    materials = parse_materials(c, body.get("materials"))
    delivery = parse_delivery(c, body.get("delivery"))
    courier = body.get("courier", [])
    if not isinstance(courier, list) or not all(isinstance(t, str) and 0 < len(t) <= 64
                                                for t in courier):
        c.add("courier", "must be a list of tracking numbers")
        courier = []
    parts: list[Part] = []
    kind = "single"
    ordered = False
    if "items" in body and not part:
        kind = "bundle"
        items = body.get("items")
        ordered = bool(body.get("ordered", False))
        if not isinstance(items, list) or not 2 <= len(items) <= 20:
            c.add("items", "must list 2 to 20 items")
        else:
            for i, entry in enumerate(items):
                if not isinstance(entry, Mapping):
                    c.add(f"items[{i}]", "must be an object with item and handler")
                    continue
                item = _text(c, entry, "item", f"items[{i}].", limit=64)
                handler = _member(c, entry.get("handler"), f"items[{i}].handler")
                if item:
                    parts.append(Part(item=item, handler=handler, step=i + 1))
    else:
        item = _text(c, body, "item", "", limit=64)
        if mode == Mode.JOINT.value and not part:
            kind = "joint"
            handlers = body.get("handlers")
            if not isinstance(handlers, list) or not 2 <= len(handlers) <= 20 or \
                    len(set(map(str, handlers))) != len(handlers):
                c.add("handlers", "a joint case needs 2 to 20 different members")
            elif item:
                for i, member in enumerate(handlers):
                    handler = _member(c, member, f"handlers[{i}]")
                    parts.append(Part(item=item, handler=handler, step=i + 1))
        elif item:
            parts.append(Part(item=item, handler=_member(c, body.get("handler"), "handler"),
                              step=1))
    c.done()
    assert applicant is not None
    return Application(mode=str(mode), applicant=applicant, loa=loa, form=dict(form),
                       materials=materials, delivery=delivery, parts=tuple(parts), kind=kind,
                       ordered=ordered, courier=tuple(courier))


def _member(c: Collector, value: Any, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not MEMBER_RE.match(value):
        c.add(path, "must be a member id (CN- and 6 digits)")
        return None
    return value


def materials_for(item_code: str, materials: Sequence[Material]) -> tuple[Material, ...]:
    """The materials of one bundle item: those tagged with it and those shared by all."""
    return tuple(m for m in materials if m.item in (None, item_code))


def missing_materials(item: CatalogItem, materials: Sequence[Material]) -> list[str]:
    """Required materials of `item` not supplied (formal completeness, 形式审查)."""
    given = {m.code for m in materials}
    return [f"{m.code} {m.name}" for m in item.materials if m.required and m.code not in given]


def check_loa(item: CatalogItem, loa: str | None) -> None:
    """Items can require a minimum identity-assurance level (e.g. L4 for 户口迁移)."""
    need = item.min_loa
    if need is None:
        return
    if loa is None or LOA_LEVELS.index(loa) < LOA_LEVELS.index(need):
        raise InvalidInput(FieldError(
            "loa", f"{item.name} requires identity assurance {need} or higher; "
                   f"the applicant was verified at {loa or 'no level'}"))
