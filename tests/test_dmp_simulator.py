"""The DMP simulator on real sockets: feeding, consulting, updating, VIHF, hostile input, faults, records.

Every request comes from ``tests/dmp_requests.py``, an independent client written from
``docs/dmp-wire.md`` (hand-built ebRIM, signxml-signed VIHF, hand-framed MTOM, ``requests``
over mutual TLS); one test goes through zeep's transport. The document is the ANS
example CDA ``DOC_NON_STRUCTURE_CDA-R2-N1.xml`` for the ANS test patient.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from lxml import etree
from zeep.transports import Transport

from harness.evidence.journal import exchange_evidence
from harness.findings import Finding, Severity, warning
from harness.pki import TestPki
from harness.simulators.dmp import (
    REPOSITORY_UNIQUE_ID,
    AvailabilityStatus,
    DmpFault,
    DmpFaultKind,
    DmpSimulator,
    Submission,
    TdCall,
    Update,
)
from harness.simulators.recording import Exchange
from tests import dmp_requests as c

CDA = "TestContenuCDA-3-0/ExemplesCDA/DOC_NON_STRUCTURE_CDA-R2-N1.xml"


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.generate(tmp_path_factory.mktemp("dmp-pki"))


@pytest.fixture(scope="module")
def cda(ans_data: Path) -> bytes:
    return (ans_data / CDA).read_bytes()


@pytest.fixture(scope="module")
def simulator(pki: TestPki) -> Iterator[DmpSimulator]:
    with DmpSimulator(pki) as sim:
        yield sim


@pytest.fixture
def sim(simulator: DmpSimulator) -> DmpSimulator:
    """The shared simulator, reset, knowing the ANS test patient."""
    simulator.reset()
    simulator.set_patient(c.INS_MATRICULE, c.INS_OID)
    return simulator


@pytest.fixture
def client(sim: DmpSimulator, pki: TestPki) -> Iterator[c.DmpClient]:
    http = c.DmpClient(sim.url, pki)
    yield http
    http.close()


def last(sim: DmpSimulator) -> Exchange:
    exchanges = sim.recorder.all()
    assert exchanges, "nothing recorded"
    return exchanges[-1]


def rules(findings: list[Finding] | list[dict[str, str]]) -> set[str]:
    return {f.rule if isinstance(f, Finding) else f["rule"] for f in findings}


def submit_one(client: c.DmpClient, sim: DmpSimulator, cda: bytes, **kwargs: object) -> tuple[c.Doc, str]:
    """Submit the CDA and return its Doc and the entry UUID the DMP gave it."""
    doc = c.Doc(cda)
    reply = c.read(client.submit([doc], **kwargs))  # type: ignore[arg-type]
    assert reply.status == "Success", reply.errors
    return doc, sim.submissions[-1].stored["Document01"]


# -- ITI-41, ITI-18, ITI-43 -------------------------------------------------------------------------


def test_an_mtom_submission_is_stored_found_and_retrieved_byte_for_byte(
    sim: DmpSimulator, client: c.DmpClient, cda: bytes
) -> None:
    doc = c.Doc(cda)
    response = client.submit([doc])
    reply = c.read(response)
    assert response.status_code == 200
    assert reply.status == "Success" and reply.errors == []
    assert reply.action == c.ITI41 + "Response"

    submission = sim.submissions[0]
    assert submission.accepted and submission.transport == "mtom"
    assert submission.documents["Document01"] == cda
    assert submission.patient_id == c.cx()
    assert submission.entries[0].unique_id == doc.unique_id
    assert submission.entries[0].type_code is not None and submission.entries[0].type_code.code == "11502-2"
    assert [code.code for code in submission.entries[0].confidentiality_codes] == ["N"]
    assert submission.vihf is not None and submission.vihf.accepted and submission.vihf_findings == []
    assert submission.exchange is not None and submission.exchange.meta["operation"] == "ITI-41"

    stored = sim.entries(c.cx())
    assert [(e.status, e.version) for e in stored] == [(AvailabilityStatus.APPROVED, 1)]
    assert stored[0].entry_uuid == submission.stored["Document01"] and stored[0].entry_uuid.startswith("urn:uuid:")

    found = c.read(client.call(c.ITI18, c.find_documents()))
    assert found.status == "Success"
    [entry] = found.objects("ExtrinsicObject")
    assert entry.get("id") == stored[0].entry_uuid and entry.get("status") == c.APPROVED
    assert c.slot_value(entry, "repositoryUniqueId") == REPOSITORY_UNIQUE_ID
    assert sim.queries[0].query_name == "FindDocuments" and sim.queries[0].returned == [stored[0].entry_uuid]

    got = c.read(client.call(c.ITI43, c.retrieve(REPOSITORY_UNIQUE_ID, doc.unique_id)))
    assert got.status == "Success"
    assert list(got.attachments.values()) == [cda]
    assert got.body.findtext(".//xdsb:mimeType", namespaces=c.NS) == "text/xml"
    assert sim.retrievals[0].returned == [doc.unique_id]


def test_an_inline_base64_submission_is_accepted(sim: DmpSimulator, client: c.DmpClient, cda: bytes) -> None:
    reply = c.read(client.submit([c.Doc(cda)], transport="inline"))
    assert reply.status == "Success"
    assert sim.submissions[0].transport == "inline"
    assert sim.entries(c.cx())[0].document == cda


def test_two_documents_in_one_submission(sim: DmpSimulator, client: c.DmpClient, cda: bytes) -> None:
    docs = [c.Doc(cda), c.Doc(cda.replace(b"CR d'examens", b"CR d'examen"), entry_id="Document02")]
    assert c.read(client.submit(docs)).status == "Success"
    assert sorted(sim.submissions[0].stored) == ["Document01", "Document02"]
    assert len(sim.entries(c.cx())) == 2


def test_rplc_deprecates_the_replaced_entry(sim: DmpSimulator, client: c.DmpClient, cda: bytes) -> None:
    _, first = submit_one(client, sim, cda)
    second = c.Doc(cda.replace(b'<versionNumber value="1"/>', b'<versionNumber value="2"/>'))
    reply = c.read(client.submit([second], replaces={"Document01": first}))
    assert reply.status == "Success", reply.errors
    by_uuid = {e.entry_uuid: e for e in sim.entries(c.cx())}
    new = sim.submissions[-1].stored["Document01"]
    assert by_uuid[first].status is AvailabilityStatus.DEPRECATED and by_uuid[first].replaced_by == new
    assert by_uuid[new].status is AvailabilityStatus.APPROVED and by_uuid[new].replaces == first
    approved = c.read(client.call(c.ITI18, c.find_documents()))
    assert [e.get("id") for e in approved.objects("ExtrinsicObject")] == [new]


def test_rplc_of_an_unknown_entry_is_refused(sim: DmpSimulator, client: c.DmpClient, cda: bytes) -> None:
    reply = c.read(
        client.submit([c.Doc(cda)], replaces={"Document01": "urn:uuid:00000000-0000-4000-8000-000000000000"})
    )
    assert reply.status == "Failure" and reply.error_codes == ["XDSRegistryError"]
    assert sim.entries(c.cx()) == []


def test_the_same_document_twice_is_refused(sim: DmpSimulator, client: c.DmpClient, cda: bytes) -> None:
    doc = c.Doc(cda)
    assert c.read(client.submit([doc])).status == "Success"
    again = c.read(client.submit([doc]))
    assert again.error_codes == ["XDSDuplicateUniqueIdInRegistry"]
    changed = c.read(client.submit([c.Doc(cda + b" ", unique_id=doc.unique_id)]))
    assert changed.error_codes == ["XDSNonIdenticalHash"]


# -- ITI-57 --------------------------------------------------------------------------------------


def test_iti57_deletes_an_entry(sim: DmpSimulator, client: c.DmpClient, cda: bytes) -> None:
    doc, entry_uuid = submit_one(client, sim, cda)
    reply = c.read(client.call(c.ITI57, c.status_update(c.cx(), entry_uuid, c.APPROVED, c.DELETED)))
    assert reply.status == "Success", reply.errors
    assert reply.action == c.ITI57 + "Response"
    update = sim.updates[0]
    assert update.accepted and update.entry_uuid == entry_uuid and update.new_status == c.DELETED
    assert sim.entries(c.cx())[0].status is AvailabilityStatus.DELETED
    assert c.read(client.call(c.ITI18, c.find_documents())).objects("ExtrinsicObject") == []
    deleted = c.read(client.call(c.ITI18, c.find_documents(statuses=(c.DELETED,))))
    assert [e.get("status") for e in deleted.objects("ExtrinsicObject")] == [c.DELETED]
    gone = c.read(client.call(c.ITI43, c.retrieve(REPOSITORY_UNIQUE_ID, doc.unique_id)))
    assert gone.status == "Failure" and gone.error_codes == ["XDSDocumentUniqueIdError"]


def test_iti57_with_a_wrong_original_status_changes_nothing(sim: DmpSimulator, client: c.DmpClient, cda: bytes) -> None:
    _, entry_uuid = submit_one(client, sim, cda)
    reply = c.read(client.call(c.ITI57, c.status_update(c.cx(), entry_uuid, c.DEPRECATED, c.DELETED)))
    assert reply.error_codes == ["XDSMetadataUpdateError"]
    assert sim.entries(c.cx())[0].status is AvailabilityStatus.APPROVED


def test_iti57_masking_makes_a_new_version(sim: DmpSimulator, client: c.DmpClient, cda: bytes) -> None:
    doc, entry_uuid = submit_one(client, sim, cda)
    masked = c.Doc(
        cda,
        unique_id=doc.unique_id,
        confidentiality=[("N", "2.16.840.1.113883.5.25"), ("MASQUE_PS", "1.2.250.1.213.1.1.4.13")],
    )
    reply = c.read(client.call(c.ITI57, c.metadata_update(masked, lid=entry_uuid, previous_version="1")))
    assert reply.status == "Success", reply.errors
    update = sim.updates[0]
    assert [code.code for code in update.confidentiality_codes] == ["N", "MASQUE_PS"]
    change = update.changes[0]
    assert change.kind == "metadata" and change.new_version == 2 and change.lid == entry_uuid
    versions = sorted(sim.entries(c.cx()), key=lambda e: e.version)
    assert [(e.version, e.status) for e in versions] == [
        (1, AvailabilityStatus.DEPRECATED),
        (2, AvailabilityStatus.APPROVED),
    ]
    assert versions[1].lid == entry_uuid and versions[1].document == cda
    found = c.read(client.call(c.ITI18, c.find_documents()))
    [entry] = found.objects("ExtrinsicObject")
    assert entry.get("lid") == entry_uuid and entry.get("id") == change.new_entry_uuid
    assert (
        entry.find("rim:VersionInfo", c.NS) is not None
        and entry.find("rim:VersionInfo", c.NS).get("versionName") == "2"
    )
    masked_codes = [
        cl.get("nodeRepresentation")
        for cl in entry.iter(f"{{{c.RIM_NS}}}Classification")
        if cl.get("classificationScheme") == "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
    ]
    assert masked_codes == ["N", "MASQUE_PS"]


def test_iti57_with_a_stale_previous_version_is_refused(sim: DmpSimulator, client: c.DmpClient, cda: bytes) -> None:
    doc, entry_uuid = submit_one(client, sim, cda)
    reply = c.read(client.call(c.ITI57, c.metadata_update(c.Doc(cda, unique_id=doc.unique_id), entry_uuid, "7")))
    assert reply.error_codes == ["XDSMetadataVersionError"]
    assert len(sim.entries(c.cx())) == 1


# -- other stored queries ------------------------------------------------------------------------


def test_get_queries_by_uuid_and_submission_sets(sim: DmpSimulator, client: c.DmpClient, cda: bytes) -> None:
    _, entry_uuid = submit_one(client, sim, cda)
    by_uuid = c.read(
        client.call(c.ITI18, c.stored_query(c.GET_DOCUMENTS, {"$XDSDocumentEntryEntryUUID": [f"('{entry_uuid}')"]}))
    )
    assert [e.get("id") for e in by_uuid.objects("ExtrinsicObject")] == [entry_uuid]
    links = c.read(client.call(c.ITI18, c.stored_query(c.GET_ASSOCIATIONS, {"$uuid": [f"('{entry_uuid}')"]})))
    [has_member] = links.objects("Association")
    assert has_member.get("targetObject") == entry_uuid and has_member.get("sourceObject", "").startswith("urn:uuid:")
    both = c.read(
        client.call(
            c.ITI18,
            c.stored_query(c.GET_DOCUMENTS_AND_ASSOCIATIONS, {"$XDSDocumentEntryEntryUUID": [f"'{entry_uuid}'"]}),
        )
    )
    assert len(both.objects("ExtrinsicObject")) == 1 and len(both.objects("Association")) == 1
    sets = c.read(
        client.call(
            c.ITI18,
            c.stored_query(
                c.FIND_SUBMISSION_SETS,
                {"$XDSSubmissionSetPatientId": [f"'{c.cx()}'"], "$XDSSubmissionSetStatus": [f"('{c.APPROVED}')"]},
            ),
        )
    )
    [package] = sets.objects("RegistryPackage")
    assert package.get("id") == has_member.get("sourceObject")
    refs = c.read(client.call(c.ITI18, c.stored_query(c.FIND_DOCUMENTS, c_params(), return_type="ObjectRef")))
    assert [r.get("id") for r in refs.objects("ObjectRef")] == [entry_uuid]


def c_params(**extra: list[str]) -> dict[str, list[str]]:
    return {"$XDSDocumentEntryPatientId": [f"'{c.cx()}'"], "$XDSDocumentEntryStatus": [f"('{c.APPROVED}')"], **extra}


def test_find_documents_filters(sim: DmpSimulator, client: c.DmpClient, cda: bytes) -> None:
    submit_one(client, sim, cda)

    def count(**extra: list[str]) -> int:
        reply = c.read(client.call(c.ITI18, c.stored_query(c.FIND_DOCUMENTS, c_params(**extra))))
        assert reply.status == "Success", reply.errors
        return len(reply.objects("ExtrinsicObject"))

    assert count(**{"$XDSDocumentEntryTypeCode": ["('11502-2^^2.16.840.1.113883.6.1')"]}) == 1
    assert count(**{"$XDSDocumentEntryTypeCode": ["('34133-9^^2.16.840.1.113883.6.1')"]}) == 0
    assert count(**{"$XDSDocumentEntryServiceStartTimeFrom": ["20190101"]}) == 1
    assert count(**{"$XDSDocumentEntryServiceStartTimeFrom": ["20220101"]}) == 0
    assert count(**{"$XDSDocumentEntryConfidentialityCode": ["('N^^2.16.840.1.113883.5.25')"]}) == 1


def test_find_documents_without_a_status_is_a_parameter_error(sim: DmpSimulator, client: c.DmpClient) -> None:
    query = c.stored_query(c.FIND_DOCUMENTS, {"$XDSDocumentEntryPatientId": [f"'{c.cx()}'"]})
    reply = c.read(client.call(c.ITI18, query))
    assert reply.status == "Failure" and reply.error_codes == ["XDSStoredQueryParamNumber"]


def test_consultation_follows_the_patient_state(sim: DmpSimulator, client: c.DmpClient, cda: bytes) -> None:
    doc, _ = submit_one(client, sim, cda)
    sim.set_patient(c.INS_MATRICULE, c.INS_OID, consultation_opposition=True)
    refused = c.read(client.call(c.ITI18, c.find_documents()))
    assert refused.error_codes == ["XDSRegistryError"] and "opposé" in refused.errors[0][1]
    sim.set_patient(c.INS_MATRICULE, c.INS_OID, authorization="EXPIRE")
    expired = c.read(client.call(c.ITI43, c.retrieve(REPOSITORY_UNIQUE_ID, doc.unique_id)))
    assert expired.status == "Failure" and expired.attachments == {}


# -- TD0.2, TD0.3 ----------------------------------------------------------------------------------


def test_td02_answers_the_patient_state(sim: DmpSimulator, client: c.DmpClient) -> None:
    sim.set_patient(c.INS_MATRICULE, c.INS_OID, authorization="EXPIRE", feed_opposition=True)
    reply = c.read(client.call(c.TD02, c.td_request("TestExistenceRequest", c.cx())))
    assert reply.action == c.TD02 + "Response"
    answer = {etree.QName(child).localname: child.text for child in reply.body}
    assert answer == {
        "dmpStatus": "EXISTANT",
        "authorization": "EXPIRE",
        "feedOpposition": "true",
        "consultationOpposition": "false",
    }
    call = sim.td_calls[0]
    assert call.operation == "td0.2" and call.patient_id == c.cx() and call.answer == answer
    other = c.cx(c.OTHER_MATRICULE)
    unknown = c.read(client.call(c.TD02, c.td_request("TestExistenceRequest", other), patient_id=other))
    assert unknown.body.findtext("td:dmpStatus", namespaces=c.NS) == "NON_EXISTANT"


def test_td03_is_recorded_and_grants_the_authorisation(sim: DmpSimulator, client: c.DmpClient) -> None:
    sim.set_patient(c.INS_MATRICULE, c.INS_OID, authorization="NON_EXISTE")
    mark = sim.mark(TdCall)
    reply = c.read(client.call(c.TD03, c.td_request("AddAuthorizationRequest", c.cx())))
    assert reply.body.findtext("td:status", namespaces=c.NS) == "OK"
    call = sim.wait_for(TdCall, mark, 2.0)
    assert call is not None and call.operation == "td0.3" and call.exchange is not None
    state = sim.patient(c.cx())
    assert state is not None and state.authorization == "VALIDE"


# -- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "code", "rule"),
    [
        ("unknown-patient", "XDSUnknownPatientId", "dmp.xds.unknown-patient"),
        ("patient-mismatch", "XDSPatientIdDoesNotMatch", "dmp.xds.patient-id-mismatch"),
        ("opposition", "XDSRegistryError", "dmp.xds.feed-opposition"),
        ("dmp-closed", "XDSRegistryError", "dmp.xds.dmp-status"),
        ("hash", "XDSNonIdenticalHash", "dmp.xds.hash"),
        ("size", "XDSNonIdenticalSize", "dmp.xds.size"),
        ("missing-part", "XDSMissingDocument", "dmp.xds.missing-document"),
    ],
)
def test_registry_refusals_answer_a_failure_and_store_nothing(
    case: str, code: str, rule: str, sim: DmpSimulator, client: c.DmpClient, cda: bytes
) -> None:
    doc = c.Doc(cda)
    kwargs: dict[str, object] = {}
    if case == "unknown-patient":
        sim.reset()
    elif case == "patient-mismatch":
        doc = c.Doc(cda, patient_id=c.cx(c.OTHER_MATRICULE))
        kwargs["set_patient_id"] = c.cx()
    elif case == "opposition":
        sim.set_patient(c.INS_MATRICULE, c.INS_OID, feed_opposition=True)
    elif case == "dmp-closed":
        sim.set_patient(c.INS_MATRICULE, c.INS_OID, dmp_status="FERME")
    elif case == "hash":
        doc = c.Doc(cda, hash="0" * 40)
    elif case == "size":
        doc = c.Doc(cda, size="12")
    elif case == "missing-part":
        kwargs["missing"] = ("Document01",)
    response = client.submit([doc], **kwargs)  # type: ignore[arg-type]
    reply = c.read(response)
    assert response.status_code == 200
    assert reply.status == "Failure" and code in reply.error_codes
    if case == "opposition":
        assert reply.errors[0][1] == "Le patient s'est opposé à l'alimentation de son DMP"
    submission = sim.submissions[-1]
    assert submission.status == "Failure" and not submission.accepted and code in submission.error_codes
    assert rule in rules(submission.findings)
    exchange = last(sim)
    assert exchange.meta["registry"]["status"] == "Failure" and rule in rules(exchange.meta["findings"])
    assert exchange.response == response.content
    assert sim.entries(c.cx()) == []


@pytest.mark.parametrize(
    ("case", "subcode", "rule"),
    [
        ("tampered", "wsse:FailedAuthentication", "dmp.vihf.signature"),
        ("rogue-signer", "wsse:FailedAuthentication", "dmp.vihf.signature"),
        ("expired", "wsse:FailedAuthentication", "dmp.vihf.expired"),
        ("missing-attribute", "wsse:InvalidSecurity", "dmp.vihf.attribute.LPS_Nom"),
        ("missing-resource-id", "wsse:InvalidSecurity", "dmp.vihf.attribute.resource-id"),
        ("unknown-version", "wsse:InvalidSecurity", "dmp.vihf.version"),
        ("wrong-issuer", "wsse:InvalidSecurity", "dmp.vihf.issuer"),
        ("other-patient", "wsse:InvalidSecurity", "dmp.vihf.resource-id"),
        ("no-vihf", "wsse:InvalidSecurity", "dmp.vihf.missing"),
    ],
)
def test_a_bad_vihf_is_a_security_fault_with_its_findings(
    case: str, subcode: str, rule: str, sim: DmpSimulator, client: c.DmpClient, pki: TestPki, cda: bytes
) -> None:
    resource = c.cx()
    options = c.VihfOptions()
    assertion = None
    if case == "tampered":
        assertion = c.tamper(client.assertion(resource))
    elif case == "rogue-signer":
        assertion = c.vihf(pki.rogue, resource)
    elif case == "expired":
        options = c.VihfOptions(valid_from=timedelta(hours=-2), valid_for=timedelta(hours=1))
    elif case == "missing-attribute":
        options = c.VihfOptions(omit=("LPS_Nom",))
    elif case == "missing-resource-id":
        options = c.VihfOptions(omit=("urn:oasis:names:tc:xacml:2.0:resource:resource-id",))
    elif case == "unknown-version":
        options = c.VihfOptions(version="2.5")
    elif case == "wrong-issuer":
        options = c.VihfOptions(issuer="CN=QUELQU'UN D'AUTRE,O=AILLEURS,C=FR")
    elif case == "other-patient":
        assertion = client.assertion(c.cx(c.OTHER_MATRICULE))
    if case == "no-vihf":
        request, parts = c.provide_and_register([c.Doc(cda)])
        content_type, body = c.mtom_frame(c.soap(c.ITI41, sim.url, request, None), parts, c.ITI41)
        response = client.post(content_type, body)
    else:
        response = client.submit([c.Doc(cda)], options=options, assertion=assertion)
    reply = c.read(response)
    assert response.status_code == 400
    code, sub, reason = reply.fault
    assert (code, sub) == ("env:Sender", subcode) and reason
    submission = sim.submissions[-1]
    assert submission.status == "Fault" and rule in rules(submission.vihf_findings)
    exchange = last(sim)
    assert exchange.meta["vihf"]["accepted"] is False and rule in rules(exchange.meta["vihf"]["findings"])
    assert sim.entries(c.cx()) == []


@pytest.mark.parametrize(
    ("options", "rule"),
    [
        (c.VihfOptions(version="4.0"), "dmp.vihf.version"),
        (c.VihfOptions(mode_name="Authentification_mode"), "dmp.vihf.attribute-name"),
    ],
)
def test_tolerated_vihf_variances_are_accepted_with_a_warning(
    options: c.VihfOptions, rule: str, sim: DmpSimulator, client: c.DmpClient, cda: bytes
) -> None:
    reply = c.read(client.submit([c.Doc(cda)], options=options))
    assert reply.status == "Success"
    found = [f for f in sim.submissions[0].vihf_findings if f.rule == rule]
    assert found and all(f.severity is Severity.WARNING for f in found)


def test_a_vihf_signed_by_the_cps_is_accepted_with_a_signer_note(
    sim: DmpSimulator, client: c.DmpClient, pki: TestPki, cda: bytes
) -> None:
    reply = c.read(client.submit([c.Doc(cda)], assertion=c.vihf(pki.cps, c.cx())))
    assert reply.status == "Success"
    assert "dmp.vihf.signer" in rules(sim.submissions[0].vihf_findings)


def _small(pki: TestPki, limit: int) -> DmpSimulator:
    sim = DmpSimulator(pki, max_attachment_bytes=limit).start()
    sim.set_patient(c.INS_MATRICULE, c.INS_OID)
    return sim


def test_an_oversized_attachment_is_a_fault(pki: TestPki) -> None:
    small = _small(pki, 64 * 1024)
    client = c.DmpClient(small.url, pki)
    try:
        big = c.Doc(b"<x>" + b"a" * 100_000 + b"</x>")
        for transport in ("mtom", "inline"):
            reply = c.read(client.submit([big], transport=transport))
            assert reply.http_status == 400 and reply.fault[0] == "env:Sender"
            assert small.submissions[-1].fault == "attachment-too-large"
            assert last(small).meta["fault"] == "attachment-too-large"
        assert small.entries(c.cx()) == []
    finally:
        client.close()
        small.stop()


def test_a_body_above_the_limit_is_refused_without_being_kept(pki: TestPki) -> None:
    small = _small(pki, 64 * 1024)
    client = c.DmpClient(small.url, pki)
    try:
        huge = c.Doc(b"<x>" + b"a" * (3 * 1024 * 1024) + b"</x>")
        reply = c.read(client.submit([huge]))
        assert reply.http_status == 413 and reply.fault[0] == "env:Sender"
        exchange = last(small)
        assert exchange.meta["fault"] == "body-too-large" and exchange.request == b""
        assert "413" in str(exchange.meta["http"]["status"])
    finally:
        client.close()
        small.stop()


@pytest.mark.parametrize(
    ("content_type", "body", "code", "reason"),
    [
        (
            'multipart/related; type="application/xop+xml"; boundary="b1"',
            b"no delimiter here",
            "env:Sender",
            "no-delimiter",
        ),
        (
            'multipart/related; type="application/xop+xml"; boundary="b1"',
            b"--b1\r\nContent-Type: text/xml\r\n\r\n<a/>\r\n",
            "env:Sender",
            "unterminated",
        ),
        ("application/soap+xml", b"this is not XML", "env:Sender", "not-xml"),
        ("application/soap+xml", b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>", "env:Sender", "doctype"),
        (
            "text/xml",
            f'<s:Envelope xmlns:s="{c.SOAP11}"><s:Body><x/></s:Body></s:Envelope>'.encode(),
            "env:VersionMismatch",
            "version-mismatch",
        ),
    ],
)
def test_malformed_input_is_a_fault_and_recorded(
    content_type: str, body: bytes, code: str, reason: str, sim: DmpSimulator, client: c.DmpClient
) -> None:
    response = client.post(content_type, body)
    reply = c.read(response)
    assert reply.status == "Fault" and reply.fault[0] == code
    assert reply.body.findtext(".//{urn:segur-harness:dmp:simulator}reason") == reason
    exchange = last(sim)
    assert exchange.meta["fault"] == reason and exchange.request == body
    layer = "mtom" if content_type.startswith("multipart/") else "soap"
    assert f"dmp.{layer}.{reason}" in rules(exchange.meta["findings"])


def test_an_mtom_submission_with_the_action_only_in_the_content_type_is_refused_for_its_part(
    sim: DmpSimulator, client: c.DmpClient, cda: bytes
) -> None:
    request, _ = c.provide_and_register([c.Doc(cda)])
    envelope = c.soap(c.ITI41, sim.url, request, client.assertion(c.cx()))
    content_type, body = c.mtom_frame(envelope, [], c.ITI41)  # the part is announced, never sent
    reply = c.read(client.post(content_type, body))
    assert reply.error_codes == ["XDSMissingDocument"]
    assert sim.submissions[-1].transport == "mtom"


def test_unknown_action_and_wrong_body(sim: DmpSimulator, client: c.DmpClient) -> None:
    wrong = c.read(client.call("urn:example:nothing", c.find_documents()))
    assert wrong.fault[:2] == ("env:Sender", "wsa:ActionNotSupported")
    mismatch = c.read(client.call(c.ITI41, c.find_documents()))
    assert mismatch.fault[0] == "env:Sender" and sim.submissions[-1].fault == "body-mismatch"


def test_other_paths_and_methods(sim: DmpSimulator, client: c.DmpClient) -> None:
    assert client.http.get(sim.url, timeout=5).status_code == 405
    assert client.http.post(sim.url.replace("/dmp", "/other"), data=b"x", timeout=5).status_code == 404


def test_a_client_without_certificate_is_refused_at_the_tls_handshake(sim: DmpSimulator, pki: TestPki) -> None:
    mark = sim.recorder.mark()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(sim.url, data=b"<x/>", verify=str(pki.ca_bundle_path), timeout=5)
    refused = sim.recorder.wait_for(mark, lambda e: e.protocol == "tls", timeout_s=5)
    assert refused is not None and refused.meta["fault"] == "tls-handshake"


def test_a_rogue_client_certificate_is_refused_at_the_tls_handshake(sim: DmpSimulator, pki: TestPki) -> None:
    with pytest.raises(requests.exceptions.ConnectionError):
        c.DmpClient(sim.url, pki, bundle=pki.rogue).post("application/soap+xml", b"<x/>")


# -- faults ---------------------------------------------------------------------------------------


def test_unavailable_is_http_503_for_the_next_call_only(sim: DmpSimulator, client: c.DmpClient, cda: bytes) -> None:
    sim.set_fault(DmpFaultKind.UNAVAILABLE, count=1)
    first = client.submit([c.Doc(cda)])
    assert first.status_code == 503 and first.headers["Retry-After"] == "30"
    assert sim.submissions[-1].status == "Unavailable" and sim.fault is None
    assert c.read(client.submit([c.Doc(cda)])).status == "Success"


def test_slow_delays_the_answer(sim: DmpSimulator, client: c.DmpClient) -> None:
    sim.set_fault(DmpFault(DmpFaultKind.SLOW, delay_s=0.6))
    started = time.monotonic()
    reply = c.read(client.call(c.TD02, c.td_request("TestExistenceRequest", c.cx())))
    assert time.monotonic() - started >= 0.6 and reply.body.findtext("td:dmpStatus", namespaces=c.NS) == "EXISTANT"
    assert last(sim).meta["delay_s"] == 0.6


def test_soap_fault_is_a_receiver_fault_and_stores_nothing(sim: DmpSimulator, client: c.DmpClient, cda: bytes) -> None:
    sim.set_fault("soap-fault")
    response = client.submit([c.Doc(cda)])
    reply = c.read(response)
    assert response.status_code == 500 and reply.fault[0] == "env:Receiver"
    assert sim.entries(c.cx()) == [] and sim.submissions[-1].fault == "injected-soap-fault"


def test_partial_success_stores_and_warns(sim: DmpSimulator, client: c.DmpClient, cda: bytes) -> None:
    sim.set_fault(DmpFault.PARTIAL_SUCCESS.times(1))
    reply = c.read(client.submit([c.Doc(cda)]))
    assert reply.status == "PartialSuccess"
    assert [(code, severity) for code, _, severity in reply.errors] == [("XDSRegistryError", "Warning")]
    assert len(sim.entries(c.cx())) == 1 and sim.submissions[-1].accepted and sim.fault is None
    assert last(sim).meta["injected"] == "partial-success"


def test_fault_values_are_checked() -> None:
    with pytest.raises(ValueError):
        DmpFault(DmpFaultKind.SLOW, delay_s=-1)
    with pytest.raises(ValueError):
        DmpFault(DmpFaultKind.UNAVAILABLE, count=0)
    with pytest.raises(ValueError):
        DmpFaultKind("nonsense")


# -- records, waiting, validator, life cycle --------------------------------------------------------


def test_exchanges_keep_the_whole_request_with_its_attachment(
    sim: DmpSimulator, client: c.DmpClient, cda: bytes
) -> None:
    response = client.submit([c.Doc(cda)])
    exchange = sim.submissions[0].exchange
    assert exchange is not None and exchange is last(sim)
    assert exchange.simulator == "dmp" and exchange.protocol == "soap12" and exchange.action == c.ITI41
    assert cda in exchange.request and exchange.response == response.content
    assert exchange.meta["mtom"]["parts"][0]["size"] == len(cda)
    assert exchange.tls["client_certificate"] == pki_subject(client)
    json.dumps(exchange.to_dict())
    safe, data = exchange_evidence(exchange)
    assert b"PRIVATE KEY" not in data and safe.meta["vihf"]["accepted"] is True


def pki_subject(client: c.DmpClient) -> str:
    return client.bundle.certificate.subject.rfc4514_string()


def test_wait_for_submission_times_out_promptly_and_wakes_on_arrival(
    sim: DmpSimulator, client: c.DmpClient, cda: bytes
) -> None:
    mark = sim.submission_mark()
    started = time.monotonic()
    assert sim.wait_for_submission(mark, timeout=0.2) is None
    assert time.monotonic() - started < 1.0
    timer = threading.Timer(0.2, lambda: client.submit([c.Doc(cda)]))
    timer.start()
    try:
        arrived = sim.wait_for_submission(mark, timeout=10)
    finally:
        timer.join()
    assert arrived is not None and arrived.accepted and arrived.exchange is not None
    assert arrived.seq == mark + 1


def test_reset_forgets_everything_and_positions_restart(sim: DmpSimulator, client: c.DmpClient, cda: bytes) -> None:
    submit_one(client, sim, cda)
    recorder_mark = sim.recorder.mark()
    sim.set_fault("soap-fault")
    sim.reset()
    assert sim.submissions == [] and sim.recorder.all() == [] and sim.fault is None
    assert sim.patient(c.cx()) is None and sim.entries(c.cx()) == []
    assert sim.submission_mark() == 0 and sim.recorder.mark() == recorder_mark
    sim.set_patient(c.INS_MATRICULE, c.INS_OID)
    submit_one(client, sim, cda)
    assert sim.submissions[0].seq == 1


def test_the_validator_hook_sees_accepted_submissions(pki: TestPki, cda: bytes) -> None:
    seen: list[Submission] = []

    def check(submission: Submission) -> list[Finding]:
        seen.append(submission)
        root = etree.fromstring(submission.documents["Document01"])
        return [warning("test.cda-root", etree.QName(root).localname)]

    with DmpSimulator(pki, validator=check) as dmp:
        dmp.set_patient(c.INS_MATRICULE, c.INS_OID)
        client = c.DmpClient(dmp.url, pki)
        assert c.read(client.submit([c.Doc(cda)])).status == "Success"
        assert c.read(client.submit([c.Doc(cda, hash="0" * 40)])).status == "Failure"
        assert len(seen) == 1
        assert [f.message for f in dmp.submissions[0].validator_findings] == ["ClinicalDocument"]
        assert dmp.submissions[1].validator_findings == []

        def broken(submission: Submission) -> list[Finding]:
            raise RuntimeError("boom")

        dmp.validator = broken
        assert c.read(client.submit([c.Doc(cda)])).status == "Success"
        assert rules(dmp.submissions[2].validator_findings) == {"dmp.validator.crashed"}
        client.close()


def test_concurrent_submissions_are_all_stored(sim: DmpSimulator, pki: TestPki, cda: bytes) -> None:
    def one(_: int) -> str:
        http = c.DmpClient(sim.url, pki)
        try:
            return c.read(http.submit([c.Doc(cda)])).status
        finally:
            http.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(one, range(12)))
    assert statuses == ["Success"] * 12
    assert len(sim.entries(c.cx())) == 12 and [s.seq for s in sim.submissions] == list(range(1, 13))


def test_zeep_transport_can_query(sim: DmpSimulator, client: c.DmpClient, cda: bytes) -> None:
    submit_one(client, sim, cda)
    transport = Transport(session=client.http, timeout=10)
    envelope = etree.fromstring(c.soap(c.ITI18, sim.url, c.find_documents(), client.assertion(c.cx())))
    response = transport.post_xml(
        sim.url, envelope, {"Content-Type": f'application/soap+xml; charset=utf-8; action="{c.ITI18}"'}
    )
    reply = c.read(response)
    assert reply.status == "Success" and len(reply.objects("ExtrinsicObject")) == 1
    assert reply.relates_to == envelope.findtext(f"{{{c.SOAP12}}}Header/{{{c.WSA}}}MessageID")


def test_life_cycle_and_description(pki: TestPki) -> None:
    dmp = DmpSimulator(pki)
    with pytest.raises(RuntimeError):
        _ = dmp.url
    with dmp:
        assert dmp.running and dmp.url.startswith("https://127.0.0.1:") and dmp.url.endswith("/dmp")
        assert dmp.start() is dmp
        described = dmp.describe()
        assert described["actions"]["ITI-41"] == c.ITI41 and described["mutual_tls"] is True
    assert not dmp.running
    dmp.stop()


def test_updates_can_be_waited_for(sim: DmpSimulator, client: c.DmpClient, cda: bytes) -> None:
    _, entry_uuid = submit_one(client, sim, cda)
    mark = sim.mark(Update)
    client.call(c.ITI57, c.status_update(c.cx(), entry_uuid, c.APPROVED, c.DELETED))
    update = sim.wait_for(Update, mark, 2.0)
    assert update is not None and update.new_status == AvailabilityStatus.DELETED.value


@pytest.mark.parametrize(
    "new_status",
    ["urn:asip:ci-sis:2010:StatusType:Archived", "urn:oasis:names:tc:ebxml-regrep:StatusType:Archived"],
)
def test_iti57_archives_an_entry(new_status: str, sim: DmpSimulator, client: c.DmpClient, cda: bytes) -> None:
    _, entry_uuid = submit_one(client, sim, cda)
    reply = c.read(client.call(c.ITI57, c.status_update(c.cx(), entry_uuid, c.APPROVED, new_status)))
    assert reply.status == "Success", reply.errors
    assert sim.entries(c.cx())[0].status is AvailabilityStatus.ARCHIVED
    assert sim.updates[0].new_status == new_status
