"""The declarative mapping file of a region: where the local system is, which call does what,
how our fields, item codes and states become the local ones and back.

A region is added by writing one of these (TOML), not code, so everything a mistake in it could
break is checked when the gateway starts: unknown keys, code tables that are not one-to-one,
states mapped to actions that do not exist, a body missing what its action requires. The same
file shape serves the REST and the SOAP adapter; only `endpoint` is read differently (an HTTP
method and path, or a SOAP operation name).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping as AnyMapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from adapters.actions import SLOTS
from adapters.base import ACTIONS, ConfigProblem

# What `from` may start with, per call: the record the adapter is given.
SUBMIT_ROOTS = ("case_id", "item_code", "mode", "receiver", "applicant", "form", "materials",
                "delivery", "received_at")
CALL_ROOTS: dict[str, tuple[str, ...]] = {
    "submit": SUBMIT_ROOTS,
    "supplement": ("case_id", "ref", "materials"),
    "withdraw": ("case_id", "ref", "reason"),
}
MATERIAL_KEYS = ("code", "name", "sha256", "size", "media_type", "cert", "item",
                 "original_checked", "paper")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Service(_Strict):
    base_url: str = Field(pattern=r"^https?://[^/\s]+$")
    path: str = Field(default="", pattern=r"^(/[^\s]*)?$")  # SOAP: the service's path
    namespace: str = ""  # SOAP: the operations' XML namespace
    timeout: float = Field(default=10.0, gt=0, le=120)  # seconds, one attempt
    attempts: int = Field(default=3, ge=1, le=5)  # quick retries inside one call
    backoff: float = Field(default=0.2, ge=0, le=5)  # first wait between them, doubling
    max_answer_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    auth_header: str | None = None  # e.g. X-Api-Key, its value from `auth_secret`
    auth_secret: str | None = None  # a name in [adapter.secrets]

    @model_validator(mode="after")
    def _auth_pair(self) -> Service:
        if (self.auth_header is None) != (self.auth_secret is None):
            raise ValueError("auth_header and auth_secret go together")
        return self


class FieldSpec(_Strict):
    """Where one local field comes from: a dotted path in our record, or a constant."""

    source: str | None = Field(default=None, alias="from")
    value: str | None = None
    codes: str | None = None  # a code table: our value -> local value
    each: dict[str, FieldSpec] | None = None  # a list: how each element is built
    encode: Literal["value", "json"] = Field(default="value", alias="as")
    required: bool = False
    default: str | None = None  # used when our record lacks `from` (before the code table)

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        return {"from": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_source(self) -> FieldSpec:
        if (self.source is None) == (self.value is None):
            raise ValueError("give exactly one of `from` and `value`")
        return self


class Call(_Strict):
    endpoint: str
    fields: dict[str, FieldSpec]
    reply_ref: str | None = None  # submit: where the local reference is in the answer


class BodySpec(_Strict):
    source: str = Field(alias="from")
    codes: str | None = None  # inbound: the table is read backwards (local -> ours)

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        return {"from": data} if isinstance(data, str) else data


class StateRule(_Strict):
    action: str
    body: dict[str, BodySpec] = {}

    @model_validator(mode="after")
    def _body_fits_action(self) -> StateRule:
        if self.action not in ACTIONS:
            raise ValueError(f"action {self.action!r} is not one of {', '.join(ACTIONS)}")
        slots = SLOTS[self.action]
        unknown = sorted(set(self.body) - set(slots))
        if unknown:
            raise ValueError(f"{self.action} takes no {', '.join(unknown)} (it takes "
                             f"{', '.join(slots) or 'nothing'})")
        missing = sorted(k for k, slot in slots.items() if slot.required and k not in self.body)
        if missing:
            raise ValueError(f"{self.action} needs {', '.join(missing)} in its body")
        return self


class Events(_Strict):
    endpoint: str
    cursor_param: str
    list: str  # path to the list of events in an answer (and in a webhook body)
    next_cursor: str
    event_id: str  # paths inside one event
    case_id: str
    state: str
    # Path to the state the case left, when the local system gives it: a state key may then be
    # "FROM>TO", for a state reached by two different steps (a resumed review is 审查中 again).
    previous: str | None = None
    ignore: tuple[str, ...] = ()  # local states that are not the authority's doing
    states: dict[str, StateRule]

    @model_validator(mode="after")
    def _disjoint(self) -> Events:
        both = sorted(set(self.ignore) & set(self.states))
        if both:
            raise ValueError(f"states both ignored and mapped: {', '.join(both)}")
        pairs = sorted(k for k in self.states if ">" in k)
        if pairs and self.previous is None:
            raise ValueError(f"state {pairs[0]!r} names a previous state, but `previous` (where "
                             "an event gives it) is not set")
        return self


class Webhook(_Strict):
    secret: str = "webhook_secret"  # noqa: S105 - the name of a secret in [adapter.secrets]
    signature_header: str = "X-Signature"
    timestamp_header: str = "X-Timestamp"
    signature_prefix: str = "sha256="
    tolerance: int = Field(default=300, ge=1, le=3600)


class RegionMapping(_Strict):
    service: Service
    submit: Call
    supplement: Call
    withdraw: Call
    events: Events
    webhook: Webhook | None = None
    codes: dict[str, dict[str, str]] = {}

    @field_validator("codes")
    @classmethod
    def _one_to_one(cls, codes: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for name, table in codes.items():
            seen: dict[str, str] = {}
            for ours, theirs in table.items():
                if theirs in seen:
                    raise ValueError(f"table {name}: {seen[theirs]!r} and {ours!r} both map "
                                     f"to {theirs!r}; a table must read both ways")
                seen[theirs] = ours
        return codes

    @model_validator(mode="after")
    def _references(self) -> RegionMapping:
        for call in ("submit", "supplement", "withdraw"):
            spec: Call = getattr(self, call)
            for local, field in spec.fields.items():
                _check_field(self.codes, f"{call}.fields.{local}", field, CALL_ROOTS[call])
        if not self.submit.reply_ref:
            raise ValueError("submit.reply_ref: where the answer gives the local reference")
        for state, rule in self.events.states.items():
            for key, body in rule.body.items():
                if body.codes is not None and body.codes not in self.codes:
                    raise ValueError(f"events.states.{state}.body.{key}: no code table "
                                     f"{body.codes!r}")
        return self

    def reverse(self, table: str) -> dict[str, str]:
        return {theirs: ours for ours, theirs in self.codes[table].items()}


def _check_field(codes: AnyMapping[str, Any], where: str, field: FieldSpec,
                 roots: tuple[str, ...]) -> None:
    if field.codes is not None and field.codes not in codes:
        raise ValueError(f"{where}: no code table {field.codes!r}")
    if field.source is not None and field.source.split(".")[0] not in roots:
        raise ValueError(f"{where}: `from` must start with one of {', '.join(roots)}")
    for key, inner in (field.each or {}).items():
        if inner.source is not None and inner.source.split(".")[0] not in MATERIAL_KEYS:
            raise ValueError(f"{where}.each.{key}: `from` must start with one of "
                             f"{', '.join(MATERIAL_KEYS)}")
        if inner.each is not None:
            raise ValueError(f"{where}.each.{key}: lists inside lists are not supported")
        if inner.codes is not None and inner.codes not in codes:
            raise ValueError(f"{where}.each.{key}: no code table {inner.codes!r}")


def load(config: AnyMapping[str, Any], base: Path, option: str = "adapter.settings"
         ) -> RegionMapping:
    """Read and check the mapping file the settings name; `ConfigProblem` names what is wrong."""
    name = config.get("mapping")
    if not isinstance(name, str) or not name:
        raise ConfigProblem(f"{option}.mapping: the path of the region's mapping file is "
                            "required")
    unknown = sorted(set(config) - {"mapping", "base_url"})
    if unknown:
        raise ConfigProblem(f"{option}.{unknown[0]}: not an option (options: mapping, "
                            "base_url)")
    path = (base / name) if not Path(name).is_absolute() else Path(name)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigProblem(f"{option}.mapping: cannot read {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigProblem(f"{option}.mapping: {path} is not TOML: {exc}") from None
    override = config.get("base_url")
    if override is not None:
        if not isinstance(override, str):
            raise ConfigProblem(f"{option}.base_url: must be text like http://host:port")
        raw.setdefault("service", {})["base_url"] = override.rstrip("/")
    try:
        return RegionMapping.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigProblem(f"{option}.mapping: {path.name}: {where or 'top level'}: "
                            f"{message}{more}") from None
