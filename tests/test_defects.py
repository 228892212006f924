"""The defect suite: every scenario passes on the conforming reference system and fails on its defect.

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


def run_insi_scenarios(
    run_dir: Path,
    sut: str,
    tests: list[str] | None = None,
    scenarios: Path = SCENARIOS,
    extra: list[str] | None = None,
) -> dict[str, Verdict]:
    """Run the scenarios of one file in a fresh process; the verdicts by test id (``name[param]``)."""
    targets = [f"{scenarios}::{t}" for t in tests] if tests else [str(scenarios)]
    command = [sys.executable, "-m", "pytest", *targets, "-p", "no:cacheprovider", "-q", f"--sut={sut}"]
    command += [f"--run-dir={run_dir}", f"--rootdir={REPO}", "-o", "testpaths=scenarios", *(extra or [])]
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
    _assert_caught(defect, expected, verdicts)


def _assert_caught(defect: str, expected: list[tuple[str, str]], verdicts: dict[str, Verdict]) -> None:
    """Each expected scenario failed, and for the expected rule (not a broken precondition)."""
    for test, rule in expected:
        verdict = verdicts[test]
        assert verdict.status is VerdictStatus.FAILED, f"{test} on {defect}: {_explain(verdict)}"
        assert rule in {f.rule for f in verdict.findings}, f"{test} on {defect}: {_explain(verdict)}"


DOCUMENTS = REPO / "scenarios" / "test_documents.py"
ANNEX = "test_each_annex_document_is_a_cda_n1_with_its_pdf"
ANNEX_CASES = [
    f"{ANNEX}[lettre-de-liaison-11490-0]",
    f"{ANNEX}[compte-rendu-11488-4]",
    f"{ANNEX}[prescription-57833-6]",
]
INS_DATAMATRIX = "test_the_ins_is_in_the_cda_header_and_in_the_pdf_datamatrix"
PRESCRIPTION_INS = "test_a_prescription_carries_the_ins_in_the_cda_and_on_the_pdf"
CDA_RULES = REPO.parent / "shared" / "data" / "ans" / "TestContenuCDA-3-0"

DOCUMENT_CATCHES: dict[str, list[tuple[str, str]]] = {
    "cda-wrong-ins-oid": [
        (INS_DATAMATRIX, "doc.ins.header"),
        (INS_DATAMATRIX, "cda.header.ins.oid"),
        (PRESCRIPTION_INS, "doc.ins.header"),
    ],
    "cda-no-ins": [(INS_DATAMATRIX, "doc.ins.header"), (PRESCRIPTION_INS, "cda.header.ins.missing")],
    "cda-bad-nir-key": [(INS_DATAMATRIX, "cda.header.ins.key"), (PRESCRIPTION_INS, "cda.header.ins.key")],
    "pdf-not-pdfa": [("test_the_prescription_pdf_is_pdfa1", "pdf.pdfa.identification")]
    + [(case, "doc.n1.pdf") for case in ANNEX_CASES],
    "pdf-no-ins-datamatrix": [(INS_DATAMATRIX, "pdf.ins-datamatrix.missing")],
    "cda-wrong-loinc": [(case, "doc.type-code") for case in ANNEX_CASES],
    "cda-no-legal-authenticator": [(case, "cda.header.legal-authenticator") for case in ANNEX_CASES],
    "cda-wrong-template-version": [
        ("test_the_vsm_is_a_valid_cda_n3_of_the_current_volet", "doc.vsm.volet-version"),
        (ANNEX_CASES[0], "cda.header.template-id.xds-sd"),
    ],
    "import-drops-stylesheet": [
        ("test_an_imported_document_is_stored_with_the_producers_stylesheet", "cda.import.stylesheet")
    ],
    "documents-unsorted": [
        ("test_documents_can_be_sorted_by_type_code_and_by_creation_date", "cda.list.sort-type-code"),
        ("test_documents_can_be_sorted_by_type_code_and_by_creation_date", "cda.list.sort-creation-date"),
    ],
}
"""The same for the CI-SIS document scenarios, run with the ANS rules of ``../shared`` when present."""


def run_document_scenarios(run_dir: Path, sut: str, tests: list[str] | None = None) -> dict[str, Verdict]:
    extra = [f"--cda-rules={CDA_RULES}"] if CDA_RULES.is_dir() else []
    return run_insi_scenarios(run_dir, sut, tests, scenarios=DOCUMENTS, extra=extra)


def test_the_conforming_reference_system_passes_every_document_scenario(tmp_path: Path) -> None:
    verdicts = run_document_scenarios(tmp_path / "run", "reference")
    assert set(verdicts) >= {test for catches in DOCUMENT_CATCHES.values() for test, _ in catches}
    not_passed = {name: _explain(v) for name, v in verdicts.items() if v.status is not VerdictStatus.PASSED}
    assert not not_passed


@pytest.mark.parametrize("defect", sorted(DOCUMENT_CATCHES))
def test_each_document_defect_is_caught_by_its_scenarios(defect: str, tmp_path: Path) -> None:
    expected = DOCUMENT_CATCHES[defect]
    verdicts = run_document_scenarios(tmp_path / "run", f"reference:{defect}", sorted({t for t, _ in expected}))
    _assert_caught(defect, expected, verdicts)


DMP = REPO / "scenarios" / "test_dmp.py"
NO_AUTHORISATION = "test_feeding_and_deleting_need_no_access_authorisation"
VISIBILITY_CASES = [
    "test_masking_and_visibility_travel_in_the_metadata[masked-to-professionals]",
    "test_masking_and_visibility_travel_in_the_metadata[invisible-to-patient]",
    "test_masking_and_visibility_travel_in_the_metadata[invisible-to-legal-reps]",
]
EARLIER = "test_an_earlier_document_is_sent_only_for_a_qualified_identity"
REPLACE = "test_a_fed_document_can_be_replaced_then_deleted"
MISTAKE = "test_a_document_sent_by_mistake_can_be_deleted_from_the_dmp"

DMP_CATCHES: dict[str, list[tuple[str, str]]] = {
    "dmp-wrong-format-code": [
        (NO_AUTHORISATION, "xds.format-code.n1"),
        (f"{EARLIER}[qualified]", "xds.format-code.n1"),
    ],
    "dmp-no-masking-code": [(case, "dmp.visibility.codes") for case in VISIBILITY_CASES],
    "dmp-feeds-despite-opposition": [("test_a_patient_opposition_blocks_the_feed", "dmp.opposition.fed")],
    "dmp-requests-authorisation": [(NO_AUTHORISATION, "dmp.td03.requested")],
    "dmp-historical-sending-date": [
        ("test_a_historical_document_is_dated_with_the_act_date", "dmp.historical.service-start")
    ],
    "dmp-patient-id-wrong-oid": [(NO_AUTHORISATION, "xds.patient-id.oid")],
    "dmp-unsigned-vihf": [(NO_AUTHORISATION, "dmp.vihf.signature")],
    "dmp-expired-vihf": [(NO_AUTHORISATION, "dmp.vihf.expired")],
    "dmp-feeds-unqualified": [(f"{EARLIER}[provisional]", "dmp.unqualified.fed")],
    "dmp-delete-local-only": [(MISTAKE, "dmp.delete.none"), (REPLACE, "dmp.delete.none")],
    "dmp-replace-without-rplc": [(REPLACE, "dmp.replace.rplc")],
    "dmp-no-auto-feed": [(NO_AUTHORISATION, "dmp.feed.none")],
}
"""The same for the DMP scenarios."""


def test_the_conforming_reference_system_passes_every_dmp_scenario(tmp_path: Path) -> None:
    verdicts = run_insi_scenarios(tmp_path / "run", "reference", scenarios=DMP)
    assert set(verdicts) >= {test for catches in DMP_CATCHES.values() for test, _ in catches}
    not_passed = {name: _explain(v) for name, v in verdicts.items() if v.status is not VerdictStatus.PASSED}
    assert not not_passed


@pytest.mark.parametrize("defect", sorted(DMP_CATCHES))
def test_each_dmp_defect_is_caught_by_its_scenarios(defect: str, tmp_path: Path) -> None:
    expected = DMP_CATCHES[defect]
    tests = sorted({t for t, _ in expected})
    _assert_caught(defect, expected, run_insi_scenarios(tmp_path / "run", f"reference:{defect}", tests, scenarios=DMP))


def test_every_defect_is_in_the_suite() -> None:
    suites = [set(CATCHES), set(DOCUMENT_CATCHES), set(DMP_CATCHES)]
    assert sum(len(s) for s in suites) == len(set().union(*suites))
    assert set().union(*suites) == set(DEFECTS)


@pytest.mark.parametrize(
    ("scenarios", "catches", "at_least"),
    [(SCENARIOS, CATCHES, 20), (DOCUMENTS, DOCUMENT_CATCHES, 9), (DMP, DMP_CATCHES, 10)],
)
def test_every_scenario_case_is_proven_to_fail_on_some_defect(
    scenarios: Path, catches: dict[str, list[tuple[str, str]]], at_least: int
) -> None:
    """Not just every scenario function: every collected case (each parameter) must be caught."""
    command = [sys.executable, "-m", "pytest", str(scenarios), "--collect-only", "-q", "-p", "no:cacheprovider"]
    command += [f"--rootdir={REPO}", "-o", "testpaths=scenarios"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    collected = {line.split("::")[-1] for line in done.stdout.splitlines() if "::" in line}
    assert len(collected) >= at_least, done.stdout[-2000:] + done.stderr[-2000:]
    caught = {test for entries in catches.values() for test, _ in entries}
    assert collected - caught == set()
