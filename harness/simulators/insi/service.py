"""The INSi simulator's behaviour: from one HTTP request to one answer and its record.

This is where the simulated téléservice decides: serve the WSDL, refuse what is not a
SOAP 1.2 INSi request, authenticate the caller, read the query, search the identity
base, and bend the answer when a fault is injected. It does no socket work (see
:mod:`harness.simulators.insi.server`), so every decision can be traced to the
``meta`` it records: ``auth_mode``, ``client_certificate``, ``operation``, ``query``,
``cr``, ``fault`` and ``findings`` (list of finding dicts), plus the WS-Addressing
facts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lxml import etree

from harness.findings import Finding, error, warning
from harness.simulators.insi import checks
from harness.simulators.insi.auth import Authenticator, AuthMode
from harness.simulators.insi.faults import FaultKind, FaultSwitch, InsiFault
from harness.simulators.insi.identities import IdentityBase, InsiIdentity
from harness.simulators.insi.soap import (
    CONTENT_TYPE,
    Envelope,
    EnvelopeError,
    FaultCode,
    Operation,
    fault_envelope,
    parse_envelope,
    resultat_envelope,
    truncated,
)
from harness.simulators.insi.wsdl import wsdl_for

SOURCE = "insi-simulator"


@dataclass(slots=True)
class HttpRequest:
    """What the server read from the socket."""

    method: str
    target: str
    headers: Message
    body: bytes
    client_certificate: bytes | None = None
    """The TLS client certificate (DER) if one was shown."""


@dataclass(slots=True)
class HttpAnswer:
    """What the server must write back, and what to record about the exchange."""

    status: int
    body: bytes
    content_type: str = CONTENT_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)
    action: str = ""
    protocol: str = "soap12"
    meta: dict[str, Any] = field(default_factory=dict)
    delay_s: float = 0.0
    """Seconds to wait before writing the answer (``SLOW`` fault)."""


def base_meta() -> dict[str, Any]:
    """The meta keys every INSi exchange carries, with their 'nothing known' values."""
    return {
        "auth_mode": AuthMode.NONE.value,
        "client_certificate": None,
        "operation": None,
        "query": {},
        "cr": None,
        "fault": None,
        "findings": [],
    }


class InsiService:
    """Answers INSi requests from an identity base, with authentication and injected faults."""

    def __init__(
        self,
        base: IdentityBase,
        authenticator: Authenticator,
        faults: FaultSwitch,
        path: str = "/insi",
        location: str = "",
    ) -> None:
        self.base = base
        self.authenticator = authenticator
        self.faults = faults
        self.path = path
        self.location = location
        """The public URL of the endpoint, written into the served WSDL."""

    def handle(self, request: HttpRequest) -> HttpAnswer:
        """The answer to one HTTP request (never raises on hostile input)."""
        split = urlsplit(request.target)
        if split.path != self.path:
            return _plain(404, "not found", f"{request.method} {split.path}")
        if request.method == "GET":
            if "wsdl" in {k.lower() for k in parse_qs(split.query, keep_blank_values=True)}:
                return self._wsdl(request)
            return _plain(405, "use POST for SOAP calls, GET ?wsdl for the WSDL", "GET")
        if request.method != "POST":
            answer = _plain(405, "method not allowed", request.method)
            answer.headers.append(("Allow", "GET, POST"))
            return answer
        return self._soap(request)

    # -- WSDL --------------------------------------------------------------------------------
    def _wsdl(self, request: HttpRequest) -> HttpAnswer:
        outcome = self.authenticator.authenticate(None, request.client_certificate)
        meta = base_meta()
        meta["auth_mode"] = outcome.mode.value
        meta["client_certificate"] = outcome.client_certificate
        return HttpAnswer(
            200,
            wsdl_for(self.location),
            content_type="text/xml; charset=utf-8",
            action="GET ?wsdl",
            protocol="http",
            meta=meta,
        )

    # -- SOAP --------------------------------------------------------------------------------
    def _soap(self, request: HttpRequest) -> HttpAnswer:
        call = _Call(request)
        call.check_content_type()
        try:
            call.envelope = parse_envelope(request.body)
        except EnvelopeError as exc:
            call.envelope_error = exc
        call.read_operation()

        early = self.faults.take(FaultKind.UNAVAILABLE, FaultKind.SLOW)
        if early is not None and early.kind is FaultKind.SLOW:
            call.delay_s = early.delay_s
            call.meta["fault"] = early.kind.value
        if early is not None and early.kind is FaultKind.UNAVAILABLE:
            call.meta["fault"] = early.kind.value
            return call.finish(503, b"Service Unavailable\n", "text/plain; charset=utf-8", [("Retry-After", "30")])

        if call.envelope_error is not None:
            problem = call.envelope_error
            call.note(error(f"insi.soap.{problem.reason}", problem.message, "envelope", SOURCE))
            return call.fault(problem.code, problem.reason, problem.message)
        refusal = call.operation_refusal()
        if refusal is not None:
            return refusal
        assert call.envelope is not None and call.operation is not None and call.payload is not None

        outcome = self.authenticator.authenticate(call.envelope, request.client_certificate)
        call.meta["auth_mode"] = outcome.mode.value
        call.meta["client_certificate"] = outcome.client_certificate
        if outcome.signer is not None:
            call.meta["assertion_signer"] = outcome.signer
        call.note(*outcome.findings)

        query = (
            checks.read_traits_query(call.payload)
            if call.operation is Operation.RECSANSVITALE
            else checks.read_card_query(call.payload)
        )
        call.meta["query"] = query.values
        call.note(*checks.check_addressing(call.addressing, call.operation, call.http_action))
        call.note(*checks.check_contexte_bam(call.envelope, call.operation, query.values.get("matricule_od", "")))
        call.note(*checks.check_contexte_lps(call.envelope))
        call.note(*query.problems)

        if not outcome.accepted:
            return call.fault(FaultCode.SENDER, outcome.reason, outcome.message)
        if query.blocking:
            message = "requête invalide: " + "; ".join(f.message for f in query.blocking)
            return call.fault(FaultCode.SENDER, "invalid-request", message)

        found = self._search(call.operation, query.values)
        code = "00" if len(found) == 1 else "01" if not found else "02"
        call.meta["matches"] = len(found)
        return self._answer(call, code, found[0] if code == "00" else None)

    def _search(self, operation: Operation, query: dict[str, str]) -> list[InsiIdentity]:
        if operation is Operation.RECSANSVITALE:
            return self.base.search_by_traits(
                query["birth_name"], query["first_name"], query["sex"], query["birth_date"], query["birthplace"]
            )
        return self.base.search_by_card(
            query["matricule_od"], query["matricule_individu"], query["birth_date"], query["rang"]
        )

    def _answer(self, call: _Call, code: str, identity: InsiIdentity | None) -> HttpAnswer:
        late = self.faults.take(FaultKind.SOAP_FAULT, FaultKind.MALFORMED)
        if late is None and code == "01":
            late = self.faults.take(FaultKind.NOT_FOUND_AS_FAULT)
        if late is not None:
            call.meta["fault"] = late.kind.value
            call.meta["computed_cr"] = code
            return self._injected(call, late, code, identity)
        call.meta["cr"] = code
        body = resultat_envelope(code, identity, request_action=call.action, relates_to=call.addressing.message_id)
        return call.finish(200, body)

    def _injected(self, call: _Call, fault: InsiFault, code: str, identity: InsiIdentity | None) -> HttpAnswer:
        if fault.kind is FaultKind.MALFORMED:
            whole = resultat_envelope(code, identity, request_action=call.action, relates_to=call.addressing.message_id)
            return call.finish(200, truncated(whole))
        return call.fault(FaultCode.RECEIVER, fault.kind.value, fault.text)


class _Call:
    """The state of one SOAP request while it is being answered."""

    def __init__(self, request: HttpRequest) -> None:
        self.request = request
        self.meta = base_meta()
        self.envelope: Envelope | None = None
        self.envelope_error: EnvelopeError | None = None
        self.operation: Operation | None = None
        self.payload: etree._Element | None = None
        self.addressing = checks.Addressing()
        self.http_action = content_type_action(request.headers)
        self.delay_s = 0.0

    @property
    def action(self) -> str:
        """The action the exchange is recorded under: the operation's, else what the client said."""
        if self.operation is not None:
            return self.operation.action
        return self.addressing.action or self.http_action

    def note(self, *findings: Finding) -> None:
        self.meta["findings"].extend(f.to_dict() for f in findings)

    def check_content_type(self) -> None:
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() != "application/soap+xml":
            self.note(
                warning(
                    "insi.http.content-type",
                    f"Content-Type is {content_type!r}: SOAP 1.2 over HTTP uses application/soap+xml",
                    "Content-Type",
                    SOURCE,
                )
            )

    def read_operation(self) -> None:
        if self.envelope is None:
            return
        self.addressing = checks.addressing(self.envelope)
        self.meta["wsa"] = {
            "action": self.addressing.action,
            "message_id": self.addressing.message_id,
            "to": self.addressing.to,
        }
        self.payload = self.envelope.payload
        if self.payload is not None:
            self.operation = Operation.for_element(self.payload)
        if self.operation is not None:
            self.meta["operation"] = self.operation.value

    def operation_refusal(self) -> HttpAnswer | None:
        """A Sender fault when the action is unknown or the body is no INSi operation, else None."""
        said = self.addressing.action or self.http_action
        if said and Operation.for_action(said) is None:
            message = f"action inconnue {said!r}"
            self.note(error("insi.wsa.unknown-action", message, "wsa:Action", SOURCE))
            return self.fault(FaultCode.SENDER, "unknown-action", message)
        if self.payload is None:
            message = "env:Body vide: RECSANSVITALE ou RECVITALE attendu"
            self.note(error("insi.soap.empty-body", message, "env:Body", SOURCE))
            return self.fault(FaultCode.SENDER, "empty-body", message)
        if self.operation is None:
            message = f"opération inconnue {etree.QName(self.payload).text!r}: RECSANSVITALE ou RECVITALE attendu"
            self.note(error("insi.soap.unknown-operation", message, "env:Body", SOURCE))
            return self.fault(FaultCode.SENDER, "unknown-operation", message)
        return None

    def fault(self, code: FaultCode, reason: str, message: str) -> HttpAnswer:
        self.meta["fault"] = reason
        body = fault_envelope(
            code,
            message,
            erreur_code=reason,
            request_action=self.action,
            relates_to=self.addressing.message_id,
        )
        return self.finish(code.http_status, body)

    def finish(
        self, status: int, body: bytes, content_type: str = CONTENT_TYPE, headers: list[tuple[str, str]] | None = None
    ) -> HttpAnswer:
        return HttpAnswer(
            status,
            body,
            content_type=content_type,
            headers=headers or [],
            action=self.action,
            meta=self.meta,
            delay_s=self.delay_s,
        )


def content_type_action(headers: Message | None) -> str:
    """The ``action`` parameter of a SOAP 1.2 Content-Type (``application/soap+xml; action="..."``)."""
    if headers is None:
        return ""
    value = headers.get_param("action", header="Content-Type")
    return value.strip() if isinstance(value, str) else ""


def _plain(status: int, text: str, action: str) -> HttpAnswer:
    meta = base_meta()
    meta["fault"] = {404: "not-found", 405: "method-not-allowed"}.get(status, f"http-{status}")
    return HttpAnswer(
        status,
        (text + "\n").encode("utf-8"),
        content_type="text/plain; charset=utf-8",
        action=action,
        protocol="http",
        meta=meta,
    )


def internal_error(exc: Exception) -> HttpAnswer:
    """The Receiver fault answered when the simulator itself fails (its own bug, never the client's)."""
    meta = base_meta()
    meta["fault"] = "internal-error"
    meta["detail"] = f"{type(exc).__name__}: {exc}"
    body = fault_envelope(FaultCode.RECEIVER, "erreur interne du simulateur INSi", erreur_code="internal-error")
    return HttpAnswer(500, body, meta=meta)
