"""What a scenario collects while it runs: findings, exchanges, produced files.

The ``evidence`` fixture hands a :class:`ScenarioEvidence` to each scenario. It
marks every simulator recorder when the scenario starts, so the exchanges the
scenario caused are gathered automatically; the scenario adds its own checks as
findings and attaches files. The plugin turns it into a :class:`Verdict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.findings import Finding, Severity, error
from harness.simulators.recording import Exchange, ExchangeRecorder
from harness.verdicts import Artefact, NonConformity


@dataclass
class ScenarioEvidence:
    """Evidence gathered by one scenario run.

    Example:
        >>> ev = ScenarioEvidence()
        >>> ev.expect(1 + 1 == 2, "demo.sum", "one plus one is two")
        True
        >>> ev.conclude()  # raises NonConformity when any expectation failed
    """

    findings: list[Finding] = field(default_factory=list)
    files: list[tuple[Artefact, bytes]] = field(default_factory=list)
    extra_exchanges: list[Exchange] = field(default_factory=list)
    marks: dict[str, tuple[ExchangeRecorder, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def track(self, name: str, recorder: ExchangeRecorder) -> None:
        """Collect the exchanges ``recorder`` sees from now on."""
        if name not in self.marks:
            self.marks[name] = (recorder, recorder.mark())

    def exchanges(self) -> list[Exchange]:
        """Every exchange recorded since the scenario started, in time order."""
        out = list(self.extra_exchanges)
        for recorder, mark in self.marks.values():
            out.extend(recorder.since(mark))
        return sorted(out, key=lambda e: e.started)

    def record_exchange(self, exchange: Exchange) -> None:
        """Add an exchange the harness made itself (e.g. an HL7 v2 message sent over MLLP)."""
        self.extra_exchanges.append(exchange)

    def add(self, *findings: Finding) -> None:
        self.findings.extend(findings)

    def expect(self, condition: bool, rule: str, message: str, location: str = "") -> bool:
        """Record an error finding unless ``condition`` holds; returns ``condition``.

        ``message`` states what conformance requires, so the finding reads as the
        broken rule (e.g. "the INS must be removed after a KO verification").
        """
        if not condition:
            self.findings.append(error(rule, message, location, source="scenario"))
        return condition

    def note(self, text: str) -> None:
        """A fact worth keeping in the verdict (not a finding)."""
        self.notes.append(text)

    def attach(self, name: str, data: bytes, media_type: str, description: str = "") -> None:
        """Keep a produced file (a document, an HL7 message, the SUT's trace) as evidence."""
        self.files.append((Artefact(name=name, media_type=media_type, description=description), data))

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    def conclude(self) -> None:
        """Raise :class:`NonConformity` when any error finding was recorded."""
        if self.errors:
            first = self.errors[0]
            more = f" (+{len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
            raise NonConformity(f"{first.message}{more}", self.errors)
