"""The HTTPS server machinery the simulators share: sockets, TLS, connection tracking, records.

The INSi and DMP simulators are reached the same way, over a real TLS socket, and were
serving it with the same code written twice. This module owns that common part once:
one thread per connection, the TLS handshake done in that thread (so a client that
connects and says nothing blocks only itself), a timeout on every socket operation,
:meth:`HttpsServer.stop` cutting the connections still open, and an
:class:`~harness.simulators.recording.Exchange` recorded for each request, including the
ones that fail half-way (TLS refused, timeout, oversized body). The handler base gives the
answer writing, ``Expect: 100-continue``, and the drain after a refused body.

What differs between simulators is a parameter, not a copy: the client-certificate policy
of :func:`server_ssl_context`, the limits, the thread name and log label, the ``meta`` every
record starts from, and an ``on_recorded`` hook called with the answer and its exchange
before the answer is written. How a request is read (messages, deadlines, what is kept of a
failed one) stays in each simulator's ``server`` module, in its :class:`HttpsHandler` subclass,
unless the simulator answers small requests: then :class:`RequestReader` reads them (bounded request
line, ``Content-Length`` bodies only, a timeout on every read) and the subclass only says how to
answer a request and how to refuse one that cannot be read (the Annuaire, Pro Santé Connect).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, cast

from cryptography import x509

from harness.simulators.recording import Exchange, ExchangeRecorder, utcnow

NO_CHECK_TIME = 0x200000
"""OpenSSL ``X509_V_FLAG_NO_CHECK_TIME`` (not exposed by :class:`ssl.VerifyFlags`)."""


TLS_REFUSED = "TLS handshake refused or failed: {exc}"
"""The detail of a failed-handshake record, ``{exc}`` being the error."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of a server answering small requests (INSi, the Annuaire): 10 s per read, 30 s per request, 1 MiB."""

    socket_timeout_s: float = 10.0
    """Longest wait for any single read or write on a connection."""
    request_timeout_s: float = 30.0
    """Longest time from waiting for a request to having read it whole (request line, headers, body)."""
    max_body: int = 1024 * 1024


@dataclass(slots=True)
class HttpAnswer:
    """An HTTP answer a simulator's service gives (fits :class:`ServedAnswer`): JSON over HTTP unless told.

    The Annuaire and Pro Santé Connect services answer with it; INSi and the DMP keep their own,
    with SOAP defaults and (DMP) the transaction to publish.
    """

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)
    action: str = ""
    protocol: str = "http"
    meta: dict[str, Any] = field(default_factory=dict)
    delay_s: float = 0.0


class ServerLimits(Protocol):
    """The time and size limits a server reads (each simulator has its own defaults)."""

    @property
    def socket_timeout_s(self) -> float: ...
    @property
    def request_timeout_s(self) -> float: ...
    @property
    def max_body(self) -> int: ...


class ServedRequest(Protocol):
    """What the server records of a request (each simulator's ``HttpRequest``)."""

    @property
    def method(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def headers(self) -> Message: ...
    @property
    def body(self) -> bytes: ...


class ServedAnswer(Protocol):
    """What the server writes and records of an answer (each simulator's ``HttpAnswer``)."""

    status: int
    body: bytes
    content_type: str
    headers: list[tuple[str, str]]
    action: str
    protocol: str
    meta: dict[str, Any]
    delay_s: float


AnswerT = TypeVar("AnswerT", bound=ServedAnswer)


def server_ssl_context(
    cert_chain: Path, key: Path, ca_bundle: Path, *, require_client_certificate: bool, check_time: bool
) -> ssl.SSLContext:
    """TLS 1.2+ server context verifying client certificates against ``ca_bundle``.

    Args:
        require_client_certificate: refuse a client without a certificate (else it is optional).
        check_time: let OpenSSL refuse an expired certificate; when False the validity dates
            are left to the application (``X509_V_FLAG_NO_CHECK_TIME``).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_chain), str(key))
    context.load_verify_locations(cafile=str(ca_bundle))
    context.verify_mode = ssl.CERT_REQUIRED if require_client_certificate else ssl.CERT_OPTIONAL
    if not check_time:
        context.verify_flags = ssl.VerifyFlags(context.verify_flags | NO_CHECK_TIME)
    return context


class HttpsServer(Generic[AnswerT]):
    """Serves one simulator's :class:`HttpsHandler` on a TCP port, recording every exchange.

    Args:
        simulator: the simulator's name, in the records and the thread name (``<name>-simulator``).
        label: how log lines name it (``INSi simulator``).
        log: the simulator's logger (log lines keep their module's name).
        handler: the handler class serving each connection.
        base_meta: the ``meta`` every failure record starts from.
        tls_refused: the record's detail for a failed handshake, ``{exc}`` being the error
            (default :data:`TLS_REFUSED`).
        close_refused: close a connection whose handshake failed at once (else it stays
            tracked until :meth:`stop`, as the DMP simulator has always done).
        on_recorded: called with the answer and its exchange once recorded, before writing.
    """

    def __init__(
        self,
        recorder: ExchangeRecorder,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        limits: ServerLimits,
        *,
        simulator: str,
        label: str,
        log: logging.Logger,
        handler: type[HttpsHandler],
        base_meta: Callable[[], dict[str, Any]],
        tls_refused: str = TLS_REFUSED,
        close_refused: bool = True,
        on_recorded: Callable[[AnswerT, Exchange], None] | None = None,
    ) -> None:
        self.recorder = recorder
        self.limits = limits
        self.ssl_context = ssl_context
        self.on_recorded = on_recorded
        self.simulator = simulator
        self.label = label
        self.log = log
        self.stopping = threading.Event()
        self._handler = handler
        self._base_meta = base_meta
        self._tls_refused = tls_refused
        self._close_refused = close_refused
        self._tcp = _TcpServer((host, port), self)
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._tcp.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._tcp.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"{self.simulator}-simulator",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, cut open connections (a stuck client cannot keep the server alive), wait briefly."""
        self.stopping.set()
        if self._thread is not None:
            self._tcp.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._tcp.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    # -- one connection (runs in its own thread) --------------------------------------------
    def serve_connection(self, raw: socket.socket, peer: tuple[str, int]) -> None:
        """Serve one accepted connection until it closes; never raises."""
        raw.settimeout(self.limits.socket_timeout_s)
        self._track(raw)
        connection: socket.socket | None = raw
        try:
            connection = self._secure(raw, peer)
            if connection is not None:
                self._track(connection)
                self._handler(connection, peer, self._tcp)
        except OSError as exc:
            self.log.debug("%s: connection from %s:%s ended: %s", self.label, peer[0], peer[1], exc)
        except Exception:  # a broken client must never end as an unhandled thread error
            self.log.exception("%s: connection from %s:%s failed", self.label, *peer[:2])
        finally:
            for sock in {raw, connection} - {None}:
                assert sock is not None
                self._untrack(sock)
                with contextlib.suppress(OSError):
                    sock.close()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.add(sock)

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.discard(sock)

    def _secure(self, raw: socket.socket, peer: tuple[str, int]) -> socket.socket | None:
        """The TLS connection over ``raw`` (handshake done in this thread), or None when it failed."""
        if self.ssl_context is None:
            return raw
        started = utcnow()
        connection: ssl.SSLSocket | None = None
        try:
            connection = self.ssl_context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            self._track(connection)
            connection.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            if connection is not None and self._close_refused:
                self._untrack(connection)
                with contextlib.suppress(OSError):
                    connection.close()
            detail = self._tls_refused.format(exc=exc)
            self.record_failure(started, peer, "tls", "TLS handshake", b"", "tls-handshake", detail, {})
            return None
        return connection

    # -- records ---------------------------------------------------------------------------
    def record(
        self,
        started: datetime,
        peer: tuple[str, int],
        request: ServedRequest | None,
        answer: AnswerT,
        tls: dict[str, Any],
        extra_meta: dict[str, Any] | None = None,
    ) -> Exchange:
        """Record a served request and its answer, then hand both to ``on_recorded``."""
        meta = dict(answer.meta)
        meta.update(extra_meta or {})
        meta["http"] = {
            "method": request.method if request else "",
            "target": request.target if request else "",
            "status": answer.status,
            "request_headers": dict(request.headers.items()) if request else {},
            "response_headers": {"Content-Type": answer.content_type, **dict(answer.headers)},
        }
        if answer.delay_s:
            meta["delay_s"] = answer.delay_s
        exchange = self.recorder.record(
            Exchange(
                simulator=self.simulator,
                protocol=answer.protocol,
                action=answer.action,
                direction="inbound",
                started=started,
                ended=utcnow(),
                request=request.body if request else b"",
                response=answer.body,
                peer=f"{peer[0]}:{peer[1]}",
                tls=tls,
                meta=meta,
            )
        )
        if self.on_recorded is not None:
            self.on_recorded(answer, exchange)
        return exchange

    def record_failure(
        self,
        started: datetime,
        peer: tuple[str, int],
        protocol: str,
        action: str,
        request: bytes,
        fault: str,
        detail: str,
        tls: dict[str, Any],
        response: bytes = b"",
    ) -> None:
        """Record a request that got no served answer (TLS refused, unreadable, timed out)."""
        meta = self._base_meta()
        meta["fault"] = fault
        meta["detail"] = detail
        self.recorder.record(
            Exchange(
                simulator=self.simulator,
                protocol=protocol,
                action=action,
                direction="inbound",
                started=started,
                ended=utcnow(),
                request=request,
                response=response,
                peer=f"{peer[0]}:{peer[1]}",
                tls=tls,
                meta=meta,
            )
        )


class _TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: HttpsServer[Any]) -> None:
        self.owner = owner
        super().__init__(address, HttpsHandler)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        self.owner.serve_connection(cast(socket.socket, request), cast(tuple[str, int], client_address))


class RequestFailed(Exception):
    """The request could not be read; ``status`` is the HTTP answer to give (0 = none, just close).

    ``partial`` is what was received of the body, for the record.
    """

    def __init__(self, status: int, fault: str, detail: str, partial: bytes = b"") -> None:
        super().__init__(detail)
        self.status = status
        self.fault = fault
        self.detail = detail
        self.partial = partial


class HttpsHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive on one connection; subclasses read and answer each request.

    ``drain_piece`` and ``max_drain`` size the drain after a refused body.
    """

    protocol_version = "HTTP/1.1"
    sys_version = ""
    drain_piece = 65536
    max_drain = 16 * 1024 * 1024
    server: _TcpServer

    def setup(self) -> None:
        self.owner = self.server.owner
        self.request.settimeout(self.owner.limits.socket_timeout_s)
        super().setup()
        self.tls = tls_facts(self.connection)
        self._expect_continue = False

    def finish(self) -> None:
        with contextlib.suppress(OSError):  # the client may already be gone
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        self.owner.log.debug(self.owner.label + " %s: " + format, self.address_string(), *args)

    def handle_expect_100(self) -> bool:
        """Answer ``100 Continue`` only for a body this server will accept."""
        self._expect_continue = True
        declared = self.headers.get("Content-Length", "0")
        if declared.isdigit() and int(declared) > self.owner.limits.max_body:
            return True  # no 100: the client must not send the body; reading it answers 413
        return super().handle_expect_100()

    def _write(self, answer: ServedAnswer, close: bool = False) -> None:
        if close:
            self.close_connection = True
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(answer.body)
        self.wfile.flush()

    def _drain(self) -> None:
        """Read and drop what the client is still sending, so it can read the refusal instead of a reset."""
        deadline = time.monotonic() + min(3.0, self.owner.limits.socket_timeout_s)
        drained = 0
        with contextlib.suppress(OSError):
            self.connection.settimeout(0.5)
            while drained < self.max_drain and time.monotonic() < deadline:
                piece = self.connection.recv(self.drain_piece)
                if not piece:
                    break
                drained += len(piece)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request as :class:`RequestReader` read it from the socket."""

    method: str
    target: str
    headers: Message
    body: bytes


RequestT = TypeVar("RequestT", bound=ServedRequest)


class RequestReader(HttpsHandler, Generic[RequestT, AnswerT]):
    """Reads each request under the server's limits and hands it to :meth:`answer`; never raises.

    A request line longer than ``max_line`` is refused with 414, a chunked body with 411, a body
    over the server's ``max_body`` with 413, an unreadable request with 400: each refusal is the
    answer :meth:`refusal` builds, recorded like any other exchange, and the connection is closed.
    A read that times out closes the connection and is recorded as a ``timeout`` failure. An
    answer's ``delay_s`` is waited before it is written, cut short (and recorded as cut) by
    :meth:`HttpsServer.stop`. A subclass gives :meth:`answer`, :meth:`refusal` and
    :meth:`internal_error`; :meth:`make_request` when its service reads its own request type.
    """

    max_line = 65536
    disable_nagle_algorithm = True
    """Headers and body go out in two writes: without TCP_NODELAY the body waits for the client's delayed ACK
    (about 40 ms a request on Linux)."""
    owner: HttpsServer[Any]

    # -- what a subclass gives -------------------------------------------------------------------
    def make_request(self, method: str, target: str, headers: Message, body: bytes) -> RequestT:
        """The request object the service reads (by default an :class:`HttpRequest`)."""
        return cast(RequestT, HttpRequest(method, target, headers, body))

    def answer(self, request: RequestT) -> AnswerT:
        """The service's answer to a request read whole."""
        raise NotImplementedError

    def refusal(self, status: int, fault: str, detail: str) -> AnswerT:
        """The answer to a request that could not be read (``fault`` names why, ``detail`` says it)."""
        raise NotImplementedError

    def internal_error(self, exc: BaseException) -> AnswerT:
        """The answer when :meth:`answer` raised (a simulator bug): a 500 the client can read."""
        raise NotImplementedError

    # -- reading ---------------------------------------------------------------------------------
    def handle_one_request(self) -> None:
        self._expect_continue = False
        self.requestline, self.command, self.path = "", "", ""  # what a refusal before parsing logs and records
        self.request_version = self.protocol_version
        self.headers = http.client.HTTPMessage()  # not the previous request's, on a kept-alive connection
        try:
            self.raw_requestline = self.rfile.readline(self.max_line + 1)
        except (TimeoutError, OSError):
            self.close_connection = True
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        started = utcnow()
        if len(self.raw_requestline) > self.max_line:
            self._refuse(started, 414, "request-line-too-long", f"ligne de requête au-delà de {self.max_line} octets")
            return
        try:
            parsed = self.parse_request()
        except (TimeoutError, OSError) as exc:
            self._timed_out(started, exc)
            return
        if not parsed:
            return  # send_error answered and recorded
        try:
            body = self._read_body()
        except RequestFailed as failure:
            self._refuse(started, failure.status, failure.fault, failure.detail)
            return
        except (TimeoutError, OSError) as exc:
            self._timed_out(started, exc)
            return
        request = self.make_request(self.command, self.path, self.headers, body)
        try:
            answer = self.answer(request)
        except Exception as exc:  # a simulator bug must still give the client an answer and leave a record
            self.owner.log.exception("%s: internal error while answering", self.owner.label)
            answer = self.internal_error(exc)
        if answer.delay_s and self.owner.stopping.wait(answer.delay_s):
            self.close_connection = True
            self.owner.record(
                started, self.client_address, request, answer, dict(self.tls), {"cut": "simulator stopped in the delay"}
            )
            return
        exchange = self.owner.record(started, self.client_address, request, answer, dict(self.tls))
        try:
            self._write(answer)
        except OSError as exc:
            exchange.meta["write_error"] = f"{type(exc).__name__}: {exc}"

    def _timed_out(self, started: datetime, exc: BaseException) -> None:
        self.close_connection = True
        self.owner.record_failure(started, self.client_address, "http", "", b"", "timeout", str(exc), dict(self.tls))

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise RequestFailed(411, "chunked-body", "corps chunked non servi: envoyer Content-Length")
        declared = self.headers.get("Content-Length")
        if declared is None:
            return b""
        if not declared.strip().isdigit():
            raise RequestFailed(400, "bad-content-length", f"Content-Length {declared[:32]!r} invalide")
        length = int(declared)
        if length > self.owner.limits.max_body:
            raise RequestFailed(413, "body-too-large", f"corps de {length} octets refusé")
        body = self.rfile.read(length)
        if len(body) < length:
            raise RequestFailed(400, "truncated-body", f"connexion fermée après {len(body)} octets")
        return body

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Unreadable HTTP answered with the simulator's refusal (the stock page is HTML), and recorded."""
        self.request_version = self.protocol_version  # a bad request line left it at HTTP/0.9 (no status line)
        self._refuse(utcnow(), int(code), f"http-{int(code)}", message or "requête HTTP illisible")

    def _refuse(self, started: datetime, status: int, fault: str, detail: str) -> None:
        self.close_connection = True
        answer = self.refusal(status, fault, detail)
        request = self.make_request(
            getattr(self, "command", "") or "",
            (getattr(self, "path", "") or "")[:1024],
            self.headers,
            b"",
        )
        self.owner.record(started, self.client_address, request, answer, dict(self.tls))
        with contextlib.suppress(OSError):
            self._write(answer, close=True)
        if status == 414 or (status == 413 and not self._expect_continue):
            self._drain()


def tls_facts(connection: socket.socket) -> dict[str, Any]:
    """What an exchange records of the TLS session: version, cipher, client certificate subject."""
    if not isinstance(connection, ssl.SSLSocket):
        return {}
    cipher = connection.cipher()
    facts: dict[str, Any] = {
        "version": connection.version(),
        "cipher": cipher[0] if cipher else None,
        "client_certificate": None,
    }
    der = connection.getpeercert(binary_form=True)
    if der:
        with contextlib.suppress(ValueError):
            facts["client_certificate"] = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    return facts
