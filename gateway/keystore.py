"""The member's own signing keys on disk, and which one signs right now.

Rotation (PROTOCOL.md §3): a new key is created next to the old one and both are published at
`/federation/v1/keys`; the gateway keeps signing with the old key until a registry version lists
the new one, so no peer ever sees a signature by a key it cannot look up.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.snapshot import RegistrySnapshot
from trust.errors import ConfigError
from trust.keys import Alg, SigningKey, generate, load_pem, save_pem

INDEX = "index.json"


@dataclass(frozen=True)
class KeyEntry:
    kid: str
    alg: str
    created_at: float


class KeyStore:
    def __init__(self, directory: Path, passphrase: bytes | None = None) -> None:
        self.directory = directory
        self._passphrase = passphrase
        self._keys: list[SigningKey] = []
        self._loaded_mtime: float | None = None

    def _index(self) -> list[KeyEntry]:
        path = self.directory / INDEX
        if not path.exists():
            return []
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return [KeyEntry(e["kid"], e["alg"], float(e["created_at"])) for e in data["keys"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"keys.dir: {path} is unreadable or corrupt: {exc}") from None

    def _write_index(self, entries: list[KeyEntry]) -> None:
        path = self.directory / INDEX
        tmp = path.with_suffix(".tmp")
        doc: dict[str, Any] = {"keys": [e.__dict__ for e in entries]}
        tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
        os.replace(tmp, path)

    def load(self) -> list[SigningKey]:
        entries = self._index()
        if not entries:
            raise ConfigError(f"keys.dir: no keys in {self.directory}; run `tongban key init` "
                              f"(or `tongban alliance init` for the operator)")
        keys = [load_pem(self.directory / f"{e.kid}.pem", self._passphrase) for e in entries]
        for entry, key in zip(entries, keys, strict=True):
            if key.kid != entry.kid:
                raise ConfigError(f"keys.dir: {entry.kid}.pem holds key {key.kid}")
        self._keys = keys
        self._loaded_mtime = self._index_mtime()
        return keys

    def _index_mtime(self) -> float | None:
        try:
            return (self.directory / INDEX).stat().st_mtime_ns / 1e9
        except OSError:
            return None

    def reload_if_changed(self) -> bool:
        """Pick up keys that `tongban key rotate|retire` changed on disk while we run."""
        if self._index_mtime() == self._loaded_mtime:
            return False
        self.load()
        return True

    def exists(self) -> bool:
        return bool(self._index())

    def create(self, alg: Alg = Alg.EDDSA) -> SigningKey:
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        key = generate(alg)
        save_pem(key, self.directory / f"{key.kid}.pem", self._passphrase)
        self._write_index([*self._index(), KeyEntry(key.kid, key.alg.value, time.time())])
        self._keys = [*self._keys, key]
        return key

    def retire(self, kid: str) -> None:
        """Stop publishing a key; the PEM moves to `retired/` so the act can be audited."""
        entries = self._index()
        if kid not in {e.kid for e in entries}:
            raise ConfigError(f"no key {kid} in {self.directory}")
        if len(entries) == 1:
            raise ConfigError("refusing to retire the only key; rotate first")
        retired = self.directory / "retired"
        retired.mkdir(mode=0o700, exist_ok=True)
        os.replace(self.directory / f"{kid}.pem", retired / f"{kid}.pem")
        self._write_index([e for e in entries if e.kid != kid])
        self._keys = [k for k in self._keys if k.kid != kid]

    @property
    def keys(self) -> list[SigningKey]:
        return list(self._keys)

    def public_jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self._keys]}


class Signer:
    """Picks the signing key: the newest local key that the current registry lists for us."""

    def __init__(self, member_id: str, store: KeyStore) -> None:
        self._member_id = member_id
        self._store = store

    def current(self, snapshot: RegistrySnapshot | None) -> SigningKey:
        keys = self._store.keys
        if not keys:
            raise ConfigError("no signing key loaded")
        if snapshot is not None:
            for key in reversed(keys):
                if snapshot.get_key(self._member_id, key.kid) is not None:
                    return key
        return keys[-1]
