"""The reference local case system, run in-process on loopback, and the contract kit's driver
for it: an officer's steps through its admin face, its fault switches, its signed pushes.

The driver knows the reference system's own vocabulary (clerk steps, codes) directly, not
through a mapping file, so a wrong mapping shows as a failed check instead of agreeing with
itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from adapters.reference.app import build_app
from adapters.reference.context import Settings
from adapters.reference.hooks import SIGNATURE_HEADER, TIMESTAMP_HEADER
from adapters.reference.store import Store
from adapters.signing import sign
from adapters.testing.contract import MALFORMED, LocalDriver, LocalView

PROCEDURES = {"hearing": "TZ", "inspection": "XCHC", "expert_review": "ZJPS", "other": "QT"}
OUTCOMES = {"approved": "PZ", "denied": "BPZ"}


class ReferenceSystem:
    """One reference system with its own SQLite file, serving on 127.0.0.1 (a free port)."""

    def __init__(self, db: Path, *, api_key: str | None = None, prefix: str = "BJ",
                 webhook_url: str | None = None, webhook_secret: str | None = None,
                 port: int = 0) -> None:
        self.store = Store(db, prefix=prefix)
        self.settings = Settings(api_key=api_key, webhook_url=webhook_url,
                                 webhook_secret=webhook_secret, admin=True)
        self.app = build_app(self.store, self.settings)
        self._runner = web.AppRunner(self.app, access_log=None)
        self._port = port
        self.url = ""

    async def start(self) -> ReferenceSystem:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def close(self) -> None:
        await self._runner.cleanup()
        self.store.close()


class ReferenceDriver(LocalDriver):
    """Drives a reference system over HTTP (its admin face must be on)."""

    faults = MALFORMED

    def __init__(self, url: str, session: aiohttp.ClientSession, *,
                 api_key: str | None = None, webhook_secret: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.api_key = api_key
        self.webhook_secret = webhook_secret

    async def _json(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(method, self.url + path, json=body) as resp:
            doc = await resp.json()
            if resp.status >= 300:
                raise AssertionError(f"reference system: {method} {path}: {resp.status} {doc}")
            return doc

    async def perform(self, ref: str, action: str, body: Mapping[str, Any]) -> None:
        step, form = _clerk_step(action, body)
        await self._json("POST", f"/admin/act/{ref}/{step}", form)

    async def act(self, ref: str, step: str, form: Mapping[str, str]) -> dict[str, Any]:
        """A clerk step in the reference system's own terms."""
        doc: dict[str, Any] = await self._json("POST", f"/admin/act/{ref}/{step}", dict(form))
        return doc

    async def inspect(self, case_id: str) -> list[LocalView]:
        doc = await self._json("GET", f"/admin/cases?wbbh={case_id}")
        # The coded fields as the case's face received them: the SOAP face turns its numbers
        # into the system's letters, and a SOAP mapping is checked against the numbers it sent.
        return [LocalView(ref=c["bjbh"], item_code=c["sxbm"], mode=c["jsdm"]["bllx"],
                          applicant_kind=c["jsdm"]["sqr.lx"],
                          delivery_method=c["jsdm"]["sdfs.fs"],
                          material_codes=tuple(m["bm"] for m in c["cl"]),
                          withdrawn=c["zt"] == "YCH") for c in doc["cases"]]

    async def cases(self, case_id: str) -> list[dict[str, Any]]:
        doc = await self._json("GET", f"/admin/cases?wbbh={case_id}")
        return list(doc["cases"])

    async def fail(self, kind: str | None) -> None:
        await self._json("PUT", "/admin/faults", {"active": [kind] if kind else []})

    async def push(self, *, tamper: bool = False, stale: bool = False
                   ) -> tuple[dict[str, str], bytes] | None:
        if self.webhook_secret is None:
            return None
        headers = {"X-Api-Key": self.api_key} if self.api_key else {}
        async with self.session.get(self.url + "/api/shijian?yb=0", headers=headers) as resp:
            body = await resp.read()
        when = time.time() - (3600 if stale else 0)
        timestamp, signature = sign(self.webhook_secret, body, when)
        if tamper:
            doc = json.loads(body)
            for event in doc["shijian"]:
                event["wbbh"] = "TB-SOMEONE-ELSES"
            body = json.dumps(doc, ensure_ascii=False).encode()
        return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature}, body


def _clerk_step(action: str, body: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    cert = body.get("certificate") or {}
    steps: dict[str, tuple[str, dict[str, str]]] = {
        "accept": ("shouli", {"slhzh": body.get("receipt_no", "")}),
        "reject": ("bushouli", {"yy": body.get("reason", "")}),
        "supplement-request": ("buzheng", {"yy": body.get("reason", ""),
                                           "bzcl": "\n".join(body.get("materials", []))}),
        "review": ("shencha", {}),
        "suspend": ("zanting", {"yy": body.get("reason", ""),
                                "tbcx": PROCEDURES.get(body.get("procedure", ""), "")}),
        "resume": ("huifu", {}),
        "conclude": ("banjie", {"bjjg": OUTCOMES.get(body.get("outcome", ""), ""),
                                "jgsm": body.get("result", ""), "zzbh": cert.get("id", ""),
                                "zzmc": cert.get("name", "")}),
        "deliver": ("songda", {"kddh": body.get("tracking", "")}),
    }
    return steps[action]
