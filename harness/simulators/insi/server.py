"""The INSi simulator's HTTPS server: sockets, TLS, limits, and the record of every exchange.

The system under test reaches the simulator over a real TLS socket, exactly as it
would reach INSi. The socket machinery shared with the DMP simulator (thread per
connection, handshake in that thread, connection tracking, records) lives in
:mod:`harness.simulators.https`; this module sets it up for INSi and reads each
request: a deadline on every request (checked between reads, so a trickling client is
cut off), a cap on the body size checked before reading it, and an
:class:`~harness.simulators.recording.Exchange` recorded for each request, including
the ones that fail half-way (TLS refused, timeout, oversized body).

TLS asks for an optional client certificate verified against the test PKI, with the
validity dates left to the application (``X509_V_FLAG_NO_CHECK_TIME``): a certificate
from an unknown authority is refused during the handshake, as any TLS server would,
while an expired one reaches :mod:`harness.simulators.insi.auth` and gets a SOAP
fault the practice can show its user.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import logging
import ssl
import time
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from harness.simulators import https
from harness.simulators.https import RequestFailed as _RequestFailed
from harness.simulators.insi.service import (
    HttpAnswer,
    HttpRequest,
    InsiService,
    base_meta,
    content_type_action,
    internal_error,
)
from harness.simulators.recording import ExchangeRecorder, utcnow

LOG = logging.getLogger(__name__)

SIMULATOR = "insi"
MAX_DRAIN = 16 * 1024 * 1024
"""After refusing an oversized body, up to this much is read and discarded so the client gets the answer."""
_MAX_LINE = 65536
_TAP_LIMIT = 64 * 1024


Limits = https.Limits
"""The shared small-request limits (10 s per read, 30 s per request, 1 MiB)."""


def server_ssl_context(cert_chain: Path, key: Path, ca_bundle: Path) -> ssl.SSLContext:
    """TLS 1.2+ server context asking for an optional client certificate chained to ``ca_bundle``."""
    return https.server_ssl_context(cert_chain, key, ca_bundle, require_client_certificate=False, check_time=False)


class InsiServer(https.HttpsServer[HttpAnswer]):
    """Serves an :class:`InsiService` on a TCP port, recording every exchange."""

    def __init__(
        self,
        service: InsiService,
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
            label="INSi simulator",
            log=LOG,
            handler=_Handler,
            base_meta=base_meta,
        )


class _TapReader:
    """Wraps the connection's buffered reader: keeps the raw bytes of the request being read and
    enforces the request deadline between reads, so a client trickling one byte at a time is cut off.
    """

    def __init__(self, inner: io.BufferedReader) -> None:
        self.inner = inner
        self.seen = bytearray()
        self.deadline = 0.0

    def _keep(self, data: bytes) -> bytes:
        if len(self.seen) < _TAP_LIMIT:
            self.seen += data[: _TAP_LIMIT - len(self.seen)]
        return data

    def _check_deadline(self) -> None:
        if self.deadline and time.monotonic() > self.deadline:
            raise TimeoutError("request not received within the request deadline")

    def readline(self, limit: int = -1) -> bytes:
        """A line read piece by piece as bytes arrive (each piece is kept before the next wait)."""
        line = bytearray()
        while limit < 0 or len(line) < limit:
            self._check_deadline()
            available = self.inner.peek(1)
            if not available:
                break
            end = available.find(b"\n")
            take = len(available) if end < 0 else end + 1
            if limit >= 0:
                take = min(take, limit - len(line))
            line += self._keep(self.inner.read(take))
            if line.endswith(b"\n"):
                break
        return bytes(line)

    def read(self, size: int = -1) -> bytes:
        self._check_deadline()
        return self._keep(self.inner.read(size))

    def read_some(self, size: int) -> bytes:
        """At most ``size`` bytes, as soon as any arrive (so a timeout loses nothing already received)."""
        self._check_deadline()
        return self._keep(self.inner.read1(size))

    def close(self) -> None:
        self.inner.close()


class _Handler(https.HttpsHandler):
    """HTTP/1.1 with keep-alive; reads each request under the server's limits and answers it."""

    server_version = "INSi-simulator"
    max_drain = MAX_DRAIN
    owner: InsiServer

    def setup(self) -> None:
        super().setup()
        self.tap = _TapReader(cast(io.BufferedReader, self.rfile))
        self.rfile = cast(Any, self.tap)
        self._sent_error: tuple[int, str] | None = None

    # -- the request cycle -------------------------------------------------------------------
    def handle_one_request(self) -> None:
        self.tap.seen.clear()
        self.tap.deadline = time.monotonic() + self.owner.limits.request_timeout_s  # also bounds a trickled line
        self._sent_error = None
        self._expect_continue = False
        try:
            self.raw_requestline = self.rfile.readline(_MAX_LINE + 1)
        except (TimeoutError, OSError) as exc:
            self.close_connection = True
            self._record_partial("timeout", f"request line not received in time: {exc}")
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        started = utcnow()
        if len(self.raw_requestline) > _MAX_LINE:
            self._fail(started, _RequestFailed(414, "request-line-too-long", "request line too long"))
            return
        try:
            parsed = self.parse_request()
        except (TimeoutError, OSError) as exc:
            self.close_connection = True
            self._record_partial("timeout", f"headers not received in time: {exc}")
            return
        if not parsed:
            status, detail = self._sent_error or (400, "bad request")
            self._record_sent_error(started, status, detail)
            return
        try:
            body = self._read_body()
        except _RequestFailed as failure:
            self._fail(started, failure)
            return
        except (TimeoutError, OSError) as exc:
            self.close_connection = True
            self._record_partial("timeout", f"body not received in time: {exc}")
            return
        self.tap.deadline = 0.0
        request = HttpRequest(
            method=self.command,
            target=self.path,
            headers=self.headers,
            body=body,
            client_certificate=self._peer_der(),
        )
        try:
            answer = self.owner.service.handle(request)
        except Exception as exc:  # a simulator bug must still give the client an answer and leave a record
            LOG.exception("INSi simulator: internal error while answering")
            answer = internal_error(exc)
        if answer.delay_s and self.owner.stopping.wait(answer.delay_s):
            self.close_connection = True
            return
        self._write(answer)
        self.owner.record(started, self.client_address, request, answer, dict(self.tls), {})

    def _read_body(self) -> bytes:
        limits = self.owner.limits
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limits.max_body)
        declared = self.headers.get("Content-Length")
        if declared is None:
            return b""
        try:
            length = int(declared)
        except ValueError:
            raise _RequestFailed(400, "bad-content-length", f"Content-Length {declared!r} is not a number") from None
        if length < 0:
            raise _RequestFailed(400, "bad-content-length", "negative Content-Length")
        if length > limits.max_body:
            raise _RequestFailed(413, "body-too-large", f"body of {length} bytes refused (limit {limits.max_body})")
        return self._read_exactly(length)

    def _read_exactly(self, length: int) -> bytes:
        body = bytearray()
        while len(body) < length:
            piece = self.tap.read_some(min(65536, length - len(body)))
            if not piece:
                raise _RequestFailed(0, "truncated-body", f"connection closed after {len(body)} of {length} bytes")
            body += piece
        return bytes(body)

    def _read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(1026)
            if not line:
                raise _RequestFailed(0, "truncated-body", "connection closed inside a chunked body")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _RequestFailed(400, "bad-chunk", "malformed chunk size line") from None
            if size == 0:
                break
            if len(body) + size > limit:
                raise _RequestFailed(413, "body-too-large", f"chunked body larger than {limit} bytes refused")
            body += self._read_exactly(size)
            self.rfile.readline(3)
        for _ in range(100):  # trailer fields, up to the blank line
            if self.rfile.readline(_MAX_LINE + 1) in (b"\r\n", b"\n", b""):
                break
        return bytes(body)

    # -- answers -------------------------------------------------------------------------------
    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Plain-text errors (the stock page is HTML); remembered so the exchange can be recorded."""
        self._sent_error = (code, message or "")
        self.close_connection = True
        answer = HttpAnswer(code, f"{code} {message or ''}\n".encode(), content_type="text/plain; charset=utf-8")
        with contextlib.suppress(OSError):
            self._write(answer, close=True)

    def _fail(self, started: datetime, failure: _RequestFailed) -> None:
        self.close_connection = True
        meta = base_meta()
        meta["fault"] = failure.fault
        meta["detail"] = failure.detail
        answer = HttpAnswer(
            failure.status,
            f"{failure.status} {failure.detail}\n".encode() if failure.status else b"",
            content_type="text/plain; charset=utf-8",
            action=content_type_action(getattr(self, "headers", None)),
            protocol="http",
            meta=meta,
        )
        if failure.status:
            with contextlib.suppress(OSError):
                self._write(answer, close=True)
        request = HttpRequest(
            method=getattr(self, "command", "") or "",
            target=getattr(self, "path", "") or "",
            headers=getattr(self, "headers", None) or http.client.HTTPMessage(),
            body=bytes(self.tap.seen) if failure.status != 413 else b"",
        )
        self.owner.record(started, self.client_address, request, answer, dict(self.tls), {})
        if failure.status == 413 and not self._expect_continue:
            self._drain()

    def _record_sent_error(self, started: datetime, status: int, detail: str) -> None:
        meta = base_meta()
        meta["fault"] = f"http-{status}"
        meta["detail"] = detail
        answer = HttpAnswer(status, f"{status} {detail}\n".encode(), "text/plain; charset=utf-8", protocol="http")
        answer.meta = meta
        request = HttpRequest(
            method=getattr(self, "command", "") or "",
            target=getattr(self, "path", "") or "",
            headers=http.client.HTTPMessage(),
            body=bytes(self.tap.seen),
        )
        self.owner.record(started, self.client_address, request, answer, dict(self.tls), {})

    def _record_partial(self, fault: str, detail: str) -> None:
        if not self.tap.seen:
            return  # an idle keep-alive connection closing is not an exchange
        self.owner.record_failure(
            utcnow(),
            self.client_address,
            protocol="http",
            action="",
            request=bytes(self.tap.seen),
            fault=fault,
            detail=detail,
            tls=dict(self.tls),
        )

    # -- TLS facts -----------------------------------------------------------------------------
    def _peer_der(self) -> bytes | None:
        if isinstance(self.connection, ssl.SSLSocket):
            return self.connection.getpeercert(binary_form=True)
        return None
