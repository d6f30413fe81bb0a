"""The registry claims of PROTOCOL.md §3 as validated, immutable models."""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

MEMBER_ID_RE = re.compile(r"^CN-\d{6}$")
ALLIANCE_RE = r"^[a-z0-9][a-z0-9-]{0,62}$"
MAX_VALIDITY_SECONDS = 7 * 24 * 3600

MemberId = Annotated[str, StringConstraints(pattern=r"^CN-\d{6}$")]
ItemCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9\-]{4,64}$")]


class Status(enum.StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


class Role(enum.StrEnum):
    OPERATOR = "operator"
    SSO_ISSUER = "sso-issuer"
    HANDLER = "handler"
    RECEIVER = "receiver"


class Mode(enum.StrEnum):
    ONLINE = "online"
    PROXY = "proxy"
    JOINT = "joint"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Item(_Frozen):
    code: ItemCode
    name: str = Field(min_length=1, max_length=200)
    modes: tuple[Mode, ...] = Field(min_length=1)


class Member(_Frozen):
    id: MemberId
    name: str = Field(min_length=1, max_length=200)
    province: Annotated[str, StringConstraints(pattern=r"^\d{2}$")]
    endpoint: str = Field(min_length=1, max_length=2000)
    status: Status
    keys: tuple[dict[str, Any], ...]
    roles: tuple[Role, ...] = ()
    items: tuple[Item, ...] = ()

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_http(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("endpoint must be an http(s) URL")
        return value.rstrip("/")

    @property
    def is_active(self) -> bool:
        return self.status is Status.ACTIVE

    def has_role(self, role: Role) -> bool:
        return role in self.roles


class RegistryClaims(_Frozen):
    iss: MemberId
    alliance: Annotated[str, StringConstraints(pattern=ALLIANCE_RE)]
    version: int = Field(ge=1)
    iat: int
    exp: int
    prev: str | None = None
    members: tuple[Member, ...]

    @field_validator("members")
    @classmethod
    def _unique_ids(cls, members: tuple[Member, ...]) -> tuple[Member, ...]:
        seen: set[str] = set()
        for member in members:
            if member.id in seen:
                raise ValueError(f"member {member.id} listed twice")
            seen.add(member.id)
        return members
