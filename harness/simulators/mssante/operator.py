"""The operator's core, shared by its SMTP, IMAP and DST front ends: BALs, policy, records, acceptance.

Three servers in three threads (aiosmtpd's asyncio loop, Twisted's reactor, the DST HTTPS
server) all end up doing the same few things: open a session record, check a login,
accept a message for some BALs, close the session. They do it here, under one lock, so a
scenario sees one consistent story whatever protocol the SUT used.

Accepting a message means: size already bounded by the front end; recipients checked
(unknown ones refused at RCPT time, as an operator does for its own domain); the message
validated when validation is on (the MSSanté header rules and, for an ``IHE_XDM.ZIP``, the
XDM rules with METADATA.XML through the XDS validator); a copy in each recipient's INBOX;
and, when the sender asked for one with ``Return-Receipt-To``, a DSN (RFC 3464,
``Action: delivered``) in the sender's BAL, as an operator's MTA would return.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.parser import BytesHeaderParser
from email.utils import formatdate, getaddresses, make_msgid
from typing import Any, TypeVar

from harness.findings import Finding
from harness.pki import TestPki
from harness.simulators.mssante.mailboxes import MailStore
from harness.simulators.mssante.records import MailSession, SubmittedMessage
from harness.simulators.mssante.tls import TlsPolicy
from harness.simulators.recording import Exchange, ExchangeRecorder, utcnow

SIMULATOR = "mssante"
OPERATOR_DOMAIN = "operateur-test.mssante.fr"
"""The domain the simulator's MTA names itself by (``Reporting-MTA``, ``Message-ID`` of its DSN)."""

Validator = Callable[[bytes], list[Finding]]
T = TypeVar("T")


def default_validator(raw: bytes) -> list[Finding]:
    """The checks any submitted message gets: MSSanté headers and subject, and its XDM when it has one.

    A receipt is judged as a receipt: an MDN (``report-type=disposition-notification``) by the
    RFC 8098 rules, a DSN (``delivery-status``) by RFC 3464's, not as a document message (the
    original it quotes would otherwise be taken for its own attachments).
    """
    from harness.validators import mss, xdm

    report_type = _report_type(raw)
    if report_type == "disposition-notification":
        return mss.check_mdn(raw)
    if report_type == "delivery-status":
        return mss.check_dsn(raw)
    archives: list[bytes] = []
    findings = mss.check_message(raw, xdm_out=archives)  # one parse of the message for both checks
    for archive in archives:
        findings.extend(xdm.check_xdm(archive).findings)
    return findings


def _report_type(raw: bytes) -> str:
    """``report-type`` of a top-level ``multipart/report``, lower-cased, or ``""``."""
    headers = BytesHeaderParser().parsebytes(raw[:65536])
    if headers.get_content_type() != "multipart/report":
        return ""
    return str(headers.get_param("report-type", "") or "").lower()


class Operator:
    """The state of one simulated MSSanté operator."""

    def __init__(self, pki: TestPki, store: MailStore, recorder: ExchangeRecorder, validator: Validator | None) -> None:
        self.pki = pki
        self.store = store
        self.recorder = recorder
        self.validator = validator
        self.policy = TlsPolicy.CONFORMING
        self.require_client_certificate = False
        self._lock = threading.Condition()
        self.sessions: list[MailSession] = []
        self.messages: list[SubmittedMessage] = []
        self._session_seq = 0
        self._message_seq = 0
        self.policy_changed: list[Callable[[], None]] = []
        """Front ends that rebuild their TLS context when the policy changes."""

    # -- policy -----------------------------------------------------------------------------------
    def set_policy(self, policy: TlsPolicy | str, *, require_client_certificate: bool | None = None) -> None:
        self.policy = TlsPolicy(policy)
        if require_client_certificate is not None:
            self.require_client_certificate = require_client_certificate
        for rebuild in self.policy_changed:
            rebuild()

    def reset(self) -> None:
        """No records, the seeded BALs with empty INBOXes, the conforming policy."""
        with self._lock:
            self.sessions.clear()
            self.messages.clear()
        self.store.reset()
        self.recorder.clear()
        self.set_policy(TlsPolicy.CONFORMING, require_client_certificate=False)

    # -- sessions ------------------------------------------------------------------------------
    def open_session(self, protocol: str, peer: str) -> MailSession:
        with self._lock:
            self._session_seq += 1
            session = MailSession(self._session_seq, protocol, peer, utcnow(), policy=self.policy.value)
            self.sessions.append(session)
            return session

    def close_session(self, session: MailSession) -> None:
        """End the session and record it as one exchange (the transcript as request)."""
        with self._lock:
            if session.ended is not None:
                return
            session.ended = utcnow()
        action = "tls-handshake" if session.tls_error else "session"
        meta: dict[str, Any] = session.summary()
        if session.tls_error:
            meta["fault"] = "tls-handshake"
            meta["detail"] = session.tls_error
        self.recorder.record(
            Exchange(
                simulator=SIMULATOR,
                protocol=session.protocol,
                action=action,
                direction="inbound",
                started=session.started,
                ended=session.ended or utcnow(),
                request="\n".join(session.transcript).encode("utf-8"),
                response=b"",
                peer=session.peer,
                tls=dict(session.tls),
                meta=meta,
            )
        )
        with self._lock:
            self._lock.notify_all()

    # -- messages ------------------------------------------------------------------------------
    def accept(
        self, session: MailSession, mail_from: str, recipients: list[str], raw: bytes, entry_point: str = ""
    ) -> SubmittedMessage:
        """Validate, deliver and record a submitted message; recipients are already known to be deliverable."""
        findings = self.validator(raw) if self.validator is not None else []
        with self._lock:
            self._message_seq += 1
            message = SubmittedMessage(
                seq=self._message_seq,
                via=session.protocol,
                entry_point=entry_point,
                mail_from=mail_from,
                recipients=list(recipients),
                raw=raw,
                received=utcnow(),
                session=session.seq,
                tls=dict(session.tls),
                findings=findings,
            )
        for recipient in recipients:
            try:
                self.store.deliver(recipient, raw)
                message.delivered.append(recipient)
            except KeyError:
                continue
        with self._lock:
            self.messages.append(message)
            session.messages.append(message.seq)
        self.recorder.record(
            Exchange(
                simulator=SIMULATOR,
                protocol=session.protocol,
                action="message",
                direction="inbound",
                started=message.received,
                ended=utcnow(),
                request=raw,
                response=b"",
                peer=session.peer,
                tls=dict(session.tls),
                meta=message.summary(),
            )
        )
        self._return_dsn(message)
        with self._lock:
            self._lock.notify_all()
        return message

    def _return_dsn(self, message: SubmittedMessage) -> None:
        headers = BytesHeaderParser().parsebytes(message.raw)
        asked = [a for _, a in getaddresses([str(headers.get("Return-Receipt-To", ""))]) if "@" in a]
        if not asked or self.store.get(asked[0]) is None:
            return
        self.store.deliver(asked[0], build_dsn(message, _one_line(headers.get("Message-ID")), asked[0]))

    # -- waiting ---------------------------------------------------------------------------------
    def wait_for_message(self, after: int, timeout: float) -> SubmittedMessage | None:
        """The first message with seq > ``after``, waiting up to ``timeout`` seconds (None on silence)."""
        return self._first(lambda: [m for m in self.messages if m.seq > after], timeout)

    def wait_for_session(self, after: int, protocol: str, timeout: float) -> MailSession | None:
        """The first ended session of ``protocol`` with seq > ``after``, waiting up to ``timeout`` seconds."""
        return self._first(
            lambda: [s for s in self.sessions if s.seq > after and s.protocol == protocol and s.ended], timeout
        )

    def _first(self, found: Callable[[], list[T]], timeout: float) -> T | None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                items = found()
                if items:
                    return items[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._lock.wait(left)


def _one_line(value: object) -> str:
    return " ".join(str(value or "").split())


def build_dsn(message: SubmittedMessage, original_id: str, to: str) -> bytes:
    """A delivery DSN (RFC 3464 ``multipart/report; report-type=delivery-status``) for ``message``."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = f"Operateur MSSante (test) <mailer-daemon@{OPERATOR_DOMAIN}>"
    report["To"] = to
    report["Subject"] = "Delivery Status Notification (Success)"
    report["Date"] = formatdate(localtime=False)
    report["Message-ID"] = make_msgid(domain=OPERATOR_DOMAIN)
    if original_id:
        report["In-Reply-To"] = _one_line(original_id)
    report.attach(MIMEText("Your message was delivered to: " + ", ".join(message.delivered) + "\n", "plain", "utf-8"))
    per_message = Message()
    per_message["Reporting-MTA"] = f"dns; {OPERATOR_DOMAIN}"
    per_message["Arrival-Date"] = formatdate(localtime=False)
    groups: list[Message | str] = [per_message]
    for recipient in message.delivered:
        group = Message()
        group["Final-Recipient"] = f"rfc822; {recipient}"
        group["Action"] = "delivered"
        group["Status"] = "2.0.0"
        groups.append(group)
    status = MIMEBase("message", "delivery-status")
    status.set_payload(groups)
    report.attach(status)
    head = message.raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("utf-8", "replace")
    original = MIMEBase("text", "rfc822-headers")
    original.set_payload(head + "\n")
    report.attach(original)
    return report.as_bytes()
