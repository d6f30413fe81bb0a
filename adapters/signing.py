"""HMAC-SHA256 webhook signatures with a timestamp, so a captured push cannot be replayed.

The MAC covers `timestamp + "." + raw body`: signing the body alone would let anyone who saw
one push resend it later with a fresh timestamp header. The receiver refuses a timestamp more
than `tolerance` seconds away from its clock and compares MACs in constant time.
"""

from __future__ import annotations

from collections.abc import Mapping

from adapters.base import WebhookRefused
from trust.credentials import same_secret
from trust.webhook import webhook_mac


def mac(secret: str, timestamp: str, body: bytes) -> str:
    return webhook_mac(secret, timestamp, body)


def sign(secret: str, body: bytes, now: float, *, prefix: str = "sha256=") -> tuple[str, str]:
    """The (timestamp, signature) header values for one push."""
    timestamp = str(int(now))
    return timestamp, prefix + mac(secret, timestamp, body)


def verify(headers: Mapping[str, str], body: bytes, *, secret: str | None, now: float,
           signature_header: str, timestamp_header: str, prefix: str = "sha256=",
           tolerance: int = 300) -> None:
    """Raise `WebhookRefused` unless the push is signed and fresh."""
    if not secret:
        raise WebhookRefused("webhooks are refused: no webhook secret is configured")
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get(timestamp_header.lower(), "")
    signature = lowered.get(signature_header.lower(), "")
    # ASCII digits only: str.isdigit() also admits characters such as "²" that int() refuses.
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        raise WebhookRefused(f"webhook without a valid {timestamp_header} header")
    if abs(now - int(timestamp)) > tolerance:
        raise WebhookRefused(f"webhook timestamp is more than {tolerance} s from now "
                             "(replayed or a wrong clock)")
    expected = prefix + mac(secret, timestamp, body)
    if not same_secret(signature, expected):
        raise WebhookRefused("webhook signature does not match")
