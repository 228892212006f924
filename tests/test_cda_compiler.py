"""The rule set, our Schematron compiler, the compile cache and the official skeleton route.

Small schematrons written here pin down each semantic the compiler must reproduce
(includes, abstract patterns, ``let``, rule order, phases, messages, locations);
the ANS tree's own defects (case, missing files) must give warnings naming files.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from lxml import etree

from harness.findings import Severity
from harness.validators.cda import CdaValidator, RulesError, RuleSet
from harness.validators.cda.engine import SchematronEngine
from harness.validators.cda.schematron import compile_schematron

SCH = "http://purl.oclc.org/dsdl/schematron"


def _tree(root: Path, files: dict[str, str]) -> RuleSet:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).strip() + "\n", encoding="utf-8")
    (root / "schematrons").mkdir(exist_ok=True)
    return RuleSet.open(root)


def _check(rules: RuleSet, schematron: str, document: str, cache: Path) -> tuple[list[tuple[str, str]], int]:
    engine = SchematronEngine(rules, cache, route="harness")
    compiled = engine.compiled(rules.root / schematron)
    run = engine.run(compiled, engine.parse(document))
    return [(f.location, f.message) for f in run.findings], run.fired_rules


def test_a_folder_without_schematrons_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="no schematrons"):
        RuleSet.open(tmp_path)


def test_files_are_found_as_windows_would_and_repairs_are_flagged(tmp_path: Path) -> None:
    rules = _tree(tmp_path, {"schematrons/include/Entrees/E_x.sch": "<x/>"})
    exact = rules.resolve(rules.schematrons, "include/Entrees/E_x.sch")
    assert exact.path is not None and not exact.repaired
    repaired = rules.resolve(rules.schematrons, "include/entrees/e_X.sch")
    assert repaired.path == exact.path and repaired.repaired
    assert rules.resolve(rules.schematrons, "include/nowhere/E_x.sch").path is None
    (rules.schematrons / "include" / "afile").write_text("")
    assert rules.resolve(rules.schematrons, "include/afile/E_x.sch").path is None


def test_the_version_is_a_content_hash_that_moves_with_any_rule_file(tmp_path: Path) -> None:
    rules = _tree(tmp_path, {"schematrons/a.sch": "<a/>", "jeuxDeValeurs/JDV_a.xml": "<a/>"})
    before = rules.version
    assert before.startswith("sha256:")
    (tmp_path / "jeuxDeValeurs" / "JDV_a.xml").write_text("<b/>")
    assert RuleSet.open(tmp_path).version != before


SEMANTICS = {
    "schematrons/abstract/inSet.sch": f"""
        <pattern xmlns="{SCH}" abstract="true" id="inSet">
          <rule context="$where">
            <let name="code" value="@code"/>
            <assert test="$code = $allowed">[inSet] <value-of select="$label"/> has <value-of select="$code"/>.</assert>
          </rule>
        </pattern>""",
    "schematrons/include/Checks/first.sch": f"""
        <pattern xmlns="{SCH}" id="first" is-a="inSet">
          <param name="where" value="item"/>
          <param name="allowed" value="('A', 'B')"/>
          <param name="label" value="'item'"/>
        </pattern>""",
    "schematrons/test.sch": f"""
        <schema xmlns="{SCH}" queryBinding="xslt2" defaultPhase="main">
          <title>test</title>
          <let name="limit" value="2"/>
          <include href="abstract/inSet.sch"/>
          <include href="include/checks/FIRST.sch"/>
          <include href="include/missing.sch"/>
          <pattern id="order">
            <rule context="item[@code = 'B']"><report test="true()">special <name/></report></rule>
            <rule context="item"><assert test="false()">general</assert></rule>
          </pattern>
          <pattern id="counts">
            <let name="items" value="count(//item)"/>
            <rule context="list"><assert test="$items le $limit">too many: <value-of select="$items"/></assert></rule>
          </pattern>
          <pattern id="inactive"><rule context="*"><assert test="false()">never</assert></rule></pattern>
          <phase id="main"><active pattern="first"/><active pattern="order"/><active pattern="counts"/></phase>
        </schema>""",
}


def test_the_compiler_reproduces_the_skeleton_semantics(tmp_path: Path) -> None:
    rules = _tree(tmp_path, SEMANTICS)
    findings, fired = _check(
        rules, "schematrons/test.sch", "<list><item code='A'/><item code='B'/><item code='C'/></list>", tmp_path / "c"
    )
    assert findings == [
        # abstract pattern instantiated, include found ignoring case, let in the rule, value-of unpadded
        ("/list/item[3]", "[inSet] item has C."),
        # first matching rule wins; report with name(); the other items fall to the general rule
        ("/list/item", "general"),
        ("/list/item[2]", "special item"),
        ("/list/item[3]", "general"),
        # a pattern let is a global variable, a schema let a parameter
        ("/list", "too many: 3"),
    ]
    assert fired == 3 + 3 + 1  # the inactive pattern is not run


def test_include_repairs_and_gaps_are_warnings_naming_the_file(tmp_path: Path) -> None:
    rules = _tree(tmp_path, SEMANTICS)
    _xslt, compilation = compile_schematron(rules, rules.root / "schematrons/test.sch")
    by_rule = {f.rule: f for f in compilation.findings}
    assert by_rule["cda.rules.include-case"].severity is Severity.WARNING
    assert "include/Checks/first.sch" in by_rule["cda.rules.include-case"].message
    assert by_rule["cda.rules.include-missing"].rule_file == "schematrons/test.sch"
    assert "include/missing.sch" in by_rule["cda.rules.include-missing"].message


def test_value_sets_read_relative_to_the_schematron_even_in_the_wrong_case_or_absent(tmp_path: Path) -> None:
    svs = (
        '<RetrieveValueSetResponse xmlns="urn:ihe:iti:svs:2008"><ValueSet><ConceptList>'
        '<Concept code="A" codeSystem="1.2"/></ConceptList></ValueSet></RetrieveValueSetResponse>'
    )
    rules = _tree(
        tmp_path,
        {
            "jeuxDeValeurs/JDV_Real.xml": svs,
            "schematrons/vs.sch": f"""
                <schema xmlns="{SCH}" queryBinding="xslt2" xmlns:svs="urn:ihe:iti:svs:2008">
                  <ns prefix="svs" uri="urn:ihe:iti:svs:2008"/>
                  <pattern id="p">
                    <let name="good" value="'../jeuxDeValeurs/JDV_Real.xml'"/>
                    <let name="case" value="'../jeuxDeValeurs/jdv_real.xml'"/>
                    <let name="gone" value="'../jeuxDeValeurs/JDV_Gone.xml'"/>
                    <rule context="item">
                      <assert test="document($good)//svs:Concept[@code = current()/@code]">good</assert>
                      <assert test="document($case)//svs:Concept[@code = current()/@code]">case</assert>
                      <assert test="document($gone)//svs:Concept[@code = current()/@code]"
                        >gone <value-of select="$gone"/></assert>
                    </rule>
                  </pattern>
                </schema>""",
        },
    )
    findings, _ = _check(rules, "schematrons/vs.sch", "<list><item code='A'/></list>", tmp_path / "c")
    # the absent value set reads as empty, as Saxon 9 did; the message keeps the path as written
    assert findings == [("/list/item", "gone ../jeuxDeValeurs/JDV_Gone.xml")]
    _xslt, compilation = compile_schematron(rules, rules.root / "schematrons/vs.sch")
    assert {f.rule for f in compilation.findings} == {"cda.rules.value-set-case", "cda.rules.value-set-missing"}


def test_the_walk_and_the_direct_selection_give_the_same_svrl(cda_rules: RuleSet) -> None:
    """The direct selection is an optimisation: on a real profile and example, output must be byte-identical."""
    from saxonche import PySaxonProcessor  # noqa: F401 - imported for the skip below only if missing

    from harness.validators.cda import schematron
    from harness.validators.cda.engine import saxon

    source = cda_rules.root / "schematrons/profils/CI-SIS_ModelesDeContenusCDA.sch"
    expanded, _compilation, repairs = schematron.analyse(cda_rules, source)
    document = etree.tostring(etree.parse(str(cda_rules.root / "ExemplesCDA/IPS-FR_2024.01.xml")), encoding="unicode")
    outputs = []
    for direct in (True, False):
        xslt = schematron.generate_xslt(expanded, source.parent, repairs, direct=direct)
        executable = saxon().new_xslt30_processor().compile_stylesheet(stylesheet_text=xslt.decode())
        outputs.append(executable.transform_to_string(xdm_node=saxon().parse_xml(xml_text=document)))
    assert outputs[0] == outputs[1]
    assert "fired-rule" in outputs[0]


def test_the_ans_tree_defects_are_reported_not_fatal(cda_rules: RuleSet, tmp_path: Path) -> None:
    engine = SchematronEngine(cda_rules, tmp_path, route="harness")
    bio = engine.compiled(cda_rules.root / "schematrons/CI-SIS_BIO-CR-BIO_2023.01.sch")
    assert sum(f.rule == "cda.rules.include-missing" for f in bio.findings) == 9
    # …so the 9 patterns its phase activates are declared nowhere, as the skeleton also says
    assert sum(f.rule == "cda.rules.phase-pattern-missing" for f in bio.findings) == 9
    ihe = engine.compiled(cda_rules.root / "schematrons/profils/IHE.sch")
    assert any(f.rule == "cda.rules.include-case" and "E_directiveanticipee_int" in f.message for f in ihe.findings)
    models = engine.compiled(cda_rules.root / "schematrons/profils/CI-SIS_ModelesDeContenusCDA.sch")
    assert any("JDV_ClinicalStatusCodes_CISIS.xml" in f.message for f in models.findings)
    assert all(f.severity is Severity.WARNING and f.rule_file for f in bio.findings + ihe.findings + models.findings)


def test_compiled_xslt_is_cached_on_disk_by_the_hash_of_its_files(tmp_path: Path) -> None:
    rules = _tree(tmp_path / "rules", SEMANTICS)
    source = rules.root / "schematrons/test.sch"
    first = SchematronEngine(rules, tmp_path / "cache", route="harness").compiled(source)
    again = SchematronEngine(rules, tmp_path / "cache", route="harness").compiled(source)
    assert not first.from_cache and again.from_cache and again.key == first.key
    assert len(list((tmp_path / "cache").glob("*.xsl"))) == 1
    included = rules.root / "schematrons/include/Checks/first.sch"
    included.write_text(included.read_text().replace("'B'", "'C'"))
    changed = SchematronEngine(rules, tmp_path / "cache", route="harness").compiled(source)
    assert changed.key != first.key and not changed.from_cache


def test_a_loaded_executable_is_reused_across_documents(cda_validator: CdaValidator, cda_rules: RuleSet) -> None:
    engine = cda_validator.engine
    assert engine is not None
    source = cda_rules.root / "schematrons/profils/CI-SIS_Modeles_ANS.sch"
    assert engine.compiled(source) is engine.compiled(source)


FAKE_SKELETON_STEP = """<xsl:stylesheet version="2.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="@*|node()"><xsl:copy><xsl:apply-templates select="@*|node()"/></xsl:copy></xsl:template>
</xsl:stylesheet>"""

FAKE_SKELETON_LAST = """<xsl:stylesheet version="2.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:axsl="urn:alias" xmlns:svrl="http://purl.oclc.org/dsdl/svrl">
  <xsl:namespace-alias stylesheet-prefix="axsl" result-prefix="xsl"/>
  <xsl:template match="/">
    <axsl:stylesheet version="2.0">
      <axsl:template match="/">
        <svrl:schematron-output><svrl:active-pattern id="from-the-skeleton"/>
          <svrl:failed-assert location="/"><svrl:text>compiled by the ANS skeleton</svrl:text></svrl:failed-assert>
        </svrl:schematron-output>
      </axsl:template>
    </axsl:stylesheet>
  </xsl:template>
</xsl:stylesheet>"""


def test_a_folder_shipping_the_skeleton_is_compiled_with_it(tmp_path: Path) -> None:
    files = dict(SEMANTICS)
    files["schematrons/moteur/iso_dsdl_include.xsl"] = FAKE_SKELETON_STEP
    files["schematrons/moteur/iso_abstract_expand.xsl"] = FAKE_SKELETON_STEP
    files["schematrons/moteur/iso_svrl_for_xslt2.xsl"] = FAKE_SKELETON_LAST
    rules = _tree(tmp_path / "rules", files)
    assert rules.has_skeleton
    engine = SchematronEngine(rules, tmp_path / "cache")
    assert engine.route == "ans-skeleton" and "ANS ISO skeleton" in engine.description
    compiled = engine.compiled(rules.root / "schematrons/test.sch")
    run = engine.run(compiled, engine.parse("<list/>"))
    assert [f.message for f in run.findings] == ["compiled by the ANS skeleton"]
    assert [f.rule for f in run.findings] == ["ans:from-the-skeleton"]
    # the gaps are still reported on this route
    assert any(f.rule == "cda.rules.include-missing" for f in compiled.findings)
    ours = SchematronEngine(rules, tmp_path / "cache", route="harness").compiled(rules.root / "schematrons/test.sch")
    assert ours.key != compiled.key


FULL_TREE = Path(__import__("os").environ.get("SEGUR_HARNESS_ANS_FULL_TREE", "/nonexistent"))


@pytest.mark.skipif(not (FULL_TREE / "schematrons" / "moteur").is_dir(), reason="no full ANS release configured")
def test_the_real_skeleton_route_gives_the_reference_verdicts(tmp_path: Path, ans_data: Path) -> None:
    """Run only where ``SEGUR_HARNESS_ANS_FULL_TREE`` names a full TestContenuCDA release (with moteur/)."""
    import json

    rules = RuleSet.open(FULL_TREE)
    engine = SchematronEngine(rules, tmp_path, route="ans-skeleton")
    reference = json.loads((ans_data / "TestContenuCDA-3-0/reference_verdicts.json").read_text(encoding="utf-8"))
    for name, entries in list(reference["documents"].items())[:10]:
        document = etree.tostring(
            etree.parse(str(ans_data / "TestContenuCDA-3-0/ExemplesCDA" / name)), encoding="unicode"
        )
        node = engine.parse(document)
        for key, verdict in entries.items():
            stylesheet = verdict["stylesheet"] if key == "volet" else f"{key}.xsl"
            run = engine.run(engine.compiled(rules.root / "schematrons" / stylesheet.replace(".xsl", ".sch")), node)
            assert (run.fired_rules, run.failed_asserts) == (verdict["fired_rules"], verdict["failed_asserts"])


def test_without_a_rules_folder_only_the_harness_rules_run(cda_rules: RuleSet) -> None:
    report = CdaValidator(None).validate((cda_rules.root / "ExemplesCDA/VSM_1.4_2022.01.xml").read_bytes())
    assert report.ruleset == ""
    assert all(s.skipped for s in report.stages if s.stage.value in ("xsd", "schematron"))
    assert report.stage(__import__("harness.validators.cda", fromlist=["Stage"]).Stage.HEADER) is not None


def test_a_shared_tree_copy_is_not_needed_at_run_time(tmp_path: Path, cda_rules: RuleSet) -> None:
    """The rules are data: a copy anywhere works (here a copy of two schematrons' worth of files)."""
    copy = tmp_path / "TestContenuCDA"
    shutil.copytree(cda_rules.root / "schematrons" / "abstract", copy / "schematrons" / "abstract")
    (copy / "schematrons" / "mini.sch").write_text(
        f'<schema xmlns="{SCH}" queryBinding="xslt2"><include href="abstract/IVL_TS.sch"/>'
        '<pattern id="p"><rule context="/*"><assert test="true()">x</assert></rule></pattern></schema>'
    )
    findings, fired = _check(RuleSet.open(copy), "schematrons/mini.sch", "<a/>", tmp_path / "c")
    assert findings == [] and fired == 1


def test_a_schematron_needing_a_missing_vocabulary_is_left_out_with_a_warning(tmp_path: Path) -> None:
    """Like ANS's structurationMinimale profile, which reads an absent voc file with doc()."""
    rules = _tree(
        tmp_path,
        {
            "schematrons/profils/needy.sch": f"""
                <schema xmlns="{SCH}" queryBinding="xslt2">
                  <pattern id="p"><rule context="code">
                    <assert test="@code = doc('include/voc-absent-DYNAMIC.xml')//concept/@code">known code</assert>
                  </rule></pattern>
                </schema>""",
            "schematrons/CI-SIS_X_2024.01.sch": f"""
                <schema xmlns="{SCH}" queryBinding="xslt2">
                  <pattern id="q"><rule context="/*"><assert test="true()">x</assert></rule></pattern>
                </schema>""",
        },
    )
    compiled = SchematronEngine(rules, tmp_path / "c", route="harness").compiled(
        rules.root / "schematrons/profils/needy.sch"
    )
    assert compiled.executable is None and "voc-absent-DYNAMIC.xml" in compiled.unrunnable
    assert [f.rule for f in compiled.findings] == ["cda.rules.vocabulary-missing"]
    validator = CdaValidator(rules, cache_dir=tmp_path / "c")
    stage = validator._run_one(rules.root / "schematrons/profils/needy.sch", None, 0.0)
    assert stage.skipped.startswith("not run") and stage.ok
    assert [f.severity for f in stage.findings] == [Severity.WARNING]
