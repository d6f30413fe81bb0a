"""Signing an applicant in with the region's OpenID Connect provider (home side).

The home portal runs the OIDC flow with its provider and gives the gateway the ID token; the
gateway checks it against the provider's published keys and opens the applicant's home session,
from which the applicant can then be handed on to partners (`gateway/sso/home.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp

from gateway.config import OidcSection
from gateway.db.auth_repo import Session
from gateway.sso.home import HomeSignOn, LoginFailed
from registry.validation import InvalidInput, check_resident_id
from trust import oidc, sso
from trust.clock import Clock
from trust.errors import TongbanError

log = logging.getLogger(__name__)
REFETCH_AFTER = 300.0  # seconds; an unknown kid refetches at most this often


class OidcLogin:
    def __init__(self, *, settings: OidcSection, session: aiohttp.ClientSession,
                 home: HomeSignOn, clock: Clock) -> None:
        self._settings = settings
        self._http = session
        self._home = home
        self._clock = clock
        self._jwks: dict[str, Any] = {"keys": []}
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self._settings.issuer and self._settings.jwks_url)

    async def _keys(self, kid: str | None) -> dict[str, Any]:
        known = any(k.get("kid") == kid for k in self._jwks.get("keys", []))
        if known and kid is not None:
            return self._jwks
        async with self._lock:
            if time.monotonic() - self._fetched > REFETCH_AFTER or not self._jwks["keys"]:
                try:
                    async with self._http.get(self._settings.jwks_url,
                                              timeout=aiohttp.ClientTimeout(total=10)) as resp:
                        if resp.status == 200:
                            doc = await resp.json(content_type=None)
                            if isinstance(doc, dict) and isinstance(doc.get("keys"), list):
                                self._jwks = doc
                                self._fetched = time.monotonic()
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    log.warning("fetching the identity provider's keys failed: %s",
                                type(exc).__name__)
        return self._jwks

    async def login(self, id_token: str, client_id: str | None) -> tuple[str, Session]:
        if not self.enabled:
            raise LoginFailed("this gateway has no OpenID Connect provider configured")
        try:
            jwks = await self._keys(oidc.key_id(id_token))
            claims = oidc.verify_id_token(id_token, jwks, issuer=self._settings.issuer,
                                          audience=self._settings.audience, now=self._clock())
        except TongbanError as exc:
            raise LoginFailed(f"ID token refused: {exc.detail}") from None
        s = self._settings
        loa = claims.get(s.loa_claim)
        if loa not in sso.LOA_LEVELS:
            raise LoginFailed(f"the ID token's {s.loa_claim} is not an assurance level")
        try:
            import datetime
            number = check_resident_id(claims.get(s.id_number_claim), s.id_number_claim,
                                       today=datetime.date.today()).number
        except InvalidInput as exc:
            raise LoginFailed(f"the ID token's {exc.detail}") from None
        name = claims.get(s.name_claim)
        return await self._home.open_session(id_number=number, name=str(name or ""),
                                             loa=str(loa), client_id=client_id)
