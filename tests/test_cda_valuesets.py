"""Loading and querying the CI-SIS value sets (JDV) of TestContenuCDA-3-0."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.findings import Severity
from harness.validators.cda.valuesets import Concept, ValueSet, ValueSets

JDV = Path(__file__).resolve().parents[2] / "shared" / "data" / "ans" / "TestContenuCDA-3-0" / "jeuxDeValeurs"

SVS = """<?xml version="1.0" encoding="UTF-8"?>
<RetrieveValueSetResponse xmlns="urn:ihe:iti:svs:2008">
  <ValueSet id="{oid}" displayName="{name}">
    <ConceptList>
      <Concept code="A" codeSystem="1.2.3" displayName="Alpha"/>
      <Concept code="B" codeSystem="1.2.3" displayName="Bravo"/>
    </ConceptList>
  </ValueSet>
</RetrieveValueSetResponse>
"""


@pytest.fixture(scope="module")
def ans() -> ValueSets:
    if not JDV.is_dir():
        pytest.skip(f"ANS value sets not found at {JDV}")
    return ValueSets.load(JDV)


def test_loads_every_ans_file_quickly() -> None:
    if not JDV.is_dir():
        pytest.skip(f"ANS value sets not found at {JDV}")
    started = time.perf_counter()
    loaded = ValueSets.load(JDV)
    elapsed = time.perf_counter() - started
    files = [p for p in JDV.glob("*.xml")]
    # Three files of the ANS folder are empty: recorded, not raised.
    unreadable = [p for p in loaded.problems if p.rule == "cda.valuesets.unreadable"]
    assert len(loaded) + len(unreadable) == len(files)
    assert {p.location for p in unreadable} == {"ActPharmacySupplyType.xml", "CoverageRoleType.xml", "MediaType.xml"}
    assert all(p.severity is Severity.WARNING for p in loaded.problems)
    assert elapsed < 2.0, f"loading {len(files)} JDV files took {elapsed:.2f}s"


def test_lookup_by_file_stem_any_case_and_dash(ans: ValueSets) -> None:
    j07 = ans.get("JDV_J07_XdsTypeCode_CISIS")
    assert j07 is not None
    assert j07.oid == "1.2.250.1.213.1.1.5.471"
    assert ans.get("jdv_j07-xdstypecode-cisis") is j07
    assert ans.get("JDV_J07-XdsTypeCode-CISIS.xml") is j07
    assert ans.get("1.2.250.1.213.1.1.5.471") is j07
    assert "JDV_J07_XdsTypeCode_CISIS" in ans
    assert ans.get("JDV_nothing") is None


def test_contains_and_display(ans: ValueSets) -> None:
    j02 = ans.get("JDV_J02_XdsHealthcareFacilityTypeCode_CISIS")
    assert j02 is not None
    assert j02.oid == "1.2.250.1.213.1.1.5.466"
    assert j02.contains("SA07", "1.2.250.1.71.4.2.4")
    assert not j02.contains("SA07", "1.2.250.1.213.1.1.4.9")
    assert not j02.contains("SA99", "1.2.250.1.71.4.2.4")
    assert j02.display("SA01", "1.2.250.1.71.4.2.4") == "Etablissement public de santé"
    assert j02.display("SA99", "1.2.250.1.71.4.2.4") is None
    assert "1.2.250.1.71.4.2.4" in j02.code_systems()
    j04 = ans.get("JDV_J04_XdsPracticeSettingCode_CISIS")
    assert j04 is not None
    assert j04.contains("AMBULATOIRE", "1.2.250.1.213.1.1.4.9")


def test_confidentiality_jdv_holds_the_masking_codes(ans: ValueSets) -> None:
    j08 = ans.get("1.2.250.1.213.1.1.5.463")
    assert j08 is not None
    assert j08.contains("MASQUE_PS", "1.2.250.1.213.1.1.4.13")
    assert j08.contains("N", "2.16.840.1.113883.5.25")


def test_find_by_concept(ans: ValueSets) -> None:
    holders = {v.oid for v in ans.find_by_concept("F", "2.16.840.1.113883.5.1")}
    assert "1.2.250.1.213.1.1.5.590" in holders  # JDV_J143_AdministrativeGender_CISIS
    assert ans.find_by_concept("no-such-code", "1.2.3") == []


def test_broken_files_become_problems(tmp_path: Path) -> None:
    (tmp_path / "JDV_Good.xml").write_text(SVS.format(oid="1.2.3.4", name="JDV_Good"), encoding="utf-8")
    (tmp_path / "JDV_Broken.xml").write_text("<RetrieveValueSetResponse", encoding="utf-8")
    (tmp_path / "JDV_Other.xml").write_text("<html/>", encoding="utf-8")
    (tmp_path / "JDV_Twin.xml").write_text(SVS.format(oid="1.2.3.4", name="JDV_Twin"), encoding="utf-8")
    (tmp_path / "README.txt").write_text("not a value set", encoding="utf-8")
    loaded = ValueSets.load(tmp_path)
    assert {(p.rule, p.location) for p in loaded.problems} == {
        ("cda.valuesets.unreadable", "JDV_Broken.xml"),
        ("cda.valuesets.not-svs", "JDV_Other.xml"),
        ("cda.valuesets.duplicate-oid", "JDV_Twin"),
    }
    assert len(loaded) == 2
    good = loaded.get("jdv_good")
    assert good is not None and good.contains("B", "1.2.3") and len(good) == 2
    assert loaded.get("1.2.3.4") is good
    assert loaded.get("JDV_Twin") is not None


def test_entities_are_not_expanded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("leaked", encoding="utf-8")
    hostile = (
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]>'
        '<RetrieveValueSetResponse xmlns="urn:ihe:iti:svs:2008"><ValueSet id="9.9" displayName="x"><ConceptList>'
        '<Concept code="&x;" codeSystem="1.2" displayName="d"/></ConceptList></ValueSet></RetrieveValueSetResponse>'
    )
    (tmp_path / "JDV_Hostile.xml").write_text(hostile, encoding="utf-8")
    loaded = ValueSets.load(tmp_path)
    # An external entity in an attribute is refused by the parser: the file is a problem.
    assert loaded.get("9.9") is None
    assert [p.rule for p in loaded.problems] == ["cda.valuesets.unreadable"]


def test_missing_folder_is_a_problem(tmp_path: Path) -> None:
    loaded = ValueSets.load(tmp_path / "absent")
    assert len(loaded) == 0
    assert [p.rule for p in loaded.problems] == ["cda.valuesets.folder"]


def test_in_memory_value_sets() -> None:
    value_set = ValueSet("1.2.9", "JDV_Test", "JDV_Test", (Concept("X", "1.2", "Xray"),))
    sets = ValueSets([value_set])
    assert sets.get("JDV_TEST") is value_set
    assert [c.code for c in value_set] == ["X"]
    assert list(sets) == [value_set]
