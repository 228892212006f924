"""The MSSanté operator simulator as scenarios and the CLI see it: start, stop, reset, BALs, TLS policy, records.

:class:`MssanteSimulator` assembles the front ends (SMTP submission with STARTTLS, IMAP
with STARTTLS, two DST-style HTTPS entry points) around one :class:`~.operator.Operator`.
A scenario points the SUT at :meth:`MssanteSimulator.endpoint`, switches a
:class:`~.tls.TlsPolicy` when it tests the client's TLS, puts mail in the SUT's BAL with
:meth:`deliver`, and reads :attr:`messages` (what the SUT submitted) and :attr:`sessions`
(how it connected).
"""

from __future__ import annotations

from pathlib import Path

from harness.pki import TestPki
from harness.simulators.insi.identities import default_fixtures_dir
from harness.simulators.mssante.dst import ENTRY_POINTS, PATH, DstServer
from harness.simulators.mssante.imap import ImapServer
from harness.simulators.mssante.mailboxes import MailStore, StoredMail, load_mailboxes
from harness.simulators.mssante.operator import Operator, Validator, default_validator
from harness.simulators.mssante.records import MailSession, SubmittedMessage
from harness.simulators.mssante.smtp import SmtpServer
from harness.simulators.mssante.tls import TlsPolicy
from harness.simulators.recording import ExchangeRecorder

DEFAULT_MAX_MESSAGE = 20 * 1024 * 1024
"""Largest message accepted (SMTP SIZE and DATA, DST body): 20 MiB, a common operator limit [I]."""


def default_mailboxes_file() -> Path:
    return default_fixtures_dir() / "mssante" / "mailboxes.toml"


class MssanteSimulator:
    """A simulated MSSanté operator on loopback.

    Example::

        with MssanteSimulator(pki) as operator:
            sut.configure_endpoints(EndpointConfig(mssante=operator.endpoint(pki)))
            before = operator.last_message_seq()
            ...  # the SUT sends
            message = operator.wait_for_message(before, timeout=10)
    """

    name = "MSSanté"

    def __init__(
        self,
        pki: TestPki,
        *,
        host: str = "127.0.0.1",
        smtp_port: int = 0,
        imap_port: int = 0,
        mailboxes: Path | None = None,
        validator: Validator | None = default_validator,
        max_message: int = DEFAULT_MAX_MESSAGE,
        timeout_s: float = 30.0,
    ) -> None:
        self.pki = pki
        self.host = host
        self.recorder = ExchangeRecorder()
        """Every session (``smtp``/``imap``/``dst``; action ``session`` or ``tls-handshake``) and every message."""
        self.store = MailStore()
        self.store.seed(load_mailboxes(mailboxes or default_mailboxes_file()))
        self.operator = Operator(pki, self.store, self.recorder, validator)
        self.max_message = max_message
        self._smtp = SmtpServer(self.operator, host, smtp_port, max_message=max_message, timeout_s=timeout_s)
        self._imap = ImapServer(self.operator, host, imap_port)
        self._dst = {kind: DstServer(self.operator, kind, host, max_message) for kind in ENTRY_POINTS}
        self.operator.policy_changed.extend(server.rebuild for server in self._dst.values())
        self._running = False

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> MssanteSimulator:
        if self._running:
            return self
        self._smtp.start()
        self._imap.start()
        for server in self._dst.values():
            server.start()
        self._running = True
        return self

    def stop(self) -> None:
        """Stop every front end and cut open connections (safe to call twice)."""
        if not self._running:
            return
        self._running = False
        self._smtp.stop()
        self._imap.stop()
        for server in self._dst.values():
            server.stop()

    def __enter__(self) -> MssanteSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._running

    def _started(self) -> None:
        if not self._running:
            raise RuntimeError("the MSSanté simulator is not started: call start() first")

    # -- where ------------------------------------------------------------------------------------
    @property
    def smtp_address(self) -> tuple[str, int]:
        self._started()
        return self._smtp.address

    @property
    def imap_address(self) -> tuple[str, int]:
        self._started()
        return self._imap.address

    @property
    def dst_urls(self) -> dict[str, str]:
        """The DST entry points by kind, ``https://127.0.0.1:PORT/mss-dst/v1``."""
        self._started()
        return {kind: f"https://{s.address[0]}:{s.address[1]}{PATH}" for kind, s in self._dst.items()}

    @property
    def sut_address(self) -> str:
        """The BAL the SUT logs in to (the first of the seed file)."""
        return self.store.seeded()[0].address

    def sut_password(self) -> str:
        return self.store.seeded()[0].password

    # -- scenario controls -------------------------------------------------------------------------
    def reset(self) -> None:
        """Conforming TLS, the seeded BALs with empty INBOXes, no records."""
        self.operator.reset()

    def set_tls_policy(self, policy: TlsPolicy | str, *, require_client_certificate: bool | None = None) -> None:
        """Switch how every front end runs TLS from the next connection on."""
        self.operator.set_policy(policy, require_client_certificate=require_client_certificate)

    def deliver(self, address: str, raw: bytes) -> StoredMail:
        """Put ``raw`` in the INBOX of ``address`` as if it had come from another operator."""
        return self.store.deliver(address, raw)

    def mailbox(self, address: str) -> list[StoredMail]:
        """What the BAL's INBOX holds now."""
        return self.store.messages(address)

    # -- records -----------------------------------------------------------------------------------
    @property
    def messages(self) -> list[SubmittedMessage]:
        return list(self.operator.messages)

    @property
    def sessions(self) -> list[MailSession]:
        return list(self.operator.sessions)

    def last_message_seq(self) -> int:
        messages = self.operator.messages
        return messages[-1].seq if messages else 0

    def last_session_seq(self) -> int:
        sessions = self.operator.sessions
        return sessions[-1].seq if sessions else 0

    def wait_for_message(self, after: int, timeout: float) -> SubmittedMessage | None:
        return self.operator.wait_for_message(after, timeout)

    def wait_for_session(self, after: int, protocol: str, timeout: float) -> MailSession | None:
        return self.operator.wait_for_session(after, protocol, timeout)
