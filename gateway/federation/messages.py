"""Message types and their handlers (PROTOCOL.md §4).

The inbox knows nothing about cases: each message type is served by a `MessageHandler` that
validates the body and applies the message inside the inbox transaction. Later features (the
case state machine, SSO logout, certificate checks) plug in by registering handlers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from registry.document import Role
from trust.errors import ErrorCode, TongbanError

CASE_ID_RE = re.compile(
    r"^CN-\d{6}:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
SHA256_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")

CASE_TYPES = (
    "case.submit", "case.accept", "case.reject", "case.supplement_request", "case.supplement",
    "case.status", "case.conclude", "case.deliver", "case.withdraw", "case.evaluate",
)


class InvalidBody(TongbanError):
    code = ErrorCode.INVALID_BODY


class MissingBlob(TongbanError):
    """A message lists a material (`att`) this gateway does not hold (PROTOCOL.md §5)."""

    code = ErrorCode.MISSING_BLOB


@dataclass(frozen=True)
class Attachment:
    sha256: str
    size: int
    media_type: str
    name: str


@dataclass(frozen=True)
class InboundMessage:
    """A message whose signature, audience, lifetime and sender have been verified."""

    token: str
    digest: str
    iss: str
    aud: str
    jti: str
    iat: int
    exp: int
    type: str
    case_id: str | None
    seq: int | None
    body: Mapping[str, Any]
    att: tuple[Attachment, ...] = field(default=())


class MessageHandler(Protocol):
    """How one message type is checked and applied."""

    @property
    def case_bound(self) -> bool:
        """True when the message must carry `case` and `seq`."""
        ...

    @property
    def sender_roles(self) -> frozenset[Role]:
        """The sender needs one of these roles; empty means any active member."""
        ...

    def validate(self, body: Mapping[str, Any]) -> None:
        """Raise `InvalidBody` for a body this type does not accept."""
        ...

    async def apply(self, conn: AsyncConnection, message: InboundMessage) -> None:
        """Apply inside the inbox transaction; raising rolls the message back (not stored)."""
        ...

    async def after_commit(self, message: InboundMessage) -> None:
        """Side effects that must only happen once the message is durably stored."""
        ...


FieldTypes = Mapping[str, type | tuple[type, ...]]


class BaseHandler:
    case_bound: bool = False
    sender_roles: frozenset[Role] = frozenset()
    required_fields: ClassVar[FieldTypes] = {}

    def validate(self, body: Mapping[str, Any]) -> None:
        for name, kind in self.required_fields.items():
            value = body.get(name)
            if value is None or not isinstance(value, kind) or isinstance(value, bool):
                raise InvalidBody(f"body.{name} is required")

    async def apply(self, conn: AsyncConnection, message: InboundMessage) -> None:
        return None

    async def after_commit(self, message: InboundMessage) -> None:
        return None


class StoreOnlyCaseHandler(BaseHandler):
    """Case messages are stored and receipted; the case state machine replaces this handler."""

    case_bound = True


class CertHandler(BaseHandler):
    required_fields: ClassVar[FieldTypes] = {"cert_id": str}


class CertResponseHandler(BaseHandler):
    def validate(self, body: Mapping[str, Any]) -> None:
        if not isinstance(body.get("cert_id"), str) or not isinstance(body.get("valid"), bool):
            raise InvalidBody("body.cert_id (string) and body.valid (boolean) are required")


class SsoLogoutHandler(BaseHandler):
    required_fields: ClassVar[FieldTypes] = {"sid": str}


class HandlerRegistry:
    """The set of message types this gateway accepts; lives on the app, not in a global."""

    def __init__(self, handlers: Mapping[str, MessageHandler] | None = None) -> None:
        self._handlers: dict[str, MessageHandler] = dict(handlers or {})

    def register(self, type_: str, handler: MessageHandler) -> None:
        self._handlers[type_] = handler

    def get(self, type_: str) -> MessageHandler | None:
        return self._handlers.get(type_)

    def types(self) -> Iterable[str]:
        return self._handlers.keys()


def default_handlers() -> HandlerRegistry:
    registry = HandlerRegistry()
    for type_ in CASE_TYPES:
        registry.register(type_, StoreOnlyCaseHandler())
    registry.register("cert.verify_request", CertHandler())
    registry.register("cert.verify_response", CertResponseHandler())
    registry.register("sso.logout", SsoLogoutHandler())
    return registry


def parse_attachments(value: Any) -> tuple[Attachment, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidBody("att must be a list")
    result = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidBody(f"att[{i}] must be an object")
        sha, size = item.get("sha256"), item.get("size")
        media, name = item.get("media_type"), item.get("name")
        if not isinstance(sha, str) or not SHA256_B64URL_RE.match(sha):
            raise InvalidBody(f"att[{i}].sha256 must be a base64url SHA-256")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidBody(f"att[{i}].size must be a non-negative integer")
        if not isinstance(media, str) or not isinstance(name, str):
            raise InvalidBody(f"att[{i}].media_type and .name must be strings")
        result.append(Attachment(sha, size, media, name))
    return tuple(result)
