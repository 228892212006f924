"""The DMP simulator's HTTPS server: mutual TLS, bounded bodies, and the record of every exchange.

The practice software reaches the simulator over a real TLS socket, as it would reach the
DMP. The socket machinery shared with the INSi simulator (one thread per connection, the TLS
handshake done in that thread so a silent client blocks only itself, a timeout on every
read, connection tracking, records) lives in :mod:`harness.simulators.https`; this module
sets it up for the DMP, puts a deadline on every request, and adds what the DMP needs:

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
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from harness.simulators import https
from harness.simulators.dmp.mtom import content_type_params
from harness.simulators.dmp.service import HttpAnswer, HttpRequest, base_meta, internal_error
from harness.simulators.dmp.soap import CONTENT_TYPE, FaultCode, fault_envelope
from harness.simulators.https import RequestFailed as _RequestFailed
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
    return https.server_ssl_context(cert_chain, key, ca_bundle, require_client_certificate=True, check_time=True)


Handler = Callable[[HttpRequest], HttpAnswer]
Published = Callable[[HttpAnswer, Exchange], None]


class DmpServer(https.HttpsServer[HttpAnswer]):
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
        self.limits: Limits
        super().__init__(
            recorder,
            host,
            port,
            ssl_context,
            limits,
            simulator=SIMULATOR,
            label="DMP simulator",
            log=LOG,
            handler=_Handler,
            base_meta=base_meta,
            tls_refused="TLS refusé: {exc}",
            on_recorded=on_recorded,
        )


class _Handler(https.HttpsHandler):
    """HTTP/1.1 with keep-alive; reads each request under the server's limits and answers it."""

    server_version = "DMP-simulator"
    drain_piece = _PIECE
    max_drain = MAX_DRAIN
    owner: DmpServer

    def setup(self) -> None:
        super().setup()
        self._deadline = 0.0

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

    # -- answers ---------------------------------------------------------------------------------
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

    def _record_partial(self, started: datetime, fault: str, detail: str, data: bytes) -> None:
        self.owner.record_failure(started, self.client_address, "http", "", data, fault, detail, dict(self.tls))
