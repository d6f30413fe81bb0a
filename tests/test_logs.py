"""JSON log lines carry the request id and parse as JSON, one object per line; no log line
leaves the process with a resident ID number or a token in it."""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from casekit import ONLINE_ITEM, Api, applicant, case_federation, materials
from fedkit import DOUMEN, TAOYUAN, DbFactory, wait_for

from gateway.http.problems import CURRENT_REQUEST_ID
from gateway.logs import configure
from trust import sso

JWS_IN_TEXT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.")


def test_json_lines_with_request_id(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure("json", replace=True)
        token = CURRENT_REQUEST_ID.set("3f1c-test-request")
        try:
            logging.getLogger("gateway.test").info("case %s accepted", "CN-440403:x")
            try:
                raise ValueError("boom")
            except ValueError:
                logging.getLogger("gateway.test").exception("it failed")
        finally:
            CURRENT_REQUEST_ID.reset(token)
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    assert lines[0]["message"] == "case CN-440403:x accepted"
    assert lines[0]["request_id"] == "3f1c-test-request" and lines[0]["level"] == "info"
    assert lines[0]["ts"].endswith("Z")
    assert "ValueError: boom" in lines[1]["exception"]


ID_NUMBER = "43072519880412135X"
TOKEN = ("eyJhbGciOiJFZERTQSIsInR5cCI6InRvbmdiYW4tc3NvK2p3dCJ9"
         ".eyJpc3MiOiJDTi00MzA3MjUiLCJzdWIiOiJ4In0.c2lnbmF0dXJlLWJ5dGVz")


@contextlib.contextmanager
def configured(fmt: str, *, verbose: bool = False) -> Iterator[None]:
    """`configure` as `tongban serve` calls it, with the test runner's handlers put back."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure(fmt, verbose=verbose, replace=True)
        yield
    finally:
        root.handlers[:], root.level = saved[0], saved[1]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_id_numbers_and_tokens_are_masked(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The safety net: whatever code logs by mistake, in the message or its arguments or an
    exception, leaves the process masked."""
    with configured(fmt):
        log = logging.getLogger("gateway.test")
        log.info("applicant %s presented %s", ID_NUMBER, TOKEN)
        log.warning(f"inline {ID_NUMBER.lower()} phone 13812345678, bearer {TOKEN}")
        try:
            raise ValueError(f"refused token {TOKEN} of {ID_NUMBER}")
        except ValueError:
            log.exception("it failed")
        log.info("case %s took %d ms", "CN-440403:x", 12)  # nothing to mask: unchanged
    err = capsys.readouterr().err
    assert ID_NUMBER not in err and ID_NUMBER.lower() not in err
    assert TOKEN not in err and TOKEN.split(".")[1] not in err and "13812345678" not in err
    messages = ([json.loads(line)["message"] for line in err.splitlines()] if fmt == "json"
                else [line for line in err.splitlines() if " gateway.test " in line])
    assert messages[0].endswith("applicant 430725********135X presented [token]")
    assert messages[1].endswith("inline 430725********135x phone 138****5678, bearer [token]")
    assert messages[3].endswith("case CN-440403:x took 12 ms")
    assert "ValueError: refused token [token] of 430725********135X" in err


async def test_a_real_flow_logs_no_id_number_or_token(
        tmp_path: Path, db_factory: DbFactory, capsys: pytest.CaptureFixture[str]) -> None:
    """A case filed with an ID number and single sign-on with real tokens, through gateways on
    loopback, logging at DEBUG (libraries included) the way `tongban serve -v` does."""
    fed = await case_federation(tmp_path, db_factory, (DOUMEN, TAOYUAN))
    person = applicant("430725")
    try:
        with configured("json", verbose=True):
            async with aiohttp.ClientSession() as http:
                portal = Api(http, fed[TAOYUAN]).as_portal()
                await portal.call("POST", "/api/v1/cases", {
                    "item": ONLINE_ITEM, "handler": DOUMEN, "applicant": person, "loa": "L4",
                    "materials": materials(ONLINE_ITEM)}, expect=201)
                token, _ = sso.issue(fed[TAOYUAN].signing_key(), iss=TAOYUAN, aud=DOUMEN,
                                     sub="pairwise", loa="L4", name="王桃源", sid="s-1",
                                     now=fed.clock(), idn=person["id_number"])
                form = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt"}
                tokens = [token]
                for subject in (token, token):  # the second is refused as already used
                    async with http.post(fed[DOUMEN].url + "/sso/v1/token",
                                         data={**form, "subject_token": subject}) as resp:
                        doc = await resp.json()
                        tokens.append(str(doc.get("access_token", "")))

                async with http.get(fed[DOUMEN].url + "/portal/?token=" + token) as resp:
                    await resp.read()  # a token in a URL
                # ... as aiohttp's access log would write it, were it switched on (serve runs
                # without it): the one line here that the filter, not the code, keeps clean.
                logging.getLogger("aiohttp.access").info("GET /portal/?token=%s", token)

                async def delivered() -> bool:
                    return bool(await fed[TAOYUAN].outbox("delivered"))

                await wait_for(delivered, what="the case to reach Doumen")
        err = capsys.readouterr().err
    finally:
        await fed.close()
    lines = [json.loads(line) for line in err.splitlines()]
    assert lines, "nothing was logged"
    assert person["id_number"] not in err
    for secret in filter(None, tokens):
        assert secret not in err
    assert not JWS_IN_TEXT.search(err), JWS_IN_TEXT.search(err)
