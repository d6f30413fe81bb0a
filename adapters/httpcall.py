"""One HTTP exchange with a local system, bounded in time and size, classified for retry.

A few quick retries happen here, inside one adapter call, to ride out a blip; anything longer is
the gateway's job (its durable queue, backoff and circuit breaker), so the budget stays small:
`attempts` tries with `backoff` doubling between them. What is worth retrying is decided once,
here: timeouts, connection failures and 5xx are transient; 4xx and oversized answers are not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from adapters.base import AdapterError

T = TypeVar("T")


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True)
class Policy:
    timeout: float
    attempts: int
    backoff: float
    max_answer_bytes: int


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, AdapterError) and exc.transient


async def retrying(policy: Policy, call: Callable[[], Awaitable[T]]) -> T:
    """Run `call`, retrying transient `AdapterError`s; the last error is raised as it was."""
    async for attempt in AsyncRetrying(
            stop=stop_after_attempt(policy.attempts),
            wait=wait_exponential(multiplier=policy.backoff, max=policy.backoff * 8),
            retry=retry_if_exception(_transient), reraise=True):
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover


async def exchange(session: aiohttp.ClientSession, method: str, url: str, policy: Policy, *,
                   data: bytes | None = None, headers: Mapping[str, str] | None = None,
                   params: Mapping[str, str] | None = None) -> Reply:
    """One request; the answer's body is read up to the cap, never further."""
    timeout = aiohttp.ClientTimeout(total=policy.timeout)
    try:
        async with session.request(method, url, data=data, headers=headers, params=params,
                                   timeout=timeout, allow_redirects=False) as resp:
            body = await _read_capped(resp, policy.max_answer_bytes)
            return Reply(resp.status, resp.content_type, body)
    except TimeoutError:
        raise AdapterError(f"{method} {url}: no answer within {policy.timeout} s",
                           transient=True) from None
    except aiohttp.ClientConnectionError as exc:
        raise AdapterError(f"{method} {url}: {type(exc).__name__}: {exc}",
                           transient=True) from None
    except aiohttp.ClientPayloadError as exc:
        raise AdapterError(f"{method} {url}: the answer broke off: {exc}",
                           transient=True) from None
    except aiohttp.ClientError as exc:
        # Anything else aiohttp refuses (a malformed status line or header, say): the system
        # or a proxy before it misbehaves, as with a 5xx. Left unconverted, it would escape the
        # gateway's retry and parking, which only know `AdapterError`.
        raise AdapterError(f"{method} {url}: unreadable answer: {type(exc).__name__}",
                           transient=True) from None


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    declared = resp.content_length
    if declared is not None and declared > cap:
        raise AdapterError(f"the local answer is {declared} bytes, over the {cap}-byte limit",
                           transient=False)
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > cap:
            raise AdapterError(f"the local answer is over the {cap}-byte limit",
                               transient=False)
        chunks.append(chunk)
    return b"".join(chunks)


def refuse_status(reply: Reply, what: str) -> None:
    """Raise for an unsuccessful status: 5xx (and 408, 429) transient, other 4xx for good."""
    if 200 <= reply.status < 300:
        return
    detail = reply.body[:200].decode("utf-8", "replace")
    transient = reply.status >= 500 or reply.status in (408, 429)
    raise AdapterError(f"{what}: the local system answered {reply.status}: {detail}",
                       transient=transient)

