"""The SOAP 1.2 pieces the simulators share: namespaces, fault codes, the parsed envelope, safe parsing.

The INSi and DMP simulators both read hostile SOAP 1.2 requests and answer SOAP 1.2
faults; what is the same for both lives here once: the envelope namespaces, the fault
codes with their HTTP status, the :class:`EnvelopeError` a request is refused with, the
:class:`Envelope` a request is parsed into, and the hardened parser (no entity
expansion, no DTD, no network, no processing instructions) with the depth bound. What
each service says in its faults, and what it builds in its answers, stays in each
simulator's ``soap`` module.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from lxml import etree

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"

CONTENT_TYPE = "application/soap+xml; charset=utf-8"

MAX_DEPTH = 64
"""Deeper documents are refused: no INSi or DMP message comes near it."""


class FaultCode(enum.StrEnum):
    """SOAP 1.2 fault codes (``env:Code/env:Value``)."""

    VERSION_MISMATCH = "VersionMismatch"
    MUST_UNDERSTAND = "MustUnderstand"
    SENDER = "Sender"
    RECEIVER = "Receiver"

    @property
    def http_status(self) -> int:
        """SOAP 1.2 HTTP binding: 400 for a Sender fault, 500 otherwise."""
        return 400 if self is FaultCode.SENDER else 500


class EnvelopeError(Exception):
    """A request that cannot be served as SOAP, with the fault to answer.

    Attributes:
        code: the SOAP fault code.
        reason: short machine name recorded in the exchange (``doctype``, ``not-xml``...).
        message: the human text of the fault.
    """

    def __init__(self, code: FaultCode, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Envelope:
    """A parsed SOAP 1.2 request."""

    root: etree._Element
    header: etree._Element | None
    payload: etree._Element | None
    """The first element of ``env:Body`` (None when the body is empty)."""

    def header_block(self, namespace: str, name: str) -> etree._Element | None:
        if self.header is None:
            return None
        return self.header.find(f"{{{namespace}}}{name}")


def parser(huge: bool = False) -> etree.XMLParser:
    """A hardened parser; one per call (lxml parsers must not be shared between threads)."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=huge,
        remove_pis=True,
    )


def elements(parent: etree._Element) -> list[etree._Element]:
    """The element children of ``parent`` (comments and processing instructions left out)."""
    return [child for child in parent if isinstance(child.tag, str)]


def depth(root: etree._Element) -> int:
    """How deep ``root`` nests, counted up to just past :data:`MAX_DEPTH`."""
    level = deepest = 0
    for event, _ in etree.iterwalk(root, events=("start", "end")):
        level += 1 if event == "start" else -1
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            break
    return deepest
