"""The pytest plugin that turns pytest runs into ANS conformance runs.

Registered through the ``pytest11`` entry point. It adds the ``--sut``,
``--dsr``, ``--profile``, ``--run-dir`` options, the ``requirement`` marker that
ties a scenario to ANS ids, the fixtures scenarios use (``sut``, ``insi``,
``evidence``, ``pki``, ``insi_identities``), and turns each scenario's outcome into a
:class:`~harness.verdicts.Verdict` written to the run journal:

- a scenario whose requirements' profiles are not selected is ``not-applicable``
  (recorded, never silently skipped);
- :class:`~harness.verdicts.NonConformity` or a failed ``assert`` is ``failed``;
  :class:`~harness.sut.SutError` or any other exception is ``error``;
- ``NotSupported`` / ``ManualProofNeeded`` give ``not-supported`` / ``manual``;
- at the end, every catalogue requirement no scenario covers is journaled as
  ``manual`` with the proofs ANS expects, and the run is finalised (matrix,
  ``index.html``, signed manifest).

Allure labels follow the catalogue: section as epic, requirement as feature,
compliance scenario as story. JUnit works through ``--junitxml`` as usual; each
test case carries ``segur_verdict`` and ``segur_requirements`` properties.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from harness.catalog import CatalogError
from harness.plugin.evidence import ScenarioEvidence
from harness.plugin.fixtures import (
    annuaire,
    annuaire_simulator,
    cda_validator,
    dmp,
    dmp_simulator,
    evidence,
    harness_sut,
    insi,
    insi_identities,
    insi_simulator,
    mssante,
    mssante_simulator,
    pki,
    psc,
    psc_simulator,
    sut,
)
from harness.plugin.session import SESSION_KEY, HarnessSession
from harness.sut.base import SutError
from harness.verdicts import (
    NotApplicable,
    ScenarioOutcome,
    Verdict,
    VerdictStatus,
)

__all__ = [
    "annuaire",
    "annuaire_simulator",
    "cda_validator",
    "dmp",
    "dmp_simulator",
    "evidence",
    "harness_sut",
    "insi",
    "insi_identities",
    "insi_simulator",
    "mssante",
    "mssante_simulator",
    "pki",
    "psc",
    "psc_simulator",
    "sut",
]


@dataclass(frozen=True)
class ScenarioInfo:
    """What the ``requirement`` marker declares for one collected scenario.

    ``scenario_refs`` are the ANS compliance scenarios the test performs, the one
    owning the evidence folder first.
    """

    requirement_refs: tuple[str, ...]
    scenario_refs: tuple[str, ...]
    title: str
    manual_proofs: tuple[str, ...] = ()
    """ANS proof ids of those scenarios the test does not produce (they stay with the vendor)."""

    @property
    def scenario_ref(self) -> str:
        return self.scenario_refs[0]


SCENARIO_KEY = pytest.StashKey[ScenarioInfo]()
EVIDENCE_KEY = pytest.StashKey[ScenarioEvidence]()
OUTCOME_KEY = pytest.StashKey[tuple[VerdictStatus, str, list[Any]]]()
STARTED_KEY = pytest.StashKey[datetime]()


# -- initialisation -------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("segur", "Ségur conformance harness")
    group.addoption(
        "--sut",
        dest="segur_sut",
        default="reference",
        help="system under test: 'reference[:defect,...]', an http(s) control-API URL, "
        "or 'python:module:Class' (default: reference)",
    )
    group.addoption("--dsr", dest="segur_dsr", default="LGC", help="DSR whose catalogue applies (default: LGC)")
    group.addoption(
        "--profile",
        dest="segur_profiles",
        action="append",
        default=[],
        help="ANS profile claimed by the SUT (repeatable); default: the profiles the SUT declares",
    )
    group.addoption("--run-dir", dest="segur_run_dir", default=None, help="evidence folder (default: reports/<run-id>)")
    group.addoption(
        "--sut-timeout", dest="segur_sut_timeout", type=float, default=10.0, help="per-call SUT timeout in seconds"
    )
    group.addoption("--catalog-dir", dest="segur_catalog_dir", default=None, help="catalogue data folder")
    group.addoption(
        "--cda-rules",
        dest="segur_cda_rules",
        default=None,
        help="TestContenuCDA folder judging produced documents (default: $SEGUR_HARNESS_CDA_RULES; "
        "without one, only the harness's own document rules apply)",
    )
    group.addoption(
        "--id-document-activity",
        dest="segur_id_document_activity",
        default="consultation",
        help="the patient activity that restarts the 5-year retention of identity-document copies "
        "(consultation, document, identity; default: consultation)",
    )
    group.addoption(
        "--id-document-statement",
        dest="segur_id_document_statement",
        default=None,
        help="TOML file with the vendor's statements for the INS/va1.42 documentation (algorithm, key size, "
        "key management, deletion job), merged into the documentation template the run attaches",
    )
    group.addoption(
        "--portability-layout",
        dest="segur_portability_layout",
        default=None,
        help="TOML file renaming the non-XDM parts of the portability archive (table [portability]: "
        "transverse_folder, documentation_folder, agenda, traces, dictionary, integrity; "
        "default: docs/portability-archive.md)",
    )
    group.addoption(
        "--portability-statement",
        dest="segur_portability_statement",
        default=None,
        help="TOML file with the vendor's statements for the PORT/va1.01 documentation (table [portability]: "
        "launch, scope_and_depth, delivery), merged into the documentation template the run attaches",
    )
    group.addoption(
        "--portability-timeout",
        dest="segur_portability_timeout",
        type=float,
        default=120.0,
        help="seconds the SUT has to produce or import a portability archive (default: 120)",
    )
    group.addoption("--signing-key", dest="segur_signing_key", default=None, help="PEM key signing the manifest")
    group.addoption("--signing-cert", dest="segur_signing_cert", default=None, help="PEM certificate of that key")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requirement(*refs, scenario=None, title=None): ANS requirement ids this conformance scenario proves; "
        "scenario: the ANS compliance scenario id it performs, or a tuple of them (default: the first "
        "requirement's first scenario); manual_proofs: proof ids of those scenarios it does not produce",
    )
    config.stash[SESSION_KEY] = HarnessSession.from_config(config)
    rules = config.getoption("segur_cda_rules", None)
    if rules:
        from harness.validators.cda import RulesError, RuleSet

        try:
            RuleSet.open(rules)
        except RulesError as exc:
            raise pytest.UsageError(f"--cda-rules: {exc}") from None


# -- collection -----------------------------------------------------------------------
def pytest_collection_finish(session: pytest.Session) -> None:
    """Note what the scenarios left after selection (``-k``, ``--deselect``) will prove."""
    harness = session.config.stash[SESSION_KEY]
    for item in session.items:
        info = item.stash.get(SCENARIO_KEY, None)
        if info is not None:
            harness.covered.update(info.requirement_refs)
            harness.covered_scenarios.update(info.scenario_refs)


def marker_scenarios(marker: pytest.Mark) -> tuple[str, ...]:
    """The compliance-scenario ids a ``requirement`` marker names explicitly (maybe none)."""
    value = marker.kwargs.get("scenario")
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    marked = [i for i in items if i.get_closest_marker("requirement") is not None]
    if not marked:
        return
    harness = config.stash[SESSION_KEY]
    try:
        catalog = harness.catalog
    except CatalogError as exc:
        raise pytest.UsageError(str(exc)) from None
    harness.check_profiles()
    problems: list[str] = []
    for item in marked:
        marker = item.get_closest_marker("requirement")
        assert marker is not None
        refs = tuple(str(r) for r in marker.args)
        if not refs:
            problems.append(f"{item.nodeid}: the requirement marker names no requirement")
            continue
        unknown = [r for r in refs if r not in catalog]
        if unknown:
            problems.append(f"{item.nodeid}: unknown requirement id(s) {unknown} for DSR {harness.dsr}")
            continue
        first = catalog.get(refs[0])
        scenario_refs = marker_scenarios(marker)
        if not scenario_refs:
            # A requirement ANS gives no compliance scenario is proven under its own id.
            scenario_refs = (first.scenarios[0].ref if first.scenarios else first.ref,)
        known = {s.ref for ref in refs for s in catalog.get(ref).scenarios} | {
            ref for ref in refs if not catalog.get(ref).scenarios
        }
        strangers = [s for s in scenario_refs if s not in known]
        if strangers:
            problems.append(f"{item.nodeid}: scenario id(s) {strangers} belong to none of {list(refs)}")
            continue
        proofs = {p.ref for ref in refs for s in catalog.get(ref).scenarios if s.ref in scenario_refs for p in s.proofs}
        manual_proofs = tuple(str(p) for p in marker.kwargs.get("manual_proofs", ()))
        if any(p not in proofs for p in manual_proofs):
            problems.append(f"{item.nodeid}: manual_proofs {list(manual_proofs)} are not all proofs of {scenario_refs}")
            continue
        title = str(marker.kwargs.get("title") or _first_doc_line(item) or item.name)
        item.stash[SCENARIO_KEY] = ScenarioInfo(refs, scenario_refs, title, manual_proofs)
        item.add_marker(pytest.mark.allure_label(first.area, label_type="epic"))
        for ref in refs:
            item.add_marker(pytest.mark.allure_label(ref, label_type="feature"))
        for scenario_ref in scenario_refs:
            item.add_marker(pytest.mark.allure_label(scenario_ref, label_type="story"))
        item.user_properties.append(("segur_requirements", " ".join(refs)))
        item.user_properties.append(("segur_scenario", " ".join(scenario_refs)))
    if problems:
        raise pytest.UsageError("scenario markers do not match the catalogue:\n" + "\n".join(problems))


def _first_doc_line(item: pytest.Item) -> str:
    doc = getattr(getattr(item, "function", None), "__doc__", None) or ""
    return doc.strip().splitlines()[0].strip() if doc.strip() else ""


# -- running ---------------------------------------------------------------------------
@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    info = item.stash.get(SCENARIO_KEY, None)
    if info is None:
        return
    item.stash[STARTED_KEY] = datetime.now(UTC)
    harness = item.config.stash[SESSION_KEY]
    not_selected = [
        f"{ref} ({harness.catalog.get(ref).profile})"
        for ref in info.requirement_refs
        if not harness.applies(harness.catalog.get(ref))
    ]
    if not_selected:
        raise NotApplicable(
            "profile not selected for this run: "
            + ", ".join(not_selected)
            + f"; selected: {', '.join(harness.selected_profiles())}"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report: pytest.TestReport = yield
    info = item.stash.get(SCENARIO_KEY, None)
    if info is None:
        return report
    status, reason, findings = _classify(call, report)
    if status is not None and OUTCOME_KEY not in item.stash:
        item.stash[OUTCOME_KEY] = (status, reason, findings)
        _reshape(report, call, status, reason)
    if report.when == "call" and status is None and OUTCOME_KEY not in item.stash:
        ev = item.stash.get(EVIDENCE_KEY, None)
        if ev is not None and ev.errors:
            item.stash[OUTCOME_KEY] = (VerdictStatus.FAILED, ev.errors[0].message, list(ev.errors))
            report.outcome = "failed"
            report.longrepr = f"non-conformity: {ev.errors[0].message}"
    if report.when == "teardown":
        verdict = _verdict(item, info)
        item.config.stash[SESSION_KEY].verdict_writer().write(verdict, item.stash.get(EVIDENCE_KEY, None))
        report.user_properties.append(("segur_verdict", verdict.status.value))
        for key, value in (("segur_verdict", verdict.status.value), ("segur_reason", verdict.reason)):
            item.user_properties.append((key, value))
    return report


def _classify(call: pytest.CallInfo[None], report: pytest.TestReport) -> tuple[VerdictStatus | None, str, list[Any]]:
    """The verdict a phase implies, or None when the phase passed."""
    if call.excinfo is None:
        return None, "", []
    exc = call.excinfo.value
    if isinstance(exc, ScenarioOutcome):
        return exc.status, exc.reason, list(exc.findings)
    if isinstance(exc, AssertionError):
        text = str(exc).splitlines()[0] if str(exc) else "assertion failed"
        return VerdictStatus.FAILED, text, []
    if isinstance(exc, SutError):
        return VerdictStatus.ERROR, f"SUT error: {exc}", []
    if call.excinfo.errisinstance(pytest.skip.Exception):
        return VerdictStatus.NOT_SUPPORTED, f"skipped: {exc}", []
    where = "setting up" if report.when == "setup" else ("tearing down" if report.when == "teardown" else "running")
    return VerdictStatus.ERROR, f"error while {where} the scenario: {type(exc).__name__}: {exc}", []


def _reshape(report: pytest.TestReport, call: pytest.CallInfo[None], status: VerdictStatus, reason: str) -> None:
    """Show harness outcomes the way pytest and JUnit readers expect them."""
    if status in (VerdictStatus.NOT_APPLICABLE, VerdictStatus.NOT_SUPPORTED, VerdictStatus.MANUAL):
        path, line = str(report.location[0]), (report.location[1] or 0) + 1
        report.outcome = "skipped"
        report.longrepr = (path, line, f"{status.value}: {reason}")
    elif (
        status is VerdictStatus.FAILED and call.excinfo is not None and isinstance(call.excinfo.value, ScenarioOutcome)
    ):
        lines = [f"non-conformity: {reason}"]
        lines += [
            f"  [{f.rule}] {f.message}" + (f" @ {f.location}" if f.location else "")
            for f in call.excinfo.value.findings
        ]
        report.longrepr = "\n".join(lines)


def _verdict(item: pytest.Item, info: ScenarioInfo) -> Verdict:
    status, reason, findings = item.stash.get(OUTCOME_KEY, (VerdictStatus.PASSED, "", []))
    ev = item.stash.get(EVIDENCE_KEY, None)
    all_findings = list(findings)
    if ev is not None:
        all_findings += [f for f in ev.findings if f not in all_findings]
    harness = item.config.stash[SESSION_KEY]
    proof_refs: list[str] = []
    for ref in info.requirement_refs:
        for scenario in harness.catalog.get(ref).scenarios:
            if scenario.ref in info.scenario_refs:
                proof_refs += [
                    p.ref
                    for p in scenario.proofs
                    if p.ref and not p.kind.needs_vendor and p.ref not in info.manual_proofs
                ]
    if ev is not None and ev.notes and not reason:
        reason = "; ".join(ev.notes)
    return Verdict(
        nodeid=item.nodeid,
        scenario_ref=info.scenario_ref,
        requirement_refs=list(info.requirement_refs),
        also_scenario_refs=list(info.scenario_refs[1:]),
        title=info.title,
        status=status,
        reason=reason,
        findings=all_findings,
        proof_refs=proof_refs,
        started=item.stash.get(STARTED_KEY, None),
        ended=datetime.now(UTC),
    )


# -- session end -------------------------------------------------------------------------
@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    harness = session.config.stash.get(SESSION_KEY, None)
    if harness is None:
        return
    try:
        writer = harness.existing_verdict_writer()
        if writer is not None:
            writer.write_uncovered(harness)
            writer.finish(harness)
    finally:
        harness.close()


def pytest_report_header(config: pytest.Config) -> list[str]:
    harness = config.stash.get(SESSION_KEY, None)
    if harness is None:
        return []
    return [f"segur-harness: sut={harness.sut_spec} dsr={harness.dsr} run-dir={harness.run_dir}"]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    harness = config.stash.get(SESSION_KEY, None)
    writer = harness.existing_verdict_writer() if harness is not None else None
    if writer is None:
        return
    counts = writer.counts()
    terminalreporter.section("Ségur conformance verdicts")
    terminalreporter.write_line(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no verdict")
    terminalreporter.write_line(f"evidence: {writer.run_dir}")
