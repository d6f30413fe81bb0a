"""The generic REST/JSON adapter: a local system reached over HTTP with JSON documents, all of
it described by the region's mapping file, plus signed webhooks for events pushed at once."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

from adapters.base import AdapterError, LocalEvent, PushesNotTaken
from adapters.httpcall import exchange, refuse_status
from adapters.mapped import MappedAdapter, problem
from adapters.mapping import RegionMapping
from adapters.signing import verify
from adapters.translate import events_from

ENDPOINT_RE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) (/[^\s?#]*)$")
PLACEHOLDER_RE = re.compile(r"\{([^}]*)\}")
PLACEHOLDERS = ("ref", "case_id")


def parse_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise AdapterError(f"{what}: the local answer is not JSON: {exc}",
                           transient=False) from None


class RestAdapter(MappedAdapter):
    name: ClassVar[str] = "rest"

    @classmethod
    def check_mapping(cls, mapping: RegionMapping) -> None:
        for call in ("submit", "supplement", "withdraw", "events"):
            endpoint = getattr(mapping, call).endpoint
            match = ENDPOINT_RE.match(endpoint)
            if match is None:
                raise problem(f"{call}.endpoint", f"{endpoint!r} is not 'METHOD /path'")
            names = PLACEHOLDER_RE.findall(match.group(2))
            bad = [n for n in names if n not in PLACEHOLDERS or
                   (call in ("submit", "events") and n == "ref")]
            if bad:
                raise problem(f"{call}.endpoint", f"no value for {{{bad[0]}}} in this call")
        if mapping.events.endpoint.split(" ")[0] not in ("GET", "POST"):
            raise problem("events.endpoint", "events are read with GET or POST")

    def _url(self, endpoint: str, *, ref: str | None, case_id: str | None) -> tuple[str, str]:
        method, path = endpoint.split(" ", 1)
        values = {"ref": ref or "", "case_id": case_id or ""}
        for name in PLACEHOLDER_RE.findall(path):
            # Percent-encoding keeps "/" inside one path segment, but a whole segment of "."
            # or ".." is still resolved by the URL library ("/a/../b" becomes "/b"), so such
            # a value would reach another endpoint of the local system.
            if values[name] in ("", ".", ".."):
                raise AdapterError(f"{{{name}}} {values[name]!r} cannot be a path segment",
                                   transient=False)
        path = PLACEHOLDER_RE.sub(lambda m: quote(values[m.group(1)], safe=""), path)
        return method, self.mapping.service.base_url + path

    async def send(self, call: str, doc: Mapping[str, Any], *, ref: str | None,
                   case_id: str) -> Any:
        endpoint = getattr(self.mapping, call).endpoint
        method, url = self._url(endpoint, ref=ref, case_id=case_id)
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   **self.auth_headers()}
        data = json.dumps(doc, ensure_ascii=False).encode()
        reply = await exchange(self.session, method, url, self.policy, data=data,
                               headers=headers)
        refuse_status(reply, f"{call} of case {case_id}")
        return parse_json(reply.body, call) if reply.body.strip() else {}

    async def fetch_events(self, cursor: str | None) -> Any:
        method, url = self._url(self.mapping.events.endpoint, ref=None, case_id=None)
        headers = {"Accept": "application/json", **self.auth_headers()}
        param = {} if cursor is None else {self.mapping.events.cursor_param: cursor}
        if method == "GET":
            reply = await exchange(self.session, method, url, self.policy, params=param,
                                   headers=headers)
        else:
            reply = await exchange(self.session, method, url, self.policy,
                                   data=json.dumps(param).encode(),
                                   headers={**headers, "Content-Type": "application/json"})
        refuse_status(reply, "reading events")
        return parse_json(reply.body, "reading events")

    def webhook(self, headers: Mapping[str, str], body: bytes) -> list[LocalEvent]:
        hook = self.mapping.webhook
        if hook is None:
            raise PushesNotTaken("this member's local system does not push; its rest adapter "
                                 "polls (the mapping has no [webhook] section)")
        if len(body) > self.mapping.service.max_answer_bytes:
            raise AdapterError("webhook body over the size limit", transient=False)
        verify(headers, body, secret=self.secrets.get(hook.secret), now=self.clock(),
               signature_header=hook.signature_header, timestamp_header=hook.timestamp_header,
               prefix=hook.signature_prefix, tolerance=hook.tolerance)
        return events_from(parse_json(body, "webhook"), self.mapping)
