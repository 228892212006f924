"""Volet choice, and hostile or broken input: each a clear finding, never a crash or a hang."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from lxml import etree

from harness.validators.cda import CdaValidator, RuleSet, Stage
from harness.validators.cda.parsing import parse_cda
from harness.validators.cda.volets import choose_volet, index_volets

HL7 = "urn:hl7-org:v3"
N1_EXAMPLE = "DOC_NON_STRUCTURE_CDA-R2-N1.xml"


def _header(*template_ids: tuple[str, str], pis: str = "", level1: bool = False) -> etree._Element:
    ids = "".join(f'<templateId root="{r}"' + (f' extension="{e}"' if e else "") + "/>" for r, e in template_ids)
    body = "<nonXMLBody/>" if level1 else "<structuredBody/>"
    text = f'{pis}<ClinicalDocument xmlns="{HL7}">{ids}<component>{body}</component></ClinicalDocument>'
    return etree.fromstring(text.encode()).getroottree().getroot()


VSM = "1.2.250.1.213.1.1.1.13"
BIO = "1.2.250.1.213.1.1.1.55"


@pytest.mark.parametrize(
    ("template_ids", "pis", "expected", "warned"),
    [
        (((VSM, "2023.01"),), "", "schematrons/CI-SIS_VSM_2023.01.sch", None),
        (((BIO, "2024.01"),), "", "schematrons/CI-SIS_BIO-CR-BIO_2024.01.sch", None),
        # no version: the oldest version of the volet, with a warning
        (((BIO, ""),), "", "schematrons/CI-SIS_BIO-CR-BIO_2021.01.sch", "cda.volet.version-assumed"),
        # a version the folder lacks, but the document names its schematron
        (
            ((VSM, "201310"),),
            '<?oxygen SCHSchema="../schematrons/CI-SIS_VSM_1.4_2022.01.sch"?>',
            "schematrons/CI-SIS_VSM_1.4_2022.01.sch",
            None,
        ),
        # schematron associations that name no volet of the family: profiles only
        (((VSM, ""),), '<?oxygen SCHSchema="../schematrons/profils/IHE.sch"?>', "", "cda.volet.none-associated"),
        # the most specific volet root wins (CARD-F-PRC carries its family root too)
        (
            (("1.2.250.1.213.1.1.1.2.1", ""), ("1.2.250.1.213.1.1.1.2.1.3", "2022.01")),
            "",
            "schematrons/CI-SIS_CARD-F-PRC-DCI_2022.01.sch",
            None,
        ),
        ((("9.9.9", "1"),), "", "", None),
    ],
    ids=["vsm-2023", "bio-2024", "no-version", "association", "profiles-only", "most-specific", "unknown"],
)
def test_the_volet_follows_the_template_ids(
    cda_rules: RuleSet, template_ids: tuple[tuple[str, str], ...], pis: str, expected: str, warned: str | None
) -> None:
    choice, findings = choose_volet(_header(*template_ids, pis=pis), cda_rules, index_volets(cda_rules))
    assert choice.schematron == expected
    assert [f.rule for f in findings if f.severity.value == "warning"] == ([warned] if warned else [])


def test_a_level1_document_gets_no_volet_schematron(cda_rules: RuleSet) -> None:
    choice, _ = choose_volet(_header((BIO, "2024.01"), level1=True), cda_rules, index_volets(cda_rules))
    assert choice.level1 and choice.schematron == ""


# -- hostile and broken input ---------------------------------------------------------------------
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol9;</title></ClinicalDocument>"""


def _xxe(secret: Path) -> bytes:
    return (
        f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file://{secret}">]>'
        f'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&x;</title></ClinicalDocument>'
    ).encode()


EXTERNAL_DTD = (
    b'<?xml version="1.0"?><!DOCTYPE ClinicalDocument SYSTEM "http://127.0.0.1:9/cda.dtd">'
    b'<ClinicalDocument xmlns="urn:hl7-org:v3"/>'
)


def _n1_with_text(rules: RuleSet, payload: str) -> bytes:
    tree = etree.parse(str(rules.root / "ExemplesCDA" / N1_EXAMPLE))
    text = tree.find(f"{{{HL7}}}component/{{{HL7}}}nonXMLBody/{{{HL7}}}text")
    assert text is not None
    text.text = payload
    return etree.tostring(tree)


def _original_payload(rules: RuleSet) -> str:
    tree = etree.parse(str(rules.root / "ExemplesCDA" / N1_EXAMPLE))
    text = tree.find(f"{{{HL7}}}component/{{{HL7}}}nonXMLBody/{{{HL7}}}text")
    assert text is not None and text.text
    return "".join(text.text.split())


@pytest.mark.parametrize(
    ("name", "make", "stage", "rule"),
    [
        # libxml2 stops the expansion itself (amplification limit) before our DOCTYPE check
        ("billion-laughs", lambda rules, tmp: BILLION_LAUGHS, Stage.PARSE, "cda.parse.not-xml"),
        ("external-entity", lambda rules, tmp: _xxe(tmp / "secret.txt"), Stage.PARSE, "cda.parse.doctype"),
        ("external-dtd", lambda rules, tmp: EXTERNAL_DTD, Stage.PARSE, "cda.parse.doctype"),
        ("not-xml", lambda rules, tmp: b"\x89PNG\r\n\x1a\n\x00\x00garbage", Stage.PARSE, "cda.parse.not-xml"),
        ("empty", lambda rules, tmp: b"   ", Stage.PARSE, "cda.parse.empty"),
        ("wrong-root", lambda rules, tmp: b"<html><body/></html>", Stage.PARSE, "cda.parse.root"),
        (
            "truncated-base64",
            lambda rules, tmp: _n1_with_text(rules, _original_payload(rules)[:-3]),
            Stage.PDF,
            "cda.n1.base64",
        ),
        (
            "pdf-not-a-pdf",
            lambda rules, tmp: _n1_with_text(rules, base64.b64encode(b"just text, no PDF").decode()),
            Stage.PDF,
            "pdf.not-pdf",
        ),
    ],
)
def test_bad_input_is_a_clear_finding(
    cda_validator: CdaValidator, cda_rules: RuleSet, tmp_path: Path, name: str, make: object, stage: Stage, rule: str
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-MARKER")
    data = make(cda_rules, tmp_path)  # type: ignore[operator]
    report = cda_validator.validate(data, name)
    assert not report.ok
    assert rule in {f.rule for s in report.stages if s.stage is stage for f in s.errors}
    assert "TOP-SECRET-MARKER" not in repr(report.to_dict())
    if stage is Stage.PARSE:
        assert all(s.skipped for s in report.stages if s.stage is not Stage.PARSE)


def test_a_200_mb_document_is_refused_unread(cda_validator: CdaValidator) -> None:
    huge = (
        b'<ClinicalDocument xmlns="urn:hl7-org:v3"><title>'
        + b"x" * (200 * 1024 * 1024)
        + b"</title></ClinicalDocument>"
    )
    report = cda_validator.validate(huge, "huge")
    assert [f.rule for f in report.errors] == ["cda.parse.too-large"]


def test_an_auto_presentable_document_is_judged_by_its_embedded_cda(cda_rules: RuleSet) -> None:
    data = (cda_rules.root / "ExemplesCDA" / "CANCER-PPS_2022.01_Autopresentable.xml").read_bytes()
    parsed, findings = parse_cda(data)
    assert parsed is not None and parsed.embedded
    assert [f.rule for f in findings] == ["cda.parse.embedded"]


def test_every_report_names_its_rule_files_and_the_rule_set_version(
    cda_validator: CdaValidator, cda_rules: RuleSet
) -> None:
    report = cda_validator.validate((cda_rules.root / "ExemplesCDA" / "VSM_1.4_2022.01.xml").read_bytes(), "vsm")
    assert report.ruleset.startswith("TestContenuCDA sha256:") and "harness-schematron" in report.ruleset
    schematrons = [s for s in report.stages if s.stage is Stage.SCHEMATRON]
    assert [s.rule_file for s in schematrons] == [
        "schematrons/CI-SIS_VSM_1.4_2022.01.sch",
        "schematrons/profils/IHE.sch",
        "schematrons/profils/CI-SIS_ModelesDeContenusCDA.sch",
        "schematrons/profils/CI-SIS_Modeles_ANS.sch",
    ]
    assert all(s.version == cda_rules.version and s.svrl for s in schematrons)
    assert report.stage(Stage.XSD) is not None and report.stage(Stage.XSD).version == cda_rules.version  # type: ignore[union-attr]
