"""CI-SIS documents the SUT produces and receives (REM LGC sections DOC and CDA).

The SUT produces each document through the adapter (``documents`` capability) for a
patient whose INS is qualified; the harness judges it as ANS does — the CDA schema,
the volet and profile schematrons of the TestContenuCDA folder given by
``--cda-rules`` — plus its own header and PDF rules, and keeps the CDA, the PDF and
the validation report as evidence. Where ANS's proof is a link to its own test
platform (Gazelle, interopsegur) or a screenshot, that proof stays ``manual``: our
report is supporting evidence, not a substitute.

Rows about display in the DMP or a stylesheet's rendering (``CDA/DD.04``,
``CDA/DD.05``, ``CDA/VISU.01``, ``CDA/INT.16``) need a screen and stay manual.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from lxml import etree

from harness.findings import Severity
from harness.plugin.evidence import ScenarioEvidence
from harness.simulators.insi import IdentityBase
from harness.sut.base import SutAdapter
from harness.sut.model import PatientRecord, ProducedDocument
from harness.validators import pdf
from harness.validators.cda import CdaReport, CdaValidator, Stage
from harness.validators.cda.render import to_json, to_svrl
from scenarios.insi_steps import identity_named, qualified_patient

pytestmark = pytest.mark.usefixtures("insi")

HL7 = "urn:hl7-org:v3"
VSM_ROOT = "1.2.250.1.213.1.1.1.13"
VSM_TYPE_CODE = "60591-5"
PRESCRIPTION = "57833-6"
LETTRE_DE_LIAISON = "11490-0"
ANNEX_DOCUMENTS = [
    pytest.param(LETTRE_DE_LIAISON, id="lettre-de-liaison-11490-0"),
    pytest.param("11488-4", id="compte-rendu-11488-4"),
    pytest.param(PRESCRIPTION, id="prescription-57833-6"),
]
"""Document types of DSR annex 3 the scenarios ask for (the ones ANS's test cases name)."""


@dataclass
class Judged:
    """A produced document and what the validator said of its CDA."""

    produced: ProducedDocument
    report: CdaReport | None


def _patient(sut: SutAdapter, identities: IdentityBase) -> PatientRecord:
    patient = qualified_patient(sut, identity_named(identities, "ordinary-1"))
    assert patient.ins is not None, "precondition: the patient's INS is qualified"
    return patient


def _produce(
    sut: SutAdapter,
    validator: CdaValidator,
    evidence: ScenarioEvidence,
    patient: PatientRecord,
    type_code: str,
    structure: str = "N1",
) -> Judged:
    """Ask the SUT for a document, keep what it produced, and validate the CDA."""
    produced = sut.produce_document(patient.id, type_code, structure)
    stem = f"{type_code}-{structure}"
    if produced.pdf is not None:
        evidence.attach(
            produced.pdf_file_name or f"{stem}.pdf", produced.pdf, "application/pdf", "the PDF the SUT produced"
        )
    report = None
    if produced.cda is not None:
        evidence.attach(f"{stem}.cda.xml", produced.cda, "application/xml", "the CDA R2 document the SUT produced")
        report = validator.validate(produced.cda, f"{stem}.cda.xml")
        evidence.attach(
            f"{stem}.validation.json", to_json([report], validator.ruleset), "application/json", "CDA validation report"
        )
        if any(s.svrl for s in report.stages):
            evidence.attach(f"{stem}.svrl.xml", to_svrl([report]), "application/xml", "SVRL of each ANS schematron")
        evidence.note(f"{stem}: judged by {validator.ruleset or 'the harness rules only (no ANS rules configured)'}")
        if report.volet is not None:
            evidence.note(f"{stem}: volet {report.volet.schematron or 'none'} ({report.volet.reason})")
        evidence.add(*[f for f in report.findings if f.severity is not Severity.INFO][:100])
    evidence.expect(produced.cda is not None, "doc.cda.missing", f"the SUT must produce the {type_code} as CDA R2")
    return Judged(produced, report)


def _header_ins(cda: bytes) -> list[tuple[str, str]]:
    root = etree.fromstring(cda, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    return [
        (e.get("root", ""), e.get("extension", ""))
        for e in root.iterfind(f"{{{HL7}}}recordTarget/{{{HL7}}}patientRole/{{{HL7}}}id")
    ]


def _document_code(cda: bytes) -> str:
    root = etree.fromstring(cda, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    code = root.find(f"{{{HL7}}}code")
    return code.get("code", "") if code is not None else ""


def _expect_ins_and_pdfa(evidence: ScenarioEvidence, judged: Judged, patient: PatientRecord) -> bool:
    """The patient's INS must be in the CDA header and the PDF must be PDF/A-1; True when there is a PDF."""
    assert patient.ins is not None
    if judged.produced.cda is not None:
        ids = _header_ins(judged.produced.cda)
        evidence.expect(
            (patient.ins.oid, patient.ins.matricule) in ids,
            "doc.ins.header",
            f"recordTarget/patientRole/id must carry the patient's INS {patient.ins.matricule} "
            f"under its OID {patient.ins.oid}; found {ids}",
            "/ClinicalDocument/recordTarget/patientRole/id",
        )
    if not evidence.expect(judged.produced.pdf is not None, "doc.pdf.missing", "the SUT must produce the PDF/A-1"):
        return False
    assert judged.produced.pdf is not None
    evidence.add(*pdf.check_pdfa(judged.produced.pdf, part=1))
    return True


# -- production -----------------------------------------------------------------------------------
@pytest.mark.parametrize("type_code", ANNEX_DOCUMENTS)
@pytest.mark.requirement("DOC.01", scenario="DOC.01.01", manual_proofs=("DOC.01.01.01",))
def test_each_annex_document_is_a_cda_n1_with_its_pdf(
    sut: SutAdapter,
    insi_identities: IdentityBase,
    cda_validator: CdaValidator,
    evidence: ScenarioEvidence,
    type_code: str,
) -> None:
    """The document is a CDA R2 N1 (structuration minimale) of the asked type, valid, its PDF embedded in base64."""
    patient = _patient(sut, insi_identities)
    judged = _produce(sut, cda_validator, evidence, patient, type_code)
    if judged.report is not None and judged.produced.cda is not None:
        evidence.expect(
            _document_code(judged.produced.cda) == type_code,
            "doc.type-code",
            f"the document code must be the type asked for, {type_code}",
            "/ClinicalDocument/code",
        )
        evidence.expect(
            judged.report.volet is not None and judged.report.volet.level1,
            "doc.n1.structure",
            "the document must be level 1: its body a nonXMLBody carrying the PDF",
        )
        evidence.expect(
            judged.report.stage(Stage.PDF) is not None and judged.report.stage(Stage.PDF).ok,  # type: ignore[union-attr]
            "doc.n1.pdf",
            "the nonXMLBody must carry the PDF in base64, as PDF/A-1",
        )
    evidence.conclude()


@pytest.mark.requirement("DOC/va1.01", scenario="DOC/va1.01.01")
def test_the_prescription_pdf_is_pdfa1(
    sut: SutAdapter, insi_identities: IdentityBase, cda_validator: CdaValidator, evidence: ScenarioEvidence
) -> None:
    """The PDF version of a prescription (type 57833-6) is PDF/A-1; the file is the ANS proof."""
    patient = _patient(sut, insi_identities)
    produced = sut.produce_document(patient.id, PRESCRIPTION, "N1")
    if evidence.expect(produced.pdf is not None, "doc.pdf.missing", "the SUT must produce the prescription as PDF"):
        assert produced.pdf is not None
        evidence.attach(produced.pdf_file_name or "prescription.pdf", produced.pdf, "application/pdf", "the PDF/A-1")
        evidence.add(*pdf.check_pdfa(produced.pdf, part=1, source_label="prescription"))
        evidence.note(
            f"PDF file name: {produced.pdf_file_name!r}; the naming rules ECO 2.1.5 and 2.1.6 of the MSSanté "
            "référentiel are not in the harness's sources and are not checked"
        )
    evidence.conclude()


@pytest.mark.requirement("DOC/va1.04", scenario="DOC/va1.04.01", manual_proofs=("DOC/va1.04.01.01", "DOC/va1.04.01.03"))
def test_the_ins_is_in_the_cda_header_and_in_the_pdf_datamatrix(
    sut: SutAdapter, insi_identities: IdentityBase, cda_validator: CdaValidator, evidence: ScenarioEvidence
) -> None:
    """A lettre de suivi (11490-0) carries the qualified INS in its CDA header and an INS DataMatrix on its PDF/A-1."""
    patient = _patient(sut, insi_identities)
    assert patient.ins is not None
    judged = _produce(sut, cda_validator, evidence, patient, LETTRE_DE_LIAISON)
    if _expect_ins_and_pdfa(evidence, judged, patient):
        assert judged.produced.pdf is not None
        found = pdf.check_ins_datamatrix(judged.produced.pdf, patient.ins.matricule, patient.ins.oid)
        evidence.add(*found)
        evidence.attach(
            "datamatrix.json",
            json.dumps(pdf.read_datamatrix(judged.produced.pdf), ensure_ascii=False, indent=2).encode("utf-8"),
            "application/json",
            "what the DataMatrix symbols of the PDF decode to",
        )
    evidence.conclude()


@pytest.mark.requirement("DOC/va1.10", scenario="DOC/va1.10.01", manual_proofs=("DOC/va1.10.01.01",))
def test_a_prescription_carries_the_ins_in_the_cda_and_on_the_pdf(
    sut: SutAdapter, insi_identities: IdentityBase, cda_validator: CdaValidator, evidence: ScenarioEvidence
) -> None:
    """A prescription (57833-6) carries the INS in its CDA N1 header and printed on its PDF/A-1."""
    patient = _patient(sut, insi_identities)
    assert patient.ins is not None
    judged = _produce(sut, cda_validator, evidence, patient, PRESCRIPTION)
    if _expect_ins_and_pdfa(evidence, judged, patient):
        assert judged.produced.pdf is not None and patient.ins is not None
        evidence.add(*pdf.check_ins_printed(judged.produced.pdf, patient.ins.matricule))
    evidence.conclude()


@pytest.mark.requirement("DOC/va1.14", scenario="DOC/va1.14.01", manual_proofs=("DOC/va1.14.01.01",))
def test_the_vsm_is_a_valid_cda_n3_of_the_current_volet(
    sut: SutAdapter, insi_identities: IdentityBase, cda_validator: CdaValidator, evidence: ScenarioEvidence
) -> None:
    """The volet de synthèse médicale is a CDA R2 N3 valid against the newest VSM volet of the rules."""
    patient = _patient(sut, insi_identities)
    judged = _produce(sut, cda_validator, evidence, patient, VSM_TYPE_CODE, "N3")
    report = judged.report
    if report is not None and judged.produced.cda is not None:
        evidence.expect(
            report.volet is not None and not report.volet.level1,
            "doc.vsm.structure",
            "the VSM must be a structured (N3) document",
        )
        newest = _newest_vsm(cda_validator)
        if newest:
            chosen = report.volet.schematron if report.volet else ""
            evidence.expect(
                chosen == newest,
                "doc.vsm.volet-version",
                f"the VSM must declare the current VSM volet version (judged by {newest}); "
                f"it was judged by {chosen or 'no volet'}: {report.volet.reason if report.volet else ''}",
                "/ClinicalDocument/templateId",
            )
        else:
            evidence.note("no ANS rules configured: the VSM volet schematron was not run")
    evidence.conclude()


def _newest_vsm(validator: CdaValidator) -> str:
    if validator.rules is None:
        return ""
    from harness.validators.cda.volets import index_volets, volet_roots

    families = {f.casefold() for f in volet_roots()[VSM_ROOT]}
    versions = sorted(
        (v for v in index_volets(validator.rules) if v.family.casefold() in families), key=lambda v: v.version
    )
    return validator.rules.relative(versions[-1].path) if versions else ""


def _instant(text: str) -> datetime:
    """An ISO 8601 creation time as an instant (offsets differ between documents)."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


# -- reception ------------------------------------------------------------------------------------
STYLESHEET = b"""<?xml version="1.0" encoding="UTF-8"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:cda="urn:hl7-org:v3">
  <xsl:template match="/"><html><body><h1><xsl:value-of select="//cda:title"/></h1></body></html></xsl:template>
</xsl:stylesheet>
"""


def _foreign_document(cda: bytes, type_code: str, effective_time: str, title: str) -> bytes:
    """A document "from another producer": the SUT's own N1 with a new id, type, date and title."""
    root = etree.fromstring(cda, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    document_id = root.find(f"{{{HL7}}}id")
    if document_id is not None:
        document_id.attrib.pop("extension", None)
        document_id.set("root", str(uuid.uuid4()))
    code = root.find(f"{{{HL7}}}code")
    if code is not None:
        code.set("code", type_code)
    when = root.find(f"{{{HL7}}}effectiveTime")
    if when is not None:
        when.set("value", effective_time)
    heading = root.find(f"{{{HL7}}}title")
    if heading is not None:
        heading.text = title
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


@pytest.mark.requirement("CDA/INT.15", scenario="CDA/INT.15.01")
def test_an_imported_document_is_stored_with_the_producers_stylesheet(
    sut: SutAdapter, insi_identities: IdentityBase, evidence: ScenarioEvidence
) -> None:
    """A structuration-minimale CDA received with its producer's stylesheet is stored together with it."""
    patient = _patient(sut, insi_identities)
    own = sut.produce_document(patient.id, LETTRE_DE_LIAISON, "N1")
    assert own.cda is not None, "precondition: the SUT produces a CDA to build a foreign document from"
    foreign = _foreign_document(own.cda, "11488-4", "20240105093000+0100", "Compte rendu reçu d'un confrère")
    evidence.attach("received.cda.xml", foreign, "application/xml", "the document sent to the SUT")
    evidence.attach("received.xsl", STYLESHEET, "application/xslt+xml", "the producer's stylesheet sent with it")
    stored = sut.import_document(patient.id, foreign, STYLESHEET)
    listed = [d for d in sut.list_documents(patient.id) if d.document_id == stored.document_id]
    evidence.attach(
        "stored.json", json.dumps([d.to_json() for d in listed], indent=2).encode("utf-8"), "application/json"
    )
    wanted = hashlib.sha256(STYLESHEET).hexdigest()
    evidence.expect(stored.has_stylesheet, "cda.import.stylesheet", "the imported document must keep its stylesheet")
    evidence.expect(
        stored.stylesheet_sha256 == wanted,
        "cda.import.stylesheet-bytes",
        f"the stylesheet kept must be the one received (SHA-256 {wanted[:16]}…, got {stored.stylesheet_sha256[:16]}…)",
    )
    evidence.expect(
        bool(listed) and listed[0].has_stylesheet,
        "cda.import.listed",
        "the patient's document list must show the imported document with its stylesheet",
    )
    evidence.conclude()


@pytest.mark.requirement("CDA/INT.04", scenario="CDA/INT.04.01")
def test_documents_can_be_sorted_by_type_code_and_by_creation_date(
    sut: SutAdapter, insi_identities: IdentityBase, evidence: ScenarioEvidence
) -> None:
    """The patient's documents, imported and produced, sort by type code and by creation date."""
    patient = _patient(sut, insi_identities)
    own = sut.produce_document(patient.id, LETTRE_DE_LIAISON, "N1")
    assert own.cda is not None, "precondition: the SUT produces a CDA to build foreign documents from"
    for type_code, when, title in (
        ("11488-4", "20230301100000+0100", "Compte rendu de consultation"),
        ("18748-4", "20250601100000+0200", "Compte rendu d'imagerie"),
        ("11502-2", "20240115100000+0100", "Compte rendu de biologie"),
    ):
        sut.import_document(patient.id, _foreign_document(own.cda, type_code, when, title))
    by_type = sut.list_documents(patient.id, sort="type-code")
    by_date = sut.list_documents(patient.id, sort="creation-date")
    evidence.attach(
        "lists.json",
        json.dumps(
            {"type-code": [d.to_json() for d in by_type], "creation-date": [d.to_json() for d in by_date]}, indent=2
        ).encode("utf-8"),
        "application/json",
        "the document lists the SUT returned for each sort",
    )
    evidence.expect(len(by_type) >= 4, "cda.list.complete", "the list must hold the produced and imported documents")
    type_codes = [d.type_code for d in by_type]
    evidence.expect(
        type_codes == sorted(type_codes),
        "cda.list.sort-type-code",
        f"sorted by type code, the list must be in type-code order; got {type_codes}",
    )
    times = [d.creation_time for d in by_date]
    evidence.expect(
        times == sorted(times, key=_instant, reverse=True),
        "cda.list.sort-creation-date",
        f"sorted by creation date, the list must run from newest to oldest; got {times}",
    )
    evidence.conclude()
