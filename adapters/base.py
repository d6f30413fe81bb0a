"""The contract between a gateway and a city's own case system (the handling authority's).

A gateway that *handles* a case hands it to the local system through its region's adapter and
hears back, through the same adapter, what the authority decided. The gateway owns delivery
(durable queue, retries, circuit breaker) and the case lifecycle; an adapter only translates:
field names, item codes and states of one local system, over its transport (REST/JSON,
SOAP/XML, ...). Adapters are found through the `tongban.adapters` entry-point group and must
subclass `RegionAdapter`.

An adapter never imports the gateway: it gets plain records in and gives plain records back, so
the contract kit (`adapters/testing`) can test it against a local system alone.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import aiohttp

# What a local system may tell the gateway: the handling API's actions (gateway/cases).
ACTIONS = ("accept", "reject", "supplement-request", "review", "suspend", "resume",
           "conclude", "deliver")


@dataclass(frozen=True)
class LocalCase:
    """A case as the handling member's gateway hands it to the local system."""

    case_id: str
    item_code: str  # the alliance's common code; the adapter maps it to the local one
    mode: str
    receiver: str  # member id of the receiving window or portal
    applicant: Mapping[str, Any]  # kind, name, id_number | credit_code, phone
    form: Mapping[str, Any]
    materials: Sequence[Mapping[str, Any]]  # code, name, optional sha256/size/media_type/cert
    delivery: Mapping[str, Any]
    received_at: float


@dataclass(frozen=True)
class LocalEvent:
    """Something the handling authority did, in the gateway's terms.

    `event_id` is unique within one local system: the gateway applies each event once, so a
    webhook delivered twice or a poll that overlaps the last one is harmless.
    """

    event_id: str
    case_id: str
    action: str  # one of ACTIONS
    body: Mapping[str, Any] = field(default_factory=dict)  # as the handling API takes it


class AdapterError(Exception):
    """The local system did not do what was asked.

    `transient`: worth retrying later (timeout, 5xx, connection refused); otherwise the answer
    was malformed or refused for good, and the call is parked for an admin.
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class WebhookRefused(AdapterError):
    """A push that is not provably from the local system (no, bad or stale signature).

    Kept apart from other adapter errors so the gateway answers 401 only when the sender could
    not be authenticated; a signed push it cannot read is 422, which tells the local system's
    operator to fix the content rather than the credentials.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)


class PushesNotTaken(AdapterError):
    """This local system does not push: its adapter polls (or its mapping has no webhook).

    Kept apart so the gateway answers 404, as when it has no local system at all: there is no
    webhook here for the sender to fix its content or credentials for, and a 422 would send the
    local system's operator looking for a fault in a push that can never be taken.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)


class ConfigProblem(Exception):
    """An adapter's configuration is wrong; the message names the option path."""


class RegionAdapter(abc.ABC):
    """One local case system. Instances are made once per gateway, with validated config."""

    name: ClassVar[str]

    def __init__(self, config: Mapping[str, Any], *, base: Path,
                 session: aiohttp.ClientSession, secrets: Mapping[str, str]) -> None:
        """`config`: the `[adapter.settings]` table; `base`: the config file's folder, for
        relative paths; `secrets`: values read from the environment or files the config names
        (never in the TOML)."""
        self.config = config
        self.base = base
        self.session = session
        self.secrets = secrets

    @classmethod
    @abc.abstractmethod
    def check_config(cls, config: Mapping[str, Any], *, base: Path) -> None:
        """Raise `ConfigProblem` naming the option (e.g. `adapter.settings.mapping`)."""

    @abc.abstractmethod
    async def submit(self, case: LocalCase) -> str:
        """Create the case in the local system; return its local reference. Must be
        idempotent on `case.case_id`: a retry after a lost answer returns the same reference."""

    @abc.abstractmethod
    async def supplement(self, ref: str, case_id: str,
                         materials: Sequence[Mapping[str, Any]]) -> None:
        """Pass on materials the applicant supplied after a supplement request."""

    @abc.abstractmethod
    async def withdraw(self, ref: str, case_id: str, reason: str) -> None:
        """The applicant withdrew: the local system stops handling the case."""

    @abc.abstractmethod
    async def poll(self, cursor: str | None) -> tuple[list[LocalEvent], str | None]:
        """Events since `cursor` (None: from the start) and the cursor to use next time."""

    def webhook(self, headers: Mapping[str, str], body: bytes) -> list[LocalEvent]:
        """Events pushed by the local system. Must authenticate the call (HMAC or mTLS) and
        raise `WebhookRefused` when it does not. An adapter that only polls keeps this default,
        which the gateway answers with 404."""
        raise PushesNotTaken(f"this member's local system does not push; its {self.name} "
                             "adapter polls")
