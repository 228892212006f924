"""The DMP simulator's SOAP 1.2 layer: safe parsing of requests, WS-Addressing, answers and faults.

Requests come from the system under test and may be hostile, so parsing follows the INSi
simulator's rules (no entity expansion, no DTD, no network, DOCTYPE refused outright,
bounded depth). One difference: an inline base64 document of up to 20 MB is a single
text node above libxml2's 10 MB safety limit, so bodies larger than that are parsed
with ``huge_tree`` (still without DTD or entities, and after the server bounded the size).

Faults are SOAP 1.2 faults with an optional subcode (``wsse:InvalidSecurity``,
``wsse:FailedAuthentication``, ``wsa:ActionNotSupported``) and a ``Detail`` carrying the
simulator's machine reason, so a client can show the reason and a scenario can assert it.
The SOAP 1.2 pieces shared with the INSi simulator (namespaces, fault codes,
:class:`Envelope`, the hardened parser) come from :mod:`harness.simulators.soap12`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from lxml import etree

from harness.simulators.soap12 import CONTENT_TYPE as CONTENT_TYPE
from harness.simulators.soap12 import MAX_DEPTH as MAX_DEPTH
from harness.simulators.soap12 import SOAP11 as SOAP11
from harness.simulators.soap12 import SOAP12 as SOAP12
from harness.simulators.soap12 import WSA as WSA
from harness.simulators.soap12 import WSSE as WSSE
from harness.simulators.soap12 import Envelope as Envelope
from harness.simulators.soap12 import EnvelopeError as EnvelopeError
from harness.simulators.soap12 import FaultCode as FaultCode
from harness.simulators.soap12 import depth as _depth
from harness.simulators.soap12 import elements as elements
from harness.simulators.soap12 import parser as parser

WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
SIM = "urn:segur-harness:dmp:simulator"
"""Namespace of the simulator's own fault detail (``sim:reason``)."""

FAULT_ACTION = "http://www.w3.org/2005/08/addressing/soap/fault"
HUGE_TEXT = 9 * 1024 * 1024
"""Bodies above this may hold a text node over libxml2's default limit: parsed with ``huge_tree``."""
UNDERSTOOD_HEADERS = frozenset({WSA, WSSE, WSU})


@dataclass(frozen=True, slots=True)
class Addressing:
    """The WS-Addressing headers of a request."""

    action: str = ""
    message_id: str = ""
    to: str = ""
    reply_to: str = ""


def parse_xml(data: bytes) -> etree._Element:
    """Parse untrusted XML (a SOAP envelope or a CDA) under the same rules.

    Raises:
        EnvelopeError: empty, DOCTYPE or ENTITY declarations, not well-formed, nested too deep.
    """
    if not data.strip():
        raise EnvelopeError(FaultCode.SENDER, "empty", "corps de requête vide")
    head = data[:4096]
    if b"<!DOCTYPE" in head or b"<!ENTITY" in data:
        raise EnvelopeError(FaultCode.SENDER, "doctype", "les déclarations DOCTYPE et ENTITY sont interdites")
    try:
        root = etree.fromstring(data, parser(huge=len(data) > HUGE_TEXT))
    except etree.XMLSyntaxError as exc:
        raise EnvelopeError(FaultCode.SENDER, "not-xml", f"la requête n'est pas du XML bien formé: {exc}") from None
    if getattr(root.getroottree().docinfo, "doctype", ""):
        raise EnvelopeError(FaultCode.SENDER, "doctype", "les déclarations DOCTYPE sont interdites")
    if _depth(root) > MAX_DEPTH:
        raise EnvelopeError(FaultCode.SENDER, "too-deep", f"document imbriqué sur plus de {MAX_DEPTH} niveaux")
    return root


def parse_envelope(data: bytes) -> Envelope:
    """Parse a request body into an :class:`Envelope`.

    Raises:
        EnvelopeError: see :func:`parse_xml`; not a SOAP envelope, SOAP 1.1 (``VersionMismatch``),
            no Body, a header block marked ``mustUnderstand`` that is not understood.
    """
    root = parse_xml(data)
    qname = etree.QName(root)
    if qname.localname != "Envelope":
        raise EnvelopeError(
            FaultCode.SENDER, "not-soap", f"l'élément racine {qname.localname!r} n'est pas une Envelope"
        )
    if qname.namespace != SOAP12:
        version = "SOAP 1.1" if qname.namespace == SOAP11 else f"namespace {qname.namespace!r}"
        raise EnvelopeError(
            FaultCode.VERSION_MISMATCH, "version-mismatch", f"enveloppe {version}: ce service ne parle que SOAP 1.2"
        )
    header = root.find(f"{{{SOAP12}}}Header")
    body = root.find(f"{{{SOAP12}}}Body")
    if body is None:
        raise EnvelopeError(FaultCode.SENDER, "no-body", "enveloppe SOAP sans env:Body")
    if header is not None:
        for block in elements(header):
            understood = etree.QName(block).namespace in UNDERSTOOD_HEADERS
            if not understood and block.get(f"{{{SOAP12}}}mustUnderstand") in ("true", "1"):
                raise EnvelopeError(
                    FaultCode.MUST_UNDERSTAND,
                    "must-understand",
                    f"l'en-tête {block.tag} est marqué mustUnderstand et n'est pas compris",
                )
    payload = next(iter(elements(body)), None)
    return Envelope(root=root, header=header, payload=payload)


def addressing(envelope: Envelope) -> Addressing:
    def text(name: str) -> str:
        block = envelope.header_block(WSA, name)
        if block is None:
            return ""
        if name == "ReplyTo":
            return (block.findtext(f"{{{WSA}}}Address") or "").strip()
        return (block.text or "").strip()

    return Addressing(text("Action"), text("MessageID"), text("To"), text("ReplyTo"))


# -- answers -------------------------------------------------------------------------------------


def envelope(payload: etree._Element, *, action: str = "", relates_to: str = "") -> bytes:
    """A SOAP 1.2 answer holding ``payload``, with WS-Addressing ``Action`` and ``RelatesTo``."""
    root = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"env": SOAP12, "wsa": WSA})
    _addressing(root, action, relates_to)
    etree.SubElement(root, f"{{{SOAP12}}}Body").append(payload)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def fault_envelope(code: FaultCode, message: str, *, reason: str, subcode: str = "", relates_to: str = "") -> bytes:
    """A SOAP 1.2 fault; ``subcode`` is a prefixed QName (``wsse:InvalidSecurity``, ``wsa:...``)."""
    nsmap = {"env": SOAP12, "wsa": WSA, "wsse": WSSE, "sim": SIM}
    root = etree.Element(f"{{{SOAP12}}}Envelope", nsmap=nsmap)
    if code is FaultCode.VERSION_MISMATCH:
        header = etree.SubElement(root, f"{{{SOAP12}}}Header")
        upgrade = etree.SubElement(header, f"{{{SOAP12}}}Upgrade")
        etree.SubElement(upgrade, f"{{{SOAP12}}}SupportedEnvelope", qname="env:Envelope")
    else:
        _addressing(root, FAULT_ACTION, relates_to)
    fault = etree.SubElement(etree.SubElement(root, f"{{{SOAP12}}}Body"), f"{{{SOAP12}}}Fault")
    code_element = etree.SubElement(fault, f"{{{SOAP12}}}Code")
    etree.SubElement(code_element, f"{{{SOAP12}}}Value").text = f"env:{code.value}"
    if subcode:
        etree.SubElement(etree.SubElement(code_element, f"{{{SOAP12}}}Subcode"), f"{{{SOAP12}}}Value").text = subcode
    text = etree.SubElement(etree.SubElement(fault, f"{{{SOAP12}}}Reason"), f"{{{SOAP12}}}Text")
    text.set("{http://www.w3.org/XML/1998/namespace}lang", "fr")
    text.text = message
    detail = etree.SubElement(fault, f"{{{SOAP12}}}Detail")
    etree.SubElement(detail, f"{{{SIM}}}reason").text = reason
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _addressing(root: etree._Element, action: str, relates_to: str) -> None:
    header = etree.SubElement(root, f"{{{SOAP12}}}Header")
    if action:
        etree.SubElement(header, f"{{{WSA}}}Action").text = action
    etree.SubElement(header, f"{{{WSA}}}MessageID").text = f"urn:uuid:{uuid.uuid4()}"
    if relates_to:
        etree.SubElement(header, f"{{{WSA}}}RelatesTo").text = relates_to
