"""The trust anchor: the operator public keys a member pins in its config.

Everything else a member believes about the alliance is derived from registry versions signed by
one of these keys, so the anchor file is the single root of trust and is never fetched online.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trust.errors import ConfigError, TongbanError
from trust.keyring import StaticKeyFetcher, VerifyingKey


@dataclass(frozen=True)
class TrustAnchor:
    alliance: str
    operator: str
    keys: tuple[VerifyingKey, ...]

    def fetcher(self) -> StaticKeyFetcher:
        return StaticKeyFetcher(self.keys)


def anchor_document(alliance: str, operator: str, jwks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"alliance": alliance, "operator": operator, "keys": jwks}


def parse_anchor(doc: Any, *, source: str = "trust anchor") -> TrustAnchor:
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: must be a JSON object")
    alliance, operator, jwks = doc.get("alliance"), doc.get("operator"), doc.get("keys")
    if not isinstance(alliance, str) or not isinstance(operator, str):
        raise ConfigError(f"{source}: 'alliance' and 'operator' must be strings")
    if not isinstance(jwks, list) or not jwks:
        raise ConfigError(f"{source}: 'keys' must be a non-empty list of JWKs")
    keys = []
    for i, jwk in enumerate(jwks):
        if not isinstance(jwk, dict):
            raise ConfigError(f"{source}: keys[{i}] is not a JSON object")
        try:
            keys.append(VerifyingKey.from_jwk(operator, jwk))
        except TongbanError as exc:
            raise ConfigError(f"{source}: keys[{i}]: {exc.detail}") from None
    return TrustAnchor(alliance=alliance, operator=operator, keys=tuple(keys))


def load_anchor(path: Path) -> TrustAnchor:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read trust anchor {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"trust anchor {path} is not JSON: {exc.msg}") from None
    return parse_anchor(doc, source=f"trust anchor {path}")
