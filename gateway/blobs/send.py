"""Uploading materials before the message that lists them (PROTOCOL.md §5, sending side).

For every `att` entry the destination may not hold, the uploader PUTs the blob from the local
store with a fresh request token. Which blobs a destination already took (answered 200 or 201)
is remembered in memory, so a message resent after a lost answer does not upload them again; if
the destination still answers a message with 409 `missing-blob`, the outbox calls `forget` and
the next attempt uploads them again.

The token's `htu` is the destination's endpoint *as the registry lists it*, even when the bytes
go to a `peers.<member-id>.endpoint` override: the receiver compares `htu` with the URL it is
known by, not with a private address it may be reached at.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import aiohttp

from gateway.blobs.store import BlobStore
from gateway.federation.outbox import PERMANENT_CODES, SendOutcome
from gateway.federation.outbox import _problem_code as problem_code
from gateway.keystore import Signer
from registry.snapshot import RegistrySnapshot
from trust import request as reqtoken
from trust.clock import Clock
from trust.errors import TongbanError

log = logging.getLogger(__name__)

BLOB_PATH = "/federation/v1/blobs/"
REMEMBER = 10_000  # (destination, blob) pairs known to be held
MIN_RATE = 100_000  # bytes per second an upload may not be slower than, on average


class BlobUploader:
    def __init__(self, *, member_id: str, store: BlobStore, signer: Signer,
                 session: aiohttp.ClientSession, clock: Clock, request_timeout: float) -> None:
        self._me = member_id
        self._store = store
        self._signer = signer
        self._session = session
        self._clock = clock
        self._timeout = request_timeout
        self._held: OrderedDict[tuple[str, str], None] = OrderedDict()

    def forget(self, dest: str, sha256s: Iterable[str]) -> None:
        for sha in sha256s:
            self._held.pop((dest, sha), None)

    def _remember(self, dest: str, sha: str) -> None:
        self._held[(dest, sha)] = None
        self._held.move_to_end((dest, sha))
        while len(self._held) > REMEMBER:
            self._held.popitem(last=False)

    async def upload(self, *, dest: str, endpoint: str, identity_endpoint: str,
                     att: Sequence[Mapping[str, Any]],
                     snapshot: RegistrySnapshot) -> SendOutcome | None:
        """Make sure `dest` holds every blob in `att`: None when it does, else the failure."""
        for item in att:
            sha, size = item.get("sha256"), item.get("size")
            if not isinstance(sha, str) or (dest, sha) in self._held:
                continue
            local = self._store.size(sha)
            if local is None:
                return SendOutcome(False, permanent=True,
                                   error=f"material {sha} is not in the local blob store")
            if local != size:
                return SendOutcome(False, permanent=True,
                                   error=f"material {sha}: att says {size} bytes, the local "
                                         f"blob has {local}")
            failure = await self._put(dest, endpoint, identity_endpoint, sha, local, snapshot)
            if failure is not None:
                return failure
            self._remember(dest, sha)
        return None

    async def _put(self, dest: str, endpoint: str, identity_endpoint: str, sha: str, size: int,
                   snapshot: RegistrySnapshot) -> SendOutcome | None:
        path = BLOB_PATH + sha
        endpoint, identity_endpoint = endpoint.rstrip("/"), identity_endpoint.rstrip("/")
        token = reqtoken.sign_request(self._signer.current(snapshot), iss=self._me, aud=dest,
                                      htm="PUT", htu=identity_endpoint + path,
                                      now=self._clock())
        timeout = aiohttp.ClientTimeout(total=self._timeout + size / MIN_RATE,
                                        sock_connect=self._timeout, sock_read=self._timeout)
        try:
            async with self._session.put(
                endpoint + path, data=self._store.read(sha), timeout=timeout,
                headers={"Authorization": f"Bearer {token}",
                         "Content-Type": "application/octet-stream",
                         "Content-Length": str(size)},
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError, TongbanError) as exc:
            detail = exc.detail if isinstance(exc, TongbanError) else f"{type(exc).__name__}: {exc}"
            return SendOutcome(False, error=f"upload of {sha}: {detail}"[:300])
        if status in (200, 201):
            log.debug("blob %s held by %s (HTTP %d)", sha, dest, status)
            return None
        code = problem_code(text)
        return SendOutcome(False, permanent=code in PERMANENT_CODES,
                           error=f"upload of {sha}: HTTP {status} {code or ''}".strip())
