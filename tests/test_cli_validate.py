"""``segur-harness validate``: formats, exit codes, and a batch that survives bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lxml import etree
from typer.testing import CliRunner

from harness.cli import app
from harness.validators.cda import RuleSet

runner = CliRunner()
PASSING = "VSM_1.4_2022.01.xml"
FAILING = "CANCER-FRCP_2022.01_Appareil.xml"


def _batch(rules: RuleSet, folder: Path) -> Path:
    folder.mkdir()
    for name in (PASSING, FAILING):
        shutil.copy(rules.root / "ExemplesCDA" / name, folder / name)
    (folder / "garbage.xml").write_bytes(b"\x00\x01 not xml")
    (folder / "html.xml").write_bytes(b"<html/>")
    (folder / "ignored.txt").write_text("not a document")
    return folder


def _invoke(*args: str, cache: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["validate", *args, "--cache-dir", str(cache)], catch_exceptions=False)
    return result.exit_code, result.output


def test_a_passing_document_exits_0_with_the_rule_version(cda_rules: RuleSet, tmp_path: Path) -> None:
    code, output = _invoke(
        str(cda_rules.root / "ExemplesCDA" / PASSING), "--rules", str(cda_rules.root), cache=tmp_path
    )
    assert code == 0, output
    assert "1 documents: 1 pass" in output and cda_rules.version in output


def test_a_batch_with_bad_files_is_validated_to_the_end_as_json(cda_rules: RuleSet, tmp_path: Path) -> None:
    folder = _batch(cda_rules, tmp_path / "docs")
    out = tmp_path / "report.json"
    code, _ = _invoke(
        str(folder), "--rules", str(cda_rules.root), "--format", "json", "--output", str(out), cache=tmp_path / "c"
    )
    assert code == 1
    data = json.loads(out.read_text(encoding="utf-8"))
    by_name = {Path(d["subject"]).name: d for d in data["documents"]}
    assert set(by_name) == {PASSING, FAILING, "garbage.xml", "html.xml"}
    assert by_name[PASSING]["ok"] and not by_name[FAILING]["ans_ok"]
    assert by_name["garbage.xml"]["stages"][0]["findings"][0]["rule"] == "cda.parse.not-xml"
    assert by_name["html.xml"]["stages"][0]["findings"][0]["rule"] == "cda.parse.root"
    assert data["summary"] == {"documents": 4, "passed": 1, "failed": 3}
    failed = [
        f
        for s in by_name[FAILING]["stages"]
        if s["stage"] == "schematron"
        for f in s["findings"]
        if f["severity"] == "error"
    ]
    assert failed[0]["rule_file"].startswith("schematrons/") and failed[0]["location"].startswith("/ClinicalDocument")


def test_svrl_and_html_reports(cda_rules: RuleSet, tmp_path: Path) -> None:
    document = str(cda_rules.root / "ExemplesCDA" / FAILING)
    code, output = _invoke(document, "--rules", str(cda_rules.root), "--format", "svrl", cache=tmp_path)
    assert code == 1
    root = etree.fromstring(output.encode("utf-8"))
    assert root.findall(".//{http://purl.oclc.org/dsdl/svrl}failed-assert")
    html_file = tmp_path / "r.html"
    code, _ = _invoke(
        document, "--rules", str(cda_rules.root), "--format", "html", "--output", str(html_file), cache=tmp_path
    )
    assert code == 1 and "dansJeuDeValeurs" in html_file.read_text(encoding="utf-8")


def test_usage_errors_exit_2(cda_rules: RuleSet, tmp_path: Path) -> None:
    document = str(cda_rules.root / "ExemplesCDA" / PASSING)
    assert _invoke(document, "--rules", str(tmp_path), cache=tmp_path)[0] == 2
    assert _invoke(document, "--format", "pdf", cache=tmp_path)[0] == 2
    (tmp_path / "empty").mkdir()
    assert _invoke(str(tmp_path / "empty"), cache=tmp_path)[0] == 2


def test_without_rules_the_harness_rules_still_judge(cda_rules: RuleSet, tmp_path: Path, monkeypatch: object) -> None:
    monkeypatch.delenv("SEGUR_HARNESS_CDA_RULES", raising=False)  # type: ignore[attr-defined]
    code, output = _invoke(str(cda_rules.root / "ExemplesCDA" / "CSE-CS8_2024.01.xml"), cache=tmp_path)
    assert code == 1 and "harness rules only" in output and "cda.header.ins.key" in output


def test_a_run_refuses_a_cda_rules_folder_that_is_not_one(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "--cda-rules", str(tmp_path), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "not a TestContenuCDA folder" in result.output
