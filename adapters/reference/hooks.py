"""Pushing the feed to the gateway's webhook, signed, in order, at least once.

The pusher remembers (in the database) the last sequence number the receiver acknowledged with
a 2xx; anything after it is sent again until acknowledged, so a receiver that was down gets
everything later and one that acknowledged late gets some events twice, with the same ids. That
is the delivery a gateway must be ready for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import aiohttp

from adapters.reference.store import Event, Store
from adapters.signing import sign

log = logging.getLogger(__name__)
MARKER = "webhook_seq"
BATCH = 50
TIMESTAMP_HEADER = "X-Tb-Timestamp"
SIGNATURE_HEADER = "X-Tb-Signature"


class Pusher:
    def __init__(self, store: Store, url: str, secret: str,
                 render: Callable[[list[Event]], bytes], *,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._url = url
        self._secret = secret
        self._render = render
        self._clock = clock
        self._wake = asyncio.Event()
        self.sent = 0  # batches acknowledged, for the status line

    def wake(self) -> None:
        self._wake.set()

    async def redeliver(self) -> None:
        """Send the whole feed again (a receiver must take it without harm)."""
        await asyncio.to_thread(self._store.set_meta, MARKER, "0")
        self.wake()

    async def push_once(self, session: aiohttp.ClientSession) -> bool:
        """Send the next batch; False when there was nothing to send."""
        marker = int(await asyncio.to_thread(self._store.meta, MARKER, "0"))
        events = await asyncio.to_thread(self._store.events_after, marker, BATCH)
        if not events:
            return False
        body = self._render(events)
        timestamp, signature = sign(self._secret, body, self._clock())
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
                   SIGNATURE_HEADER: signature}
        async with session.post(self._url, data=body, headers=headers,
                                timeout=aiohttp.ClientTimeout(total=10)) as resp:
            await resp.read()
            if resp.status >= 300:
                raise RuntimeError(f"webhook answered {resp.status}")
        await asyncio.to_thread(self._store.set_meta, MARKER, str(events[-1].seq))
        self.sent += 1
        return True

    async def run(self) -> None:
        backoff = 0.2
        async with aiohttp.ClientSession() as session:
            while True:
                self._wake.clear()
                try:
                    if await self.push_once(session):
                        backoff = 0.2
                        continue
                except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
                    log.warning("webhook to %s failed, retrying in %.1f s: %s", self._url,
                                backoff, exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=5.0)
