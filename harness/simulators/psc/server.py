"""The Pro Santé Connect simulator's HTTPS server: TLS with the test PKI's server certificate, bounded requests.

The socket machinery and the reading of small requests (a request line of at most 64 KiB, a
form body of at most 1 MiB, a timeout on every read) are the simulators' shared ones
(:mod:`harness.simulators.https`); what cannot be read is answered with an OAuth JSON error
(414, 413, 411, 400), recorded like any other exchange. TLS asks for no client certificate:
PSC clients authenticate with their client secret.
"""

from __future__ import annotations

import logging
import ssl

from harness.simulators import https
from harness.simulators.https import HttpAnswer
from harness.simulators.psc.answers import base_meta, internal_error, refusal
from harness.simulators.psc.service import PscService
from harness.simulators.recording import ExchangeRecorder

LOG = logging.getLogger(__name__)

SIMULATOR = "psc"

Limits = https.Limits
"""The shared small-request limits (10 s per read, 30 s per request, 1 MiB)."""


class PscServer(https.HttpsServer[HttpAnswer]):
    """Serves a :class:`PscService` on a TCP port, recording every exchange."""

    def __init__(
        self,
        service: PscService,
        recorder: ExchangeRecorder,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        limits: https.Limits | None = None,
    ) -> None:
        self.service = service
        super().__init__(
            recorder,
            host,
            port,
            ssl_context,
            limits or Limits(),
            simulator=SIMULATOR,
            label="PSC simulator",
            log=LOG,
            handler=_Handler,
            base_meta=base_meta,
        )


class _Handler(https.RequestReader[https.HttpRequest, HttpAnswer]):
    """HTTP/1.1 with keep-alive; the shared reader's limits, refusals as OAuth JSON errors."""

    server_version = "PSC-simulator"
    owner: PscServer

    def answer(self, request: https.HttpRequest) -> HttpAnswer:
        return self.owner.service.handle(request)

    def refusal(self, status: int, fault: str, detail: str) -> HttpAnswer:
        return refusal(status, fault, detail)

    def internal_error(self, exc: BaseException) -> HttpAnswer:
        return internal_error(exc)
