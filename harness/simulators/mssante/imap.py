"""The operator's IMAP service: Twisted's IMAP4rev1 server over the simulator's BALs.

Why Twisted: the issue asks for a maintained IMAP server rather than our own. A Debian
dovecot started by the harness would be the most faithful, but it needs root, a system
package and configuration files on every vendor machine and CI image, and the main job
must run from a fresh clone with only Python and the package registries. Twisted's
``twisted.mail.imap4.IMAP4Server`` is a maintained IMAP4rev1 implementation (RFC 3501:
STARTTLS, LOGINDISABLED before TLS, UID FETCH/SEARCH/STORE, IDLE); we supply only what
it asks of a mail store, an in-memory mailbox over :class:`~.mailboxes.MailStore`.

Twisted's reactor can run once per process, so it runs in one daemon thread shared by
every simulator instance (started on first use, never stopped); each simulator listens
and stops listening on it through ``blockingCallFromThread``. TLS goes through pyOpenSSL
with the same policy as the other front ends (:func:`~.tls.pyopenssl_context`).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import io
import threading
from datetime import UTC
from email.message import Message
from email.utils import format_datetime
from typing import Any

from OpenSSL import SSL
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import protocol, ssl
from twisted.internet import reactor as _reactor
from twisted.internet.threads import blockingCallFromThread
from twisted.mail import imap4
from twisted.python.failure import Failure
from zope.interface import implementer  # type: ignore[import-untyped]

from harness.simulators.mssante.mailboxes import MailStore, StoredMail
from harness.simulators.mssante.operator import Operator
from harness.simulators.mssante.records import MailSession
from harness.simulators.mssante.tls import pyopenssl_context

reactor: Any = _reactor
"""Twisted's global reactor, typed loosely: its interfaces are zope ones mypy cannot follow."""
_reactor_lock = threading.Lock()
_reactor_thread: threading.Thread | None = None
IMAP_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")


def _ensure_reactor() -> None:
    """Run Twisted's reactor in a daemon thread, once per process."""
    global _reactor_thread
    with _reactor_lock:
        if _reactor_thread is not None and _reactor_thread.is_alive():
            return
        _reactor_thread = threading.Thread(
            target=reactor.run,
            kwargs={"installSignalHandlers": False},
            name="twisted-reactor",
            daemon=True,
        )
        _reactor_thread.start()


# -- messages and the mailbox as Twisted sees them -----------------------------------------------
@implementer(imap4.IMessage)
class _Part:
    """A MIME part (or a whole message) as IMAP's FETCH needs it."""

    def __init__(self, message: Message, raw: bytes | None = None) -> None:
        self._message = message
        self._raw = raw

    def getHeaders(self, negate: bool, *names: str) -> dict[str, str]:
        wanted = {n.lower() for n in names}
        headers: dict[str, str] = {}
        for name, value in self._message.items():
            if not names or ((name.lower() in wanted) != negate):
                headers[name.lower()] = str(value)
        return headers

    def getBodyFile(self) -> io.BytesIO:
        if self._raw is not None:
            for separator in (b"\r\n\r\n", b"\n\n"):
                if separator in self._raw:
                    return io.BytesIO(self._raw.split(separator, 1)[1])
            return io.BytesIO(b"")
        payload = self._message.get_payload(decode=False)
        text = payload if isinstance(payload, str) else self._message.as_string().split("\n\n", 1)[-1]
        return io.BytesIO(text.encode("utf-8", "replace"))

    def getSize(self) -> int:
        return len(self._raw) if self._raw is not None else len(self._message.as_bytes())

    def isMultipart(self) -> bool:
        return self._message.is_multipart()

    def getSubPart(self, part: int) -> _Part:
        payload = self._message.get_payload()
        chosen = payload[part] if isinstance(payload, list) and 0 <= part < len(payload) else None
        if not isinstance(chosen, Message):
            raise IndexError(part)
        return _Part(chosen)


@implementer(imap4.IMessage, imap4.IMessageFile)
class _Mail(_Part):
    """A stored message: a part with a UID, flags and an arrival date, served byte for byte.

    Offering ``IMessageFile`` makes Twisted send ``RFC822`` and ``BODY[]`` from :meth:`open`
    instead of rebuilding the message from a header dict, which would title-case names and
    merge repeated headers (``X-MSS-CODECDA`` is repeated once per CDA).
    """

    def __init__(self, mail: StoredMail) -> None:
        super().__init__(email.message_from_bytes(mail.raw, policy=email.policy.compat32), mail.raw)
        self._mail = mail

    def open(self) -> io.BytesIO:
        """The message as stored, with CRLF line ends as IMAP requires."""
        return io.BytesIO(self._wire())

    def _wire(self) -> bytes:
        return self._mail.raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")

    def getSize(self) -> int:
        return len(self._wire())

    def getUID(self) -> int:
        return self._mail.uid

    def getFlags(self) -> list[str]:
        return sorted(self._mail.flags)

    def getInternalDate(self) -> str:
        return format_datetime(self._mail.received.astimezone(UTC))


@implementer(imap4.IMailbox)
class _Inbox:
    """The INBOX of one BAL, read live from the store."""

    def __init__(self, store: MailStore, address: str) -> None:
        self._mailstore = store
        self.address = address
        self.listeners: list[Any] = []

    def _mails(self) -> list[StoredMail]:
        return self._mailstore.messages(self.address)

    def getFlags(self) -> list[str]:
        return list(IMAP_FLAGS)

    def getHierarchicalDelimiter(self) -> str:
        return "/"

    def getUIDValidity(self) -> int:
        box = self._mailstore.get(self.address)
        return box.uid_validity if box is not None else 1

    def getUIDNext(self) -> int:
        box = self._mailstore.get(self.address)
        return box.next_uid if box is not None else 1

    def getUID(self, message: int) -> int:
        mails = self._mails()
        return mails[message - 1].uid if 0 < message <= len(mails) else 0

    def getMessageCount(self) -> int:
        return len(self._mails())

    def getRecentCount(self) -> int:
        return 0

    def getUnseenCount(self) -> int:
        return sum(1 for m in self._mails() if "\\Seen" not in m.flags)

    def isWriteable(self) -> bool:
        return True

    def destroy(self) -> None:
        raise imap4.MailboxException("the INBOX cannot be deleted")

    def requestStatus(self, names: list[bytes]) -> dict[bytes, int]:
        values = {
            b"MESSAGES": self.getMessageCount(),
            b"RECENT": self.getRecentCount(),
            b"UIDNEXT": self.getUIDNext(),
            b"UIDVALIDITY": self.getUIDValidity(),
            b"UNSEEN": self.getUnseenCount(),
        }
        return {name: values[name] for name in names if name in values}

    def addListener(self, listener: Any) -> None:
        self.listeners.append(listener)

    def removeListener(self, listener: Any) -> None:
        with contextlib.suppress(ValueError):
            self.listeners.remove(listener)

    def addMessage(self, message: Any, flags: Any = (), date: Any = None) -> Any:
        raise imap4.MailboxException("APPEND is not offered by this operator simulator")

    def expunge(self) -> list[int]:
        mails = self._mails()
        gone = set(self._mailstore.expunge(self.address))
        return [index for index, mail in enumerate(mails, start=1) if mail.uid in gone]

    def _selected(self, messages: imap4.MessageSet, uid: bool) -> list[tuple[int, StoredMail]]:
        mails = self._mails()
        if not mails:
            return []
        with contextlib.suppress(ValueError):
            messages.last = mails[-1].uid if uid else len(mails)
        wanted = set(messages)
        return [(i, m) for i, m in enumerate(mails, start=1) if (m.uid if uid else i) in wanted]

    def fetch(self, messages: imap4.MessageSet, uid: bool) -> list[tuple[int, _Mail]]:
        return [(index, _Mail(mail)) for index, mail in self._selected(messages, uid)]

    def store(self, messages: imap4.MessageSet, flags: list[Any], mode: int, uid: bool) -> dict[int, list[str]]:
        names = {f.decode() if isinstance(f, bytes) else str(f) for f in flags}
        return {
            index: sorted(self._mailstore.set_flags(self.address, mail.uid, names, mode))
            for index, mail in self._selected(messages, uid)
        }


# -- the protocol -------------------------------------------------------------------------------
class OperatorImap(imap4.IMAP4Server):
    """One IMAP connection: logins against the BALs, a record of the session."""

    timeOut = 30
    POSTAUTH_TIMEOUT = 120

    factory: _Factory

    def __init__(self, operator: Operator, context: ssl.ContextFactory) -> None:
        super().__init__(contextFactory=context)
        self.operator = operator
        self.record: MailSession | None = None

    def connectionMade(self) -> None:
        transport: Any = self.transport
        peer = transport.getPeer()
        self.record = self.operator.open_session("imap", f"{peer.host}:{peer.port}")
        self.factory.connections.add(self)
        super().connectionMade()

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.factory.connections.discard(self)
        record = self.record
        if record is not None:
            if record.starttls and not record.tls_established and reason.check(SSL.Error):
                record.tls_error = f"{type(reason.value).__name__}: {reason.value}"
            self.operator.close_session(record)
        super().connectionLost(reason)

    def lineReceived(self, line: bytes) -> None:
        record = self.record
        if record is not None:
            if not record.tls_established and record.starttls:
                self._note_tls()
            text = line.decode("utf-8", "replace")
            parts = text.split(" ")
            if len(parts) >= 2 and parts[1].upper() in ("LOGIN", "AUTHENTICATE"):
                if not record.tls_established:
                    record.credentials_in_clear = True
                text = " ".join(parts[:3]) + " <credentials masked>"
            record.transcript.append(f"C: {text[:500]}")
        super().lineReceived(line)

    def sendLine(self, line: bytes) -> None:
        if self.record is not None:
            self.record.transcript.append(f"S: {line.decode('utf-8', 'replace')[:500]}")
        super().sendLine(line)

    def do_STARTTLS(self, tag: bytes) -> None:
        if self.record is not None:
            self.record.starttls = True
        super().do_STARTTLS(tag)

    unauth_STARTTLS: Any = (do_STARTTLS,)

    def _note_tls(self) -> None:
        """Read the TLS facts once the handshake is done (the first line after it)."""
        record = self.record
        connection = getattr(self.transport, "getHandle", lambda: None)()
        if record is None or not isinstance(connection, SSL.Connection):
            return
        facts: dict[str, Any] = {
            "version": connection.get_protocol_version_name(),
            "cipher": connection.get_cipher_name(),
            "client_certificate": None,
        }
        peer = connection.get_peer_certificate(as_cryptography=True)
        if peer is not None:
            facts["client_certificate"] = peer.subject.rfc4514_string()
            facts["client_certificate_issuer"] = peer.issuer.rfc4514_string()
        record.tls = facts

    def authenticateLogin(self, user: bytes, passwd: bytes) -> Any:
        login = user.decode("utf-8", "replace")
        box = self.operator.store.authenticate(login, passwd.decode("utf-8", "replace"))
        if self.record is not None:
            self.record.login = login
            self.record.authenticated = box is not None
        if box is None:
            raise UnauthorizedLogin("unknown BAL or wrong password")
        account = imap4.MemoryAccount(box.address)
        account.addMailbox("INBOX", _Inbox(self.operator.store, box.address))
        return (imap4.IAccount, account, lambda: None)


class _ContextFactory(ssl.ContextFactory):
    """Hands Twisted the pyOpenSSL context of the operator's current policy."""

    def __init__(self, operator: Operator) -> None:
        self.operator = operator

    def getContext(self) -> SSL.Context:
        return pyopenssl_context(
            self.operator.policy,
            self.operator.pki,
            require_client_certificate=self.operator.require_client_certificate,
        )


class _Factory(protocol.ServerFactory):
    def __init__(self, operator: Operator) -> None:
        self.operator = operator
        self.context = _ContextFactory(operator)
        self.connections: set[OperatorImap] = set()

    def buildProtocol(self, addr: Any) -> Any:
        server = OperatorImap(self.operator, self.context)
        server.factory = self
        return server


class ImapServer:
    """The IMAP front end on the shared reactor."""

    def __init__(self, operator: Operator, host: str, port: int) -> None:
        self.operator = operator
        self.host = host
        self.port = port
        self._factory = _Factory(operator)
        self._listening: Any = None
        self.address: tuple[str, int] = (host, port)

    def start(self) -> None:
        _ensure_reactor()
        listening: Any = blockingCallFromThread(
            reactor,
            reactor.listenTCP,
            self.port,
            self._factory,
            interface=self.host,
        )
        self._listening = listening
        host = listening.getHost()
        self.address = (str(host.host), int(host.port))

    def stop(self) -> None:
        listening = self._listening
        if listening is None:
            return
        self._listening = None

        def shut() -> Any:
            for connection in list(self._factory.connections):
                transport: Any = connection.transport
                transport.abortConnection()
            return listening.stopListening()

        blockingCallFromThread(reactor, shut)
