"""Bridge from pytest to the evidence journal: one verdict per scenario, then the run's end.

Kept apart from the hooks so the hooks stay about pytest and this module stays
about evidence: it starts the journal on the first verdict, writes each verdict
with its exchanges and files, journals the requirements no scenario covers as
``manual`` (or ``not-applicable`` outside the selected profiles), and finalises
the run folder (matrix, ``index.html``, signed manifest).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from harness.catalog import ComplianceScenario
from harness.evidence.journal import RunInfo, RunJournal
from harness.evidence.manifest import finalize_run
from harness.plugin.evidence import ScenarioEvidence
from harness.verdicts import Verdict, VerdictStatus

if TYPE_CHECKING:
    from harness.plugin.session import HarnessSession


class VerdictWriter:
    """Writes verdicts to ``run_dir`` through :class:`RunJournal`."""

    def __init__(self, harness: HarnessSession) -> None:
        self.run_dir = harness.run_dir
        self.journal = RunJournal(self.run_dir)
        description = harness.sut_description()
        sut = (
            {"publisher": description.publisher, "software": description.software, "version": description.version}
            if description
            else {"publisher": "unknown", "software": "unknown", "version": "unknown"}
        )
        sut["adapter"] = harness.sut_spec
        self.journal.start(
            RunInfo(
                run_id=self.run_dir.name,
                harness_version=harness.host_facts()["harness_version"],
                sut=sut,
                dsr=harness.dsr,
                profiles=list(harness.selected_profiles()),
                catalog_version=harness.catalog.version,
                started=harness.started,
                host=harness.host_facts(),
                command=list(harness.config.invocation_params.args),
                rules=harness.rule_versions(),
            )
        )
        self._counts: Counter[str] = Counter()

    def write(self, verdict: Verdict, evidence: ScenarioEvidence | None) -> Verdict:
        exchanges = evidence.exchanges() if evidence else []
        files = evidence.files if evidence else []
        written = self.journal.record(verdict, exchanges, files)
        self._counts[verdict.status.value] += 1
        return written

    def write_uncovered(self, harness: HarnessSession) -> None:
        """Journal every compliance scenario no collected scenario performs: manual, or not-applicable.

        Coverage is per ANS scenario, not per requirement: a requirement with one
        automated scenario out of two still has a ``manual`` verdict for the other,
        so its status cannot read ``passed`` while a proof is missing.
        """
        for requirement in harness.catalog:
            if not requirement.scenarios and requirement.ref in harness.covered:
                continue
            scenarios: list[ComplianceScenario | None] = [
                s for s in requirement.scenarios if s.ref not in harness.covered_scenarios
            ]
            if requirement.scenarios and not scenarios:
                continue
            applies = harness.applies(requirement)
            now = datetime.now(UTC)
            for scenario in scenarios or [None]:
                proofs = [p.ref for p in (scenario.proofs if scenario else requirement.proofs) if p.ref]
                if not applies:
                    status = VerdictStatus.NOT_APPLICABLE
                    reason = f"profile '{requirement.profile}' not selected for this run"
                else:
                    status = VerdictStatus.MANUAL
                    reason = (
                        "no automated scenario in this run; the vendor supplies the proofs ANS expects: "
                        + ", ".join(proofs)
                        if proofs
                        else "no automated scenario in this run and no proof defined by ANS yet"
                    )
                self.write(
                    Verdict(
                        nodeid="",
                        scenario_ref=scenario.ref if scenario else "",
                        requirement_refs=[requirement.ref],
                        title="expected proofs to supply" if status is VerdictStatus.MANUAL else "not applicable",
                        status=status,
                        reason=reason,
                        started=now,
                        ended=now,
                    ),
                    None,
                )

    def finish(self, harness: HarnessSession) -> Path:
        self.journal.finish(datetime.now(UTC))
        key = harness.config.getoption("segur_signing_key")
        cert = harness.config.getoption("segur_signing_cert")
        signer = (Path(key), Path(cert)) if key and cert else None
        return finalize_run(self.run_dir, harness.catalog, signer=signer)

    def counts(self) -> dict[str, int]:
        return dict(self._counts)
