"""What the reference system's parts share: its settings, store, faults and pusher, kept on the
aiohttp application, and the one way handlers touch the store (off the event loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from aiohttp import web

from adapters.reference.hooks import Pusher
from adapters.reference.store import Store

P = ParamSpec("P")
T = TypeVar("T")

# Ways to make the system misbehave on purpose, for the contract kit and demos (--admin only).
FAULT_KINDS = ("unavailable", "slow", "lost_answer", "garbage", "oversized", "xml_bomb",
               "external_entity", "missing_field", "unknown_state")


@dataclass(frozen=True)
class Settings:
    title: str = "本地政务服务办件系统（参考实现）"
    api_key: str | None = None  # required as X-Api-Key on the REST and SOAP faces when set
    webhook_url: str | None = None
    webhook_secret: str | None = None
    admin: bool = False  # fault injection and inspection under /admin (tests, demos)


@dataclass
class Faults:
    active: set[str] = field(default_factory=set)
    slow_seconds: float = 2.0

    def on(self, kind: str) -> bool:
        return kind in self.active


STORE = web.AppKey("store", Store)
SETTINGS = web.AppKey("settings", Settings)
FAULTS = web.AppKey("faults", Faults)
PUSHER = web.AppKey("pusher", Pusher)


async def write(request: web.Request, fn: Callable[P, T], *args: P.args,
                **kwargs: P.kwargs) -> T:
    """Run a store change in a worker thread, then let the webhook pusher know."""
    result = await asyncio.to_thread(fn, *args, **kwargs)
    pusher = request.app.get(PUSHER)
    if pusher is not None:
        pusher.wake()
    return result


async def read(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)
