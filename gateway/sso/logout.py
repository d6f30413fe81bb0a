"""`sso.logout` (PROTOCOL.md §6): the home member ends every session derived from a `sid`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.db.auth_repo import AuthRepo
from gateway.federation.messages import InboundMessage, InvalidBody
from registry.document import Role

log = logging.getLogger(__name__)


class SsoLogoutHandler:
    case_bound = False
    # Only a member that may issue sign-on tokens can have sessions to end.
    sender_roles: ClassVar[frozenset[Role]] = frozenset({Role.SSO_ISSUER})

    def validate(self, body: Mapping[str, Any]) -> None:
        sid = body.get("sid")
        if not isinstance(sid, str) or not 0 < len(sid) <= 128:
            raise InvalidBody("body.sid (the session id of the sign-on) is required")

    async def apply(self, conn: AsyncConnection, message: InboundMessage) -> None:
        # Session ids are the issuer's: one member can only end its own applicants' sessions.
        ended = await AuthRepo.end_sid_in(conn, f"{message.iss}:{message.body['sid']}")
        log.info("sso.logout from %s ended %d session(s)", message.iss, ended)

    async def after_commit(self, message: InboundMessage) -> None:
        return None
