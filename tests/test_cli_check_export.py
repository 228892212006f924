"""``segur-harness check-export``: a portability archive judged on its own, exit codes, bad input."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from harness.cli import app
from tests.mss_samples import zipped
from tests.portability_samples import conforming_archive, conforming_members, with_integrity

runner = CliRunner()


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["check-export", *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_a_conforming_archive_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "export.zip"
    path.write_bytes(conforming_archive())
    code, output = _invoke(str(path), "--no-cda")
    assert code == 0, output
    assert "1 patient folder(s), 2 document entries" in output and "0 error(s)" in output


def test_a_broken_archive_exits_1_with_its_findings_as_json(tmp_path: Path) -> None:
    members = conforming_members()
    members.pop("TRANSVERSE/AGENDA.ICS")
    path = tmp_path / "export.zip"
    path.write_bytes(zipped(with_integrity(members)))
    code, output = _invoke(str(path), "--no-cda", "--format", "json")
    assert code == 1
    report = json.loads(output)
    assert [f["rule"] for f in report["findings"]] == [
        "portability.agenda.missing-file",
        "portability.documentation.stale",
    ]
    assert report["patients"] == {"IHE_XDM/PAT00001": ""} and report["document_entries"] == 2


def test_the_cda_validator_runs_on_each_cda(tmp_path: Path, cda_rules: object) -> None:
    path = tmp_path / "export.zip"
    path.write_bytes(conforming_archive())
    code, output = _invoke(str(path), "--rules", str(Path(str(cda_rules.root))), "--format", "json")
    report = json.loads(output)
    assert report["cda_validated"] == 1
    assert code == (1 if any(f["severity"] == "error" for f in report["findings"]) else 0)


def test_not_a_zip_is_a_finding_and_bad_usage_exits_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    code, output = _invoke(str(junk), "--no-cda")
    assert code == 1 and "xdm.zip.unreadable" in output
    code, output = _invoke(str(tmp_path / "absent.zip"), "--no-cda")
    assert code == 2
    layout = tmp_path / "layout.toml"
    layout.write_text('[portability]\nagenda = "../x"\n')
    code, output = _invoke(str(junk), "--no-cda", "--layout", str(layout))
    assert code == 2 and "not a safe relative name" in output
    code, output = _invoke(str(junk), "--format", "xml")
    assert code == 2
