"""`registry.updated` (PROTOCOL.md §3): the operator's nudge to fetch the new version now."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from gateway.federation.messages import BaseHandler, InboundMessage, InvalidBody
from gateway.registry_client import RegistryHolder
from registry.document import Role


class RegistryUpdatedHandler(BaseHandler):
    sender_roles = frozenset({Role.OPERATOR})

    def __init__(self, holder: RegistryHolder) -> None:
        self._holder = holder
        self._tasks: set[asyncio.Task[bool]] = set()

    def validate(self, body: Mapping[str, Any]) -> None:
        version = body.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise InvalidBody("body.version must be a positive integer")

    async def after_commit(self, message: InboundMessage) -> None:
        held = self._holder.current
        if held is not None and held.version >= int(message.body["version"]):
            return
        # Fetch in the background: the operator is waiting for our receipt, and the fetch goes
        # back to the operator.
        task = asyncio.create_task(self._holder.refresh())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
