"""HMAC-SHA256 webhook signatures with a timestamp, so a captured push cannot be replayed.

The MAC covers `timestamp + "." + raw body`: signing the body alone would let anyone who saw
one push resend it later with a fresh timestamp header. The receiver refuses a timestamp more
than `tolerance` seconds away from its clock and compares MACs in constant time.
"""

from __future__ import annotations

from collections.abc import Mapping

from adapters.base import AdapterError
from trust.webhook import same, webhook_mac


def mac(secret: str, timestamp: str, body: bytes) -> str:
    return webhook_mac(secret, timestamp, body)


def sign(secret: str, body: bytes, now: float, *, prefix: str = "sha256=") -> tuple[str, str]:
    """The (timestamp, signature) header values for one push."""
    timestamp = str(int(now))
    return timestamp, prefix + mac(secret, timestamp, body)


def verify(headers: Mapping[str, str], body: bytes, *, secret: str | None, now: float,
           signature_header: str, timestamp_header: str, prefix: str = "sha256=",
           tolerance: int = 300) -> None:
    """Raise `AdapterError(transient=False)` unless the push is signed and fresh."""
    if not secret:
        raise AdapterError("webhooks are refused: no webhook secret is configured",
                           transient=False)
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get(timestamp_header.lower(), "")
    signature = lowered.get(signature_header.lower(), "")
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise AdapterError(f"webhook without a valid {timestamp_header} header", transient=False)
    if abs(now - int(timestamp)) > tolerance:
        raise AdapterError(f"webhook timestamp is more than {tolerance} s from now (replayed or "
                           "a wrong clock)", transient=False)
    expected = prefix + mac(secret, timestamp, body)
    if not same(signature, expected):
        raise AdapterError("webhook signature does not match", transient=False)
