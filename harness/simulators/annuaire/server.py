"""The Annuaire Santé simulator's HTTPS server: TLS, bounded requests, and the record of every exchange.

The socket machinery shared with the INSi and DMP simulators (thread per connection, handshake
in that thread, connection tracking, records) and the reading of small requests (a request line of
at most 64 KiB, a form body of at most 1 MiB, a timeout on every read) live in
:mod:`harness.simulators.https`; this module answers what cannot be read with an ``OperationOutcome``
(414, 413, 400), recorded like any other exchange. TLS asks for an optional client certificate:
the real API authenticates the caller by its ``ESANTE-API-KEY``, not by TLS.
"""

from __future__ import annotations

import logging
import ssl
from email.message import Message
from pathlib import Path

from harness.simulators import https
from harness.simulators.annuaire.service import (
    AnnuaireService,
    HttpRequest,
    base_meta,
    internal_error,
    refusal,
)
from harness.simulators.https import HttpAnswer
from harness.simulators.recording import ExchangeRecorder

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
        )


class _Handler(https.RequestReader[HttpRequest, HttpAnswer]):
    """HTTP/1.1 with keep-alive; the shared reader's limits, refusals as OperationOutcomes."""

    server_version = "Annuaire-simulator"
    max_line = MAX_LINE
    owner: AnnuaireServer

    def make_request(self, method: str, target: str, headers: Message, body: bytes) -> HttpRequest:
        return HttpRequest(method, target, headers, body)

    def answer(self, request: HttpRequest) -> HttpAnswer:
        return self.owner.service.handle(request)

    def refusal(self, status: int, fault: str, detail: str) -> HttpAnswer:
        return refusal(status, detail, "too-long" if status in (413, 414) else "invalid", {"fault": fault})

    def internal_error(self, exc: BaseException) -> HttpAnswer:
        return internal_error(exc)
