"""The MSSanté operator simulator, driven by independent clients (smtplib, imaplib, requests) over real sockets."""

from __future__ import annotations

import imaplib
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from email.policy import SMTP
from pathlib import Path

import pytest
import requests

from harness.pki import TestPki
from harness.simulators.mssante import MailSession, MssanteSimulator, TlsPolicy, offered_outside_policy
from harness.simulators.mssante.tls import ALLOWED_TLS12_SUITES
from tests.mss_samples import ANS_N1, CORRESPONDENT, PASSWORD, SUT_BAL, message_with_xdm, xdm_members, zipped

ALLOWED = ":".join(ALLOWED_TLS12_SUITES)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.generate(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def running(pki: TestPki) -> Iterator[MssanteSimulator]:
    with MssanteSimulator(pki, max_message=5 * 1024 * 1024, timeout_s=5) as simulator:
        yield simulator


@pytest.fixture
def operator(running: MssanteSimulator) -> MssanteSimulator:
    running.reset()
    return running


def _client_context(pki: TestPki, *, conforming_ciphers: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_bundle_path))
    context.load_cert_chain(str(pki.organisation.chain_path), str(pki.organisation.key_path))
    if conforming_ciphers:
        context.set_ciphers(ALLOWED)
    return context


def _send(
    operator: MssanteSimulator, pki: TestPki, raw: bytes, to: str = CORRESPONDENT
) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP(*operator.smtp_address, timeout=10) as client:
        client.starttls(context=_client_context(pki))
        client.login(SUT_BAL, PASSWORD)
        return client.sendmail(SUT_BAL, [to], raw)


def _ended_sessions(operator: MssanteSimulator, count: int) -> list[MailSession]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        ended = [s for s in operator.sessions if s.ended is not None]
        if len(ended) >= count:
            return ended
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} sessions ended: {[s.summary() for s in operator.sessions]}")


# -- SMTP ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(not ANS_N1.is_file(), reason="ANS example documents not found beside the repository")
def test_smtplib_submission_is_accepted_validated_and_delivered(operator: MssanteSimulator, pki: TestPki) -> None:
    raw = message_with_xdm(zipped(xdm_members())).as_bytes(policy=SMTP)
    assert _send(operator, pki, raw) == {}
    message = operator.wait_for_message(0, timeout=5)
    assert message is not None
    assert message.recipients == [CORRESPONDENT] and message.delivered == [CORRESPONDENT]
    assert message.raw.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")
    assert [f.rule for f in message.findings if f.severity.value == "error"] == []
    assert len(operator.mailbox(CORRESPONDENT)) == 1
    (session,) = _ended_sessions(operator, 1)
    assert session.starttls and session.authenticated and not session.credentials_in_clear
    assert session.tls["version"] in ("TLSv1.2", "TLSv1.3")
    assert "CENTRE DE SANTE DU TEST" in session.tls["client_certificate"]
    assert offered_outside_policy(session.tls["offered"]) == []
    assert "<credentials masked>" in "\n".join(session.transcript)
    assert PASSWORD not in "\n".join(session.transcript)
    assert {e.action for e in operator.recorder.all()} >= {"session", "message"}


def test_a_message_breaking_the_rules_is_accepted_with_findings(operator: MssanteSimulator, pki: TestPki) -> None:
    message = message_with_xdm(None)
    del message["Message-ID"], message["X-MSS-NIL"]
    _send(operator, pki, message.as_bytes(policy=SMTP))
    accepted = operator.wait_for_message(0, timeout=5)
    assert accepted is not None
    assert {"mss.message-id", "mss.x-mss-nil"} <= {f.rule for f in accepted.findings}


def test_the_default_python_client_offers_suites_outside_the_list(operator: MssanteSimulator, pki: TestPki) -> None:
    with smtplib.SMTP(*operator.smtp_address, timeout=10) as client:
        client.starttls(context=ssl.create_default_context(cafile=str(pki.ca_bundle_path)))
    (session,) = _ended_sessions(operator, 1)
    assert offered_outside_policy(session.tls["offered"]), "CHACHA20 and ECDSA suites are offered by default"


def test_auth_before_starttls_is_refused_and_marked(operator: MssanteSimulator) -> None:
    with smtplib.SMTP(*operator.smtp_address, timeout=10) as client:
        client.ehlo()
        code, _ = client.docmd("AUTH", "PLAIN AGxvZ2luAHBhc3N3b3Jk")
        assert code == 530
        code, _ = client.docmd("MAIL", f"FROM:<{SUT_BAL}>")
        assert code == 530
    (session,) = _ended_sessions(operator, 1)
    assert session.credentials_in_clear and not session.starttls
    assert operator.messages == []


def test_unknown_recipient_wrong_password_and_foreign_sender_are_refused(
    operator: MssanteSimulator, pki: TestPki
) -> None:
    with smtplib.SMTP(*operator.smtp_address, timeout=10) as client:
        client.starttls(context=_client_context(pki))
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login(SUT_BAL, "wrong")
    with smtplib.SMTP(*operator.smtp_address, timeout=10) as client:
        client.starttls(context=_client_context(pki))
        client.login(SUT_BAL, PASSWORD)
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail(SUT_BAL, ["nobody@nowhere.mssante.fr"], b"Subject: x\r\n\r\nx\r\n")
        with pytest.raises(smtplib.SMTPSenderRefused):
            client.sendmail(CORRESPONDENT, [SUT_BAL], b"Subject: x\r\n\r\nx\r\n")
    assert operator.messages == []


def test_a_patient_bal_is_created_on_delivery(operator: MssanteSimulator, pki: TestPki) -> None:
    patient = "279035121518989@patient.mssante.fr"
    _send(operator, pki, message_with_xdm(None, to=patient).as_bytes(policy=SMTP), to=patient)
    assert operator.wait_for_message(0, timeout=5) is not None
    assert len(operator.mailbox(patient)) == 1


def test_an_oversized_message_is_refused_and_the_others_keep_their_mail(
    operator: MssanteSimulator, pki: TestPki
) -> None:
    _send(operator, pki, message_with_xdm(None).as_bytes(policy=SMTP))
    big = message_with_xdm(None, padding=6 * 1024 * 1024).as_bytes(policy=SMTP)
    with pytest.raises((smtplib.SMTPSenderRefused, smtplib.SMTPDataError, smtplib.SMTPServerDisconnected)):
        _send(operator, pki, big)
    assert len(operator.messages) == 1 and len(operator.mailbox(CORRESPONDENT)) == 1


def test_bare_line_feeds_are_refused(operator: MssanteSimulator, pki: TestPki) -> None:
    """RFC 5321 lines end in CRLF; smtplib sends bytes as given, so a bare-LF message is the client's bug."""
    raw = b"Subject: x\n" + b"\n".join([b"y" * 70] * 40) + b"\n"
    with pytest.raises(smtplib.SMTPDataError, match="Line too long"):
        _send(operator, pki, raw)
    assert operator.messages == []


def test_broken_mime_is_accepted_with_a_finding(operator: MssanteSimulator, pki: TestPki) -> None:
    raw = (
        f"From: {SUT_BAL}\r\nTo: {CORRESPONDENT}\r\nSubject: x\r\nMessage-ID: <a@b>\r\n"
        'Content-Type: multipart/mixed; boundary="never-closed"\r\n\r\n--never-closed\r\nContent-Type: text/plain\r\n'
        "\r\ntruncated"
    ).encode()
    _send(operator, pki, raw)
    message = operator.wait_for_message(0, timeout=5)
    assert message is not None and any(f.rule.startswith("mss.mime") for f in message.findings)


@pytest.mark.skipif(not ANS_N1.is_file(), reason="ANS example documents not found beside the repository")
@pytest.mark.parametrize(
    ("members", "rule"),
    [
        pytest.param({"../../evil.sh": b"x"}, "xdm.zip.path", id="zip-slip"),
        pytest.param(
            {
                "IHE_XDM/SUBSET01/METADATA.XML": b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
            },
            "xdm.metadata.unsafe",
            id="xxe",
        ),
    ],
)
def test_a_hostile_xdm_gives_findings(
    operator: MssanteSimulator, pki: TestPki, members: dict[str, bytes], rule: str
) -> None:
    package = {**xdm_members(), **members}
    _send(operator, pki, message_with_xdm(zipped(package)).as_bytes(policy=SMTP))
    message = operator.wait_for_message(0, timeout=5)
    assert message is not None
    assert rule in {f.rule for f in message.findings}


def test_a_zip_bomb_is_judged_in_bounded_time(operator: MssanteSimulator, pki: TestPki) -> None:
    bomb = zipped({"INDEX.HTM": b"x", "README.TXT": b"x", "IHE_XDM/SUBSET01/DOC0001.XML": bytes(300 * 1024 * 1024)})
    _send(operator, pki, message_with_xdm(bomb).as_bytes(policy=SMTP))
    message = operator.wait_for_message(0, timeout=30)
    assert message is not None and any(f.rule.startswith("xdm.zip") for f in message.findings)


def test_a_delivery_receipt_is_returned_when_asked(operator: MssanteSimulator, pki: TestPki) -> None:
    from harness.validators.mss import check_dsn, dsn_recipients

    message = message_with_xdm(None)
    message["Return-Receipt-To"] = SUT_BAL
    _send(operator, pki, message.as_bytes(policy=SMTP))
    assert operator.wait_for_message(0, timeout=5) is not None
    (dsn,) = operator.mailbox(SUT_BAL)
    assert dsn_recipients(dsn.raw) == [(CORRESPONDENT, "delivered", "2.0.0")]
    assert [
        f.rule for f in check_dsn(dsn.raw, original_message_id=message["Message-ID"]) if f.severity.value != "info"
    ] == []


# -- TLS policies ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "server_says"),
    [
        (TlsPolicy.TLS_1_0_ONLY, "unsupported protocol"),
        (TlsPolicy.TLS_1_1_ONLY, "unsupported protocol"),
        (TlsPolicy.WEAK_CIPHER, "no shared cipher"),
        (TlsPolicy.EXPIRED_CERTIFICATE, "certificate expired"),
        (TlsPolicy.NON_IGC_CERTIFICATE, "unknown ca"),
    ],
)
def test_a_conforming_client_refuses_each_faulty_tls_policy(
    operator: MssanteSimulator, pki: TestPki, policy: TlsPolicy, server_says: str
) -> None:
    operator.set_tls_policy(policy)
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        _send(operator, pki, message_with_xdm(None).as_bytes(policy=SMTP))
    with pytest.raises((ssl.SSLError, imaplib.IMAP4.abort, ConnectionError, OSError)):
        imaplib.IMAP4(*operator.imap_address, timeout=10).starttls(ssl_context=_client_context(pki))
    smtp, imap = _ended_sessions(operator, 2)
    for session in (smtp, imap):
        assert server_says in session.tls_error.lower(), session.summary()
        assert session.policy == policy.value
    assert operator.messages == []


def test_a_lenient_client_is_seen_accepting_tls_1_0(operator: MssanteSimulator, pki: TestPki) -> None:
    operator.set_tls_policy(TlsPolicy.TLS_1_0_ONLY)
    lenient = _client_context(pki, conforming_ciphers=False)
    with pytest.warns(DeprecationWarning):
        lenient.minimum_version = ssl.TLSVersion.TLSv1
    lenient.set_ciphers("DEFAULT:@SECLEVEL=0")
    with smtplib.SMTP(*operator.smtp_address, timeout=10) as client:
        client.starttls(context=lenient)
        client.login(SUT_BAL, PASSWORD)
        client.sendmail(SUT_BAL, [CORRESPONDENT], message_with_xdm(None).as_bytes(policy=SMTP))
    message = operator.wait_for_message(0, timeout=5)
    assert message is not None and message.tls["version"] == "TLSv1"


def test_a_required_client_certificate_is_enforced(operator: MssanteSimulator, pki: TestPki) -> None:
    operator.set_tls_policy(TlsPolicy.CONFORMING, require_client_certificate=True)
    bare = ssl.create_default_context(cafile=str(pki.ca_bundle_path))
    with (
        pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)),
        smtplib.SMTP(*operator.smtp_address, timeout=10) as client,
    ):
        client.starttls(context=bare)
        client.noop()


def test_a_handshake_abort_is_recorded_and_the_server_keeps_serving(operator: MssanteSimulator, pki: TestPki) -> None:
    raw = socket.create_connection(operator.smtp_address, timeout=5)
    raw.recv(1024)
    raw.sendall(b"EHLO x\r\n")
    raw.recv(1024)
    raw.sendall(b"STARTTLS\r\n")
    raw.recv(1024)
    raw.sendall(b"\x16\x03\x01\x00\x05garbage")  # half a ClientHello, then gone
    raw.close()
    _ended_sessions(operator, 1)
    _send(operator, pki, message_with_xdm(None).as_bytes(policy=SMTP))
    assert operator.wait_for_message(0, timeout=5) is not None


def test_a_silent_client_is_cut_after_the_timeout(operator: MssanteSimulator) -> None:
    raw = socket.create_connection(operator.smtp_address, timeout=10)
    started = time.monotonic()
    raw.recv(1024)
    assert raw.recv(1024) in (b"", b"421 4.4.2 localhost Error: timeout exceeded\r\n")
    assert time.monotonic() - started < 9
    raw.close()


# -- IMAP ---------------------------------------------------------------------------------------
def test_imaplib_reads_and_flags_the_sut_bal(operator: MssanteSimulator, pki: TestPki) -> None:
    first = message_with_xdm(None, sender=CORRESPONDENT, to=SUT_BAL).as_bytes(policy=SMTP)
    operator.deliver(SUT_BAL, first)
    operator.deliver(SUT_BAL, message_with_xdm(None, sender=CORRESPONDENT, to=SUT_BAL).as_bytes(policy=SMTP))
    client = imaplib.IMAP4(*operator.imap_address, timeout=10)
    assert "LOGINDISABLED" in client.capabilities
    client.starttls(ssl_context=_client_context(pki))
    client.login(SUT_BAL, PASSWORD)
    assert client.select("INBOX")[1] == [b"2"]
    _, found = client.uid("SEARCH", None, "UNSEEN")
    uids = found[0].split()
    assert uids == [b"1", b"2"]
    _, data = client.uid("FETCH", uids[0], "(RFC822)")
    assert isinstance(data[0], tuple) and data[0][1].replace(b"\r\n", b"\n") == first.replace(b"\r\n", b"\n")
    _, structure = client.uid("FETCH", uids[0], "(BODYSTRUCTURE)")
    assert b"BODYSTRUCTURE" in structure[0]
    client.uid("STORE", uids[0], "+FLAGS", "(\\Seen)")
    assert client.uid("SEARCH", None, "UNSEEN")[1][0].split() == [b"2"]
    client.logout()
    session = next(s for s in _ended_sessions(operator, 1) if s.protocol == "imap")
    assert session.authenticated and session.tls_established and not session.credentials_in_clear
    assert PASSWORD not in "\n".join(session.transcript)


def test_imap_login_before_starttls_is_refused(operator: MssanteSimulator) -> None:
    client = imaplib.IMAP4(*operator.imap_address, timeout=10)
    with pytest.raises(imaplib.IMAP4.error):
        client.login(SUT_BAL, PASSWORD)
    client.shutdown()
    (session,) = _ended_sessions(operator, 1)
    assert session.credentials_in_clear and not session.authenticated


def test_imap_wrong_password_is_refused(operator: MssanteSimulator, pki: TestPki) -> None:
    client = imaplib.IMAP4(*operator.imap_address, timeout=10)
    client.starttls(ssl_context=_client_context(pki))
    with pytest.raises(imaplib.IMAP4.error):
        client.login(SUT_BAL, "wrong")
    client.shutdown()


# -- DST ----------------------------------------------------------------------------------------
def test_dst_submission_records_its_entry_point(operator: MssanteSimulator, pki: TestPki, tmp_path: Path) -> None:
    raw = message_with_xdm(None).as_bytes(policy=SMTP)
    cert = (str(pki.organisation.chain_path), str(pki.organisation.key_path))
    for kind in ("igc-sante", "internet"):
        answer = requests.post(
            f"{operator.dst_urls[kind]}/messages",
            data=raw,
            headers={"Content-Type": "message/rfc822"},
            cert=cert,
            verify=str(pki.ca_bundle_path),
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
    assert [m.entry_point for m in operator.messages] == ["igc-sante", "internet"]
    assert operator.messages[0].tls["client_certificate"]


def test_dst_igc_entry_point_requires_a_client_certificate(operator: MssanteSimulator, pki: TestPki) -> None:
    with pytest.raises(requests.exceptions.RequestException):
        requests.post(
            f"{operator.dst_urls['igc-sante']}/messages",
            data=b"x",
            headers={"Content-Type": "message/rfc822"},
            verify=str(pki.ca_bundle_path),
            timeout=10,
        )
    answer = requests.post(
        f"{operator.dst_urls['internet']}/messages",
        data=b"not a message",
        headers={"Content-Type": "text/plain"},
        verify=str(pki.ca_bundle_path),
        timeout=10,
    )
    assert answer.status_code == 415 and operator.messages == []


# -- what a correspondent sends ------------------------------------------------------------------
@pytest.mark.skipif(not ANS_N1.is_file(), reason="ANS example documents not found beside the repository")
def test_a_correspondent_package_has_the_xdm_layout_and_the_patient() -> None:
    from harness.simulators.mssante.correspondent import XdmDocument, correspondent_message, patient_cx, xdm_package
    from harness.validators.mss import xdm_attachment
    from harness.validators.xdm import check_xdm, read_xdm
    from tests.mss_samples import EXAMPLE_INS
    from tests.pdf_samples import conforming_pdfa

    package = xdm_package(
        [XdmDocument(ANS_N1.read_bytes(), "1.2.250.1.999.1", conforming_pdfa())], patient_cx(*EXAMPLE_INS)
    )
    report = check_xdm(package, expected_ins=EXAMPLE_INS)
    assert not [f.rule for f in report.findings if f.rule.startswith("xdm.") and f.severity.value == "error"]
    metadata = read_xdm(package).documents["IHE_XDM/SUBSET01/METADATA.XML"]
    assert f"{EXAMPLE_INS[0]}^^^&amp;{EXAMPLE_INS[1]}&amp;ISO^NH".encode() in metadata
    message_id, raw = correspondent_message(
        CORRESPONDENT, SUT_BAL, "XDM/1.0/DDM+x", "x", xdm=package, read_receipt=True
    )
    assert xdm_attachment(raw) == package and message_id.encode() in raw and b"\r\n" in raw
    assert b"Disposition-Notification-To: " + CORRESPONDENT.encode() in raw


def test_a_receipt_is_judged_as_a_receipt(operator: MssanteSimulator, pki: TestPki) -> None:
    """An MDN the SUT sends back is checked by the RFC 8098 rules, not as a document message."""
    from harness.simulators.mssante.operator import build_dsn, default_validator

    _send(operator, pki, message_with_xdm(None).as_bytes(policy=SMTP))
    accepted = operator.wait_for_message(0, timeout=5)
    assert accepted is not None
    dsn = build_dsn(accepted, "<x@y>", SUT_BAL)
    assert not [f for f in default_validator(dsn) if f.severity.value == "error"]
    mdn = dsn.replace(b"delivery-status", b"disposition-notification", 1)
    assert {f.rule for f in default_validator(mdn)} & {"mss.mdn.part", "mss.mdn.content-type"}
