"""The INSi simulator's SOAP 1.2 layer: reading requests safely and writing answers.

Requests come from the system under test and may be hostile, so parsing is hardened
(no entity expansion, no DTD, no network, no huge trees) and any DOCTYPE is refused
outright; every failure becomes a :class:`EnvelopeError` carrying the SOAP 1.2 fault
code it deserves (``VersionMismatch`` for a SOAP 1.1 envelope, ``Sender`` for the
rest). Answers (``RESULTAT`` documents and faults with ``siram:Erreur``) are built
here too, in the element order of the served WSDL so that schema-driven clients such
as zeep read them.

Wire facts (namespaces, element names, codes) are those of ``shared/docs/protocols.md``
§1; the ``code`` attribute of ``siram:Erreur`` and the WS-Addressing headers of the
answer are the simulator's own choices (the real layout was not found publicly).
The SOAP 1.2 pieces shared with the DMP simulator (namespaces, fault codes,
:class:`Envelope`, the hardened parser) come from :mod:`harness.simulators.soap12`.
"""

from __future__ import annotations

import enum
import uuid

from lxml import etree

from harness.simulators.insi.identities import FormerIns, InsiIdentity
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
from harness.simulators.soap12 import elements as _elements
from harness.simulators.soap12 import parser
from harness.validators.ins import normalise_trait

SAML2 = "urn:oasis:names:tc:SAML:2.0:assertion"
CTXBAM = "urn:siram:bam:ctxbam"
CTXLPS = "urn:siram:lps:ctxlps"
SIRAM = "urn:siram"
RECSANS = "http://www.cnamts.fr/INSiRecSans"
RECVIT = "http://www.cnamts.fr/INSiRecVit"
RESULTAT = "http://www.cnamts.fr/INSiResultat"

ACTION_PREFIX = "urn:ServiceIdentiteCertifiee:1.0.0:"
ACTION_TRAITS = ACTION_PREFIX + "rechercherInsAvecTraitsIdentite"
"""WS-Addressing action (and SOAP action) of the search by traits."""
ACTION_CARD = ACTION_PREFIX + "rechercherInsAvecCarteVitale"
"""WS-Addressing action (and SOAP action) of the search by Carte Vitale."""
RESPONSE_SUFFIX = "Response"


class Operation(enum.StrEnum):
    """The two INSi operations, named by their body element."""

    RECSANSVITALE = "RECSANSVITALE"
    RECVITALE = "RECVITALE"

    @property
    def action(self) -> str:
        return ACTION_TRAITS if self is Operation.RECSANSVITALE else ACTION_CARD

    @property
    def namespace(self) -> str:
        return RECSANS if self is Operation.RECSANSVITALE else RECVIT

    @classmethod
    def for_action(cls, action: str) -> Operation | None:
        return {ACTION_TRAITS: cls.RECSANSVITALE, ACTION_CARD: cls.RECVITALE}.get(action.strip())

    @classmethod
    def for_element(cls, element: etree._Element) -> Operation | None:
        qname = etree.QName(element)
        for operation in cls:
            if qname.localname == operation.value and qname.namespace == operation.namespace:
                return operation
        return None


UNDERSTOOD_HEADERS = frozenset({WSA, WSSE, CTXBAM, CTXLPS})


def parse_envelope(data: bytes) -> Envelope:
    """Parse a request body into an :class:`Envelope`.

    Raises:
        EnvelopeError: empty, DOCTYPE, not XML, not a SOAP 1.2 envelope (SOAP 1.1 or any
            other envelope namespace gives ``VersionMismatch``), no Body, a header block
            this service does not understand marked ``mustUnderstand``.
    """
    if not data.strip():
        raise EnvelopeError(FaultCode.SENDER, "empty", "empty request body")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise EnvelopeError(FaultCode.SENDER, "doctype", "DOCTYPE and entity declarations are not allowed")
    try:
        root = etree.fromstring(data, parser())
    except etree.XMLSyntaxError as exc:
        raise EnvelopeError(FaultCode.SENDER, "not-xml", f"request is not well-formed XML: {exc}") from None
    if getattr(root.getroottree().docinfo, "doctype", ""):
        raise EnvelopeError(FaultCode.SENDER, "doctype", "DOCTYPE declarations are not allowed")
    qname = etree.QName(root)
    if qname.localname != "Envelope":
        raise EnvelopeError(FaultCode.SENDER, "not-soap", f"root element {qname.localname!r} is not a SOAP Envelope")
    if qname.namespace != SOAP12:
        version = "SOAP 1.1" if qname.namespace == SOAP11 else f"namespace {qname.namespace!r}"
        raise EnvelopeError(
            FaultCode.VERSION_MISMATCH, "version-mismatch", f"{version} envelope: this service speaks SOAP 1.2 only"
        )
    if _depth(root) > MAX_DEPTH:
        raise EnvelopeError(FaultCode.SENDER, "too-deep", f"document nested deeper than {MAX_DEPTH} levels")
    header = root.find(f"{{{SOAP12}}}Header")
    body = root.find(f"{{{SOAP12}}}Body")
    if body is None:
        raise EnvelopeError(FaultCode.SENDER, "no-body", "SOAP envelope without env:Body")
    if header is not None:
        for block in _elements(header):
            understood = etree.QName(block).namespace in UNDERSTOOD_HEADERS
            if not understood and block.get(f"{{{SOAP12}}}mustUnderstand") in ("true", "1"):
                raise EnvelopeError(
                    FaultCode.MUST_UNDERSTAND,
                    "must-understand",
                    f"header block {block.tag} is marked mustUnderstand and is not understood",
                )
    payload = next(iter(_elements(body)), None)
    return Envelope(root=root, header=header, payload=payload)


def child_text(parent: etree._Element | None, *path: str) -> str:
    """Stripped text at ``path`` (local names, in any or no namespace) under ``parent``; empty when absent."""
    node = parent
    for name in path:
        if node is None:
            return ""
        node = node.find(f"{{*}}{name}")
    if node is None:
        return ""
    return (node.text or "").strip()


# -- answers -----------------------------------------------------------------------------------

LIBELLES = {
    "00": "OK",
    "01": "Aucune identité trouvée",
    "02": "Plusieurs identités trouvées",
}


def resultat_envelope(
    code: str, individu: InsiIdentity | None, *, request_action: str = "", relates_to: str = ""
) -> bytes:
    """A ``RESULTAT`` answer with ``CR`` and, for ``00``, the ``INDIVIDU``.

    Traits are returned normalised (upper case, no diacritics), as INSi returns them.
    """
    envelope = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"soap": SOAP12, "wsa": WSA})
    _answer_addressing(envelope, request_action, relates_to)
    body = etree.SubElement(envelope, f"{{{SOAP12}}}Body")
    resultat = etree.SubElement(body, f"{{{RESULTAT}}}RESULTAT", nsmap={"res": RESULTAT})
    cr = _add(resultat, "CR")
    _add(cr, "CodeCR", code)
    _add(cr, "LibelleCR", LIBELLES.get(code, ""))
    if code == "00" and individu is not None:
        resultat.append(_individu(individu))
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _individu(identity: InsiIdentity) -> etree._Element:
    individu = etree.Element(f"{{{RESULTAT}}}INDIVIDU")
    active = _add(individu, "INSACTIF")
    _id_individu(active, identity.matricule)
    _add(active, "OID", identity.oid)
    for former in identity.history:
        individu.append(_former(former))
    tiq = _add(individu, "TIQ")
    first_names = [normalise_trait(n) for n in identity.first_names]
    _add(tiq, "NomNaissance", normalise_trait(identity.birth_name))
    _add(tiq, "Prenom", first_names[0] if first_names else "")
    _add(tiq, "ListePrenom", " ".join(first_names))
    _add(tiq, "Sexe", identity.sex)
    _add(tiq, "DateNaissance", identity.birth_date)
    if identity.birthplace:
        _add(tiq, "LieuNaissance", identity.birthplace)
    return individu


def _former(former: FormerIns) -> etree._Element:
    histo = etree.Element(f"{{{RESULTAT}}}INSHISTO")
    if former.start:
        _add(histo, "DateDeb", former.start)
    if former.end:
        _add(histo, "DateFin", former.end)
    _id_individu(histo, former.matricule)
    _add(histo, "OID", former.oid)
    return histo


def _id_individu(parent: etree._Element, matricule: str) -> None:
    ident = _add(parent, "IdIndividu")
    _add(ident, "NumIdentifiant", matricule[:13])
    _add(ident, "Cle", matricule[13:])


def _add(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{RESULTAT}}}{name}")
    if text is not None:
        element.text = text
    return element


def fault_envelope(
    code: FaultCode,
    message: str,
    *,
    erreur_code: str,
    request_action: str = "",
    relates_to: str = "",
) -> bytes:
    """A SOAP 1.2 fault; ``env:Detail`` carries ``siram:Erreur`` with ``erreur_code`` and ``message``.

    A ``VersionMismatch`` fault also carries the ``env:Upgrade`` header naming SOAP 1.2.
    """
    envelope = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"soap": SOAP12, "wsa": WSA})
    if code is FaultCode.VERSION_MISMATCH:
        header = etree.SubElement(envelope, f"{{{SOAP12}}}Header")
        upgrade = etree.SubElement(header, f"{{{SOAP12}}}Upgrade")
        etree.SubElement(upgrade, f"{{{SOAP12}}}SupportedEnvelope", qname="soap:Envelope")
    else:
        _answer_addressing(envelope, request_action, relates_to, fault=True)
    fault = etree.SubElement(etree.SubElement(envelope, f"{{{SOAP12}}}Body"), f"{{{SOAP12}}}Fault")
    etree.SubElement(etree.SubElement(fault, f"{{{SOAP12}}}Code"), f"{{{SOAP12}}}Value").text = f"soap:{code.value}"
    reason = etree.SubElement(etree.SubElement(fault, f"{{{SOAP12}}}Reason"), f"{{{SOAP12}}}Text")
    reason.set("{http://www.w3.org/XML/1998/namespace}lang", "fr")
    reason.text = message
    detail = etree.SubElement(fault, f"{{{SOAP12}}}Detail")
    erreur = etree.SubElement(detail, f"{{{SIRAM}}}Erreur", nsmap={"siram": SIRAM}, code=erreur_code)
    erreur.text = message
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _answer_addressing(envelope: etree._Element, request_action: str, relates_to: str, fault: bool = False) -> None:
    if not request_action and not relates_to:
        return
    header = etree.SubElement(envelope, f"{{{SOAP12}}}Header")
    if request_action:
        action = "http://www.w3.org/2005/08/addressing/soap/fault" if fault else request_action + RESPONSE_SUFFIX
        etree.SubElement(header, f"{{{WSA}}}Action").text = action
    etree.SubElement(header, f"{{{WSA}}}MessageID").text = f"urn:uuid:{uuid.uuid4()}"
    if relates_to:
        etree.SubElement(header, f"{{{WSA}}}RelatesTo").text = relates_to


def truncated(answer: bytes) -> bytes:
    """A deliberately broken copy of ``answer``: cut in the middle of the envelope."""
    return answer[: max(1, len(answer) // 2)]
