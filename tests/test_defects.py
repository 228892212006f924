"""The defect suite: every INSi scenario passes on the conforming reference system and fails on its defect.

A scenario that cannot fail proves nothing. For each switchable defect of the
reference system we run the scenarios meant to catch it, as a vendor would run
them (``pytest scenarios/ --sut=reference:<defect>`` in a separate process), and
check the verdict is ``failed`` *for the right reason*: the finding's rule must
be the one that defect breaks, not a broken precondition.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.evidence.journal import read_verdicts
from harness.reference.defects import DEFECTS
from harness.verdicts import Verdict, VerdictStatus
from tests.conftest import REPO

SCENARIOS = REPO / "scenarios" / "test_insi.py"
TYPED_MATRICULE = "test_search_by_matricule_needs_fifteen_characters_and_a_right_key"

RETRIEVAL = "test_retrieval_is_traced_with_what_insi_returned"
TRAIT_CHANGE = "test_changing_a_trait_invalidates_the_ins_only_when_it_is_strict"

CATCHES: dict[str, list[tuple[str, str]]] = {
    "no-insi-trace": [
        ("test_verification_calls_and_results_are_traced", "ins.trace.verification-call"),
        (f"{RETRIEVAL}[carte-vitale-found]", "ins.trace.retrieval-call"),
        (f"{RETRIEVAL}[carte-vitale-not-found]", "ins.trace.retrieval-call"),
        (f"{RETRIEVAL}[traits-found]", "ins.trace.retrieval-call"),
        (f"{RETRIEVAL}[traits-not-found]", "ins.trace.retrieval-call"),
    ],
    "incomplete-insi-trace": [
        (f"{RETRIEVAL}[carte-vitale-found]", "ins.trace.returned-ins"),
        (f"{RETRIEVAL}[traits-found]", "ins.trace.returned-history"),
    ],
    "keep-status-on-ko": [
        ("test_ko_verification_downgrades_and_removes_the_ins[RECUP]", "ins.ko.ins-removed"),
        ("test_ko_verification_downgrades_and_removes_the_ins[QUAL]", "ins.ko.status-downgraded"),
    ],
    "no-worklist-on-ko": [
        ("test_ko_verification_downgrades_and_removes_the_ins[QUAL]", "ins.ko.worklist"),
        ("test_data_with_a_ko_ins_goes_to_a_work_list", "ins.feed.ko.worklist"),
    ],
    "update-on-ko-feed": [("test_a_ko_feed_does_not_update_a_known_identity", "ins.feed.ko.traits-unchanged")],
    "keep-ins-on-ko-feed": [("test_a_ko_feed_for_an_unknown_patient_creates_it_without_ins", "ins.feed.ko.no-ins")],
    "no-auto-verify": [
        ("test_an_ins_received_from_another_domain_is_verified_automatically", "ins.feed.auto-verification")
    ],
    "trust-received-status": [
        ("test_a_qualified_identity_received_is_not_qualified_locally", "ins.feed.no-transitivity")
    ],
    "keep-ins-on-trait-change": [
        (f"{TRAIT_CHANGE}[RECUP-birth_name]", "ins.trait-change.ins-removed"),
        (f"{TRAIT_CHANGE}[QUAL-birth_name]", "ins.trait-change.ins-removed"),
        (f"{TRAIT_CHANGE}[QUAL-birth_date]", "ins.trait-change.status"),
    ],
    "drop-ins-on-any-trait-change": [
        (f"{TRAIT_CHANGE}[RECUP-used_name]", "ins.trait-change.ins-kept"),
        (f"{TRAIT_CHANGE}[QUAL-used_name]", "ins.trait-change.status-kept"),
    ],
    "cps-assertion-in-centre": [
        ("test_centre_de_sante_calls_insi_with_the_organisation_certificate", "insi.auth.organisation-certificate")
    ],
    "ignores-cr-02": [("test_status_recup_only_when_insi_returns_one_identity[homonyms]", "ins.recup.cr02")],
    "qualify-without-document": [
        ("test_status_recup_only_when_insi_returns_one_identity[single]", "ins.recup.assigned")
    ],
    "bad-lps-context": [
        ("test_insi_requests_follow_the_integration_guide[traits]", "insi.header.contexte-lps.idam"),
        ("test_insi_requests_follow_the_integration_guide[carte-vitale]", "insi.header.contexte-lps.idam"),
    ],
    "skips-nir-key-check": [
        (f"{TYPED_MATRICULE}[wrong-key]", "ins.typed-matricule.key-checked"),
        (f"{TYPED_MATRICULE}[without-key]", "ins.typed-matricule.key-checked"),
    ],
    "matricule-field-13-chars": [(f"{TYPED_MATRICULE}[complete]", "ins.typed-matricule.found")],
}
"""Defect → the scenarios (test id) that must fail on it, and the finding rule that must say why."""


def run_insi_scenarios(run_dir: Path, sut: str, tests: list[str] | None = None) -> dict[str, Verdict]:
    """Run the INSi scenarios in a fresh process; the verdicts by test id (``name[param]``)."""
    targets = [f"{SCENARIOS}::{t}" for t in tests] if tests else [str(SCENARIOS)]
    command = [sys.executable, "-m", "pytest", *targets, "-p", "no:cacheprovider", "-q", f"--sut={sut}"]
    command += [f"--run-dir={run_dir}", f"--rootdir={REPO}", "-o", "testpaths=scenarios"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert (run_dir / "journal.jsonl").exists(), done.stdout[-3000:] + done.stderr[-3000:]
    verdicts = {v.nodeid.split("::")[-1]: v for v in read_verdicts(run_dir) if v.nodeid}
    assert verdicts, done.stdout[-3000:]
    return verdicts


def _explain(verdict: Verdict) -> str:
    rules = ", ".join(f"{f.rule}: {f.message}" for f in verdict.findings)
    return f"{verdict.status.value} — {verdict.reason} [{rules}]"


def test_the_conforming_reference_system_passes_every_insi_scenario(tmp_path: Path) -> None:
    verdicts = run_insi_scenarios(tmp_path / "run", "reference")
    assert set(verdicts) >= {test for catches in CATCHES.values() for test, _ in catches}
    not_passed = {name: _explain(v) for name, v in verdicts.items() if v.status is not VerdictStatus.PASSED}
    assert not not_passed


@pytest.mark.parametrize("defect", sorted(CATCHES))
def test_each_defect_is_caught_by_its_scenarios(defect: str, tmp_path: Path) -> None:
    expected = CATCHES[defect]
    verdicts = run_insi_scenarios(tmp_path / "run", f"reference:{defect}", sorted({t for t, _ in expected}))
    for test, rule in expected:
        verdict = verdicts[test]
        assert verdict.status is VerdictStatus.FAILED, f"{test} on {defect}: {_explain(verdict)}"
        assert rule in {f.rule for f in verdict.findings}, f"{test} on {defect}: {_explain(verdict)}"


def test_every_defect_is_in_the_suite() -> None:
    assert set(CATCHES) == set(DEFECTS)


def test_every_insi_scenario_case_is_proven_to_fail_on_some_defect() -> None:
    """Not just every scenario function: every collected case (each parameter) must be caught."""
    command = [sys.executable, "-m", "pytest", str(SCENARIOS), "--collect-only", "-q", "-p", "no:cacheprovider"]
    command += [f"--rootdir={REPO}", "-o", "testpaths=scenarios"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    collected = {line.split("::")[-1] for line in done.stdout.splitlines() if "::" in line}
    assert len(collected) > 20, done.stdout[-2000:] + done.stderr[-2000:]
    caught = {test for catches in CATCHES.values() for test, _ in catches}
    assert collected - caught == set()
