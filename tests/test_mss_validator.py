"""The MSSanté message validator: a conforming message passes, each header rule fails on its mutation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

import pytest

from harness.validators.mss import check_mdn, check_message, xdm_attachment

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
def _mdn(disposition: str = "automatic-action/MDN-sent-automatically; processed", text: str = "OK") -> bytes:
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
        "--B--\r\n"
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
