"""An RFC 5322 message a SUT sends over MSSanté, and the RFC 8098 / RFC 3464 reports about it, judged.

The rules come from ``shared/docs/protocols.md`` §3.3 (the ``X-MSS-*`` headers of
"Référentiel socle MSSanté #2", the ``XDM/1.0/DDM`` subject convention, the MDN
structure and the integration error codes 900–906 of the courriel-mss IG), §3.2
(``IHE_XDM.ZIP`` beside a human-readable PDF) and ``requirements.md`` §2.3 (reply
threading MSS/va1.08, ``Return-Receipt-To`` MSS/va1.15, the ``From`` label
MSS/va1.16, ``X-MSS-INS``/``X-MSS-CODECDA`` absent without XDM MSS/CONF.14–15,
``X-MSS-MES: FIN`` MSS/CONF.21). Messages are parsed with the standard ``email``
package (``email.policy.default``) after a size check; a malformed message gives
findings, never an exception.

Inferred, not confirmed in protocols.md [I]:

- ``X-MSS-NIL`` is required on every message (its meaning is an identifier of the
  sending software; protocols.md only gives an example value);
- ``X-MSS-MES: FIN`` on a patient message says no reply is wanted (the semantics of
  MES are "to verify in the référentiel"): its absence is only a warning unless the
  caller says no reply is wanted;
- without a receipt the caller asks for, no text makes ``Disposition-Notification-To``
  or ``Return-Receipt-To`` mandatory (an MDN is sent only if the former is present):
  their absence is a warning; a ``Disposition-Notification-To`` other than the sender
  is a warning too (ECO.2.3.1 names the sender BAL for ``Return-Receipt-To`` only);
- ``X-MSS-CODECDA`` may be repeated or comma-separated; both are accepted;
- a patient address is the 15-digit matricule INS ``@patient.mssante.fr`` and a
  patient message names exactly one patient;
- the ``From`` label pattern ``Titre_Prénom_NOM_Entité`` (ECO.2.2.7) is read as
  space- or underscore-separated tokens: a title (Dr, Pr, M., Mme, Mlle, Me), then at
  least three more tokens, one of them in capitals (the NOM); a ``CAB`` BAL is judged
  like an organisational one;
- the text body (MSS/va1.11) is ``text/plain``, or ``multipart/alternative`` of exactly
  one ``text/plain`` and one ``text/html``, at the top or first in a ``multipart/mixed``;
- a DSN (RFC 3464) is linked to the original message by the ``Message-ID`` of its
  third part (the delivery-status fields carry no message id); its ``Status`` class
  should agree with its ``Action`` (failed 5, delayed 4, the others 2).
"""

from __future__ import annotations

import re
from collections import Counter
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
_MSG_ID = re.compile(r"<[^<>\s]+>")
_TITLES = frozenset({"dr", "pr", "m", "mme", "mlle", "me"})
"""Titles a personal BAL's label may start with (compared without case or final dot) [I]."""
_ORGANISATIONAL_BALS = frozenset({"ORG", "APP", "CAB"})
_DSN_ACTIONS = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})
_DSN_STATUS = re.compile(r"^(?P<class>[245])\.\d{1,3}\.\d{1,3}$")
_DSN_CLASS = {"failed": "5", "delayed": "4", "delivered": "2", "relayed": "2", "expanded": "2"}
_ORIGINAL_TYPES = ("message/rfc822", "text/rfc822-headers")
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


def _subparts(part: Message) -> list[Message]:
    """The direct sub-parts of a multipart (or the message inside a ``message/*``); [] when unreadable."""
    try:
        payload = part.get_payload()
    except Exception:
        return []
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _is_attachment(part: Message) -> bool:
    try:
        disposition = part.get_content_disposition()
    except Exception:
        disposition = None
    return disposition == "attachment" or bool(_filename(part))


def _mailboxes(message: Message, name: str) -> list[tuple[str, str]]:
    """``(display name, address)`` of each mailbox of an address header, display names decoded."""
    try:
        parsed = [header.addresses for header in message.get_all(name) or [] if hasattr(header, "addresses")]
        found = [(str(a.display_name or ""), str(a.addr_spec or "")) for group in parsed for a in group]
    except Exception:  # an unparsable address header falls back to the lenient parser below
        found = []
    if not found:
        found = [(n, a) for n, a in getaddresses(_headers(message, name))]
    return [(n, a) for n, a in found if "@" in a]


def _msg_id(value: str) -> str:
    """A message id in its ``<left@right>`` form, whether or not the caller wrote the brackets."""
    value = value.strip()
    return value if value.startswith("<") else f"<{value}>"


def _msg_ids(values: list[str]) -> list[str]:
    return _MSG_ID.findall(" ".join(values))


# -- the message --------------------------------------------------------------------------------------
def check_message(
    raw: bytes,
    *,
    patient: bool = False,
    expected_ins: str | None = None,
    cda_codes: list[str] | None = None,
    in_reply_to_expected: str | None = None,
    delivery_receipt_expected: bool = False,
    read_receipt_expected: bool = False,
    no_reply_expected: bool = False,
    bal_type: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    xdm_out: list[bytes] | None = None,
) -> list[Finding]:
    """Every finding about one message sent by the SUT over MSSanté.

    Rules (errors unless said): ``mss.too-large``, ``mss.parse``, ``mss.mime.boundary``,
    ``mss.mime.defect`` (warning), ``mss.message-id``, ``mss.message-id.format``,
    ``mss.from``, ``mss.to``, ``mss.date``, ``mss.date.format``, ``mss.body.content-type``,
    and, when the caller says what the message must be:

    - a reply to ``in_reply_to_expected`` (MSS/va1.08): ``mss.in-reply-to`` (In-Reply-To is
      not exactly that id), ``mss.references`` (References does not name it);
    - ``delivery_receipt_expected`` (MSS/va1.15): ``mss.return-receipt-to`` (absent),
      ``mss.return-receipt-to.address`` (not the From address);
    - ``read_receipt_expected``: ``mss.disposition-notification-to`` (absent),
      ``mss.disposition-notification-to.address`` (warning: not the From address [I]);
      with neither receipt expected nor requested, ``mss.receipt-request`` (warning);
    - ``no_reply_expected`` (MSS/CONF.21): ``mss.x-mss-mes`` (X-MSS-MES is not FIN);
    - ``bal_type`` ``PER``/``ORG``/``APP`` (``CAB`` as ORG, MSS/va1.16): ``mss.from.label`` (no
      display label, or for ORG/APP one that is just the address), ``mss.from.label.pattern`` (a PER label
      not ``Titre_Prénom_NOM_Entité`` [I]), ``mss.from.label.bal-type`` (warning: unknown type).

    Then the MSSanté headers and attachments: ``mss.x-mss-nil``, ``mss.x-mss-ins``,
    ``mss.x-mss-ins.value``, ``mss.x-mss-ins.consistency``, ``mss.x-mss-codecda`` (the values
    are not the CDAs' codes), ``mss.x-mss-codecda.count`` (not one value per CDA),
    ``mss.x-mss-ins.without-xdm`` and ``mss.x-mss-codecda.without-xdm`` (warnings: present
    without XDM), ``mss.xdm.missing``, ``mss.xdm.name`` (warning: case variant),
    ``mss.pdf.missing`` (warning), ``mss.subject``, and for a patient message
    ``mss.patient.address``, ``mss.patient.count``, ``mss.patient.ins``,
    ``mss.patient.x-mss-mes`` (warning, when ``no_reply_expected`` is not given).

    ``cda_codes`` are the ``ClinicalDocument/code/@code`` of the CDAs the message must
    carry; without it they are read from the CDAs of the XDM attachment.
    ``expected_ins`` is the patient's matricule INS: a CDA "carries the INS" when a
    ``recordTarget`` id has it (with an INS OID). The XDM itself is not judged here;
    pass :func:`xdm_attachment`'s bytes to :func:`harness.validators.xdm.check_xdm`, or give
    ``xdm_out``, a list the XDM's bytes are appended to, to have them without parsing the
    message a second time (parsing is most of the cost: about 24 ms for a 1.5 MB message).
    """
    message, findings = parse_message(raw, max_bytes)
    if message is None or any(f.rule == "mss.parse" for f in findings):
        return findings
    findings.extend(_check_envelope(message))
    findings.extend(_check_body(message))
    if in_reply_to_expected is not None:
        findings.extend(_check_threading(message, in_reply_to_expected))
    findings.extend(_check_receipts(message, delivery_receipt_expected, read_receipt_expected))
    if bal_type is not None:
        findings.extend(_check_from_label(message, bal_type))
    xdm = _xdm_part(message)
    if xdm is not None and xdm_out is not None:
        xdm_out.append(xdm)
    cdas = _cdas(xdm) if xdm is not None else []
    findings.extend(_check_attachments(message, xdm, cda_codes))
    findings.extend(_check_mss_headers(message, xdm is not None, cdas, expected_ins, cda_codes))
    if no_reply_expected:
        findings.extend(_check_no_reply(message))
    if xdm is not None:
        findings.extend(_check_subject(_header(message, "Subject")))
    if patient:
        findings.extend(_check_patient(message, expected_ins, warn_mes=not no_reply_expected))
    return findings


def _check_envelope(message: Message) -> list[Finding]:
    """The RFC 5322 fields every message needs: Message-ID (MSS/va1.12), From, To, Date."""
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
    return findings


def _check_threading(message: Message, expected: str) -> list[Finding]:
    """A reply names its parent in In-Reply-To and in References (MSS/va1.08): one of the two is not enough."""
    wanted = _msg_id(expected)
    findings: list[Finding] = []
    in_reply_to = " ".join(_headers(message, "In-Reply-To"))
    if _msg_ids([in_reply_to]) != [wanted]:
        said = f"In-Reply-To is {in_reply_to!r}" if in_reply_to else "In-Reply-To is absent"
        findings.append(error("mss.in-reply-to", f"{said}, not exactly {wanted}", "In-Reply-To", SOURCE))
    references = " ".join(_headers(message, "References"))
    if wanted not in _msg_ids([references]):
        said = f"References ({references!r}) does not name" if references else "References is absent; it must name"
        findings.append(error("mss.references", f"{said} {wanted}", "References", SOURCE))
    return findings


def _check_receipts(message: Message, delivery_expected: bool, read_expected: bool) -> list[Finding]:
    """Receipt requests: a DSN by Return-Receipt-To to the sender's BAL (MSS/va1.15), an MDN by
    Disposition-Notification-To.

    Both headers are read as the caller expects them; without any expectation, no request at all is only a warning.
    """
    senders = _mailboxes(message, "From")
    sender = senders[0][1] if senders else ""
    findings: list[Finding] = []
    if delivery_expected:
        findings.extend(_receipt_header(message, "Return-Receipt-To", "mss.return-receipt-to", sender, True))
    if read_expected:
        findings.extend(
            _receipt_header(message, "Disposition-Notification-To", "mss.disposition-notification-to", sender, False)
        )
    requested = _header(message, "Disposition-Notification-To") or _header(message, "Return-Receipt-To")
    if not delivery_expected and not read_expected and not requested:
        findings.append(
            warning(
                "mss.receipt-request",
                "neither Disposition-Notification-To nor Return-Receipt-To: no MDN can be returned",
                "Disposition-Notification-To",
                SOURCE,
            )
        )
    return findings


def _receipt_header(message: Message, name: str, rule: str, sender: str, strict: bool) -> list[Finding]:
    """One receipt request: present, and naming the sender's address (an error when ``strict``, else a warning)."""
    if not _header(message, name):
        return [error(rule, f"a receipt is expected but the message has no {name}", name, SOURCE)]
    addresses = [a for _, a in getaddresses(_headers(message, name)) if "@" in a]
    if sender and [a.lower() for a in addresses] == [sender.lower()]:
        return []
    make = error if strict else warning
    said = ", ".join(addresses) or _header(message, name)
    return [make(f"{rule}.address", f"{name} is {said!r}, not the sender's address {sender or '(none)'}", name, SOURCE)]


def _check_from_label(message: Message, bal_type: str) -> list[Finding]:
    """The From display label (MSS/va1.16, ECO.2.2.7): ``Titre_Prénom_NOM_Entité`` (PER BAL), else the entity's name."""
    kind = bal_type.strip().upper()
    if kind != "PER" and kind not in _ORGANISATIONAL_BALS:
        return [
            warning(
                "mss.from.label.bal-type", f"BAL type {bal_type[:16]!r} is not PER, ORG, APP or CAB", "From", SOURCE
            )
        ]
    senders = _mailboxes(message, "From")
    if not senders:
        return []  # mss.from already says there is no sender
    label, address = senders[0][0].strip(), senders[0][1]
    if not label or label.strip("<>\"' ").lower() == address.lower():
        return [
            error("mss.from.label", f"the From of a {kind} BAL has no display label, only {address}", "From", SOURCE)
        ]
    if kind == "PER":
        return _check_personal_label(label)
    return []


def _check_personal_label(label: str) -> list[Finding]:
    """A personal label reads title, first name(s), NOM in capitals, entity [I: the token reading of ECO.2.2.7]."""
    tokens = [t for t in re.split(r"[\s_]+", label) if t]
    problems = []
    if not tokens or tokens[0].rstrip(".").lower() not in _TITLES:
        problems.append("it does not start with a title (Dr, Pr, M., Mme, Mlle, Me)")
    if len(tokens) < 4:
        problems.append(f"it has {len(tokens)} parts, fewer than title, first name, NOM and entity")
    if not any(t.isupper() for t in tokens[1:]):
        problems.append("no part after the title is a NOM in capitals")
    if not problems:
        return []
    return [
        error(
            "mss.from.label.pattern",
            f"the From label {label!r} is not Titre_Prénom_NOM_Entité: " + "; ".join(problems),
            "From",
            SOURCE,
        )
    ]


# -- the body -----------------------------------------------------------------------------------------
def check_body(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> list[Finding]:
    """Whether the message's text body is ``text/plain`` or ``multipart/alternative`` plain + HTML (MSS/va1.11).

    Rules: the parsing ones of :func:`parse_message`, and ``mss.body.content-type`` (error).
    """
    message, findings = parse_message(raw, max_bytes)
    if message is None or any(f.rule == "mss.parse" for f in findings):
        return findings
    return findings + _check_body(message)


def _body_part(message: Message) -> Message | None:
    """The part holding the text: the message itself, or the first non-attachment part of a ``multipart/mixed``."""
    if message.get_content_type() != "multipart/mixed":
        return message
    for part in _subparts(message):
        if not _is_attachment(part):
            return part
    return None


def _check_body(message: Message) -> list[Finding]:
    body = _body_part(message)
    where = "Content-Type"
    if body is None:
        return [error("mss.body.content-type", "the message has no text body, only attachments", where, SOURCE)]
    kind = body.get_content_type()
    if kind == "text/plain" and not _is_attachment(body):
        return []
    if kind == "multipart/alternative":
        kinds = sorted(p.get_content_type() for p in _subparts(body))
        if kinds == ["text/html", "text/plain"]:
            return []
        return [
            error(
                "mss.body.content-type",
                f"the multipart/alternative body holds {kinds or 'no readable part'}, not text/plain + text/html",
                where,
                SOURCE,
            )
        ]
    return [
        error(
            "mss.body.content-type",
            f"the text body is {kind}, not text/plain or multipart/alternative (text/plain + text/html)",
            where,
            SOURCE,
        )
    ]


# -- attachments and the MSSanté headers ----------------------------------------------------------------
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


Cdas = list[tuple[str, str | None, set[tuple[str, str]]]]


def _check_mss_headers(
    message: Message, has_xdm: bool, cdas: Cdas, expected_ins: str | None, cda_codes: list[str] | None
) -> list[Finding]:
    """The ``X-MSS-*`` headers of "Référentiel socle MSSanté #2" (ECO.2.4.x)."""
    findings: list[Finding] = []
    if not _header(message, "X-MSS-NIL"):
        findings.append(error("mss.x-mss-nil", "X-MSS-NIL is missing", "X-MSS-NIL", SOURCE))
    findings.extend(_check_ins_header(message, has_xdm, cdas, expected_ins))
    findings.extend(_check_codecda(message, has_xdm, cdas, cda_codes))
    return findings


def _check_ins_header(message: Message, has_xdm: bool, cdas: Cdas, expected_ins: str | None) -> list[Finding]:
    """X-MSS-INS: O or N, present with a CDA, absent without XDM (MSS/CONF.14), agreeing with the CDAs' INS."""
    findings: list[Finding] = []
    ins_header = _header(message, "X-MSS-INS")
    if ins_header and not has_xdm:
        findings.append(
            warning("mss.x-mss-ins.without-xdm", f"X-MSS-INS is set but there is no {XDM_NAME}", "X-MSS-INS", SOURCE)
        )
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
    return findings


def _check_codecda(message: Message, has_xdm: bool, cdas: Cdas, cda_codes: list[str] | None) -> list[Finding]:
    """X-MSS-CODECDA: one value per CDA of the XDM, each its ``code/@code`` (MSS/CONF.15); absent without XDM."""
    announced = _split(_headers(message, "X-MSS-CODECDA"))
    where = "X-MSS-CODECDA"
    if not has_xdm:
        if not announced:
            return []
        return [
            warning("mss.x-mss-codecda.without-xdm", f"X-MSS-CODECDA is set but there is no {XDM_NAME}", where, SOURCE)
        ]
    expected = cda_codes if cda_codes is not None else [c for _, c, _ in cdas if c]
    documents = len(cda_codes) if cda_codes is not None else len(cdas)
    findings: list[Finding] = []
    missing = Counter(expected) - Counter(announced)
    unexpected = Counter(announced) - Counter(expected)
    if missing or unexpected:
        findings.append(
            error(
                "mss.x-mss-codecda",
                f"X-MSS-CODECDA says {announced}, the CDAs carried have codes {expected}"
                + (f"; missing {sorted(missing.elements())}" if missing else "")
                + (f"; not carried {sorted(unexpected.elements())}" if unexpected else ""),
                where,
                SOURCE,
            )
        )
    if len(announced) != documents:
        findings.append(
            error(
                "mss.x-mss-codecda.count",
                f"X-MSS-CODECDA has {len(announced)} value(s) for {documents} CDA document(s): one per CDA",
                where,
                SOURCE,
            )
        )
    return findings


def _check_no_reply(message: Message) -> list[Finding]:
    """``X-MSS-MES: FIN`` when the sender wants no reply (MSS/CONF.21)."""
    mes = _header(message, "X-MSS-MES")
    if mes.upper() == "FIN":
        return []
    return [
        error("mss.x-mss-mes", f"no reply is wanted but X-MSS-MES is {mes or 'absent'}, not FIN", "X-MSS-MES", SOURCE)
    ]


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


def _check_patient(message: Message, expected_ins: str | None, *, warn_mes: bool = True) -> list[Finding]:
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
    if warn_mes and mes.upper() != "FIN":
        findings.append(
            warning(
                "mss.patient.x-mss-mes",
                f"X-MSS-MES is {mes or 'absent'}; FIN is expected when no reply from the patient is wanted [inferred]",
                "X-MSS-MES",
                SOURCE,
            )
        )
    return findings


# -- reports: the original message they carry -----------------------------------------------------------
def _original_headers(part: Message) -> Message | None:
    """The headers of the original message a report's third part carries (whole message or headers only)."""
    kind = part.get_content_type()
    if kind == "message/rfc822":
        inner = _subparts(part)
        return inner[0] if inner else None
    if kind == "text/rfc822-headers":
        text = _payload(part).decode("utf-8", "replace")
        try:
            return HeaderParser(policy=policy.default).parsestr(text.lstrip("\r\n"))
        except Exception:
            return None
    return None


def _check_original_part(parts: list[Message], rule: str, *, warn_if_absent: bool) -> list[Finding]:
    """A report's third part, when there is one, is the original message or its headers."""
    if len(parts) < 3:
        if warn_if_absent:
            return [warning(rule, "no third part carrying the original message", "part 3", SOURCE)]
        return []
    kind = parts[2].get_content_type()
    if kind not in _ORIGINAL_TYPES:
        return [error(rule, f"the third part is {kind}, not message/rfc822 or text/rfc822-headers", "part 3", SOURCE)]
    return []


def _check_original_id(parts: list[Message], rule: str, expected: str) -> list[Finding]:
    """The original message a report's third part carries has the expected Message-ID."""
    wanted = _msg_id(expected)
    if len(parts) < 3:
        return [error(rule, f"no third part: the report cannot be tied to {wanted}", "part 3", SOURCE)]
    if parts[2].get_content_type() not in _ORIGINAL_TYPES:
        return []  # the part's type is reported by _check_original_part
    headers = _original_headers(parts[2])
    carried = _header(headers, "Message-ID") if headers is not None else ""
    if _msg_ids([carried]) == [wanted]:
        return []
    return [error(rule, f"the original carried has Message-ID {carried or '(none)'!r}, not {wanted}", "part 3", SOURCE)]


# -- the disposition notification --------------------------------------------------------------------
def check_mdn(
    raw: bytes, *, original_message_id: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> list[Finding]:
    """Every finding about one RFC 8098 message disposition notification.

    Rules (errors unless said): ``mss.too-large``, ``mss.parse``, ``mss.mime.boundary``,
    ``mss.mdn.content-type`` (not ``multipart/report; report-type=disposition-notification``),
    ``mss.mdn.part`` (no ``message/disposition-notification`` part),
    ``mss.mdn.final-recipient``, ``mss.mdn.original-message-id`` (absent, or not
    ``original_message_id`` when given), ``mss.mdn.disposition``,
    ``mss.mdn.disposition.format``, ``mss.mdn.error-code`` (a code outside 900–906),
    ``mss.mdn.integration-error`` (info: a known code 900–906, in the Disposition or the
    human-readable part), ``mss.mdn.subject`` (warning: an error MDN whose subject does
    not start ``[KO Intégration système !][<code>]``), ``mss.mdn.original`` (the third part
    is not ``message/rfc822`` or ``text/rfc822-headers``; a warning when there is none).
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
    findings.extend(_check_mdn_fields(fields, original_message_id))
    findings.extend(_check_mdn_errors(message, _header(fields, "Disposition")))
    if message.is_multipart():
        findings.extend(_check_original_part(_subparts(message), "mss.mdn.original", warn_if_absent=True))
    return findings


def _check_mdn_fields(fields: Message, original_message_id: str | None) -> list[Finding]:
    """The mandatory fields of the notification, the Disposition's syntax, the Original-Message-ID's value."""
    findings: list[Finding] = []
    where = "message/disposition-notification"
    for name, rule in (
        ("Final-Recipient", "mss.mdn.final-recipient"),
        ("Original-Message-ID", "mss.mdn.original-message-id"),
        ("Disposition", "mss.mdn.disposition"),
    ):
        if not _header(fields, name):
            findings.append(error(rule, f"the notification has no {name} field", where, SOURCE))
    original = _header(fields, "Original-Message-ID")
    if original and original_message_id is not None and _msg_ids([original]) != [_msg_id(original_message_id)]:
        findings.append(
            error(
                "mss.mdn.original-message-id",
                f"Original-Message-ID is {original!r}, not {_msg_id(original_message_id)}",
                where,
                SOURCE,
            )
        )
    disposition = _header(fields, "Disposition")
    if disposition and _DISPOSITION.match(disposition) is None:
        findings.append(
            error("mss.mdn.disposition.format", f"Disposition {disposition!r} is not RFC 8098", where, SOURCE)
        )
    return findings


def _check_mdn_errors(message: Message, disposition: str) -> list[Finding]:
    """The integration error codes an MDN reports (Disposition modifier or human text) and its KO subject."""
    where = "message/disposition-notification"
    codes: set[str] = set()
    match = _DISPOSITION.match(disposition) if disposition else None
    if match is not None and match["modifier"]:
        error_match = _ERROR_MODIFIER.match(match["modifier"].strip())
        if error_match:
            codes.add(error_match["code"])
    codes |= set(re.findall(r"\b(9\d\d)\b", _human_text(message)))
    findings: list[Finding] = []
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


def mdn_disposition(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[str, str]:
    """What an MDN says: its ``Disposition`` field and the integration error code in it (``""`` when none).

    ``("", "")`` for a message that is not a readable MDN; :func:`check_mdn` says why.
    """
    message, _ = parse_message(raw, max_bytes)
    parts = [p for p in message.walk() if p.get_content_type() == "message/disposition-notification"] if message else []
    if not parts:
        return "", ""
    disposition = _header(_disposition_fields(parts[0]), "Disposition")
    modifier = disposition.split(";", 1)[1].split("/", 1) if ";" in disposition else []
    found = _ERROR_MODIFIER.match(modifier[1].strip()) if len(modifier) == 2 else None
    return disposition, found["code"] if found else ""


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


# -- the delivery status notification ----------------------------------------------------------------
def check_dsn(
    raw: bytes, *, original_message_id: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> list[Finding]:
    """Every finding about one RFC 3464 delivery status notification (the operator-level report, protocols.md §3.3 [I]).

    Rules (errors unless said): ``mss.too-large``, ``mss.parse``, ``mss.mime.boundary``,
    ``mss.dsn.content-type`` (not ``multipart/report; report-type=delivery-status``),
    ``mss.dsn.human`` (the first part is not human-readable text),
    ``mss.dsn.part`` (the second part is not ``message/delivery-status``),
    ``mss.dsn.reporting-mta`` (absent or not ``type; name``), ``mss.dsn.recipient`` (no
    per-recipient group), per group ``mss.dsn.final-recipient``, ``mss.dsn.action``,
    ``mss.dsn.status`` (absent or not ``x.y.z`` of class 2, 4 or 5),
    ``mss.dsn.status.consistency`` (warning [I]: a class the Action contradicts),
    ``mss.dsn.original`` (a third part that is not the original message or its headers),
    ``mss.dsn.original-message-id`` (``original_message_id`` given, and the third part
    absent or carrying another Message-ID).
    """
    message, findings = parse_message(raw, max_bytes)
    if message is None or any(f.rule == "mss.parse" for f in findings):
        return findings
    if message.get_content_type() != "multipart/report" or (
        str(message.get_param("report-type", "")).lower() != "delivery-status"
    ):
        findings.append(
            error(
                "mss.dsn.content-type",
                f"Content-Type is {_header(message, 'Content-Type')!r}, "
                "not multipart/report; report-type=delivery-status",
                "Content-Type",
                SOURCE,
            )
        )
    parts = _subparts(message)
    findings.extend(_check_dsn_human(parts))
    if len(parts) < 2 or parts[1].get_content_type() != "message/delivery-status":
        findings.append(error("mss.dsn.part", "the second part is not message/delivery-status", "part 2", SOURCE))
    else:
        findings.extend(_check_status_groups(_status_groups(parts[1])))
    findings.extend(_check_original_part(parts, "mss.dsn.original", warn_if_absent=False))
    if original_message_id is not None:
        findings.extend(_check_original_id(parts, "mss.dsn.original-message-id", original_message_id))
    return findings


def _check_dsn_human(parts: list[Message]) -> list[Finding]:
    kind = parts[0].get_content_type() if parts else ""
    if kind.startswith("text/") or (kind.startswith("multipart/") and kind != "multipart/report"):
        return []
    said = kind or "missing"
    return [error("mss.dsn.human", f"the first part ({said}) is not a human-readable explanation", "part 1", SOURCE)]


def _status_groups(part: Message) -> list[Message]:
    """The field groups of a ``message/delivery-status`` part: per-message first, then one per recipient."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    if not isinstance(payload, str):
        return []
    groups: list[Message] = []
    for block in re.split(r"\r?\n[ \t]*\r?\n", payload.strip("\r\n")):
        try:
            groups.append(HeaderParser(policy=policy.default).parsestr(block))
        except Exception:
            continue
    return groups


def _check_status_groups(groups: list[Message]) -> list[Finding]:
    where = "message/delivery-status"
    findings: list[Finding] = []
    reporting = _header(groups[0], "Reporting-MTA") if groups else ""
    if ";" not in reporting:
        said = f"{reporting!r} is not 'type; name'" if reporting else "is missing"
        findings.append(error("mss.dsn.reporting-mta", f"Reporting-MTA {said}", where, SOURCE))
    recipients = [g for g in groups[1:] if g.keys()]
    if not recipients:
        findings.append(
            error("mss.dsn.recipient", "no per-recipient group (Final-Recipient, Action, Status)", where, SOURCE)
        )
    for number, group in enumerate(recipients, start=1):
        findings.extend(_check_recipient_group(group, f"{where} recipient #{number}"))
    return findings


def _check_recipient_group(group: Message, where: str) -> list[Finding]:
    """One per-recipient group: Final-Recipient ``type; address``, a known Action, an ``x.y.z`` Status."""
    findings: list[Finding] = []
    final = _header(group, "Final-Recipient")
    if ";" not in final:
        said = f"{final!r} is not 'type; address'" if final else "is missing"
        findings.append(error("mss.dsn.final-recipient", f"Final-Recipient {said}", where, SOURCE))
    action = _header(group, "Action").lower()
    if action not in _DSN_ACTIONS:
        said = f"{action!r}" if action else "missing"
        findings.append(error("mss.dsn.action", f"Action {said}, not one of {sorted(_DSN_ACTIONS)}", where, SOURCE))
    status = _header(group, "Status")
    match = _DSN_STATUS.match(status.split(None, 1)[0] if status else "")
    if match is None:
        findings.append(error("mss.dsn.status", f"Status {status or '(missing)'!r} is not x.y.z", where, SOURCE))
    elif action in _DSN_CLASS and match["class"] != _DSN_CLASS[action]:
        findings.append(
            warning(
                "mss.dsn.status.consistency",
                f"Action {action} with Status {status}: class {_DSN_CLASS[action]} expected [inferred]",
                where,
                SOURCE,
            )
        )
    return findings


def dsn_recipients(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> list[tuple[str, str, str]]:
    """What a DSN says per recipient: ``(final recipient address, action, status)``; [] for what cannot be read.

    The address is given without its ``rfc822;`` type, the action lowercased, the status as written;
    a missing field is "". Judge the DSN itself with :func:`check_dsn`.
    """
    message, findings = parse_message(raw, max_bytes)
    if message is None or any(f.rule == "mss.parse" for f in findings):
        return []
    statuses = [p for p in _subparts(message) if p.get_content_type() == "message/delivery-status"]
    if not statuses:
        return []
    out = []
    for group in _status_groups(statuses[0])[1:]:
        final = _header(group, "Final-Recipient")
        if not final and not _header(group, "Action"):
            continue
        address = final.split(";", 1)[1].strip() if ";" in final else final
        out.append((address, _header(group, "Action").lower(), _header(group, "Status")))
    return out
