"""Feeding the DMP (Mon espace santé) through the DMP web services (REM LGC section DMP).

The SUT is pointed at the harness's DMP simulator (``docs/dmp-wire.md``): ITI-41 with
MTOM and a VIHF assertion over mutual TLS, ITI-57 for deletion and masking, TD0.2 /
TD0.3 for existence and authorisation. Every submission the SUT makes is judged whole:
the VIHF (signature against the test PKI, attributes), the XDS metadata against the
DMP rules and against the CDA inside (``harness.validators.xds``), and the patient's
qualified INS. Scenarios wait a bounded time for the SUT to send; silence is a
finding ("no submission received"), never a hang.

Where ANS wants a video, a screenshot or documentation, that proof stays ``manual``;
the recorded exchanges support it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial

import pytest

from harness.findings import Severity
from harness.plugin.evidence import ScenarioEvidence
from harness.simulators.dmp import DmpSimulator
from harness.simulators.dmp.records import Submission
from harness.simulators.insi import IdentityBase
from harness.sut.base import SutAdapter
from harness.sut.model import DmpOutcome, PatientRecord, ProducedDocument
from harness.validators import xds
from harness.validators.cda import CdaValidator
from scenarios.insi_steps import identity_named, qualified_patient, traits_of

pytestmark = pytest.mark.usefixtures("insi")

LETTRE_DE_LIAISON = "11490-0"
FEED_TIMEOUT_S = 15.0
"""How long a scenario waits for a submission the SUT must make."""
SILENCE_S = 3.0
"""How long a scenario listens when the SUT must send nothing."""
SILENCE_AFTER_NOT_SENT_S = 1.0
"""The same, once the SUT has answered ``not-sent`` (it says it did not try): a late submission is still caught
if it comes within this second, and a SUT that queues its feeds answers ``sent``, not ``not-sent``."""
DELETED = "urn:asip:ci-sis:2010:StatusType:Deleted"
DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"


def _silence(outcome: DmpOutcome) -> float:
    return SILENCE_AFTER_NOT_SENT_S if outcome.result == "not-sent" else SILENCE_S


def _cx(patient: PatientRecord) -> str:
    assert patient.ins is not None
    return f"{patient.ins.matricule}^^^&{patient.ins.oid}&ISO^NH"


def _patient_with_a_dmp(sut: SutAdapter, identities: IdentityBase, dmp: DmpSimulator) -> PatientRecord:
    patient = qualified_patient(sut, identity_named(identities, "ordinary-1"))
    assert patient.ins is not None, "precondition: the patient's INS is qualified"
    dmp.set_patient(patient.ins.matricule, patient.ins.oid)
    return patient


def _produce(
    sut: SutAdapter, evidence: ScenarioEvidence, patient: PatientRecord, act_date: str | None = None
) -> ProducedDocument:
    produced = sut.produce_document(patient.id, LETTRE_DE_LIAISON, "N1", act_date=act_date)
    if produced.cda is not None:
        evidence.attach(
            f"{produced.document_id or 'document'}.cda.xml", produced.cda, "application/xml", "the document fed"
        )
    return produced


def _expect_submission(evidence: ScenarioEvidence, dmp: DmpSimulator, before: int, what: str) -> Submission | None:
    submission = dmp.wait_for_submission(before, timeout=FEED_TIMEOUT_S)
    evidence.expect(
        submission is not None,
        "dmp.feed.none",
        f"no submission received within {FEED_TIMEOUT_S:g} s: {what} must feed the DMP (ITI-41)",
    )
    return submission


def _judge(evidence: ScenarioEvidence, submission: Submission, patient: PatientRecord, validator: CdaValidator) -> None:
    """The whole submission: the DMP's answer, the VIHF, the metadata against the rules and the CDA."""
    evidence.add(*[f for f in submission.vihf_findings if f.severity is not Severity.INFO])
    evidence.add(*[f for f in submission.findings if f.severity is not Severity.INFO])
    if submission.entries and submission.entries[0].element is not None:
        request = submission.entries[0].element.getparent()
        assert request is not None
        expected = (patient.ins.matricule, patient.ins.oid) if patient.ins is not None else None
        found = xds.check_submission(request, submission.documents, validator.value_sets, expected)
        evidence.add(*[f for f in found if f.severity is not Severity.INFO])
    evidence.expect(
        submission.accepted,
        "dmp.feed.refused",
        f"the DMP must accept the feed; it answered {submission.status} {submission.error_codes} {submission.fault}",
    )
    evidence.attach(
        f"submission-{submission.seq}.json",
        json.dumps(
            {
                "answer": submission.summary(),
                "transport": submission.transport,
                "entries": [_entry_summary(e) for e in submission.entries],
                "associations": [
                    {"type": a.type, "source": a.source, "target": a.target} for a in submission.associations
                ],
            },
            indent=2,
            ensure_ascii=False,
        ).encode("utf-8"),
        "application/json",
        "what the SUT submitted to the DMP and what the DMP answered",
    )


def _entry_summary(entry: object) -> dict[str, object]:
    element = getattr(entry, "element", None)
    return {
        "id": getattr(entry, "id", ""),
        "patientId": getattr(entry, "patient_id", ""),
        "uniqueId": getattr(entry, "unique_id", ""),
        "serviceStartTime": getattr(entry, "service_start_time", ""),
        "masking": sorted(xds.masking_codes(element)) if element is not None else [],
    }


def _submitted(
    evidence: ScenarioEvidence,
    dmp: DmpSimulator,
    validator: CdaValidator,
    patient: PatientRecord,
    act: Callable[[], DmpOutcome],
    what: str,
) -> Submission | None:
    """Do ``act`` (a SUT operation that must feed the DMP), then wait for and judge the submission."""
    before = len(dmp.submissions)
    outcome = act()
    evidence.note(f"{what}: the SUT reports {outcome.result} ({outcome.detail})")
    submission = _expect_submission(evidence, dmp, before, what)
    if submission is not None:
        _judge(evidence, submission, patient, validator)
    return submission


def _feed(
    sut: SutAdapter,
    dmp: DmpSimulator,
    evidence: ScenarioEvidence,
    validator: CdaValidator,
    patient: PatientRecord,
) -> tuple[ProducedDocument, Submission | None]:
    """Produce a lettre de liaison and validate it: a conforming LGC feeds the DMP at once."""
    produced = _produce(sut, evidence, patient)
    validate = partial(sut.validate_document, patient.id, produced.document_id)
    return produced, _submitted(evidence, dmp, validator, patient, validate, "validating the document")


def _stored_uuid(submission: Submission | None) -> str:
    if submission is None or not submission.stored:
        return ""
    return next(iter(submission.stored.values()))


# -- feeding ------------------------------------------------------------------------------------
@pytest.mark.requirement("DMP/CONF.05", scenario="DMP/CONF.05.01")
def test_feeding_and_deleting_need_no_access_authorisation(
    sut: SutAdapter,
    insi_identities: IdentityBase,
    dmp: DmpSimulator,
    cda_validator: CdaValidator,
    evidence: ScenarioEvidence,
) -> None:
    """A validated document is fed (conforming VIHF and metadata), then deleted, with no TD0.3 call."""
    patient = _patient_with_a_dmp(sut, insi_identities, dmp)
    produced, submission = _feed(sut, dmp, evidence, cda_validator, patient)
    if submission is not None and submission.accepted:
        updates_before = len(dmp.updates)
        outcome = sut.dmp_action(patient.id, produced.document_id, "delete")
        evidence.note(f"deletion: the SUT reports {outcome.result} ({outcome.detail})")
        evidence.expect(
            len(dmp.updates) > updates_before, "dmp.delete.none", "the deletion must reach the DMP (ITI-57)"
        )
    authorisations = [c for c in dmp.td_calls if c.operation == "td0.3"]
    evidence.expect(
        not authorisations,
        "dmp.td03.requested",
        f"feeding or deleting must not request a DMP access authorisation (TD0.3); {len(authorisations)} call(s) seen",
    )
    evidence.conclude()


@pytest.mark.requirement("DMP/CONF.09", scenario="DMP/CONF.09.01")
def test_a_patient_opposition_blocks_the_feed(
    sut: SutAdapter, insi_identities: IdentityBase, dmp: DmpSimulator, evidence: ScenarioEvidence
) -> None:
    """Once the patient's opposition to the feed is recorded, validating a document sends nothing to the DMP."""
    patient = _patient_with_a_dmp(sut, insi_identities, dmp)
    sut.set_dmp_consent(patient.id, feed_opposition=True, consultation_opposition=False)
    produced = _produce(sut, evidence, patient)
    before = len(dmp.submissions)
    outcome = sut.validate_document(patient.id, produced.document_id)
    evidence.note(f"validation under opposition: the SUT reports {outcome.result} ({outcome.detail})")
    sent = dmp.wait_for_submission(before, timeout=_silence(outcome))
    evidence.expect(
        sent is None,
        "dmp.opposition.fed",
        "with the patient's opposition recorded, the SUT must not feed the DMP; it sent an ITI-41",
    )
    evidence.conclude()


@pytest.mark.parametrize(
    ("qualified", "label"), [pytest.param(True, "QUAL", id="qualified"), pytest.param(False, "PROV", id="provisional")]
)
@pytest.mark.requirement("DMP/HISTO.05", scenario="DMP/HISTO.05.01")
def test_an_earlier_document_is_sent_only_for_a_qualified_identity(
    sut: SutAdapter,
    insi_identities: IdentityBase,
    dmp: DmpSimulator,
    cda_validator: CdaValidator,
    evidence: ScenarioEvidence,
    qualified: bool,
    label: str,
) -> None:
    """A document the user selects is sent with the qualified INS; a provisional identity is never sent."""
    identity = identity_named(insi_identities, "ordinary-1")
    if qualified:
        patient = _patient_with_a_dmp(sut, insi_identities, dmp)
    else:
        patient = sut.create_patient(traits_of(identity))
        dmp.set_patient(identity.matricule, identity.oid)
    produced = _produce(sut, evidence, patient)
    send = partial(sut.dmp_action, patient.id, produced.document_id, "send")
    if qualified:
        _submitted(evidence, dmp, cda_validator, patient, send, "sending the selected document")
    else:
        before = len(dmp.submissions)
        outcome = send()
        evidence.note(f"{label} identity, explicit send: the SUT reports {outcome.result} ({outcome.detail})")
        sent = dmp.wait_for_submission(before, timeout=_silence(outcome))
        evidence.expect(
            sent is None,
            "dmp.unqualified.fed",
            "without a qualified INS the SUT must not feed the DMP; it sent an ITI-41 for a provisional identity",
        )
    evidence.conclude()


@pytest.mark.requirement("DMP/HISTO.03", scenario="DMP/HISTO.03")
def test_a_historical_document_is_dated_with_the_act_date(
    sut: SutAdapter,
    insi_identities: IdentityBase,
    dmp: DmpSimulator,
    cda_validator: CdaValidator,
    evidence: ScenarioEvidence,
) -> None:
    """A document about an act of 2019-05-14, sent today, carries 2019-05-14 in the CDA and the XDS metadata."""
    act = "2019-05-14"
    patient = _patient_with_a_dmp(sut, insi_identities, dmp)
    produced = _produce(sut, evidence, patient, act_date=act)
    send = partial(sut.dmp_action, patient.id, produced.document_id, "send")
    submission = _submitted(evidence, dmp, cda_validator, patient, send, "sending the historical document")
    if submission is not None:
        day = act.replace("-", "")
        for entry in submission.entries:
            evidence.expect(
                entry.service_start_time.startswith(day),
                "dmp.historical.service-start",
                f"serviceStartTime must be the act date {act}; it is {entry.service_start_time!r}",
            )
    evidence.conclude()


# -- visibility -----------------------------------------------------------------------------------
VISIBILITY = [
    pytest.param({"masked_to_ps": True}, {"MASQUE_PS"}, id="masked-to-professionals"),
    pytest.param({"invisible_to_patient": True}, {"INVISIBLE_PATIENT"}, id="invisible-to-patient"),
    pytest.param(
        {"invisible_to_legal_representatives": True}, {"INVISIBLE_REPRESENTANTS_LEGAUX"}, id="invisible-to-legal-reps"
    ),
]


@pytest.mark.parametrize(("setting", "codes"), VISIBILITY)
@pytest.mark.requirement(
    "DMP/va1.17",
    scenario="DMP/va1.17.01",
    manual_proofs=("DMP/va1.17.01.01", "DMP/va1.17.01.02", "DMP/va1.17.01.03"),
)
def test_masking_and_visibility_travel_in_the_metadata(
    sut: SutAdapter,
    insi_identities: IdentityBase,
    dmp: DmpSimulator,
    cda_validator: CdaValidator,
    evidence: ScenarioEvidence,
    setting: dict[str, bool],
    codes: set[str],
) -> None:
    """The masking or visibility the user sets is carried as confidentialityCode of the document entry."""
    patient = _patient_with_a_dmp(sut, insi_identities, dmp)
    produced = _produce(sut, evidence, patient)
    flags = {"masked_to_ps": False, "invisible_to_patient": False, "invisible_to_legal_representatives": False}
    sut.set_document_visibility(patient.id, produced.document_id, **{**flags, **setting})
    validate = partial(sut.validate_document, patient.id, produced.document_id)
    submission = _submitted(evidence, dmp, cda_validator, patient, validate, "validating the document")
    if submission is not None:
        for entry in submission.entries:
            carried = xds.masking_codes(entry.element) if entry.element is not None else set()
            evidence.expect(
                carried == codes,
                "dmp.visibility.codes",
                f"the entry must carry {sorted(codes)} ({xds.MASKING_SYSTEM}); it carries {sorted(carried)}",
            )
    evidence.conclude()


# -- update and deletion --------------------------------------------------------------------------
@pytest.mark.requirement("DMP/va1.16", scenario="DMP/va1.16.01", manual_proofs=("DMP/va1.16.01.01", "DMP/va1.16.01.02"))
def test_a_fed_document_can_be_replaced_then_deleted(
    sut: SutAdapter,
    insi_identities: IdentityBase,
    dmp: DmpSimulator,
    cda_validator: CdaValidator,
    evidence: ScenarioEvidence,
) -> None:
    """A modification replaces the DMP entry (RPLC); a deletion removes the current version (ITI-57)."""
    patient = _patient_with_a_dmp(sut, insi_identities, dmp)
    produced, first = _feed(sut, dmp, evidence, cda_validator, patient)
    original = _stored_uuid(first)
    if original:
        replace = partial(sut.dmp_action, patient.id, produced.document_id, "replace")
        second = _submitted(evidence, dmp, cda_validator, patient, replace, "replacing the document")
        if second is not None:
            replaced = [a for a in second.associations if a.type == RPLC]
            evidence.expect(
                any(a.target == original for a in replaced),
                "dmp.replace.rplc",
                f"the new version must replace the entry fed before ({original}) with an RPLC association",
            )
            _expect_deleted(sut, dmp, evidence, patient, produced, _stored_uuid(second))
    evidence.conclude()


@pytest.mark.requirement(
    "DMP/CONF.03", scenario="DMP/CONF.03.01", manual_proofs=("DMP/CONF.03.01.01", "DMP/CONF.03.01.02")
)
def test_a_document_sent_by_mistake_can_be_deleted_from_the_dmp(
    sut: SutAdapter,
    insi_identities: IdentityBase,
    dmp: DmpSimulator,
    cda_validator: CdaValidator,
    evidence: ScenarioEvidence,
) -> None:
    """Deleting a document from the DMP (TD3.3c) changes the status of exactly the entry fed."""
    patient = _patient_with_a_dmp(sut, insi_identities, dmp)
    produced, submission = _feed(sut, dmp, evidence, cda_validator, patient)
    if submission is not None and submission.accepted:
        _expect_deleted(sut, dmp, evidence, patient, produced, _stored_uuid(submission))
    evidence.conclude()


def _expect_deleted(
    sut: SutAdapter,
    dmp: DmpSimulator,
    evidence: ScenarioEvidence,
    patient: PatientRecord,
    produced: ProducedDocument,
    entry_uuid: str,
) -> None:
    before = len(dmp.updates)
    outcome = sut.dmp_action(patient.id, produced.document_id, "delete")
    evidence.note(f"deletion: the SUT reports {outcome.result} ({outcome.detail})")
    updates = dmp.updates[before:]
    if not evidence.expect(bool(updates), "dmp.delete.none", "the deletion must reach the DMP (ITI-57)"):
        return
    changes = [c for u in updates for c in u.changes if c.kind == "status"]
    evidence.expect(
        any(c.new_status == DELETED and entry_uuid in (c.target, c.entry_uuid) for c in changes),
        "dmp.delete.status",
        f"the deletion must set the status of entry {entry_uuid} to {DELETED}; "
        f"got {[(c.target, c.new_status) for c in changes]}",
    )
    evidence.expect(
        all(u.accepted for u in updates),
        "dmp.delete.refused",
        f"the DMP must accept the deletion; it answered {[u.status for u in updates]}",
    )
