"""JSON log lines carry the request id and parse as JSON, one object per line."""

from __future__ import annotations

import json
import logging

import pytest

from gateway.http.problems import CURRENT_REQUEST_ID
from gateway.logs import configure


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
