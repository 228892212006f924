"""INSi téléservice and INS identity handling (REM LGC section INS).

Each scenario names the ANS requirements it demonstrates. Identities come from
the INSi simulator's synthetic base (``fixtures/insi/identities.toml``); identity
messages "from another identification domain" are HL7 v2.5 PAM-FR ADT^A28 sent
to the SUT over MLLP (or through the control API when it has no MLLP listener).

Requirements whose ANS proof is a CNDA certificate, a printout or vendor
documentation (for example ``INS/va1.09``, ``INS/va1.15``, ``INS/va1.42``) have no
scenario here: the run lists them as ``manual`` with the proof ANS expects.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from harness.plugin.evidence import ScenarioEvidence
from harness.simulators.insi import IdentityBase, InsiSimulator
from harness.sut.base import SutAdapter, SutRefused
from harness.sut.model import IdentityStatus, PatientRecord, TraceEntry
from harness.validators.ins import IdentityEvent, expected_status
from scenarios.insi_steps import (
    ACTION_CARTE_VITALE,
    ACTION_TRAITS,
    IdentityFeed,
    carte_vitale_of,
    identity_named,
    qualified_patient,
    retrieved_patient,
    traits_of,
    unknown_to_insi,
)

pytestmark = pytest.mark.usefixtures("insi")


def _attach_traces(evidence: ScenarioEvidence, traces: list[TraceEntry]) -> None:
    evidence.attach(
        "sut-traces.json",
        json.dumps([t.raw for t in traces], indent=2, ensure_ascii=False).encode("utf-8"),
        "application/json",
        "the SUT's own INSi call log, as read through the control API",
    )


def _attach_patient(evidence: ScenarioEvidence, name: str, patient: PatientRecord) -> None:
    evidence.attach(name, json.dumps(patient.raw, indent=2, ensure_ascii=False).encode("utf-8"), "application/json")


# -- traces -------------------------------------------------------------------------------------
@pytest.mark.requirement("INS/va1.06", "INS/va1.63", scenario=("INS/va1.06.01", "INS/va1.63.01"))
def test_verification_calls_and_results_are_traced(
    sut: SutAdapter, insi: InsiSimulator, insi_identities: IdentityBase, evidence: ScenarioEvidence
) -> None:
    """Every INSi verification call and its OK/KO result appear in the SUT's call log."""
    identity = identity_named(insi_identities, "ordinary-1")
    patient = qualified_patient(sut, identity)
    traces_before = len(sut.traces())
    mark = insi.recorder.mark()
    ok = sut.verify_ins(patient.id)
    insi_identities.override(identity.matricule, birth_name=identity.birth_name + "-MODIFIE")
    ko = sut.verify_ins(patient.id)
    evidence.note(f"verification results reported by the SUT: {ok.outcome}, {ko.outcome}")
    calls = [e for e in insi.recorder.since(mark) if e.action == ACTION_TRAITS]
    traces = [t for t in sut.traces()[traces_before:] if t.service.upper() == "INSI"]
    _attach_traces(evidence, traces)
    evidence.expect(len(calls) >= 2, "insi.verification.called", "each verification must call INSi")
    returned_codes = [str(e.meta.get("cr", "")) for e in calls]
    traced_codes = [t.return_code for t in traces]
    evidence.expect(
        len(traces) >= len(calls),
        "ins.trace.verification-call",
        f"every INSi verification call must be traced ({len(calls)} calls, {len(traces)} trace entries)",
    )
    for code in returned_codes:
        evidence.expect(
            code in traced_codes,
            "ins.trace.return-code",
            f"the trace must record the return code INSi gave (CR {code}); traced: {traced_codes}",
        )
    evidence.conclude()


def _retrieval(mode: str, case: str, scenarios: tuple[str, str]) -> object:
    return pytest.param(
        mode,
        case,
        marks=pytest.mark.requirement("INS/va1.38", "INS/va1.35", scenario=scenarios),
        id=f"{mode}-{case}",
    )


@pytest.mark.parametrize(
    ("mode", "case"),
    [
        _retrieval("carte-vitale", "found", ("INS/va1.38.01", "INS/va1.35.01")),
        _retrieval("carte-vitale", "not-found", ("INS/va1.38.01", "INS/va1.35.01")),
        _retrieval("traits", "found", ("INS/va1.38.02", "INS/va1.35.02")),
        _retrieval("traits", "not-found", ("INS/va1.38.02", "INS/va1.35.02")),
    ],
)
def test_retrieval_is_traced_with_what_insi_returned(
    mode: str,
    case: str,
    sut: SutAdapter,
    insi: InsiSimulator,
    insi_identities: IdentityBase,
    evidence: ScenarioEvidence,
) -> None:
    """A retrieval (by Carte Vitale or by traits) is traced with its return code and, on CR 00, what INSi returned."""
    if mode == "carte-vitale":
        identity = identity_named(insi_identities, "carte-vitale")
        patient = sut.create_patient(traits_of(identity))
        card = carte_vitale_of(identity) if case == "found" else {"matricule_od": "1551299999999", "rang": 1}
        action = ACTION_CARTE_VITALE
    else:
        identity = identity_named(insi_identities, "with-history") if case == "found" else unknown_to_insi()
        patient = sut.create_patient(traits_of(identity))
        card = None
        action = ACTION_TRAITS
    traces_before = len(sut.traces())
    mark = insi.recorder.mark()
    sut.search_ins(patient.id, mode=mode, carte_vitale=card)
    calls = [e for e in insi.recorder.since(mark) if e.action == action]
    new_traces = sut.traces()[traces_before:]
    _attach_traces(evidence, new_traces)
    traces = [t for t in new_traces if t.service.upper() == "INSI" and t.operation == action.rpartition(":")[2]]
    if not evidence.expect(bool(calls), "insi.retrieval.called", f"the SUT must call INSi ({mode})"):
        evidence.conclude()
    code = str(calls[-1].meta.get("cr", ""))
    evidence.expect(code == ("00" if case == "found" else "01"), "harness.precondition", f"INSi answered CR {code}")
    evidence.expect(
        len(traces) >= len(calls),
        "ins.trace.retrieval-call",
        f"every INSi retrieval call must be traced ({len(calls)} calls, {len(traces)} trace entries)",
    )
    if not traces:
        evidence.conclude()
    trace = traces[-1]
    evidence.expect(trace.return_code == code, "ins.trace.return-code", f"the trace must carry CR {code}")
    if case == "found":
        returned = trace.returned
        evidence.expect(
            returned.get("matricule") == identity.matricule and returned.get("oid") == identity.oid,
            "ins.trace.returned-ins",
            "the trace of a CR 00 must record the matricule INS and OID returned",
        )
        evidence.expect(
            len(returned.get("history") or []) == len(identity.history),
            "ins.trace.returned-history",
            f"the trace must record the INS history returned ({len(identity.history)} former matricules)",
        )
        evidence.expect(
            bool(returned.get("traits")), "ins.trace.returned-traits", "the trace must record the traits returned"
        )
    evidence.conclude()


# -- verification KO ----------------------------------------------------------------------------
@pytest.mark.parametrize("initial", [IdentityStatus.RECUP, IdentityStatus.QUAL])
@pytest.mark.requirement("INS/va1.08", scenario="INS/va1.08.01")
def test_ko_verification_downgrades_and_removes_the_ins(
    initial: IdentityStatus,
    sut: SutAdapter,
    insi: InsiSimulator,
    insi_identities: IdentityBase,
    evidence: ScenarioEvidence,
) -> None:
    """After a KO verification the INS and its OID are removed, the status drops, a work-list item appears."""
    identity = identity_named(insi_identities, "ordinary-2")
    make = retrieved_patient if initial is IdentityStatus.RECUP else qualified_patient
    patient = make(sut, identity)
    _attach_patient(evidence, "before.json", patient)
    insi_identities.override(identity.matricule, birth_name=identity.birth_name + "-CHANGE")
    sut.verify_ins(patient.id)
    after = sut.get_patient(patient.id)
    _attach_patient(evidence, "after.json", after)
    expected = expected_status(initial, IdentityEvent.VERIFICATION_KO)
    evidence.expect(after.ins is None, "ins.ko.ins-removed", "the INS matricule and OID must be removed on KO")
    evidence.expect(
        after.status is expected,
        "ins.ko.status-downgraded",
        f"the status must drop from {initial.value} to {expected.value} on KO (found {after.status.value})",
    )
    evidence.expect(
        any(item.patient_id == patient.id for item in sut.worklist()),
        "ins.ko.worklist",
        "the identity must be put on a work list after a KO verification",
    )
    evidence.conclude()


# -- identities from another identification domain --------------------------------------------------
@pytest.mark.requirement("INS/va1.11", scenario="INS/va1.11.01")
def test_an_ins_received_from_another_domain_is_verified_automatically(
    sut: SutAdapter,
    insi: InsiSimulator,
    insi_identities: IdentityBase,
    identity_feed: IdentityFeed,
    evidence: ScenarioEvidence,
) -> None:
    """An identity message carrying an INS makes the SUT call INSi verification by itself."""
    identity = identity_named(insi_identities, "ordinary-3")
    mark = insi.recorder.mark()
    identity_feed.send(identity, reliability="VALI")
    call = insi.recorder.wait_for(
        mark, lambda e: e.action == ACTION_TRAITS and identity.birth_name in e.request.decode("utf-8", "replace"), 5.0
    )
    evidence.expect(
        call is not None,
        "ins.feed.auto-verification",
        "receiving an INS from another domain must trigger an INSi verification call (none within 5 s)",
    )
    evidence.conclude()


@pytest.mark.requirement("INS/va1.07", scenario="INS/va1.07.01")
def test_a_ko_feed_does_not_update_a_known_identity(
    sut: SutAdapter, insi: InsiSimulator, identity_feed: IdentityFeed, evidence: ScenarioEvidence
) -> None:
    """A message for a known patient whose INS verification is KO leaves the local identity untouched."""
    stranger = unknown_to_insi()
    local = sut.create_patient(traits_of(stranger, used_name="LOCAL"))
    _attach_patient(evidence, "before.json", local)
    identity_feed.send(stranger, reliability="QUAL", used_name="DISTANT")
    identity_feed.settle()
    after = sut.get_patient(local.id)
    _attach_patient(evidence, "after.json", after)
    evidence.expect(after.ins is None, "ins.feed.ko.no-ins", "a KO-verified INS must not be stored")
    evidence.expect(
        after.status is local.status, "ins.feed.ko.status-unchanged", "the local identity's status must not change"
    )
    evidence.expect(
        after.traits == local.traits, "ins.feed.ko.traits-unchanged", "the local identity's traits must not change"
    )
    evidence.conclude()


def _feed_a_stranger(sut: SutAdapter, identity_feed: IdentityFeed) -> list[PatientRecord]:
    """Send an identity whose INS INSi does not know (verification KO); the identities the SUT then holds for it."""
    stranger = unknown_to_insi()
    identity_feed.send(stranger, reliability="VALI")
    identity_feed.settle()
    return [p for p in sut.list_patients() if p.traits.birth_name == stranger.birth_name]


@pytest.mark.requirement("INS/va1.05", scenario="INS/va1.05.01")
def test_a_ko_feed_for_an_unknown_patient_creates_it_without_ins(
    sut: SutAdapter, insi: InsiSimulator, identity_feed: IdentityFeed, evidence: ScenarioEvidence
) -> None:
    """A message for an unknown patient whose INS verification is KO creates the identity without INS or OID."""
    created = _feed_a_stranger(sut, identity_feed)
    if not evidence.expect(len(created) == 1, "ins.feed.ko.created", "the identity must be created, once"):
        evidence.conclude()
    _attach_patient(evidence, "created.json", created[0])
    evidence.expect(created[0].ins is None, "ins.feed.ko.no-ins", "the identity must be created without INS or OID")
    evidence.expect(
        created[0].status in (IdentityStatus.PROV, IdentityStatus.VALI),
        "ins.feed.ko.status",
        f"an identity without verified INS cannot be {created[0].status.value}",
    )
    evidence.conclude()


@pytest.mark.requirement("INS/va1.12", scenario="INS/va1.12.01")
def test_data_with_a_ko_ins_goes_to_a_work_list(
    sut: SutAdapter, insi: InsiSimulator, identity_feed: IdentityFeed, evidence: ScenarioEvidence
) -> None:
    """Data received with an INS that verification rejects is not integrated silently: it lands on a work list."""
    created = _feed_a_stranger(sut, identity_feed)
    items = sut.worklist()
    evidence.attach("worklist.json", json.dumps([asdict(i) for i in items], indent=2).encode(), "application/json")
    evidence.expect(
        any(i.patient_id in {p.id for p in created} for i in items) and bool(created),
        "ins.feed.ko.worklist",
        "a KO verification of received data must put it on a work list for a user",
    )
    evidence.conclude()


@pytest.mark.requirement("INS/va1.13", scenario="INS/va1.13.01")
def test_a_qualified_identity_received_is_not_qualified_locally(
    sut: SutAdapter,
    insi: InsiSimulator,
    insi_identities: IdentityBase,
    identity_feed: IdentityFeed,
    evidence: ScenarioEvidence,
) -> None:
    """An identity received as QUAL from another domain becomes RECUP after an OK verification: no transitivity."""
    identity = identity_named(insi_identities, "ordinary-4")
    identity_feed.send(identity, reliability="QUAL")
    identity_feed.settle(expect_insi_call=insi)
    created = [p for p in sut.list_patients() if p.traits.birth_name == identity.birth_name]
    if not evidence.expect(len(created) == 1, "ins.feed.created", "the received identity must be created once"):
        evidence.conclude()
    _attach_patient(evidence, "created.json", created[0])
    expected = expected_status(IdentityStatus.PROV, IdentityEvent.INSI_RETRIEVAL_OK)
    evidence.expect(
        created[0].status is expected,
        "ins.feed.no-transitivity",
        f"a received qualified identity must be {expected.value} locally after verification "
        f"(found {created[0].status.value})",
    )
    evidence.conclude()


# -- strict traits, return codes, authentication, request conformance -----------------------------------
def _trait_change(initial: IdentityStatus, trait: str, scenario: str) -> object:
    # The propagation of the change to other applications (proofs .02 and .03 of each
    # scenario) is not observable through the control API: those proofs stay manual.
    propagation = (f"{scenario}.02", f"{scenario}.03")
    return pytest.param(
        initial,
        trait,
        marks=pytest.mark.requirement("INS/va1.60", scenario=scenario, manual_proofs=propagation),
        id=f"{initial.value}-{trait}",
    )


@pytest.mark.parametrize(
    ("initial", "trait"),
    [
        _trait_change(IdentityStatus.RECUP, "birth_name", "INS/va1.60.01"),
        _trait_change(IdentityStatus.RECUP, "used_name", "INS/va1.60.02"),
        _trait_change(IdentityStatus.QUAL, "birth_name", "INS/va1.60.03"),
        _trait_change(IdentityStatus.QUAL, "birth_date", "INS/va1.60.03"),
        _trait_change(IdentityStatus.QUAL, "used_name", "INS/va1.60.04"),
    ],
)
def test_changing_a_trait_invalidates_the_ins_only_when_it_is_strict(
    initial: IdentityStatus,
    trait: str,
    sut: SutAdapter,
    insi: InsiSimulator,
    insi_identities: IdentityBase,
    evidence: ScenarioEvidence,
) -> None:
    """Editing a strict trait of a RECUP/QUAL identity removes the INS and downgrades it; a secondary trait does not."""
    identity = identity_named(insi_identities, "ordinary-5")
    make = retrieved_patient if initial is IdentityStatus.RECUP else qualified_patient
    patient = make(sut, identity)
    _attach_patient(evidence, "before.json", patient)
    changes = {
        "birth_name": {"birth_name": patient.traits.birth_name + "-CORRIGE"},
        "birth_date": {"birth_date": "1970-01-02"},
        "used_name": {"used_name": "NOUVEAU-NOM-USAGE"},
    }
    sut.update_traits(patient.id, changes[trait])
    after = sut.get_patient(patient.id)
    _attach_patient(evidence, "after.json", after)
    if trait == "used_name":
        evidence.expect(
            after.ins == patient.ins, "ins.trait-change.ins-kept", "a secondary trait change must keep the INS and OID"
        )
        evidence.expect(
            after.status is initial,
            "ins.trait-change.status-kept",
            f"a secondary trait change must keep the status {initial.value} (found {after.status.value})",
        )
        evidence.conclude()
        return
    expected = expected_status(initial, IdentityEvent.STRICT_TRAIT_CHANGE)
    evidence.expect(after.ins is None, "ins.trait-change.ins-removed", "the INS and OID must be removed")
    evidence.expect(
        after.status is expected,
        "ins.trait-change.status",
        f"the status must drop from {initial.value} to {expected.value} (found {after.status.value})",
    )
    evidence.conclude()


@pytest.mark.parametrize("case", ["single", "homonyms"])
@pytest.mark.requirement("INS/va1.40")
def test_status_recup_only_when_insi_returns_one_identity(
    case: str, sut: SutAdapter, insi: InsiSimulator, insi_identities: IdentityBase, evidence: ScenarioEvidence
) -> None:
    """CR 00 makes the identity RECUP with INSi's INS; CR 02 (several identities) changes nothing."""
    identity = identity_named(insi_identities, "ordinary-6" if case == "single" else "homonym-a")
    traits = traits_of(identity, with_birthplace=case == "single")
    patient = sut.create_patient(traits)
    mark = insi.recorder.mark()
    sut.search_ins(patient.id, mode="traits")
    codes = [str(e.meta.get("cr", "")) for e in insi.recorder.since(mark) if e.action == ACTION_TRAITS]
    evidence.note(f"INSi return codes: {codes}")
    after = sut.get_patient(patient.id)
    _attach_patient(evidence, "after.json", after)
    if case == "single":
        evidence.expect("00" in codes, "harness.precondition", "INSi must have answered CR 00")
        assigned = after.ins is not None and after.ins.matricule == identity.matricule
        evidence.expect(
            after.status is IdentityStatus.RECUP and assigned,
            "ins.recup.assigned",
            "after CR 00 the identity must be RECUP with the INS INSi returned",
        )
    else:
        evidence.expect("02" in codes, "harness.precondition", "INSi must have answered CR 02 (homonyms)")
        evidence.expect(
            after.status is IdentityStatus.PROV and after.ins is None,
            "ins.recup.cr02",
            f"after CR 02 the identity must stay PROV without INS (found {after.status.value})",
        )
    evidence.conclude()


@pytest.mark.requirement("INS/va1.14", scenario="INS/va1.14.01")
def test_centre_de_sante_calls_insi_with_the_organisation_certificate(
    sut: SutAdapter, insi: InsiSimulator, insi_identities: IdentityBase, evidence: ScenarioEvidence
) -> None:
    """In the Centres de santé profile, INSi is called with the IGC-Santé organisation certificate."""
    identity = identity_named(insi_identities, "ordinary-7")
    patient = sut.create_patient(traits_of(identity))
    mark = insi.recorder.mark()
    sut.search_ins(patient.id, mode="traits")
    calls = insi.recorder.since(mark)
    if not evidence.expect(bool(calls), "insi.called", "the SUT must call INSi"):
        evidence.conclude()
    for call in calls:
        mode = call.meta.get("auth_mode")
        evidence.expect(
            mode == "organisation-certificate",
            "insi.auth.organisation-certificate",
            f"INSi must be called with the organisation certificate and no CPS assertion (seen: {mode})",
            location=f"exchange {call.seq}",
        )
    evidence.conclude()


@pytest.mark.parametrize("mode", ["traits", "carte-vitale"])
@pytest.mark.requirement("INS/va1.34", scenario="INS/va1.34.01")
def test_insi_requests_follow_the_integration_guide(
    mode: str, sut: SutAdapter, insi: InsiSimulator, insi_identities: IdentityBase, evidence: ScenarioEvidence
) -> None:
    """Searches by traits and by Carte Vitale carry the SOAP, WS-Addressing and context headers INSi expects."""
    identity = identity_named(insi_identities, "carte-vitale")
    patient = sut.create_patient(traits_of(identity))
    mark = insi.recorder.mark()
    card = carte_vitale_of(identity) if mode == "carte-vitale" else None
    sut.search_ins(patient.id, mode=mode, carte_vitale=card)
    calls = insi.recorder.since(mark)
    wanted = ACTION_CARTE_VITALE if mode == "carte-vitale" else ACTION_TRAITS
    evidence.expect(any(c.action == wanted for c in calls), "insi.operation", f"the SUT must call {wanted}")
    for call in calls:
        for finding in call.meta.get("findings", []):
            if finding.get("severity") == "error":
                evidence.expect(
                    False, finding.get("rule", "insi.request"), finding.get("message", ""), f"exchange {call.seq}"
                )
    evidence.conclude()


@pytest.mark.parametrize("typed", ["complete", "wrong-key", "without-key"])
@pytest.mark.requirement("INS/va1.41", scenario="INS/va1.41.01")
def test_search_by_matricule_needs_fifteen_characters_and_a_right_key(
    typed: str, sut: SutAdapter, insi: InsiSimulator, insi_identities: IdentityBase, evidence: ScenarioEvidence
) -> None:
    """RNIV rule 17: a search by typed matricule INS finds the patient, and refuses a wrong or missing key."""
    identity = identity_named(insi_identities, "ordinary-8")
    patient = retrieved_patient(sut, identity)
    body, key = identity.matricule[:13], int(identity.matricule[13:])
    text = {"complete": identity.matricule, "wrong-key": f"{body}{(key % 97) + 1:02d}", "without-key": body}[typed]
    evidence.note(f"matricule typed: {text}")
    try:
        found = sut.find_patients_by_ins(text)
    except SutRefused as exc:
        evidence.note(f"the SUT refused it: {exc}")
        evidence.expect(
            typed != "complete", "ins.typed-matricule.found", "a complete matricule with its right key must be searched"
        )
        evidence.conclude()
        return
    ids = [p.id for p in found]
    if typed == "complete":
        evidence.expect(patient.id in ids, "ins.typed-matricule.found", "the patient holding that INS must be found")
    else:
        evidence.expect(
            False,
            "ins.typed-matricule.key-checked",
            f"a matricule typed {typed.replace('-', ' ')} must be refused before any search ({len(ids)} found)",
        )
    evidence.conclude()
