"""The reference system's DMP feed on the wire: MTOM ITI-41, XDS metadata, VIHF, ITI-57, the feed rules, defects.

The practice talks to a tiny HTTPS SOAP stub (``tests/dmp_stub.py``, mutual TLS with the
test PKI), not to the DMP simulator: these tests pin what the reference sends, read back
with independent code (requests-toolbelt splits the MTOM package, signxml verifies the
VIHF against the test CA, the harness's XDS validator judges the metadata). Each DMP
defect is shown to change exactly what it says, by doing the same thing with and
without it. A last group drives the running reference system through the control API.
"""

from __future__ import annotations

import base64
import hashlib
import tempfile
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from lxml import etree
from signxml import XMLVerifier
from signxml.verifier import SignatureConfiguration

from harness.pki import TestPki
from harness.reference import DEFAULT_PROFILES
from harness.reference.dmp import DmpOutcome, DmpService
from harness.reference.documents import DocumentService
from harness.reference.identity import Conflict, IdentityService
from harness.reference.launcher import start_reference
from harness.reference.model import Ins, InvalidInput, Patient, Status, Traits
from harness.reference.settings import Clock, EndpointSettings
from harness.reference.soap import LpsIdentity
from harness.reference.store import Store, UnknownDocument
from harness.reference.xds_entry import xds_time
from harness.validators.xds import check_submission
from tests.dmp_stub import NS, DmpStub, Received

ANS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ans"
CDA_XSD = ANS / "TestContenuCDA-3-0" / "infrastructure" / "cda" / "CDA_extended.xsd"
MATRICULE, INS_OID, NIR_OID = "279035121518989", "1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.2"
INS_CX = f"{MATRICULE}^^^&{INS_OID}&ISO^NH"
TRAITS = Traits("PAT-TROIS", ("DOMINIQUE", "MARIE-LOUISE"), "F", "1979-03-28", "63220")
ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ITI57 = "urn:ihe:iti:2010:UpdateDocumentSet"
TD03 = "urn:segur-harness:dmp:td0.3"
RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"
PDF_FORMAT, TEXT_FORMAT = "urn:ihe:iti:xds-sd:pdf:2008", "urn:ihe:iti:xds-sd:text:2008"
DELETED = "urn:asip:ci-sis:2010:StatusType:Deleted"
ALL_HIDDEN = {"masked_to_ps": True, "invisible_to_patient": True, "invisible_to_legal_representatives": True}


class Scheme:
    """The IHE schemes the assertions read (written here again, not imported from the reference)."""

    TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
    CLASS_CODE = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
    FORMAT_CODE = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
    CONFIDENTIALITY = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
    FACILITY = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
    PRACTICE_SETTING = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
    ENTRY_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
    ENTRY_PATIENT = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
    ENTRY_UNIQUE = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
    SET_PATIENT = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
    SET_SOURCE = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
    SET_UNIQUE = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
    SET_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"


# -- building blocks -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki.generate(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def module_stub(pki: TestPki) -> Iterator[DmpStub]:
    with DmpStub(pki) as stub:
        yield stub


@pytest.fixture
def stub(module_stub: DmpStub) -> DmpStub:
    module_stub.reset()
    return module_stub


def dmp_config(url: str, pki: TestPki) -> dict[str, str]:
    return {
        "url": url,
        "ca_pem": pki.ca_bundle_pem.decode("ascii"),
        "client_cert_pem": pki.organisation.chain_pem.decode("ascii"),
        "client_key_pem": pki.organisation.key_pem.decode("ascii"),
    }


Practice = Callable[..., DmpService]


@pytest.fixture
def practice(tmp_path: Path, stub: DmpStub, pki: TestPki) -> Practice:
    """A factory: the practice's DMP service (with defects), pointed at the stub unless told otherwise."""

    def make(*defects: str, configured: bool = True) -> DmpService:
        store = Store(tmp_path / f"reference-{uuid.uuid4().hex}.sqlite")
        settings = EndpointSettings(store, tmp_path / uuid.uuid4().hex)
        if configured:
            settings.apply({"dmp": dmp_config(stub.url, pki)})
        lps = LpsIdentity("Cabinet Témoin", "test", "instance", "IDAM")
        identities = IdentityService(
            store, Clock(store), settings, lps, DEFAULT_PROFILES, frozenset(defects), call_timeout_s=5.0
        )
        return DmpService(DocumentService(identities))

    return make


def add_patient(service: DmpService, status: Status = Status.QUAL) -> Patient:
    ins = Ins(MATRICULE, INS_OID) if status.has_insi else None
    document = "CN" if status in (Status.QUAL, Status.VALI) else ""
    return service.store.create_patient(lambda pid: Patient(pid, TRAITS, status, ins, document))


def produced(service: DmpService, patient: Patient, **body: Any) -> tuple[str, bytes]:
    """Produce a document (11488-4 unless told) and return its id and CDA."""
    document = service.documents.produce(patient.id, {"type_code": "11488-4", **body})
    return document.document_id, document.cda


def entry_of(received: Received) -> etree._Element:
    entries = received.findall(".//rim:ExtrinsicObject")
    assert len(entries) == 1
    return entries[0]


def slot(obj: etree._Element, name: str) -> list[str]:
    return [v.text or "" for v in obj.findall(f"rim:Slot[@name='{name}']/rim:ValueList/rim:Value", NS)]


def codes(obj: etree._Element, scheme: str) -> list[tuple[str, str]]:
    """(code, codingScheme) of every classification of ``scheme``."""
    return [
        (c.get("nodeRepresentation", ""), (slot(c, "codingScheme") or [""])[0])
        for c in obj.findall(f"rim:Classification[@classificationScheme='{scheme}']", NS)
    ]


def external(obj: etree._Element, scheme: str) -> str:
    found = obj.find(f"rim:ExternalIdentifier[@identificationScheme='{scheme}']", NS)
    return "" if found is None else found.get("value", "")


def associations(received: Received, kind: str) -> list[etree._Element]:
    return [a for a in received.findall(".//rim:Association") if a.get("associationType") == kind]


def attribute(assertion: etree._Element, name: str) -> etree._Element:
    value = assertion.find(f"saml:AttributeStatement/saml:Attribute[@Name='{name}']/saml:AttributeValue", NS)
    assert value is not None, f"no VIHF attribute {name}"
    return value


def cda_time(cda: bytes, path: str) -> str:
    found = etree.fromstring(cda).find(path, NS)
    assert found is not None, path
    return found.get("value", "")


def sent(outcome: DmpOutcome) -> None:
    assert outcome.result == "sent", outcome


# -- the conforming feed ----------------------------------------------------------------------------


def test_validation_feeds_the_dmp_with_an_mtom_iti41_over_mutual_tls(practice: Practice, stub: DmpStub) -> None:
    service = practice()
    patient = add_patient(service)
    document_id, cda = produced(service, patient)
    sent(service.validate(patient.id, document_id))
    [request] = stub.received
    assert request.action == ITI41
    media, *params = [p.strip() for p in request.content_type.split(";")]
    assert media == "multipart/related"
    assert 'type="application/xop+xml"' in params and 'start-info="application/soap+xml"' in params
    assert any(p.startswith("start=") for p in params)
    assert request.root_content_type.startswith("application/xop+xml")
    assert 'type="application/soap+xml"' in request.root_content_type
    entry = entry_of(request)
    assert request.document(entry.get("id", "")) == cda  # the MTOM part is the CDA, byte for byte
    assert request.find(".//xdsb:Document/xop:Include") is not None and len(request.parts) == 1
    assert request.client_cert_pem and "CENTRE DE SANTE DU TEST" in _subject(request.client_cert_pem)
    header = request.find("soap:Header")
    assert header is not None
    assert header.findtext("wsa:MessageID", namespaces=NS).startswith("urn:uuid:")
    assert header.findtext("wsa:To", namespaces=NS) == stub.url
    assert header.find("wsa:ReplyTo/wsa:Address", NS) is not None
    trace = service.store.list_traces()[-1]
    assert (trace["service"], trace["return_code"], trace["message_id"]) == (
        "DMP",
        "Success",
        header.findtext("wsa:MessageID", namespaces=NS),
    )


def _subject(pem: str) -> str:
    return x509.load_pem_x509_certificate(pem.encode()).subject.rfc4514_string()


def test_the_entry_and_submission_set_carry_the_dmp_metadata(practice: Practice, stub: DmpStub) -> None:
    service = practice()
    patient = add_patient(service)
    document_id, cda = produced(service, patient)
    sent(service.validate(patient.id, document_id))
    [request] = stub.received
    entry = entry_of(request)
    assert entry.get("mimeType") == "text/xml"
    assert entry.get("objectType") == "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
    assert codes(entry, Scheme.TYPE_CODE) == [("11488-4", "2.16.840.1.113883.6.1")]
    assert codes(entry, Scheme.CLASS_CODE) == [("10", "1.2.250.1.213.1.1.4.1")]
    assert codes(entry, Scheme.FORMAT_CODE) == [(PDF_FORMAT, "1.3.6.1.4.1.19376.1.2.3")]
    assert codes(entry, Scheme.CONFIDENTIALITY) == [("N", "2.16.840.1.113883.5.25")]
    assert codes(entry, Scheme.FACILITY) == [("SA07", "1.2.250.1.71.4.2.4")]
    assert codes(entry, Scheme.PRACTICE_SETTING) == [("AMBULATOIRE", "1.2.250.1.213.1.1.4.9")]
    [author] = entry.findall(f"rim:Classification[@classificationScheme='{Scheme.ENTRY_AUTHOR}']", NS)
    assert slot(author, "authorPerson") == ["899700012345^TEMOIN^Camille^^^^^^&1.2.250.1.71.4.2.1&ISO"]
    assert slot(author, "authorInstitution")[0].endswith("&1.2.250.1.71.4.2.2&ISO^IDNST^^^312345678900017")
    assert slot(author, "authorSpecialty")[0].startswith("G15_10/SM54^")
    effective = cda_time(cda, "hl7:effectiveTime")
    assert slot(entry, "creationTime") == [xds_time(effective)]
    assert xds_time(effective) == datetime.strptime(effective, "%Y%m%d%H%M%S%z").astimezone(UTC).strftime(
        "%Y%m%d%H%M%S"
    )
    low = cda_time(cda, "hl7:documentationOf/hl7:serviceEvent/hl7:effectiveTime/hl7:low")
    assert slot(entry, "serviceStartTime") == slot(entry, "serviceStopTime") == [xds_time(low)]
    assert slot(entry, "hash") == [hashlib.sha1(cda).hexdigest()] and slot(entry, "size") == [str(len(cda))]
    assert slot(entry, "languageCode") == ["fr-FR"]
    assert slot(entry, "sourcePatientId") == [f"{patient.id}^^^&{service.catalog.practice.ipp_oid}&ISO^PI"]
    assert external(entry, Scheme.ENTRY_PATIENT) == INS_CX
    assert external(entry, Scheme.ENTRY_UNIQUE) == document_id
    package = request.find(".//rim:RegistryPackage")
    assert package is not None
    assert external(package, Scheme.SET_PATIENT) == INS_CX
    assert external(package, Scheme.SET_SOURCE) == service.catalog.practice.oid
    assert external(package, Scheme.SET_UNIQUE).startswith("2.25.")
    assert len(slot(package, "submissionTime")[0]) == 14
    assert codes(package, Scheme.SET_CONTENT_TYPE) == [("SA07", "1.2.250.1.71.4.2.4")]
    [member] = associations(request, "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember")
    assert (member.get("sourceObject"), member.get("targetObject")) == (package.get("id"), entry.get("id"))
    assert associations(request, RPLC) == []
    submission = request.find(".//xdsb:ProvideAndRegisterDocumentSetRequest")
    assert submission is not None
    findings = check_submission(submission, {entry.get("id", ""): cda}, expected_ins=(MATRICULE, INS_OID))
    assert [f"{f.rule}: {f.message}" for f in findings if f.severity.value == "error"] == []


def test_the_vihf_is_signed_with_the_organisation_certificate_and_says_who_and_for_whom(
    practice: Practice, stub: DmpStub, pki: TestPki
) -> None:
    service = practice()
    patient = add_patient(service)
    document_id, _ = produced(service, patient)
    sent(service.validate(patient.id, document_id))
    assertion = stub.received[0].assertion
    assert assertion[1].tag == f"{{{NS['ds']}}}Signature"  # right after Issuer
    verified = XMLVerifier().verify(
        etree.tostring(assertion), ca_pem_file=str(pki.ca_bundle_path), expect_config=SignatureConfiguration()
    )
    signed = verified.signed_xml
    assert signed is not None and etree.QName(signed).localname == "Assertion"
    assert signed.findtext("saml:Issuer", namespaces=NS) == pki.organisation.subject
    assert signed.findtext("saml:Subject/saml:NameID", namespaces=NS) == "899700012345"
    conditions = signed.find("saml:Conditions", NS)
    assert conditions is not None
    now = datetime.now(UTC)
    not_after = datetime.strptime(conditions.get("NotOnOrAfter", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert now < not_after <= now + timedelta(minutes=10)
    assert signed.find("saml:AuthnStatement/saml:AuthnContext/saml:AuthnContextClassRef", NS) is not None
    for name, value in (
        ("VIHF_Version", "3.0"),
        ("Authentification_Mode", "INDIRECTE"),
        ("Identifiant_Structure", "1990000010"),
        ("Secteur_Activite", "SA07^1.2.250.1.71.4.2.4"),
        ("urn:oasis:names:tc:xacml:2.0:resource:resource-id", INS_CX),
        ("Ressource_URN", "urn:dmp"),
        ("LPS_Nom", "Cabinet Témoin"),
    ):
        assert attribute(signed, name).text == value, name
    assert attribute(signed, "urn:oasis:names:tc:xspa:1.0:subject:subject-id").text
    role = attribute(signed, "urn:oasis:names:tc:xacml:2.0:subject:role").find("hl7:Role", NS)
    assert role is not None and (role.get("code"), role.get("codeSystem")) == ("10", "1.2.250.1.213.1.1.4.5")
    assert role.get(f"{{{'http://www.w3.org/2001/XMLSchema-instance'}}}type") == "CE"
    purpose = attribute(signed, "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse").find("hl7:PurposeOfUse", NS)
    assert purpose is not None and purpose.get("code") == "normal"


def test_visibility_settings_become_masking_codes_at_the_next_feed(practice: Practice, stub: DmpStub) -> None:
    service = practice()
    patient = add_patient(service)
    document_id, _ = produced(service, patient)
    service.set_visibility(patient.id, document_id, ALL_HIDDEN)
    sent(service.validate(patient.id, document_id))
    masking = "1.2.250.1.213.1.1.4.13"
    assert codes(entry_of(stub.received[0]), Scheme.CONFIDENTIALITY) == [
        ("N", "2.16.840.1.113883.5.25"),
        ("MASQUE_PS", masking),
        ("INVISIBLE_PATIENT", masking),
        ("INVISIBLE_REPRESENTANTS_LEGAUX", masking),
    ]
    with pytest.raises(InvalidInput, match="must be true or false"):
        service.set_visibility(patient.id, document_id, {"masked_to_ps": "yes"})
    with pytest.raises(UnknownDocument):
        service.set_visibility(patient.id, "1.2.3", ALL_HIDDEN)


def test_a_historical_document_is_sent_with_its_act_date(practice: Practice, stub: DmpStub) -> None:
    service = practice()
    patient = add_patient(service)
    document_id, cda = produced(service, patient, act_date="2021-06-14")
    assert cda_time(cda, "hl7:documentationOf/hl7:serviceEvent/hl7:effectiveTime/hl7:low") == "20210614"
    assert cda_time(cda, "hl7:documentationOf/hl7:serviceEvent/hl7:effectiveTime/hl7:high") == "20210614"
    assert cda_time(cda, "hl7:effectiveTime").startswith(datetime.now(UTC).strftime("%Y"))  # still the production
    sent(service.act(patient.id, document_id, {"action": "send"}))
    entry = entry_of(stub.received[0])
    assert slot(entry, "serviceStartTime") == slot(entry, "serviceStopTime") == ["20210614"]
    assert service.act(patient.id, document_id, {"action": "send"}).result == "not-sent"  # already there
    assert len(stub.received) == 1


@pytest.mark.parametrize("act_date", ["2021-13-01", "14/06/2021", 20210614, "2999-01-01"])
def test_a_bad_act_date_is_refused(practice: Practice, act_date: Any) -> None:
    service = practice()
    with pytest.raises(InvalidInput, match="act_date"):
        produced(service, add_patient(service), act_date=act_date)


def test_a_document_with_an_act_date_or_replacing_another_is_valid_against_the_ans_cda_schema(
    practice: Practice, stub: DmpStub
) -> None:
    if not CDA_XSD.is_file():
        pytest.skip(f"ANS CDA schema not found at {CDA_XSD}")
    schema = etree.XMLSchema(etree.parse(str(CDA_XSD)))
    service = practice()
    patient = add_patient(service)
    document_id, cda = produced(service, patient, act_date="2021-06-14")
    replacement = service.documents.new_version(patient.id, document_id)
    for content in (cda, replacement.cda):
        assert schema.validate(etree.fromstring(content)), schema.error_log


def test_delete_is_an_iti57_status_change_to_deleted(practice: Practice, stub: DmpStub) -> None:
    service = practice()
    patient = add_patient(service)
    document_id, _ = produced(service, patient)
    sent(service.validate(patient.id, document_id))
    entry_uuid = entry_of(stub.received[0]).get("id")
    sent(service.act(patient.id, document_id, {"action": "delete"}))
    deletion = stub.received[1]
    assert deletion.action == ITI57 and deletion.content_type.startswith("application/soap+xml")
    assert deletion.find("soap:Body/lcm:SubmitObjectsRequest") is not None
    [change] = associations(deletion, "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus")
    package = deletion.find(".//rim:RegistryPackage")
    assert package is not None and change.get("sourceObject") == package.get("id")
    assert change.get("targetObject") == entry_uuid
    assert slot(change, "OriginalStatus") == ["urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"]
    assert slot(change, "NewStatus") == [DELETED]
    assert external(package, Scheme.SET_PATIENT) == INS_CX
    assert attribute(deletion.assertion, "urn:oasis:names:tc:xacml:2.0:resource:resource-id").text == INS_CX
    assert service.act(patient.id, document_id, {"action": "delete"}).result == "not-sent"  # nothing left
    assert stub.actions() == [ITI41, ITI57]


def test_replace_sends_a_new_version_with_an_rplc_association(practice: Practice, stub: DmpStub) -> None:
    service = practice()
    patient = add_patient(service)
    document_id, cda = produced(service, patient)
    assert service.act(patient.id, document_id, {"action": "replace"}).result == "not-sent"  # nothing sent yet
    sent(service.validate(patient.id, document_id))
    first = entry_of(stub.received[0]).get("id")
    sent(service.act(patient.id, document_id, {"action": "replace"}))
    replacement = stub.received[1]
    assert replacement.action == ITI41
    entry = entry_of(replacement)
    [rplc] = associations(replacement, RPLC)
    assert (rplc.get("sourceObject"), rplc.get("targetObject")) == (entry.get("id"), first)
    new_cda = replacement.document(entry.get("id", ""))
    new_id = external(entry, Scheme.ENTRY_UNIQUE)
    assert new_id != document_id
    old, new = etree.fromstring(cda), etree.fromstring(new_cda)
    assert new.find("hl7:setId", NS).get("root") == old.find("hl7:setId", NS).get("root")
    assert new.find("hl7:versionNumber", NS).get("value") == "2"
    parent = new.find("hl7:relatedDocument[@typeCode='RPLC']/hl7:parentDocument/hl7:id", NS)
    assert parent is not None and parent.get("root") == document_id
    sent(service.act(patient.id, document_id, {"action": "replace"}))  # replaces the current version, v2
    [again] = associations(stub.received[2], RPLC)
    assert again.get("targetObject") == entry.get("id")
    sent(service.act(patient.id, new_id, {"action": "delete"}))  # any version names the same document
    [change] = associations(stub.received[3], "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus")
    assert change.get("targetObject") == entry_of(stub.received[2]).get("id")
    assert TD03 not in stub.actions()


def test_no_feed_for_an_identity_that_is_not_qualified(practice: Practice, stub: DmpStub) -> None:
    service = practice()
    for status in (Status.PROV, Status.VALI, Status.RECUP):
        patient = add_patient(service, status)
        document_id, _ = produced(service, patient)
        outcome = service.validate(patient.id, document_id)
        assert outcome.result == "not-sent" and "not qualified" in outcome.detail, outcome
        assert service.act(patient.id, document_id, {"action": "send"}).result == "not-sent"
    assert stub.received == []


def test_no_feed_when_the_patient_opposed_it(practice: Practice, stub: DmpStub) -> None:
    service = practice()
    patient = add_patient(service)
    document_id, _ = produced(service, patient)
    service.set_consent(patient.id, {"feed_opposition": True, "consultation_opposition": False})
    outcome = service.validate(patient.id, document_id)
    assert outcome == DmpOutcome("not-sent", "the patient opposed the feed of their DMP")
    assert stub.received == []
    service.set_consent(patient.id, {"feed_opposition": False, "consultation_opposition": True})
    sent(service.act(patient.id, document_id, {"action": "send"}))
    with pytest.raises(InvalidInput):
        service.set_consent(patient.id, {"feed_opposition": True})


def test_a_refusal_by_the_dmp_is_reported_with_its_code_and_context(practice: Practice, stub: DmpStub) -> None:
    service = practice()
    patient = add_patient(service)
    document_id, _ = produced(service, patient)
    stub.failure = ("XDSRegistryError", "Le patient s'est opposé à l'alimentation de son DMP")
    outcome = service.validate(patient.id, document_id)
    assert outcome.result == "failed"
    assert "XDSRegistryError" in outcome.detail and "opposé" in outcome.detail
    assert service.store.list_traces()[-1]["errors"][0]["code"] == "XDSRegistryError"
    stub.failure = None
    sent(service.act(patient.id, document_id, {"action": "send"}))  # not recorded as sent the first time


def test_without_a_dmp_endpoint_a_due_feed_is_a_conflict(practice: Practice) -> None:
    service = practice(configured=False)
    patient = add_patient(service)
    document_id, _ = produced(service, patient)
    with pytest.raises(Conflict, match="no DMP endpoint"):
        service.validate(patient.id, document_id)
    unqualified = add_patient(service, Status.VALI)  # nothing due: no need of an endpoint to say so
    other_id, _ = produced(service, unqualified)
    assert service.validate(unqualified.id, other_id).result == "not-sent"


def test_an_unreachable_dmp_is_a_failure_not_a_hang(practice: Practice, pki: TestPki) -> None:
    service = practice(configured=False)
    service.identities.endpoints.apply({"dmp": dmp_config("https://127.0.0.1:9/dmp", pki)})
    patient = add_patient(service)
    document_id, _ = produced(service, patient)
    outcome = service.validate(patient.id, document_id)
    assert outcome.result == "failed" and "unreachable" in outcome.detail


def test_imported_documents_and_unknown_actions_are_refused(practice: Practice) -> None:
    service = practice()
    patient = add_patient(service)
    foreign = (
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="1.2.3.4"/><code code="11502-2"/>'
        b'<effectiveTime value="20240101"/></ClinicalDocument>'
    )
    service.documents.import_document(patient.id, {"cda_base64": base64.b64encode(foreign).decode()})
    with pytest.raises(Conflict, match="not produced"):
        service.validate(patient.id, "1.2.3.4")
    document_id, _ = produced(service, patient)
    with pytest.raises(InvalidInput, match="action"):
        service.act(patient.id, document_id, {"action": "archive"})


# -- each defect changes exactly what it says ----------------------------------------------------------


def feed(service: DmpService, stub: DmpStub, **body: Any) -> tuple[DmpOutcome, Received | None]:
    """Validate a new document of a new qualified patient; the outcome and the ITI-41 sent, if any."""
    stub.reset()
    patient = add_patient(service)
    document_id, _ = produced(service, patient, **body)
    service.set_visibility(patient.id, document_id, ALL_HIDDEN)
    outcome = service.validate(patient.id, document_id)
    feeds = [r for r in stub.received if r.action == ITI41]
    return outcome, feeds[0] if feeds else None


def test_defect_dmp_wrong_format_code(practice: Practice, stub: DmpStub) -> None:
    for defects, expected in (((), PDF_FORMAT), (("dmp-wrong-format-code",), TEXT_FORMAT)):
        _, request = feed(practice(*defects), stub)
        assert request is not None
        assert [code for code, _ in codes(entry_of(request), Scheme.FORMAT_CODE)] == [expected]


def test_defect_dmp_no_masking_code(practice: Practice, stub: DmpStub) -> None:
    _, request = feed(practice("dmp-no-masking-code"), stub)
    assert request is not None
    assert codes(entry_of(request), Scheme.CONFIDENTIALITY) == [("N", "2.16.840.1.113883.5.25")]
    assert codes(entry_of(request), Scheme.FORMAT_CODE)[0][0] == PDF_FORMAT  # nothing else changed


def test_defect_dmp_feeds_despite_opposition(practice: Practice, stub: DmpStub) -> None:
    for defects, result in (((), "not-sent"), (("dmp-feeds-despite-opposition",), "sent")):
        service = practice(*defects)
        stub.reset()
        patient = add_patient(service)
        service.set_consent(patient.id, {"feed_opposition": True, "consultation_opposition": False})
        document_id, _ = produced(service, patient)
        assert service.validate(patient.id, document_id).result == result
        assert stub.actions() == ([ITI41] if result == "sent" else [])


def test_defect_dmp_requests_authorisation(practice: Practice, stub: DmpStub) -> None:
    for defects, expected in (((), [ITI41, ITI57]), (("dmp-requests-authorisation",), [TD03, ITI41, TD03, ITI57])):
        service = practice(*defects)
        stub.reset()
        patient = add_patient(service)
        document_id, _ = produced(service, patient)
        sent(service.validate(patient.id, document_id))
        sent(service.act(patient.id, document_id, {"action": "delete"}))
        assert stub.actions() == expected
    authorisation = stub.received[0].find("soap:Body/td:AddAuthorizationRequest/td:patientId")
    assert authorisation is not None and authorisation.text == INS_CX


def test_defect_dmp_historical_sending_date(practice: Practice, stub: DmpStub) -> None:
    _, request = feed(practice(), stub, act_date="2021-06-14")
    assert request is not None and slot(entry_of(request), "serviceStartTime") == ["20210614"]
    _, request = feed(practice("dmp-historical-sending-date"), stub, act_date="2021-06-14")
    assert request is not None
    entry = entry_of(request)
    cda = request.document(entry.get("id", ""))
    low = cda_time(cda, "hl7:documentationOf/hl7:serviceEvent/hl7:effectiveTime/hl7:low")
    assert low == cda_time(cda, "hl7:effectiveTime")  # the day it is made and sent, not 2021-06-14
    assert slot(entry, "serviceStartTime") == [xds_time(low)]
    assert slot(entry, "serviceStartTime")[0][:8] == datetime.now(UTC).strftime("%Y%m%d")


def test_defect_dmp_patient_id_wrong_oid(practice: Practice, stub: DmpStub) -> None:
    _, request = feed(practice("dmp-patient-id-wrong-oid"), stub)
    assert request is not None
    wrong = f"{MATRICULE}^^^&{NIR_OID}&ISO^NH"
    package = request.find(".//rim:RegistryPackage")
    assert package is not None
    assert external(entry_of(request), Scheme.ENTRY_PATIENT) == external(package, Scheme.SET_PATIENT) == wrong
    assert attribute(request.assertion, "urn:oasis:names:tc:xacml:2.0:resource:resource-id").text == wrong


def test_defect_dmp_unsigned_vihf(practice: Practice, stub: DmpStub) -> None:
    _, request = feed(practice("dmp-unsigned-vihf"), stub)
    assert request is not None
    assertion = request.assertion
    assert assertion.find("ds:Signature", NS) is None
    assert attribute(assertion, "Authentification_Mode").text == "INDIRECTE"  # the rest is there


def test_defect_dmp_expired_vihf(practice: Practice, stub: DmpStub, pki: TestPki) -> None:
    _, request = feed(practice("dmp-expired-vihf"), stub)
    assert request is not None
    conditions = request.assertion.find("saml:Conditions", NS)
    assert conditions is not None
    not_after = datetime.strptime(conditions.get("NotOnOrAfter", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert not_after < datetime.now(UTC) - timedelta(minutes=30)
    XMLVerifier().verify(etree.tostring(request.assertion), ca_pem_file=str(pki.ca_bundle_path))  # still signed


def test_defect_dmp_feeds_unqualified(practice: Practice, stub: DmpStub) -> None:
    for defects, result in (((), "not-sent"), (("dmp-feeds-unqualified",), "sent")):
        service = practice(*defects)
        stub.reset()
        patient = add_patient(service, Status.VALI)
        document_id, _ = produced(service, patient)
        assert service.validate(patient.id, document_id).result == result
    ipp = f"{patient.id}^^^&{service.catalog.practice.ipp_oid}&ISO^PI"
    assert external(entry_of(stub.received[0]), Scheme.ENTRY_PATIENT) == ipp
    feed(service, stub)  # a qualified identity still goes by its INS
    assert external(entry_of(stub.received[0]), Scheme.ENTRY_PATIENT) == INS_CX


def test_defect_dmp_delete_local_only(practice: Practice, stub: DmpStub) -> None:
    service = practice("dmp-delete-local-only")
    patient = add_patient(service)
    document_id, _ = produced(service, patient)
    sent(service.validate(patient.id, document_id))
    sent(service.act(patient.id, document_id, {"action": "delete"}))  # says it deleted
    assert stub.actions() == [ITI41]  # but never told the DMP


def test_defect_dmp_replace_without_rplc(practice: Practice, stub: DmpStub) -> None:
    service = practice("dmp-replace-without-rplc")
    patient = add_patient(service)
    document_id, _ = produced(service, patient)
    sent(service.validate(patient.id, document_id))
    sent(service.act(patient.id, document_id, {"action": "replace"}))
    assert stub.actions() == [ITI41, ITI41]
    assert associations(stub.received[1], RPLC) == []
    assert external(entry_of(stub.received[1]), Scheme.ENTRY_UNIQUE) != document_id  # a new document all the same


def test_defect_dmp_no_auto_feed(practice: Practice, stub: DmpStub) -> None:
    service = practice("dmp-no-auto-feed")
    patient = add_patient(service)
    document_id, _ = produced(service, patient)
    assert service.validate(patient.id, document_id).result == "not-sent"
    assert stub.received == []
    sent(service.act(patient.id, document_id, {"action": "send"}))  # an explicit send still works


# -- through the control API ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="reference-dmp-") as folder, start_reference(Path(folder)) as ref:
        yield ref.url


def test_validate_and_consent_through_the_control_api(
    reference: str, stub: DmpStub, pki: TestPki, tmp_path: Path
) -> None:
    from harness.plugin.fixtures import insi_endpoint_config
    from harness.simulators.insi import InsiSimulator

    session = requests.Session()
    session.trust_env = False

    def call(method: str, path: str, body: Any = None) -> requests.Response:
        return session.request(method, f"{reference}{path}", json=body, timeout=30)

    assert "dmp" in call("GET", "/capabilities").json()["capabilities"]
    with InsiSimulator(pki) as insi:
        config = insi_endpoint_config(insi.url, pki).to_json()
        assert call("PUT", "/config/endpoints", {**config, "dmp": dmp_config(stub.url, pki)}).status_code == 204
        identity = insi.base.named("with-history")
        traits = {
            "birth_name": identity.birth_name,
            "first_names": list(identity.first_names),
            "sex": identity.sex,
            "birth_date": identity.birth_date,
            "birthplace_cog": identity.birthplace,
        }
        patient = call("POST", "/patients", {"traits": traits, "identity_document": "CN"}).json()["id"]
        assert call("POST", f"/patients/{patient}/ins/search", {"mode": "traits"}).json()["patient"]["status"] == "QUAL"
    document = call("POST", f"/patients/{patient}/documents", {"type_code": "11488-4", "act_date": "2022-02-02"})
    assert document.status_code == 201, document.text
    document_id = document.json()["document_id"]
    base = f"/patients/{patient}/documents/{document_id}"
    assert (
        call(
            "PUT", f"/patients/{patient}/dmp-consent", {"feed_opposition": True, "consultation_opposition": False}
        ).status_code
        == 204
    )
    opposed = call("POST", f"{base}/validate")
    assert opposed.status_code == 200 and opposed.json() == {
        "dmp": "not-sent",
        "detail": "the patient opposed the feed of their DMP",
    }
    assert stub.received == []
    call("PUT", f"/patients/{patient}/dmp-consent", {"feed_opposition": False, "consultation_opposition": False})
    assert call("PUT", f"{base}/visibility", ALL_HIDDEN).status_code == 204
    answer = call("POST", f"{base}/validate")
    assert answer.status_code == 200 and answer.json()["dmp"] == "sent", answer.text
    [request] = stub.received
    entry = entry_of(request)
    assert external(entry, Scheme.ENTRY_PATIENT) == f"{identity.matricule}^^^&{identity.oid}&ISO^NH"
    assert slot(entry, "serviceStartTime") == ["20220202"] and len(codes(entry, Scheme.CONFIDENTIALITY)) == 4
    assert call("POST", f"{base}/dmp", {"action": "delete"}).json()["dmp"] == "sent"
    assert stub.actions() == [ITI41, ITI57]
    traces = [t for t in call("GET", "/traces").json()["items"] if t["service"] == "DMP"]
    assert [t["return_code"] for t in traces] == ["Success", "Success"]
    # the error conventions
    assert call("POST", f"/patients/{patient}/documents/1.2.3/validate").status_code == 404
    assert call("POST", f"/patients/nobody/documents/{document_id}/validate").status_code == 404
    assert call("POST", f"{base}/dmp", {"action": "archive"}).status_code == 422
    assert call("PUT", f"{base}/visibility", {"masked_to_ps": 1}).status_code == 422
    assert call("PUT", f"/patients/{patient}/dmp-consent", []).status_code == 422
    assert (
        call(
            "PUT", "/patients/nobody/dmp-consent", {"feed_opposition": True, "consultation_opposition": True}
        ).status_code
        == 404
    )
    assert (
        call("POST", f"/patients/{patient}/documents", {"type_code": "11488-4", "act_date": "tomorrow"}).status_code
        == 422
    )
