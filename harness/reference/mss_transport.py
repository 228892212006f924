"""The practice's MSSanté transport: SMTP submission, IMAP reading and the Mailiz DST interface, all over TLS.

The operator is reached with the organisation certificate as TLS client identity, its
server certificate checked against the configured CA bundle only (never the system
store), with its host name, TLS 1.2 at least and, for TLS 1.2, only the six cipher
suites the MSSanté référentiel allows (:data:`TLS12_CIPHERS`). SMTP and IMAP both start
in clear and switch to TLS with ``STARTTLS`` before any credential is sent (login = the
BAL address). Every socket has a timeout and every failure (refused connection, TLS
handshake, authentication, SMTP refusal) is a :class:`TransportError` carrying the
reason, never a hang. The TLS and clear-text defects of :mod:`harness.reference.defects`
are switched here, each where it acts.
"""

from __future__ import annotations

import base64
import http.client
import imaplib
import json
import re
import smtplib
import ssl
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

TLS12_CIPHERS = (
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-SHA384:"
    "ECDHE-RSA-AES128-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256"
)
"""The TLS 1.2 suites an MSSanté client may offer (TLS 1.3 suites are left to OpenSSL's defaults)."""
WEAK_CIPHERS = "ALL:@SECLEVEL=0"
"""What the ``mss-weak-ciphers`` defect offers instead."""
LEGACY_CIPHERS = "DEFAULT:@SECLEVEL=0"
"""What the ``mss-accepts-tls10`` defect offers, with TLS 1.0 as the minimum."""
NO_CHECK_TIME = 0x200000
"""OpenSSL ``X509_V_FLAG_NO_CHECK_TIME``: the chain is verified, its validity dates are not (a defect)."""
DST_ENTRY = "igc-sante"
"""The DST entry point a conforming client uses (the ``internet`` one is for clients without IGC-Santé)."""
DST_INTERNET_ENTRY = "internet"
EHLO_NAME = "cabinet-temoin.localdomain"
"""What the practice says in EHLO (never ``socket.getfqdn()``, a DNS look-up that may hang)."""
MAX_MESSAGE_BYTES = 20 * 1024 * 1024
"""The largest message (an IMAP literal) the practice reads; a bigger one is refused, never buffered."""
MAX_DST_ANSWER_BYTES = 1024 * 1024
_UID = re.compile(rb"^\d{1,10}$")


@dataclass(frozen=True, slots=True)
class MssanteEndpoint:
    """The operator the practice uses, its BAL there, and the files (under the database folder) holding the PEMs."""

    smtp_host: str
    smtp_port: int
    imap_host: str
    imap_port: int
    ca_file: Path
    client_cert_file: Path
    client_key_file: Path
    address: str
    password: str
    dst_urls: dict[str, str] = field(default_factory=dict)

    @property
    def domain(self) -> str:
        """The BAL's domain (the right-hand side of Message-IDs the practice makes)."""
        return self.address.rsplit("@", 1)[-1]


class TransportError(RuntimeError):
    """The operator could not be reached or refused the exchange; the message says why."""


def tls_context(endpoint: MssanteEndpoint, defects: frozenset[str] = frozenset()) -> ssl.SSLContext:
    """The client TLS context for the operator (SMTP, IMAP and DST alike)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by construction
    if "mss-system-ca-only" in defects:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        context.load_verify_locations(cafile=str(endpoint.ca_file))
    if "mss-accepts-tls10" in defects:
        with warnings.catch_warnings():  # deprecated, and that is the point of the defect
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers(LEGACY_CIPHERS)
    else:
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(WEAK_CIPHERS if "mss-weak-ciphers" in defects else TLS12_CIPHERS)
    if "mss-accepts-expired-cert" in defects:
        context.verify_flags = ssl.VerifyFlags(context.verify_flags | NO_CHECK_TIME)
    if "mss-accepts-any-cert" in defects:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(str(endpoint.client_cert_file), str(endpoint.client_key_file))
    return context


class MssTransport:
    """One operator, one BAL: submits messages and reads the INBOX for the practice."""

    def __init__(self, endpoint: MssanteEndpoint, timeout_s: float, defects: frozenset[str] = frozenset()) -> None:
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.defects = defects

    def _context(self) -> ssl.SSLContext:
        try:
            return tls_context(self.endpoint, self.defects)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise TransportError(f"the TLS client context cannot be built: {_short(exc)}") from None

    # -- SMTP ------------------------------------------------------------------------------------
    def submit(self, sender: str, recipients: Sequence[str], message: bytes) -> dict[str, str]:
        """Submit ``message`` by SMTP; returns the recipients the server refused (address → reply), if some were.

        Raises TransportError when nothing was accepted (connection, TLS, AUTH, MAIL, every RCPT or DATA refused).
        """
        endpoint = self.endpoint
        where = f"SMTP {endpoint.smtp_host}:{endpoint.smtp_port}"
        context = self._context()
        smtp: smtplib.SMTP | None = None
        try:
            smtp = smtplib.SMTP(endpoint.smtp_host, endpoint.smtp_port, EHLO_NAME, timeout=self.timeout_s)
            smtp.ehlo()
            if "mss-smtp-plaintext" in self.defects:
                _auth_plain_in_clear(smtp, endpoint.address, endpoint.password)
            else:
                smtp.starttls(context=context)
                smtp.ehlo()
                _authenticate(smtp, endpoint.address, endpoint.password)
            refused = smtp.sendmail(sender, list(recipients), message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise TransportError(f"{where}: every recipient was refused: {_refusals(exc.recipients)}") from None
        except smtplib.SMTPResponseException as exc:
            raise TransportError(f"{where}: refused with {exc.smtp_code} {_text(exc.smtp_error)}") from None
        except (smtplib.SMTPException, OSError, ValueError) as exc:
            raise TransportError(f"{where}: {_describe(exc)}") from None
        finally:
            if smtp is not None:
                _quit(smtp)
        return {address: f"{code} {_text(reply)}" for address, (code, reply) in refused.items()}

    # -- IMAP ------------------------------------------------------------------------------------
    @contextmanager
    def inbox(self) -> Iterator[ImapInbox]:
        """The BAL's INBOX, logged in (after STARTTLS) and selected; logs out at the end.

        Raises TransportError for any failure, inside the block too.
        """
        endpoint = self.endpoint
        where = f"IMAP {endpoint.imap_host}:{endpoint.imap_port}"
        context = self._context()
        try:
            imap = _BoundedImap(endpoint.imap_host, endpoint.imap_port, timeout=self.timeout_s)
        except (imaplib.IMAP4.error, OSError, ValueError, EOFError) as exc:
            raise TransportError(f"{where}: {_describe(exc)}") from None
        try:
            try:
                if "mss-imap-plaintext" not in self.defects:
                    imap.starttls(ssl_context=context)
                imap.login(endpoint.address, endpoint.password)
                status, data = imap.select("INBOX")
            except (imaplib.IMAP4.error, OSError, ValueError, EOFError) as exc:
                raise TransportError(f"{where}: {_describe(exc)}") from None
            if status != "OK":
                raise TransportError(f"{where}: SELECT INBOX refused: {_text((data[-1] if data else None) or b'')}")
            yield ImapInbox(imap, where)
        finally:
            with suppress(imaplib.IMAP4.error, OSError, ValueError, EOFError):
                imap.logout()

    # -- DST ---------------------------------------------------------------------------------------
    def submit_dst(self, message: bytes) -> str:
        """Submit ``message`` to the Mailiz DST interface (``POST {url}/messages``); the operator's message id."""
        kind = DST_INTERNET_ENTRY if "mss-dst-internet-entry" in self.defects else DST_ENTRY
        url = self.endpoint.dst_urls.get(kind, "")
        if not url:
            raise TransportError(f"no DST '{kind}' entry point configured")
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise TransportError(f"the DST '{kind}' entry point {url!r} is not an https URL")
        where = f"DST {url}"
        context = self._context()
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port or 443, timeout=self.timeout_s, context=context
        )
        try:
            connection.request(
                "POST",
                parts.path.rstrip("/") + "/messages",
                body=message,
                headers={"Content-Type": "message/rfc822", "Accept": "application/json"},
            )
            response = connection.getresponse()
            payload = response.read(MAX_DST_ANSWER_BYTES + 1)
            status = response.status
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise TransportError(f"{where}: {_describe(exc)}") from None
        finally:
            connection.close()
        if len(payload) > MAX_DST_ANSWER_BYTES:
            raise TransportError(f"{where}: answer larger than {MAX_DST_ANSWER_BYTES} bytes")
        if status != 201:
            raise TransportError(f"{where}: HTTP {status}: {_text(payload[:200])}")
        try:
            answer = json.loads(payload)
        except ValueError:
            raise TransportError(f"{where}: the 201 answer is not JSON") from None
        identifier = answer.get("message_id") if isinstance(answer, dict) else None
        return identifier if isinstance(identifier, str) else ""


class ImapInbox:
    """A selected INBOX: the unseen messages' UIDs, a message's bytes, marking it read (each raises TransportError)."""

    def __init__(self, imap: imaplib.IMAP4, where: str) -> None:
        self._imap = imap
        self._where = where

    def _uid(self, command: str, *args: str) -> list[object]:
        try:
            status, data = self._imap.uid(command, *args)
        except (imaplib.IMAP4.error, OSError, ValueError, EOFError) as exc:
            raise TransportError(f"{self._where}: UID {command}: {_describe(exc)}") from None
        if status != "OK":
            raise TransportError(f"{self._where}: UID {command} {' '.join(args)} refused")
        return list(data)

    def unseen(self) -> list[str]:
        """The UIDs of the unseen messages, oldest first."""
        data = self._uid("SEARCH", "UNSEEN")
        words = b" ".join(d for d in data if isinstance(d, bytes)).split()
        return [w.decode("ascii") for w in words if _UID.match(w)]

    def fetch(self, uid: str) -> bytes:
        """The whole message (RFC822) of ``uid``."""
        for item in self._uid("FETCH", uid, "(RFC822)"):
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
                return item[1]
        raise TransportError(f"{self._where}: UID FETCH {uid} returned no message")

    def mark_seen(self, uid: str) -> None:
        self._uid("STORE", uid, "+FLAGS", "(\\Seen)")


class _BoundedImap(imaplib.IMAP4):
    """imaplib's client refusing a literal above :data:`MAX_MESSAGE_BYTES` instead of buffering it."""

    def read(self, size: int) -> bytes:
        if size > MAX_MESSAGE_BYTES:
            raise self.abort(f"the server sends a {size}-byte literal, above the {MAX_MESSAGE_BYTES}-byte limit")
        return super().read(size)


def _authenticate(smtp: smtplib.SMTP, login: str, password: str) -> None:
    """AUTH PLAIN (or LOGIN when only that is offered), never CRAM-MD5: the operator takes the BAL password."""
    offered = smtp.esmtp_features.get("auth", "").upper().split()
    smtp.user, smtp.password = login, password
    if "PLAIN" not in offered and "LOGIN" in offered:
        smtp.auth("LOGIN", smtp.auth_login)
    else:
        smtp.auth("PLAIN", smtp.auth_plain)


def _auth_plain_in_clear(smtp: smtplib.SMTP, login: str, password: str) -> None:
    """The ``mss-smtp-plaintext`` defect: AUTH PLAIN on the clear connection, whatever the server offers."""
    token = base64.b64encode(f"\0{login}\0{password}".encode()).decode("ascii")
    code, reply = smtp.docmd("AUTH", f"PLAIN {token}")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)


def _quit(smtp: smtplib.SMTP) -> None:
    """QUIT and close, ignoring a failure: what was sent is sent."""
    try:
        if smtp.sock is not None:
            smtp.quit()
    except (smtplib.SMTPException, OSError, ValueError):
        pass
    finally:
        smtp.close()


def _refusals(recipients: dict[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{address}: {code} {_text(reply)}" for address, (code, reply) in recipients.items())


def _describe(exc: BaseException) -> str:
    """The reason in a few words: the library's exception often wraps the socket's (a timeout, a TLS alert)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 5:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for cause in chain:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"the server certificate is refused: {_short(cause)}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed: {_short(cause)}"
        if isinstance(cause, TimeoutError):
            return "no answer in time"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
    return f"{type(exc).__name__}: {_short(exc)}"


def _text(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return _short(text)


def _short(value: object) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= 200 else text[:197] + "..."
