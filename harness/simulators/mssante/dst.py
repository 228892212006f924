"""Mailiz DST-style entry points: a message submitted over HTTPS instead of SMTP (profile "Opérateur Mailiz").

MSS/va1.07 asks a client that reaches the Mailiz operator through its DST interface to
use the IGC-Santé entry points of the DST API specification (§8.1.1). That specification
is not public (protocols.md §3.1: "nothing public found"), so the shape here is ours and
says so: ``POST <entry point>/messages`` with the RFC 5322 message as body
(``Content-Type: message/rfc822``), answered ``201`` with ``{"message_id": ...}``.

What the scenario judges is what the requirement is about, the entry point: the operator
serves two, ``igc-sante`` (mutual TLS with an IGC-Santé-like server certificate, client
certificate required) and ``internet`` (same certificate, no client certificate asked),
each on its own port; every submission records which one it came through.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from email.message import Message
from typing import Any

from harness.simulators import https
from harness.simulators.https import HttpAnswer
from harness.simulators.mssante.operator import SIMULATOR, Operator
from harness.simulators.mssante.tls import TlsPolicy, stdlib_context
from harness.simulators.recording import utcnow

LOG = logging.getLogger(__name__)
ENTRY_POINTS = ("igc-sante", "internet")
PATH = "/mss-dst/v1"


def _answer(status: int, **content: Any) -> HttpAnswer:
    return HttpAnswer(status, json.dumps(content).encode("utf-8"), action="dst-submit", protocol="dst")


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    target: str
    headers: Message
    body: bytes


class DstServer(https.HttpsServer[HttpAnswer]):
    """One DST entry point."""

    def __init__(self, operator: Operator, kind: str, host: str, max_message: int) -> None:
        if kind not in ENTRY_POINTS:
            raise ValueError(f"unknown DST entry point {kind!r}")
        self.operator = operator
        self.kind = kind
        limits = https.Limits(max_body=max_message)
        super().__init__(
            operator.recorder,
            host,
            0,
            self.context(),
            limits,
            simulator=SIMULATOR,
            label=f"MSSanté DST ({kind})",
            log=LOG,
            handler=_Handler,
            base_meta=lambda: {"entry_point": kind},
        )

    def context(self) -> Any:
        policy = self.operator.policy if self.kind == "igc-sante" else TlsPolicy.CONFORMING
        return stdlib_context(policy, self.operator.pki, require_client_certificate=self.kind == "igc-sante")

    def rebuild(self) -> None:
        self.ssl_context = self.context()


class _Handler(https.HttpsHandler):
    server_version = "MSSante-DST-simulator"
    owner: DstServer

    def do_POST(self) -> None:
        started = utcnow()
        request = _Request(self.command, self.path, self.headers, b"")
        try:
            request = _Request(self.command, self.path, self.headers, self._body())
            answer = self._submit(request)
        except https.RequestFailed as failure:
            self.close_connection = True
            answer = _answer(failure.status, error=failure.fault, detail=failure.detail)
        answer.meta["entry_point"] = self.owner.kind
        self.owner.record(started, self.client_address, request, answer, dict(self.tls))
        with contextlib.suppress(OSError):
            self._write(answer)

    def _body(self) -> bytes:
        declared = self.headers.get("Content-Length", "")
        if not declared.strip().isdigit():
            raise https.RequestFailed(411, "length-required", "send the message with a Content-Length")
        length = int(declared)
        if length > self.owner.limits.max_body:
            raise https.RequestFailed(413, "message-too-large", f"message of {length} bytes refused")
        body = self.rfile.read(length)
        if len(body) < length:
            raise https.RequestFailed(400, "truncated-body", f"connection closed after {len(body)} bytes")
        return body

    def _submit(self, request: _Request) -> HttpAnswer:
        if request.target.split("?", 1)[0].rstrip("/") != f"{PATH}/messages":
            return _answer(404, error="not-found", detail=f"POST {PATH}/messages")
        if "message/rfc822" not in self.headers.get("Content-Type", ""):
            return _answer(415, error="unsupported-media-type", detail="the body must be message/rfc822")
        from email.parser import BytesHeaderParser
        from email.utils import getaddresses

        headers = BytesHeaderParser().parsebytes(request.body)
        sender = next((a for _, a in getaddresses([str(headers.get("From", ""))]) if "@" in a), "")
        fields = [str(v) for name in ("To", "Cc", "Bcc") for v in headers.get_all(name, [])]
        recipients = [a for _, a in getaddresses(fields) if "@" in a]
        refused = [r for r in recipients if not self.owner.operator.store.accepts(r)]
        if not sender or not recipients or refused:
            return _answer(422, error="recipients", detail=f"unknown or missing recipients: {refused or 'none'}")
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        session = self.owner.operator.open_session("dst", peer)
        session.starttls = True
        session.tls = dict(self.tls)
        session.login = sender
        session.authenticated = bool(self.tls.get("client_certificate"))
        session.transcript.append(f"C: POST {request.target} ({len(request.body)} bytes) via {self.owner.kind}")
        message = self.owner.operator.accept(session, sender, recipients, request.body, entry_point=self.owner.kind)
        self.owner.operator.close_session(session)
        return _answer(201, message_id=str(headers.get("Message-ID", "")), seq=message.seq)
