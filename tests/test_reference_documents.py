"""The reference system's CI-SIS documents: CDA R2 headers, PDF/A-1b, INS DataMatrix, import, listing, defects.

The conforming documents are checked against the ANS CDA schema (``CDA_extended.xsd``
from the ANS reference data beside the repository, skipped when it is absent) and read
back with independent libraries: pikepdf for the PDF, zxing-cpp for the DataMatrix. Each
document defect is shown to change exactly what it says, by building the same document
with and without it. A last group drives the running reference system through the control API.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pikepdf
import pytest
import requests
import zxingcpp
from lxml import etree
from pikepdf.models.metadata import decode_pdf_date

from harness.reference import DEFAULT_PROFILES, vsm
from harness.reference.cda import Header, n1_document
from harness.reference.datamatrix import ins_payload
from harness.reference.doctypes import load_catalog
from harness.reference.documents import DocumentService, iso_time, local_zone, pdf_file_name
from harness.reference.identity import Conflict, IdentityService
from harness.reference.launcher import start_reference
from harness.reference.model import Ins, InvalidInput, Patient, Status, Traits
from harness.reference.nir import is_valid_matricule, nir_key
from harness.reference.pdfa import PrintedDocument, build_pdf
from harness.reference.settings import Clock, EndpointSettings
from harness.reference.soap import LpsIdentity
from harness.reference.store import Store

ANS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ans"
CDA_XSD = ANS / "TestContenuCDA-3-0" / "infrastructure" / "cda" / "CDA_extended.xsd"
NS = {"cda": "urn:hl7-org:v3"}
TEST_INS_OID = "1.2.250.1.213.1.4.10"
MATRICULE = "279035121518989"
N1_TYPES = ("11488-4", "11490-0", "57833-6", "57832-8", "60591-5")
TRAITS = Traits("PAT-TROIS", ("DOMINIQUE", "MARIE-LOUISE"), "F", "1979-03-28", "63220", "DURAND", "DOMI")
STYLESHEET = b'<xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0"/>'


# -- building blocks -----------------------------------------------------------------------------


def documents(
    tmp_path: Path, defects: frozenset[str] = frozenset(), profiles: tuple[str, ...] = DEFAULT_PROFILES
) -> DocumentService:
    store = Store(tmp_path / f"reference-{uuid.uuid4().hex}.sqlite")
    lps = LpsIdentity("Cabinet Témoin", "test", "instance", "IDAM")
    identities = IdentityService(store, Clock(store), EndpointSettings(store, tmp_path), lps, profiles, defects, 5.0)
    return DocumentService(identities)


def add_patient(service: DocumentService, status: Status = Status.QUAL, traits: Traits = TRAITS) -> Patient:
    ins = Ins(MATRICULE, TEST_INS_OID) if status.has_insi else None
    return service.store.create_patient(
        lambda pid: Patient(pid, traits, status, ins, "CN" if status is Status.QUAL else "")
    )


def xml(content: bytes) -> etree._Element:
    return etree.fromstring(content)


def embedded_pdf(document: etree._Element) -> bytes:
    text = document.find("cda:component/cda:nonXMLBody/cda:text", NS)
    assert text is not None and text.get("mediaType") == "application/pdf" and text.get("representation") == "B64"
    return base64.b64decode(text.text or "")


def ins_ids(document: etree._Element) -> list[etree._Element]:
    return [
        i
        for i in document.findall("cda:recordTarget/cda:patientRole/cda:id", NS)
        if i.get("root", "").startswith("1.2.250.1.213.1.4.")
    ]


def images(pdf: bytes) -> list[pikepdf.PdfImage]:
    with pikepdf.open(io.BytesIO(pdf)) as opened:
        found = []
        for page in opened.pages:
            for _, xobject in page.get_images().items():
                found.append(pikepdf.PdfImage(xobject).as_pil_image())
        return found


@pytest.fixture(scope="module")
def cda_schema() -> etree.XMLSchema:
    if not CDA_XSD.is_file():
        pytest.skip(f"ANS CDA schema not found at {CDA_XSD}")
    return etree.XMLSchema(etree.parse(str(CDA_XSD)))


@pytest.fixture
def service(tmp_path: Path) -> DocumentService:
    return documents(tmp_path)


# -- conforming documents ------------------------------------------------------------------------


@pytest.mark.parametrize("type_code", N1_TYPES)
def test_each_n1_document_is_valid_against_the_ans_cda_schema(
    service: DocumentService, cda_schema: etree.XMLSchema, type_code: str
) -> None:
    patient = add_patient(service)
    produced = service.produce(patient.id, {"type_code": type_code, "structure": "N1"})
    document = xml(produced.cda)
    assert cda_schema.validate(document), cda_schema.error_log
    assert produced.type_code == type_code == document.find("cda:code", NS).get("code")
    assert [t.get("root") for t in document.findall("cda:templateId", NS)] == [
        "2.16.840.1.113883.2.8.2.1",
        "1.2.250.1.213.1.1.1.1",
        "1.3.6.1.4.1.19376.1.2.20",
    ]
    assert embedded_pdf(document) == produced.pdf


def test_the_vsm_is_valid_against_the_ans_cda_schema_and_declares_version_2023_01(
    service: DocumentService, cda_schema: etree.XMLSchema
) -> None:
    patient = add_patient(service)
    produced = service.produce(patient.id, {"type_code": "60591-5", "structure": "N3"})
    document = xml(produced.cda)
    assert cda_schema.validate(document), cda_schema.error_log
    assert produced.type_code == "SYNTH"
    code = document.find("cda:code", NS)
    assert (code.get("code"), code.get("codeSystem")) == ("SYNTH", "1.2.250.1.213.1.1.4.12")
    [volet] = document.xpath("cda:templateId[@root='1.2.250.1.213.1.1.1.13']", namespaces=NS)
    assert volet.get("extension") == "2023.01"
    sections = document.xpath(
        "cda:component/cda:structuredBody/cda:component/cda:section/cda:templateId/@root", namespaces=NS
    )
    assert {"1.2.250.1.213.1.1.2.29", "1.3.6.1.4.1.19376.1.5.3.1.3.27", "1.2.250.1.213.1.1.2.32"} <= set(sections)
    assert document.find("cda:documentationOf/cda:serviceEvent/cda:code", NS).get("code") == "34117-2"
    assert document.xpath("count(//cda:entry)", namespaces=NS) == 2
    assert document.find("cda:component/cda:nonXMLBody", NS) is None


def test_the_vsm_is_produced_only_under_the_medecin_traitant_profile(tmp_path: Path) -> None:
    service = documents(tmp_path, profiles=("Centres de santé",))
    patient = add_patient(service)
    with pytest.raises(InvalidInput, match="does not produce"):
        service.produce(patient.id, {"type_code": "SYNTH", "structure": "N3"})
    assert service.produce(patient.id, {"type_code": "11488-4"}).type_code == "11488-4"


@pytest.mark.parametrize(
    "body",
    [
        {"type_code": "99999-9"},
        {"type_code": "11488-4", "structure": "N3"},
        {"type_code": ""},
        {"structure": "N1"},
        {"type_code": "11488-4", "structure": "N2"},
        ["11488-4"],
    ],
)
def test_unknown_type_codes_and_structures_are_refused(service: DocumentService, body: Any) -> None:
    patient = add_patient(service)
    with pytest.raises(InvalidInput):
        service.produce(patient.id, body)


def test_the_header_carries_the_ins_strict_traits_and_the_practice(service: DocumentService) -> None:
    patient = add_patient(service)
    document = xml(service.produce(patient.id, {"type_code": "11488-4"}).cda)
    role = document.find("cda:recordTarget/cda:patientRole", NS)
    ids = [(i.get("root"), i.get("extension")) for i in role.findall("cda:id", NS)]
    assert ids == [(TEST_INS_OID, MATRICULE), (load_catalog().practice.ipp_oid, patient.id)]
    name = role.find("cda:patient/cda:name", NS)
    parts = [(etree.QName(p).localname, p.get("qualifier"), p.text) for p in name]
    assert parts == [
        ("family", "BR", "PAT-TROIS"),
        ("given", None, "DOMINIQUE MARIE-LOUISE"),
        ("given", "BR", "DOMINIQUE"),
        ("family", "CL", "DURAND"),
        ("given", "CL", "DOMI"),
    ]
    assert role.find("cda:patient/cda:administrativeGenderCode", NS).get("code") == "F"
    assert role.find("cda:patient/cda:birthTime", NS).get("value") == "19790328"
    assert role.findtext("cda:patient/cda:birthplace/cda:place/cda:addr/cda:county", namespaces=NS) == "63220"
    assert document.find("cda:author/cda:assignedAuthor/cda:id", NS).get("root") == "1.2.250.1.71.4.2.1"
    assert document.find("cda:author/cda:assignedAuthor/cda:id", NS).get("extension").startswith("8")
    custodian = document.find("cda:custodian/cda:assignedCustodian/cda:representedCustodianOrganization/cda:id", NS)
    assert custodian.get("root") == "1.2.250.1.71.4.2.2"
    legal = document.find("cda:legalAuthenticator", NS)
    assert legal.find("cda:signatureCode", NS).get("code") == "S"
    assert legal.find("cda:assignedEntity/cda:id", NS).get("root") == "1.2.250.1.71.4.2.1"
    effective = document.find("cda:effectiveTime", NS).get("value")
    assert len(effective) == 19 and effective[14] in "+-"
    facility = document.find(
        "cda:componentOf/cda:encompassingEncounter/cda:location/cda:healthCareFacility/cda:code", NS
    )
    assert (facility.get("code"), facility.get("codeSystem")) == ("SA07", "1.2.250.1.71.4.2.4")
    setting = document.find(
        ".//cda:serviceEvent/cda:performer/cda:assignedEntity/cda:representedOrganization/cda:standardIndustryClassCode",
        NS,
    )
    assert (setting.get("code"), setting.get("codeSystem")) == ("AMBULATOIRE", "1.2.250.1.213.1.1.4.9")
    assert document.find("cda:confidentialityCode", NS).get("code") == "N"
    assert document.find("cda:languageCode", NS).get("code") == "fr-FR"


@pytest.mark.parametrize("status", [Status.PROV, Status.RECUP, Status.VALI])
def test_an_identity_that_is_not_qualified_is_sent_without_ins_nor_datamatrix(
    service: DocumentService, status: Status
) -> None:
    patient = add_patient(service, status)
    produced = service.produce(patient.id, {"type_code": "11488-4"})
    document = xml(produced.cda)
    assert ins_ids(document) == []
    assert [i.get("extension") for i in document.findall("cda:recordTarget/cda:patientRole/cda:id", NS)] == [patient.id]
    assert images(produced.pdf) == []


def test_the_pdf_is_pdfa_1b_with_embedded_fonts_an_output_intent_and_consistent_metadata(
    service: DocumentService,
) -> None:
    patient = add_patient(service)
    produced = service.produce(patient.id, {"type_code": "11488-4"})
    assert produced.pdf.startswith(b"%PDF-1.4\n%") and max(produced.pdf[10:14]) > 127
    with pikepdf.open(io.BytesIO(produced.pdf)) as pdf:
        assert pdf.pdf_version == "1.4" and not pdf.is_encrypted
        assert len(pdf.trailer.ID) == 2
        metadata = pdf.Root.Metadata
        assert "/Filter" not in metadata
        with pdf.open_metadata() as xmp:
            assert xmp["pdfaid:part"] == "1" and xmp["pdfaid:conformance"] == "B"
            assert xmp["dc:title"] == str(pdf.docinfo.Title) == "Compte rendu de consultation"
            assert xmp["pdf:Producer"] == str(pdf.docinfo.Producer)
            assert xmp["xmp:CreatorTool"] == str(pdf.docinfo.Creator)
            created = datetime.fromisoformat(xmp["xmp:CreateDate"])
            assert created == datetime.fromisoformat(xmp["xmp:ModifyDate"]) and created.tzinfo is not None
            assert decode_pdf_date(str(pdf.docinfo.CreationDate)) == created
            assert decode_pdf_date(str(pdf.docinfo.ModDate)) == created
        [intent] = pdf.Root.OutputIntents
        assert intent.S == "/GTS_PDFA1" and intent.Type == "/OutputIntent"
        profile = intent.DestOutputProfile
        icc = profile.read_bytes()
        assert profile.N == 3 and icc[36:40] == b"acsp" and icc[8] == 2 and icc[16:20] == b"RGB "
        for page in pdf.pages:
            assert "/Group" not in page.obj
            for name, font in page.Resources.Font.items():
                descriptor = font.get("/FontDescriptor")
                assert descriptor is not None and "/FontFile2" in descriptor, f"{name} is not embedded"
                assert "Helvetica" not in str(font.BaseFont) and "Times" not in str(font.BaseFont)
            for _, image in page.get_images().items():
                assert "/SMask" not in image and "/Mask" not in image
                assert image.ColorSpace in ("/DeviceGray", "/DeviceRGB")
            assert "/ExtGState" not in page.Resources


def test_the_datamatrix_decodes_back_to_the_ins_and_the_strict_traits(service: DocumentService) -> None:
    patient = add_patient(service)
    [image] = images(service.produce(patient.id, {"type_code": "57833-6"}).pdf)
    assert image.mode in ("L", "RGB")
    [decoded] = zxingcpp.read_barcodes(image)
    assert decoded.format == zxingcpp.BarcodeFormat.DataMatrix
    assert decoded.text == (
        f"INS:{MATRICULE};OID:{TEST_INS_OID};NOM:PAT-TROIS;PRENOMS:DOMINIQUE MARIE-LOUISE;SEXE:F;NAISS:1979-03-28"
    )
    assert decoded.text == ins_payload(MATRICULE, TEST_INS_OID, "PAT-TROIS", TRAITS.first_names, "F", "1979-03-28")


def test_the_pdf_file_name_follows_the_documented_convention() -> None:
    kind = load_catalog().find("11488-4", "N1")
    assert kind is not None
    patient = Patient("P000001", replace(TRAITS, birth_name="D'ARC-LÉGER", first_names=("ÉLODIE",)), Status.QUAL)
    moment = datetime(2024, 3, 5, 10, 15, tzinfo=UTC)
    assert pdf_file_name(moment, kind, patient) == "20240305_11488-4_D-ARC-LEGER_Elodie.pdf"


def test_the_pdf_is_reproducible(service: DocumentService) -> None:
    printed = PrintedDocument(
        "Titre",
        "Dr X",
        "Sujet",
        datetime(2024, 3, 5, 10, 15, tzinfo=local_zone()),
        "Cabinet Témoin",
        ("Cabinet",),
        ("Nom : X",),
        ("Corps",),
    )
    assert build_pdf(printed) == build_pdf(printed)


# -- each defect changes exactly what it says -------------------------------------------------------


def build(
    monkeypatch: pytest.MonkeyPatch, patient: Patient, type_code: str, structure: str, defects: frozenset[str]
) -> etree._Element:
    """The CDA of a document with fixed ids (the VSM's section and entry ids too) and time, built with ``defects``."""
    counter = itertools.count(1)
    monkeypatch.setattr(vsm, "new_oid", lambda: f"2.25.{next(counter)}")
    catalog = load_catalog()
    kind = catalog.find(type_code, structure)
    assert kind is not None
    header = Header(
        "2.25.900",
        "2.25.901",
        kind,
        datetime(2024, 3, 5, 10, 15, tzinfo=local_zone()),
        patient,
        catalog.practice,
        catalog.author,
        defects,
    )
    return n1_document(header, b"%PDF-1.4 fixed") if structure == "N1" else vsm.vsm_document(header)


def canonical(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n")


QUALIFIED = Patient("P000001", TRAITS, Status.QUAL, Ins(MATRICULE, TEST_INS_OID), "CN")


@pytest.mark.parametrize(("type_code", "structure"), [("11488-4", "N1"), ("SYNTH", "N3")])
def test_each_cda_defect_changes_exactly_what_it_says(
    monkeypatch: pytest.MonkeyPatch, type_code: str, structure: str
) -> None:
    conforming = build(monkeypatch, QUALIFIED, type_code, structure, frozenset())

    def expected(change: Any) -> bytes:
        tree = build(monkeypatch, QUALIFIED, type_code, structure, frozenset())
        change(tree)
        return canonical(tree)

    def ins(tree: etree._Element) -> etree._Element:
        [found] = ins_ids(tree)
        return found

    def set_ins(attribute: str, value: str) -> Any:
        return lambda tree: ins(tree).set(attribute, value)

    wrong_key = f"{MATRICULE[:13]}{nir_key(MATRICULE[:13]) % 97 + 1:02d}"
    assert not is_valid_matricule(wrong_key) and wrong_key[:13] == MATRICULE[:13]

    def drop(path: str) -> Any:
        def change(tree: etree._Element) -> None:
            for found in tree.xpath(path, namespaces=NS):
                found.getparent().remove(found)

        return change

    def wrong_code(tree: etree._Element) -> None:
        code = tree.find("cda:code", NS)
        code.attrib.clear()
        code.attrib.update(
            {
                "code": "34133-9",
                "displayName": "Synthèse d'épisode de soins",
                "codeSystem": "2.16.840.1.113883.6.1",
                "codeSystemName": "LOINC",
            }
        )

    def wrong_version(tree: etree._Element) -> None:
        if structure == "N1":
            drop("cda:templateId[@root='1.3.6.1.4.1.19376.1.2.20']")(tree)
        else:
            tree.xpath("cda:templateId[@root='1.2.250.1.213.1.1.1.13']", namespaces=NS)[0].set("extension", "2021.01")

    changes = {
        "cda-wrong-ins-oid": set_ins("root", "1.2.250.1.213.1.4.2"),
        "cda-no-ins": lambda tree: ins(tree).getparent().remove(ins(tree)),
        "cda-bad-nir-key": set_ins("extension", wrong_key),
        "cda-wrong-loinc": wrong_code,
        "cda-no-legal-authenticator": drop("cda:legalAuthenticator"),
        "cda-wrong-template-version": wrong_version,
    }
    for defect, change in changes.items():
        defective = build(monkeypatch, QUALIFIED, type_code, structure, frozenset({defect}))
        assert canonical(defective) != canonical(conforming), defect
        assert canonical(defective) == expected(change), defect


def test_the_cda_defects_reach_the_produced_documents(tmp_path: Path) -> None:
    for defect, check in {
        "cda-wrong-ins-oid": lambda d, p: [i.get("root") for i in ins_ids(d)] == ["1.2.250.1.213.1.4.2"],
        "cda-no-ins": lambda d, p: ins_ids(d) == [],
        "cda-bad-nir-key": lambda d, p: not is_valid_matricule(ins_ids(d)[0].get("extension")),
        "cda-wrong-loinc": lambda d, p: d.find("cda:code", NS).get("code") == p.type_code == "34133-9",
        "cda-no-legal-authenticator": lambda d, p: d.find("cda:legalAuthenticator", NS) is None,
        "cda-wrong-template-version": lambda d, p: len(d.findall("cda:templateId", NS)) == 2,
    }.items():
        service = documents(tmp_path, frozenset({defect}))
        produced = service.produce(add_patient(service).id, {"type_code": "11488-4"})
        assert check(xml(produced.cda), produced), defect


def test_defect_pdf_not_pdfa_drops_the_identification_and_uses_a_standard_font(tmp_path: Path) -> None:
    service = documents(tmp_path, frozenset({"pdf-not-pdfa"}))
    produced = service.produce(add_patient(service).id, {"type_code": "11488-4"})
    assert embedded_pdf(xml(produced.cda)) == produced.pdf
    with pikepdf.open(io.BytesIO(produced.pdf)) as pdf:
        assert "/Metadata" not in pdf.Root
        fonts = [f for page in pdf.pages for f in page.Resources.Font.values()]
        assert {str(f.BaseFont) for f in fonts} == {"/Helvetica", "/Helvetica-Bold"}
        assert all("/FontDescriptor" not in f for f in fonts)
        assert len(pdf.pages[0].get_images()) == 1  # the DataMatrix is still printed
        assert pdf.Root.OutputIntents[0].S == "/GTS_PDFA1"


def test_defect_pdf_no_ins_datamatrix_prints_no_datamatrix_but_stays_pdfa(tmp_path: Path) -> None:
    service = documents(tmp_path, frozenset({"pdf-no-ins-datamatrix"}))
    produced = service.produce(add_patient(service).id, {"type_code": "11488-4"})
    assert images(produced.pdf) == []
    with pikepdf.open(io.BytesIO(produced.pdf)) as pdf, pdf.open_metadata() as xmp:
        assert xmp["pdfaid:part"] == "1"
    assert [i.get("extension") for i in ins_ids(xml(produced.cda))] == [MATRICULE]


# -- import and listing ------------------------------------------------------------------------------


def foreign_cda(document_id: str, type_code: str, effective: str, title: str = "Document reçu") -> bytes:
    return (
        f'<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="{document_id}"/><code code="{type_code}" '
        f'codeSystem="2.16.840.1.113883.6.1"/><title>{title}</title><effectiveTime value="{effective}"/>'
        "</ClinicalDocument>"
    ).encode()


def b64(content: bytes) -> str:
    return base64.b64encode(content).decode("ascii")


def test_import_keeps_the_producers_stylesheet(service: DocumentService) -> None:
    patient = add_patient(service)
    body = {
        "cda_base64": b64(foreign_cda("1.2.3.4.5", "11502-2", "20240102083000+0100")),
        "stylesheet_base64": b64(STYLESHEET),
    }
    stored = service.import_document(patient.id, body)
    assert stored == {
        "document_id": "1.2.3.4.5",
        "type_code": "11502-2",
        "title": "Document reçu",
        "creation_time": "2024-01-02T08:30:00+01:00",
        "origin": "imported",
        "has_stylesheet": True,
        "stylesheet_sha256": hashlib.sha256(STYLESHEET).hexdigest(),
    }
    assert service.store.document_content("1.2.3.4.5") == (
        foreign_cda("1.2.3.4.5", "11502-2", "20240102083000+0100"),
        STYLESHEET,
    )
    without = service.import_document(patient.id, {"cda_base64": b64(foreign_cda("1.2.3.4.6", "11502-2", "2024"))})
    assert (without["has_stylesheet"], without["stylesheet_sha256"], without["creation_time"]) == (False, "", "2024")


def test_defect_import_drops_stylesheet(tmp_path: Path) -> None:
    service = documents(tmp_path, frozenset({"import-drops-stylesheet"}))
    patient = add_patient(service)
    body = {"cda_base64": b64(foreign_cda("1.2.3.4.5", "11502-2", "20240102")), "stylesheet_base64": b64(STYLESHEET)}
    assert service.import_document(patient.id, body)["has_stylesheet"] is False
    assert service.store.document_content("1.2.3.4.5") == (foreign_cda("1.2.3.4.5", "11502-2", "20240102"), None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "'cda_base64' is required"),
        ({"cda_base64": "not base64!"}, "not valid base64"),
        ({"cda_base64": 42}, "must be a base64 string"),
        ({"cda_base64": b64(b"<unclosed")}, "not well-formed XML"),
        ({"cda_base64": b64(b"<ClinicalDocument/>")}, "not a CDA R2 ClinicalDocument"),
        ({"cda_base64": b64(b'<ClinicalDocument xmlns="urn:hl7-org:v3"/>')}, "no ClinicalDocument/id"),
        (
            {"cda_base64": b64(foreign_cda("1.2.3", "11502-2", "2024")), "stylesheet_base64": b64(b"not xml")},
            "stylesheet is not well-formed",
        ),
        ({"cda_base64": b64(foreign_cda("1.2.3", "11502-2", "tomorrow"))}, "not an HL7 time stamp"),
    ],
)
def test_import_refuses_what_is_not_a_cda(service: DocumentService, body: dict[str, Any], message: str) -> None:
    patient = add_patient(service)
    with pytest.raises(InvalidInput, match=message):
        service.import_document(patient.id, body)


def test_import_resolves_no_external_entity(service: DocumentService, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET", encoding="utf-8")
    hostile = (
        f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file://{secret}">]>'
        '<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="1.2.3"/><code code="11502-2"/><title>&x;</title>'
        '<effectiveTime value="20240102"/></ClinicalDocument>'
    ).encode()
    stored = service.import_document(add_patient(service).id, {"cda_base64": b64(hostile)})
    assert "SECRET" not in stored["title"]


def test_importing_the_same_document_twice_is_a_conflict(service: DocumentService) -> None:
    patient = add_patient(service)
    body = {"cda_base64": b64(foreign_cda("1.2.3.4.5", "11502-2", "20240102"))}
    service.import_document(patient.id, body)
    with pytest.raises(Conflict):
        service.import_document(patient.id, body)


def test_documents_are_listed_by_creation_date_or_by_type_code(service: DocumentService) -> None:
    patient = add_patient(service)
    other = add_patient(service)
    for document_id, type_code, effective in [
        ("1.1", "57833-6", "20240103"),
        ("1.2", "11488-4", "20240101120000+0100"),
        ("1.3", "57833-6", "20240105083000+0000"),
        ("1.4", "11488-4", "20240104"),
        ("1.5", "11502-2", "202401"),
    ]:
        service.import_document(patient.id, {"cda_base64": b64(foreign_cda(document_id, type_code, effective))})
    service.import_document(other.id, {"cda_base64": b64(foreign_cda("9.9", "11488-4", "20240101"))})
    by_date = [d["document_id"] for d in service.list_documents(patient.id, "creation-date")]
    assert by_date == ["1.3", "1.4", "1.1", "1.2", "1.5"]
    assert [d["document_id"] for d in service.list_documents(patient.id, None)] == by_date
    by_type = [(d["type_code"], d["document_id"]) for d in service.list_documents(patient.id, "type-code")]
    assert by_type == [
        ("11488-4", "1.4"),
        ("11488-4", "1.2"),
        ("11502-2", "1.5"),
        ("57833-6", "1.3"),
        ("57833-6", "1.1"),
    ]
    with pytest.raises(InvalidInput, match="unknown sort"):
        service.list_documents(patient.id, "title")


def test_defect_documents_unsorted_keeps_the_storage_order(tmp_path: Path) -> None:
    service = documents(tmp_path, frozenset({"documents-unsorted"}))
    patient = add_patient(service)
    for document_id, type_code, effective in [("1.1", "57833-6", "20240103"), ("1.2", "11488-4", "20240105")]:
        service.import_document(patient.id, {"cda_base64": b64(foreign_cda(document_id, type_code, effective))})
    for sort in ("creation-date", "type-code"):
        assert [d["document_id"] for d in service.list_documents(patient.id, sort)] == ["1.1", "1.2"]


def test_produced_documents_are_listed_with_their_origin(service: DocumentService) -> None:
    patient = add_patient(service)
    produced = service.produce(patient.id, {"type_code": "11490-0"})
    [listed] = service.list_documents(patient.id, None)
    assert listed["document_id"] == produced.document_id and listed["origin"] == "produced"
    assert listed["type_code"] == "11490-0" and listed["title"] == "Lettre de liaison"
    assert datetime.fromisoformat(listed["creation_time"]).tzinfo is not None


@pytest.mark.parametrize(
    ("ts", "iso"),
    [
        ("20240305101500+0100", "2024-03-05T10:15:00+01:00"),
        ("20240305", "2024-03-05"),
        ("2024030510", "2024-03-05T10:00:00"),
        ("20240305101500.123-0500", "2024-03-05T10:15:00-05:00"),
    ],
)
def test_hl7_time_stamps_read_as_iso_8601(ts: str, iso: str) -> None:
    assert iso_time(ts) == iso


# -- through the control API ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="reference-documents-") as folder, start_reference(Path(folder)) as ref:
        yield ref.url


def test_produce_and_import_through_the_control_api(reference: str) -> None:
    session = requests.Session()
    session.trust_env = False
    traits = {"birth_name": "DUPONT", "first_names": ["MARIE"], "sex": "F", "birth_date": "1979-03-28"}
    patient = session.post(f"{reference}/patients", json={"traits": traits}, timeout=30).json()["id"]
    answer = session.post(f"{reference}/patients/{patient}/documents", json={"type_code": "11488-4"}, timeout=30)
    assert answer.status_code == 201, answer.text
    produced = answer.json()
    assert set(produced) == {"document_id", "type_code", "cda_base64", "pdf_base64", "pdf_file_name"}
    document = xml(base64.b64decode(produced["cda_base64"]))
    assert document.find("cda:id", NS).get("root") == produced["document_id"]
    assert embedded_pdf(document) == base64.b64decode(produced["pdf_base64"])
    assert produced["pdf_file_name"].endswith("_11488-4_DUPONT_Marie.pdf")

    body = {"cda_base64": b64(foreign_cda("1.2.3.4.5", "11502-2", "20200101")), "stylesheet_base64": b64(STYLESHEET)}
    imported = session.post(f"{reference}/patients/{patient}/documents/import", json=body, timeout=30)
    assert imported.status_code == 201, imported.text
    assert imported.json()["has_stylesheet"] is True
    again = session.post(f"{reference}/patients/{patient}/documents/import", json=body, timeout=30)
    assert again.status_code == 409

    listed = session.get(f"{reference}/patients/{patient}/documents", params={"sort": "type-code"}, timeout=30).json()
    assert [d["type_code"] for d in listed["items"]] == ["11488-4", "11502-2"]
    assert session.get(f"{reference}/patients/{patient}/documents", params={"sort": "x"}, timeout=30).status_code == 422
    unknown = session.post(f"{reference}/patients/{patient}/documents", json={"type_code": "00000-0"}, timeout=30)
    assert unknown.status_code == 422 and unknown.headers["Content-Type"].startswith("application/problem+json")
    assert (
        session.post(f"{reference}/patients/nobody/documents", json={"type_code": "11488-4"}, timeout=30).status_code
        == 404
    )
    assert session.get(f"{reference}/patients/nobody/documents", timeout=30).status_code == 404
    bad = session.post(f"{reference}/patients/{patient}/documents/import", json={"cda_base64": "%%%"}, timeout=30)
    assert bad.status_code == 422
