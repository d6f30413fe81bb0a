"""Passwords, bearer tokens and pseudonyms for the portal and window API.

Kept in `trust/` with the rest of the cryptography. Passwords use scrypt (RFC 7914) from the
`cryptography` package with a per-password salt; bearer tokens are random and only their
SHA-256 is stored, so a copy of the database does not let anyone log in; an applicant is
matched to their cases by a keyed pseudonym of the ID number, so ID numbers are never compared
or indexed in the clear.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

# OWASP's scrypt minimum (N=2^17, r=8, p=1) costs ~0.3 s here; logins are rare, so we take it.
_N, _R, _P, _LEN = 2**17, 8, 1, 32
_PREFIX = "scrypt"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = _N) -> str:
    """`n` lower than the default only for short-lived, rate-limited secrets (query passwords)."""
    salt = secrets.token_bytes(16)
    derived = Scrypt(salt=salt, length=_LEN, n=n, r=_R, p=_P).derive(password.encode("utf-8"))
    return f"{_PREFIX}${n}${_R}${_P}${_b64(salt)}${_b64(derived)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        prefix, n, r, p, salt, derived = stored.split("$")
        if prefix != _PREFIX:
            return False
        Scrypt(salt=_unb64(salt), length=len(_unb64(derived)), n=int(n), r=int(r),
               p=int(p)).verify(password.encode("utf-8"), _unb64(derived))
    except (ValueError, InvalidKey):
        return False
    return True


def new_token() -> str:
    """A bearer token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_secret() -> str:
    return _b64(secrets.token_bytes(32))


def pseudonym(secret: str, value: str) -> str:
    """A keyed, stable stand-in for `value` (an ID number): HMAC-SHA-256, base64url."""
    return _b64(hmac.new(_unb64(secret), value.encode("utf-8"), hashlib.sha256).digest())


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets (client secrets, query passwords, MACs, CSRF
    tokens), so a guesser learns nothing from how long a refusal takes. Encoded first:
    compare_digest refuses non-ASCII str, and a forged value may be anything."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def new_query_password() -> str:
    """The 查询密码 printed on the applicant's receipt: 8 digits, easy to type at a kiosk."""
    return f"{secrets.randbelow(10**8):08d}"


def derived_query_password(secret: str, context: str) -> str:
    """A query password that a retried request (same caller, same Idempotency-Key) gets again.

    Only the scrypt hash of a query password is stored, so a repeated reply cannot read the
    original back; deriving it (HMAC-SHA-256 under the gateway's secret, reduced to 8 digits)
    gives the same password both times without keeping it anywhere.
    """
    mac = hmac.new(_unb64(secret), b"query-password\x00" + context.encode("utf-8"),
                   hashlib.sha256).digest()
    return f"{int.from_bytes(mac, 'big') % 10**8:08d}"


def fingerprint(data: bytes) -> str:
    """SHA-256 (hex) of a request, to tell a true retry from a reused Idempotency-Key."""
    return hashlib.sha256(data).hexdigest()
