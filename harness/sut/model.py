"""What the harness and a system under test exchange through an adapter.

These records mirror the control API's JSON (``harness/sut/openapi.yaml``); the
HTTP adapter converts to and from them, and a Python adapter returns them directly.
"""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass, field
from typing import Any


class Capability(enum.StrEnum):
    """What a SUT can be driven to do; a scenario needing a missing one is not-supported."""

    IDENTITY = "identity"
    """Create, read and edit patient identities; record an identity-document check."""
    INSI = "insi"
    """Search and verify INS through the INSi téléservice."""
    IDENTITY_FEED = "identity-feed"
    """Accept HL7 v2 identity messages from another identification domain."""
    WORKLIST = "worklist"
    """Expose the identities or data put aside for a user to review."""
    TRACES = "traces"
    """Expose the SUT's own call log (INSi calls and their return codes)."""
    CLOCK = "clock"
    """Let the harness set the SUT's notion of now."""
    RESET = "reset"
    """Wipe the SUT's test data so each scenario starts clean."""
    DOCUMENTS = "documents"
    """Produce CI-SIS documents (CDA R2 and PDF/A) for a patient; import and list a patient's documents."""
    DMP = "dmp"
    """Feed the DMP (validate, send, replace, delete documents) and record the patient's DMP consent."""
    MSSANTE = "mssante"
    """Send documents over MSSanté (SMTP), read the BAL (IMAP), integrate received XDM, reply."""
    ANNUAIRE = "annuaire"
    """Look up correspondents and their MSSanté addresses in the Annuaire Santé (FHIR API)."""
    PSC = "psc"
    """Log professionals in and out with Pro Santé Connect (OpenID Connect), link accounts, use PSC for APIs."""
    ID_DOCUMENTS = "id-documents"
    """Store encrypted copies of patients' identity documents, show the raw storage, run the retention job."""
    PORTABILITY = "portability"
    """Keep an agenda; export patients' data as a portability archive (IHE XDM-based) and import one."""


class IdentityStatus(enum.StrEnum):
    """The four RNIV identity statuses (fr-core ``identity-status`` codes)."""

    PROV = "PROV"
    """Identité provisoire: no INSi, no identity-document check."""
    RECUP = "RECUP"
    """Identité récupérée: INS from INSi, no identity-document check."""
    VALI = "VALI"
    """Identité validée: identity-document check, no INSi."""
    QUAL = "QUAL"
    """Identité qualifiée: INS from INSi and identity-document check."""


@dataclass(frozen=True, slots=True)
class PatientTraits:
    """Strict traits (and the used names) of an identity, as INSi knows them."""

    birth_name: str
    first_names: tuple[str, ...]
    sex: str
    birth_date: str
    birthplace_cog: str = ""
    used_name: str = ""
    used_first_name: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "birth_name": self.birth_name,
            "first_names": list(self.first_names),
            "sex": self.sex,
            "birth_date": self.birth_date,
            "birthplace_cog": self.birthplace_cog,
            "used_name": self.used_name,
            "used_first_name": self.used_first_name,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PatientTraits:
        return cls(
            birth_name=str(data["birth_name"]),
            first_names=tuple(str(n) for n in data.get("first_names", [])),
            sex=str(data["sex"]),
            birth_date=str(data["birth_date"]),
            birthplace_cog=str(data.get("birthplace_cog") or ""),
            used_name=str(data.get("used_name") or ""),
            used_first_name=str(data.get("used_first_name") or ""),
        )


@dataclass(frozen=True, slots=True)
class Ins:
    """An INS: the matricule (15 characters, key included) and its OID."""

    matricule: str
    oid: str


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """An identity as the SUT holds it."""

    id: str
    traits: PatientTraits
    status: IdentityStatus
    ins: Ins | None = None
    identity_document: str = ""
    origin: str = "local"
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PatientRecord:
        ins = data.get("ins")
        return cls(
            id=str(data["id"]),
            traits=PatientTraits.from_json(data["traits"]),
            status=IdentityStatus(data["status"]),
            ins=Ins(str(ins["matricule"]), str(ins["oid"])) if ins else None,
            identity_document=str(data.get("identity_document") or ""),
            origin=str(data.get("origin") or "local"),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class InsOperationResult:
    """What the SUT reports after an INSi search or verification."""

    code: str
    """The INSi return code (``00``, ``01``, ``02``) or ``fault`` / ``error``."""
    outcome: str
    """search: ``found``/``not-found``/``several``; verify: ``OK``/``KO``; or ``error``."""
    patient: PatientRecord


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One entry of the SUT's own call log."""

    timestamp: str
    service: str
    operation: str
    purpose: str
    return_code: str
    auth_mode: str = ""
    patient_id: str = ""
    returned: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TraceEntry:
        return cls(
            timestamp=str(data.get("timestamp", "")),
            service=str(data.get("service", "")),
            operation=str(data.get("operation", "")),
            purpose=str(data.get("purpose", "")),
            return_code=str(data.get("return_code", "")),
            auth_mode=str(data.get("auth_mode", "")),
            patient_id=str(data.get("patient_id", "")),
            returned=dict(data.get("returned") or {}),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class WorklistItem:
    """An identity or a piece of data the SUT set aside for a user to review."""

    patient_id: str
    reason: str
    created: str = ""


@dataclass(frozen=True, slots=True)
class FeedAck:
    """The SUT's answer to an HL7 v2 identity message."""

    ack_code: str
    """MSA-1: ``AA``, ``AE`` or ``AR``."""
    message: bytes
    """The whole ACK as received."""
    patient_id: str = ""


@dataclass(frozen=True, slots=True)
class InsiEndpoint:
    """Where and how the SUT must reach the INSi simulator."""

    url: str
    ca_pem: str
    client_cert_pem: str = ""
    client_key_pem: str = ""
    cps_cert_pem: str = ""
    cps_key_pem: str = ""


@dataclass(frozen=True, slots=True)
class DmpEndpoint:
    """Where and how the SUT must reach the DMP simulator.

    The organisation certificate and key are both the TLS client identity and the key
    that signs the VIHF assertion of every request.
    """

    url: str
    ca_pem: str
    client_cert_pem: str
    client_key_pem: str

    def to_json(self) -> dict[str, str]:
        return {
            "url": self.url,
            "ca_pem": self.ca_pem,
            "client_cert_pem": self.client_cert_pem,
            "client_key_pem": self.client_key_pem,
        }


@dataclass(frozen=True, slots=True)
class MssanteEndpoint:
    """Where and how the SUT must reach the MSSanté operator simulator, and the BAL it uses there.

    SMTP (submission, STARTTLS) and IMAP (STARTTLS) on loopback; the login is the BAL
    address. The organisation certificate is the TLS client identity. ``dst_urls`` are
    the Mailiz DST-style entry points by kind (``igc-sante``, ``internet``) for the
    "Opérateur Mailiz" profile; a SUT without that profile ignores them.
    """

    smtp_host: str
    smtp_port: int
    imap_host: str
    imap_port: int
    ca_pem: str
    client_cert_pem: str
    client_key_pem: str
    address: str
    password: str
    dst_urls: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "smtp_host": self.smtp_host,
            "smtp_port": self.smtp_port,
            "imap_host": self.imap_host,
            "imap_port": self.imap_port,
            "ca_pem": self.ca_pem,
            "client_cert_pem": self.client_cert_pem,
            "client_key_pem": self.client_key_pem,
            "address": self.address,
            "password": self.password,
            "dst_urls": dict(self.dst_urls),
        }


@dataclass(frozen=True, slots=True)
class AnnuaireEndpoint:
    """Where the SUT finds the Annuaire Santé FHIR API (base URL), the API key it sends, the CA it trusts."""

    url: str
    api_key: str
    ca_pem: str

    def to_json(self) -> dict[str, str]:
        return {"url": self.url, "api_key": self.api_key, "ca_pem": self.ca_pem}


@dataclass(frozen=True, slots=True)
class PscEndpoint:
    """Where the SUT finds Pro Santé Connect (its discovery document) and the client registration it uses there."""

    discovery_url: str
    client_id: str
    client_secret: str
    ca_pem: str

    def to_json(self) -> dict[str, str]:
        return {
            "discovery_url": self.discovery_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "ca_pem": self.ca_pem,
        }


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """Everything the harness tells the SUT about the simulators it must use (an absent one is left as it is)."""

    insi: InsiEndpoint | None = None
    dmp: DmpEndpoint | None = None
    mssante: MssanteEndpoint | None = None
    annuaire: AnnuaireEndpoint | None = None
    psc: PscEndpoint | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.insi is not None:
            out["insi"] = {
                "url": self.insi.url,
                "ca_pem": self.insi.ca_pem,
                "client_cert_pem": self.insi.client_cert_pem,
                "client_key_pem": self.insi.client_key_pem,
                "cps_cert_pem": self.insi.cps_cert_pem,
                "cps_key_pem": self.insi.cps_key_pem,
            }
        if self.dmp is not None:
            out["dmp"] = self.dmp.to_json()
        if self.mssante is not None:
            out["mssante"] = self.mssante.to_json()
        if self.annuaire is not None:
            out["annuaire"] = self.annuaire.to_json()
        if self.psc is not None:
            out["psc"] = self.psc.to_json()
        return out


@dataclass(frozen=True, slots=True)
class SutDescription:
    """Who the SUT is and what it offers, from ``GET /capabilities``."""

    publisher: str
    software: str
    version: str
    capabilities: frozenset[Capability]
    profiles: tuple[str, ...]
    mllp: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class ProducedDocument:
    """A document the SUT produced on request: the CDA R2 and the standalone PDF/A-1 beside it."""

    document_id: str
    """The CDA ``ClinicalDocument/id`` (``root`` or ``root^extension``)."""
    type_code: str
    """The document type code the SUT gave the document (``ClinicalDocument/code/@code``)."""
    cda: bytes | None
    """The CDA R2 document as the SUT serialised it, or None when it produced none."""
    pdf: bytes | None
    """The standalone PDF the SUT produced alongside (PDF/A-1 expected), or None."""
    pdf_file_name: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "type_code": self.type_code,
            "cda_base64": _b64(self.cda),
            "pdf_base64": _b64(self.pdf),
            "pdf_file_name": self.pdf_file_name,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProducedDocument:
        return cls(
            document_id=_text(data, "document_id"),
            type_code=_text(data, "type_code"),
            cda=_unb64(data.get("cda_base64"), "cda_base64"),
            pdf=_unb64(data.get("pdf_base64"), "pdf_base64"),
            pdf_file_name=str(data.get("pdf_file_name") or ""),
        )


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """A document in a patient's record at the SUT, produced there or imported."""

    document_id: str
    type_code: str
    title: str
    creation_time: str
    """ISO 8601 form of the CDA ``effectiveTime`` (``2024-03-05T10:15:00+01:00``)."""
    origin: str
    """``produced`` (by the SUT) or ``imported`` (received from another producer)."""
    has_stylesheet: bool = False
    """True when the SUT kept the producer's stylesheet with the document (CDA/INT.15)."""
    stylesheet_sha256: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "type_code": self.type_code,
            "title": self.title,
            "creation_time": self.creation_time,
            "origin": self.origin,
            "has_stylesheet": self.has_stylesheet,
            "stylesheet_sha256": self.stylesheet_sha256,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StoredDocument:
        has_stylesheet = data.get("has_stylesheet", False)
        if not isinstance(has_stylesheet, bool):
            raise TypeError("'has_stylesheet' must be a boolean")
        return cls(
            document_id=_text(data, "document_id"),
            type_code=_text(data, "type_code"),
            title=str(data.get("title") or ""),
            creation_time=_text(data, "creation_time"),
            origin=_text(data, "origin"),
            has_stylesheet=has_stylesheet,
            stylesheet_sha256=str(data.get("stylesheet_sha256") or ""),
        )


DMP_RESULTS = ("sent", "not-sent", "failed")
"""What the SUT says became of a DMP operation: done, not attempted (with the reason), or refused by the DMP."""

DMP_ACTIONS = ("send", "replace", "delete")
"""The explicit DMP operations on a document: send it, replace the entry sent before, delete it."""


@dataclass(frozen=True, slots=True)
class DmpOutcome:
    """The SUT's answer to a validation or a DMP operation on a document."""

    result: str
    """``sent``, ``not-sent`` (the SUT did not try: opposition, identity not qualified...) or ``failed``."""
    detail: str
    """Why, in the SUT's words (the DMP's error code and context on ``failed``)."""
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, str]:
        return {"dmp": self.result, "detail": self.detail}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DmpOutcome:
        result = _text(data, "dmp")
        if result not in DMP_RESULTS:
            raise ValueError(f"'dmp' must be one of {', '.join(DMP_RESULTS)}, not {result!r}")
        detail = data.get("detail", "")
        if not isinstance(detail, str):
            raise TypeError("'detail' must be a string")
        return cls(result=result, detail=detail, raw=data)


MSS_RESULTS = ("sent", "not-sent", "failed")
"""What the SUT says became of an MSSanté sending: sent, not attempted (with the reason), or failed."""

MSS_TRANSPORTS = ("smtp", "dst")
"""How the SUT submits a message: SMTP to the operator, or the Mailiz DST interface ("Opérateur Mailiz")."""


@dataclass(frozen=True, slots=True)
class MssSendRequest:
    """What the professional asks the SUT to send by MSSanté.

    ``recipients`` are professional BAL addresses; with ``to_patient`` the SUT also
    writes to the patient's own mailbox, whose address it builds itself from the
    patient's qualified INS (and must refuse to build otherwise).
    """

    patient_id: str
    document_ids: tuple[str, ...] = ()
    recipients: tuple[str, ...] = ()
    to_patient: bool = False
    delivery_receipt: bool = False
    """Ask for a DSN delivery receipt (``Return-Receipt-To``)."""
    read_receipt: bool = False
    """Ask for an MDN read receipt (``Disposition-Notification-To``)."""
    no_reply: bool = False
    """The professional wants no reply from the patient (``X-MSS-MES: FIN``)."""
    transport: str = "smtp"
    text: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "document_ids": list(self.document_ids),
            "recipients": list(self.recipients),
            "to_patient": self.to_patient,
            "delivery_receipt": self.delivery_receipt,
            "read_receipt": self.read_receipt,
            "no_reply": self.no_reply,
            "transport": self.transport,
            "text": self.text,
        }


@dataclass(frozen=True, slots=True)
class MssOutcome:
    """The SUT's answer to an MSSanté sending or reply."""

    result: str
    """``sent``, ``not-sent`` (the SUT did not try: identity not qualified...) or ``failed`` (TLS, SMTP refusal)."""
    detail: str
    message_id: str = ""
    """The ``Message-ID`` the SUT gave the message, when it sent one."""
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, str]:
        return {"mss": self.result, "detail": self.detail, "message_id": self.message_id}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MssOutcome:
        result = _text(data, "mss")
        if result not in MSS_RESULTS:
            raise ValueError(f"'mss' must be one of {', '.join(MSS_RESULTS)}, not {result!r}")
        detail = data.get("detail", "")
        message_id = data.get("message_id", "") or ""
        if not isinstance(detail, str) or not isinstance(message_id, str):
            raise TypeError("'detail' and 'message_id' must be strings")
        return cls(result=result, detail=detail, message_id=message_id, raw=data)


MSS_INTEGRATION = ("integrated", "rejected", "no-document", "receipt")
"""What the SUT did with a message it read from its BAL: documents integrated for a patient; integration refused
(with an error code 900–906); a message with no document; a delivery or read receipt."""


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A message the SUT read from its BAL over IMAP, and what it did with it."""

    message_id: str
    sender: str
    subject: str
    status: str
    """One of :data:`MSS_INTEGRATION`."""
    patient_id: str = ""
    """The local patient the SUT attached the message to (identified by the XDM ``patientId``), or ``""``."""
    document_ids: tuple[str, ...] = ()
    error_code: str = ""
    """The integration error code (``902`` unknown patient...) when ``rejected``."""
    receipt_sent: bool = False
    """The SUT sent an MDN back (the message asked for one)."""
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "sender": self.sender,
            "subject": self.subject,
            "status": self.status,
            "patient_id": self.patient_id,
            "document_ids": list(self.document_ids),
            "error_code": self.error_code,
            "receipt_sent": self.receipt_sent,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReceivedMessage:
        status = _text(data, "status")
        if status not in MSS_INTEGRATION:
            raise ValueError(f"'status' must be one of {', '.join(MSS_INTEGRATION)}, not {status!r}")
        documents = data.get("document_ids") or []
        if not isinstance(documents, list) or not all(isinstance(d, str) for d in documents):
            raise TypeError("'document_ids' must be a list of strings")
        receipt_sent = data.get("receipt_sent", False)
        if not isinstance(receipt_sent, bool):
            raise TypeError("'receipt_sent' must be a boolean")
        return cls(
            message_id=_text(data, "message_id"),
            sender=str(data.get("sender") or ""),
            subject=str(data.get("subject") or ""),
            status=status,
            patient_id=str(data.get("patient_id") or ""),
            document_ids=tuple(documents),
            error_code=str(data.get("error_code") or ""),
            receipt_sent=receipt_sent,
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class Correspondent:
    """A health professional the SUT found in the Annuaire Santé, with the MSSanté BAL it would write to."""

    idnps: str
    """The national professional identifier (IDNPS, ``8`` + RPPS)."""
    family: str
    given: str
    mailboxes: tuple[str, ...] = ()
    """MSSanté BAL addresses (``telecom`` of type MSSANTE), the one the SUT prefers first."""
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"idnps": self.idnps, "family": self.family, "given": self.given, "mailboxes": list(self.mailboxes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Correspondent:
        mailboxes = data.get("mailboxes") or []
        if not isinstance(mailboxes, list) or not all(isinstance(m, str) for m in mailboxes):
            raise TypeError("'mailboxes' must be a list of strings")
        return cls(
            idnps=_text(data, "idnps"),
            family=str(data.get("family") or ""),
            given=str(data.get("given") or ""),
            mailboxes=tuple(mailboxes),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class PscClient:
    """What the SUT registers at Pro Santé Connect: where PSC sends the browser back after login and logout."""

    redirect_uri: str
    post_logout_redirect_uri: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PscClient:
        return cls(_text(data, "redirect_uri"), _text(data, "post_logout_redirect_uri"))


@dataclass(frozen=True, slots=True)
class PscLogin:
    """The start of a login: the authorization request URL the SUT sends the user's browser to."""

    authorization_url: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PscLogin:
        return cls(_text(data, "authorization_url"), raw=data)


PSC_METHODS = ("psc", "password", "")
"""How the current user logged in: Pro Santé Connect, the SUT's own password, or nobody is logged in."""


@dataclass(frozen=True, slots=True)
class PscSession:
    """Who is logged in to the SUT now, and how; after a refused login, why."""

    logged_in: bool
    method: str
    """One of :data:`PSC_METHODS`."""
    user_id: str = ""
    """The SUT's own account id of the user (the same account whatever the login method, once linked)."""
    subject_name_id: str = ""
    """The PSC ``SubjectNameID`` (IDNPS, ``8`` + RPPS) of the user, when known."""
    family: str = ""
    given: str = ""
    detail: str = ""
    """Why the last login was refused (a bad token...), in the SUT's words; ``""`` otherwise."""
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PscSession:
        logged_in = data.get("logged_in")
        if not isinstance(logged_in, bool):
            raise TypeError("'logged_in' must be a boolean")
        method = str(data.get("method") or "")
        if method not in PSC_METHODS:
            raise ValueError(
                f"'method' must be one of {', '.join(m or '(empty)' for m in PSC_METHODS)}, not {method!r}"
            )
        return cls(
            logged_in=logged_in,
            method=method,
            user_id=str(data.get("user_id") or ""),
            subject_name_id=str(data.get("subject_name_id") or ""),
            family=str(data.get("family") or ""),
            given=str(data.get("given") or ""),
            detail=str(data.get("detail") or ""),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class PscLogout:
    """The end of a session: the end-session URL the SUT sends the browser to (``""`` when it calls none)."""

    end_session_url: str
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PscLogout:
        return cls(str(data.get("end_session_url") or ""), raw=data)


@dataclass(frozen=True, slots=True)
class IdDocumentCopy:
    """A copy of a patient's identity document the SUT keeps ("Stockage des copies de titres d'identité")."""

    document_id: str
    media_type: str
    stored_at: str
    """ISO 8601, by the SUT's clock."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IdDocumentCopy:
        return cls(_text(data, "document_id"), _text(data, "media_type"), str(data.get("stored_at") or ""))


@dataclass(frozen=True, slots=True)
class RawStorageItem:
    """One piece of the SUT's storage as it sits on disk (a file, a database file), bytes as stored."""

    name: str
    content: bytes

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RawStorageItem:
        content = _unb64(data.get("content_base64"), "content_base64")
        return cls(_text(data, "name"), content or b"")


PORTABILITY_SCOPES = ("unitaire", "cible", "massif")
"""What a portability export covers: one patient, the patients listed, every patient."""


@dataclass(frozen=True, slots=True)
class Appointment:
    """An appointment of the SUT's agenda."""

    appointment_id: str
    patient_id: str
    start: str
    """ISO 8601 with its offset (``2026-03-02T09:30:00+01:00``)."""
    end: str
    summary: str

    def to_json(self) -> dict[str, str]:
        return {
            "appointment_id": self.appointment_id,
            "patient_id": self.patient_id,
            "start": self.start,
            "end": self.end,
            "summary": self.summary,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Appointment:
        return cls(
            appointment_id=_text(data, "appointment_id"),
            patient_id=_text(data, "patient_id"),
            start=_text(data, "start"),
            end=_text(data, "end"),
            summary=_text(data, "summary"),
        )


@dataclass(frozen=True, slots=True)
class PortabilityRequest:
    """What an administrator asks the SUT to export (LGC.PORT.01).

    ``scope`` is one of :data:`PORTABILITY_SCOPES` (``unitaire`` needs exactly one patient,
    ``cible`` at least one, ``massif`` none: every patient); ``since`` is the depth, an ISO
    date ``YYYY-MM-DD`` (the data produced on or after that day), or ``""`` for the whole history.
    The SUT checks the request and refuses a bad one (422).
    """

    scope: str
    patient_ids: tuple[str, ...] = ()
    since: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"scope": self.scope, "patient_ids": list(self.patient_ids), "since": self.since}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PortabilityRequest:
        patient_ids = data.get("patient_ids") or []
        if not isinstance(patient_ids, list) or not all(isinstance(p, str) for p in patient_ids):
            raise TypeError("'patient_ids' must be a list of strings")
        since = data.get("since") or ""
        if not isinstance(since, str):
            raise TypeError("'since' must be a string")
        return cls(scope=_text(data, "scope"), patient_ids=tuple(patient_ids), since=since)


@dataclass(frozen=True, slots=True)
class PortabilityExport:
    """The archive the SUT exported (a zip, ``docs/portability-archive.md``) and the file name it gave it."""

    file_name: str
    archive: bytes

    def to_json(self) -> dict[str, str]:
        return {"file_name": self.file_name, "archive_base64": base64.b64encode(self.archive).decode("ascii")}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PortabilityExport:
        archive = _unb64(data.get("archive_base64"), "archive_base64")
        if archive is None:
            raise ValueError("'archive_base64' is required")
        return cls(file_name=_text(data, "file_name"), archive=archive)


@dataclass(frozen=True, slots=True)
class PortabilityImport:
    """What the SUT did with a portability archive it was given to import."""

    patient_ids: tuple[str, ...]
    """The SUT's ids of the identities the archive's patients were found as, or created as."""
    documents: int
    """How many documents the SUT stored (the PDF copies of CDA documents do not count)."""
    appointments: int
    """How many appointments of the agenda the SUT stored."""
    refused: tuple[str, ...] = ()
    """One message per part of the archive the SUT refused (a broken CDA, an unknown attendee...)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "patient_ids": list(self.patient_ids),
            "documents": self.documents,
            "appointments": self.appointments,
            "refused": list(self.refused),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PortabilityImport:
        lists: dict[str, tuple[str, ...]] = {}
        for name in ("patient_ids", "refused"):
            value = data.get(name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise TypeError(f"'{name}' must be a list of strings")
            lists[name] = tuple(value)
        counts: dict[str, int] = {}
        for name in ("documents", "appointments"):
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise TypeError(f"'{name}' must be a non-negative integer")
            counts[name] = value
        return cls(lists["patient_ids"], counts["documents"], counts["appointments"], lists["refused"])


def _text(data: dict[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise TypeError(f"'{name}' must be a string")
    return value


def _b64(content: bytes | None) -> str | None:
    return None if content is None else base64.b64encode(content).decode("ascii")


def _unb64(value: Any, name: str) -> bytes | None:
    """Strict base64 (RFC 4648 alphabet, padding checked); raises ValueError or TypeError."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"'{name}' must be a base64 string or null")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        raise ValueError(f"'{name}' is not valid base64") from None
