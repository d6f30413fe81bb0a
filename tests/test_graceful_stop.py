"""SIGTERM on a real `tongban serve` process (README, Operator: Shutdown): it stops accepting
connections, lets requests in flight finish, lets deliveries on the wire be answered, and hands
its claims on undelivered messages back to the other processes of its member."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from fedkit import DbFactory, wait_for
from prockit import KUNMING, D, ProcFederation, T, file_case, start_federation

from gateway.blobs.store import BlobStore
from gateway.db.repos import OutboxState
from gateway.localfed import free_port, stop_processes
from trust import request as reqtoken
from trust.keys import sha256_b64url


async def refuses_connections(url: str) -> bool:
    """True once nothing listens on the gateway's port any more (its stop has begun)."""
    parts = urlsplit(url)
    try:
        _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    except OSError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


async def exited(fed: ProcFederation, member: str) -> int:
    async def gone() -> bool:
        return fed.procs[member].poll() is not None

    await wait_for(gone, timeout=15, what=f"{member}'s process to exit")
    code = fed.procs[member].returncode
    assert code is not None
    return code


def log_text(fed: ProcFederation, member: str) -> str:
    return fed.log(member).read_text(encoding="utf-8", errors="replace")


async def test_sigterm_lets_an_upload_in_flight_finish(tmp_path: Path,
                                                       db_factory: DbFactory) -> None:
    """Doumen uploads a material to Taoyuan, body streamed slowly; Taoyuan gets SIGTERM
    halfway through the body. It refuses new connections, takes the rest of the body, answers
    201 and stores the blob before it exits."""
    fed = await start_federation(tmp_path, db_factory, start=[KUNMING.member_id, T])
    try:
        async with aiohttp.ClientSession() as http:
            await fed.ready(http, KUNMING.member_id, T)
            data = os.urandom(300 * 1024)
            sha = sha256_b64url(data)
            url = f"{fed.url(T)}/federation/v1/blobs/{sha}"
            token = reqtoken.sign_request(fed.signing_key(D), iss=D, aud=T, htm="PUT", htu=url,
                                          now=time.time(), ttl=300)
            rest = asyncio.Event()

            async def body() -> AsyncIterator[bytes]:
                yield data[:64 * 1024]
                await rest.wait()  # the sender's slow link: the rest comes after SIGTERM
                yield data[64 * 1024:]

            async def upload() -> tuple[int, dict[str, object]]:
                async with http.put(url, data=body(), headers={
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/octet-stream",
                        "Content-Length": str(len(data))}) as resp:
                    return resp.status, await resp.json()

            sending = asyncio.create_task(upload())
            blob_dir = fed.configs[T].materials.dir

            async def receiving() -> bool:  # authorized, and the body is being written
                return any(p.is_file() for p in blob_dir.rglob("*"))

            await wait_for(receiving, what="Taoyuan to start storing the upload")
            fed.terminate(T)
            await wait_for(lambda: refuses_connections(fed.url(T)),
                           what="Taoyuan to stop accepting connections after SIGTERM")
            assert not sending.done()
            rest.set()
            status, doc = await asyncio.wait_for(sending, timeout=15)
            assert (status, doc) == (201, {"sha256": sha, "size": len(data)})
            assert await exited(fed, T) in (0, 1)  # aiohttp's GracefulExit, not a signal
        store = BlobStore(blob_dir)
        store.open()
        assert store.size(sha) == len(data)
        assert store.path(sha).read_bytes() == data
        assert "Traceback" not in log_text(fed, T)
    finally:
        stop_processes(list(fed.procs.values()))


class HoldingProxy:
    """Stands between Doumen and Taoyuan (Doumen's `peers` endpoint override): passes
    everything on, but holds the first message until told to let it through, so a delivery is
    on the wire when Doumen gets SIGTERM."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.target = ""  # Taoyuan's URL, set before it starts
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _forward(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.path == "/federation/v1/messages" and not self.held.is_set():
            self.held.set()
            await self.release.wait()
        assert self._session is not None
        async with self._session.request(
                request.method, self.target + request.path_qs, data=body,
                headers={k: v for k, v in request.headers.items()
                         if k.lower() in ("content-type", "authorization")}) as resp:
            return web.Response(status=resp.status, body=await resp.read(),
                                content_type=resp.content_type)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def close(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()


async def test_sigterm_lets_a_delivery_in_flight_finish_and_releases_claims(
        tmp_path: Path, db_factory: DbFactory) -> None:
    """Doumen delivers one message at a time; the first is on the wire (its answer held back)
    and two more are claimed by Doumen's process when it gets SIGTERM. The first is answered
    after the stop began and its receipt is stored; the other two are released."""
    proxy = HoldingProxy(free_port())
    fed = await start_federation(tmp_path, db_factory, start=[], settings={
        D: {f"peers.{T}": {"endpoint": proxy.url},
            "delivery": {"concurrency": 1, "claim_lease": 60}}})
    try:
        proxy.target = fed.url(T)
        await proxy.start()
        for member in (KUNMING.member_id, D, T):
            fed.start(member)
        async with aiohttp.ClientSession() as http:
            await fed.ready(http, KUNMING.member_id, D, T)
            cases = [await file_case(http, fed, i) for i in range(3)]

        async def all_claimed() -> bool:
            rows = await fed.outbox(D)
            return len(rows) == 3 and all(r.claimed_by for r in rows)

        async def held() -> bool:
            return proxy.held.is_set()

        await wait_for(held, what="Doumen's first message to reach the proxy")
        await wait_for(all_claimed, what="Doumen's process to claim its three messages")
        owner = {r.claimed_by for r in await fed.outbox(D)}
        assert len(owner) == 1
        fed.terminate(D)
        await wait_for(_logged(fed, D, "stopping delivery: waiting up to"),
                       what="Doumen to stop delivery with a message in flight")
        proxy.release.set()
        assert await exited(fed, D) in (0, 1)
        rows = {r.case_id: r for r in await fed.outbox(D)}
        first, *others = (rows[c] for c in cases)
        # Answered after SIGTERM, receipt verified and stored by the stopping process.
        assert first.state == OutboxState.DELIVERED and first.receipt_status == "accepted"
        assert first.claimed_by in owner and first.receipt is not None
        # Never started: handed back at once, not held until the lease (60 s) runs out.
        assert [(r.state, r.claimed_by, r.attempts) for r in others] == \
            [(OutboxState.PENDING, None, 0)] * 2
        assert await fed.case(T, cases[0]) is not None
        text = log_text(fed, D)
        assert "released 2 undelivered message(s)" in text
        assert "still in flight" not in text and "Traceback" not in text
    finally:
        stop_processes(list(fed.procs.values()))
        await proxy.close()


def _logged(fed: ProcFederation, member: str, needle: str) -> Callable[[], Awaitable[bool]]:
    async def found() -> bool:
        return needle in log_text(fed, member)

    return found
