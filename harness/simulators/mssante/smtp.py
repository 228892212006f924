"""The operator's SMTP submission service: aiosmtpd with STARTTLS, AUTH, and a record of every session.

aiosmtpd does the protocol (RFC 5321, STARTTLS per RFC 3207, AUTH PLAIN/LOGIN, SIZE);
this module adds what an MSSanté operator and a test harness need on top:

- STARTTLS is required before AUTH and MAIL; a client that sends ``AUTH`` in clear is
  refused (aiosmtpd answers 530) and its session is marked ``credentials_in_clear``;
- the TLS context follows the operator's current :class:`~.tls.TlsPolicy`; a failed
  handshake (the client refused our certificate, our version or our cipher) is recorded
  with the reason OpenSSL gives on the server side (``alert certificate expired``...);
- logins are checked against the BALs (login = BAL address) and ``MAIL FROM`` must be the
  logged-in BAL; unknown local recipients are refused at RCPT (550 5.1.1);
- the message size is capped (SIZE, and 552 beyond it), every socket wait is bounded.

The transcript is captured by wrapping the protocol's stream reader: aiosmtpd offers no
hook per line, and capturing there is the one place that sees commands refused before
dispatch (the 530s). Message bodies are not put in the transcript.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, TLSSetupException

from harness.simulators.mssante.operator import Operator
from harness.simulators.mssante.records import MailSession
from harness.simulators.mssante.tls import session_facts, stdlib_context

log = logging.getLogger(__name__)
# aiosmtpd logs a traceback for every failed STARTTLS; here that is an expected outcome, recorded in the session.
logging.getLogger("mail.log").setLevel(logging.CRITICAL)

_CREDENTIAL_COMMANDS = ("AUTH",)


class _Handler:
    """aiosmtpd handler hooks: recipient checks and acceptance through the operator."""

    def __init__(self, operator: Operator) -> None:
        self.operator = operator

    async def handle_MAIL(
        self, server: OperatorSmtp, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        record = server.record
        if record is not None and record.login and address.lower() != record.login.lower():
            return f"553 5.7.1 sender {address} is not the logged-in BAL {record.login}"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: OperatorSmtp, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if not self.operator.store.accepts(address):
            return f"550 5.1.1 no such BAL at this operator: {address}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: OperatorSmtp, session: Session, envelope: Envelope) -> str:
        record = server.record
        assert record is not None
        raw = envelope.original_content or b""
        loop = asyncio.get_running_loop()
        # validation parses XML and zips: off the event loop, so other sessions keep going
        message = await loop.run_in_executor(
            None, self.operator.accept, record, str(envelope.mail_from or ""), list(envelope.rcpt_tos), raw
        )
        return f"250 2.0.0 accepted as message {message.seq}"


class OperatorSmtp(SMTP):
    """One SMTP connection, with the operator's rules and its session record."""

    def __init__(
        self, operator: Operator, handler: _Handler, *, max_message: int, timeout_s: float, live: set[OperatorSmtp]
    ) -> None:
        self.operator = operator
        self._live = live
        self.record: MailSession | None = None
        self._in_data = False
        super().__init__(
            handler,
            hostname="localhost",
            tls_context=stdlib_context(
                operator.policy, operator.pki, require_client_certificate=operator.require_client_certificate
            ),
            require_starttls=True,
            auth_require_tls=True,
            authenticator=self._check_login,
            data_size_limit=max_message,
            timeout=timeout_s,
            decode_data=False,
            enable_SMTPUTF8=True,
            ident="MSSante operator simulator (aiosmtpd)",
        )

    # -- connection ---------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.record is None
        super().connection_made(transport)
        if first:
            peer = transport.get_extra_info("peername") or ("?", 0)
            self.record = self.operator.open_session("smtp", f"{peer[0]}:{peer[1]}")
            self._wrap_reader()
        elif self.record is not None:
            ssl_object = transport.get_extra_info("ssl_object")
            if ssl_object is not None:
                self.record.tls = session_facts(ssl_object)

    def connection_lost(self, error: Exception | None) -> None:
        try:
            super().connection_lost(error)
        finally:
            self._live.discard(self)
            if self.record is not None:
                self.operator.close_session(self.record)

    def _wrap_reader(self) -> None:
        reader = self._reader
        original = reader.readuntil

        async def recording_readuntil(separator: bytes = b"\n") -> bytes:
            line = await original(separator)
            self._heard(line)
            return line

        reader.readuntil = recording_readuntil  # type: ignore[method-assign,assignment]

    def _heard(self, line: bytes) -> None:
        record = self.record
        if record is None:
            return
        if self._in_data:
            if line.rstrip(b"\r\n") == b".":
                self._in_data = False
                record.transcript.append("C: <message data>")
            return
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        verb = text.split(" ", 1)[0].upper()
        if verb in _CREDENTIAL_COMMANDS:
            if not record.starttls:
                record.credentials_in_clear = True
            text = " ".join(text.split(" ")[:2] + (["<credentials masked>"] if text.count(" ") >= 2 else []))
        elif record.transcript and record.transcript[-1].startswith("S: 334") and not verb.isalpha():
            text = "<credentials masked>"  # AUTH LOGIN's base64 user and password lines
            if not record.starttls:
                record.credentials_in_clear = True
        record.transcript.append(f"C: {text[:500]}")

    async def push(self, status: Any) -> None:
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else str(status)
        if self.record is not None:
            self.record.transcript.append(f"S: {text[:500]}")
        if text.startswith("354"):
            self._in_data = True
        await super().push(status)

    # -- STARTTLS and AUTH ------------------------------------------------------------------------
    async def smtp_STARTTLS(self, arg: str) -> None:
        if self.record is not None:
            self.record.starttls = True
        try:
            await super().smtp_STARTTLS(arg)
        except TLSSetupException as exc:
            if self.record is not None:
                cause = exc.__cause__
                self.record.tls_error = f"{type(cause).__name__}: {cause}" if cause else "TLS handshake failed"
            raise

    def _check_login(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        box = self.operator.store.authenticate(login, auth_data.password.decode("utf-8", "replace"))
        if self.record is not None:
            self.record.login = login
            self.record.authenticated = box is not None
        return AuthResult(success=box is not None, handled=False)


class SmtpServer:
    """The SMTP front end: its own asyncio loop in a thread, one :class:`OperatorSmtp` per connection."""

    def __init__(self, operator: Operator, host: str, port: int, *, max_message: int, timeout_s: float = 10.0) -> None:
        self.operator = operator
        self.host = host
        self.port = port
        self.max_message = max_message
        self.timeout_s = timeout_s
        self._handler = _Handler(operator)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._protocols: set[OperatorSmtp] = set()
        self.address: tuple[str, int] = (host, port)

    def _protocol(self) -> OperatorSmtp:
        protocol = OperatorSmtp(
            self.operator, self._handler, max_message=self.max_message, timeout_s=self.timeout_s, live=self._protocols
        )
        self._protocols.add(protocol)
        return protocol

    def start(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(loop.create_server(self._protocol, self.host, self.port))
                sockname = self._server.sockets[0].getsockname()
                self.address = (str(sockname[0]), int(sockname[1]))
            except BaseException as exc:  # reported to start()'s caller
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="mssante-smtp-simulator", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return

        def shut() -> None:
            if self._server is not None:
                self._server.close()
            for protocol in list(self._protocols):
                transport = protocol.transport
                if isinstance(transport, asyncio.Transport):
                    with contextlib.suppress(Exception):
                        transport.abort()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.call_later(0.05, loop.stop)

        loop.call_soon_threadsafe(shut)
        self._thread.join(timeout=5)
        self._thread = None
        self._loop = None
