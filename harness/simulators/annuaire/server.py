"""The Annuaire Santé simulator's HTTPS server: TLS, bounded requests, and the record of every exchange.

The socket machinery shared with the INSi and DMP simulators (thread per connection, handshake
in that thread, connection tracking, records) lives in :mod:`harness.simulators.https`; this
module reads each request under small limits (a request line of at most 64 KiB, a form body of at
most 1 MiB, a timeout on every read) and answers what cannot be read with an ``OperationOutcome``
(414, 413, 400), recorded like any other exchange. TLS asks for an optional client certificate:
the real API authenticates the caller by its ``ESANTE-API-KEY``, not by TLS.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import ssl
from datetime import datetime
from pathlib import Path

from harness.simulators import https
from harness.simulators.annuaire.service import (
    AnnuaireService,
    HttpAnswer,
    HttpRequest,
    base_meta,
    internal_error,
    refusal,
)
from harness.simulators.recording import ExchangeRecorder, utcnow

LOG = logging.getLogger(__name__)

SIMULATOR = "annuaire"
MAX_LINE = 65536


Limits = https.Limits
"""The shared small-request limits (10 s per read, 30 s per request, 1 MiB)."""


def server_ssl_context(cert_chain: Path, key: Path, ca_bundle: Path) -> ssl.SSLContext:
    """TLS 1.2+ server context with an optional client certificate chained to ``ca_bundle``."""
    return https.server_ssl_context(cert_chain, key, ca_bundle, require_client_certificate=False, check_time=True)


class AnnuaireServer(https.HttpsServer[HttpAnswer]):
    """Serves an :class:`AnnuaireService` on a TCP port, recording every exchange."""

    def __init__(
        self,
        service: AnnuaireService,
        recorder: ExchangeRecorder,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.service = service
        self.limits: Limits
        super().__init__(
            recorder,
            host,
            port,
            ssl_context,
            limits or Limits(),
            simulator=SIMULATOR,
            label="Annuaire simulator",
            log=LOG,
            handler=_Handler,
            base_meta=base_meta,
            tls_refused="TLS handshake refused or failed: {exc}",
        )


class _Handler(https.HttpsHandler):
    """HTTP/1.1 with keep-alive; reads each request under the server's limits and answers it."""

    server_version = "Annuaire-simulator"
    owner: AnnuaireServer

    def handle_one_request(self) -> None:
        self._expect_continue = False
        self.requestline, self.command, self.path = "", "", ""  # what a refusal before parsing logs and records
        self.request_version = self.protocol_version
        self.headers = http.client.HTTPMessage()  # not the previous request's, on a kept-alive connection
        try:
            self.raw_requestline = self.rfile.readline(MAX_LINE + 1)
        except (TimeoutError, OSError):
            self.close_connection = True
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        started = utcnow()
        if len(self.raw_requestline) > MAX_LINE:
            self._refuse(started, 414, "request-line-too-long", f"ligne de requête au-delà de {MAX_LINE} octets")
            return
        try:
            parsed = self.parse_request()
        except (TimeoutError, OSError) as exc:
            self.close_connection = True
            self.owner.record_failure(
                started, self.client_address, "http", "", b"", "timeout", str(exc), dict(self.tls)
            )
            return
        if not parsed:
            return  # send_error answered and recorded
        try:
            body = self._read_body()
        except https.RequestFailed as failure:
            self._refuse(started, failure.status, failure.fault, failure.detail)
            return
        except (TimeoutError, OSError) as exc:
            self.close_connection = True
            self.owner.record_failure(
                started, self.client_address, "http", "", b"", "timeout", str(exc), dict(self.tls)
            )
            return
        request = HttpRequest(self.command, self.path, self.headers, body)
        try:
            answer = self.owner.service.handle(request)
        except Exception as exc:  # a simulator bug must still give the client an answer and leave a record
            LOG.exception("Annuaire simulator: internal error while answering")
            answer = internal_error(exc)
        if answer.delay_s and self.owner.stopping.wait(answer.delay_s):
            self.close_connection = True
            return
        exchange = self.owner.record(started, self.client_address, request, answer, dict(self.tls))
        try:
            self._write(answer)
        except OSError as exc:
            exchange.meta["write_error"] = f"{type(exc).__name__}: {exc}"

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise https.RequestFailed(411, "chunked-body", "corps chunked non servi: envoyer Content-Length")
        declared = self.headers.get("Content-Length")
        if declared is None:
            return b""
        if not declared.strip().isdigit():
            raise https.RequestFailed(400, "bad-content-length", f"Content-Length {declared[:32]!r} invalide")
        length = int(declared)
        if length > self.owner.limits.max_body:
            raise https.RequestFailed(413, "body-too-large", f"corps de {length} octets refusé")
        body = self.rfile.read(length)
        if len(body) < length:
            raise https.RequestFailed(400, "truncated-body", f"connexion fermée après {len(body)} octets")
        return body

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Unreadable HTTP answered with an OperationOutcome (the stock page is HTML), and recorded."""
        self.request_version = self.protocol_version  # a bad request line left it at HTTP/0.9 (no status line)
        self._refuse(utcnow(), int(code), f"http-{int(code)}", message or "requête HTTP illisible")

    def _refuse(self, started: datetime, status: int, fault: str, detail: str) -> None:
        self.close_connection = True
        answer = refusal(status, detail, "too-long" if status in (413, 414) else "invalid", {"fault": fault})
        request = HttpRequest(
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
