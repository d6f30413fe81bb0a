"""The alliance item catalog: one item, one standard, one code (同一事项、同一标准、同一编码).

Members offer items in the registry by code; the catalog says what each code means everywhere:
which materials a window must collect, whether it must see originals, which e-certificates may
stand in, how strong the applicant's login must be, and the statutory clock. Without one shared
list a receiving window in Doumen and a handling office in Taoyuan would check different things
for the same case.

The file is configuration, so a bad entry is refused at load time with the JSON path of the bad
field (`catalog.json: items[3].modes[0]: ...`): an operator must be able to find it without
reading a traceback.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from registry.document import Item, ItemCode, Mode
from registry.validation import FieldError, InvalidInput
from trust.errors import ConfigError

PACKAGED = "data/catalog.json"
MAX_ERRORS_REPORTED = 10

MaterialCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9\-]{1,32}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class Loa(enum.StrEnum):
    """National identity-assurance levels (DOMAIN.md): L2 format check … L5 certificate."""

    L2 = "L2"
    L3 = "L3"
    L4 = "L4"
    L5 = "L5"

    @property
    def rank(self) -> int:
        return int(self.value[1])

    def satisfied_by(self, presented: Loa | str) -> bool:
        """Whether a login at level `presented` is strong enough for this requirement."""
        return Loa(presented).rank >= self.rank


class Applicant(enum.StrEnum):
    PERSON = "person"
    COMPANY = "company"


class _Frozen(BaseModel):
    # strict: a config file saying "required": "yes" is a mistake to report, not to coerce.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Material(_Frozen):
    code: MaterialCode
    name: Text
    required: bool
    original_check: bool  # the window must see the original (原件核验权)
    electronic_ok: bool  # a scan or an e-certificate is acceptable instead of paper
    cert_type: Text | None = None  # 电子证照 catalogue name that can stand in, e.g. "居民身份证"


class CatalogItem(_Frozen):
    code: ItemCode
    name: Text
    category: Text
    applicant: Applicant
    household_bound: bool  # only the authority of the applicant's 户籍地 may decide
    min_loa: Loa
    modes: tuple[Mode, ...] = Field(min_length=1)
    decision_days: int = Field(ge=1, le=365)  # working days
    extension_days: int = Field(ge=0, le=365)  # working days; 0 where no extension exists
    policy: Text
    basis: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None
    materials: tuple[Material, ...] = Field(min_length=1)

    def supports(self, mode: Mode | str) -> bool:
        return mode in self.modes

    def material(self, code: str) -> Material | None:
        return next((m for m in self.materials if m.code == code), None)

    def required_materials(self) -> tuple[Material, ...]:
        return tuple(m for m in self.materials if m.required)

    def registry_item(self, modes: Iterable[Mode | str] | None = None) -> Item:
        """The registry entry for a member offering this item, in all or some of its modes.

        A member may offer fewer modes than the catalog allows (no window staff for proxy yet),
        never more: a mode the catalog rules out has no agreed procedure behind it.
        """
        if modes is None:
            return Item(code=self.code, name=self.name, modes=self.modes)
        chosen: list[Mode] = []
        errors: list[FieldError] = []
        for i, value in enumerate(modes):
            try:
                mode = Mode(value)
            except ValueError:
                errors.append(FieldError(f"modes[{i}]", f"unknown mode {value!r}; one of "
                                                        f"{_join(Mode)}"))
                continue
            if mode not in self.modes:
                errors.append(FieldError(f"modes[{i}]", f"{self.code} cannot be offered in mode "
                                                        f"{mode}; the catalog allows "
                                                        f"{_join(self.modes)}"))
            elif mode not in chosen:
                chosen.append(mode)
        if not errors and not chosen:
            errors.append(FieldError("modes", "at least one mode is required"))
        if errors:
            raise InvalidInput(errors)
        return Item(code=self.code, name=self.name, modes=tuple(chosen))


class CatalogFile(_Frozen):
    """The JSON document as stored; `Catalog` is the indexed form the rest of the code uses."""

    version: int = Field(ge=1)
    code_scheme: str | None = None
    items: tuple[CatalogItem, ...] = Field(min_length=1)


@dataclass(frozen=True)
class Catalog:
    version: int
    _items: tuple[CatalogItem, ...]
    _by_code: dict[str, CatalogItem] = field(repr=False, compare=False)
    code_scheme: str | None = None

    @classmethod
    def build(cls, document: CatalogFile) -> Catalog:
        return cls(version=document.version, _items=document.items,
                   _by_code={item.code: item for item in document.items},
                   code_scheme=document.code_scheme)

    def get(self, code: str) -> CatalogItem | None:
        return self._by_code.get(code)

    def require(self, code: object, field: str = "item") -> CatalogItem:
        """The item for a code taken from a request; an unknown code is the caller's error."""
        if not isinstance(code, str):
            raise InvalidInput(FieldError(field, "must be an item code string"))
        item = self._by_code.get(code)
        if item is None:
            raise InvalidInput(FieldError(field, f"unknown item code {_clip(code)!r}; "
                                                 "not in the alliance catalog"))
        return item

    def items(self) -> tuple[CatalogItem, ...]:
        return self._items

    def __iter__(self) -> Iterator[CatalogItem]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and code in self._by_code


def load_catalog(path: Path | None = None) -> Catalog:
    """Parse and check a catalog file; None means the seed catalog shipped in the package."""
    if path is None:
        label = "catalog.json"
        try:
            text = resources.files("registry").joinpath(PACKAGED).read_text(encoding="utf-8")
        except OSError as exc:  # a broken installation, not a user mistake, but say so plainly
            raise ConfigError(f"{label}: packaged catalog unreadable: {exc}") from None
    else:
        label = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{label}: cannot read: {exc}") from None
    return parse_catalog(text, label=label)


def parse_catalog(text: str | bytes, *, label: str = "catalog.json") -> Catalog:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{label}: not JSON: line {exc.lineno} column {exc.colno}: "
                          f"{exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: not UTF-8: {exc.reason}") from None
    try:
        # JSON-mode validation: strict, yet strings are accepted for enums and arrays for tuples.
        document = CatalogFile.model_validate_json(json.dumps(raw))
    except ValidationError as exc:
        problems = [(_json_path(err["loc"]), _message(err)) for err in exc.errors()]
        raise _config_error(label, problems) from None
    problems = _consistency(document.items)
    if problems:
        raise _config_error(label, problems)
    return Catalog.build(document)


@lru_cache(maxsize=1)
def seed_catalog() -> Catalog:
    """The packaged catalog, parsed once: it is immutable and read on every routing decision."""
    return load_catalog(None)


def _consistency(items: Sequence[CatalogItem]) -> list[tuple[str, str]]:
    """Rules that span fields, which a schema cannot express; each names the field to fix."""
    problems: list[tuple[str, str]] = []
    first_seen: dict[str, int] = {}
    for i, item in enumerate(items):
        at = f"items[{i}]"
        if item.code in first_seen:
            problems.append((f"{at}.code", f"duplicate item code {item.code}, first at "
                                           f"items[{first_seen[item.code]}]"))
        else:
            first_seen[item.code] = i
        for k, mode in enumerate(item.modes):
            if mode in item.modes[:k]:
                problems.append((f"{at}.modes[{k}]", f"mode {mode} listed twice"))
        if item.household_bound and item.applicant is Applicant.COMPANY:
            problems.append((f"{at}.household_bound", "a company has no household registration "
                                                      "(户籍); household_bound needs applicant "
                                                      "person"))
        material_seen: dict[str, int] = {}
        for k, material in enumerate(item.materials):
            mat = f"{at}.materials[{k}]"
            if material.code in material_seen:
                first = material_seen[material.code]
                problems.append((f"{mat}.code", f"duplicate material code {material.code}, "
                                                f"first at materials[{first}]"))
            else:
                material_seen[material.code] = k
            if material.cert_type is not None and not material.electronic_ok:
                problems.append((f"{mat}.electronic_ok", "must be true when cert_type names an "
                                                         "e-certificate that can stand in"))
            if Mode.ONLINE in item.modes and material.required and not material.electronic_ok:
                problems.append((f"{mat}.electronic_ok", "a required material of an item offered "
                                                         "online must be accepted electronically"))
    return problems


def _config_error(label: str, problems: list[tuple[str, str]]) -> ConfigError:
    shown = [f"{path}: {reason}" if path else reason
             for path, reason in problems[:MAX_ERRORS_REPORTED]]
    more = len(problems) - len(shown)
    if more > 0:
        shown.append(f"and {more} more")
    return ConfigError(f"{label}: " + "; ".join(shown))


def _json_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _message(err: Any) -> str:
    msg = str(err["msg"])
    prefix = "Value error, "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


def _join(values: Iterable[enum.StrEnum]) -> str:
    return ", ".join(str(v) for v in values)


def _clip(text: str, limit: int = 80) -> str:
    """Request input echoed in an error is bounded: an error message is not a mirror."""
    return text if len(text) <= limit else text[:limit] + "…"
