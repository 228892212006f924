"""The DMP simulator's behaviour: from one HTTP request to one answer, its record and its transaction.

This is where the simulated DMP decides, in the order a real endpoint would: read the
body (MTOM or plain SOAP 1.2), find the operation from ``wsa:Action``, bend the answer if
a fault is injected, verify the VIHF, then hand the payload to the registry
(:mod:`.registry`), the consultation side (:mod:`.query`) or TD0.2/TD0.3 (:mod:`.td`).
It does no socket work (see :mod:`.server`). Each answer carries the exchange ``meta``
(operation, WS-Addressing, VIHF verdict, findings, registry status) and the typed
:class:`~harness.simulators.dmp.records.Transaction` that the simulator publishes once the
exchange is recorded.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import urlsplit

from lxml import etree

from harness.findings import Finding, error, warning
from harness.simulators.dmp import answers, mtom, td
from harness.simulators.dmp.ebxml import LCM, QUERY, XDSB, MetadataError, ResponseStatus, parse_submit_objects
from harness.simulators.dmp.faults import DmpFaultKind, FaultSwitch
from harness.simulators.dmp.query import Consultation, QueryError, StoredQuery, parse_adhoc, parse_retrieve
from harness.simulators.dmp.records import (
    QueryCall,
    RegistryError,
    Retrieval,
    Submission,
    TdCall,
    Transaction,
    Update,
)
from harness.simulators.dmp.registry import AttachmentTooLarge, Registry, read_documents
from harness.simulators.dmp.soap import (
    CONTENT_TYPE,
    Addressing,
    Envelope,
    EnvelopeError,
    FaultCode,
    addressing,
    envelope,
    fault_envelope,
    parse_envelope,
)
from harness.simulators.dmp.store import DmpStore
from harness.simulators.dmp.vihf import INVALID_SECURITY, VihfCheck, VihfVerifier, resource_id_finding

SOURCE = "dmp-simulator"

Validator = Callable[[Submission], list[Finding]]
"""A check run on every accepted submission (e.g. the harness's XDS metadata validator)."""


class Operation(enum.StrEnum):
    """The DMP transactions served, by WS-Addressing action."""

    ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
    ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
    ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
    ITI57 = "urn:ihe:iti:2010:UpdateDocumentSet"
    TD02 = td.ACTION_TD02
    TD03 = td.ACTION_TD03

    @property
    def action(self) -> str:
        return self.value

    @property
    def response_action(self) -> str:
        return self.value + "Response"

    @property
    def label(self) -> str:
        return _LABELS[self][0]

    @property
    def transaction(self) -> str:
        """The DMP's name for it (TD2.1, TD3.1...)."""
        return _LABELS[self][1]

    @property
    def body(self) -> str:
        """The Clark name of the body element expected."""
        return _LABELS[self][2]

    @classmethod
    def for_action(cls, action: str) -> Operation | None:
        try:
            return cls(action.strip())
        except ValueError:
            return None


_LABELS = {
    Operation.ITI41: ("ITI-41", "TD2.1", f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest"),
    Operation.ITI18: ("ITI-18", "TD3.1", f"{{{QUERY}}}AdhocQueryRequest"),
    Operation.ITI43: ("ITI-43", "TD3.2", f"{{{XDSB}}}RetrieveDocumentSetRequest"),
    Operation.ITI57: ("ITI-57", "TD3.3", f"{{{LCM}}}SubmitObjectsRequest"),
    Operation.TD02: ("TD0.2", "TD0.2", f"{{{td.TD}}}TestExistenceRequest"),
    Operation.TD03: ("TD0.3", "TD0.3", f"{{{td.TD}}}AddAuthorizationRequest"),
}


@dataclass(slots=True)
class HttpRequest:
    """What the server read from the socket."""

    method: str
    target: str
    headers: Message
    body: bytes
    client_subject: str | None = None
    """Subject (RFC 4514) of the TLS client certificate, if one was shown."""


@dataclass(slots=True)
class HttpAnswer:
    """What the server must write back, what to record, and the transaction to publish after recording."""

    status: int
    body: bytes
    content_type: str = CONTENT_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)
    action: str = ""
    protocol: str = "soap12"
    meta: dict[str, Any] = field(default_factory=dict)
    delay_s: float = 0.0
    transaction: Transaction | None = None


def base_meta() -> dict[str, Any]:
    """The meta keys every DMP exchange carries, with their 'nothing known' values."""
    return {
        "operation": None,
        "transaction": None,
        "client_certificate": None,
        "mtom": None,
        "vihf": None,
        "fault": None,
        "findings": [],
        "registry": None,
    }


class DmpService:
    """Answers DMP requests from a :class:`DmpStore`, with VIHF verification and injected faults."""

    def __init__(
        self,
        store: DmpStore,
        verifier: VihfVerifier,
        faults: FaultSwitch,
        *,
        path: str,
        repository_unique_id: str,
        max_attachment_bytes: int,
        validator: Validator | None = None,
    ) -> None:
        self.store = store
        self.verifier = verifier
        self.faults = faults
        self.path = path
        self.max_attachment_bytes = max_attachment_bytes
        self.validator = validator
        self.registry = Registry(store, repository_unique_id)
        self.consultation = Consultation(store, repository_unique_id)

    def handle(self, request: HttpRequest) -> HttpAnswer:
        """The answer to one HTTP request (never raises on hostile input)."""
        if urlsplit(request.target).path != self.path:
            return plain(404, "not found", f"{request.method} {request.target}")
        if request.method != "POST":
            answer = plain(405, "POST SOAP 1.2 requests to this endpoint", request.method)
            answer.headers.append(("Allow", "POST"))
            return answer
        return _Call(self, request).run()


class _Call:
    """The state of one SOAP request while it is being answered."""

    def __init__(self, service: DmpService, request: HttpRequest) -> None:
        self.service = service
        self.request = request
        self.meta = base_meta()
        self.meta["client_certificate"] = request.client_subject
        self.message: mtom.MtomMessage | None = None
        self.envelope: Envelope | None = None
        self.problem: EnvelopeError | None = None
        self.addressing = Addressing()
        self.operation: Operation | None = None
        self.record: Transaction | None = None
        self.delay_s = 0.0

    # -- the steps -------------------------------------------------------------------------------
    def run(self) -> HttpAnswer:
        content_type = self.request.headers.get("Content-Type", "")
        self._read_body(content_type)
        self._read_operation(content_type)
        early = self.service.faults.take(DmpFaultKind.UNAVAILABLE, DmpFaultKind.SLOW, DmpFaultKind.SOAP_FAULT)
        if early is not None:
            self.meta["injected"] = early.kind.value
        if early is not None and early.kind is DmpFaultKind.SLOW:
            self.delay_s = early.delay_s
        if early is not None and early.kind is DmpFaultKind.UNAVAILABLE:
            self._status("Unavailable")
            return self.finish(503, b"Service Unavailable\n", "text/plain; charset=utf-8", [("Retry-After", "30")])
        if self.problem is not None:
            layer = "mtom" if self.message is None and mtom.is_multipart(content_type) else "soap"
            rule = f"dmp.{layer}.{self.problem.reason}"
            return self.fault(self.problem.code, self.problem.reason, self.problem.message, rule=rule)
        refusal = self._operation_refusal()
        if refusal is not None:
            return refusal
        assert self.envelope is not None and self.operation is not None and self.envelope.payload is not None
        if early is not None and early.kind is DmpFaultKind.SOAP_FAULT:
            return self.fault(FaultCode.RECEIVER, "injected-soap-fault", early.text, rule="")
        check = self.service.verifier.verify(self.envelope, self.request.client_subject)
        self._vihf(check)
        if not check.accepted:
            return self.fault(FaultCode.SENDER, check.reason, check.message, subcode=f"wsse:{check.fault}", rule="")
        handler = {
            Operation.ITI41: self._iti41,
            Operation.ITI18: self._iti18,
            Operation.ITI43: self._iti43,
            Operation.ITI57: self._iti57,
            Operation.TD02: self._td,
            Operation.TD03: self._td,
        }[self.operation]
        return handler(self.envelope.payload, check)

    def _read_body(self, content_type: str) -> None:
        body = self.request.body
        media = content_type.split(";", 1)[0].strip().lower()
        if mtom.is_multipart(content_type):
            try:
                self.message = mtom.parse(content_type, body, max_part_bytes=self.service.max_attachment_bytes)
            except mtom.MtomError as exc:
                self.problem = EnvelopeError(
                    FaultCode.SENDER, exc.reason, f"corps multipart/related illisible: {exc.message}"
                )
                return
            self.meta["mtom"] = {
                "root": {"content_id": self.message.root.content_id, "content_type": self.message.root.content_type},
                "parts": [
                    {
                        "content_id": part.content_id,
                        "content_type": part.content_type,
                        "size": part.size,
                        "sha1": hashlib.sha1(part.content).hexdigest(),
                    }
                    for part in self.message.attachments.values()
                ],
            }
            root_media, root_params = mtom.content_type_params(self.message.root.content_type)
            if root_media != mtom.XOP_MEDIA_TYPE or root_params.get("type", "").lower() != "application/soap+xml":
                self.note(
                    warning(
                        "dmp.mtom.root-type",
                        f"the root part is {self.message.root.content_type!r}: MTOM with SOAP 1.2 uses "
                        'application/xop+xml; type="application/soap+xml"',
                        "Content-Type (root part)",
                        SOURCE,
                    )
                )
            body = self.message.root.content
        elif media != "application/soap+xml":
            self.note(
                warning(
                    "dmp.http.content-type",
                    f"Content-Type is {content_type!r}: SOAP 1.2 over HTTP uses application/soap+xml (or MTOM)",
                    "Content-Type",
                    SOURCE,
                )
            )
        try:
            self.envelope = parse_envelope(body)
        except EnvelopeError as exc:
            self.problem = exc

    def _read_operation(self, content_type: str) -> None:
        said = _content_type_action(content_type, self.message)
        if self.envelope is not None:
            self.addressing = addressing(self.envelope)
            self.meta["wsa"] = {
                "action": self.addressing.action,
                "message_id": self.addressing.message_id,
                "to": self.addressing.to,
            }
        action = self.addressing.action or said
        self.operation = Operation.for_action(action) if action else None
        if self.operation is not None:
            self.meta["operation"] = self.operation.label
            self.meta["transaction"] = self.operation.transaction
            self.record = _new_record(self.operation)

    def _operation_refusal(self) -> HttpAnswer | None:
        assert self.envelope is not None
        said = self.addressing.action
        fallback = _content_type_action(self.request.headers.get("Content-Type", ""), self.message)
        if not said and not fallback:
            return self.fault(
                FaultCode.SENDER,
                "action-missing",
                "en-tête wsa:Action absent",
                subcode="wsa:MessageAddressingHeaderRequired",
                rule="dmp.wsa.action-missing",
            )
        if not said:
            self.note(
                warning(
                    "dmp.wsa.action-missing",
                    "no wsa:Action header; the Content-Type action was used",
                    "wsa:Action",
                    SOURCE,
                )
            )
        elif fallback and fallback != said:
            self.note(
                warning(
                    "dmp.wsa.action-mismatch",
                    f"wsa:Action {said!r} differs from the Content-Type action {fallback!r}; wsa:Action was used",
                    "wsa:Action",
                    SOURCE,
                )
            )
        if self.operation is None:
            return self.fault(
                FaultCode.SENDER,
                "unknown-action",
                f"action inconnue {(said or fallback)!r}",
                subcode="wsa:ActionNotSupported",
                rule="dmp.wsa.unknown-action",
            )
        if not self.addressing.message_id:
            self.note(warning("dmp.wsa.message-id", "no wsa:MessageID header", "wsa:MessageID", SOURCE))
        payload = self.envelope.payload
        if payload is None or payload.tag != self.operation.body:
            found = payload.tag if payload is not None else "rien"
            return self.fault(
                FaultCode.SENDER,
                "body-mismatch",
                f"corps {found!r} inattendu pour l'action {self.operation.action}: {self.operation.body} attendu",
                rule="dmp.soap.body-mismatch",
            )
        return None

    def _vihf(self, check: VihfCheck) -> None:
        if self.record is not None:
            self.record.vihf = check
        self.meta["vihf"] = check.to_meta()

    def _patient_matches(self, check: VihfCheck, *patient_ids: str) -> HttpAnswer | None:
        """A ``wsse:InvalidSecurity`` fault when the VIHF's resource-id is not the request's patient."""
        for patient_id in patient_ids:
            problem = resource_id_finding(check, patient_id)
            if problem is not None:
                check.findings.append(problem)
                check.accepted, check.fault, check.reason, check.message = (
                    False,
                    INVALID_SECURITY,
                    "resource-id",
                    problem.message,
                )
                self._vihf(check)
                return self.fault(
                    FaultCode.SENDER, "resource-id", problem.message, subcode=f"wsse:{INVALID_SECURITY}", rule=""
                )
        return None

    # -- ITI-41 ----------------------------------------------------------------------------------
    def _iti41(self, payload: etree._Element, check: VihfCheck) -> HttpAnswer:
        record = self.record
        assert isinstance(record, Submission)
        request = payload.find(f"{{{LCM}}}SubmitObjectsRequest")
        if request is None:
            return self._registry_answer(
                [
                    RegistryError(
                        "XDSRepositoryMetadataError",
                        "lcm:SubmitObjectsRequest absent",
                        location="xdsb:ProvideAndRegisterDocumentSetRequest",
                    )
                ],
                "dmp.xds.metadata",
            )
        try:
            submit = parse_submit_objects(request)
        except MetadataError as exc:
            return self._registry_answer(
                [RegistryError("XDSRepositoryMetadataError", exc.message, location=exc.location)], "dmp.xds.metadata"
            )
        record.submission_set, record.entries, record.associations = (
            submit.submission_set,
            submit.entries,
            submit.associations,
        )
        try:
            received = read_documents(payload, self.message, self.service.max_attachment_bytes)
        except AttachmentTooLarge as exc:
            return self.fault(
                FaultCode.SENDER,
                "attachment-too-large",
                f"pièce jointe trop volumineuse: {exc}",
                rule="dmp.mtom.attachment-too-large",
            )
        record.documents, record.transport = received.by_id, received.transport
        assert submit.submission_set is not None
        refusal = self._patient_matches(check, submit.submission_set.patient_id)
        if refusal is not None:
            return refusal
        partial = self.service.faults.current()
        warning_text = partial.text if partial is not None and partial.kind is DmpFaultKind.PARTIAL_SUCCESS else ""
        outcome = self.service.registry.register(submit, received, partial_warning=warning_text)
        if warning_text and outcome.status is ResponseStatus.PARTIAL_SUCCESS:
            self.service.faults.take(DmpFaultKind.PARTIAL_SUCCESS)
            self.meta["injected"] = DmpFaultKind.PARTIAL_SUCCESS.value
        self.note(*outcome.findings)
        record.stored = dict(outcome.stored)
        self.meta["submission"] = {
            "patient_id": submit.submission_set.patient_id,
            "transport": received.transport,
            "entries": [
                {
                    "id": e.id,
                    "unique_id": e.unique_id,
                    "hash": e.hash,
                    "size": e.first("size"),
                    "received": len(received.by_id.get(e.id, b"")),
                }
                for e in submit.entries
            ],
            "stored": dict(outcome.stored),
        }
        if outcome.status is not ResponseStatus.FAILURE and self.service.validator is not None:
            record.status = outcome.status.value
            record.validator_findings = _validate(self.service.validator, record)
            self.meta["validator_findings"] = [f.to_dict() for f in record.validator_findings]
        return self._registry_answer(outcome.errors, status=outcome.status)

    # -- ITI-57 ----------------------------------------------------------------------------------
    def _iti57(self, payload: etree._Element, check: VihfCheck) -> HttpAnswer:
        record = self.record
        assert isinstance(record, Update)
        try:
            submit = parse_submit_objects(payload)
        except MetadataError as exc:
            return self._registry_answer(
                [RegistryError("XDSRegistryMetadataError", exc.message, location=exc.location)], "dmp.xds.metadata"
            )
        assert submit.submission_set is not None
        record.submission_set = submit.submission_set
        refusal = self._patient_matches(check, submit.submission_set.patient_id)
        if refusal is not None:
            return refusal
        outcome = self.service.registry.update(submit)
        record.changes = outcome.changes
        self.note(*outcome.findings)
        self.meta["update"] = {
            "patient_id": submit.submission_set.patient_id,
            "changes": [
                {
                    "kind": c.kind,
                    "target": c.target,
                    "entry_uuid": c.entry_uuid,
                    "new_status": c.new_status,
                    "new_entry_uuid": c.new_entry_uuid,
                    "confidentiality_codes": [[code.code, code.scheme] for code in c.confidentiality_codes],
                }
                for c in outcome.changes
            ],
        }
        return self._registry_answer(outcome.errors, status=outcome.status)

    # -- ITI-18 ----------------------------------------------------------------------------------
    def _iti18(self, payload: etree._Element, check: VihfCheck) -> HttpAnswer:
        record = self.record
        assert isinstance(record, QueryCall)
        try:
            query = parse_adhoc(payload)
        except QueryError as exc:
            problem = RegistryError(exc.code, exc.message, location=exc.location)
            self.note(error("dmp.iti18.query", f"{exc.code}: {exc.message}", exc.location, SOURCE))
            return self._query_answer(ResponseStatus.FAILURE, [problem], [])
        record.query_id, record.query_name, record.return_type = query.id, query.name, query.return_type
        record.parameters = query.parameters
        self.meta["query"] = {
            "id": query.id,
            "name": query.name,
            "return_type": query.return_type,
            "parameters": query.parameters,
        }
        answer = self.service.consultation.query(query)
        refusal = self._patient_matches(check, *answer.patients, *self._query_patient(query))
        if refusal is not None:
            return refusal
        record.returned = list(answer.returned)
        self.note(*answer.findings)
        self.meta["query"]["returned"] = list(answer.returned)
        return self._query_answer(answer.status, answer.errors, answer.objects)

    @staticmethod
    def _query_patient(query: StoredQuery) -> list[str]:
        return [v for v in (query.one("$XDSDocumentEntryPatientId"), query.one("$XDSSubmissionSetPatientId")) if v]

    def _query_answer(
        self, status: ResponseStatus, errors: list[RegistryError], objects: list[etree._Element]
    ) -> HttpAnswer:
        self._status(status.value, errors)
        body = envelope(answers.adhoc_query_response(status, errors, objects), **self._reply())
        return self.finish(200, body)

    # -- ITI-43 ----------------------------------------------------------------------------------
    def _iti43(self, payload: etree._Element, check: VihfCheck) -> HttpAnswer:
        record = self.record
        assert isinstance(record, Retrieval)
        requested = parse_retrieve(payload)
        record.requested = requested
        answer = self.service.consultation.retrieve(requested)
        refusal = self._patient_matches(check, *answer.patients)
        if refusal is not None:
            return refusal
        record.returned = list(answer.returned)
        self.note(*answer.findings)
        self.meta["retrieve"] = {"requested": [list(p) for p in requested], "returned": list(answer.returned)}
        self._status(answer.status.value, answer.errors)
        parts = [
            mtom.Part(mtom.new_content_id(), stored.mime_type or "application/octet-stream", {}, stored.document)
            for stored in answer.documents
        ]
        payload_out = answers.retrieve_response(
            answer.status, answer.errors, list(zip(answer.documents, [p.content_id for p in parts], strict=True))
        )
        content_type, body = mtom.build(envelope(payload_out, **self._reply()), parts)
        return self.finish(200, body, content_type)

    # -- TD0.2 / TD0.3 ---------------------------------------------------------------------------
    def _td(self, payload: etree._Element, check: VihfCheck) -> HttpAnswer:
        record = self.record
        assert isinstance(record, TdCall) and self.operation is not None
        operation = "td0.2" if self.operation is Operation.TD02 else "td0.3"
        record.operation = operation
        try:
            patient_id = td.request_patient_id(payload, operation)
        except td.TdError as exc:
            return self.fault(FaultCode.SENDER, "td-body", str(exc), rule="dmp.td.body")
        record.patient_id = patient_id
        refusal = self._patient_matches(check, patient_id)
        if refusal is not None:
            return refusal
        build = td.existence_answer if operation == "td0.2" else td.authorization_answer
        element, values = build(self.service.store, patient_id)
        record.answer = values
        self.meta["td"] = {"operation": operation, "patient_id": patient_id, "answer": values}
        self._status("Success")
        return self.finish(200, envelope(element, **self._reply()))

    # -- answers ---------------------------------------------------------------------------------
    def _registry_answer(
        self, errors: list[RegistryError], rule: str = "", status: ResponseStatus = ResponseStatus.FAILURE
    ) -> HttpAnswer:
        if rule:
            self.note(*(error(rule, f"{e.code}: {e.context}", e.location, SOURCE) for e in errors))
        self._status(status.value, errors)
        return self.finish(200, envelope(answers.registry_response(status, errors), **self._reply()))

    def _reply(self) -> dict[str, str]:
        return {
            "action": self.operation.response_action if self.operation is not None else "",
            "relates_to": self.addressing.message_id,
        }

    def _status(self, status: str, errors: list[RegistryError] | None = None) -> None:
        self.meta["registry"] = {"status": status, "errors": [e.to_dict() for e in errors or []]}
        if self.record is not None:
            self.record.status = status
            self.record.errors = list(errors or [])

    def note(self, *findings: Finding) -> None:
        self.meta["findings"].extend(f.to_dict() for f in findings)
        if self.record is not None:
            self.record.findings.extend(findings)

    def fault(self, code: FaultCode, reason: str, message: str, *, subcode: str = "", rule: str) -> HttpAnswer:
        if rule:
            self.note(error(rule, message, subcode or "soap:Fault", SOURCE))
        self.meta["fault"] = reason
        self.meta["registry"] = {"status": "Fault", "errors": []}
        if self.record is not None:
            self.record.status, self.record.fault = "Fault", reason
        body = fault_envelope(code, message, reason=reason, subcode=subcode, relates_to=self.addressing.message_id)
        return self.finish(code.http_status, body)

    def finish(
        self, status: int, body: bytes, content_type: str = CONTENT_TYPE, headers: list[tuple[str, str]] | None = None
    ) -> HttpAnswer:
        if self.record is not None:
            self.record.action = self.operation.action if self.operation is not None else ""
        return HttpAnswer(
            status,
            body,
            content_type=content_type,
            headers=headers or [],
            action=self.operation.action if self.operation is not None else self.addressing.action,
            meta=self.meta,
            delay_s=self.delay_s,
            transaction=self.record,
        )


def _new_record(operation: Operation) -> Transaction:
    if operation is Operation.ITI41:
        return Submission()
    if operation is Operation.ITI57:
        return Update()
    if operation is Operation.ITI18:
        return QueryCall()
    if operation is Operation.ITI43:
        return Retrieval()
    return TdCall()


def _validate(validator: Validator, submission: Submission) -> list[Finding]:
    try:
        return list(validator(submission))
    except Exception as exc:  # a broken validator must not break the simulated DMP
        return [
            error("dmp.validator.crashed", f"the submission validator raised {type(exc).__name__}: {exc}", "", SOURCE)
        ]


def _content_type_action(content_type: str, message: mtom.MtomMessage | None) -> str:
    """The ``action`` parameter of the HTTP Content-Type, or of the MTOM root part's."""
    _, params = mtom.content_type_params(content_type) if content_type else ("", {})
    action = params.get("action", "")
    if not action and message is not None:
        _, root = mtom.content_type_params(message.root.content_type)
        action = root.get("action", "")
    return action.strip()


def plain(status: int, text: str, action: str) -> HttpAnswer:
    meta = base_meta()
    meta["fault"] = {404: "not-found", 405: "method-not-allowed"}.get(status, f"http-{status}")
    return HttpAnswer(
        status, (text + "\n").encode("utf-8"), "text/plain; charset=utf-8", action=action, protocol="http", meta=meta
    )


def internal_error(exc: Exception) -> HttpAnswer:
    """The Receiver fault answered when the simulator itself fails (its own bug, never the client's)."""
    meta = base_meta()
    meta["fault"] = "internal-error"
    meta["detail"] = f"{type(exc).__name__}: {exc}"
    body = fault_envelope(FaultCode.RECEIVER, "erreur interne du simulateur DMP", reason="internal-error")
    return HttpAnswer(500, body, meta=meta)
