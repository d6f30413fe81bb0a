"""Signing keys: generation, PEM storage, JWK export and RFC 7638 thumbprints.

Keys are bound to exactly one algorithm (Ed25519 -> EdDSA, P-256 -> ES256); a verifier never lets
a token's header pick the algorithm for a key, which is what defeats algorithm-confusion attacks.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from trust.errors import ConfigError, ErrorCode, VerificationError

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


class Alg(enum.StrEnum):
    EDDSA = "EdDSA"
    ES256 = "ES256"


ALLOWED_ALGS: frozenset[str] = frozenset(a.value for a in Alg)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sha256_b64url(data: bytes) -> str:
    """The digest form used on the wire (`digest`, `prev`, blob names)."""
    return b64url(hashlib.sha256(data).digest())


def _alg_of_public(key: PublicKey) -> Alg:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return Alg.EDDSA
    if isinstance(key.curve, ec.SECP256R1):
        return Alg.ES256
    raise VerificationError(f"unsupported curve {key.curve.name}", code=ErrorCode.UNKNOWN_KEY)


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The bare public JWK (required members only), as RFC 7638 hashes it."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = OKPAlgorithm.to_jwk(key, as_dict=True)
        return {"kty": "OKP", "crv": "Ed25519", "x": str(raw["x"])}
    raw = ECAlgorithm.to_jwk(key, as_dict=True)
    return {"kty": "EC", "crv": "P-256", "x": str(raw["x"]), "y": str(raw["y"])}


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): the `kid` of every key in the alliance."""
    kty = jwk.get("kty")
    members: tuple[str, ...]
    if kty == "OKP":
        members = ("crv", "kty", "x")
    elif kty == "EC":
        members = ("crv", "kty", "x", "y")
    else:
        raise VerificationError(f"unsupported key type {kty!r}", code=ErrorCode.MALFORMED)
    try:
        required = {name: str(jwk[name]) for name in members}
    except KeyError as exc:
        raise VerificationError(f"JWK lacks member {exc.args[0]!r}",
                                code=ErrorCode.MALFORMED) from None
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True, ensure_ascii=True)
    return sha256_b64url(canonical.encode("ascii"))


def public_key_from_jwk(jwk: dict[str, Any]) -> tuple[PublicKey, Alg]:
    """Parse a public JWK; private members are refused so a leaked private key is never stored."""
    if "d" in jwk:
        raise VerificationError("JWK carries private key material", code=ErrorCode.MALFORMED)
    kty, crv = jwk.get("kty"), jwk.get("crv")
    try:
        if kty == "OKP" and crv == "Ed25519":
            key: Any = OKPAlgorithm.from_jwk(json.dumps(jwk))
        elif kty == "EC" and crv == "P-256":
            key = ECAlgorithm.from_jwk(json.dumps(jwk))
        else:
            raise VerificationError(f"unsupported key {kty}/{crv}", code=ErrorCode.MALFORMED)
    except VerificationError:
        raise
    except Exception as exc:
        raise VerificationError(f"invalid JWK: {exc}", code=ErrorCode.MALFORMED) from None
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise VerificationError("JWK is not a public key", code=ErrorCode.MALFORMED)
    return key, _alg_of_public(key)


@dataclass(frozen=True)
class SigningKey:
    """A private key with its algorithm and kid; the only object that can sign."""

    private: PrivateKey = field(repr=False)
    alg: Alg
    kid: str

    @classmethod
    def from_private(cls, private: PrivateKey) -> SigningKey:
        public = private.public_key()
        alg = _alg_of_public(public)
        return cls(private=private, alg=alg, kid=thumbprint(public_jwk(public)))

    @property
    def public(self) -> PublicKey:
        return self.private.public_key()

    def public_jwk(self, *, nbf: int | None = None, exp: int | None = None) -> dict[str, Any]:
        jwk: dict[str, Any] = {**public_jwk(self.public), "kid": self.kid, "use": "sig",
                               "alg": self.alg.value}
        if nbf is not None:
            jwk["nbf"] = nbf
        if exp is not None:
            jwk["exp"] = exp
        return jwk


def generate(alg: Alg = Alg.EDDSA) -> SigningKey:
    if alg is Alg.EDDSA:
        return SigningKey.from_private(ed25519.Ed25519PrivateKey.generate())
    return SigningKey.from_private(ec.generate_private_key(ec.SECP256R1()))


def save_pem(key: SigningKey, path: Path, passphrase: bytes | None = None) -> None:
    """Write a PKCS#8 PEM readable by the owner only; the file is created 0600, never widened."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase
        else serialization.NoEncryption()
    )
    data = key.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def load_pem(path: Path, passphrase: bytes | None = None) -> SigningKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc.strerror}") from None
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(f"key file {path} is readable by others (mode {mode:o}); chmod 600 it")
    try:
        private = serialization.load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cannot load key file {path}: {exc}") from None
    if not isinstance(private, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigError(f"key file {path} holds an unsupported key type")
    if isinstance(private, ec.EllipticCurvePrivateKey) and not isinstance(
        private.curve, ec.SECP256R1
    ):
        raise ConfigError(f"key file {path} holds an EC key that is not P-256")
    return SigningKey.from_private(private)
