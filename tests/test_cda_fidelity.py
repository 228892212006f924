"""Our verdicts against the official ANS pipeline's, document by document and schematron by schematron.

``reference_verdicts.json`` (beside the ANS data) holds what the official route gave
for every visible example: ISO skeleton, three compile steps, Saxon-HE 9.9 on Java.
For each example and each schematron it lists, our compiled schematron must give the
same counts (fired rules, failed asserts, successful reports) and the same failed
asserts (location and text, whitespace normalised). Mutated copies must then fail on
the rule that guards what was broken.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lxml import etree

from harness.validators.cda import CdaValidator, RuleSet, Stage

ANS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ans" / "TestContenuCDA-3-0"
HL7 = {"c": "urn:hl7-org:v3"}


def _reference_cases() -> list[tuple[str, str, dict[str, object]]]:
    path = ANS / "reference_verdicts.json"
    if not path.is_file():
        return []
    documents = json.loads(path.read_text(encoding="utf-8"))["documents"]
    cases = []
    for document, entries in documents.items():
        for key, verdict in entries.items():
            stylesheet = str(verdict["stylesheet"]) if key == "volet" else f"{key}.xsl"
            cases.append((document, "schematrons/" + stylesheet.removesuffix(".xsl") + ".sch", verdict))
    return cases


CASES = _reference_cases()


def _normalised(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.skipif(not CASES, reason="reference_verdicts.json not found beside the repository")
@pytest.mark.parametrize(("document", "schematron", "verdict"), CASES, ids=[f"{d}::{s}" for d, s, _ in CASES])
def test_the_compiled_schematron_gives_the_official_verdict(
    cda_validator: CdaValidator, cda_rules: RuleSet, document: str, schematron: str, verdict: dict[str, object]
) -> None:
    engine = cda_validator.engine
    assert engine is not None
    tree = etree.parse(str(cda_rules.root / "ExemplesCDA" / document))
    node = engine.parse(etree.tostring(tree, encoding="unicode"))
    run = engine.run(engine.compiled(cda_rules.root / schematron), node)
    assert (run.fired_rules, run.failed_asserts, run.successful_reports) == (
        verdict["fired_rules"],
        verdict["failed_asserts"],
        verdict["successful_reports"],
    )
    expected = sorted((f["location"], _normalised(f["text"])) for f in verdict["failed"])  # type: ignore[attr-defined]
    assert sorted((f.location, f.message) for f in run.findings) == expected


def _mutated(rules: RuleSet, name: str, xpath: str, change: str) -> bytes:
    tree = etree.parse(str(rules.root / "ExemplesCDA" / name))
    target = tree.xpath(xpath, namespaces=HL7)[0]
    if change == "remove":
        target.getparent().remove(target)
    else:
        attribute, value = change.split("=", 1)
        target.set(attribute, value)
    return etree.tostring(tree, xml_declaration=True, encoding="UTF-8")


@pytest.mark.parametrize(
    ("name", "xpath", "change", "stage", "rule", "in_message"),
    [
        # The INS OID: no ANS schematron of this copy checks the header (the structuration
        # minimale profile is absent), so the harness's header rule must catch it.
        (
            "AVC-AUNV_2022.01.xml",
            "/c:ClinicalDocument/c:recordTarget/c:patientRole/c:id[starts-with(@root, '1.2.250.1.213.1.4.')]",
            "root=1.2.250.1.213.1.4.2",
            Stage.HEADER,
            "cda.header.ins.oid",
            "1.2.250.1.213.1.4.2",
        ),
        # A section the volet requires.
        (
            "LDL-SES_2022.01.xml",
            "/c:ClinicalDocument/c:component/c:structuredBody/c:component[1]",
            "remove",
            Stage.SCHEMATRON,
            "ans:",
            "1.2.250.1.213.1.1.2.35.1",
        ),
        # A coded value outside its JDV.
        (
            "AVC-AUNV_2022.01.xml",
            "/c:ClinicalDocument/c:component/c:structuredBody/c:component/c:section"
            "[c:templateId/@root='1.3.6.1.4.1.19376.1.5.3.1.1.10.3.2']/c:entry/c:act/c:code",
            "code=XXXX",
            Stage.SCHEMATRON,
            "ans:JDV_ModeDeTransport",
            "JDV_ModeDeTransport_CISIS.xml",
        ),
    ],
    ids=["ins-oid", "required-section", "code-outside-jdv"],
)
def test_a_mutated_example_fails_on_the_rule_guarding_what_was_broken(
    cda_validator: CdaValidator,
    cda_rules: RuleSet,
    name: str,
    xpath: str,
    change: str,
    stage: Stage,
    rule: str,
    in_message: str,
) -> None:
    original = cda_validator.validate((cda_rules.root / "ExemplesCDA" / name).read_bytes(), name)
    assert not [f for s in original.stages if s.stage is stage for f in s.errors if f.rule.startswith(rule)]
    report = cda_validator.validate(_mutated(cda_rules, name, xpath, change), name)
    caught = [f for s in report.stages if s.stage is stage for f in s.errors if f.rule.startswith(rule)]
    assert caught, [f.rule for f in report.errors]
    assert any(in_message in f.message for f in caught)
    assert not report.ok


@pytest.mark.skipif(not CASES, reason="reference_verdicts.json not found beside the repository")
def test_validate_agrees_with_the_official_verdict_except_the_level1_volet_by_design(
    cda_validator: CdaValidator, cda_rules: RuleSet
) -> None:
    """Whole pipeline, volet chosen by templateId: the ANS verdict of every example is the official one.

    The one exception is deliberate: ``BIO-CR-BIO_2021.01_CDA-R2-Niveau-1.xml`` is a level-1
    document; the reference ran the BIO volet on it because of its file name, we judge it
    as level 1 (no volet schematron), as its templateIds say.
    """
    documents = json.loads((cda_rules.root / "reference_verdicts.json").read_text(encoding="utf-8"))["documents"]
    disagreements = {}
    for name, entries in documents.items():
        official_ok = all(not e["failed_asserts"] and not e["successful_reports"] for e in entries.values())
        report = cda_validator.validate((cda_rules.root / "ExemplesCDA" / name).read_bytes(), name)
        if report.ans_ok != official_ok:
            disagreements[name] = (report.ans_ok, official_ok)
        official_volet = str(entries.get("volet", {}).get("stylesheet", "")).removesuffix(".xsl")
        ours = Path(report.volet.schematron).stem if report.volet and report.volet.schematron else ""
        if not report.volet or not report.volet.level1:
            assert ours == official_volet, name
    assert disagreements == {"BIO-CR-BIO_2021.01_CDA-R2-Niveau-1.xml": (True, False)}
