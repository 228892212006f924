"""The MSSanté message validator: a conforming message passes, each header rule fails on its mutation."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

import pytest

from harness.validators.mss import (
    DEFAULT_MAX_BYTES,
    check_body,
    check_dsn,
    check_mdn,
    check_message,
    dsn_recipients,
    xdm_attachment,
)

MATRICULE = "279035121518989"
XDM = b"PK\x05\x06" + bytes(18)  # an empty zip: the XDM is judged by xdm.check_xdm, not here


def _message(patient: bool = False, xdm: bool = True) -> EmailMessage:
    message = EmailMessage()
    message["Message-ID"] = "<abc.123@sut.mssante.fr>"
    message["From"] = "dr.martin@hopital.mssante.fr"
    message["To"] = f"{MATRICULE}@patient.mssante.fr" if patient else "dr.durand@cabinet.mssante.fr"
    message["Date"] = format_datetime(datetime(2024, 5, 1, 10, 0, tzinfo=UTC))
    message["Subject"] = "XDM/1.0/DDM+ECHOGRAPHIE ABDOMINOPELVIENNE CORSE FIGATELLIX 12/10/1988"
    message["Disposition-Notification-To"] = "dr.martin@hopital.mssante.fr"
    message["X-MSS-NIL"] = "DEV935997"
    if patient:
        message["X-MSS-MES"] = "FIN"
    message.set_content("Veuillez trouver ci-joint le compte rendu.")
    if xdm:
        message.add_attachment(b"%PDF-1.4 ...", maintype="application", subtype="pdf", filename="CR.pdf")
        message.add_attachment(XDM, maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    return message


def _errors(message: EmailMessage, **kwargs: object) -> set[str]:
    return {f.rule for f in check_message(message.as_bytes(), **kwargs) if f.severity.value == "error"}  # type: ignore[arg-type]


def _all(message: EmailMessage, **kwargs: object) -> set[str]:
    return {f.rule for f in check_message(message.as_bytes(), **kwargs)}  # type: ignore[arg-type]


def test_a_conforming_message_passes() -> None:
    assert _all(_message(), cda_codes=[]) == set()
    assert _all(_message(patient=True), patient=True, expected_ins=MATRICULE, cda_codes=[]) == set()


def test_xdm_attachment_is_returned() -> None:
    assert xdm_attachment(_message().as_bytes()) == XDM
    assert xdm_attachment(_message(xdm=False).as_bytes()) is None


def _drop(name: str) -> Callable[[EmailMessage], None]:
    def mutate(message: EmailMessage) -> None:
        del message[name]

    return mutate


def _set(name: str, value: str) -> Callable[[EmailMessage], None]:
    def mutate(message: EmailMessage) -> None:
        del message[name]
        message[name] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "rule"),
    [
        (_drop("Message-ID"), "mss.message-id"),
        (_set("Message-ID", "no-angle-brackets"), "mss.message-id.format"),
        (_drop("From"), "mss.from"),
        (_drop("To"), "mss.to"),
        (_drop("Date"), "mss.date"),
        (_drop("X-MSS-NIL"), "mss.x-mss-nil"),
        (_set("X-MSS-INS", "maybe"), "mss.x-mss-ins.value"),
        (_set("X-MSS-CODECDA", "11488-4"), "mss.x-mss-codecda"),
        (_set("Subject", "Compte rendu"), "mss.subject"),
        (_set("Subject", "XDM/1.0/DDM+CR CORSE FIGATELLIX 31/02/1988"), "mss.subject"),
    ],
)
def test_each_header_rule_fails_on_its_mutation(mutate: Callable[[EmailMessage], None], rule: str) -> None:
    message = _message()
    mutate(message)
    assert rule in _errors(message, cda_codes=[])


def test_missing_receipt_request_is_a_warning() -> None:
    message = _message()
    del message["Disposition-Notification-To"]
    findings = check_message(message.as_bytes(), cda_codes=[])
    assert {f.rule: f.severity.value for f in findings} == {"mss.receipt-request": "warning"}


def test_reply_threading() -> None:
    message = _message()
    assert "mss.in-reply-to" in _errors(message, cda_codes=[], in_reply_to_expected="<orig@peer.mssante.fr>")
    message["In-Reply-To"] = "<orig@peer.mssante.fr>"
    assert "mss.in-reply-to" not in _errors(message, cda_codes=[], in_reply_to_expected="<orig@peer.mssante.fr>")
    message["References"] = "<older@peer.mssante.fr> <orig@peer.mssante.fr>"
    assert _all(message, cda_codes=[], in_reply_to_expected="orig@peer.mssante.fr") == set()


def test_codecda_must_match_the_cdas() -> None:
    message = _message()
    assert "mss.x-mss-codecda" in _errors(message, cda_codes=["11488-4"])
    message["X-MSS-CODECDA"] = "11488-4"
    assert "mss.x-mss-codecda" not in _errors(message, cda_codes=["11488-4"])


def test_announced_cda_without_xdm() -> None:
    assert "mss.xdm.missing" in _errors(_message(xdm=False), cda_codes=["11488-4"])


def test_patient_rules() -> None:
    message = _message(patient=True)
    message.replace_header("To", "someone@hopital.mssante.fr")
    assert "mss.patient.address" in _errors(message, patient=True)
    message.replace_header("To", f"{MATRICULE}@patient.mssante.fr, 180000000000000@patient.mssante.fr")
    assert "mss.patient.count" in _errors(message, patient=True)
    message.replace_header("To", "12345@patient.mssante.fr")
    assert "mss.patient.address" in _errors(message, patient=True)
    message.replace_header("To", "180000000000000@patient.mssante.fr")
    assert "mss.patient.ins" in _errors(message, patient=True, expected_ins=MATRICULE)
    del message["X-MSS-MES"]
    assert "mss.patient.x-mss-mes" in _all(message, patient=True)


def test_broken_boundary_gives_findings() -> None:
    raw = (
        b"Message-ID: <a@b>\r\nFrom: a@b.fr\r\nTo: c@d.fr\r\nDate: Wed, 01 May 2024 10:00:00 +0000\r\n"
        b'X-MSS-NIL: X\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="XYZ"\r\n\r\n'
        b"no boundary here at all\r\n"
    )
    assert "mss.mime.boundary" in {f.rule for f in check_message(raw)}


@pytest.mark.parametrize("raw", [b"", b"\x00\xff garbage", b"Content-Type: multipart/mixed\r\n\r\n--"])
def test_garbage_gives_findings_not_exceptions(raw: bytes) -> None:
    assert check_message(raw)
    assert check_mdn(raw)


def test_oversized_message() -> None:
    assert {f.rule for f in check_message(_message().as_bytes(), max_bytes=100)} == {"mss.too-large"}


# -- MDN ---------------------------------------------------------------------------------------------
ORIGINAL_PART = (
    "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    "Message-ID: <abc.123@sut.mssante.fr>\r\nFrom: dr.martin@hopital.mssante.fr\r\n\r\n"
)


def _mdn(
    disposition: str = "automatic-action/MDN-sent-automatically; processed",
    text: str = "OK",
    third: str = ORIGINAL_PART,
) -> bytes:
    subject = "XDM/1.0/DDM+CR CORSE FIGATELLIX 12/10/1988"
    if "Error" in disposition:
        subject = "[KO Intégration système !][902] " + subject
    fields = (
        "Reporting-UA: sut.mssante.fr\r\nFinal-Recipient: rfc822;dr.durand@cabinet.mssante.fr\r\n"
        "Original-Recipient: rfc822;dr.durand@cabinet.mssante.fr\r\n"
        f"Original-Message-ID: <abc.123@sut.mssante.fr>\r\nDisposition: {disposition}\r\n"
    )
    return (
        "Message-ID: <mdn.1@sut.mssante.fr>\r\nFrom: dr.durand@cabinet.mssante.fr\r\n"
        "To: dr.martin@hopital.mssante.fr\r\nDate: Wed, 01 May 2024 10:00:00 +0000\r\n"
        f"Subject: {subject}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="B"\r\n\r\n'
        f"--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
        f"--B\r\nContent-Type: message/disposition-notification\r\n\r\n{fields}\r\n"
        f"{third}--B--\r\n"
    ).encode()


def test_a_conforming_mdn_passes() -> None:
    assert check_mdn(_mdn()) == []


def test_an_error_mdn_reports_its_code() -> None:
    findings = check_mdn(_mdn("automatic-action/MDN-sent-automatically; processed/Error: 902^Patient inconnu", "902"))
    assert {f.rule for f in findings} == {"mss.mdn.integration-error"}


def test_unknown_error_code() -> None:
    findings = check_mdn(_mdn("automatic-action/MDN-sent-automatically; processed/Error: 950^X"))
    assert "mss.mdn.error-code" in {f.rule for f in findings}


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        (b"report-type=disposition-notification", b"report-type=delivery-status", "mss.mdn.content-type"),
        (b"Final-Recipient:", b"X-Final:", "mss.mdn.final-recipient"),
        (b"Original-Message-ID:", b"X-Original:", "mss.mdn.original-message-id"),
        (b"Disposition: automatic", b"X-Disposition: automatic", "mss.mdn.disposition"),
        (b"MDN-sent-automatically; processed", b"whatever", "mss.mdn.disposition.format"),
        (b"message/disposition-notification", b"text/plain", "mss.mdn.part"),
    ],
)
def test_each_mdn_rule_fails_on_its_mutation(old: bytes, new: bytes, rule: str) -> None:
    assert rule in {f.rule for f in check_mdn(_mdn().replace(old, new))}


def test_mdn_original_message_part() -> None:
    assert "mss.mdn.original" in {f.rule for f in check_mdn(_mdn(third="")) if f.severity.value == "warning"}
    whole = "--B\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: <abc.123@sut.mssante.fr>\r\n\r\nCorps.\r\n"
    assert check_mdn(_mdn(third=whole)) == []
    other = "--B\r\nContent-Type: application/pdf\r\n\r\n%PDF\r\n"
    assert "mss.mdn.original" in {f.rule for f in check_mdn(_mdn(third=other)) if f.severity.value == "error"}


def test_mdn_original_message_id_must_match() -> None:
    assert check_mdn(_mdn(), original_message_id="<abc.123@sut.mssante.fr>") == []
    assert check_mdn(_mdn(), original_message_id="abc.123@sut.mssante.fr") == []
    assert "mss.mdn.original-message-id" in {f.rule for f in check_mdn(_mdn(), original_message_id="<other@x.fr>")}


# -- reply threading, receipts, no reply ----------------------------------------------------------------
ORIGINAL_ID = "<orig@peer.mssante.fr>"


@pytest.mark.parametrize(
    ("in_reply_to", "references", "rules"),
    [
        (ORIGINAL_ID, ORIGINAL_ID, set()),
        (ORIGINAL_ID, None, {"mss.references"}),
        (None, ORIGINAL_ID, {"mss.in-reply-to"}),
        ("<other@peer.mssante.fr>", "<other@peer.mssante.fr>", {"mss.in-reply-to", "mss.references"}),
        (f"{ORIGINAL_ID} <other@peer.mssante.fr>", ORIGINAL_ID, {"mss.in-reply-to"}),  # exactly that id
        ("orig@peer.mssante.fr", ORIGINAL_ID, {"mss.in-reply-to"}),  # not a msg-id: no angle brackets
    ],
)
def test_a_reply_needs_in_reply_to_and_references(
    in_reply_to: str | None, references: str | None, rules: set[str]
) -> None:
    message = _message()
    if in_reply_to is not None:
        message["In-Reply-To"] = in_reply_to
    if references is not None:
        message["References"] = references
    found = _errors(message, cda_codes=[], in_reply_to_expected=ORIGINAL_ID) & {"mss.in-reply-to", "mss.references"}
    assert found == rules


def test_delivery_receipt_requested_to_the_sender() -> None:
    message = _message()
    assert "mss.return-receipt-to" in _errors(message, cda_codes=[], delivery_receipt_expected=True)
    message["Return-Receipt-To"] = "Dr.Martin@hopital.mssante.fr"  # the sender, case aside
    assert _all(message, cda_codes=[], delivery_receipt_expected=True) == set()
    message.replace_header("Return-Receipt-To", "secretariat@hopital.mssante.fr")
    assert "mss.return-receipt-to.address" in _errors(message, cda_codes=[], delivery_receipt_expected=True)


def test_read_receipt_requested() -> None:
    message = _message()
    assert _all(message, cda_codes=[], read_receipt_expected=True) == set()
    message.replace_header("Disposition-Notification-To", "secretariat@hopital.mssante.fr")
    found = {
        f.rule: f.severity.value for f in check_message(message.as_bytes(), cda_codes=[], read_receipt_expected=True)
    }
    assert found == {"mss.disposition-notification-to.address": "warning"}
    del message["Disposition-Notification-To"]
    assert "mss.disposition-notification-to" in _errors(message, cda_codes=[], read_receipt_expected=True)
    assert "mss.receipt-request" not in _all(message, cda_codes=[], read_receipt_expected=True)


def test_no_reply_wanted_needs_x_mss_mes_fin() -> None:
    message = _message()
    assert "mss.x-mss-mes" in _errors(message, cda_codes=[], no_reply_expected=True)
    message["X-MSS-MES"] = "FIN"
    assert _all(message, cda_codes=[], no_reply_expected=True) == set()
    patient = _message(patient=True)
    patient.replace_header("X-MSS-MES", "SUITE")
    rules = _all(patient, patient=True, cda_codes=[], no_reply_expected=True)
    assert "mss.x-mss-mes" in rules and "mss.patient.x-mss-mes" not in rules


# -- the From label ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "label",
    [
        "Dr Jean DURAND CHU de Nantes",
        "Dr_Jean_DURAND_CHU-Nantes",
        "dr. Marie-Anne LE GOFF Cabinet des Lilas",
        "Mme Hélène LEFÈVRE Pharmacie",
        "PR Paul MARTIN Hôpital",
    ],
)
def test_a_personal_label_that_follows_the_pattern_passes(label: str) -> None:
    message = _message()
    message.replace_header("From", f'"{label}" <dr.martin@hopital.mssante.fr>')
    assert not {r for r in _all(message, cda_codes=[], bal_type="PER") if r.startswith("mss.from")}


@pytest.mark.parametrize(
    ("from_value", "rule"),
    [
        ("dr.martin@hopital.mssante.fr", "mss.from.label"),
        ('"dr.martin@hopital.mssante.fr" <dr.martin@hopital.mssante.fr>', "mss.from.label"),
        ('"Jean DURAND CHU Nantes" <dr.martin@hopital.mssante.fr>', "mss.from.label.pattern"),  # no title
        ('"Dr Jean DURAND" <dr.martin@hopital.mssante.fr>', "mss.from.label.pattern"),  # no entity
        ('"Dr Jean Durand Chu-Nantes" <dr.martin@hopital.mssante.fr>', "mss.from.label.pattern"),  # no NOM
        ('"Docteur Jean DURAND CHU" <dr.martin@hopital.mssante.fr>', "mss.from.label.pattern"),
    ],
)
def test_a_personal_label_off_the_pattern_fails(from_value: str, rule: str) -> None:
    message = _message()
    message.replace_header("From", from_value)
    assert rule in _errors(message, cda_codes=[], bal_type="PER")


@pytest.mark.parametrize("bal_type", ["ORG", "APP", "org"])
def test_an_organisational_label_is_the_entity(bal_type: str) -> None:
    message = _message()
    assert "mss.from.label" in _errors(message, cda_codes=[], bal_type=bal_type)
    message.replace_header("From", '"Secrétariat de cardiologie CH Test" <dr.martin@hopital.mssante.fr>')
    assert not {r for r in _all(message, cda_codes=[], bal_type=bal_type) if r.startswith("mss.from")}


def test_an_unknown_bal_type_is_a_warning_not_an_exception() -> None:
    found = {f.rule: f.severity.value for f in check_message(_message().as_bytes(), cda_codes=[], bal_type="XYZ")}
    assert found == {"mss.from.label.bal-type": "warning"}


# -- the body -----------------------------------------------------------------------------------------
def _with_body(kind: str) -> EmailMessage:
    message = _message(xdm=False)
    if kind == "alternative":
        message.add_alternative("<p>Veuillez trouver ci-joint le compte rendu.</p>", subtype="html")
    elif kind == "html":
        message.set_content("<p>compte rendu</p>", subtype="html")
    elif kind == "html-only-alternative":
        message.set_content("<p>compte rendu</p>", subtype="html")
        message.add_alternative("<p>autre</p>", subtype="html")
    return message


@pytest.mark.parametrize(("kind", "conforms"), [("plain", True), ("alternative", True), ("html", False)])
def test_body_content_type(kind: str, conforms: bool) -> None:
    message = _with_body(kind)
    assert ("mss.body.content-type" not in {f.rule for f in check_body(message.as_bytes())}) is conforms
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="CR.pdf")  # into mixed
    assert ("mss.body.content-type" not in _errors(message, cda_codes=[])) is conforms


def test_alternative_body_needs_plain_and_html() -> None:
    assert "mss.body.content-type" in {f.rule for f in check_body(_with_body("html-only-alternative").as_bytes())}


def test_a_message_of_attachments_only_has_no_body() -> None:
    message = EmailMessage()
    message["From"] = "dr.martin@hopital.mssante.fr"
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="CR.pdf")
    message.add_attachment(b"x", maintype="text", subtype="plain", filename="notes.txt")
    assert "mss.body.content-type" in {f.rule for f in check_body(message.as_bytes())}


# -- X-MSS-CODECDA and X-MSS-INS against the XDM ------------------------------------------------------
def _cda(code: str) -> bytes:
    return f'<ClinicalDocument xmlns="urn:hl7-org:v3"><code code="{code}"/></ClinicalDocument>'.encode()


def _xdm(*codes: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("IHE_XDM/SUBSET01/METADATA.XML", b"<SubmitObjectsRequest/>")
        for number, code in enumerate(codes, start=1):
            archive.writestr(f"IHE_XDM/SUBSET01/DOC{number:04d}.XML", _cda(code))
    return buffer.getvalue()


def _carrying(*codes: str, header: list[str] | None = None) -> EmailMessage:
    message = _message(xdm=False)
    message["X-MSS-INS"] = "N"
    for value in header or []:
        message["X-MSS-CODECDA"] = value
    message.add_attachment(b"%PDF-1.4 ...", maintype="application", subtype="pdf", filename="CR.pdf")
    message.add_attachment(_xdm(*codes), maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    return message


@pytest.mark.parametrize("header", [["11488-4", "34133-9"], ["11488-4, 34133-9"], ["34133-9,11488-4"]])
def test_codecda_one_value_per_cda_repeated_or_comma_separated(header: list[str]) -> None:
    assert _all(_carrying("11488-4", "34133-9", header=header)) == set()


@pytest.mark.parametrize(
    ("codes", "header", "rules"),
    [
        (("11488-4", "34133-9"), ["11488-4"], {"mss.x-mss-codecda", "mss.x-mss-codecda.count"}),
        (("11488-4", "11488-4"), ["11488-4"], {"mss.x-mss-codecda", "mss.x-mss-codecda.count"}),
        (("11488-4",), ["11488-4", "11488-4"], {"mss.x-mss-codecda", "mss.x-mss-codecda.count"}),
        (("11488-4", "34133-9"), ["11488-4", "18748-4"], {"mss.x-mss-codecda"}),
        (("11488-4",), [], {"mss.x-mss-codecda", "mss.x-mss-codecda.count"}),
    ],
)
def test_codecda_against_the_cdas_of_the_xdm(codes: tuple[str, ...], header: list[str], rules: set[str]) -> None:
    assert {r for r in _errors(_carrying(*codes, header=header)) if r.startswith("mss.x-mss-codecda")} == rules


def test_mss_headers_without_xdm_are_warnings() -> None:
    message = _message(xdm=False)
    message["X-MSS-INS"] = "O"
    message["X-MSS-CODECDA"] = "11488-4"
    found = {f.rule: f.severity.value for f in check_message(message.as_bytes())}
    assert found["mss.x-mss-ins.without-xdm"] == "warning"
    assert found["mss.x-mss-codecda.without-xdm"] == "warning"
    assert "mss.x-mss-codecda" not in found and "mss.x-mss-codecda.count" not in found


# -- DSN ---------------------------------------------------------------------------------------------
RECIPIENT_GROUPS = (
    "Final-Recipient: rfc822; dr.durand@cabinet.mssante.fr\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\n"
    "Final-Recipient: rfc822; inconnu@cabinet.mssante.fr\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
)
ORIGINAL_HEADERS = (
    "--D\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    "Message-ID: <abc.123@sut.mssante.fr>\r\nFrom: dr.martin@hopital.mssante.fr\r\n\r\n"
)


def _dsn(groups: str = RECIPIENT_GROUPS, third: str = ORIGINAL_HEADERS, report_type: str = "delivery-status") -> bytes:
    return (
        "Message-ID: <dsn.1@operateur.mssante.fr>\r\nFrom: MAILER-DAEMON@operateur.mssante.fr\r\n"
        "To: dr.martin@hopital.mssante.fr\r\nDate: Wed, 01 May 2024 10:00:00 +0000\r\n"
        "Subject: Delivery Status Notification\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type={report_type}; boundary="D"\r\n\r\n'
        "--D\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nUn destinataire est inconnu.\r\n"
        "--D\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; mx.operateur.mssante.fr\r\n\r\n{groups}\r\n"
        f"{third}--D--\r\n"
    ).encode()


def test_a_conforming_dsn_passes_and_is_read() -> None:
    assert check_dsn(_dsn()) == []
    assert check_dsn(_dsn(), original_message_id="abc.123@sut.mssante.fr") == []
    assert check_dsn(_dsn(third="")) == []  # the third part is optional
    assert dsn_recipients(_dsn()) == [
        ("dr.durand@cabinet.mssante.fr", "delivered", "2.0.0"),
        ("inconnu@cabinet.mssante.fr", "failed", "5.1.1"),
    ]


@pytest.mark.parametrize(
    ("old", "new", "rule"),
    [
        (b"report-type=delivery-status", b"report-type=disposition-notification", "mss.dsn.content-type"),
        (b"Content-Type: text/plain; charset=utf-8", b"Content-Type: application/octet-stream", "mss.dsn.human"),
        (b"Content-Type: message/delivery-status", b"Content-Type: text/plain", "mss.dsn.part"),
        (b"Reporting-MTA: dns; mx.operateur.mssante.fr", b"X-Reporting: mx", "mss.dsn.reporting-mta"),
        (b"Reporting-MTA: dns; mx.operateur.mssante.fr", b"Reporting-MTA: mx", "mss.dsn.reporting-mta"),
        (b"Final-Recipient: rfc822; dr.durand", b"X-Final: rfc822; dr.durand", "mss.dsn.final-recipient"),
        (b"Action: delivered", b"Action: vanished", "mss.dsn.action"),
        (b"Action: failed", b"X-Action: failed", "mss.dsn.action"),
        (b"Status: 2.0.0", b"Status: 250 OK", "mss.dsn.status"),
        (b"Status: 5.1.1", b"Status: 3.1.1", "mss.dsn.status"),
        (b"Content-Type: text/rfc822-headers", b"Content-Type: image/png", "mss.dsn.original"),
    ],
)
def test_each_dsn_rule_fails_on_its_mutation(old: bytes, new: bytes, rule: str) -> None:
    raw = _dsn()
    assert old in raw
    assert rule in {f.rule for f in check_dsn(raw.replace(old, new)) if f.severity.value == "error"}


def test_dsn_without_recipient_group() -> None:
    assert "mss.dsn.recipient" in {f.rule for f in check_dsn(_dsn(groups=""))}


def test_dsn_status_inconsistent_with_action_is_a_warning() -> None:
    found = {f.rule: f.severity.value for f in check_dsn(_dsn().replace(b"Status: 2.0.0", b"Status: 5.0.0"))}
    assert found == {"mss.dsn.status.consistency": "warning"}


def test_dsn_original_message_id() -> None:
    assert "mss.dsn.original-message-id" in {f.rule for f in check_dsn(_dsn(), original_message_id="<other@x.fr>")}
    assert "mss.dsn.original-message-id" in {f.rule for f in check_dsn(_dsn(third=""), original_message_id="<a@b>")}
    whole = "--D\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: <abc.123@sut.mssante.fr>\r\n\r\nCorps\r\n"
    assert check_dsn(_dsn(third=whole), original_message_id="<abc.123@sut.mssante.fr>") == []


# -- hostile input: findings, never exceptions -----------------------------------------------------------
BROKEN_BOUNDARY = (
    b"Message-ID: <a@b>\r\nFrom: a@b.fr\r\nTo: c@d.fr\r\nDate: Wed, 01 May 2024 10:00:00 +0000\r\n"
    b'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="XYZ"\r\n\r\n'
    b"--OTHER\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; x\r\n"
)
NO_PARTS = (
    b"Message-ID: <a@b>\r\nFrom: a@b.fr\r\nTo: c@d.fr\r\nDate: Wed, 01 May 2024 10:00:00 +0000\r\n"
    b'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=disposition-notification; boundary="B"\r\n\r\n'
    b"--B--\r\n"
)
STATUS_ONLY = (  # a delivery-status part whose groups are garbage
    b"From: a@b.fr\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="D"\r\n\r\n'
    b"--D\r\nContent-Type: message/delivery-status\r\n\r\n\x00\xff: ::\r\n\r\n;;;\r\n--D--\r\n"
)


@pytest.mark.parametrize("raw", [BROKEN_BOUNDARY, NO_PARTS, STATUS_ONLY, b"", b"\x00\xff garbage", b"--"])
def test_hostile_reports_give_findings_not_exceptions(raw: bytes) -> None:
    assert check_dsn(raw)
    assert check_mdn(raw)
    assert check_message(raw)
    assert isinstance(check_body(raw), list)
    assert isinstance(dsn_recipients(raw), list)


def test_broken_boundary_in_a_dsn_is_reported() -> None:
    rules = {f.rule for f in check_dsn(BROKEN_BOUNDARY)}
    assert "mss.mime.boundary" in rules and "mss.dsn.part" in rules
    assert dsn_recipients(BROKEN_BOUNDARY) == []


def test_a_report_without_parts() -> None:
    assert "mss.mdn.part" in {f.rule for f in check_mdn(NO_PARTS)}
    assert {"mss.dsn.content-type", "mss.dsn.human", "mss.dsn.part"} <= {f.rule for f in check_dsn(NO_PARTS)}


def test_above_fifty_megabytes_is_refused_unparsed() -> None:
    raw = _dsn() + b"x" * (DEFAULT_MAX_BYTES + 1 - len(_dsn()) + 1)
    assert len(raw) > 50 * 1024 * 1024
    for check in (check_dsn, check_mdn, check_message, check_body):
        assert {f.rule for f in check(raw)} == {"mss.too-large"}
    assert dsn_recipients(raw) == []
    assert xdm_attachment(raw) is None


def test_mdn_disposition_reads_the_integration_error() -> None:
    from harness.validators.mss import mdn_disposition

    def mdn(disposition: str) -> bytes:
        return (
            "From: a@x.mssante.fr\r\nTo: b@y.mssante.fr\r\nMessage-ID: <1@x>\r\n"
            'Content-Type: multipart/report; report-type=disposition-notification; boundary="B"\r\n\r\n'
            "--B\r\nContent-Type: text/plain\r\n\r\nAccuse\r\n"
            "--B\r\nContent-Type: message/disposition-notification\r\n\r\n"
            f"Final-Recipient: rfc822; a@x.mssante.fr\r\nOriginal-Message-ID: <o@y>\r\nDisposition: {disposition}\r\n"
            "\r\n--B--\r\n"
        ).encode()

    processed = "automatic-action/MDN-sent-automatically; processed"
    assert mdn_disposition(mdn(processed)) == (processed, "")
    assert mdn_disposition(mdn(processed + "/Error: 902^Patient inconnu"))[1] == "902"
    assert mdn_disposition(b"not a receipt") == ("", "")


def test_the_xdm_can_be_had_from_the_same_parse() -> None:
    found: list[bytes] = []
    assert check_message(_message().as_bytes(), cda_codes=[], xdm_out=found) == []
    assert found == [XDM]
    empty: list[bytes] = []
    check_message(_message(xdm=False).as_bytes(), xdm_out=empty)
    assert empty == []
