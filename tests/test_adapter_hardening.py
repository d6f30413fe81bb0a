"""Hostile or broken input to the adapters' shared pieces must end as an `AdapterError`.

The gateway's retry, backoff and parking only know `AdapterError`: any other exception out of
an adapter (a RecursionError, a ValueError, an aiohttp error) would escape them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.base import AdapterError, WebhookRefused
from adapters.httpcall import Policy, exchange
from adapters.rest import RestAdapter
from adapters.signing import sign, verify
from adapters.testing.reference import ReferenceSystem
from adapters.xmltree import MAX_DEPTH, SOAP_NS, answer

SECRET = "webhook-secret-for-hardening-tests"
EXAMPLES = Path(__file__).parent.parent / "adapters" / "examples"


def nested(depth: int) -> bytes:
    inner = b"<a>" * depth + b"x" + b"</a>" * depth
    return (f'<Envelope xmlns="{SOAP_NS}"><Body><Op>'.encode() + inner +
            b"</Op></Body></Envelope>")


def test_deeply_nested_xml_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(AdapterError, match="deeper than") as caught:
        answer(nested(5000), "Op")
    assert not caught.value.transient


def test_xml_nested_within_the_limit_is_read() -> None:
    tree: Any = answer(nested(MAX_DEPTH - 2), "Op")
    for _ in range(MAX_DEPTH - 2):
        tree = tree["a"]
    assert tree == "x"


@pytest.mark.parametrize("timestamp", ["²", "١٧٠٠٠٠٠٠٠٠", "-5", ""])
def test_webhook_timestamp_must_be_ascii_digits(timestamp: str) -> None:
    with pytest.raises(WebhookRefused, match="valid X-Timestamp"):
        verify({"X-Timestamp": timestamp, "X-Signature": "sha256=00"}, b"{}", secret=SECRET,
               now=1_700_000_000.0, signature_header="X-Signature",
               timestamp_header="X-Timestamp")


def test_webhook_signed_now_is_accepted() -> None:
    timestamp, signature = sign(SECRET, b"{}", 1_700_000_000.0)
    verify({"x-timestamp": timestamp, "x-signature": signature}, b"{}", secret=SECRET,
           now=1_700_000_010.0, signature_header="X-Signature", timestamp_header="X-Timestamp")


async def test_a_malformed_http_answer_is_a_transient_adapter_error() -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nxx")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(broken, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with aiohttp.ClientSession() as http:
            with pytest.raises(AdapterError, match="unreadable answer") as caught:
                await exchange(http, "GET", f"http://127.0.0.1:{port}/", Policy(
                    timeout=5.0, attempts=1, backoff=0.0, max_answer_bytes=10_000))
        assert caught.value.transient
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("ref", ["..", ".", ""])
async def test_a_reference_cannot_climb_out_of_its_path_segment(ref: str) -> None:
    settings = {"mapping": "rest-reference.toml", "base_url": "http://127.0.0.1:9"}
    async with aiohttp.ClientSession() as http:
        adapter = RestAdapter(settings, base=EXAMPLES, session=http, secrets={"api_key": "k"})
        with pytest.raises(AdapterError, match="cannot be a path segment") as caught:
            await adapter.withdraw(ref, "CN-430725:0001", "no longer needed")
    assert not caught.value.transient


async def test_a_reference_is_escaped_into_one_segment() -> None:
    settings = {"mapping": "rest-reference.toml", "base_url": "http://127.0.0.1:9"}
    async with aiohttp.ClientSession() as http:
        adapter = RestAdapter(settings, base=EXAMPLES, session=http, secrets={"api_key": "k"})
        method, url = adapter._url("POST /api/banjian/{ref}/chehui", ref="a/../../x?y#z",
                                   case_id="CN-430725:0001")
    assert (method, url) == ("POST", "http://127.0.0.1:9/api/banjian/"
                                     "a%2F..%2F..%2Fx%3Fy%23z/chehui")


async def test_the_reference_feed_refuses_a_non_ascii_cursor(tmp_path: Path) -> None:
    system = await ReferenceSystem(tmp_path / "local.sqlite", api_key="k").start()
    try:
        async with aiohttp.ClientSession() as http:
            for cursor in ("²", "١"):
                async with http.get(system.url + "/api/shijian", params={"yb": cursor},
                                    headers={"X-Api-Key": "k"}) as resp:
                    assert resp.status == 400, cursor
            async with http.get(system.url + "/api/shijian", params={"yb": "0"},
                                headers={"X-Api-Key": "k"}) as resp:
                assert resp.status == 200
    finally:
        await system.close()
