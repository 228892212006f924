"""The practice's DMP client: SOAP 1.2 envelopes, mutual TLS, and the registry's answer read back.

One endpoint takes every DMP transaction, chosen by the WS-Addressing ``Action``
(docs/dmp-wire.md). Each request carries WS-Addressing headers and a VIHF in
``wsse:Security`` (:mod:`harness.reference.vihf`), goes over HTTPS with the organisation
certificate as client identity, the server checked against the configured CA bundle.
ITI-41 travels as MTOM (:mod:`harness.reference.mtom`); ITI-57 and TD0.3 as plain SOAP.
A call runs in a worker thread and is abandoned after ``timeout_s``: a silent DMP gives
status ``error``, never a blocked control API. In a Pro Santé Connect session each request
also carries the PSC access token as ``Authorization: Bearer`` (inferred from DMP/PSC.01;
no public wire detail was read).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import requests
from lxml import etree

from harness.reference import mtom
from harness.reference.http_body import post_bounded
from harness.reference.soap import SOAP12, WSA, WSSE
from harness.reference.vihf import VihfSubject, vihf_assertion
from harness.reference.xds_metadata import RS

ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ITI57 = "urn:ihe:iti:2010:UpdateDocumentSet"
TD03 = "urn:segur-harness:dmp:td0.3"
TD = "urn:segur-harness:dmp:td"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
PARTIAL_SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:PartialSuccess"
ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"
MAX_ANSWER_BYTES = 2 * 1024 * 1024

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)


@dataclass(frozen=True, slots=True)
class DmpEndpoint:
    """Where the DMP is and the files (under the database folder) holding the PEMs to use."""

    url: str
    ca_file: Path
    client_cert_file: Path
    client_key_file: Path


@dataclass(frozen=True, slots=True)
class RegistryError:
    """One ``rs:RegistryError`` of an answer."""

    code: str
    context: str
    severity: str = ""
    location: str = ""

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "context": self.context, "severity": self.severity, "location": self.location}


@dataclass(frozen=True, slots=True)
class DmpAnswer:
    """The outcome of one call: the registry status (short form), or ``fault`` / ``error``."""

    status: str
    """``Success``, ``PartialSuccess``, ``Failure`` (RegistryResponse), ``fault`` (SOAP fault), ``error``."""
    errors: tuple[RegistryError, ...] = ()
    detail: str = ""
    message_id: str = ""
    http_status: int = 0

    @property
    def accepted(self) -> bool:
        return self.status == "Success"

    def describe(self) -> str:
        """The answer in one line: status, then each error's code and context."""
        parts = [f"{e.code}: {e.context}".strip(": ") for e in self.errors]
        if self.detail:
            parts.append(self.detail)
        return f"{self.status}" + (f" — {'; '.join(parts)}" if parts else "")


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request: its action and WS-Addressing MessageID (to find it in the DMP's records)."""

    action: str
    message_id: str = field(default_factory=lambda: f"urn:uuid:{uuid.uuid4()}")


class DmpClient:
    """Sends DMP transactions for the practice, each with a fresh VIHF."""

    def __init__(
        self,
        endpoint: DmpEndpoint,
        timeout_s: float,
        defects: frozenset[str] = frozenset(),
        psc_token: str = "",
        psc_subject: str = "",
    ) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.defects = defects
        self.psc_token = psc_token
        """The PSC access token in a PSC session (sent as Bearer), ``""`` otherwise."""
        self.psc_subject = psc_subject
        """The PSC professional's SubjectNameID in a PSC session (the call log names them)."""
        self._cert_pem = endpoint.client_cert_file.read_bytes()
        self._key_pem = endpoint.client_key_file.read_bytes()

    def provide_and_register(
        self, request: etree._Element, attachments: list[mtom.Attachment], subject: VihfSubject, now: datetime
    ) -> DmpAnswer:
        """ITI-41 as MTOM: ``request`` (xop:Include references) in the root part, the documents as parts."""
        exchange = Exchange(ITI41)
        envelope = self._envelope(exchange, request, subject, now)
        content_type, body = mtom.package(envelope, attachments, ITI41)
        return self._post(exchange, content_type, body)

    def update_document_set(self, request: etree._Element, subject: VihfSubject, now: datetime) -> DmpAnswer:
        """ITI-57 (metadata update, status change) as plain SOAP."""
        exchange = Exchange(ITI57)
        return self._post_soap(exchange, self._envelope(exchange, request, subject, now))

    def add_authorisation(self, patient_cx: str, subject: VihfSubject, now: datetime) -> DmpAnswer:
        """TD0.3 (inferred body): ask the DMP to add the practice to the patient's authorised professionals."""
        exchange = Exchange(TD03)
        request = etree.Element(f"{{{TD}}}AddAuthorizationRequest", nsmap={"td": TD})
        etree.SubElement(request, f"{{{TD}}}patientId").text = patient_cx
        return self._post_soap(exchange, self._envelope(exchange, request, subject, now))

    # -- envelope -------------------------------------------------------------------------------
    def _envelope(self, exchange: Exchange, body_content: etree._Element, subject: VihfSubject, now: datetime) -> bytes:
        envelope = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"soap": SOAP12, "wsa": WSA})
        header = etree.SubElement(envelope, f"{{{SOAP12}}}Header")
        action = etree.SubElement(header, f"{{{WSA}}}Action")
        action.text = exchange.action
        action.set(f"{{{SOAP12}}}mustUnderstand", "true")
        etree.SubElement(header, f"{{{WSA}}}MessageID").text = exchange.message_id
        reply_to = etree.SubElement(header, f"{{{WSA}}}ReplyTo")
        etree.SubElement(reply_to, f"{{{WSA}}}Address").text = ANONYMOUS
        etree.SubElement(header, f"{{{WSA}}}To").text = self.endpoint.url
        security = etree.SubElement(header, f"{{{WSSE}}}Security", nsmap={"wsse": WSSE})
        security.set(f"{{{SOAP12}}}mustUnderstand", "true")
        security.append(vihf_assertion(subject, self._cert_pem, self._key_pem, now, self.defects))
        etree.SubElement(envelope, f"{{{SOAP12}}}Body").append(body_content)
        # never pretty-printed: whitespace added inside the signed assertion would break its digest
        return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")

    # -- transport ------------------------------------------------------------------------------
    def _post_soap(self, exchange: Exchange, envelope: bytes) -> DmpAnswer:
        return self._post(exchange, f'application/soap+xml; charset=UTF-8; action="{exchange.action}"', envelope)

    def _post(self, exchange: Exchange, content_type: str, body: bytes) -> DmpAnswer:
        outcome: list[DmpAnswer] = []
        worker = threading.Thread(
            target=lambda: outcome.append(self._exchange(content_type, body)), name="dmp-call", daemon=True
        )
        worker.start()
        worker.join(self.timeout_s)
        answer = (
            outcome[0] if outcome else DmpAnswer("error", detail=f"no answer from the DMP within {self.timeout_s:g} s")
        )
        return DmpAnswer(answer.status, answer.errors, answer.detail, exchange.message_id, answer.http_status)

    def _exchange(self, content_type: str, body: bytes) -> DmpAnswer:
        headers = {"Content-Type": content_type}
        if self.psc_token:
            headers["Authorization"] = f"Bearer {self.psc_token}"
        try:
            reply = post_bounded(
                self.endpoint.url,
                body,
                headers,
                cert=(self.endpoint.client_cert_file, self.endpoint.client_key_file),
                ca_file=self.endpoint.ca_file,
                timeout_s=self.timeout_s,
                limit=MAX_ANSWER_BYTES,
            )
        except requests.Timeout:
            return DmpAnswer("error", detail=f"no answer from the DMP within {self.timeout_s:g} s")
        except requests.RequestException as exc:
            return DmpAnswer("error", detail=f"DMP unreachable: {_short(exc)}")
        if reply.body is None:
            return DmpAnswer("error", detail="DMP answer larger than 2 MiB")
        status = reply.status
        answer = parse_answer(reply.content_type, reply.body)
        if status != 200 and answer.status not in ("fault", "Failure"):
            return DmpAnswer("error", detail=f"the DMP answered HTTP {status}: {answer.describe()}", http_status=status)
        return DmpAnswer(answer.status, answer.errors, answer.detail, http_status=status)


def parse_answer(content_type: str, payload: bytes) -> DmpAnswer:
    """Read a DMP answer: a RegistryResponse, a TD0.3 answer, or a SOAP fault; anything else is ``error``."""
    try:
        root = etree.fromstring(mtom.soap_part(content_type, payload), _PARSER)
    except (mtom.NotSoap, etree.XMLSyntaxError) as exc:
        return DmpAnswer("error", detail=f"answer unreadable: {_short(exc)}")
    if root.getroottree().docinfo.doctype:  # type: ignore[union-attr]
        return DmpAnswer("error", detail="answer carries a DOCTYPE")
    body = root.find(f"{{{SOAP12}}}Body") if etree.QName(root).localname == "Envelope" else None
    if body is None:
        return DmpAnswer("error", detail="answer is not a SOAP 1.2 envelope with a Body")
    fault = body.find(f"{{{SOAP12}}}Fault")
    if fault is not None:
        return DmpAnswer("fault", detail=_fault_text(fault))
    response = body.find(f".//{{{RS}}}RegistryResponse")
    if response is not None:
        status = (response.get("status") or "").rsplit(":", 1)[-1]
        errors = tuple(
            RegistryError(
                code=e.get("errorCode", ""),
                context=e.get("codeContext", ""),
                severity=(e.get("severity") or "").rsplit(":", 1)[-1],
                location=e.get("location", ""),
            )
            for e in response.iterfind(f"{{{RS}}}RegistryErrorList/{{{RS}}}RegistryError")
        )
        if status not in ("Success", "PartialSuccess", "Failure"):
            return DmpAnswer("error", errors, detail=f"unknown RegistryResponse status {response.get('status')!r}")
        return DmpAnswer(status, errors)
    authorisation = body.find(f".//{{{TD}}}AddAuthorizationResponse")
    if authorisation is not None:
        text = (authorisation.findtext(f"{{{TD}}}status") or "").strip()
        return DmpAnswer("Success" if text == "OK" else "Failure", detail=f"TD0.3 status {text or 'absent'}")
    return DmpAnswer("error", detail="no RegistryResponse in the answer")


def _fault_text(fault: etree._Element) -> str:
    values = [(v.text or "").strip() for v in fault.iter(f"{{{SOAP12}}}Value")]
    reason = (fault.findtext(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text") or "").strip()
    return " — ".join(p for p in (" / ".join(v for v in values if v), reason) if p) or "SOAP fault"


def _short(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."
