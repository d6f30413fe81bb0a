"""CSRF tokens for the server-rendered pages (portal and admin console).

A token is a MAC of the session token under a per-gateway secret, so a page can embed it and a
form post can be checked without storing anything, and a token taken from one session is
useless with another. Kept here because MACs and their comparison belong with the rest of the
crypto.
"""

from __future__ import annotations

import hashlib
import hmac

from trust.credentials import same_secret


def csrf_token(secret: bytes, session_token: str) -> str:
    return hmac.new(secret, session_token.encode(), hashlib.sha256).hexdigest()[:32]


def csrf_matches(given: str, secret: bytes, session_token: str) -> bool:
    """Constant-time, so the comparison does not leak how much of a guess was right."""
    return same_secret(given, csrf_token(secret, session_token))
