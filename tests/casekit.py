"""A federation of real gateways set up for cases: catalog items in the registry, clerks, a
portal client, and a small JSON client for the portal and window API."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from fedkit import CHANGDE, DOUMEN, TAOYUAN, DbFactory, Federation, Node, build_federation
from stdnum.cn import ric

from gateway import appkeys as K
from gateway.db.auth_repo import AuthRepo
from registry.catalog import load_catalog
from registry.document import Item
from trust.credentials import hash_password

PORTAL_ID = "home-portal"
PORTAL_SECRET = "portal-secret-for-tests-0123456789"
PASSWORD = "correct horse battery staple"
CATALOG = load_catalog()

ONLINE_ITEM = "KSTB-SB-0001"  # 企业职工基本养老保险关系转移接续: online, proxy, joint; L4
HOUSEHOLD_ITEM = "KSTB-HJ-0001"  # 户口迁移: household-bound, proxy or joint; L4


def make_id(division: str, born: str = "19900307", sequence: str = "123") -> str:
    """A valid resident ID number (GB 11643) for `division`."""
    body = division + born + sequence
    return body + ric.calc_check_digit(body + "0")


def applicant(division: str = "430725", name: str = "张三") -> dict[str, Any]:
    return {"kind": "person", "name": name, "id_number": make_id(division),
            "phone": "13800138000"}


def materials(item_code: str, *, skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    item = CATALOG.get(item_code)
    assert item is not None
    return [{"code": m.code, "name": m.name} for m in item.materials if m.code not in skip]


def every_item(_member_id: str) -> tuple[Item, ...]:
    return tuple(item.registry_item() for item in CATALOG)


async def case_federation(root: Path, db_factory: DbFactory,
                          members: tuple[str, ...] = (DOUMEN, TAOYUAN, CHANGDE), *,
                          extra: Mapping[str, Mapping[str, Any]] | None = None,
                          adapters: Mapping[str, tuple[dict[str, Any],
                                                       Mapping[str, Any]]] | None = None
                          ) -> Federation:
    secret_file = root / "portal.secret"
    secret_file.write_text(PORTAL_SECRET, encoding="utf-8")
    fed = await build_federation(
        root, db_factory, members, counting=False, items=every_item, adapters=adapters,
        extra={"api.clients." + PORTAL_ID: {"secret_file": str(secret_file)},
               "cases": {"scan_interval": 3600}, **(extra or {})})
    for node in fed.nodes:
        await add_clerks(node)
    return fed


async def add_clerks(node: Node) -> None:
    repo = AuthRepo(node.engine)
    # A cheaper scrypt cost than production keeps the suite fast; verification reads the
    # cost from the stored hash, so the login path is the real one.
    hashed = hash_password(PASSWORD, n=2**14)
    for username, role in (("window", "window"), ("officer", "handler"), ("admin", "admin"),
                           ("auditor", "auditor")):
        assert await repo.add_clerk(username=username, name=f"{role} clerk", role=role,
                                    password_hash=hashed, now=node.clock())


async def add_clerk_with_role(node: Node, username: str, role: str) -> None:
    """One more clerk, straight into the repository (the CLI's checks are tested apart)."""
    assert await AuthRepo(node.engine).add_clerk(
        username=username, name=username, role=role,
        password_hash=hash_password(PASSWORD, n=2**14), now=node.clock())


class ApiError(AssertionError):
    pass


@dataclass
class Api:
    """Calls one gateway's /api/v1 like a portal, a clerk or an applicant would."""

    session: aiohttp.ClientSession
    node: Node
    token: str | None = None
    basic: tuple[str, str] | None = None

    def as_portal(self) -> Api:
        return Api(self.session, self.node, basic=(PORTAL_ID, PORTAL_SECRET))

    async def as_clerk(self, username: str) -> Api:
        doc = await self.call("POST", "/api/v1/login",
                              {"username": username, "password": PASSWORD})
        return Api(self.session, self.node, token=doc["access_token"])

    async def raw(self, method: str, path: str, body: Any = None, *,
                  headers: Mapping[str, str] | None = None) -> tuple[int, str, Any]:
        sent = dict(headers or {})
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        elif self.basic:
            pair = f"{self.basic[0]}:{self.basic[1]}".encode()
            sent["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        async with self.session.request(method, self.node.url + path, data=data,
                                        headers=sent) as resp:
            text = await resp.text()
            doc = json.loads(text) if text and resp.content_type.endswith("json") else text
            return resp.status, resp.content_type, doc

    async def call(self, method: str, path: str, body: Any = None, *, expect: int = 200,
                   headers: Mapping[str, str] | None = None) -> Any:
        status, _, doc = await self.raw(method, path, body, headers=headers)
        if status != expect:
            raise ApiError(f"{method} {path}: {status} (expected {expect}): {doc}")
        return doc


async def history(node: Node, case_id: str) -> list[tuple[Any, ...]]:
    """The transitions of a case on one gateway, as both sides must record them."""
    assert node.app is not None
    case_ = await node.app[K.CASES].get(case_id)
    return [(e.event, e.from_state, e.to_state, e.actor, e.at,
             json.dumps(e.detail, sort_keys=True, ensure_ascii=False))
            for e in case_.events if e.is_transition]


async def state(node: Node, case_id: str) -> str | None:
    assert node.app is not None
    async with node.engine.connect() as conn:
        case_ = await node.app[K.CASES].repo.get(conn, case_id)
    return None if case_ is None or case_.state is None else case_.state.value


async def reach(node: Node, case_id: str, wanted: str, timeout: float = 15) -> None:
    """Wait until the case's copy on `node` is in state `wanted`."""
    from fedkit import wait_for

    async def there() -> bool:
        return await state(node, case_id) == wanted

    await wait_for(there, timeout=timeout, what=f"case at {node.member_id} to be {wanted}")
