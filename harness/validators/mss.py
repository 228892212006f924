"""An RFC 5322 message a SUT sends over MSSanté, and the RFC 8098 notification it returns, judged by their headers.

The rules come from ``shared/docs/protocols.md`` §3.3 (the ``X-MSS-*`` headers of
"Référentiel socle MSSanté #2", the ``XDM/1.0/DDM`` subject convention, the MDN
structure and the integration error codes 900–906 of the courriel-mss IG) and §3.2
(``IHE_XDM.ZIP`` beside a human-readable PDF). Messages are parsed with the standard
``email`` package (``email.policy.default``) after a size check; a malformed message
gives findings, never an exception.

Inferred, not confirmed in protocols.md [I]:

- ``X-MSS-NIL`` is required on every message (its meaning is an identifier of the
  sending software; protocols.md only gives an example value);
- ``X-MSS-MES: FIN`` on a patient message says no reply is wanted (the semantics of
  MES are "to verify in the référentiel"): its absence is only a warning;
- no text makes ``Disposition-Notification-To`` or ``Return-Receipt-To`` mandatory
  (an MDN is sent only if the former is present): their absence is a warning;
- ``X-MSS-CODECDA`` may be repeated or comma-separated; both are accepted;
- a patient address is the 15-digit matricule INS ``@patient.mssante.fr`` and a
  patient message names exactly one patient.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from email import errors as email_errors
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser, HeaderParser
from email.utils import getaddresses, parsedate_to_datetime

from harness.findings import Finding, error, info, warning
from harness.validators.cda.parsing import parse_cda
from harness.validators.ins import InsOid
from harness.validators.xdm import read_xdm

SOURCE = "mss"
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
XDM_NAME = "IHE_XDM.ZIP"
PATIENT_DOMAIN = "patient.mssante.fr"
HL7 = "urn:hl7-org:v3"

INTEGRATION_ERRORS = {
    "900": "wrong document version on replace/delete",
    "901": "author not allowed to replace/delete",
    "902": "unknown patient",
    "903": "no INS in document",
    "904": "INS does not match stored identity",
    "905": "INS incomplete (traits missing)",
    "906": "other",
}
"""Integration error codes of the courriel-mss IG ``error-codes.md`` (protocols.md §3.3 [C])."""

_MESSAGE_ID = re.compile(r"^<[^<>@\s]+@[^<>@\s]+>$")
_SUBJECT = re.compile(r"^XDM/1\.0/DDM\+(?P<title>.+) (?P<name>[^\s]+) (?P<first>[^\s]+) (?P<date>\d{2}/\d{2}/\d{4})$")
_PATIENT_ADDRESS = re.compile(rf"^(?P<matricule>\d{{15}})@{re.escape(PATIENT_DOMAIN)}$", re.IGNORECASE)
_DISPOSITION = re.compile(
    r"^\s*(manual|automatic)-action\s*/\s*MDN-sent-(manually|automatically)\s*;\s*"
    r"(displayed|deleted|dispatched|processed)\s*(?:/\s*(?P<modifier>.*))?$",
    re.IGNORECASE | re.DOTALL,
)
_ERROR_MODIFIER = re.compile(r"^Error\s*:\s*(?P<code>\d+)\s*(?:\^(?P<label>.*))?$", re.IGNORECASE | re.DOTALL)
_BOUNDARY_DEFECTS = (
    email_errors.StartBoundaryNotFoundDefect,
    email_errors.CloseBoundaryNotFoundDefect,
    email_errors.MultipartInvariantViolationDefect,
    email_errors.NoBoundaryInMultipartDefect,
)


# -- parsing ----------------------------------------------------------------------------------------
def parse_message(raw: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[EmailMessage | None, list[Finding]]:
    """The parsed message, or None with why; MIME defects become findings (``mss.mime.*``)."""
    if len(raw) > max_bytes:
        return None, [
            error("mss.too-large", f"{len(raw):,} bytes, above the {max_bytes:,}-byte limit: not parsed", "", SOURCE)
        ]
    if not raw.strip():
        return None, [error("mss.parse", "the message is empty", "", SOURCE)]
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
    except Exception as exc:  # the parser is lenient; anything it still raises is the message's fault
        return None, [error("mss.parse", f"the message cannot be parsed: {exc}", "", SOURCE)]
    if not isinstance(message, EmailMessage):
        return None, [error("mss.parse", "the message cannot be parsed", "", SOURCE)]
    findings: list[Finding] = []
    for part in message.walk():
        for defect in part.defects:
            where = part.get_content_type()
            if isinstance(defect, _BOUNDARY_DEFECTS):
                findings.append(error("mss.mime.boundary", f"broken MIME boundary: {defect!r}", where, SOURCE))
            else:
                findings.append(warning("mss.mime.defect", f"MIME defect: {defect!r}", where, SOURCE))
    if not message.keys():
        findings.append(error("mss.parse", "no header could be read: this is not an RFC 5322 message", "", SOURCE))
    return message, findings


def _header(message: Message, name: str) -> str:
    """The header's value as text ("" when absent or unreadable)."""
    try:
        value = message.get(name)
    except Exception:  # a malformed header must not crash the run
        return ""
    return str(value).strip() if value is not None else ""


def _headers(message: Message, name: str) -> list[str]:
    try:
        values = message.get_all(name) or []
    except Exception:
        return []
    return [str(v).strip() for v in values]


def _filename(part: Message) -> str:
    try:
        return part.get_filename() or ""
    except Exception:
        return ""


def _attachments(message: Message) -> Iterator[tuple[str, Message]]:
    for part in message.walk():
        if part.is_multipart():
            continue
        name = _filename(part)
        if name:
            yield name, part


def _payload(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:
        return b""
    return data if isinstance(data, bytes) else b""


def xdm_attachment(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes | None:
    """The bytes of the message's ``IHE_XDM.ZIP`` attachment (name matched case-insensitively), if any."""
    message, _ = parse_message(raw, max_bytes)
    return _xdm_part(message) if message is not None else None


def _xdm_part(message: Message) -> bytes | None:
    for name, part in _attachments(message):
        if name.upper() == XDM_NAME:
            return _payload(part)
    return None


# -- the message --------------------------------------------------------------------------------------
def check_message(
    raw: bytes,
    *,
    patient: bool = False,
    expected_ins: str | None = None,
    cda_codes: list[str] | None = None,
    in_reply_to_expected: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[Finding]:
    """Every finding about one message sent by the SUT over MSSanté.

    Rules (errors unless said): ``mss.too-large``, ``mss.parse``, ``mss.mime.boundary``,
    ``mss.mime.defect`` (warning), ``mss.message-id``, ``mss.message-id.format``,
    ``mss.from``, ``mss.to``, ``mss.date``, ``mss.date.format``, ``mss.in-reply-to``,
    ``mss.receipt-request`` (warning), ``mss.x-mss-nil``, ``mss.x-mss-ins``,
    ``mss.x-mss-ins.value``, ``mss.x-mss-ins.consistency``, ``mss.x-mss-codecda``,
    ``mss.xdm.missing``, ``mss.xdm.name`` (warning: case variant), ``mss.pdf.missing``
    (warning), ``mss.subject``, and for a patient message ``mss.patient.address``,
    ``mss.patient.count``, ``mss.patient.ins``, ``mss.patient.x-mss-mes`` (warning).

    ``cda_codes`` are the ``ClinicalDocument/code/@code`` of the CDAs the message must
    carry; without it they are read from the CDAs of the XDM attachment.
    ``expected_ins`` is the patient's matricule INS: a CDA "carries the INS" when a
    ``recordTarget`` id has it (with an INS OID). The XDM itself is not judged here;
    pass :func:`xdm_attachment`'s bytes to :func:`harness.validators.xdm.check_xdm`.
    """
    message, findings = parse_message(raw, max_bytes)
    if message is None or any(f.rule == "mss.parse" for f in findings):
        return findings
    findings.extend(_check_envelope(message, in_reply_to_expected))
    xdm = _xdm_part(message)
    cdas = _cdas(xdm) if xdm is not None else []
    findings.extend(_check_attachments(message, xdm, cda_codes))
    findings.extend(_check_mss_headers(message, cdas, expected_ins, cda_codes))
    if xdm is not None:
        findings.extend(_check_subject(_header(message, "Subject")))
    if patient:
        findings.extend(_check_patient(message, expected_ins))
    return findings


def _check_envelope(message: Message, in_reply_to_expected: str | None) -> list[Finding]:
    findings: list[Finding] = []
    message_id = _header(message, "Message-ID")
    if not message_id:
        findings.append(error("mss.message-id", "the message has no Message-ID", "Message-ID", SOURCE))
    elif not _MESSAGE_ID.match(message_id):
        findings.append(
            error("mss.message-id.format", f"Message-ID {message_id!r} is not <left@right>", "Message-ID", SOURCE)
        )
    for name, rule in (("From", "mss.from"), ("To", "mss.to")):
        addresses = [a for _, a in getaddresses(_headers(message, name)) if "@" in a]
        if not addresses:
            findings.append(error(rule, f"the message has no {name} address", name, SOURCE))
    date = _header(message, "Date")
    if not date:
        findings.append(error("mss.date", "the message has no Date", "Date", SOURCE))
    else:
        try:
            parsedate_to_datetime(date)
        except (TypeError, ValueError, IndexError):
            findings.append(error("mss.date.format", f"Date {date!r} is not an RFC 5322 date", "Date", SOURCE))
    if in_reply_to_expected is not None:
        threading = " ".join(_headers(message, "In-Reply-To") + _headers(message, "References"))
        if in_reply_to_expected not in threading:
            findings.append(
                error(
                    "mss.in-reply-to",
                    f"the reply names {in_reply_to_expected} neither in In-Reply-To nor in References",
                    "In-Reply-To",
                    SOURCE,
                )
            )
    if not _header(message, "Disposition-Notification-To") and not _header(message, "Return-Receipt-To"):
        findings.append(
            warning(
                "mss.receipt-request",
                "neither Disposition-Notification-To nor Return-Receipt-To: no MDN can be returned",
                "Disposition-Notification-To",
                SOURCE,
            )
        )
    return findings


def _cdas(xdm: bytes) -> list[tuple[str, str | None, set[tuple[str, str]]]]:
    """(code, patient ids) of each CDA of the XDM: ``(path, code, {(extension, root)})``."""
    out = []
    for path, content in read_xdm(xdm).documents.items():
        if not path.lower().endswith(".xml") or path.upper().endswith("METADATA.XML"):
            continue
        parsed, _ = parse_cda(content)
        if parsed is None:
            continue
        code = parsed.document.find(f"{{{HL7}}}code")
        ids = {
            (e.get("extension", ""), e.get("root", ""))
            for e in parsed.document.iterfind(f"{{{HL7}}}recordTarget/{{{HL7}}}patientRole/{{{HL7}}}id")
        }
        out.append((path, code.get("code") if code is not None else None, ids))
    return out


def _check_attachments(message: Message, xdm: bytes | None, cda_codes: list[str] | None) -> list[Finding]:
    findings: list[Finding] = []
    names = [name for name, _ in _attachments(message)]
    if xdm is None:
        if cda_codes or _headers(message, "X-MSS-CODECDA"):
            findings.append(error("mss.xdm.missing", f"CDA documents are announced but no {XDM_NAME}", "", SOURCE))
        return findings
    for name in names:
        if name.upper() == XDM_NAME and name != XDM_NAME:
            findings.append(
                warning("mss.xdm.name", f"the XDM attachment is named {name!r}, not {XDM_NAME}", name, SOURCE)
            )
    if not any(n.lower().endswith(".pdf") for n in names):
        findings.append(
            warning("mss.pdf.missing", f"no human-readable PDF attachment beside {XDM_NAME}", XDM_NAME, SOURCE)
        )
    return findings


def _split(values: list[str]) -> list[str]:
    return [v for value in values for v in re.split(r"[,\s]+", value) if v]


def _check_mss_headers(
    message: Message,
    cdas: list[tuple[str, str | None, set[tuple[str, str]]]],
    expected_ins: str | None,
    cda_codes: list[str] | None,
) -> list[Finding]:
    findings: list[Finding] = []
    if not _header(message, "X-MSS-NIL"):
        findings.append(error("mss.x-mss-nil", "X-MSS-NIL is missing", "X-MSS-NIL", SOURCE))
    ins_header = _header(message, "X-MSS-INS")
    if ins_header and ins_header.upper() not in ("O", "N"):
        findings.append(error("mss.x-mss-ins.value", f"X-MSS-INS is {ins_header!r}, not O or N", "X-MSS-INS", SOURCE))
    elif cdas and not ins_header:
        findings.append(error("mss.x-mss-ins", "the message carries a CDA but no X-MSS-INS", "X-MSS-INS", SOURCE))
    elif cdas and expected_ins is not None:
        ins_oids = {o.value for o in InsOid}
        carried = any((expected_ins, oid) in ids for _, _, ids in cdas for oid in ins_oids)
        if (ins_header.upper() == "O") != carried:
            findings.append(
                error(
                    "mss.x-mss-ins.consistency",
                    f"X-MSS-INS is {ins_header} but the INS {expected_ins} is "
                    + ("in" if carried else "not in")
                    + " the CDA's recordTarget",
                    "X-MSS-INS",
                    SOURCE,
                )
            )
    announced = _split(_headers(message, "X-MSS-CODECDA"))
    expected = cda_codes if cda_codes is not None else [c for _, c, _ in cdas if c]
    if sorted(announced) != sorted(expected):
        findings.append(
            error(
                "mss.x-mss-codecda",
                f"X-MSS-CODECDA says {announced}, the CDAs carried have codes {expected}",
                "X-MSS-CODECDA",
                SOURCE,
            )
        )
    return findings


def _check_subject(subject: str) -> list[Finding]:
    match = _SUBJECT.match(subject)
    if match:
        try:
            datetime.strptime(match["date"], "%d/%m/%Y")
        except ValueError:
            match = None
    if match is None:
        return [
            error(
                "mss.subject",
                f"subject {subject!r} is not 'XDM/1.0/DDM+<title> <NAME> <first name> <dd/mm/yyyy>'",
                "Subject",
                SOURCE,
            )
        ]
    return []


def _check_patient(message: Message, expected_ins: str | None) -> list[Finding]:
    findings: list[Finding] = []
    recipients = [a for _, a in getaddresses(_headers(message, "To") + _headers(message, "Cc")) if a]
    patients = [a for a in recipients if a.lower().endswith("@" + PATIENT_DOMAIN)]
    for address in patients:
        if not _PATIENT_ADDRESS.match(address):
            findings.append(
                error("mss.patient.address", f"{address} is not <matricule INS>@{PATIENT_DOMAIN}", "To", SOURCE)
            )
    if not patients:
        findings.append(error("mss.patient.address", f"no recipient @{PATIENT_DOMAIN}", "To", SOURCE))
    elif len({a.lower() for a in patients}) > 1:
        findings.append(
            error("mss.patient.count", f"the message names {len(patients)} patients; one per message", "To", SOURCE)
        )
    if expected_ins is not None and patients:
        matched = [m["matricule"] for a in patients if (m := _PATIENT_ADDRESS.match(a))]
        if expected_ins not in matched:
            findings.append(error("mss.patient.ins", f"no recipient is {expected_ins}@{PATIENT_DOMAIN}", "To", SOURCE))
    mes = _header(message, "X-MSS-MES")
    if mes.upper() != "FIN":
        findings.append(
            warning(
                "mss.patient.x-mss-mes",
                f"X-MSS-MES is {mes or 'absent'}; FIN is expected when no reply from the patient is wanted [inferred]",
                "X-MSS-MES",
                SOURCE,
            )
        )
    return findings


# -- the disposition notification --------------------------------------------------------------------
def check_mdn(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> list[Finding]:
    """Every finding about one RFC 8098 message disposition notification.

    Rules (errors unless said): ``mss.too-large``, ``mss.parse``, ``mss.mime.boundary``,
    ``mss.mdn.content-type`` (not ``multipart/report; report-type=disposition-notification``),
    ``mss.mdn.part`` (no ``message/disposition-notification`` part),
    ``mss.mdn.final-recipient``, ``mss.mdn.original-message-id``, ``mss.mdn.disposition``,
    ``mss.mdn.disposition.format``, ``mss.mdn.error-code`` (a code outside 900–906),
    ``mss.mdn.integration-error`` (info: a known code 900–906, in the Disposition or the
    human-readable part), ``mss.mdn.subject`` (warning: an error MDN whose subject does
    not start ``[KO Intégration système !][<code>]``).
    """
    message, findings = parse_message(raw, max_bytes)
    if message is None or any(f.rule == "mss.parse" for f in findings):
        return findings
    if message.get_content_type() != "multipart/report" or (
        str(message.get_param("report-type", "")).lower() != "disposition-notification"
    ):
        findings.append(
            error(
                "mss.mdn.content-type",
                f"Content-Type is {_header(message, 'Content-Type')!r}, "
                "not multipart/report; report-type=disposition-notification",
                "Content-Type",
                SOURCE,
            )
        )
    parts = [p for p in message.walk() if p.get_content_type() == "message/disposition-notification"]
    if not parts:
        findings.append(error("mss.mdn.part", "no message/disposition-notification part", "", SOURCE))
        return findings
    fields = _disposition_fields(parts[0])
    where = "message/disposition-notification"
    for name, rule in (
        ("Final-Recipient", "mss.mdn.final-recipient"),
        ("Original-Message-ID", "mss.mdn.original-message-id"),
        ("Disposition", "mss.mdn.disposition"),
    ):
        if not _header(fields, name):
            findings.append(error(rule, f"the notification has no {name} field", where, SOURCE))
    codes: set[str] = set()
    disposition = _header(fields, "Disposition")
    if disposition:
        match = _DISPOSITION.match(disposition)
        if match is None:
            findings.append(
                error("mss.mdn.disposition.format", f"Disposition {disposition!r} is not RFC 8098", where, SOURCE)
            )
        elif match["modifier"]:
            error_match = _ERROR_MODIFIER.match(match["modifier"].strip())
            if error_match:
                codes.add(error_match["code"])
    text = _human_text(message)
    codes |= set(re.findall(r"\b(9\d\d)\b", text))
    for code in sorted(codes):
        if code in INTEGRATION_ERRORS:
            findings.append(
                info(
                    "mss.mdn.integration-error", f"integration error {code}: {INTEGRATION_ERRORS[code]}", where, SOURCE
                )
            )
        else:
            findings.append(error("mss.mdn.error-code", f"error code {code} is not one of 900–906", where, SOURCE))
    if codes:
        subject = _header(message, "Subject")
        if not any(subject.startswith(f"[KO Intégration système !][{code}]") for code in codes):
            findings.append(
                warning(
                    "mss.mdn.subject",
                    f"subject {subject!r} does not start with [KO Intégration système !][<code>]",
                    "Subject",
                    SOURCE,
                )
            )
    return findings


def _disposition_fields(part: Message) -> Message:
    """The fields of a ``message/disposition-notification`` part, as a header block."""
    payload = part.get_payload()
    if isinstance(payload, list):
        text = "\n".join(str(p) for p in payload)
    elif isinstance(payload, str):
        text = payload
    else:
        text = ""
    try:
        return HeaderParser(policy=policy.default).parsestr(text.lstrip("\r\n"))
    except Exception:
        return Message()


def _human_text(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain" and not _filename(part):
            return _payload(part).decode("utf-8", "replace")
    return ""
