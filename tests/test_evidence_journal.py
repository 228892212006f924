"""The run journal: layout, paths filled, crash tolerance."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from harness.evidence import layout
from harness.evidence.journal import JournalError, RunJournal, read_journal, read_run, read_verdicts, run_end
from harness.verdicts import Verdict, VerdictStatus
from tests.test_evidence_support import T_END, make_run, run_info, sample_verdicts


def test_record_writes_the_layout_and_fills_paths(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    verdicts = read_verdicts(run_dir)
    assert [v.scenario_ref for v in verdicts] == ["INS/va1.06.01", "MSS/va1.07.01", "MSS/va1.07.02", "CDA/DD.04.01"]

    first = verdicts[0]
    case = run_dir / "requirements" / "INS_va1.06" / "INS_va1.06.01" / "qualifiee-ko"
    assert (case / "verdict.json").is_file()
    assert [e["path"] for e in first.exchanges] == [
        "requirements/INS_va1.06/INS_va1.06.01/qualifiee-ko/exchanges/001-insi.json",
        "requirements/INS_va1.06/INS_va1.06.01/qualifiee-ko/exchanges/002-psc.json",
    ]
    assert first.exchanges[0]["seq"] == 3 and first.exchanges[0]["redactions"]
    (artefact,) = first.artefacts
    assert artefact.path == "requirements/INS_va1.06/INS_va1.06.01/qualifiee-ko/files/trace.json"
    assert artefact.sha256 == hashlib.sha256((run_dir / artefact.path).read_bytes()).hexdigest()
    for entry in first.exchanges:
        assert entry["sha256"] == hashlib.sha256((run_dir / entry["path"]).read_bytes()).hexdigest()

    on_disk = json.loads((case / "verdict.json").read_text(encoding="utf-8"))
    assert on_disk["evidence"] == {
        "folder": "requirements/INS_va1.06/INS_va1.06.01/qualifiee-ko",
        "case": "qualifiee-ko",
        "nodeid": "scenarios/test_insi.py::test_verification_traced[qualifiee-ko]",
    }
    assert Verdict.from_dict(on_disk) == first


def test_exchanges_on_disk_are_redacted(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    everything = b"".join(p.read_bytes() for p in run_dir.rglob("*") if p.is_file())
    for secret in (b"hunter2", b"eyJsecret", b"topsecret", b"at-123", b"idt-456"):
        assert secret not in everything


def test_hostile_names_become_safe_unique_folders(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    cda = read_verdicts(run_dir)[3]
    (artefact,) = cda.artefacts
    assert artefact.name == "<img src=x>.xml"
    assert artefact.path.startswith("requirements/CDA_DD.04/CDA_DD.04.01/")
    assert layout.is_safe_relative(artefact.path) and "<" not in artefact.path and artefact.path.endswith(".xml")

    journal = RunJournal(run_dir, durable=False)
    verdict, _, _ = sample_verdicts()[1]
    again = journal.record(verdict)
    records = read_journal(run_dir).records
    assert records[-1].case == "test_tls-2" and records[-1].folder.endswith("MSS_va1.07.01/test_tls-2")
    assert again.exchanges == [] and again.artefacts == []


def test_case_folders_differ_beyond_letter_case(tmp_path: Path) -> None:
    journal = RunJournal(tmp_path / "run", durable=False)
    journal.start(run_info())
    for nodeid in ("t.py::test_x[KO]", "t.py::test_x[ko]"):
        journal.record(Verdict(nodeid, "INS/va1.06.01", ["INS/va1.06"], "", VerdictStatus.PASSED))
    assert [r.case for r in read_journal(tmp_path / "run").records] == ["KO", "ko-2"]


def test_uncovered_requirement_verdict_has_a_folder(tmp_path: Path) -> None:
    journal = RunJournal(tmp_path / "run", durable=False)
    journal.start(run_info())
    journal.record(Verdict("", "", ["DMP/va1.16"], "expected proofs", VerdictStatus.MANUAL, "no scenario"))
    (record,) = read_journal(tmp_path / "run").records
    assert record.folder == "requirements/DMP_va1.16/_unmapped/uncovered"


def test_truncated_last_line_is_ignored_and_repaired(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run", finished=False)
    journal_path = run_dir / layout.JOURNAL
    with open(journal_path, "ab") as handle:
        handle.write(b'{"type": "verdict", "at": "2026-03-02T09:40:00+00:00", "verdict": {"nodeid": "x", "scen')
    contents = read_journal(run_dir)
    assert contents.truncated and not contents.finished
    assert len(contents.records) == 4, "every finished scenario is kept"
    assert run_end(run_dir) == contents.last_at

    journal = RunJournal(run_dir, durable=False)  # the run continues after the crash
    journal.record(Verdict("t::again", "PSC.01.01", ["PSC.01"], "again", VerdictStatus.PASSED))
    journal.finish(T_END)
    contents = read_journal(run_dir)
    assert not contents.truncated and contents.finished and len(contents.records) == 5
    assert all(json.loads(line) for line in journal_path.read_text(encoding="utf-8").splitlines())


def test_a_complete_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run", finished=False)
    journal_path = run_dir / layout.JOURNAL
    journal_path.write_bytes(journal_path.read_bytes().rstrip(b"\n"))
    assert len(read_verdicts(run_dir)) == 4
    RunJournal(run_dir, durable=False).finish(T_END)
    assert len(read_verdicts(run_dir)) == 4 and read_journal(run_dir).finished


def test_corrupt_line_in_the_middle_is_an_error(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run")
    lines = (run_dir / layout.JOURNAL).read_bytes().splitlines(keepends=True)
    lines[2] = b"{not json\n"
    (run_dir / layout.JOURNAL).write_bytes(b"".join(lines))
    with pytest.raises(JournalError, match=r"journal.jsonl:3"):
        read_journal(run_dir)


def test_run_facts_start_update_finish(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    journal = RunJournal(run_dir, durable=False)
    with pytest.raises(JournalError):
        journal.record(sample_verdicts()[1][0])
    info = run_info()
    info.host = {}
    journal.start(info)
    with pytest.raises(JournalError, match="already holds"):
        journal.start(run_info())
    journal.update(sut={"publisher": "P", "software": "S", "version": "9", "adapter": "http://sut"})
    assert json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["sut"]["version"] == "9"
    journal.finish(T_END)

    run = read_run(run_dir)
    assert run.sut["software"] == "S" and run.ended == T_END
    assert run.host["hostname"], "host facts are filled when not given"
    assert json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["ended"] == T_END.isoformat()
    kinds = [json.loads(line)["type"] for line in (run_dir / layout.JOURNAL).read_text().splitlines()]
    assert kinds == ["run-started", "run-updated", "run-finished"]


def test_durable_mode_works(tmp_path: Path) -> None:
    journal = RunJournal(tmp_path / "run")
    journal.start(run_info())
    verdict, exchanges, files = sample_verdicts()[0]
    journal.record(verdict, exchanges, files)
    journal.finish(T_END)
    assert len(read_verdicts(tmp_path / "run")) == 1


def test_safe_names() -> None:
    assert layout.safe_name("INS/va1.06") == "INS_va1.06"
    assert not layout.safe_name("..").startswith(".") and layout.safe_name(".hidden") == "_.hidden"
    assert layout.safe_name("con") == "_con"
    long = layout.safe_name("x" * 200)
    assert len(long) <= layout.MAX_NAME and long != layout.safe_name("x" * 199)
    assert layout.case_name("a.py::test_x[qualifiée-KO/2]") == "qualifiee-KO_2"
    assert layout.case_name("a.py::TestA::test_y") == "test_y"
    for bad in ("", "/abs", "a/../b", "a\\b", "C:/x", "a//b", "./a"):
        assert not layout.is_safe_relative(bad), bad
