"""The pytest plugin: verdicts, not-applicable by profile, manual requirements, labels, journal."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from harness.evidence.journal import read_verdicts

CATALOG = """
[[requirement]]
ref = "DEMO/va1.01"
va1_refs = ["LGC.DEMO.01"]
wave = "va1"
section_id = "DEMO"
section = "Démonstration"
nature = "EXIGENCE"
profile = "Général"
status = "Approuvée"
statement = "The system keeps a demo record."

[[requirement.scenario]]
ref = "DEMO/va1.01.01"
summary = "Create a demo record."
steps = ["Create it", "Read it back"]

[[requirement.scenario.proof]]
ref = "DEMO/va1.01.01.01"
kind = "log"
text = "The log of the creation."

[[requirement]]
ref = "DEMO/va1.02"
wave = "va1"
section_id = "DEMO"
section = "Démonstration"
nature = "EXIGENCE"
profile = "Centres de santé"
status = "Approuvée"
statement = "In health centres the system does something."

[[requirement.scenario]]
ref = "DEMO/va1.02.01"
summary = "Do it in a health centre."
steps = ["Do it"]

[[requirement]]
ref = "DEMO/va1.03"
wave = "va1"
section_id = "DEMO"
section = "Démonstration"
nature = "PRECONISATION"
profile = "Général"
status = "Approuvée"
statement = "The vendor documents something."

[[requirement.scenario]]
ref = "DEMO/va1.03.01"
summary = "Show the documentation."
steps = ["Show it"]

[[requirement.scenario.proof]]
ref = "DEMO/va1.03.01.01"
kind = "documentation"
text = "The documentation."
"""

DEMO_SUT = """
from harness.sut.model import Capability, SutDescription

class DemoSut:
    resets = 0

    def describe(self):
        return SutDescription("Demo", "Demo SUT", "1.0", frozenset({Capability.RESET}), ())

    def reset(self):
        DemoSut.resets += 1
"""

SCENARIOS = """
import pytest
from harness.verdicts import NonConformity

@pytest.mark.requirement("DEMO/va1.01")
def test_passes(sut, evidence):
    '''A conforming scenario.'''
    evidence.attach("note.txt", b"hello", "text/plain")
    assert evidence.expect(True, "demo.ok", "always true")

@pytest.mark.requirement("DEMO/va1.01", scenario="DEMO/va1.01.01")
def test_nonconformity(sut, evidence):
    evidence.expect(False, "demo.rule", "the demo record must exist")
    evidence.conclude()

@pytest.mark.requirement("DEMO/va1.01")
def test_findings_without_conclude_still_fail(sut, evidence):
    evidence.expect(False, "demo.rule", "forgotten conclusion")

@pytest.mark.requirement("DEMO/va1.01")
def test_assertion(sut):
    assert 1 == 2, "numbers differ"

@pytest.mark.requirement("DEMO/va1.01")
def test_crash(sut):
    raise RuntimeError("boom")

@pytest.mark.requirement("DEMO/va1.01")
def test_missing_capability(sut):
    sut.verify_ins("p1")

@pytest.mark.requirement("DEMO/va1.02")
def test_centre_only(sut):
    raise AssertionError("must not run outside its profile")

def test_not_a_scenario():
    assert True
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    data = pytester.path / "catalog"
    (data / "lgc").mkdir(parents=True)
    (data / "profiles.toml").write_text(
        '[[profile]]\nname = "Général"\n[[profile]]\nname = "Centres de santé"\n', encoding="utf-8"
    )
    (data / "lgc" / "demo.toml").write_text(CATALOG, encoding="utf-8")
    pytester.makepyfile(demo_sut=DEMO_SUT, test_demo=SCENARIOS)
    pytester.syspathinsert()
    return data


def _run(pytester: pytest.Pytester, data: Path, *extra: str) -> tuple[pytest.RunResult, Path]:
    run_dir = pytester.path / "run"
    result = pytester.runpytest_inprocess(
        "--sut=python:demo_sut:DemoSut",
        f"--catalog-dir={data}",
        f"--run-dir={run_dir}",
        "-p",
        "no:cacheprovider",
        *extra,
    )
    return result, run_dir


def test_outcomes_become_verdicts(pytester: pytest.Pytester, project: Path) -> None:
    result, run_dir = _run(pytester, project, f"--junitxml={pytester.path / 'junit.xml'}")
    by_test = {v.nodeid.split("::")[-1]: v for v in read_verdicts(run_dir) if v.nodeid}
    assert by_test["test_passes"].status.value == "passed"
    assert by_test["test_passes"].title == "A conforming scenario."
    assert by_test["test_nonconformity"].status.value == "failed"
    assert by_test["test_nonconformity"].findings[0].rule == "demo.rule"
    assert by_test["test_findings_without_conclude_still_fail"].status.value == "failed"
    assert by_test["test_assertion"].status.value == "failed"
    assert "numbers differ" in by_test["test_assertion"].reason
    assert by_test["test_crash"].status.value == "error" and "boom" in by_test["test_crash"].reason
    assert by_test["test_missing_capability"].status.value == "not-supported"
    assert by_test["test_centre_only"].status.value == "not-applicable"
    assert "Centres de santé" in by_test["test_centre_only"].reason
    assert "test_not_a_scenario" not in by_test
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 4 and outcomes["passed"] == 2 and outcomes["skipped"] == 2
    junit = (pytester.path / "junit.xml").read_text(encoding="utf-8")
    assert 'name="segur_verdict" value="not-applicable"' in junit
    assert 'name="segur_requirements" value="DEMO/va1.01"' in junit


def test_requirements_without_scenario_are_manual_with_their_proofs(pytester: pytest.Pytester, project: Path) -> None:
    _, run_dir = _run(pytester, project)
    manual = [v for v in read_verdicts(run_dir) if not v.nodeid]
    assert [(v.requirement_refs, v.status.value) for v in manual] == [(["DEMO/va1.03"], "manual")]
    assert "DEMO/va1.03.01.01" in manual[0].reason


def test_selected_profile_makes_the_scenario_applicable(pytester: pytest.Pytester, project: Path) -> None:
    _, run_dir = _run(pytester, project, "--profile=Centres de santé", "-k", "centre")
    (verdict,) = [v for v in read_verdicts(run_dir) if v.nodeid]
    assert verdict.status.value == "failed"


def test_unknown_requirement_id_is_a_usage_error(pytester: pytest.Pytester, project: Path) -> None:
    pytester.makepyfile(
        test_bad=textwrap.dedent(
            """
            import pytest
            @pytest.mark.requirement("DEMO/va9.99")
            def test_x():
                pass
            """
        )
    )
    result, _ = _run(pytester, project, "test_bad.py")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "unknown requirement id(s) ['DEMO/va9.99']" in result.stderr.str()


def test_unknown_profile_is_a_usage_error(pytester: pytest.Pytester, project: Path) -> None:
    result, _ = _run(pytester, project, "--profile=Cabinet lunaire")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_allure_labels_follow_the_catalogue(pytester: pytest.Pytester, project: Path) -> None:
    allure_dir = pytester.path / "allure"
    _run(pytester, project, f"--alluredir={allure_dir}", "-k", "test_passes")
    results = [json.loads(p.read_text()) for p in allure_dir.glob("*-result.json")]
    (passed,) = [r for r in results if r["name"] == "test_passes"]
    labels = {(lbl["name"], lbl["value"]) for lbl in passed["labels"]}
    assert {("epic", "DEMO"), ("feature", "DEMO/va1.01"), ("story", "DEMO/va1.01.01")} <= labels


def test_run_folder_is_finalised(pytester: pytest.Pytester, project: Path) -> None:
    _, run_dir = _run(pytester, project)
    expected = ("journal.jsonl", "run.json", "matrix.csv", "matrix.xlsx", "index.html", "manifest.json", "manifest.sig")
    for name in expected:
        assert (run_dir / name).is_file(), name
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["sut"]["software"] == "Demo SUT"


def test_a_plain_test_run_writes_no_evidence(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_x():\n    assert True\n")
    run_dir = pytester.path / "run"
    result = pytester.runpytest_inprocess(f"--run-dir={run_dir}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not run_dir.exists()
