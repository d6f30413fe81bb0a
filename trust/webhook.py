"""The MAC of a signed webhook push: HMAC-SHA256 over `timestamp + "." + body`.

Binding the timestamp into the MAC is what makes replay protection work: signing the body alone
would let anyone who saw one push resend it later with a fresh timestamp header. Used by the
region adapters (`adapters.signing`) to verify pushes and by the reference local case system to
make them.
"""

from __future__ import annotations

import hashlib
import hmac


def webhook_mac(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body,
                    hashlib.sha256).hexdigest()
