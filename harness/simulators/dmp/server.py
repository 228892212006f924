"""The DMP simulator's HTTPS server: mutual TLS, bounded bodies, and the record of every exchange.

The practice software reaches the simulator over a real TLS socket, as it would reach the
DMP. Same design as the INSi simulator's server (one thread per connection, the TLS
handshake done in that thread so a silent client blocks only itself, a timeout on every
read and a deadline on every request), with what the DMP needs on top:

- **mutual TLS is required**: a client without a certificate chained to the test PKI is
  refused during the handshake, and that refusal is recorded (protocol ``tls``);
- **bodies are bounded before they are read**: documents travel inside the request, so
  the limit is derived from the attachment limit (``max_attachment_bytes`` × 4/3 for base64
  plus an envelope allowance); above it the answer is HTTP 413 with a SOAP 1.2 fault, and
  what the client keeps sending is drained and dropped, never kept;
- each served request is recorded whole (request body with its attachments, answer) and the
  transaction it produced handed to ``on_recorded`` *before* the answer is written, so a
  client holding an answer can rely on the simulator already showing the exchange.
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
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, cast

from cryptography import x509

from harness.simulators.dmp.mtom import content_type_params
from harness.simulators.dmp.service import HttpAnswer, HttpRequest, base_meta, internal_error
from harness.simulators.dmp.soap import CONTENT_TYPE, FaultCode, fault_envelope
from harness.simulators.recording import Exchange, ExchangeRecorder, utcnow

LOG = logging.getLogger(__name__)

SIMULATOR = "dmp"
ENVELOPE_ALLOWANCE = 2 * 1024 * 1024
"""Room for the SOAP envelope, the metadata and the MIME framing beside the documents."""
MAX_DRAIN = 64 * 1024 * 1024
_MAX_LINE = 65536
_PIECE = 1024 * 1024


def body_limit(max_attachment_bytes: int) -> int:
    """The largest request body accepted for a given attachment limit (an inline base64 document fits)."""
    return max_attachment_bytes * 4 // 3 + ENVELOPE_ALLOWANCE


@dataclass(frozen=True, slots=True)
class Limits:
    """Time and size limits of the server."""

    max_body: int
    socket_timeout_s: float = 10.0
    """Longest wait for any single read or write on a connection."""
    request_timeout_s: float = 60.0
    """Longest time from the request line to having read the whole body."""


def server_ssl_context(cert_chain: Path, key: Path, ca_bundle: Path) -> ssl.SSLContext:
    """TLS 1.2+ server context **requiring** a client certificate chained to ``ca_bundle``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_chain), str(key))
    context.load_verify_locations(cafile=str(ca_bundle))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


Handler = Callable[[HttpRequest], HttpAnswer]
Published = Callable[[HttpAnswer, Exchange], None]


class DmpServer:
    """Serves a request handler on a TCP port, recording every exchange."""

    def __init__(
        self,
        handle: Handler,
        recorder: ExchangeRecorder,
        limits: Limits,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        on_recorded: Published | None = None,
    ) -> None:
        self.handle = handle
        self.recorder = recorder
        self.limits = limits
        self.ssl_context = ssl_context
        self.on_recorded = on_recorded
        self.stopping = threading.Event()
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
            target=self._tcp.serve_forever, kwargs={"poll_interval": 0.1}, name="dmp-simulator", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, cut open connections, wait briefly for the accept loop."""
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

    # -- one connection (its own thread) ---------------------------------------------------------
    def serve_connection(self, raw: socket.socket, peer: tuple[str, int]) -> None:
        """Serve one accepted connection until it closes; never raises."""
        raw.settimeout(self.limits.socket_timeout_s)
        self._track(raw, True)
        connection: socket.socket | None = raw
        try:
            connection = self._secure(raw, peer)
            if connection is not None:
                self._track(connection, True)
                _Handler(connection, peer, self._tcp)
        except OSError as exc:
            LOG.debug("DMP simulator: connection from %s:%s ended: %s", peer[0], peer[1], exc)
        except Exception:  # a broken client must never end as an unhandled thread error
            LOG.exception("DMP simulator: connection from %s:%s failed", *peer[:2])
        finally:
            for sock in {raw, connection} - {None}:
                assert sock is not None
                self._track(sock, False)
                with contextlib.suppress(OSError):
                    sock.close()

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(sock)
            else:
                self._connections.discard(sock)

    def _secure(self, raw: socket.socket, peer: tuple[str, int]) -> socket.socket | None:
        if self.ssl_context is None:
            return raw
        started = utcnow()
        try:
            connection = self.ssl_context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            self._track(connection, True)
            connection.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            self.record_failure(started, peer, "tls", "TLS handshake", b"", "tls-handshake", f"TLS refusé: {exc}", {})
            return None
        return connection

    # -- records ---------------------------------------------------------------------------------
    def record(
        self, started: datetime, peer: tuple[str, int], request: HttpRequest, answer: HttpAnswer, tls: dict[str, Any]
    ) -> Exchange:
        meta = dict(answer.meta)
        meta["http"] = {
            "method": request.method,
            "target": request.target,
            "status": answer.status,
            "request_headers": dict(request.headers.items()),
            "response_headers": {"Content-Type": answer.content_type, **dict(answer.headers)},
        }
        if answer.delay_s:
            meta["delay_s"] = answer.delay_s
        exchange = self.recorder.record(
            Exchange(
                simulator=SIMULATOR,
                protocol=answer.protocol,
                action=answer.action,
                direction="inbound",
                started=started,
                ended=utcnow(),
                request=request.body,
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
        meta = base_meta()
        meta["fault"] = fault
        meta["detail"] = detail
        self.recorder.record(
            Exchange(
                simulator=SIMULATOR,
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

    def __init__(self, address: tuple[str, int], owner: DmpServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        self.owner.serve_connection(cast(socket.socket, request), cast(tuple[str, int], client_address))


class _RequestFailed(Exception):
    """The request could not be read; ``status`` is the HTTP answer to give (0 = none, just close)."""

    def __init__(self, status: int, fault: str, detail: str, partial: bytes = b"") -> None:
        super().__init__(detail)
        self.status = status
        self.fault = fault
        self.detail = detail
        self.partial = partial


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; reads each request under the server's limits and answers it."""

    protocol_version = "HTTP/1.1"
    server_version = "DMP-simulator"
    sys_version = ""
    server: _TcpServer

    def setup(self) -> None:
        self.owner = self.server.owner
        self.request.settimeout(self.owner.limits.socket_timeout_s)
        super().setup()
        self.tls = _tls_facts(self.connection)
        self._expect_continue = False
        self._deadline = 0.0

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("DMP simulator %s: " + format, self.address_string(), *args)

    def handle_one_request(self) -> None:
        self._expect_continue = False
        try:
            self.raw_requestline = self.rfile.readline(_MAX_LINE + 1)
        except (TimeoutError, OSError):
            self.close_connection = True
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        started = utcnow()
        self._deadline = time.monotonic() + self.owner.limits.request_timeout_s
        if len(self.raw_requestline) > _MAX_LINE:
            self._fail(started, _RequestFailed(414, "request-line-too-long", "ligne de requête trop longue"))
            return
        try:
            parsed = self.parse_request()
        except (TimeoutError, OSError) as exc:
            self.close_connection = True
            self._record_partial(started, "timeout", f"en-têtes non reçus à temps: {exc}", b"")
            return
        if not parsed:
            return  # send_error already answered and recorded
        try:
            body = self._read_body()
        except _RequestFailed as failure:
            self._fail(started, failure)
            return
        except (TimeoutError, OSError) as exc:
            self.close_connection = True
            self._record_partial(started, "timeout", f"corps non reçu à temps: {exc}", b"")
            return
        request = HttpRequest(self.command, self.path, self.headers, body, self.tls.get("client_certificate"))
        try:
            answer = self.owner.handle(request)
        except Exception as exc:  # a simulator bug must still give the client an answer and leave a record
            LOG.exception("DMP simulator: internal error while answering")
            answer = internal_error(exc)
        if answer.delay_s and self.owner.stopping.wait(answer.delay_s):
            self.close_connection = True
            return
        # Recorded (and its transaction published) before the answer is written: once a client holds
        # the answer, scenarios reading the simulator find the exchange and the transaction.
        exchange = self.owner.record(started, self.client_address, request, answer, dict(self.tls))
        try:
            self._write(answer)
        except OSError as exc:
            exchange.meta["write_error"] = f"{type(exc).__name__}: {exc}"

    # -- reading ---------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        limit = self.owner.limits.max_body
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        declared = self.headers.get("Content-Length")
        if declared is None:
            return b""
        if not declared.strip().isdigit():
            raise _RequestFailed(400, "bad-content-length", f"Content-Length {declared!r} invalide")
        length = int(declared)
        if length > limit:
            raise _RequestFailed(413, "body-too-large", f"corps de {length} octets refusé (limite {limit})")
        body = bytearray()
        self._fill(body, length)
        return bytes(body)

    def _fill(self, body: bytearray, length: int) -> None:
        """Append exactly ``length`` bytes of the request to ``body``, under the request deadline."""
        target = len(body) + length
        while len(body) < target:
            if time.monotonic() > self._deadline:
                raise _RequestFailed(
                    0, "timeout", f"corps non reçu dans le délai ({len(body)} octets)", bytes(body[:65536])
                )
            piece = self.rfile.read1(min(_PIECE, target - len(body)))
            if not piece:
                raise _RequestFailed(
                    0, "truncated-body", f"connexion fermée après {len(body)} octets", bytes(body[:65536])
                )
            body += piece

    def _read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(1026)
            if not line:
                raise _RequestFailed(0, "truncated-body", "connexion fermée dans un corps chunked")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _RequestFailed(400, "bad-chunk", "taille de bloc chunked invalide") from None
            if size == 0:
                break
            if len(body) + size > limit:
                raise _RequestFailed(413, "body-too-large", f"corps chunked au-delà de {limit} octets refusé")
            self._fill(body, size)
            self.rfile.readline(3)
        for _ in range(100):  # trailer fields, up to the blank line
            if self.rfile.readline(_MAX_LINE + 1) in (b"\r\n", b"\n", b""):
                break
        return bytes(body)

    def handle_expect_100(self) -> bool:
        """Answer ``100 Continue`` only for a body this server will accept."""
        self._expect_continue = True
        declared = self.headers.get("Content-Length", "0")
        if declared.isdigit() and int(declared) > self.owner.limits.max_body:
            return True  # no 100: the client must not send the body; _read_body answers 413
        return super().handle_expect_100()

    # -- answers ---------------------------------------------------------------------------------
    def _write(self, answer: HttpAnswer, close: bool = False) -> None:
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

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Plain-text errors for unreadable HTTP (the stock page is HTML), recorded as exchanges."""
        self.close_connection = True
        body = f"{code} {message or ''}\n".encode()
        self.owner.record_failure(
            utcnow(), self.client_address, "http", "", b"", f"http-{code}", message or "", dict(self.tls), body
        )
        with contextlib.suppress(OSError):
            self._write(HttpAnswer(code, body, "text/plain; charset=utf-8", protocol="http"), close=True)

    def _fail(self, started: datetime, failure: _RequestFailed) -> None:
        self.close_connection = True
        headers = getattr(self, "headers", None) or http.client.HTTPMessage()
        meta = base_meta()
        meta["fault"] = failure.fault
        meta["detail"] = failure.detail
        if failure.status == 413:
            body = fault_envelope(FaultCode.SENDER, failure.detail, reason=failure.fault)
            answer = HttpAnswer(413, body, CONTENT_TYPE, protocol="soap12", meta=meta)
        else:
            body = f"{failure.status} {failure.detail}\n".encode() if failure.status else b""
            answer = HttpAnswer(failure.status, body, "text/plain; charset=utf-8", protocol="http", meta=meta)
        answer.action = content_type_params(headers.get("Content-Type", ""))[1].get("action", "")
        request = HttpRequest(
            getattr(self, "command", "") or "", getattr(self, "path", "") or "", headers, failure.partial
        )
        self.owner.record(started, self.client_address, request, answer, dict(self.tls))
        if failure.status:
            with contextlib.suppress(OSError):
                self._write(answer, close=True)
        if failure.status == 413 and not self._expect_continue:
            self._drain()

    def _drain(self) -> None:
        """Read and drop what the client is still sending, so it reads the refusal instead of a reset."""
        deadline = time.monotonic() + min(3.0, self.owner.limits.socket_timeout_s)
        drained = 0
        with contextlib.suppress(OSError):
            self.connection.settimeout(0.5)
            while drained < MAX_DRAIN and time.monotonic() < deadline:
                piece = self.connection.recv(_PIECE)
                if not piece:
                    break
                drained += len(piece)

    def _record_partial(self, started: datetime, fault: str, detail: str, data: bytes) -> None:
        self.owner.record_failure(started, self.client_address, "http", "", data, fault, detail, dict(self.tls))


def _tls_facts(connection: socket.socket) -> dict[str, Any]:
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
