"""What the MSSanté operator simulator keeps of each connection and each message, for scenarios to judge.

A :class:`MailSession` is one SMTP, IMAP or DST connection: the TLS facts (or why the
handshake failed), whether STARTTLS came before any credential, who logged in, and the
transcript of commands and replies (passwords masked, message bodies left out: those are
in the :class:`SubmittedMessage`). Scenarios ask "did the client refuse this certificate",
"did it send its password in clear", "what did it offer" by reading these, never sockets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from harness.findings import Finding


@dataclass(slots=True)
class MailSession:
    """One client connection to the operator."""

    seq: int
    protocol: str
    """``smtp``, ``imap`` or ``dst``."""
    peer: str
    started: datetime
    ended: datetime | None = None
    tls: dict[str, Any] = field(default_factory=dict)
    """version, cipher, offered (TLS 1.2+ suites the client offered that the server knows), client certificate."""
    starttls: bool = False
    """The client asked for STARTTLS (for DST: the connection was TLS from the start)."""
    tls_error: str = ""
    """Why the handshake failed (the client's alert, seen from the server), or ``""``."""
    login: str = ""
    authenticated: bool = False
    credentials_in_clear: bool = False
    """The client sent a login or a password before TLS was up."""
    policy: str = ""
    """The :class:`~harness.simulators.mssante.tls.TlsPolicy` in force when the client connected."""
    transcript: list[str] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)
    """Seq of the messages submitted in this session."""

    @property
    def tls_established(self) -> bool:
        return bool(self.tls.get("version"))

    def summary(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "protocol": self.protocol,
            "peer": self.peer,
            "started": self.started.isoformat(),
            "ended": self.ended.isoformat() if self.ended else None,
            "policy": self.policy,
            "starttls": self.starttls,
            "tls": self.tls,
            "tls_error": self.tls_error,
            "login": self.login,
            "authenticated": self.authenticated,
            "credentials_in_clear": self.credentials_in_clear,
            "messages": list(self.messages),
        }


@dataclass(slots=True)
class SubmittedMessage:
    """A message the SUT handed to the operator (SMTP DATA accepted, or a DST submission)."""

    seq: int
    via: str
    """``smtp`` or ``dst``."""
    entry_point: str
    """For DST, the entry point kind used (``igc-sante``, ``internet``); ``""`` for SMTP."""
    mail_from: str
    recipients: list[str]
    raw: bytes
    received: datetime
    session: int
    """Seq of the :class:`MailSession` it came in."""
    tls: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    """The simulator's own checks at acceptance (message structure and headers, the XDM), when validation is on."""
    delivered: list[str] = field(default_factory=list)
    """The recipients whose BAL now holds it."""

    def summary(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "via": self.via,
            "entry_point": self.entry_point,
            "mail_from": self.mail_from,
            "recipients": self.recipients,
            "delivered": self.delivered,
            "size": len(self.raw),
            "received": self.received.isoformat(),
            "session": self.session,
            "tls": self.tls,
            "findings": [f.to_dict() for f in self.findings],
        }
