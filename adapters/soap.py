"""The SOAP/XML adapter: one SOAP 1.1 endpoint whose operations the mapping file names.

Envelopes are built here rather than through a WSDL client: a local service of four operations
does not need one, and building them ourselves keeps every answer on the capped aiohttp read and
the defusedxml parser (see `adapters.xmltree`). Events are polled; such services rarely push.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from adapters.base import AdapterError
from adapters.httpcall import Reply, exchange
from adapters.mapped import MappedAdapter, problem
from adapters.mapping import FieldSpec, RegionMapping
from adapters.xmltree import SoapFault, answer, envelope

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _check_names(where: str, fields: Mapping[str, FieldSpec]) -> None:
    for local, spec in fields.items():
        for part in local.split("."):
            if not NAME_RE.match(part):
                raise problem(f"{where}.{local}", f"{part!r} is not an XML element name")
        if spec.each is not None:
            _check_names(f"{where}.{local}.each", spec.each)


class SoapAdapter(MappedAdapter):
    name: ClassVar[str] = "soap"
    lenient: ClassVar[bool] = True

    @classmethod
    def check_mapping(cls, mapping: RegionMapping) -> None:
        if not mapping.service.namespace:
            raise problem("service.namespace", "the operations' XML namespace is required")
        for call in ("submit", "supplement", "withdraw", "events"):
            operation = getattr(mapping, call).endpoint
            if not NAME_RE.match(operation):
                raise problem(f"{call}.endpoint", f"{operation!r} is not a SOAP operation name")
        for call in ("submit", "supplement", "withdraw"):
            _check_names(f"{call}.fields", getattr(mapping, call).fields)
        if not NAME_RE.match(mapping.events.cursor_param):
            raise problem("events.cursor_param", "must be an XML element name")
        if mapping.webhook is not None:
            raise problem("webhook", "the SOAP adapter polls; it takes no webhooks")

    async def _call(self, operation: str, doc: Mapping[str, Any]) -> dict[str, Any]:
        service = self.mapping.service
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{operation}"',
                   **self.auth_headers()}
        reply = await exchange(self.session, "POST", service.base_url + service.path,
                               self.policy, data=envelope(operation, service.namespace, doc),
                               headers=headers)
        return _read(reply, operation)

    async def send(self, call: str, doc: Mapping[str, Any], *, ref: str | None,
                   case_id: str) -> Any:
        return await self._call(getattr(self.mapping, call).endpoint, doc)

    async def fetch_events(self, cursor: str | None) -> Any:
        doc = {} if cursor is None else {self.mapping.events.cursor_param: cursor}
        return await self._call(self.mapping.events.endpoint, doc)


def _read(reply: Reply, operation: str) -> dict[str, Any]:
    """SOAP 1.1 sends faults with status 500, so a 500 is read for its fault code first."""
    if 200 <= reply.status < 300 or (reply.status == 500 and reply.body):
        try:
            return answer(reply.body, operation)
        except SoapFault:
            raise
        except AdapterError:
            if reply.status == 500:
                raise AdapterError(f"{operation}: the local system answered 500",
                                   transient=True) from None
            raise
    transient = reply.status >= 500 or reply.status in (408, 429)
    raise AdapterError(f"{operation}: the local system answered {reply.status}",
                       transient=transient)
