"""What the applicant portal needs to know about its gateway (kept apart from the handlers,
which import the app keys)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PortalSettings:
    member_name: str
    csrf_secret: bytes
    secure_cookie: bool
    cookie_name: str  # per member: gateways on one host (the demo) must not share a cookie
