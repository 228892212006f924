"""How each requirement is covered: by automated scenarios, by manual proofs, or not at all.

Coverage is read from the scenarios themselves (their ``requirement`` markers),
collected by pytest without running anything, so it can never disagree with what
``run`` executes. It is counted per ANS compliance scenario: a requirement whose
scenarios are only partly automated says so.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.catalog.model import Catalog


class Coverage(enum.StrEnum):
    AUTOMATED = "automated"
    """Conformance scenarios perform every ANS compliance scenario of the requirement."""
    PARTIAL = "partly automated"
    """Some of its ANS compliance scenarios are automated; the others need manual proofs."""
    MANUAL = "manual"
    """No scenario; the expected proofs are listed for the vendor to supply."""
    NOT_COVERED = "not covered"
    """No scenario and ANS defines no proof for it yet."""


class CoverageError(RuntimeError):
    """The scenarios could not be collected, so coverage is unknown."""


@dataclass
class AutomatedRefs:
    """The requirement and compliance-scenario ids the collected scenarios name."""

    requirements: set[str] = field(default_factory=set)
    scenarios: set[str] = field(default_factory=set)


class _MarkerCollector:
    def __init__(self) -> None:
        self.found = AutomatedRefs()

    def pytest_collection_finish(self, session: Any) -> None:
        from harness.plugin import SCENARIO_KEY

        for item in session.items:
            info = item.stash.get(SCENARIO_KEY, None)
            if info is not None:
                self.found.requirements.update(info.requirement_refs)
                self.found.scenarios.update(info.scenario_refs)


def automated_refs(scenarios_dir: Path, catalog_dir: Path | None = None) -> AutomatedRefs:
    """Ids named by the scenarios under ``scenarios_dir`` (a collect-only pytest run)."""
    import pytest

    collector = _MarkerCollector()
    args = [str(scenarios_dir), "--collect-only", "-p", "no:cacheprovider", "-p", "no:terminal"]
    args.append(f"--rootdir={scenarios_dir.parent}")
    if catalog_dir is not None:
        args.append(f"--catalog-dir={catalog_dir}")
    code = pytest.main(args, plugins=[collector])
    if code != pytest.ExitCode.OK:
        # Wrong coverage is worse than none: never report "manual" because collection broke.
        raise CoverageError(f"collecting the scenarios under {scenarios_dir} failed (pytest exit code {int(code)})")
    return collector.found


def coverage_of(catalog: Catalog, scenarios_dir: Path, catalog_dir: Path | None = None) -> dict[str, Coverage]:
    """Each requirement's coverage by the scenarios under ``scenarios_dir``."""
    automated = automated_refs(scenarios_dir, catalog_dir)
    out: dict[str, Coverage] = {}
    for req in catalog:
        done = [s for s in req.scenarios if s.ref in automated.scenarios]
        if req.ref in automated.requirements and (not req.scenarios or len(done) == len(req.scenarios)):
            out[req.ref] = Coverage.AUTOMATED
        elif done or req.ref in automated.requirements:
            out[req.ref] = Coverage.PARTIAL
        elif req.proofs:
            out[req.ref] = Coverage.MANUAL
        else:
            out[req.ref] = Coverage.NOT_COVERED
    return out
