"""Log lines for people (text) or for a log pipeline (one JSON object per line).

Either way every line carries the request id, the `instance` of any problem answer, so an
operator can go from a caller's error to the log. Nothing here decides what is logged: the
code never logs tokens, keys, passwords or ID numbers in the first place.
"""

from __future__ import annotations

import datetime
import json
import logging

from gateway.http.problems import RequestIdFilter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def configure(fmt: str, *, verbose: bool = False, replace: bool = False) -> None:
    """`replace`: drop handlers set up before (the CLI's text handler, when `serve` switches to
    the configured format)."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler],
                        force=replace)
    # Migrations narrate every step at INFO; a command's output should not drown in it.
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)
