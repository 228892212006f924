"""The harness's own CI-SIS header rules, calibrated on the ANS CDA examples."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from lxml import etree

from harness.findings import Finding, Severity
from harness.validators.cda.header import check_header
from harness.validators.cda.valuesets import ValueSets

ANS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ans"
TESTCONTENU = ANS / "TestContenuCDA-3-0"
EXAMPLES = TESTCONTENU / "ExemplesCDA"
JDV = TESTCONTENU / "jeuxDeValeurs"
N1 = "DOC_NON_STRUCTURE_CDA-R2-N1.xml"
HL7 = "urn:hl7-org:v3"
NS = {"h": HL7}

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)

KNOWN_BREAKS: dict[str, set[str]] = {
    # These ANS examples carry matricules whose last two digits are not 97 - (n mod 97):
    # synthetic numbers that no INSi would return (221042545611404 needs key 83, 223042545611404
    # key 82, 222127505611201 key 47). The key rule is arithmetic, so they stay errors.
    "CSE-CS24_2024.01.xml": {"cda.header.ins.key"},
    "CSE-CS24_2025.01.xml": {"cda.header.ins.key"},
    "CSE-CS8_2024.01.xml": {"cda.header.ins.key"},
    "CSE-CS8_2025.01.xml": {"cda.header.ins.key"},
    "CSE-CS9_2024.01.xml": {"cda.header.ins.key"},
    "CSE-MDE_2023.01.xml": {"cda.header.ins.key"},
    "OBP-SNE_2024.01.xml": {"cda.header.ins.key"},
    # The legal authenticator's id root is the truncated "1.2.250.1.71" instead of the national
    # PS id OID 1.2.250.1.71.4.2.1 (the author of the same documents has the right one; CARD-F-PRC-PPV,
    # the fourth of the family, has it right too): a real defect of these examples.
    "CARD-F-PRC-AVK_2022.01.xml": {"cda.header.legal-authenticator.id-root"},
    "CARD-F-PRC-DCI_2022.01.xml": {"cda.header.legal-authenticator.id-root"},
    "CARD-F-PRC-TAP_2022.01.xml": {"cda.header.legal-authenticator.id-root"},
}


def _examples() -> list[Path]:
    if not EXAMPLES.is_dir():
        return []
    return sorted(p for p in EXAMPLES.glob("*.xml") if _root(p).tag == f"{{{HL7}}}ClinicalDocument")


def _root(path: Path) -> etree._Element:
    return etree.parse(str(path), _PARSER).getroot()


def _errors(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings if f.severity is Severity.ERROR}


def _rules(findings: list[Finding], severity: Severity) -> set[str]:
    return {f.rule for f in findings if f.severity is severity}


@pytest.fixture(scope="module")
def value_sets() -> ValueSets:
    if not JDV.is_dir():
        pytest.skip(f"ANS value sets not found at {JDV}")
    return ValueSets.load(JDV)


@pytest.fixture()
def n1() -> etree._Element:
    if not (EXAMPLES / N1).is_file():
        pytest.skip(f"ANS examples not found at {EXAMPLES}")
    return _root(EXAMPLES / N1)


def _first(root: etree._Element, path: str) -> etree._Element:
    found = root.xpath(path, namespaces=NS)
    assert isinstance(found, list) and found, path
    element = found[0]
    assert isinstance(element, etree._Element)
    return element


def _remove(root: etree._Element, path: str) -> etree._Element:
    element = _first(root, path)
    parent = element.getparent()
    assert parent is not None
    parent.remove(element)
    return root


# --------------------------------------------------------------------------------------
# The ANS examples
# --------------------------------------------------------------------------------------


def test_examples_are_there() -> None:
    if not EXAMPLES.is_dir():
        pytest.skip(f"ANS examples not found at {EXAMPLES}")
    assert len(_examples()) >= 70


@pytest.mark.parametrize("example", _examples(), ids=lambda p: p.name)
def test_ans_example_has_no_header_error(example: Path) -> None:
    assert _errors(check_header(_root(example))) == KNOWN_BREAKS.get(example.name, set())


@pytest.mark.parametrize("example", _examples(), ids=lambda p: p.name)
def test_ans_example_codes_are_in_their_jdv(example: Path, value_sets: ValueSets) -> None:
    findings = check_header(_root(example), value_sets)
    assert _errors(findings) == KNOWN_BREAKS.get(example.name, set())
    assert "cda.header.jdv-unavailable" not in _rules(findings, Severity.WARNING)


def test_reference_n1_example_is_clean(n1: etree._Element, value_sets: ValueSets) -> None:
    assert check_header(n1, value_sets) == []


def test_legitimate_variants_of_the_examples_are_warnings() -> None:
    if not EXAMPLES.is_dir():
        pytest.skip(f"ANS examples not found at {EXAMPLES}")
    # The patient legally authenticates the vaccination record (identified by INS-NIR).
    vac = check_header(_root(EXAMPLES / "VAC_2023.01.xml"))
    assert "cda.header.legal-authenticator.id-root" in _rules(vac, Severity.WARNING)
    # CARD-F-PRC examples have no author code.
    card = check_header(_root(EXAMPLES / "CARD-F-PRC-PPV_2022.01.xml"))
    assert _rules(card, Severity.WARNING) == {"cda.header.author.code"}
    # eDISP lists ISABELLE as first names while the first birth first name is RUTH.
    edisp = check_header(_root(EXAMPLES / "eDISP-MED_2024.01.xml"))
    assert "cda.header.patient.first-names-consistency" in _rules(edisp, Severity.WARNING)


# --------------------------------------------------------------------------------------
# Mutated copies of the N1 example
# --------------------------------------------------------------------------------------

INS_ID = "h:recordTarget/h:patientRole/h:id[1]"


def test_wrong_ins_oid(n1: etree._Element) -> None:
    _first(n1, INS_ID).set("root", "1.2.3.4.5")
    findings = check_header(n1)
    assert _errors(findings) == {"cda.header.ins.oid"}
    assert findings[0].location == "/ClinicalDocument/recordTarget/patientRole/id[1]"


def test_ins_missing_is_an_error_unless_not_required(n1: etree._Element) -> None:
    _remove(n1, INS_ID)
    assert _errors(check_header(n1)) == {"cda.header.ins.missing"}
    relaxed = check_header(n1, ins_required=False)
    assert _errors(relaxed) == set()
    assert "cda.header.ins.missing" in _rules(relaxed, Severity.WARNING)


def test_bad_nir_key(n1: etree._Element) -> None:
    _first(n1, INS_ID).set("extension", "279035121518988")
    findings = [f for f in check_header(n1) if f.severity is Severity.ERROR]
    assert [f.rule for f in findings] == ["cda.header.ins.key"]
    assert findings[0].location == "/ClinicalDocument/recordTarget/patientRole/id[1]"
    assert findings[0].source == "cda.header"


def test_short_matricule(n1: etree._Element) -> None:
    _first(n1, INS_ID).set("extension", "2790351215189")
    assert _errors(check_header(n1)) == {"cda.header.ins.length"}


def test_test_ins_refused_when_production_is_expected(n1: etree._Element) -> None:
    assert _errors(check_header(n1, allow_test_ins=False)) == {"cda.header.ins.oid-test"}


def test_missing_legal_authenticator(n1: etree._Element) -> None:
    _remove(n1, "h:legalAuthenticator")
    assert _errors(check_header(n1)) == {"cda.header.legal-authenticator"}


def test_legal_authenticator_signature_code(n1: etree._Element) -> None:
    _first(n1, "h:legalAuthenticator/h:signatureCode").set("code", "X")
    assert _errors(check_header(n1)) == {"cda.header.legal-authenticator.signature-code"}


def test_realm_code_missing(n1: etree._Element) -> None:
    _remove(n1, "h:realmCode")
    assert _errors(check_header(n1)) == {"cda.header.realm-code"}


def test_realm_code_twice(n1: etree._Element) -> None:
    n1.insert(0, copy.deepcopy(_first(n1, "h:realmCode")))
    assert _errors(check_header(n1)) == {"cda.header.realm-code"}


def test_wrong_ci_sis_template_id(n1: etree._Element) -> None:
    _first(n1, "h:templateId[@root='1.2.250.1.213.1.1.1.1']").set("root", "1.2.250.1.213.1.1.1.999")
    assert _errors(check_header(n1)) == {"cda.header.template-id.ci-sis"}


def test_hl7_france_template_id_twice(n1: etree._Element) -> None:
    template = _first(n1, "h:templateId[@root='2.16.840.1.113883.2.8.2.1']")
    template.addnext(copy.deepcopy(template))
    assert _errors(check_header(n1)) == {"cda.header.template-id.hl7-france"}


def test_level_1_without_xds_sd(n1: etree._Element) -> None:
    _first(n1, "h:templateId[@root='1.3.6.1.4.1.19376.1.2.20']").set("root", "1.2.250.1.213.1.1.1.55")
    assert _errors(check_header(n1)) == {"cda.header.template-id.xds-sd"}


def test_given_br_missing(n1: etree._Element) -> None:
    del _first(n1, "h:recordTarget/h:patientRole/h:patient/h:name/h:given[@qualifier='BR']").attrib["qualifier"]
    assert _errors(check_header(n1)) == {"cda.header.patient.first-name-br"}


def test_birth_name_missing(n1: etree._Element) -> None:
    _first(n1, "h:recordTarget/h:patientRole/h:patient/h:name/h:family[@qualifier='BR']").set("qualifier", "SP")
    assert _errors(check_header(n1)) == {"cda.header.patient.birth-name"}


def test_first_names_list_missing(n1: etree._Element) -> None:
    _remove(n1, "h:recordTarget/h:patientRole/h:patient/h:name/h:given[not(@qualifier)]")
    assert _errors(check_header(n1)) == {"cda.header.patient.first-names"}


def test_birthplace_cog(n1: etree._Element) -> None:
    _first(n1, "h:recordTarget/h:patientRole/h:patient/h:birthplace/h:place/h:addr/h:county").text = "DOMPREMY"
    assert _errors(check_header(n1)) == {"cda.header.patient.birthplace-cog"}


def test_gender_outside_hl7_administrative_gender(n1: etree._Element, value_sets: ValueSets) -> None:
    _first(n1, "h:recordTarget/h:patientRole/h:patient/h:administrativeGenderCode").set("code", "U")
    assert _errors(check_header(n1)) == {"cda.header.patient.gender"}
    assert _errors(check_header(n1, value_sets)) == {"cda.header.patient.gender"}


def test_effective_time_without_timezone(n1: etree._Element) -> None:
    _first(n1, "h:effectiveTime").set("value", "20210401134745")
    assert _errors(check_header(n1)) == {"cda.header.effective-time"}


def test_confidentiality_code(n1: etree._Element) -> None:
    _first(n1, "h:confidentialityCode").set("code", "MASQUE_PS")
    assert _errors(check_header(n1)) == {"cda.header.confidentiality-code"}


def test_language_code(n1: etree._Element) -> None:
    _first(n1, "h:languageCode").set("code", "en-US")
    assert _errors(check_header(n1)) == {"cda.header.language-code"}


def test_version_number(n1: etree._Element) -> None:
    _first(n1, "h:versionNumber").set("value", "0")
    assert _errors(check_header(n1)) == {"cda.header.version-number"}


def test_document_code_not_loinc(n1: etree._Element, value_sets: ValueSets) -> None:
    _first(n1, "h:code").set("codeSystem", "1.2.3")
    assert _errors(check_header(n1)) == {"cda.header.code.loinc"}
    assert _errors(check_header(n1, value_sets)) == {"cda.header.code.jdv"}


def test_author_id_root(n1: etree._Element) -> None:
    _first(n1, "h:author/h:assignedAuthor/h:id").set("root", "1.2.250.1.71.4.2.2")
    findings = check_header(n1)
    assert _errors(findings) == {"cda.header.author.id-root"}
    assert [f.location for f in findings if f.rule == "cda.header.author.id-root"] == [
        "/ClinicalDocument/author/assignedAuthor/id"
    ]


def test_author_id_extension_of_unknown_form_is_a_warning(n1: etree._Element) -> None:
    _first(n1, "h:author/h:assignedAuthor/h:id").set("extension", "12345")
    findings = check_header(n1)
    assert _errors(findings) == set()
    assert _rules(findings, Severity.WARNING) == {"cda.header.author.id-extension"}


def test_custodian_root(n1: etree._Element) -> None:
    _first(n1, "h:custodian/h:assignedCustodian/h:representedCustodianOrganization/h:id").set("root", "1.2.3")
    assert _errors(check_header(n1)) == {"cda.header.custodian"}


def test_service_event_missing(n1: etree._Element) -> None:
    for element in n1.findall(f"{{{HL7}}}documentationOf"):
        n1.remove(element)
    assert _errors(check_header(n1)) == {"cda.header.service-event"}


def test_healthcare_facility_code(n1: etree._Element, value_sets: ValueSets) -> None:
    path = "h:componentOf/h:encompassingEncounter/h:location/h:healthCareFacility/h:code"
    _first(n1, path).set("code", "SA99")
    assert _errors(check_header(n1)) == set()  # right code system, membership needs the JDV
    assert _errors(check_header(n1, value_sets)) == {"cda.header.healthcare-facility-code"}
    _remove(n1, path)
    assert _errors(check_header(n1)) == {"cda.header.healthcare-facility-code"}


def test_practice_setting_against_j04(n1: etree._Element, value_sets: ValueSets) -> None:
    path = "h:documentationOf/h:serviceEvent/h:performer/h:assignedEntity/h:representedOrganization"
    _first(n1, path + "/h:standardIndustryClassCode").set("code", "NOWHERE")
    assert _errors(check_header(n1, value_sets)) == {"cda.header.practice-setting"}


def test_missing_jdv_is_one_warning(n1: etree._Element) -> None:
    findings = check_header(n1, ValueSets())
    assert _errors(findings) == set()
    assert [f.rule for f in findings].count("cda.header.jdv-unavailable") == 5


def test_not_a_clinical_document() -> None:
    findings = check_header(etree.fromstring(b"<ClinicalDocument/>"))
    assert [f.rule for f in findings] == ["cda.header.root"]


def test_empty_clinical_document_does_not_crash() -> None:
    findings = check_header(etree.fromstring(b'<ClinicalDocument xmlns="urn:hl7-org:v3"/>'))
    assert {"cda.header.realm-code", "cda.header.record-target", "cda.header.legal-authenticator"} <= _errors(findings)
    assert all(f.location.startswith("/ClinicalDocument") for f in findings)
