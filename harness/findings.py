"""Findings and reports: what every validator and every check returns.

A finding is one observation about a subject (a SOAP request, a CDA document, an
HL7 v2 message, the SUT's behaviour). Reporters consume these objects directly;
nobody parses message strings.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class Severity(enum.StrEnum):
    """How much a finding weighs on the verdict."""

    ERROR = "error"
    """A non-conformity: the subject breaks a rule."""
    WARNING = "warning"
    """Suspicious or tolerated variance; does not fail a scenario on its own."""
    INFO = "info"
    """A fact worth recording (a repair made, a rule skipped for a stated reason)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One observation made by a validator or a scenario check.

    Attributes:
        severity: error, warning or info.
        rule: a stable rule id, e.g. ``ins.nir-key`` or ``insi.soap.action``.
        message: one human sentence saying what was found.
        location: where in the subject (XPath, HL7 field, header name), if any.
        source: what produced it (validator or simulator name).
        rule_file: the file the rule comes from, when rules are data (an ANS schematron,
            relative to its rules folder); empty for the harness's own rules.
    """

    severity: Severity
    rule: str
    message: str
    location: str = ""
    source: str = ""
    rule_file: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(
            severity=Severity(data["severity"]),
            rule=str(data["rule"]),
            message=str(data["message"]),
            location=str(data.get("location", "")),
            source=str(data.get("source", "")),
            rule_file=str(data.get("rule_file", "")),
        )


def error(rule: str, message: str, location: str = "", source: str = "", rule_file: str = "") -> Finding:
    """Shorthand for an error finding."""
    return Finding(Severity.ERROR, rule, message, location, source, rule_file)


def warning(rule: str, message: str, location: str = "", source: str = "", rule_file: str = "") -> Finding:
    """Shorthand for a warning finding."""
    return Finding(Severity.WARNING, rule, message, location, source, rule_file)


def info(rule: str, message: str, location: str = "", source: str = "", rule_file: str = "") -> Finding:
    """Shorthand for an info finding."""
    return Finding(Severity.INFO, rule, message, location, source, rule_file)


@dataclass(slots=True)
class Report:
    """The result of validating one subject.

    Attributes:
        subject: what was validated (a file name, "INSi request 3", ...).
        ruleset: name and version of the rules applied (e.g. ``harness-ins 0.1.0``).
        findings: every finding, in the order produced.
        duration_s: wall time spent producing the report.
    """

    subject: str
    ruleset: str
    findings: list[Finding] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def ok(self) -> bool:
        """True when no finding is an error."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "ruleset": self.ruleset,
            "ok": self.ok,
            "duration_s": round(self.duration_s, 6),
            "findings": [f.to_dict() for f in self.findings],
        }
