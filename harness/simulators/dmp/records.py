"""What the DMP simulator keeps of each transaction it served, typed for scenarios.

The recorder keeps bytes (:class:`~harness.simulators.recording.Exchange`); scenarios also
need the meaning: which documents arrived and how, what the VIHF said, what the DMP
answered. Each served transaction becomes one of these objects, holding its exchange, and
is published only once that exchange is recorded, so a scenario that waits for a
submission always finds its exchange in the recorder too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.findings import Finding, Severity
from harness.simulators.dmp.ebxml import (
    SEVERITY_ERROR,
    Association,
    Code,
    DocumentEntry,
    SubmissionSet,
)
from harness.simulators.dmp.vihf import VihfCheck
from harness.simulators.recording import Exchange


@dataclass(frozen=True, slots=True)
class RegistryError:
    """One ``rs:RegistryError`` answered (or to answer)."""

    code: str
    context: str
    severity: str = SEVERITY_ERROR
    location: str = ""

    @property
    def is_error(self) -> bool:
        return self.severity.endswith(":Error")

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "context": self.context, "severity": self.severity, "location": self.location}


@dataclass(slots=True, kw_only=True)
class Transaction:
    """What every served call keeps.

    Attributes:
        seq: position among the calls of its kind since the last reset (1, 2, ...): index ``seq - 1`` in
            :attr:`DmpSimulator.submissions` (or ``updates``...), as :meth:`DmpSimulator.wait_for_submission` counts.
        exchange: the recorded exchange (request with its attachments, response).
        action: the WS-Addressing action.
        vihf: the VIHF verdict (None when the request never got that far).
        findings: the simulator's own findings (malformed input, refusals), VIHF findings excluded.
        status: ``Success``, ``PartialSuccess``, ``Failure`` (registry answers), ``Fault`` (SOAP fault)
            or ``Unavailable`` (HTTP 503 injected).
        errors: the ``RegistryError`` list answered.
        fault: machine reason of a SOAP fault (``attachment-too-large``, ``signature``...), else empty.
    """

    seq: int = 0
    exchange: Exchange | None = None
    action: str = ""
    vihf: VihfCheck | None = None
    findings: list[Finding] = field(default_factory=list)
    status: str = ""
    errors: list[RegistryError] = field(default_factory=list)
    fault: str = ""

    @property
    def vihf_findings(self) -> list[Finding]:
        return list(self.vihf.findings) if self.vihf is not None else []

    @property
    def accepted(self) -> bool:
        """The DMP took the request (``Success`` or ``PartialSuccess``)."""
        return self.status in ("Success", "PartialSuccess")

    @property
    def error_codes(self) -> list[str]:
        return [e.code for e in self.errors if e.is_error]

    def all_findings(self) -> list[Finding]:
        return [*self.vihf_findings, *self.findings]

    def summary(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "errors": [e.to_dict() for e in self.errors],
            "fault": self.fault or None,
        }


@dataclass(slots=True, kw_only=True)
class Submission(Transaction):
    """One ITI-41 (TD2.1) received.

    Attributes:
        submission_set, entries, associations: the metadata as parsed (ids as sent).
        documents: the bytes received for each entry, by entry id as sent.
        transport: how the documents travelled: ``mtom``, ``inline``, ``mixed`` or ``none``.
        validator_findings: what the ``validator`` hook said (accepted submissions only).
        stored: entry id as sent → entry UUID given by the registry (accepted submissions only).
    """

    submission_set: SubmissionSet | None = None
    entries: list[DocumentEntry] = field(default_factory=list)
    associations: list[Association] = field(default_factory=list)
    documents: dict[str, bytes] = field(default_factory=dict)
    transport: str = "none"
    validator_findings: list[Finding] = field(default_factory=list)
    stored: dict[str, str] = field(default_factory=dict)

    @property
    def patient_id(self) -> str:
        return self.submission_set.patient_id if self.submission_set is not None else ""

    def all_findings(self) -> list[Finding]:
        return [*self.vihf_findings, *self.findings, *self.validator_findings]

    @property
    def validator_errors(self) -> list[Finding]:
        return [f for f in self.validator_findings if f.severity is Severity.ERROR]


@dataclass(slots=True, kw_only=True)
class UpdateChange:
    """One change an ITI-57 asked for.

    Attributes:
        kind: ``status`` (UpdateAvailabilityStatus association) or ``metadata`` (new version of an entry).
        target: the entry UUID or logical id the request named.
        entry_uuid: the entry changed (for ``metadata``: the version replaced).
        lid: its logical id.
        original_status / new_status: the statuses named (``metadata``: Approved → Approved).
        new_entry_uuid, new_version: the version created by a ``metadata`` change.
        confidentiality_codes: the new version's confidentiality codes (``metadata``).
        entry: the new version's metadata as sent (``metadata``).
    """

    kind: str
    target: str
    entry_uuid: str = ""
    lid: str = ""
    original_status: str = ""
    new_status: str = ""
    new_entry_uuid: str = ""
    new_version: int | None = None
    confidentiality_codes: list[Code] = field(default_factory=list)
    entry: DocumentEntry | None = None


@dataclass(slots=True, kw_only=True)
class Update(Transaction):
    """One ITI-57 (TD3.3) received; the shortcuts read its first change."""

    submission_set: SubmissionSet | None = None
    changes: list[UpdateChange] = field(default_factory=list)

    @property
    def entry_uuid(self) -> str:
        return self.changes[0].entry_uuid if self.changes else ""

    @property
    def lid(self) -> str:
        return self.changes[0].lid if self.changes else ""

    @property
    def new_status(self) -> str:
        return self.changes[0].new_status if self.changes else ""

    @property
    def confidentiality_codes(self) -> list[Code]:
        return list(self.changes[0].confidentiality_codes) if self.changes else []


@dataclass(slots=True, kw_only=True)
class TdCall(Transaction):
    """One TD0.2 (``td0.2``) or TD0.3 (``td0.3``) received, with what was answered."""

    operation: str = ""
    patient_id: str = ""
    answer: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class QueryCall(Transaction):
    """One ITI-18 (TD3.1) received: the stored query, its parameters, what it returned."""

    query_id: str = ""
    query_name: str = ""
    return_type: str = ""
    parameters: dict[str, list[str]] = field(default_factory=dict)
    returned: list[str] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class Retrieval(Transaction):
    """One ITI-43 (TD3.2) received: the documents asked for and those returned (unique ids)."""

    requested: list[tuple[str, str]] = field(default_factory=list)
    """``(repositoryUniqueId, documentUniqueId)`` pairs."""
    returned: list[str] = field(default_factory=list)
