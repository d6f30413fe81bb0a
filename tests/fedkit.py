"""A federation of real gateways on loopback ports, for integration tests.

Each gateway is the production app from `create_app`, served by aiohttp on 127.0.0.1 with its own
database; the alliance is set up with the same domain calls the CLI makes. Gateways can be
stopped and started again on the same port and database to simulate outages and restarts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import appkeys as K
from gateway.alliance import Alliance, Published
from gateway.app import create_app
from gateway.config import GatewayConfig, load_config
from gateway.db.engine import create_schema, make_engine
from gateway.db.repos import InboxEntry, InboxRepo, OutboxEntry, OutboxRepo, OutboxState
from gateway.federation.messages import HandlerRegistry, InboundMessage, default_handlers
from gateway.federation.outbox import enqueue
from gateway.keystore import KeyStore
from gateway.localfed import free_port as localfed_free_port
from registry.document import Item, Member, Role, Status
from trust import jws
from trust.keys import SigningKey

OPERATOR_ID = "CN-530100"
DOUMEN = "CN-440403"
TAOYUAN = "CN-430725"
CHANGDE = "CN-430700"

DbFactory = Callable[[str], Awaitable[str]]


class OffsetClock:
    """Real time plus an adjustable offset: time can jump forward while backoffs still run."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def free_port() -> int:
    """A port nobody holds right now, below the kernel's ephemeral range and in this xdist
    worker's slice (`gateway.localfed.free_port`), so neither an outgoing connection nor
    another worker takes it before our server binds it; `reserve_port` also holds it."""
    return localfed_free_port()


def reserve_port() -> socket.socket:
    """A bound socket on a free loopback port, held until a server listens on it. The port
    comes from `free_port`, so even a test that lets go of it before its server starts (a
    server that needs a URL known only later) keeps it out of reach of outgoing connections."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", free_port()))
    return sock


async def wait_for(predicate: Callable[[], Awaitable[bool]], *, timeout: float = 15.0,
                   what: str = "condition") -> None:
    """Poll `predicate` until true; fail with `what` at the deadline. Never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class CountingHandler:
    """A case handler that records what it applied, to prove nothing is processed twice."""

    case_bound = True
    sender_roles: frozenset[Role] = frozenset()

    def __init__(self) -> None:
        self.applied: list[tuple[str, str | None, int | None]] = []

    def validate(self, body: Mapping[str, Any]) -> None:
        return None

    async def apply(self, conn: Any, message: InboundMessage) -> None:
        self.applied.append((message.iss, message.case_id, message.seq))

    async def after_commit(self, message: InboundMessage) -> None:
        return None


@dataclass
class Node:
    config: GatewayConfig
    clock: OffsetClock
    handlers: HandlerRegistry
    counter: CountingHandler
    runner: web.AppRunner | None = None
    app: web.Application | None = None
    adapter_classes: dict[str, Any] | None = None
    reserved: socket.socket | None = None

    @property
    def member_id(self) -> str:
        return self.config.member_id

    @property
    def url(self) -> str:
        return self.config.server.endpoint()

    @property
    def engine(self) -> AsyncEngine:
        assert self.app is not None, "gateway not running"
        return self.app[K.ENGINE]

    async def start(self) -> None:
        # What the admin does once with `tongban db upgrade`: the gateway itself only checks.
        engine = make_engine(self.config.database.url)
        try:
            await create_schema(engine)
        finally:
            await engine.dispose()
        self.app = create_app(self.config, clock=self.clock, handlers=self.handlers,
                              adapter_classes=self.adapter_classes)
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=5)
        await self.runner.setup()
        site: web.BaseSite
        if self.reserved is not None:  # first start: the port was held for us
            site = web.SockSite(self.runner, self.reserved)
            self.reserved = None
        else:  # a restart on the same port
            site = web.TCPSite(self.runner, "127.0.0.1", self.config.server.port,
                               reuse_address=True)
        await site.start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        self.runner = None
        self.app = None

    @property
    def running(self) -> bool:
        return self.runner is not None

    def keys(self) -> KeyStore:
        store = KeyStore(self.config.keys.dir)
        store.load()
        return store

    def signing_key(self) -> SigningKey:
        return self.keys().keys[-1]

    async def send(self, to: str, type_: str = "case.submit", *, case_id: str | None = None,
                   body: dict[str, Any] | None = None,
                   att: list[dict[str, Any]] | None = None) -> OutboxEntry:
        """Queue a message the way domain code does, in a transaction, and wake delivery."""
        assert self.app is not None
        repo = self.app[K.OUTBOX_REPO]
        async with self.engine.begin() as conn:
            entry = await enqueue(conn, repo, dest=to, type_=type_, body=body or {},
                                  case_id=case_id, now=self.clock(), att=att)
        self.app[K.DISPATCHER].notify(to)
        return entry

    async def outbox(self, state: str | None = None) -> list[OutboxEntry]:
        async with self._engine() as engine:  # all of them: the repo's default stops at 1,000
            return await OutboxRepo(engine).list_entries(state=state, limit=1_000_000)

    async def inbox(self, *, cases_only: bool = True) -> list[InboxEntry]:
        """Stored inbound messages; by default without the operator's registry notices."""
        async with self._engine() as engine:
            entries = await InboxRepo().list_all(engine)
        return [e for e in entries if not cases_only or e.type.startswith("case.")]

    @contextlib.asynccontextmanager
    async def _engine(self) -> AsyncIterator[AsyncEngine]:
        """The running gateway's engine, or a short-lived one while the gateway is down."""
        if self.app is not None:
            yield self.app[K.ENGINE]
            return
        engine = make_engine(self.config.database.url)
        try:
            await create_schema(engine)
            yield engine
        finally:
            await engine.dispose()

    async def wait_delivered(self, count: int, *, timeout: float = 20.0) -> list[OutboxEntry]:
        async def done() -> bool:
            return len(await self.outbox(OutboxState.DELIVERED)) >= count

        await wait_for(done, timeout=timeout, what=f"{count} deliveries from {self.member_id}")
        return await self.outbox(OutboxState.DELIVERED)

    async def registry_version(self) -> int | None:
        assert self.app is not None
        snapshot = self.app[K.HOLDER].current
        return None if snapshot is None else snapshot.version

    async def wait_registry(self, version: int, timeout: float = 10.0) -> None:
        async def reached() -> bool:
            current = await self.registry_version()
            return current is not None and current >= version

        await wait_for(reached, timeout=timeout,
                       what=f"{self.member_id} to hold registry version {version}")


@dataclass
class Federation:
    root: Path
    clock: OffsetClock
    operator: Node
    members: dict[str, Node] = field(default_factory=dict)
    admin_engine: AsyncEngine | None = None

    def __getitem__(self, member_id: str) -> Node:
        if member_id == self.operator.member_id:
            return self.operator
        return self.members[member_id]

    @property
    def nodes(self) -> list[Node]:
        return [self.operator, *self.members.values()]

    def alliance(self) -> Alliance:
        """The alliance admin's tool, on its own connection (as the CLI would be)."""
        if self.admin_engine is None:
            self.admin_engine = make_engine(self.operator.config.database.url)
        store = KeyStore(self.operator.config.keys.dir)
        if store.exists():
            store.load()
        return Alliance(config=self.operator.config, engine=self.admin_engine, keys=store,
                        clock=self.clock)

    async def publish(self, action: Callable[[Alliance], Awaitable[Published]]) -> int:
        """Run an admin action, wake the operator's delivery, and return the new version."""
        published = await action(self.alliance())
        if self.operator.app is not None:
            self.operator.app[K.DISPATCHER].notify()
        return published.version

    async def close(self) -> None:
        for node in self.nodes:
            await node.stop()
            if node.reserved is not None:  # never started
                node.reserved.close()
        if self.admin_engine is not None:
            await self.admin_engine.dispose()


def node_config(root: Path, member_id: str, port: int, db_url: str, operator_port: int, *,
                operator: bool, extra: Mapping[str, Mapping[str, Any]] | None = None
                ) -> GatewayConfig:
    folder = root / member_id
    folder.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {
        "member": {"id": member_id, "name": f"city {member_id}"},
        "server": {"host": "127.0.0.1", "port": port},
        "database": {"url": db_url},
        "keys": {"dir": "keys"},
        "trust": {"anchor": "anchor.json"},
        "registry": {"url": f"http://127.0.0.1:{operator_port}/registry/v1",
                     "poll_interval": 60, "refresh_min_interval": 0},
        "delivery": {"poll_interval": 0.05, "initial_backoff": 0.05, "max_backoff": 0.3,
                     "request_timeout": 5},
    }
    if operator:
        data["operator"] = {"alliance": "yunshangban"}
    for section, values in (extra or {}).items():
        data.setdefault(section, {}).update(values)
    path = folder / "tongban.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    return load_config(path)


def to_toml(data: Mapping[str, Mapping[str, Any]]) -> str:
    """Enough TOML for gateway configs (sections of scalars, tables inline, e.g.
    `adapter.settings`); tests use real config files."""
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        inner = ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }"
    return json.dumps(str(value), ensure_ascii=False)


async def build_federation(root: Path, db_factory: DbFactory,
                           member_ids: tuple[str, ...] = (DOUMEN, TAOYUAN), *,
                           start: bool = True,
                           extra: Mapping[str, Mapping[str, Any]] | None = None,
                           counting: bool = True,
                           items: Callable[[str], tuple[Item, ...]] | None = None,
                           adapters: Mapping[str, tuple[dict[str, Any],
                                                        Mapping[str, Any]]] | None = None
                           ) -> Federation:
    """`counting`: case.submit/accept/status go to a CountingHandler instead of the case
    machine (for protocol tests that send arbitrary bodies). `items(member_id)`: what each
    member offers in the registry. `adapters[member_id]`: (adapter classes by name, the
    member's `[adapter]` config) for a member that reaches a local case system."""
    clock = OffsetClock()
    operator_sock = reserve_port()
    operator_port = int(operator_sock.getsockname()[1])

    def make_node(member_id: str, sock: socket.socket, url: str, operator: bool) -> Node:
        port = int(sock.getsockname()[1])
        handlers = default_handlers()
        counter = CountingHandler()
        if counting:
            for type_ in ("case.submit", "case.accept", "case.status"):
                handlers.register(type_, counter)
        classes: dict[str, Any] = {}
        member_extra = dict(extra or {})
        if adapters is not None and member_id in adapters:
            classes, adapter_config = adapters[member_id]
            member_extra["adapter"] = adapter_config
        cfg = node_config(root, member_id, port, url, operator_port, operator=operator,
                          extra=member_extra)
        return Node(config=cfg, clock=clock, handlers=handlers, counter=counter,
                    adapter_classes=classes, reserved=sock)

    op = make_node(OPERATOR_ID, operator_sock, await db_factory("operator"), True)
    fed = Federation(root=root, clock=clock, operator=op)
    engine = make_engine(op.config.database.url)
    await create_schema(engine)
    fed.admin_engine = engine
    alliance = fed.alliance()
    await alliance.init(name="昆明市")
    anchor = op.config.trust.anchor.read_bytes()
    for member_id in member_ids:
        node = make_node(member_id, reserve_port(), await db_factory(member_id.replace("-", "")),
                         False)
        key = KeyStore(node.config.keys.dir).create()
        node.config.trust.anchor.write_bytes(anchor)
        await alliance.add_member(Member(
            id=member_id, name=f"city {member_id}", province=member_id[3:5],
            endpoint=node.url, status=Status.ACTIVE, keys=(key.public_jwk(),),
            roles=(Role.SSO_ISSUER, Role.HANDLER, Role.RECEIVER),
            items=items(member_id) if items is not None else ()))
        fed.members[member_id] = node
    if start:
        for node in fed.nodes:
            await node.start()
    return fed


def new_case(member_id: str) -> str:
    return f"{member_id}:{uuid.uuid4()}"


def message_claims(iss: str, aud: str, *, now: float | None = None, type_: str = "case.submit",
                   case_id: str | None = None, seq: int = 1,
                   body: dict[str, Any] | None = None) -> dict[str, Any]:
    iat = int(time.time() if now is None else now)
    return {"iss": iss, "aud": aud, "jti": str(uuid.uuid4()), "iat": iat, "exp": iat + 300,
            "type": type_, "case": case_id or new_case(iss), "seq": seq, "body": body or {}}


def sign_message(claims: dict[str, Any], key: SigningKey) -> str:
    return jws.sign(claims, key, jws.TokenType.MESSAGE)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """Build a JWS by hand, for attacks PyJWT (rightly) refuses to produce."""
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    return head + "." + b64(signature)


def hmac_token(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    mac = hmac.new(secret, head.encode(), hashlib.sha256).digest()
    return head + "." + b64(mac)


async def post_message(session: aiohttp.ClientSession, node: Node, token: str | bytes, *,
                       content_type: str = "application/jwt") -> tuple[int, str, str]:
    data = token.encode() if isinstance(token, str) else token
    async with session.post(node.url + "/federation/v1/messages", data=data,
                            headers={"Content-Type": content_type}) as resp:
        return resp.status, resp.content_type, await resp.text()


def problem_code(text: str) -> str:
    doc = json.loads(text)
    return str(doc["type"]).removeprefix("urn:tongban:error:")
