"""One exception hierarchy with stable error codes (PROTOCOL.md §7).

The codes are part of the wire contract: other gateways branch on them, so they never change
meaning. Every layer raises `TongbanError` subclasses; the HTTP layer renders them once.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    MALFORMED = "malformed"
    DIGEST_MISMATCH = "digest-mismatch"
    BAD_SIGNATURE = "bad-signature"
    UNKNOWN_KEY = "unknown-key"
    UNKNOWN_MEMBER = "unknown-member"
    WRONG_AUDIENCE = "wrong-audience"
    EXPIRED = "expired"
    MEMBER_SUSPENDED = "member-suspended"
    NOT_AUTHORIZED = "not-authorized"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not-found"
    METHOD_NOT_ALLOWED = "method-not-allowed"
    REPLAY = "replay"
    MISSING_BLOB = "missing-blob"
    TOO_LARGE = "too-large"
    RATE_LIMITED = "rate-limited"
    UNSUPPORTED_MEDIA_TYPE = "unsupported-media-type"
    INVALID_TRANSITION = "invalid-transition"
    INVALID_BODY = "invalid-body"
    IDEMPOTENCY_KEY_REUSED = "idempotency-key-reused"
    REGISTRY_STALE = "registry-stale"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"

    @property
    def status(self) -> int:
        return _STATUS[self]

    @property
    def problem_title(self) -> str:
        return _TITLES[self]


_STATUS: dict[ErrorCode, int] = {
    ErrorCode.MALFORMED: 400,
    ErrorCode.DIGEST_MISMATCH: 400,
    ErrorCode.BAD_SIGNATURE: 401,
    ErrorCode.UNKNOWN_KEY: 401,
    ErrorCode.UNKNOWN_MEMBER: 401,
    ErrorCode.WRONG_AUDIENCE: 401,
    ErrorCode.EXPIRED: 401,
    ErrorCode.MEMBER_SUSPENDED: 403,
    ErrorCode.NOT_AUTHORIZED: 403,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.REPLAY: 409,
    ErrorCode.MISSING_BLOB: 409,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.INVALID_TRANSITION: 422,
    ErrorCode.INVALID_BODY: 422,
    ErrorCode.IDEMPOTENCY_KEY_REUSED: 422,
    ErrorCode.REGISTRY_STALE: 503,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
}

_TITLES: dict[ErrorCode, str] = {
    ErrorCode.MALFORMED: "Malformed request",
    ErrorCode.DIGEST_MISMATCH: "Digest does not match content",
    ErrorCode.BAD_SIGNATURE: "Signature not acceptable",
    ErrorCode.UNKNOWN_KEY: "Signing key not known or not valid",
    ErrorCode.UNKNOWN_MEMBER: "Issuer is not a member of the alliance",
    ErrorCode.WRONG_AUDIENCE: "Message addressed to another member",
    ErrorCode.EXPIRED: "Token expired or not yet valid",
    ErrorCode.MEMBER_SUSPENDED: "Member is not active",
    ErrorCode.NOT_AUTHORIZED: "Member lacks the role for this",
    ErrorCode.UNAUTHENTICATED: "Authentication required",
    ErrorCode.FORBIDDEN: "Not allowed for this caller",
    ErrorCode.NOT_FOUND: "Not found",
    ErrorCode.METHOD_NOT_ALLOWED: "Method not allowed",
    ErrorCode.REPLAY: "Message id reused with different content",
    ErrorCode.MISSING_BLOB: "Referenced material not uploaded",
    ErrorCode.TOO_LARGE: "Request body too large",
    ErrorCode.RATE_LIMITED: "Too many attempts",
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: "Unsupported media type",
    ErrorCode.INVALID_TRANSITION: "Illegal case transition",
    ErrorCode.INVALID_BODY: "Message type or body not valid",
    ErrorCode.IDEMPOTENCY_KEY_REUSED: "Idempotency-Key already used for a different request",
    ErrorCode.REGISTRY_STALE: "Trust registry expired; federation traffic stopped",
    ErrorCode.UNAVAILABLE: "Temporarily unavailable",
    ErrorCode.INTERNAL: "Internal error",
}


class TongbanError(Exception):
    """Base of every error the gateway reports to a peer, a client or an operator.

    `detail` is shown to the caller, so it must never contain a token, a key or an ID number.
    """

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, detail: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(detail)
        if code is not None:
            self.code = code
        self.detail = detail


class VerificationError(TongbanError):
    """A token or signed document failed a check; `code` says which."""


class RegistryError(TongbanError):
    """A registry version was refused, or the held registry cannot be used."""


class ConfigError(TongbanError):
    """A configuration value is wrong; the message names the option."""
