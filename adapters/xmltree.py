"""SOAP 1.1 envelopes built with the standard library and read only through defusedxml.

A local system's answer is untrusted input: it is parsed with DTDs, entity declarations and
external references forbidden (an XML bomb or an XXE probe fails before anything expands), after
the transport has capped its size. Answers become the plain tree `adapters.translate` reads:
an element with children is a dict of local names (a repeated name gives a list), a leaf is its
text. Namespaces are dropped on reading: a region's mapping names elements, not namespaces.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # builds XML only; every parse goes through defusedxml
from collections.abc import Mapping
from typing import Any

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from adapters.base import AdapterError

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
# Deeper than any real answer; the cap keeps a small, deeply nested document from exhausting
# the interpreter's recursion (a RecursionError is not an `AdapterError`, so it would escape
# the gateway's retry and parking logic instead of being refused like other bad answers).
MAX_DEPTH = 64


class SoapFault(AdapterError):
    """The service answered with a SOAP fault (rather than something unreadable)."""


def envelope(operation: str, namespace: str, doc: Mapping[str, Any]) -> bytes:
    """A request envelope: `<operation>` in `namespace` with `doc` as its children."""
    root = ET.Element(f"{{{SOAP_NS}}}Envelope")
    body = ET.SubElement(root, f"{{{SOAP_NS}}}Body")
    call = ET.SubElement(body, _qname(namespace, operation))
    _fill(call, namespace, doc)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def _qname(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}" if namespace else name


def _fill(parent: ET.Element, namespace: str, doc: Mapping[str, Any]) -> None:
    for name, value in doc.items():
        for one in value if isinstance(value, list) else [value]:
            child = ET.SubElement(parent, _qname(namespace, name))
            if isinstance(one, Mapping):
                _fill(child, namespace, one)
            elif isinstance(one, bool):
                child.text = "true" if one else "false"
            elif one is not None:
                child.text = str(one)


def parse(data: bytes) -> ET.Element:
    """Parse untrusted XML; anything unsafe or broken is a permanent `AdapterError`."""
    try:
        root: ET.Element = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True,
                                             forbid_external=True)
    except DefusedXmlException as exc:
        raise AdapterError(f"the local answer was refused as unsafe XML: {exc!r}",
                           transient=False) from None
    except (ET.ParseError, ValueError) as exc:
        raise AdapterError(f"the local answer is not XML: {exc}", transient=False) from None
    return root


def local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def to_tree(element: ET.Element, depth: int = 0) -> Any:
    children = list(element)
    if not children:
        return element.text or ""
    if depth >= MAX_DEPTH:
        raise AdapterError(f"the local answer nests elements deeper than {MAX_DEPTH} levels",
                           transient=False)
    tree: dict[str, Any] = {}
    for child in children:
        name = local_name(child.tag)
        value = to_tree(child, depth + 1)
        if name in tree:
            previous = tree[name]
            tree[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            tree[name] = value
    return tree


def answer(data: bytes, operation: str) -> dict[str, Any]:
    """The payload of a SOAP answer, or the fault it carries as an `AdapterError`.

    A `Server` fault is the service's own trouble (worth retrying); a `Client` fault says our
    request was wrong, which a retry will not change.
    """
    root = parse(data)
    if root.tag != f"{{{SOAP_NS}}}Envelope":
        raise AdapterError(f"{operation}: the answer is not a SOAP envelope", transient=False)
    body = root.find(f"{{{SOAP_NS}}}Body")
    if body is None or len(body) != 1:
        raise AdapterError(f"{operation}: the SOAP body must hold exactly one element",
                           transient=False)
    payload = body[0]
    if payload.tag == f"{{{SOAP_NS}}}Fault":
        code = (payload.findtext("faultcode") or "").strip().split(":")[-1]
        text = (payload.findtext("faultstring") or "").strip()[:300]
        raise SoapFault(f"{operation}: SOAP fault {code}: {text}",
                        transient=code.startswith("Server"))
    tree = to_tree(payload)
    if not isinstance(tree, dict):
        tree = {}
    return tree
