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
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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


MSSANTE = REPO / "scenarios" / "test_mssante.py"
OLD_TLS = "test_an_operator_offering_only_tls_before_1_2_is_refused"
IGC = "test_igc_sante_operator_certificates_are_accepted_and_only_those"
PATIENT = "test_a_patient_is_written_to_only_with_a_qualified_ins"
EVERY_PROTOCOL = "test_every_protocol_to_the_operator_runs_over_tls"
ONE_PATIENT = "test_a_message_carries_one_patient_as_xdm_and_pdf"

MSS_CATCHES: dict[str, list[tuple[str, str]]] = {
    "mss-no-nil": [("test_x_mss_nil_is_on_every_message", "mss.x-mss-nil")],
    "mss-wrong-ins": [
        ("test_x_mss_ins_says_whether_the_xdm_carries_a_qualified_ins", "mss.x-mss-ins.consistency"),
        (f"{PATIENT}[QUAL]", "mss.x-mss-ins.consistency"),
    ],
    "mss-no-codecda": [("test_x_mss_codecda_gives_the_code_of_each_cda", "mss.x-mss-codecda")],
    "mss-subject-no-prefix": [("test_the_subject_follows_the_xdm_convention", "mss.subject")],
    "mss-xdm-no-metadata": [(ONE_PATIENT, "xdm.layout.metadata")],
    "mss-two-patients": [(ONE_PATIENT, "mss.one-patient")],
    "mss-accepts-tls10": [
        (f"{OLD_TLS}[tls1.0]", "mss.tls.old-version-accepted"),
        (f"{OLD_TLS}[tls1.1]", "mss.tls.old-version-accepted"),
        ("test_the_client_negotiates_tls_1_2_or_later_only", "mss.tls.old-version-accepted"),
    ],
    "mss-weak-ciphers": [("test_only_the_allowed_cipher_suites_are_offered", "mss.tls.cipher-offered")],
    "mss-accepts-expired-cert": [("test_an_expired_operator_certificate_is_refused", "mss.tls.expired-accepted")],
    "mss-accepts-any-cert": [
        (f"{IGC}[non-igc]", "mss.tls.non-igc-accepted"),
        ("test_an_expired_operator_certificate_is_refused", "mss.tls.expired-accepted"),
    ],
    "mss-system-ca-only": [(f"{IGC}[igc-sante]", "mss.tls.igc-refused")],
    "mss-no-message-id": [("test_a_new_message_has_a_message_id", "mss.message-id")],
    "mss-reply-no-in-reply-to": [("test_a_reply_is_threaded", "mss.in-reply-to")],
    "mss-no-return-receipt": [("test_a_delivery_receipt_can_be_asked_for", "mss.return-receipt-to")],
    "mss-bare-from": [("test_the_from_label_names_the_professional", "mss.from.label")],
    "mss-no-fin": [("test_a_patient_message_can_forbid_replies", "mss.x-mss-mes")],
    "mss-unqualified-patient": [(f"{PATIENT}[RECUP]", "mss.patient.unqualified")],
    "mss-smtp-plaintext": [
        ("test_messages_are_submitted_over_smtp_with_starttls", "mss.smtp.starttls"),
        (EVERY_PROTOCOL, "mss.tls.smtp-plaintext"),
    ],
    "mss-imap-plaintext": [
        ("test_the_bal_is_read_over_imap_with_starttls", "mss.imap.starttls"),
        (EVERY_PROTOCOL, "mss.tls.imap-plaintext"),
    ],
    "mss-integrate-by-traits": [
        ("test_a_received_xdm_is_integrated_for_the_patient_of_its_metadata", "mss.receive.patient")
    ],
    "mss-dst-internet-entry": [("test_dst_submissions_use_the_igc_sante_entry_point", "mss.dst.entry-point")],
    "mss-ignores-receipts": [("test_a_delivery_receipt_is_read_as_a_receipt", "mss.receipt.not-recognised")],
    "mss-no-mdn": [
        ("test_a_read_receipt_is_sent_back_when_asked[known-patient]", "mss.mdn.none"),
        ("test_a_read_receipt_is_sent_back_when_asked[unknown-patient]", "mss.mdn.none"),
    ],
}
"""The same for the MSSanté scenarios."""

ANNUAIRE = REPO / "scenarios" / "test_annuaire.py"
LOOKUP = "test_a_correspondent_is_found_with_his_mssante_address_and_written_to"
ANN_CATCHES: dict[str, list[tuple[str, str]]] = {
    "ann-wrong-mailbox": [(LOOKUP, "ann.mailbox.mss")],
    "ann-no-api-key": [(LOOKUP, "ann.lookup.api-key")],
}
"""The same for the Annuaire Santé scenarios."""


@pytest.mark.parametrize(
    ("scenarios", "catches"), [(MSSANTE, MSS_CATCHES), (ANNUAIRE, ANN_CATCHES)], ids=["mss", "ann"]
)
def test_the_conforming_reference_system_passes_every_mssante_and_annuaire_scenario(
    scenarios: Path, catches: dict[str, list[tuple[str, str]]], tmp_path: Path
) -> None:
    verdicts = run_insi_scenarios(tmp_path / "run", "reference", scenarios=scenarios)
    assert set(verdicts) >= {test for entries in catches.values() for test, _ in entries}
    not_passed = {name: _explain(v) for name, v in verdicts.items() if v.status is not VerdictStatus.PASSED}
    assert not not_passed


PSC = REPO / "scenarios" / "test_psc.py"
WEB = "test_web_login_and_logout"
BAD_TOKEN = "test_a_token_that_fails_validation_is_refused"
BROKEN = "test_a_broken_provider_answer_leaves_nobody_logged_in"
PSC_CATCHES: dict[str, list[tuple[str, str]]] = {
    "psc-no-nonce": [(WEB, "psc.nonce")],
    "psc-no-pkce": [(WEB, "psc.pkce")],
    "psc-no-acr": [
        ("test_the_authorization_request_asks_for_eidas1", "psc.acr-values"),
        ("test_ciba_login", "psc.acr-values"),
    ],
    "psc-ignores-state": [("test_the_state_is_checked_on_return", "psc.state.ignored")],
    "psc-accepts-bad-signature": [
        (f"{BAD_TOKEN}[bad-signature]", "psc.token.accepted"),
        (f"{BAD_TOKEN}[alg-none]", "psc.token.accepted"),
        (f"{BROKEN}[malformed-jwks]", "psc.fault.accepted"),
        (f"{BROKEN}[unknown-kid]", "psc.fault.accepted"),
    ],
    "psc-userinfo-optional": [
        (f"{BROKEN}[non-json-userinfo]", "psc.fault.accepted"),
        (f"{BROKEN}[huge-userinfo]", "psc.fault.accepted"),
    ],
    "psc-accepts-expired": [(f"{BAD_TOKEN}[expired]", "psc.token.accepted")],
    "psc-skips-claims": [
        (f"{BAD_TOKEN}[{kind}]", "psc.token.accepted")
        for kind in ("wrong-issuer", "wrong-audience", "nonce-mismatch", "low-acr")
    ],
    "psc-ignores-userinfo-sub": [(f"{BAD_TOKEN}[userinfo-sub-mismatch]", "psc.token.accepted")],
    "psc-no-end-session": [(WEB, "psc.logout.none")],
    "psc-no-linking": [("test_accounts_are_linked_on_the_subject_name_id", "psc.linking.account")],
    "psc-not-used-for-apis": [
        ("test_the_psc_identity_is_used_for_insi_and_dmp_calls", "psc.insi.bearer"),
        ("test_the_psc_identity_is_used_for_insi_and_dmp_calls", "psc.dmp.bearer"),
    ],
}
"""The same for the Pro Santé Connect scenarios."""


def test_the_conforming_reference_system_passes_every_psc_scenario(tmp_path: Path) -> None:
    verdicts = run_insi_scenarios(tmp_path / "run", "reference", scenarios=PSC)
    assert set(verdicts) >= {test for entries in PSC_CATCHES.values() for test, _ in entries}
    not_passed = {name: _explain(v) for name, v in verdicts.items() if v.status is not VerdictStatus.PASSED}
    assert not not_passed


ID_DOCUMENTS = REPO / "scenarios" / "test_id_documents.py"
RETENTION = "test_copies_are_deleted_five_years_after_the_last_activity"
ID_CATCHES: dict[str, list[tuple[str, str]]] = {
    "id-doc-plaintext": [("test_copies_are_stored_encrypted", "storage.plaintext")],
    "id-doc-fixed-nonce": [("test_copies_are_stored_encrypted", "storage.same-ciphertext")],
    "id-doc-delete-after-creation": [(f"{RETENTION}[activity-restarts]", "storage.retention.deleted-early")],
    "id-doc-never-delete": [(f"{RETENTION}[boundary]", "storage.retention.kept")],
    "id-doc-delete-index-only": [(f"{RETENTION}[boundary]", "storage.retention.bytes-left")],
}
"""The same for the copies of identity documents."""


def test_the_conforming_reference_system_passes_every_id_document_scenario(tmp_path: Path) -> None:
    verdicts = run_insi_scenarios(tmp_path / "run", "reference", scenarios=ID_DOCUMENTS)
    assert set(verdicts) >= {test for entries in ID_CATCHES.values() for test, _ in entries}
    not_passed = {name: _explain(v) for name, v in verdicts.items() if v.status is not VerdictStatus.PASSED}
    assert not not_passed


PORTABILITY = REPO / "scenarios" / "test_portability.py"
EXPORT = "test_the_export_holds_the_data_within_the_depth"
ROUND_TRIP = "test_the_export_can_be_imported_into_another_system"
EXPORTS = [f"{EXPORT}[{scope}]" for scope in ("massif", "cible", "unitaire")]
PORT_CATCHES: dict[str, list[tuple[str, str]]] = {
    "port-drops-old-documents": [(case, "portability.document.missing") for case in EXPORTS]
    + [(ROUND_TRIP, "portability.round-trip.document")],
    "port-omits-ins": [(case, "portability.identity.ins") for case in EXPORTS],
    "port-omits-pdf": [(case, "portability.pdf.missing") for case in EXPORTS],
    "port-wrong-hashes": [(case, "portability.integrity.hash") for case in EXPORTS],
    "port-invalid-cda": [(case, "cda.header.confidentiality-code") for case in EXPORTS],
}
"""The same for the portability export and its round trip."""


def test_the_conforming_reference_system_passes_every_portability_scenario(tmp_path: Path) -> None:
    verdicts = run_insi_scenarios(tmp_path / "run", "reference", scenarios=PORTABILITY, extra=_cda_rules())
    assert set(verdicts) >= {test for entries in PORT_CATCHES.values() for test, _ in entries}
    not_passed = {name: _explain(v) for name, v in verdicts.items() if v.status is not VerdictStatus.PASSED}
    assert not not_passed


def _cda_rules() -> list[str]:
    return [f"--cda-rules={CDA_RULES}"] if CDA_RULES.is_dir() else []


FAMILIES: dict[str, tuple[Path, dict[str, list[tuple[str, str]]]]] = {
    "insi": (SCENARIOS, CATCHES),
    "documents": (DOCUMENTS, DOCUMENT_CATCHES),
    "dmp": (DMP, DMP_CATCHES),
    "mssante": (MSSANTE, MSS_CATCHES),
    "annuaire": (ANNUAIRE, ANN_CATCHES),
    "psc": (PSC, PSC_CATCHES),
    "id-documents": (ID_DOCUMENTS, ID_CATCHES),
    "portability": (PORTABILITY, PORT_CATCHES),
}
"""Each scenario file and the defects its cases must catch."""
DEFECT_TEST = "test_each_defect_is_caught_by_its_scenarios"
WORKERS = 2
"""Defect runs at a time: each is a pytest process and a reference-system process, mostly waiting on sockets."""


def _defect_run(family: str, defect: str, run_dir: Path) -> dict[str, Verdict]:
    scenarios, catches = FAMILIES[family]
    extra = _cda_rules() if scenarios in (DOCUMENTS, PORTABILITY) else []
    tests = sorted({test for test, _ in catches[defect]})
    return run_insi_scenarios(run_dir, f"reference:{defect}", tests, scenarios=scenarios, extra=extra)


@pytest.fixture(scope="module")
def defect_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[tuple[str, str], Future[dict[str, Verdict]]]]:
    """Every selected defect run, started :data:`WORKERS` at a time when the first is needed, in test order."""
    wanted = [
        (str(item.callspec.params["family"]), str(item.callspec.params["defect"]))
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.originalname == DEFECT_TEST
    ]
    pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="defect-run")
    futures = {
        key: pool.submit(_defect_run, *key, tmp_path_factory.mktemp(f"{key[0]}-{key[1]}") / "run") for key in wanted
    }
    try:
        yield futures
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize(
    ("family", "defect"),
    [
        pytest.param(family, defect, id=f"{family}:{defect}")
        for family, (_, c) in FAMILIES.items()
        for defect in sorted(c)
    ],
)
def test_each_defect_is_caught_by_its_scenarios(
    family: str, defect: str, defect_runs: dict[tuple[str, str], Future[dict[str, Verdict]]]
) -> None:
    _assert_caught(defect, FAMILIES[family][1][defect], defect_runs[(family, defect)].result())


def test_every_defect_is_in_the_suite() -> None:
    suites = [set(catches) for _, catches in FAMILIES.values()]
    assert sum(len(s) for s in suites) == len(set().union(*suites))
    assert set().union(*suites) == set(DEFECTS)


@pytest.mark.parametrize(
    ("scenarios", "catches", "at_least"),
    [
        (SCENARIOS, CATCHES, 20),
        (DOCUMENTS, DOCUMENT_CATCHES, 9),
        (DMP, DMP_CATCHES, 10),
        (MSSANTE, MSS_CATCHES, 27),
        (ANNUAIRE, ANN_CATCHES, 1),
        (PSC, PSC_CATCHES, 18),
        (ID_DOCUMENTS, ID_CATCHES, 3),
        (PORTABILITY, PORT_CATCHES, 4),
    ],
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
