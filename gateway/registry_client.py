"""The member side of the registry: hold, persist, poll and fail closed (PROTOCOL.md §3)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from gateway.db.repos import RegistryRepo
from registry.snapshot import RegistrySnapshot
from registry.versions import check_successor, verify_version
from trust.anchor import TrustAnchor
from trust.clock import Clock
from trust.errors import ErrorCode, RegistryError

log = logging.getLogger(__name__)

MAX_CATCH_UP = 10_000
STALE_POLL_INTERVAL = 3.0  # seconds between polls while no fresh registry is held


class RegistrySource(Protocol):
    async def fetch_current(self) -> str: ...

    async def fetch_version(self, version: int) -> str: ...


class FetchError(Exception):
    pass


class HttpRegistrySource:
    """Fetches from the operator's `/registry/v1`; transient failures retried with backoff."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, timeout: float) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def _get(self, path: str) -> str:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(3), wait=wait_exponential(multiplier=0.2, max=2),
            retry=retry_if_exception_type(FetchError), reraise=True,
        ):
            with attempt:
                try:
                    async with self._session.get(self._base + path,
                                                 timeout=self._timeout) as resp:
                        if resp.status != 200:
                            raise FetchError(f"GET {path}: HTTP {resp.status}")
                        return (await resp.text()).strip()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise FetchError(f"GET {path}: {type(exc).__name__}") from None
        raise AssertionError("unreachable")

    async def fetch_current(self) -> str:
        return await self._get("/current")

    async def fetch_version(self, version: int) -> str:
        return await self._get(f"/versions/{version}")


class RepoRegistrySource:
    """The operator reads the versions it published straight from its own database."""

    def __init__(self, repo: RegistryRepo) -> None:
        self._repo = repo

    async def fetch_current(self) -> str:
        latest = await self._repo.latest()
        if latest is None:
            raise FetchError("no registry published yet; run `tongban alliance init`")
        return latest.jws

    async def fetch_version(self, version: int) -> str:
        stored = await self._repo.get(version)
        if stored is None:
            raise FetchError(f"version {version} not found")
        return stored.jws


class RegistryHolder:
    def __init__(self, *, anchor: TrustAnchor, repo: RegistryRepo, source: RegistrySource,
                 clock: Clock, min_refresh_interval: float = 2.0) -> None:
        self._anchor = anchor
        self._repo = repo
        self._source = source
        self._clock = clock
        self._min_refresh = min_refresh_interval
        self._current: RegistrySnapshot | None = None
        self._lock = asyncio.Lock()
        self._last_refresh = float("-inf")
        self._listeners: list[Callable[[RegistrySnapshot], Awaitable[None]]] = []

    @property
    def current(self) -> RegistrySnapshot | None:
        return self._current

    def on_change(self, listener: Callable[[RegistrySnapshot], Awaitable[None]]) -> None:
        self._listeners.append(listener)

    def require_fresh(self) -> RegistrySnapshot:
        """The registry to act on, or `registry-stale`: never act on an expired registry."""
        snapshot = self._current
        if snapshot is None:
            raise RegistryError("no trust registry held yet", code=ErrorCode.REGISTRY_STALE)
        if snapshot.is_expired(self._clock()):
            raise RegistryError(f"registry version {snapshot.version} expired",
                                code=ErrorCode.REGISTRY_STALE)
        return snapshot

    async def load(self) -> None:
        """Start from the newest stored version (verified again: the anchor may have changed)."""
        stored = await self._repo.latest()
        if stored is None:
            return
        try:
            self._current = verify_version(stored.jws, self._anchor)
        except RegistryError as exc:
            log.error("stored registry version %s no longer verifies: %s", stored.version,
                      exc.detail)

    async def accept(self, token: str) -> bool:
        """Verify and adopt `token` if newer, catching up on skipped versions; True if adopted."""
        async with self._lock:
            return await self._accept_locked(token)

    async def _accept_locked(self, token: str) -> bool:
        held = self._current
        if held is not None and token.strip() == held.jws:
            # The version we hold, fetched again by a poll: nothing to verify (verifying a
            # national registry of thousands of members takes over a second).
            return False
        new = verify_version(token, self._anchor)
        if new.is_expired(self._clock()):
            raise RegistryError(f"offered registry version {new.version} is already expired",
                                code=ErrorCode.REGISTRY_STALE)
        held = self._current
        if not check_successor(held, new):
            return False
        chain: list[RegistrySnapshot] = []
        if held is not None and new.version > held.version + 1:
            if new.version - held.version > MAX_CATCH_UP:
                raise RegistryError("too many skipped registry versions", code=ErrorCode.MALFORMED)
            previous = held
            for number in range(held.version + 1, new.version):
                step = verify_version(await self._source.fetch_version(number), self._anchor)
                if step.version != number:
                    raise RegistryError(f"asked for version {number}, got {step.version}",
                                        code=ErrorCode.MALFORMED)
                check_successor(previous, step)
                chain.append(step)
                previous = step
            if new.claims.prev != previous.digest:
                raise RegistryError(f"version {new.version} does not chain to {previous.version}",
                                    code=ErrorCode.MALFORMED)
        now = self._clock()
        for snap in [*chain, new]:
            await self._repo.store_if_absent(version=snap.version, jws=snap.jws,
                                             digest=snap.digest, iat=snap.claims.iat,
                                             exp=snap.claims.exp, now=now)
        self._current = new
        log.info("registry version %d adopted (expires %d)", new.version, new.exp)
        for listener in self._listeners:
            await listener(new)
        return True

    async def refresh(self) -> bool:
        """Fetch the current version now; errors are logged, and the held version is kept."""
        async with self._lock:
            self._last_refresh = self._clock()
            try:
                token = await self._source.fetch_current()
                return await self._accept_locked(token)
            except FetchError as exc:
                log.warning("registry fetch failed: %s", exc)
            except RegistryError as exc:
                log.error("registry version refused: %s", exc.detail)
            return False

    async def refresh_soon(self) -> bool:
        """On-demand refresh (unknown kid, `registry.updated`), rate-limited against floods."""
        if self._clock() - self._last_refresh < self._min_refresh:
            return False
        return await self.refresh()

    async def poll_forever(self, interval: float) -> None:
        """Poll every `interval`; while no fresh registry is held, every few seconds."""
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("registry poll failed; the held version is kept")
            fresh = self._current is not None and not self._current.is_expired(self._clock())
            await asyncio.sleep(interval if fresh else min(interval, STALE_POLL_INTERVAL))
