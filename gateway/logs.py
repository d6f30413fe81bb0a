"""Log lines for people (text) or for a log pipeline (one JSON object per line).

Either way every line carries the request id, the `instance` of any problem answer, so an
operator can go from a caller's error to the log. Nothing here decides what is logged: the
code never logs tokens, keys, passwords or ID numbers in the first place. `RedactFilter` is
the safety net under that rule: a line that slips through anyway (a library's debug line
echoing SQL parameters, an exception text quoting a request) reaches no log pipeline with a
resident ID number, a mobile number or a compact JWS in it.
"""

from __future__ import annotations

import datetime
import json
import logging
import re

from gateway.http.problems import RequestIdFilter
from registry.validation import mask_numbers

# Three base64url segments whose first is a JSON object ("{" encodes as "eyJ"): a JWS/JWT in
# compact form (a JWE's further segments go with it).
_TOKEN_RE = re.compile(r"eyJ[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*){2,4}")
# Cheap test first: most lines have neither 11 digits in a row (a mobile number is 11, an ID
# number 18) nor "eyJ", and then nothing else runs.
_MAYBE_RE = re.compile(r"[0-9]{11}|eyJ")
JWS_MASK = "[token]"


def redact(text: str) -> str:
    """`text` with resident ID numbers and mobile numbers masked (registry.validation's
    masking, as in case views) and compact JWS replaced by `[token]`."""
    if _MAYBE_RE.search(text) is None:
        return text
    return mask_numbers(_TOKEN_RE.sub(JWS_MASK, text))


class RedactFilter(logging.Filter):
    """Masks ID numbers, mobile numbers and tokens in a record before any handler formats it.

    The message is formatted here once (`msg % args`) and the record keeps only the masked
    result, so neither the text nor the JSON formatter, nor another handler of the same
    record, can put an argument back unmasked; an exception's traceback text is masked the
    same way.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: the handler's formatting reports it
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True

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
        if record.exc_text:  # already formatted (and masked) by RedactFilter
            doc["exception"] = record.exc_text
        elif record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def configure(fmt: str, *, verbose: bool = False, replace: bool = False) -> None:
    """`replace`: drop handlers set up before (the CLI's text handler, when `serve` switches to
    the configured format). Every line goes through `RedactFilter`."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler],
                        force=replace)
    # Migrations narrate every step at INFO; a command's output should not drown in it.
    logging.getLogger("alembic").setLevel(logging.DEBUG if verbose else logging.WARNING)
