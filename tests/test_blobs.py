"""Materials between gateways (PROTOCOL.md §5): upload, size and digest checks, request tokens,
`missing-blob`, and the outbox uploading a message's materials before the message."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fedkit import (
    DOUMEN,
    OPERATOR_ID,
    TAOYUAN,
    DbFactory,
    Federation,
    Node,
    build_federation,
    message_claims,
    new_case,
    post_message,
    problem_code,
    sign_message,
    unsigned_token,
    wait_for,
)
from sqlalchemy import func, select

from gateway import appkeys as K
from gateway.blobs.materials import att_claims, store_blob
from gateway.blobs.store import BlobStore
from gateway.db.repos import OutboxState
from gateway.db.schema import request_jtis
from registry.document import Status
from trust import jws
from trust import request as reqtoken
from trust.errors import TongbanError
from trust.keys import generate, sha256_b64url

MAX_BYTES = 64 * 1024


@pytest.fixture
async def fed(tmp_path: Path, db_factory: DbFactory) -> AsyncIterator[Federation]:
    federation = await build_federation(tmp_path, db_factory,
                                        extra={"materials": {"max_bytes": MAX_BYTES}})
    try:
        yield federation
    finally:
        await federation.close()


def blob_path(node: Node, sha: str) -> str:
    return f"{node.url}/federation/v1/blobs/{sha}"


def store_of(node: Node) -> BlobStore:
    assert node.app is not None
    return node.app[K.BLOBS]


def files_on_disk(node: Node) -> list[Path]:
    """Every file under the node's blob folder, temporary files included."""
    return sorted(p for p in node.config.materials.dir.rglob("*") if p.is_file())


def req_token(fed: Federation, url: str, *, iss: str = DOUMEN, aud: str = TAOYUAN,
              htm: str = "PUT", now: float | None = None, ttl: int = 300) -> str:
    return reqtoken.sign_request(fed[iss].signing_key(), iss=iss, aud=aud, htm=htm, htu=url,
                                 now=fed.clock() if now is None else now, ttl=ttl)


async def put(session: aiohttp.ClientSession, url: str, data: Any, *,
              token: str | None = None, headers: dict[str, str] | None = None
              ) -> tuple[int, str, str]:
    all_headers = {"Content-Type": "application/octet-stream", **(headers or {})}
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    async with session.put(url, data=data, headers=all_headers) as resp:
        return resp.status, resp.content_type, await resp.text()


async def upload(fed: Federation, data: bytes, *, to: str = TAOYUAN) -> tuple[int, str, str]:
    sha = sha256_b64url(data)
    url = blob_path(fed[to], sha)
    async with aiohttp.ClientSession() as session:
        return await put(session, url, data, token=req_token(fed, url, aud=to))


def material(data: bytes, name: str = "户口簿.pdf") -> dict[str, Any]:
    return {"sha256": sha256_b64url(data), "size": len(data), "media_type": "application/pdf",
            "name": name}


def assert_problem(result: tuple[int, str, str], status: int, code: str) -> None:
    got_status, ctype, text = result
    assert (got_status, ctype) == (status, "application/problem+json"), text
    assert problem_code(text) == code
    doc = json.loads(text)
    assert doc["status"] == status and doc["instance"].startswith("urn:uuid:")


# --- upload and delivery ------------------------------------------------------------------

async def test_upload_then_message_with_att_is_delivered(fed: Federation) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    data = os.urandom(20_000)
    sha = sha256_b64url(data)
    status, ctype, text = await upload(fed, data)
    assert (status, ctype) == (201, "application/json"), text
    assert json.loads(text) == {"sha256": sha, "size": len(data)}
    path = store_of(taoyuan).path(sha)
    assert path.read_bytes() == data
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    assert files_on_disk(taoyuan) == [path]
    # The same blob again (fresh token) is 200 and the file is not rewritten.
    before = path.stat()
    status, _, text = await upload(fed, data)
    assert status == 200, text
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    # A message listing it is accepted and stored.
    claims = message_claims(DOUMEN, TAOYUAN, now=fed.clock())
    claims["att"] = [material(data)]
    async with aiohttp.ClientSession() as session:
        status, ctype, text = await post_message(
            session, taoyuan, sign_message(claims, doumen.signing_key()))
    assert (status, ctype) == (200, "application/jwt"), text
    assert jws.parse(text, jws.TokenType.RECEIPT).claims["status"] == "accepted"
    [stored] = await taoyuan.inbox()
    assert stored.jti == claims["jti"]
    assert taoyuan.counter.applied == [(DOUMEN, claims["case"], 1)]


async def test_chunked_upload_without_content_length(fed: Federation) -> None:
    data = os.urandom(MAX_BYTES)  # exactly the limit is allowed

    async def stream() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 5000):
            yield data[i:i + 5000]

    sha = sha256_b64url(data)
    url = blob_path(fed[TAOYUAN], sha)
    async with aiohttp.ClientSession() as session:
        status, _, text = await put(session, url, stream(), token=req_token(fed, url))
    assert status == 201, text
    assert store_of(fed[TAOYUAN]).path(sha).read_bytes() == data


async def test_outbox_uploads_materials_before_the_message(fed: Federation) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    first, second = os.urandom(30_000), b"%PDF-1.7 small scan"
    atts = [await store_blob(store_of(doumen), first, media_type="application/pdf",
                             name="身份证.pdf"),
            await store_blob(store_of(doumen), second, media_type="application/pdf",
                             name="申请表.pdf")]
    assert [a.sha256 for a in atts] == [sha256_b64url(first), sha256_b64url(second)]
    assert not store_of(taoyuan).has(atts[0].sha256)
    entry = await doumen.send(TAOYUAN, "case.submit", case_id=new_case(DOUMEN),
                              body={"item": "X-0001"}, att=att_claims(atts))
    [delivered] = await doumen.wait_delivered(1)
    assert delivered.id == entry.id and delivered.receipt_status == "accepted"
    assert store_of(taoyuan).path(atts[0].sha256).read_bytes() == first
    assert store_of(taoyuan).path(atts[1].sha256).read_bytes() == second
    [stored] = await taoyuan.inbox()
    assert jws.parse(stored.token, jws.TokenType.MESSAGE).claims["att"] == att_claims(atts)
    # A second message listing a blob Taoyuan already took does not upload it again.
    jtis_before = await used_request_tokens(taoyuan)
    await doumen.send(TAOYUAN, "case.status", case_id=stored.case_id, body={},
                      att=att_claims(atts[:1]))
    await doumen.wait_delivered(2)
    assert await used_request_tokens(taoyuan) == jtis_before


async def test_material_larger_than_a_message_goes_through(tmp_path: Path,
                                                            db_factory: DbFactory) -> None:
    """Uploads stream: a blob far above the 1 MiB message limit is neither buffered nor refused."""
    federation = await build_federation(tmp_path, db_factory,
                                        extra={"materials": {"max_bytes": 4 * 1024 * 1024}})
    try:
        doumen, taoyuan = federation[DOUMEN], federation[TAOYUAN]
        data = os.urandom(3 * 1024 * 1024 + 17)
        att = await store_blob(store_of(doumen), data, media_type="application/pdf",
                               name="big.pdf")
        await doumen.send(TAOYUAN, "case.submit", case_id=new_case(DOUMEN), body={},
                          att=att_claims([att]))
        await doumen.wait_delivered(1)
        assert store_of(taoyuan).path(att.sha256).read_bytes() == data
    finally:
        await federation.close()


async def used_request_tokens(node: Node) -> int:
    async with node.engine.connect() as conn:
        return int((await conn.execute(
            select(func.count()).select_from(request_jtis))).scalar_one())


async def test_outbox_parks_message_whose_material_is_not_held_locally(fed: Federation) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    ghost = material(b"never stored at Doumen")
    entry = await doumen.send(TAOYUAN, "case.submit", case_id=new_case(DOUMEN), body={},
                              att=[ghost])

    async def parked() -> bool:
        return len(await doumen.outbox(OutboxState.DEAD)) == 1

    await wait_for(parked, what="the message to park as a dead letter")
    [dead] = await doumen.outbox(OutboxState.DEAD)
    assert dead.id == entry.id
    assert dead.last_error is not None
    assert "not in the local blob store" in dead.last_error and ghost["sha256"] in dead.last_error
    assert await taoyuan.inbox() == []


async def test_outbox_retries_transient_upload_failure(fed: Federation) -> None:
    """Taoyuan is down while Doumen tries: the message waits, then goes out with its blob."""
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    await taoyuan.stop()
    data = os.urandom(5000)
    att = await store_blob(store_of(doumen), data, media_type="image/png", name="photo.png")
    await doumen.send(TAOYUAN, "case.submit", case_id=new_case(DOUMEN), body={},
                      att=att_claims([att]))

    async def attempted() -> bool:
        pending = await doumen.outbox(OutboxState.PENDING)
        return bool(pending) and pending[0].attempts >= 1

    await wait_for(attempted, what="a failed upload attempt")
    [pending] = await doumen.outbox(OutboxState.PENDING)
    assert pending.last_error is not None and "upload of" in pending.last_error
    await taoyuan.start()
    await doumen.wait_delivered(1)
    assert store_of(taoyuan).path(att.sha256).read_bytes() == data
    assert len(await taoyuan.inbox()) == 1


# --- refusals of the upload itself --------------------------------------------------------

async def test_digest_mismatch_keeps_nothing(fed: Federation) -> None:
    taoyuan = fed[TAOYUAN]
    claimed = sha256_b64url(b"the real scan")
    url = blob_path(taoyuan, claimed)
    async with aiohttp.ClientSession() as session:
        result = await put(session, url, b"something else entirely", token=req_token(fed, url))
    assert_problem(result, 400, "digest-mismatch")
    assert files_on_disk(taoyuan) == []
    assert not store_of(taoyuan).has(claimed)


async def test_over_the_limit_by_content_length_is_413(fed: Federation) -> None:
    taoyuan = fed[TAOYUAN]
    data = os.urandom(MAX_BYTES + 1)
    result = await upload(fed, data)
    assert_problem(result, 413, "too-large")
    assert files_on_disk(taoyuan) == []


async def test_over_the_limit_while_streaming_is_413(fed: Federation) -> None:
    taoyuan = fed[TAOYUAN]
    data = os.urandom(MAX_BYTES + 1000)

    async def stream() -> AsyncIterator[bytes]:  # chunked: no Content-Length to judge by
        for i in range(0, len(data), 4096):
            yield data[i:i + 4096]

    url = blob_path(taoyuan, sha256_b64url(data))
    async with aiohttp.ClientSession() as session:
        result = await put(session, url, stream(), token=req_token(fed, url))
    assert_problem(result, 413, "too-large")
    assert files_on_disk(taoyuan) == []


async def test_client_disconnect_leaves_nothing_behind(fed: Federation) -> None:
    taoyuan = fed[TAOYUAN]
    data = os.urandom(40_000)
    sha = sha256_b64url(data)
    url = blob_path(taoyuan, sha)
    token = req_token(fed, url)
    reader, writer = await asyncio.open_connection("127.0.0.1", taoyuan.config.server.port)
    head = (f"PUT /federation/v1/blobs/{sha} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{taoyuan.config.server.port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {len(data)}\r\n\r\n")
    writer.write(head.encode() + data[:10_000])
    await writer.drain()
    tmp = taoyuan.config.materials.dir / ".tmp"

    async def receiving() -> bool:
        return tmp.is_dir() and any(tmp.iterdir())

    await wait_for(receiving, what="the upload to reach a temporary file")
    writer.close()
    await writer.wait_closed()
    reader.feed_eof()

    async def cleaned() -> bool:
        return files_on_disk(taoyuan) == []

    await wait_for(cleaned, what="the partial upload to be removed")
    assert not store_of(taoyuan).has(sha)


async def test_malformed_blob_name_is_400(fed: Federation) -> None:
    url = f"{fed[TAOYUAN].url}/federation/v1/blobs/not-a-digest"
    async with aiohttp.ClientSession() as session:
        result = await put(session, url, b"x", token=req_token(fed, url))
    assert_problem(result, 400, "malformed")


# --- request tokens -----------------------------------------------------------------------

DATA = b"scan of a household register"
SHA = sha256_b64url(DATA)


@dataclass(frozen=True)
class BadToken:
    name: str
    headers: Callable[[Federation, str], dict[str, str]]
    status: int
    code: str


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(fed: Federation, url: str, **overrides: Any) -> dict[str, Any]:
    now = int(fed.clock())
    claims: dict[str, Any] = {"iss": DOUMEN, "aud": TAOYUAN, "iat": now, "exp": now + 300,
                              "jti": "b9d1c1c4-5f5e-4a57-9d55-1b6f3f8f0a01", "htm": "PUT",
                              "htu": url}
    claims.update(overrides)
    return claims


def _signed(fed: Federation, claims: dict[str, Any]) -> dict[str, str]:
    return bearer(jws.sign(claims, fed[DOUMEN].signing_key(), jws.TokenType.REQUEST))


def _without(name: str) -> Callable[[Federation, str], dict[str, str]]:
    def build(fed: Federation, url: str) -> dict[str, str]:
        claims = _claims(fed, url)
        del claims[name]
        return _signed(fed, claims)
    return build


def alg_none(fed: Federation, url: str) -> dict[str, str]:
    header = {"alg": "none", "typ": "tongban-req+jwt", "kid": fed[DOUMEN].signing_key().kid}
    return bearer(unsigned_token(header, _claims(fed, url)))


def foreign_key_under_doumen_kid(fed: Federation, url: str) -> dict[str, str]:
    real = jws.sign(_claims(fed, url), generate(), jws.TokenType.REQUEST)
    head = _b64(json.dumps({"alg": "EdDSA", "typ": "tongban-req+jwt",
                            "kid": fed[DOUMEN].signing_key().kid}).encode())
    _, payload, sig = real.split(".")
    return bearer(f"{head}.{payload}.{sig}")


BAD_TOKENS = [
    BadToken("absent", lambda fed, url: {}, 401, "bad-signature"),
    BadToken("not a bearer token", lambda fed, url: {"Authorization": "Basic Zm9vOmJhcg=="},
             401, "bad-signature"),
    BadToken("not a JWS", lambda fed, url: bearer("not-a-token"), 400, "malformed"),
    BadToken("message typ", lambda fed, url: bearer(sign_message(
        _claims(fed, url), fed[DOUMEN].signing_key())), 400, "malformed"),
    BadToken("alg none", alg_none, 401, "bad-signature"),
    BadToken("signed by another key", foreign_key_under_doumen_kid, 401, "bad-signature"),
    BadToken("unknown member", lambda fed, url: bearer(reqtoken.sign_request(
        generate(), iss="CN-110105", aud=TAOYUAN, htm="PUT", htu=url, now=fed.clock())),
        401, "unknown-member"),
    BadToken("wrong aud", lambda fed, url: _signed(fed, _claims(fed, url, aud=OPERATOR_ID)),
             401, "wrong-audience"),
    BadToken("expired", lambda fed, url: _signed(fed, _claims(
        fed, url, iat=int(fed.clock()) - 400, exp=int(fed.clock()) - 100)), 401, "expired"),
    BadToken("issued in the future", lambda fed, url: _signed(fed, _claims(
        fed, url, iat=int(fed.clock()) + 3600, exp=int(fed.clock()) + 3700)), 401, "expired"),
    BadToken("lifetime over 300 s", lambda fed, url: _signed(fed, _claims(
        fed, url, exp=int(fed.clock()) + 301)), 400, "malformed"),
    BadToken("wrong htm", lambda fed, url: _signed(fed, _claims(fed, url, htm="POST")), 401,
             "wrong-audience"),
    BadToken("htu of another blob", lambda fed, url: _signed(fed, _claims(
        fed, url.replace(SHA, sha256_b64url(b"other")))), 401, "wrong-audience"),
    BadToken("htu of another host", lambda fed, url: _signed(fed, _claims(
        fed, url.replace("127.0.0.1", "localhost"))), 401, "wrong-audience"),
    BadToken("missing htu", _without("htu"), 400, "malformed"),
    BadToken("missing jti", _without("jti"), 400, "malformed"),
]


@pytest.mark.parametrize("bad", BAD_TOKENS, ids=[b.name for b in BAD_TOKENS])
async def test_bad_request_token_refused_and_nothing_stored(fed: Federation,
                                                            bad: BadToken) -> None:
    taoyuan = fed[TAOYUAN]
    url = blob_path(taoyuan, SHA)
    async with aiohttp.ClientSession() as session:
        result = await put(session, url, DATA, headers=bad.headers(fed, url))
    assert_problem(result, bad.status, bad.code)
    assert files_on_disk(taoyuan) == []


async def test_replayed_request_token_is_409(fed: Federation) -> None:
    taoyuan = fed[TAOYUAN]
    url = blob_path(taoyuan, SHA)
    token = req_token(fed, url)
    async with aiohttp.ClientSession() as session:
        first = await put(session, url, DATA, token=token)
        second = await put(session, url, DATA, token=token)
    assert first[0] == 201, first[2]
    assert_problem(second, 409, "replay")


async def test_suspended_sender_refused(fed: Federation) -> None:
    version = await fed.publish(lambda a: a.set_status(DOUMEN, Status.SUSPENDED))
    await fed[TAOYUAN].wait_registry(version)
    assert_problem(await upload(fed, DATA), 403, "member-suspended")
    assert files_on_disk(fed[TAOYUAN]) == []


async def test_stale_registry_fails_closed(fed: Federation) -> None:
    fed.clock.advance(8 * 24 * 3600)
    assert_problem(await upload(fed, DATA), 503, "registry-stale")
    assert files_on_disk(fed[TAOYUAN]) == []


async def test_htu_is_public_url_when_set(tmp_path: Path, db_factory: DbFactory) -> None:
    """Behind a proxy the receiver compares `htu` with `server.public_url`, not its socket."""
    federation = await build_federation(tmp_path, db_factory, start=False)
    try:
        taoyuan = federation[TAOYUAN]
        public = "https://tongban.taoyuan.example.gov.cn"
        taoyuan.config = taoyuan.config.model_copy(update={
            "server": taoyuan.config.server.model_copy(update={"public_url": public})})
        for node in federation.nodes:
            await node.start()
        direct = f"http://127.0.0.1:{taoyuan.config.server.port}/federation/v1/blobs/{SHA}"
        async with aiohttp.ClientSession() as session:
            refused = await put(session, direct, DATA, token=req_token(federation, direct))
            accepted = await put(session, direct, DATA, token=req_token(
                federation, f"{public}/federation/v1/blobs/{SHA}"))
        assert_problem(refused, 401, "wrong-audience")
        assert accepted[0] == 201, accepted[2]
    finally:
        await federation.close()


# --- messages that list materials ---------------------------------------------------------

async def test_message_listing_unknown_blob_is_409_and_not_stored(fed: Federation) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    held = os.urandom(1000)
    assert (await upload(fed, held))[0] == 201
    claims = message_claims(DOUMEN, TAOYUAN, now=fed.clock())
    claims["att"] = [material(held), material(b"never uploaded")]
    async with aiohttp.ClientSession() as session:
        result = await post_message(session, taoyuan, sign_message(claims, doumen.signing_key()))
    assert_problem(result, 409, "missing-blob")
    stored = await taoyuan.inbox(cases_only=False)
    assert [e for e in stored if e.type != "registry.updated"] == []
    assert taoyuan.counter.applied == []


async def test_message_with_wrong_att_size_is_invalid_body(fed: Federation) -> None:
    doumen, taoyuan = fed[DOUMEN], fed[TAOYUAN]
    held = os.urandom(1000)
    assert (await upload(fed, held))[0] == 201
    claims = message_claims(DOUMEN, TAOYUAN, now=fed.clock())
    claims["att"] = [{**material(held), "size": 999}]
    async with aiohttp.ClientSession() as session:
        result = await post_message(session, taoyuan, sign_message(claims, doumen.signing_key()))
    assert_problem(result, 422, "invalid-body")
    assert await taoyuan.inbox() == []


# --- the store and the token helpers on their own -----------------------------------------

async def test_store_streams_back_what_it_stored(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", max_bytes=1_000_000)
    store.open()
    data = os.urandom(700_000)
    att = await store_blob(store, data, media_type="application/pdf", name="scan.pdf")
    assert att.sha256 == base64.urlsafe_b64encode(
        hashlib.sha256(data).digest()).rstrip(b"=").decode()
    chunks = [c async for c in store.read(att.sha256, chunk_size=100_000)]
    assert len(chunks) == 7 and b"".join(chunks) == data
    again = await store_blob(store, data, media_type="application/pdf", name="copy.pdf")
    assert again.sha256 == att.sha256
    with pytest.raises(TongbanError) as too_big:
        await store_blob(store, os.urandom(1_000_001))
    assert too_big.value.code.value == "too-large"
    assert [p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == [att.sha256]


def test_htu_normalization() -> None:
    norm = reqtoken.normalize_htu
    assert norm("HTTPS://Tongban.Example.gov.cn:443/federation/v1/blobs/x?y=1") == \
        "https://tongban.example.gov.cn/federation/v1/blobs/x"
    assert norm("http://127.0.0.1:80/a") == "http://127.0.0.1/a"
    assert norm("http://127.0.0.1:8080/a") == "http://127.0.0.1:8080/a"
    assert norm("http://[::1]:8080/a") == "http://[::1]:8080/a"
    assert norm("https://x.example/A") != norm("https://x.example/a")
    with pytest.raises(TongbanError):
        norm("/relative/only")
