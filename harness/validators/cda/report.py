"""What validating one CDA document produces: a report made of stage reports.

ANS judges a CI-SIS document in separate steps (well-formedness, the CDA schema, the
volet schematron, the profile schematrons). A vendor needs to see which step failed
and with which rule file, so the report keeps one :class:`StageReport` per step, each
naming its rule file and the version of the rule set it came from. Reporters (CLI
table, JSON, SVRL, HTML, the evidence pack) read these objects; nobody parses text.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from harness.findings import Finding, Severity


class Stage(enum.StrEnum):
    """The steps of CDA validation, in the order they run."""

    PARSE = "parse"
    """Safe XML parsing: no entities, no DTD, no network, bounded size."""
    RULES = "rules"
    """Loading the rule set: repairs and gaps of the ANS tree (case, missing files)."""
    XSD = "xsd"
    """The CDA R2 schema with ANS extensions (``CDA_extended.xsd``)."""
    SCHEMATRON = "schematron"
    """One ANS schematron (the volet, or a profile), compiled to XSLT 2 and run with Saxon."""
    HEADER = "header"
    """The harness's own CI-SIS header rules (INS, author, custodian...), needing no ANS files."""
    PDF = "pdf"
    """The PDF embedded in a level-1 document: PDF/A identification and forbidden features."""


@dataclass(slots=True)
class StageReport:
    """The outcome of one stage.

    Attributes:
        stage: which step.
        name: what ran, e.g. ``CI-SIS_VSM_2023.01`` or ``profils/IHE`` or ``CDA_extended.xsd``.
        findings: what the step found, errors first in document order as produced.
        rule_file: the rule file, relative to the rules folder ("" for the harness's own rules).
        version: the version of the rule set (``git:<commit>`` or ``sha256:<hash>``), or the
            harness version for its own rules.
        duration_s: wall time of the step.
        fired_rules: schematron only: rules whose context matched (SVRL ``fired-rule``).
        failed_asserts: schematron only: SVRL ``failed-assert`` count.
        successful_reports: schematron only: SVRL ``successful-report`` count.
        svrl: schematron only: the SVRL output as produced by the compiled schematron.
        skipped: why the step did not run (an earlier stage failed, no rules configured), or "".
    """

    stage: Stage
    name: str
    findings: list[Finding] = field(default_factory=list)
    rule_file: str = ""
    version: str = ""
    duration_s: float = 0.0
    fired_rules: int = 0
    failed_asserts: int = 0
    successful_reports: int = 0
    svrl: bytes | None = None
    skipped: str = ""

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "stage": self.stage.value,
            "name": self.name,
            "ok": self.ok,
            "rule_file": self.rule_file,
            "version": self.version,
            "duration_s": round(self.duration_s, 6),
            "findings": [f.to_dict() for f in self.findings],
        }
        if self.stage is Stage.SCHEMATRON:
            data["fired_rules"] = self.fired_rules
            data["failed_asserts"] = self.failed_asserts
            data["successful_reports"] = self.successful_reports
        if self.skipped:
            data["skipped"] = self.skipped
        return data


@dataclass(frozen=True, slots=True)
class VoletChoice:
    """Which volet schematron a document was judged against, and why.

    Attributes:
        schematron: the file, relative to the rules folder (``schematrons/CI-SIS_VSM_2023.01.sch``),
            or "" when no volet applies (an unstructured level-1 document, an unknown templateId).
        template_id: the volet templateId root (and ``@extension`` when present) it was chosen by.
        reason: one sentence for the report.
        level1: the document has a ``nonXMLBody`` (structuration minimale).
    """

    schematron: str
    template_id: str
    reason: str
    level1: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "schematron": self.schematron,
            "template_id": self.template_id,
            "reason": self.reason,
            "level1": self.level1,
        }


@dataclass(slots=True)
class CdaReport:
    """The validation of one document: every stage, the volet choice, the rule set used.

    Attributes:
        subject: the file name or label of the document.
        ruleset: where the ANS rules came from and their version, e.g.
            ``TestContenuCDA sha256:1f3c… (harness compiler 1)``; "" without ANS rules.
        volet: the volet choice, when the document could be read.
        stages: one report per stage run (or skipped), in order.
        duration_s: wall time for the whole document.
    """

    subject: str
    ruleset: str = ""
    volet: VoletChoice | None = None
    stages: list[StageReport] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def findings(self) -> list[Finding]:
        return [f for stage in self.stages for f in stage.findings]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.WARNING]

    @property
    def ok(self) -> bool:
        """True when no stage found an error."""
        return not self.errors

    @property
    def ans_ok(self) -> bool:
        """The verdict of the ANS stages alone (schema and schematrons), as ANS's own tools would give it."""
        return not any(s.errors for s in self.stages if s.stage in (Stage.XSD, Stage.SCHEMATRON, Stage.PARSE))

    @property
    def harness_ok(self) -> bool:
        """The verdict of the harness's own rules alone (header and embedded PDF)."""
        return not any(s.errors for s in self.stages if s.stage in (Stage.HEADER, Stage.PDF))

    def stage(self, stage: Stage, name: str | None = None) -> StageReport | None:
        """The first stage report of that kind (and name, if given), or None."""
        for report in self.stages:
            if report.stage is stage and (name is None or report.name == name):
                return report
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "ok": self.ok,
            "ans_ok": self.ans_ok,
            "harness_ok": self.harness_ok,
            "ruleset": self.ruleset,
            "volet": self.volet.to_dict() if self.volet else None,
            "duration_s": round(self.duration_s, 6),
            "stages": [s.to_dict() for s in self.stages],
        }
