"""The practice's MSSanté messaging: the messages it composes, the XDM it packs and reads, what it integrates.

Sending (``shared/docs/protocols.md`` §3.2–3.3): one RFC 5322 message per patient, from
the practice's BAL with the professional's label (``Dr Camille TEMOIN Cabinet Témoin``),
to the recipients and, when asked, to the patient's own BAL ``<matricule INS>@patient.mssante.fr``
(only for a qualified identity). A message carrying documents has the subject
``XDM/1.0/DDM+<title> <BIRTH NAME> <first first name> <dd/mm/yyyy>``, the ``X-MSS-*``
headers (``NIL`` always, ``INS``, one ``CODECDA`` per CDA, ``MES: FIN`` when no reply is
wanted), the ``IHE_XDM.ZIP`` attachment (``INDEX.HTM``, ``README.TXT``,
``IHE_XDM/SUBSET01/METADATA.XML`` built with :mod:`harness.reference.xds_metadata` from
the entries of :mod:`harness.reference.xds_entry`, the CDA files ``DOC0001.XML``…, each PDF
beside it) and each document's PDF/A-1 attached as well. Receipts are asked with
``Return-Receipt-To`` (DSN) and ``Disposition-Notification-To`` (MDN).

Reading: each unseen message of the BAL is a receipt (a DSN or an MDN), a message
carrying an XDM (read with bounded, hostile-input-proof code, its patient found by the
METADATA ``patientId`` INS, each CDA imported with the producer's document import), or a
message without document. A message asking for an MDN gets one (``processed``, or
``processed/Error: <code>^<label>`` with the courriel-mss IG codes 902, 903, 906). The
practice keeps what it read so a user can reply (``In-Reply-To``, ``References``).
The composition and reception defects of :mod:`harness.reference.defects` are switched
here, the TLS ones in :mod:`harness.reference.mss_transport`.
"""

from __future__ import annotations

import base64
import copy
import html
import io
import logging
import re
import stat
import threading
import unicodedata
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import EmailPolicy
from email.utils import format_datetime, formataddr, getaddresses, make_msgid
from pathlib import PurePosixPath
from typing import Any

from lxml import etree

from harness.reference import SOFTWARE, __version__, xds_entry
from harness.reference.cda import HL7, carried_ins
from harness.reference.doctypes import Author, DocumentCatalog, DocumentType, Practice
from harness.reference.documents import INS_TYPES, DocumentService, local_zone
from harness.reference.identity import Conflict
from harness.reference.model import InvalidInput, Patient, normalise_name
from harness.reference.mss_transport import EHLO_NAME, MssanteEndpoint, MssTransport, TransportError
from harness.reference.xds_metadata import (
    LCM,
    RIM,
    DocumentEntry,
    Scheme,
    SubmissionSet,
    XdsAuthor,
    add_slot,
    provide_and_register_request,
)

log = logging.getLogger("harness.reference")

PRODUCT_REFERENCE = "DEV000042"
"""The practice software's reference (``X-MSS-NIL``): a test value, as ANS would assign one."""
PATIENT_DOMAIN = "patient.mssante.fr"
XDM_NAME = "IHE_XDM.ZIP"
SUBSET = "IHE_XDM/SUBSET01"
SUBJECT_PREFIX = "XDM/1.0/DDM+"
MAILIZ = "Opérateur Mailiz"
"""The profile under which the practice may submit through the Mailiz DST interface."""
SENT, NOT_SENT, FAILED = "sent", "not-sent", "failed"
INTEGRATED, REJECTED, NO_DOCUMENT, RECEIPT = "integrated", "rejected", "no-document", "receipt"
TRANSPORTS = ("smtp", "dst")
UNKNOWN_PATIENT, NO_INS, OTHER_ERROR = "902", "903", "906"
ERROR_LABELS = {
    UNKNOWN_PATIENT: "Patient inconnu",
    NO_INS: "Absence d'INS dans le document",
    OTHER_ERROR: "Autre erreur",
}
"""Integration error codes of the courriel-mss IG (ASCII labels: they go into an MDN field)."""
INS_OIDS = frozenset(INS_TYPES)
CDA_TYPES = frozenset({"text/xml", "application/xml"})
MAX_TEXT = 100_000
MAX_RECIPIENTS = 50
MAX_FETCH = 50
"""Most messages one BAL reading takes (the others wait for the next)."""
MAX_XDM_BYTES = 20 * 1024 * 1024
MAX_MEMBERS = 100
MAX_MEMBER_BYTES = 10 * 1024 * 1024
MAX_XDM_UNCOMPRESSED = 50 * 1024 * 1024
MAX_RATIO = 100
RATIO_FLOOR = 1024 * 1024
NOT_QUALIFIED = "the identity is not qualified (status {status}): no message to a patient BAL without a qualified INS"

_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_SUBJECT = re.compile(
    r"^XDM/1\.0/DDM\+.+ (?P<name>\S+) (?P<first>\S+) (?P<day>\d{2})/(?P<month>\d{2})/(?P<year>\d{4})$"
)
_CX = re.compile(r"^(?P<id>[^\^]+)\^\^\^&(?P<oid>[0-9.]+)&ISO\^(?P<type>[A-Z]+)$")
_METADATA = re.compile(r"^IHE_XDM/([^/]+)/METADATA\.XML$", re.IGNORECASE)
_DRIVE = re.compile(r"^[A-Za-z]:")
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


class _SmtpPolicy(EmailPolicy):
    """``policy.SMTP`` that never leaves a header name alone on its first line.

    The standard folder moves a 70-to-77-character value whole to a continuation line
    (``Subject:`` CRLF `` XDM/1.0/DDM+…``), which Python's own parser then reads back
    with a leading space; such a value is kept on the header's line instead (under the
    998-character limit). Every other fold, encoded words included, is the standard one.
    """

    def fold(self, name: str, value: str) -> str:
        folded = str(super().fold(name, value))
        alone = f"{name}:{self.linesep} "
        if folded.startswith(alone) and self.linesep not in folded[len(alone) :].rstrip(self.linesep):
            joined = f"{name}: {folded[len(alone) :]}"
            return joined if len(joined) <= 998 else folded
        return folded

    def fold_binary(self, name: str, value: str) -> bytes:
        folded = bytes(super().fold_binary(name, value))
        alone = f"{name}:{self.linesep} ".encode("ascii")
        linesep = self.linesep.encode("ascii")
        if folded.startswith(alone) and linesep not in folded[len(alone) :].rstrip(linesep):
            joined = f"{name}: ".encode("ascii") + folded[len(alone) :]
            return joined if len(joined) <= 998 else folded
        return folded


SMTP_POLICY = _SmtpPolicy(linesep="\r\n")
"""How the practice writes messages: RFC 5322 with CRLF (``policy.SMTP``), see :class:`_SmtpPolicy`."""


class OperatorUnavailable(RuntimeError):
    """The BAL could not be read (the operator unreachable, TLS or login refused); the API answers 502."""


class UnknownMessage(LookupError):
    """No message with this Message-ID was read from the BAL (the API answers 404)."""


class UnreadableXdm(ValueError):
    """An ``IHE_XDM.ZIP`` the practice refuses to read (integration error 906)."""


# -- records ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MssOutcome:
    """What the control API answers to a sending or a reply."""

    result: str
    detail: str
    message_id: str = ""

    def to_json(self) -> dict[str, str]:
        return {"mss": self.result, "detail": self.detail, "message_id": self.message_id}


@dataclass(frozen=True, slots=True)
class Received:
    """A message read from the BAL and what the practice did with it."""

    message_id: str
    sender: str
    subject: str
    status: str
    patient_id: str = ""
    document_ids: tuple[str, ...] = ()
    error_code: str = ""
    receipt_sent: bool = False
    detail: str = ""

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


@dataclass(frozen=True, slots=True)
class SendRequest:
    """A checked ``POST /patients/{id}/mss-messages`` body."""

    document_ids: tuple[str, ...]
    recipients: tuple[str, ...]
    to_patient: bool
    delivery_receipt: bool
    read_receipt: bool
    no_reply: bool
    transport: str
    text: str


@dataclass(frozen=True, slots=True)
class Sender:
    """Who a message is from: the BAL address, and the label shown beside it ("" for a bare address)."""

    address: str
    label: str = ""

    @property
    def header(self) -> str:
        return formataddr((self.label, self.address)) if self.label else self.address


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file attached to a message."""

    file_name: str
    content_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class XdmDocument:
    """One document of an XDM package: its CDA file name and bytes, its entry, the PDF put beside it."""

    file_name: str
    cda: bytes
    entry: DocumentEntry
    pdf: bytes | None = None

    @property
    def pdf_name(self) -> str:
        return self.file_name.rsplit(".", 1)[0] + ".PDF"


@dataclass(frozen=True, slots=True)
class ReceivedDocument:
    """A document read from a received XDM: its path in the zip, the entry's mime type, its bytes."""

    path: str
    mime_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class XdmContent:
    """What a received XDM says: the patient ids of its metadata (submission set and entries), its documents."""

    patient_ids: tuple[str, ...]
    documents: tuple[ReceivedDocument, ...] = ()


@dataclass(slots=True)
class _Integration:
    status: str
    patient_id: str = ""
    document_ids: list[str] = field(default_factory=list)
    error_code: str = ""
    detail: str = ""


# -- composition (pure) ----------------------------------------------------------------------------------
def sender_label(author: Author, practice: Practice) -> str:
    """``<title> <first name> <FAMILY NAME> <entity>``, e.g. ``Dr Camille TEMOIN Cabinet Témoin``."""
    title = author.suffix.strip().capitalize()
    parts = (title, author.given.strip(), author.family.strip().upper(), practice.name.strip())
    return " ".join(p for p in parts if p)


def patient_address(matricule: str) -> str:
    """The patient's own BAL: ``<matricule INS>@patient.mssante.fr``."""
    return f"{matricule}@{PATIENT_DOMAIN}"


def patient_words(patient: Patient) -> str:
    """``<BIRTH NAME> <first first name> <dd/mm/yyyy>``: how a subject names the patient."""
    traits = patient.traits
    year, month, day = traits.birth_date.split("-")
    return f"{traits.birth_name.upper()} {traits.first_first_name} {day}/{month}/{year}"


def xdm_subject(titles: Sequence[str], patient: Patient, prefix: bool = True) -> str:
    """``XDM/1.0/DDM+<document title> <BIRTH NAME> <first first name> <dd/mm/yyyy birth date>``."""
    return f"{SUBJECT_PREFIX if prefix else ''}{', '.join(titles)} {patient_words(patient)}"


def cda_code(cda: bytes) -> str:
    """``ClinicalDocument/code/@code``."""
    code = _xml(cda).find(f"{{{HL7}}}code")
    return "" if code is None else code.get("code", "")


def carries_qualified_ins(cda: bytes, matricule: str) -> bool:
    """True when the CDA's recordTarget carries ``matricule`` under an INS OID, with the strict traits beside it."""
    role = _xml(cda).find(f"{{{HL7}}}recordTarget/{{{HL7}}}patientRole")
    if role is None or not matricule:
        return False
    has_ins = any(i.get("root") in INS_OIDS and i.get("extension") == matricule for i in role.iterfind(f"{{{HL7}}}id"))
    person = role.find(f"{{{HL7}}}patient")
    traits = person is not None and all(
        person.find(f"{{{HL7}}}{path}") is not None
        for path in ("name/{urn:hl7-org:v3}family", "administrativeGenderCode", "birthTime")
    )
    return has_ins and traits


def embedded_pdf(cda: bytes) -> bytes | None:
    """The PDF of a level-1 document (``nonXMLBody/text``, base64), or None."""
    text = _xml(cda).find(f"{{{HL7}}}component/{{{HL7}}}nonXMLBody/{{{HL7}}}text")
    if text is None or text.get("mediaType") != "application/pdf" or text.get("representation") != "B64":
        return None
    try:
        return base64.b64decode("".join((text.text or "").split()), validate=True)
    except ValueError:
        return None


def xdm_metadata(submission: SubmissionSet, documents: Sequence[XdmDocument]) -> bytes:
    """``METADATA.XML``: the SubmitObjectsRequest of the documents, each entry's ``URI`` slot naming its file."""
    submit = xdm_submit_objects(submission, [(d.entry, d.file_name) for d in documents])
    return etree.tostring(submit, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def xdm_submit_objects(submission: SubmissionSet, files: Sequence[tuple[DocumentEntry, str]]) -> etree._Element:
    """The SubmitObjectsRequest of an XDM submission set: each entry with a ``URI`` slot naming its file."""
    request = provide_and_register_request(submission, list(files), {})
    found = request.find(f"{{{LCM}}}SubmitObjectsRequest")
    assert found is not None  # provide_and_register_request always writes it
    submit = copy.deepcopy(found)
    for document_entry, file_name in files:
        entry = submit.find(f".//{{{RIM}}}ExtrinsicObject[@id='{document_entry.entry_uuid}']")
        assert entry is not None
        add_slot(entry, "URI", file_name)
    return submit


def practice_entry(
    catalog: DocumentCatalog, kind: DocumentType, cda: bytes, patient_cx: str, source_patient_cx: str
) -> DocumentEntry:
    """The XDM document entry of one of the practice's CDA documents (author, class and format of the practice)."""
    return xds_entry.document_entry(
        cda,
        kind,
        catalog.dmp,
        patient=patient_cx,
        source_patient=source_patient_cx,
        author=xds_entry.practice_author(catalog.author, catalog.practice),
        format_code=xds_entry.default_format_code(kind, catalog.dmp),
    )


def xdm_patient_cx(patient: Patient, practice: Practice) -> str:
    """The INS as a CX (NH) for a qualified identity, else the IPP (PI): the receiver then cannot integrate."""
    ins = carried_ins(patient)
    return xds_entry.ipp_cx(patient.id, practice) if ins is None else xds_entry.patient_cx(ins[0], ins[1], "NH")


def build_xdm(
    submission: SubmissionSet, documents: Sequence[XdmDocument], *, with_metadata: bool = True, sender: str = ""
) -> bytes:
    """The ``IHE_XDM.ZIP`` of one submission set (IHE ITI TF-1 §16 media layout)."""
    stamp = datetime.strptime(submission.submission_time, "%Y%m%d%H%M%S").timetuple()[:6]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:

        def write(name: str, content: bytes) -> None:
            archive.writestr(zipfile.ZipInfo(name, date_time=stamp), content, compress_type=zipfile.ZIP_DEFLATED)

        write("INDEX.HTM", _index_html(documents, sender).encode("utf-8"))
        write("README.TXT", _readme(sender).encode("utf-8"))
        if with_metadata:
            write(f"{SUBSET}/METADATA.XML", xdm_metadata(submission, documents))
        for document in documents:
            write(f"{SUBSET}/{document.file_name}", document.cda)
            if document.pdf is not None:
                write(f"{SUBSET}/{document.pdf_name}", document.pdf)
    return buffer.getvalue()


def compose_message(
    sender: Sender,
    recipients: Sequence[str],
    subject: str,
    text: str,
    date: datetime,
    *,
    message_id: str = "",
    nil: str = PRODUCT_REFERENCE,
    headers: Sequence[tuple[str, str]] = (),
    attachments: Sequence[Attachment] = (),
) -> EmailMessage:
    """An RFC 5322 message (policy SMTP): a text/plain body, then the attachments (multipart/mixed).

    ``message_id`` and ``nil`` are left out when empty; ``headers`` are added in order (one per pair).
    """
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = sender.header
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(date)
    if message_id:
        message["Message-ID"] = message_id
    message["Subject"] = subject
    if nil:
        message["X-MSS-NIL"] = nil
    for name, value in headers:
        message[name] = value
    message.set_content(text, charset="utf-8", cte="quoted-printable")
    for attachment in attachments:
        maintype, subtype = attachment.content_type.split("/", 1)
        message.add_attachment(attachment.content, maintype=maintype, subtype=subtype, filename=attachment.file_name)
    for part in message.iter_parts():
        del part["MIME-Version"]  # a header of the message, not of its parts
    return message


def compose_mdn(
    original: EmailMessage,
    reporter: Sender,
    date: datetime,
    *,
    message_id: str = "",
    nil: str = PRODUCT_REFERENCE,
    error_code: str = "",
) -> EmailMessage:
    """The RFC 8098 notification of ``original`` (courriel-mss IG): processed, or processed with an error code.

    Part 1 the human text, part 2 ``message/disposition-notification`` (Final-Recipient,
    Original-Recipient, Original-Message-ID, Disposition), part 3 the original message
    with its attachments.
    """
    subject = _header(original, "Subject")
    original_id = _header(original, "Message-ID")
    disposition = "automatic-action/MDN-sent-automatically; processed"
    if error_code:
        label = ERROR_LABELS.get(error_code, ERROR_LABELS[OTHER_ERROR])
        disposition += f"/Error: {error_code}^{label}"
        subject = f"[KO Intégration système !][{error_code}] {subject}"
        human = (
            f"Le message a été reçu par {reporter.address} mais son contenu n'a pas pu être intégré.\r\n"
            f"Code d'erreur : {error_code} ({label}).\r\n"
        )
    else:
        subject = f"Accusé de traitement : {subject}"
        human = f"Le message a été reçu par {reporter.address} et son contenu a été intégré.\r\n"
    report = EmailMessage(policy=SMTP_POLICY)
    report["From"] = reporter.header
    report["To"] = _header(original, "Disposition-Notification-To")
    report["Date"] = format_datetime(date)
    if message_id:
        report["Message-ID"] = message_id
    report["Subject"] = subject
    if original_id:
        report["In-Reply-To"] = original_id
        report["References"] = original_id
    if nil:
        report["X-MSS-NIL"] = nil
    report["MIME-Version"] = "1.0"
    report["Content-Type"] = 'multipart/report; report-type="disposition-notification"'
    text = EmailMessage(policy=SMTP_POLICY)
    text.set_content(human, charset="utf-8", cte="quoted-printable")
    del text["MIME-Version"]
    fields = [
        f"Reporting-UA: {EHLO_NAME}; {_ascii(SOFTWARE)} {__version__}",
        f"Original-Recipient: rfc822;{reporter.address}",
        f"Final-Recipient: rfc822;{reporter.address}",
    ]
    if original_id:
        fields.append(f"Original-Message-ID: {original_id}")
    fields.append(f"Disposition: {disposition}")
    notification = EmailMessage(policy=SMTP_POLICY)
    notification["Content-Type"] = "message/disposition-notification"
    notification["Content-Transfer-Encoding"] = "7bit"
    notification.set_payload("\r\n".join(fields) + "\r\n")
    returned = EmailMessage(policy=SMTP_POLICY)
    returned.set_content(original)
    del returned["MIME-Version"]
    for part in (text, notification, returned):
        report.attach(part)
    return report


def compose_reply(
    original: EmailMessage,
    sender: Sender,
    text: str,
    date: datetime,
    *,
    message_id: str = "",
    nil: str = PRODUCT_REFERENCE,
    threaded: bool = True,
) -> EmailMessage:
    """A reply to ``original``'s sender (its Reply-To first): ``RE:`` subject, In-Reply-To and References."""
    recipient = reply_address(original)
    subject = _header(original, "Subject")
    if not subject.lower().startswith("re:"):
        subject = f"RE: {subject}"
    headers: list[tuple[str, str]] = []
    original_id = _header(original, "Message-ID")
    if threaded and original_id:
        references = " ".join([*_header(original, "References").split(), original_id])
        headers = [("In-Reply-To", original_id), ("References", references)]
    return compose_message(sender, [recipient], subject, text, date, message_id=message_id, nil=nil, headers=headers)


def reply_address(message: EmailMessage) -> str:
    """Where a reply goes: the Reply-To address, else the From one."""
    for name in ("Reply-To", "From"):
        addresses = [a for _, a in getaddresses([_header(message, name)]) if "@" in a]
        if addresses:
            return addresses[0]
    return ""


# -- reading a received XDM (hostile input) ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ZipLimits:
    """How much of a received zip the practice agrees to read."""

    archive_bytes: int
    members: int
    member_bytes: int
    total_bytes: int
    """The sum of the uncompressed sizes (declared, and read)."""
    ratio: int = MAX_RATIO
    """The most a member may inflate (uncompressed / compressed), above :attr:`ratio_floor` bytes."""
    ratio_floor: int = RATIO_FLOOR


XDM_LIMITS = ZipLimits(MAX_XDM_BYTES, MAX_MEMBERS, MAX_MEMBER_BYTES, MAX_XDM_UNCOMPRESSED)
"""An ``IHE_XDM.ZIP`` received by MSSanté."""


class SafeZip:
    """A zip from outside, opened for hostile input; raises UnreadableXdm (never more).

    Opening checks the whole central directory before anything is read: the zip's size,
    the member count, each member's declared size and compression ratio and their total;
    a member name that could escape a folder (``..``, absolute, a backslash or NUL), an
    encrypted member, a symbolic link or a name given twice refuses the whole zip.
    :meth:`read` then inflates one member at most up to its declared size, and all reads
    together at most up to the total allowed.
    """

    def __init__(self, data: bytes, limits: ZipLimits = XDM_LIMITS, what: str = "the XDM") -> None:
        self.limits = limits
        self.what = what
        if len(data) > limits.archive_bytes:
            raise UnreadableXdm(f"{what} is {len(data)} bytes, above {limits.archive_bytes}")
        try:
            self._archive = zipfile.ZipFile(io.BytesIO(data))
        except Exception as exc:  # BadZipFile, OSError, ValueError...: a hostile zip must never crash the practice
            raise UnreadableXdm(f"{what} is not a readable zip: {_short(exc)}") from None
        try:
            self._members = self._checked(self._archive.infolist())
        except BaseException:
            self._archive.close()
            raise
        self._budget = limits.total_bytes

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._archive.close()

    @property
    def names(self) -> list[str]:
        """The file members (folders left out), in the zip's order."""
        return list(self._members)

    def _checked(self, members: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
        limits, what = self.limits, self.what
        if len(members) > limits.members:
            raise UnreadableXdm(f"{what} has {len(members)} members, above {limits.members}")
        if sum(m.file_size for m in members) > limits.total_bytes:
            raise UnreadableXdm(f"{what} declares more than {limits.total_bytes} uncompressed bytes")
        out: dict[str, zipfile.ZipInfo] = {}
        for member in members:
            name = member.filename
            why = unsafe_name(name)
            if why:
                raise UnreadableXdm(f"member name {name[:80]!r} {why}")
            if member.is_dir():
                continue
            if member.flag_bits & 0x1:
                raise UnreadableXdm(f"member {name[:80]!r} is encrypted")
            if stat.S_ISLNK(member.external_attr >> 16):
                raise UnreadableXdm(f"member {name[:80]!r} is a symbolic link")
            if name in out:
                raise UnreadableXdm(f"member {name[:80]!r} appears twice")
            if member.file_size > limits.member_bytes:
                raise UnreadableXdm(f"member {name[:80]!r} declares {member.file_size} bytes, above the limit")
            if member.file_size > limits.ratio_floor and member.file_size > limits.ratio * max(member.compress_size, 1):
                raise UnreadableXdm(f"member {name[:80]!r} inflates more than {limits.ratio} times")
            out[name] = member
        return out

    def read(self, name: str, most: int | None = None) -> bytes:
        """The bytes of member ``name`` (a KeyError if there is none), at most ``most`` of them if given.

        Raises UnreadableXdm when the member declares more than that, inflates past what it
        declares, or cannot be read.
        """
        member = self._members[name]
        if most is not None and member.file_size > most:
            raise UnreadableXdm(f"member {name[:80]!r} declares {member.file_size} bytes, above {most}")
        limit = min(member.file_size, self.limits.member_bytes, self._budget)
        chunks: list[bytes] = []
        total = 0
        try:
            with self._archive.open(member) as stream:
                while chunk := stream.read(65536):
                    total += len(chunk)
                    if total > limit:
                        raise UnreadableXdm(f"member {name[:80]!r} inflates past its declared size")
                    chunks.append(chunk)
        except UnreadableXdm:
            raise
        except Exception as exc:  # BadZipFile (CRC), zlib.error, EOFError on a truncated member...
            raise UnreadableXdm(f"member {name[:80]!r} cannot be read: {_short(exc)}") from None
        self._budget -= total
        return b"".join(chunks)


def open_xdm(data: bytes) -> XdmContent:
    """The patient ids and documents of a received ``IHE_XDM.ZIP``; raises UnreadableXdm (never more).

    Bounded and checked by :class:`SafeZip` (:data:`XDM_LIMITS`); ``METADATA.XML`` is
    refused if it declares a DOCTYPE or entities, and parsed without DTD, entities or network.
    """
    with SafeZip(data, XDM_LIMITS) as archive:
        members = {name: archive.read(name) for name in archive.names}
    metadata = [name for name in members if _METADATA.match(name)]
    if not metadata:
        raise UnreadableXdm("the XDM has no IHE_XDM/<subset>/METADATA.XML")
    if len(metadata) > 1:
        raise UnreadableXdm(f"the XDM has {len(metadata)} submission sets; one patient, one set per message")
    folder = metadata[0].rsplit("/", 1)[0]
    root = metadata_root(members[metadata[0]])
    patient_ids = metadata_patient_ids(root)
    documents = []
    for entry in root.iter(f"{{{RIM}}}ExtrinsicObject"):
        uri = slot_value(entry, "URI")
        if not uri or unsafe_name(uri) or ":" in uri:
            raise UnreadableXdm(f"a DocumentEntry has no usable URI slot ({uri[:80]!r})")
        path = f"{folder}/{uri}"
        found = next((name for name in members if name.upper() == path.upper()), None)
        if found is None:
            raise UnreadableXdm(f"the URI {uri[:80]!r} names no file of {folder}/")
        documents.append(ReceivedDocument(found, entry.get("mimeType", ""), members[found]))
    return XdmContent(tuple(patient_ids), tuple(documents))


def metadata_patient_ids(root: etree._Element) -> list[str]:
    """The patient ids (CX) of a METADATA.XML: of its submission sets, then of its document entries."""
    patient_ids: list[str] = []
    for owner in root.iter(f"{{{RIM}}}RegistryPackage", f"{{{RIM}}}ExtrinsicObject"):
        scheme = Scheme.SET_PATIENT_ID if owner.tag == f"{{{RIM}}}RegistryPackage" else Scheme.ENTRY_PATIENT_ID
        for identifier in owner.iterfind(f"{{{RIM}}}ExternalIdentifier"):
            if identifier.get("identificationScheme") == scheme:
                patient_ids.append(identifier.get("value", "").strip())
    return patient_ids


def parse_ins_cx(cx: str) -> tuple[str, str] | None:
    """(matricule, OID) of an INS CX ``matricule^^^&oid&ISO^NH``, or None for any other identifier."""
    match = _CX.match(cx)
    if match is None or match["type"] != "NH" or match["oid"] not in INS_OIDS:
        return None
    if not re.fullmatch(r"[0-9AB]{13}\d{2}", match["id"]):
        return None
    return match["id"], match["oid"]


def unsafe_name(name: str) -> str:
    """Why a zip member name or URI could escape its folder ("" when it cannot)."""
    if "\\" in name or "\x00" in name:
        return "holds a backslash or a NUL"
    if name.startswith("/") or _DRIVE.match(name):
        return "is absolute"
    if ".." in PurePosixPath(name).parts:
        return "climbs out of its folder ('..')"
    return ""


def metadata_root(content: bytes) -> etree._Element:
    """A received METADATA.XML, parsed safely; raises UnreadableXdm (a DOCTYPE or entities are refused)."""
    root = safe_xml(content, "METADATA.XML")
    if root.find(f".//{{{RIM}}}RegistryObjectList") is None:
        raise UnreadableXdm("METADATA.XML holds no rim:RegistryObjectList")
    return root


def safe_xml(content: bytes, what: str) -> etree._Element:
    """Received XML parsed without DTD, entities or network; raises UnreadableXdm, a DOCTYPE or entities refused."""
    upper = content.upper()
    if b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
        raise UnreadableXdm(f"{what} declares a DOCTYPE or entities: refused")
    try:
        tree = etree.ElementTree(etree.fromstring(content, _PARSER))
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise UnreadableXdm(f"{what} is not well-formed XML: {_short(exc)}") from None
    if tree.docinfo.internalDTD is not None or tree.docinfo.externalDTD is not None:
        raise UnreadableXdm(f"{what} carries a DOCTYPE: refused")
    return tree.getroot()


def slot_value(obj: etree._Element, name: str) -> str:
    """The first value of slot ``name`` of a registry object, "" when absent."""
    value = obj.find(f"{{{RIM}}}Slot[@name='{name}']/{{{RIM}}}ValueList/{{{RIM}}}Value")
    return "" if value is None else (value.text or "").strip()


# -- the service --------------------------------------------------------------------------------------------
class MssService:
    """The MSSanté side of the practice: send, read the BAL, reply."""

    def __init__(self, documents: DocumentService) -> None:
        self.documents = documents
        self.identities = documents.identities
        self.store = documents.store
        self.catalog: DocumentCatalog = documents.catalog
        self._reading = threading.Lock()

    def has(self, defect: str) -> bool:
        return self.identities.has(defect)

    # -- sending ----------------------------------------------------------------------------------
    def send(self, patient_id: str, body: Any) -> MssOutcome:
        """Send what a ``POST /patients/{id}/mss-messages`` body asks, for that one patient."""
        request = _send_request(body)
        with self.identities.lock(patient_id):
            patient = self.identities.get(patient_id)
            records = [self.documents.produced_record(patient_id, d) for d in request.document_ids]
            endpoint = self._endpoint()
            if request.transport == "dst" and MAILIZ not in self.identities.profiles:
                return self._sent_trace(
                    patient, MssOutcome(NOT_SENT, f"the DST interface is for the '{MAILIZ}' profile")
                )
            recipients = list(dict.fromkeys(request.recipients))
            if request.to_patient:
                address = self._patient_address(patient)
                if address is None:
                    return self._sent_trace(patient, MssOutcome(NOT_SENT, NOT_QUALIFIED.format(status=patient.status)))
                recipients.append(address)
            message = self._compose(patient, records, request, endpoint, recipients)
            raw = message.as_bytes()
            message_id = _header(message, "Message-ID")
            try:
                transport = self._transport(endpoint)
                if request.transport == "dst":
                    operator_id = transport.submit_dst(raw)
                    detail = f"submitted by DST to {', '.join(recipients)}" + (
                        f" (operator id {operator_id})" if operator_id else ""
                    )
                else:
                    refused = transport.submit(endpoint.address, recipients, raw)
                    detail = f"sent by SMTP to {', '.join(r for r in recipients if r not in refused)}"
                    if refused:
                        detail += "; refused: " + "; ".join(f"{a}: {why}" for a, why in refused.items())
            except TransportError as exc:
                outcome = MssOutcome(FAILED, str(exc), message_id)
            else:
                outcome = MssOutcome(SENT, detail, message_id)
            data = {
                "patient_id": patient.id,
                "recipients": recipients,
                "document_ids": list(request.document_ids),
                "transport": request.transport,
                "result": outcome.result,
                "time": self.identities.clock.iso(),
            }
            self.store.add_mss_message(message_id, "out", data, raw)
            return self._sent_trace(patient, outcome, recipients)

    def _patient_address(self, patient: Patient) -> str | None:
        """The patient's BAL, only for a qualified identity (the defect takes a RECUP INS too)."""
        ins = carried_ins(patient)
        if ins is None and self.has("mss-unqualified-patient") and patient.status.has_insi and patient.ins:
            ins = (patient.ins.matricule, patient.ins.oid)
        return None if ins is None else patient_address(ins[0])

    def _compose(
        self,
        patient: Patient,
        records: list[dict[str, Any]],
        request: SendRequest,
        endpoint: MssanteEndpoint,
        recipients: list[str],
    ) -> EmailMessage:
        sender = self._sender(endpoint)
        now = self.identities.clock.now()
        documents = [self._xdm_document(patient, record, i + 1) for i, record in enumerate(records)]
        headers: list[tuple[str, str]] = []
        attachments: list[Attachment] = []
        titles = [d.entry.title for d in documents]
        if documents:
            matricule = patient.ins.matricule if patient.ins else ""
            qualified = all(carries_qualified_ins(d.cda, matricule) for d in documents)
            headers.append(("X-MSS-INS", "O" if qualified and not self.has("mss-wrong-ins") else "N"))
            if not self.has("mss-no-codecda"):
                headers += [("X-MSS-CODECDA", cda_code(d.cda)) for d in documents]
            packed = list(documents)
            if self.has("mss-two-patients"):
                other = self._other_patients_document(patient, len(packed) + 1)
                packed += [other] if other is not None else []
            submission = self._submission(self._patient_cx(patient), now)
            xdm = build_xdm(submission, packed, with_metadata=not self.has("mss-xdm-no-metadata"), sender=sender.header)
            attachments.append(Attachment(XDM_NAME, "application/zip", xdm))
            for document, record in zip(documents, records, strict=True):
                if document.pdf is not None:
                    name = str(record.get("pdf_file_name") or document.pdf_name)
                    attachments.append(Attachment(name, "application/pdf", document.pdf))
            subject = xdm_subject(titles, patient, prefix=not self.has("mss-subject-no-prefix"))
        else:
            subject = f"Message concernant {patient_words(patient)}"
        if request.no_reply and not self.has("mss-no-fin"):
            headers.append(("X-MSS-MES", "FIN"))
        if request.delivery_receipt and not self.has("mss-no-return-receipt"):
            headers.append(("Return-Receipt-To", endpoint.address))
        if request.read_receipt:
            headers.append(("Disposition-Notification-To", endpoint.address))
        text = request.text or self._default_text(patient, titles)
        return compose_message(
            sender,
            recipients,
            subject,
            text,
            now.astimezone(local_zone()),
            message_id=self._message_id(endpoint),
            nil=self._nil(),
            headers=headers,
            attachments=attachments,
        )

    def _default_text(self, patient: Patient, titles: list[str]) -> str:
        what = f"Veuillez trouver ci-joint : {', '.join(titles)}." if titles else ""
        name = f"{patient.traits.first_first_name} {patient.traits.birth_name.upper()}"
        signature = sender_label(self.catalog.author, self.catalog.practice)
        return f"Bonjour,\n\nConcernant {name}. {what}\n\nBien cordialement,\n{signature}\n"

    # -- reading ----------------------------------------------------------------------------------
    def fetch(self) -> list[Received]:
        """Read the BAL's unseen messages, integrate them, answer the MDN requests; raises OperatorUnavailable."""
        endpoint = self._endpoint()
        transport = self._transport(endpoint)
        read: list[Received] = []
        with self._reading:
            try:
                with transport.inbox() as inbox:
                    for uid in inbox.unseen()[:MAX_FETCH]:
                        raw = inbox.fetch(uid)
                        read.append(self._receive(raw, endpoint, transport))
                        inbox.mark_seen(uid)
            except TransportError as exc:
                self._trace("read", "failed", detail=str(exc))
                if not read:
                    raise OperatorUnavailable(f"the BAL cannot be read: {exc}") from None
                log.warning("MSSanté reading stopped after %d message(s): %s", len(read), exc)
        return read

    def _receive(self, raw: bytes, endpoint: MssanteEndpoint, transport: MssTransport) -> Received:
        try:
            parsed = BytesParser(policy=policy.default).parsebytes(raw)
        except Exception as exc:  # the parser is lenient; whatever it still raises is the message's fault
            parsed = None
            log.warning("MSSanté message unreadable: %s", exc)
        if not isinstance(parsed, EmailMessage):
            received = Received("", "", "", REJECTED, error_code=OTHER_ERROR, detail="unreadable message")
            self.store.add_mss_message("", "in", {**received.to_json(), "detail": received.detail}, raw)
            return received
        message = parsed
        message_id = _header(message, "Message-ID")
        sender = reply_address(message)
        subject = _header(message, "Subject")
        if _is_report(message) and not self.has("mss-ignores-receipts"):
            integration = _Integration(RECEIPT, detail=_report_summary(message))
        else:
            xdm = _xdm_attachment(message)
            integration = _Integration(NO_DOCUMENT) if xdm is None else self._integrate(xdm, subject)
        receipt_sent = False
        wants_mdn = _header(message, "Disposition-Notification-To") and not self.has("mss-no-mdn")
        if integration.status != RECEIPT and not _is_report(message) and wants_mdn:
            receipt_sent = self._send_mdn(message, endpoint, transport, integration.error_code)
        received = Received(
            message_id,
            sender,
            subject,
            integration.status,
            integration.patient_id,
            tuple(integration.document_ids),
            integration.error_code,
            receipt_sent,
            integration.detail,
        )
        self.store.add_mss_message(message_id, "in", {**received.to_json(), "detail": received.detail}, raw)
        self._trace(
            "receipt" if received.status == RECEIPT else "read",
            received.status,
            patient_id=received.patient_id,
            message_id=message_id,
            detail=received.detail or received.error_code,
        )
        return received

    def _integrate(self, xdm: bytes, subject: str) -> _Integration:
        try:
            content = open_xdm(xdm)
        except UnreadableXdm as exc:
            return _Integration(REJECTED, error_code=OTHER_ERROR, detail=str(exc))
        if self.has("mss-integrate-by-traits"):
            patient = self._patient_by_subject(subject)
            if patient is None:
                return _Integration(REJECTED, error_code=UNKNOWN_PATIENT, detail="no patient with the subject's traits")
        else:
            identities = {parse_ins_cx(cx) for cx in content.patient_ids}
            if not content.patient_ids or None in identities:
                return _Integration(REJECTED, error_code=NO_INS, detail="the XDM patientId is not an INS")
            if len(identities) > 1:
                return _Integration(REJECTED, error_code=OTHER_ERROR, detail="the XDM names several patients")
            [(matricule, _)] = [i for i in identities if i is not None]
            patient = next((p for p in self.identities.all() if p.ins and p.ins.matricule == matricule), None)
            if patient is None:
                return _Integration(REJECTED, error_code=UNKNOWN_PATIENT, detail=f"no patient with INS {matricule}")
        cdas = [d for d in content.documents if d.mime_type in CDA_TYPES]
        if not cdas:
            return _Integration(REJECTED, error_code=OTHER_ERROR, detail="the XDM carries no CDA document")
        try:
            for document in cdas:
                if _root_tag(document.content) != f"{{{HL7}}}ClinicalDocument":
                    raise InvalidInput(f"{document.path} is not a CDA R2 ClinicalDocument")
            integrated = [self._import(patient, d) for d in cdas]
        except InvalidInput as exc:
            return _Integration(REJECTED, patient.id, error_code=OTHER_ERROR, detail=str(exc))
        return _Integration(INTEGRATED, patient.id, integrated)

    def _import(self, patient: Patient, document: ReceivedDocument) -> str:
        body = {"cda_base64": base64.b64encode(document.content).decode("ascii")}
        with self.identities.lock(patient.id):
            try:
                return str(self.documents.import_document(patient.id, body)["document_id"])
            except Conflict:  # already integrated (the same message read twice)
                return _document_id(document.content)

    def _patient_by_subject(self, subject: str) -> Patient | None:
        """The ``mss-integrate-by-traits`` defect: the patient named by the subject's birth name and birth date."""
        match = _SUBJECT.match(" ".join(subject.split()))
        if match is None:
            return None
        birth_date = f"{match['year']}-{match['month']}-{match['day']}"
        name = normalise_name(match["name"])
        return next(
            (
                p
                for p in self.identities.all()
                if normalise_name(p.traits.birth_name) == name and p.traits.birth_date == birth_date
            ),
            None,
        )

    def _send_mdn(
        self, original: EmailMessage, endpoint: MssanteEndpoint, transport: MssTransport, error_code: str
    ) -> bool:
        notification = compose_mdn(
            original,
            self._sender(endpoint),
            self.identities.clock.now().astimezone(local_zone()),
            message_id=self._message_id(endpoint),
            nil=self._nil(),
            error_code=error_code,
        )
        recipient = next(
            (a for _, a in getaddresses([_header(original, "Disposition-Notification-To")]) if "@" in a), ""
        )
        message_id = _header(notification, "Message-ID")
        try:
            transport.submit(endpoint.address, [recipient], notification.as_bytes())
        except TransportError as exc:
            self._trace("receipt", FAILED, message_id=message_id, detail=f"MDN to {recipient}: {exc}")
            return False
        self._trace("receipt", SENT, message_id=message_id, detail=f"MDN to {recipient}")
        return True

    # -- replying ---------------------------------------------------------------------------------
    def reply(self, body: Any) -> MssOutcome:
        """Reply to a message read from the BAL (``{"message_id", "text"}``)."""
        if not isinstance(body, dict) or not isinstance(body.get("message_id"), str) or not body["message_id"].strip():
            raise InvalidInput("the body must be an object with a 'message_id' string")
        text = body.get("text", "")
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            raise InvalidInput(f"'text' must be a string of at most {MAX_TEXT} characters")
        message_id = body["message_id"].strip()
        found = self.store.find_mss_message(message_id, "in")
        if found is None:
            raise UnknownMessage(f"no message {message_id!r} was read from the BAL")
        endpoint = self._endpoint()
        original = BytesParser(policy=policy.default).parsebytes(found[1])
        assert isinstance(original, EmailMessage)
        recipient = reply_address(original)
        if not recipient:
            return MssOutcome(NOT_SENT, "the message has no sender address to reply to")
        reply = compose_reply(
            original,
            self._sender(endpoint),
            text or "Bien reçu, merci.",
            self.identities.clock.now().astimezone(local_zone()),
            message_id=self._message_id(endpoint),
            nil=self._nil(),
            threaded=not self.has("mss-reply-no-in-reply-to"),
        )
        raw = reply.as_bytes()
        reply_id = _header(reply, "Message-ID")
        try:
            self._transport(endpoint).submit(endpoint.address, [recipient], raw)
        except TransportError as exc:
            outcome = MssOutcome(FAILED, str(exc), reply_id)
        else:
            outcome = MssOutcome(SENT, f"reply sent by SMTP to {recipient}", reply_id)
        self.store.add_mss_message(reply_id, "out", {"in_reply_to": message_id, "result": outcome.result}, raw)
        self._trace("reply", outcome.result, message_id=reply_id, detail=outcome.detail)
        return outcome

    # -- XDS metadata of the XDM ------------------------------------------------------------------
    def _xdm_document(self, patient: Patient, record: dict[str, Any], number: int) -> XdmDocument:
        found = self.store.find_document(patient.id, str(record["document_id"]))
        assert found is not None  # produced_record found it
        cda = found[1]
        file_name = f"DOC{number:04d}.XML"
        return XdmDocument(file_name, cda, self._entry(patient, record, cda), embedded_pdf(cda))

    def _other_patients_document(self, patient: Patient, number: int) -> XdmDocument | None:
        """The ``mss-two-patients`` defect: the most recent document the practice produced for someone else."""
        candidates = [
            (_when(record.get("creation_time", "")), other, record)
            for other in self.identities.all()
            if other.id != patient.id
            for record in self.store.list_documents(other.id)
            if record.get("origin") == "produced"
        ]
        if not candidates:
            return None
        _, other, record = max(candidates, key=lambda c: c[0])
        return self._xdm_document(other, record, number)

    def _entry(self, patient: Patient, record: dict[str, Any], cda: bytes) -> DocumentEntry:
        kind = self.catalog.find(str(record.get("kind", "")), str(record.get("structure", "")))
        if kind is None:
            raise Conflict(f"document {record['document_id']!r} is of a type the practice no longer produces")
        return practice_entry(self.catalog, kind, cda, self._patient_cx(patient), self._ipp_cx(patient))

    def _submission(self, patient_cx: str, now: datetime) -> SubmissionSet:
        return xds_entry.submission_set(self.catalog, patient_cx, self._author(), now)

    def _author(self) -> XdsAuthor:
        return xds_entry.practice_author(self.catalog.author, self.catalog.practice)

    def _patient_cx(self, patient: Patient) -> str:
        return xdm_patient_cx(patient, self.catalog.practice)

    def _ipp_cx(self, patient: Patient) -> str:
        return xds_entry.ipp_cx(patient.id, self.catalog.practice)

    # -- plumbing ---------------------------------------------------------------------------------
    def _endpoint(self) -> MssanteEndpoint:
        endpoint = self.identities.endpoints.mssante()
        if endpoint is None:
            raise Conflict("no MSSanté operator configured (PUT /config/endpoints)")
        return endpoint

    def _transport(self, endpoint: MssanteEndpoint) -> MssTransport:
        return MssTransport(endpoint, self.identities.call_timeout_s, self.identities.defects)

    def _sender(self, endpoint: MssanteEndpoint) -> Sender:
        if self.has("mss-bare-from"):
            return Sender(endpoint.address)
        return Sender(endpoint.address, sender_label(self.catalog.author, self.catalog.practice))

    def _message_id(self, endpoint: MssanteEndpoint) -> str:
        return "" if self.has("mss-no-message-id") else make_msgid(domain=endpoint.domain)

    def _nil(self) -> str:
        return "" if self.has("mss-no-nil") else PRODUCT_REFERENCE

    def _sent_trace(self, patient: Patient, outcome: MssOutcome, recipients: Sequence[str] = ()) -> MssOutcome:
        detail = outcome.detail
        self._trace("send", outcome.result, patient_id=patient.id, message_id=outcome.message_id, detail=detail)
        log.info("MSSanté send for %s to [%s]: %s %s", patient.id, ", ".join(recipients), outcome.result, detail)
        return outcome

    def _trace(self, operation: str, result: str, patient_id: str = "", message_id: str = "", detail: str = "") -> None:
        entry: dict[str, Any] = {
            "timestamp": self.identities.clock.iso(),
            "service": "MSSanté",
            "operation": operation,
            "return_code": result,
        }
        if patient_id:
            entry["patient_id"] = patient_id
        if message_id:
            entry["message_id"] = message_id
        if detail:
            entry["detail"] = detail
        self.store.add_trace(entry)


# -- helpers -----------------------------------------------------------------------------------------------
def _send_request(body: Any) -> SendRequest:
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    documents = body.get("document_ids", [])
    recipients = body.get("recipients", [])
    if not isinstance(documents, list) or not all(isinstance(d, str) and d for d in documents):
        raise InvalidInput("'document_ids' must be a list of document ids")
    if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
        raise InvalidInput("'recipients' must be a list of e-mail addresses")
    cleaned = tuple(r.strip() for r in recipients)
    wrong = [r for r in cleaned if not _ADDRESS.match(r)]
    if wrong:
        raise InvalidInput(f"not an e-mail address: {wrong[0][:80]!r}")
    if len(cleaned) > MAX_RECIPIENTS:
        raise InvalidInput(f"at most {MAX_RECIPIENTS} recipients")
    flags: dict[str, bool] = {}
    for name in ("to_patient", "delivery_receipt", "read_receipt", "no_reply"):
        value = body.get(name, False)
        if not isinstance(value, bool):
            raise InvalidInput(f"'{name}' must be true or false")
        flags[name] = value
    transport = body.get("transport", "smtp")
    if transport not in TRANSPORTS:
        raise InvalidInput(f"'transport' must be one of {', '.join(TRANSPORTS)}")
    text = body.get("text", "")
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        raise InvalidInput(f"'text' must be a string of at most {MAX_TEXT} characters")
    if not cleaned and not flags["to_patient"]:
        raise InvalidInput("no recipient: give 'recipients' or set 'to_patient'")
    return SendRequest(
        document_ids=tuple(dict.fromkeys(documents)),
        recipients=cleaned,
        to_patient=flags["to_patient"],
        delivery_receipt=flags["delivery_receipt"],
        read_receipt=flags["read_receipt"],
        no_reply=flags["no_reply"],
        transport=str(transport),
        text=text,
    )


def _is_report(message: EmailMessage) -> bool:
    """A DSN (RFC 3464) or an MDN (RFC 8098)."""
    if message.get_content_type() != "multipart/report":
        return False
    return str(message.get_param("report-type", "")).lower() in ("disposition-notification", "delivery-status")


def _report_summary(message: EmailMessage) -> str:
    kind = str(message.get_param("report-type", "")).lower()
    for part in message.walk():
        if part.get_content_type() in ("message/disposition-notification", "message/delivery-status"):
            payload = part.get_payload()
            text = "\n".join(str(p) for p in payload) if isinstance(payload, list) else str(payload)
            fields = {m[0].lower(): m[1].strip() for m in re.findall(r"^([A-Za-z-]+):(.*)$", text, re.MULTILINE)}
            original = fields.get("original-message-id", "")
            state = fields.get("disposition") or fields.get("status") or fields.get("action", "")
            return _short(f"{kind} for {original or 'an unnamed message'}: {state}")
    return kind


def _xdm_attachment(message: EmailMessage) -> bytes | None:
    for part in message.walk():
        if part.is_multipart():
            continue
        try:
            name = part.get_filename() or ""
        except Exception:
            continue
        if name.upper() == XDM_NAME:
            payload = part.get_payload(decode=True)
            return payload if isinstance(payload, bytes) else b""
    return None


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:  # a malformed header is an absent one
        return ""
    return " ".join(str(value).split()) if value is not None else ""


def _xml(content: bytes) -> etree._Element:
    return etree.fromstring(content, _PARSER)


def _root_tag(content: bytes) -> str:
    try:
        return str(_xml(content).tag)
    except (etree.XMLSyntaxError, ValueError):
        return ""


def _document_id(cda: bytes) -> str:
    identifier = _xml(cda).find(f"{{{HL7}}}id")
    if identifier is None:
        return ""
    extension = identifier.get("extension")
    return f"{identifier.get('root')}^{extension}" if extension else str(identifier.get("root", ""))


def _when(iso: str) -> datetime:
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _index_html(documents: Sequence[XdmDocument], sender: str) -> str:
    rows = "\n".join(
        f'<li><a href="{SUBSET}/{d.file_name}">{html.escape(d.entry.title)}</a>'
        + (f' (<a href="{SUBSET}/{d.pdf_name}">PDF</a>)' if d.pdf is not None else "")
        + "</li>"
        for d in documents
    )
    return (
        '<!DOCTYPE html>\n<html lang="fr"><head><meta charset="utf-8"><title>IHE XDM</title></head><body>\n'
        f"<h1>Documents transmis par {html.escape(sender or SOFTWARE)}</h1>\n<ul>\n{rows}\n</ul>\n"
        f'<p>Métadonnées : <a href="{SUBSET}/METADATA.XML">METADATA.XML</a></p>\n</body></html>\n'
    )


def _readme(sender: str) -> str:
    return (
        f"Support IHE XDM (IHE ITI TF-1 §16) produit par {SOFTWARE} {__version__}.\r\n"
        f"Expéditeur : {sender or SOFTWARE}\r\n"
        "Contenu : INDEX.HTM (sommaire), IHE_XDM/SUBSET01/METADATA.XML (métadonnées ebRIM),\r\n"
        "les documents CDA R2 (DOCnnnn.XML) et leur copie PDF/A-1 (DOCnnnn.PDF).\r\n"
    )


def _ascii(text: str) -> str:
    """``text`` without its diacritics (an MDN field is ASCII)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).encode("ascii", "replace").decode("ascii")


def _short(value: object) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= 200 else text[:197] + "..."
