"""Verdicts: the outcome of one compliance scenario, as the evidence journal records it.

The vocabulary is DESIGN.md's: ``passed``, ``failed`` (the SUT does not conform),
``error`` (the SUT or the harness broke), ``not-applicable`` (profile not selected),
``not-supported`` (the adapter lacks the capability) and ``manual`` (a human proof
is needed). Scenarios raise the outcome exceptions below; the pytest plugin turns
them into :class:`Verdict` records.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from harness.findings import Finding


class VerdictStatus(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    NOT_APPLICABLE = "not-applicable"
    NOT_SUPPORTED = "not-supported"
    MANUAL = "manual"


#: Order used to derive a requirement's status from its scenarios' verdicts:
#: the first status present in this list wins.
STATUS_PRECEDENCE: tuple[VerdictStatus, ...] = (
    VerdictStatus.ERROR,
    VerdictStatus.FAILED,
    VerdictStatus.MANUAL,
    VerdictStatus.NOT_SUPPORTED,
    VerdictStatus.PASSED,
    VerdictStatus.NOT_APPLICABLE,
)


def combine(statuses: list[VerdictStatus]) -> VerdictStatus:
    """A requirement's status from the verdicts of its scenarios.

    Any error or failure dominates; a requirement whose automated scenarios all
    passed but that still needs a human proof is ``manual``; with no verdict at
    all it is ``manual`` too (never silently dropped).
    """
    present = set(statuses)
    for status in STATUS_PRECEDENCE:
        if status in present:
            return status
    return VerdictStatus.MANUAL


@dataclass(slots=True)
class Artefact:
    """A file produced as evidence (a document, a log, an HL7 message...)."""

    name: str
    media_type: str
    description: str = ""
    path: str = ""
    """Path relative to the run directory, set once written."""
    sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "media_type": self.media_type,
            "description": self.description,
            "path": self.path,
            "sha256": self.sha256,
        }


@dataclass(slots=True)
class Verdict:
    """The outcome of one scenario run, tied to the ANS ids it proves.

    Attributes:
        nodeid: the pytest node id of the scenario.
        scenario_ref: the ANS compliance-scenario id (``INS/va1.06.01``) that owns the
            evidence folder; for a requirement ANS gives no scenario, the requirement id.
        requirement_refs: the ANS requirement ids covered (``INS/va1.06``).
        also_scenario_refs: other ANS compliance scenarios the same run performs (a
            scenario of another requirement checked by the same exchanges, such as
            ``INS/va1.63.01`` alongside ``INS/va1.06.01``).
        title: what the scenario demonstrates, in one line.
        status: the verdict.
        reason: one sentence explaining a non-passed status.
        findings: what the checks found.
        exchanges: sequence numbers of the recorded exchanges, keyed by simulator.
        artefacts: files written as evidence.
        proof_refs: ANS proof ids this scenario's evidence supports.
        started, ended: timestamps.
    """

    nodeid: str
    scenario_ref: str
    requirement_refs: list[str]
    title: str
    status: VerdictStatus
    reason: str = ""
    also_scenario_refs: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    exchanges: list[dict[str, Any]] = field(default_factory=list)
    artefacts: list[Artefact] = field(default_factory=list)
    proof_refs: list[str] = field(default_factory=list)
    started: datetime | None = None
    ended: datetime | None = None

    @property
    def scenario_refs(self) -> tuple[str, ...]:
        """Every compliance scenario this verdict stands for, its own first."""
        return (self.scenario_ref, *[s for s in self.also_scenario_refs if s != self.scenario_ref])

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "scenario_ref": self.scenario_ref,
            "requirement_refs": list(self.requirement_refs),
            "also_scenario_refs": list(self.also_scenario_refs),
            "title": self.title,
            "status": self.status.value,
            "reason": self.reason,
            "findings": [f.to_dict() for f in self.findings],
            "exchanges": list(self.exchanges),
            "artefacts": [a.to_dict() for a in self.artefacts],
            "proof_refs": list(self.proof_refs),
            "started": self.started.isoformat() if self.started else None,
            "ended": self.ended.isoformat() if self.ended else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        return cls(
            nodeid=data["nodeid"],
            scenario_ref=data["scenario_ref"],
            requirement_refs=list(data["requirement_refs"]),
            also_scenario_refs=list(data.get("also_scenario_refs", [])),
            title=data.get("title", ""),
            status=VerdictStatus(data["status"]),
            reason=data.get("reason", ""),
            findings=[Finding.from_dict(f) for f in data.get("findings", [])],
            exchanges=list(data.get("exchanges", [])),
            artefacts=[Artefact(**a) for a in data.get("artefacts", [])],
            proof_refs=list(data.get("proof_refs", [])),
            started=datetime.fromisoformat(data["started"]) if data.get("started") else None,
            ended=datetime.fromisoformat(data["ended"]) if data.get("ended") else None,
        )


class ScenarioOutcome(Exception):
    """Base of the exceptions a scenario raises to end with a non-passed verdict."""

    status: VerdictStatus

    def __init__(self, reason: str, findings: list[Finding] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.findings = list(findings or [])


class NonConformity(ScenarioOutcome):
    """The SUT does not conform: the findings say why."""

    status = VerdictStatus.FAILED


class NotApplicable(ScenarioOutcome):
    """The requirement's profile or condition is not selected for this run."""

    status = VerdictStatus.NOT_APPLICABLE


class NotSupported(ScenarioOutcome):
    """The adapter does not offer the capability the scenario needs."""

    status = VerdictStatus.NOT_SUPPORTED


class ManualProofNeeded(ScenarioOutcome):
    """What the scenario can show stops here; a human proof completes it."""

    status = VerdictStatus.MANUAL
