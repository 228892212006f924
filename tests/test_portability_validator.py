"""The portability-archive validator: a conforming archive passes, each break is its finding, hostile zips too."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

import pytest

from harness.findings import Finding, Severity, error
from harness.validators.portability import (
    ExpectedDocument,
    ExpectedExport,
    LayoutError,
    PortabilityLayout,
    check_export,
    within_depth,
    xds_instant,
)
from tests.mss_samples import ANS_N1, zipped
from tests.pdf_samples import conforming_pdfa
from tests.portability_samples import (
    APPOINTMENT,
    CDA_MEMBER,
    EXPECTED,
    FOLDER,
    PARIS,
    PATIENT,
    PDF_MEMBER,
    agenda,
    conforming_archive,
    conforming_members,
    metadata,
    with_integrity,
)

METADATA = f"{FOLDER}/METADATA.XML"
INTEGRITY = "DOCUMENTATION/INTEGRITE.JSON"


def _rules(archive: bytes, expected: ExpectedExport | None = EXPECTED, **options: object) -> set[str]:
    report = check_export(archive, expected, **options)  # type: ignore[arg-type]
    return {f.rule for f in report.findings if f.severity is not Severity.INFO}


def _set(changes: dict[str, bytes | None]) -> bytes:
    """The conforming archive with members replaced (bytes) or removed (None), the integrity report recomputed."""
    members = conforming_members()
    for path, content in changes.items():
        if content is None:
            members.pop(path, None)
        else:
            members[path] = content
    return zipped(with_integrity(members))


def test_a_conforming_archive_has_no_finding() -> None:
    report = check_export(conforming_archive(), EXPECTED)
    assert [f for f in report.findings if f.severity is not Severity.INFO] == []
    assert report.folders == {FOLDER: PATIENT.label}
    assert report.inventory()["document_entries"] == 2 and report.events == 1 and report.trace_lines == 2


def test_the_cda_check_is_called_on_each_cda_and_its_findings_kept() -> None:
    seen: list[str] = []

    def check(content: bytes, name: str) -> list[Finding]:
        seen.append(name)
        return [error("cda.schema", "a schema error", name)]

    report = check_export(conforming_archive(), EXPECTED, check_cda=check)
    assert seen == [CDA_MEMBER] and report.cda_validated == 1
    assert "cda.schema" in {f.rule for f in report.findings}


def test_root_files_and_the_patient_part_are_required() -> None:
    assert {"portability.layout.index", "portability.layout.readme"} <= _rules(
        _set({"INDEX.HTM": None, "README.TXT": None})
    )
    members = {n: c for n, c in conforming_members().items() if not n.startswith("IHE_XDM/")}
    rules = _rules(zipped(with_integrity(members)))
    assert {"portability.layout.patients", "portability.patient.missing"} <= rules


def test_a_patient_folder_with_a_long_name_is_a_warning() -> None:
    members = {n.replace("PAT00001", "PATIENT_0001"): c for n, c in conforming_members().items()}
    report = check_export(zipped(with_integrity(members)), EXPECTED)
    assert {f.rule: f.severity for f in report.findings}["portability.layout.folder-name"] is Severity.WARNING


def test_a_cda_without_its_pdf_copy_is_an_error() -> None:
    cda = ANS_N1.read_bytes()
    rules = _rules(_set({PDF_MEMBER: None, METADATA: metadata(cda, None)}))
    assert "portability.pdf.missing" in rules


def test_a_pdf_that_is_not_pdfa_is_judged() -> None:
    cda = ANS_N1.read_bytes()
    plain = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    rules = _rules(_set({PDF_MEMBER: plain, METADATA: metadata(cda, plain)}))
    assert any(rule.startswith("pdf.") for rule in rules)
    assert not any(rule.startswith("pdf.") for rule in _rules(_set({}), check_pdf=False))


def test_an_entry_hash_that_is_not_the_files_is_an_error() -> None:
    members = conforming_members()
    members[CDA_MEMBER] = members[CDA_MEMBER].replace(b"</ClinicalDocument>", b"<!-- x --></ClinicalDocument>")
    assert {"portability.entry.hash", "portability.entry.size"} <= _rules(zipped(with_integrity(members)))


def test_missing_identity_items_are_each_an_error() -> None:
    cda, pdf = ANS_N1.read_bytes(), conforming_pdfa()
    rules = _rules(_set({METADATA: metadata(cda, pdf, source_patient_info=())}))
    assert {
        "portability.identity.name",
        "portability.identity.first-name",
        "portability.identity.birth-date",
        "portability.identity.sex",
    } <= rules


def test_an_ins_stored_but_not_exported_is_an_error() -> None:
    members = conforming_members()
    ipp = b"1234567890121^^^&amp;1.2.3.4.567.8.9.10&amp;ISO^PI"
    text = members[METADATA].replace(b"279035121518989^^^&amp;1.2.250.1.213.1.4.10&amp;ISO^NH", ipp)
    assert text != members[METADATA]
    members[METADATA] = text.replace(b"PID-3|279035121518989", b"PID-3|1234567890121")
    rules = _rules(zipped(with_integrity(members)))
    assert "portability.identity.ins" in rules
    assert "portability.identity.ins" not in _rules(
        zipped(with_integrity(members)), replace(EXPECTED, patients=(replace(PATIENT, ins=None),))
    )


def test_documents_before_the_depth_and_missing_documents_are_errors() -> None:
    archive = conforming_archive()
    late = replace(EXPECTED, since=date(2021, 6, 1))
    rules = _rules(archive, late)
    assert "portability.depth.outside" in rules and "portability.document.missing" not in rules
    extra = ExpectedDocument("1.2.250.1.999.7", "11490-0", datetime(2021, 3, 1, tzinfo=PARIS))
    wanting = replace(EXPECTED, patients=(replace(PATIENT, documents=(*PATIENT.documents, extra)),))
    assert "portability.document.missing" in _rules(archive, wanting)
    old = replace(extra, created=datetime(2019, 3, 1, tzinfo=PARIS))
    outside = replace(EXPECTED, patients=(replace(PATIENT, documents=(*PATIENT.documents, old)),))
    assert "portability.document.missing" not in _rules(archive, outside)


def test_a_patient_outside_the_scope_is_an_error() -> None:
    rules = _rules(conforming_archive(), ExpectedExport((), (PATIENT,), None))
    assert "portability.scope.outside" in rules
    report = check_export(conforming_archive(), ExpectedExport((), (), None))
    assert "portability.patient.unexpected" in {f.rule for f in report.findings}


def test_the_agenda_is_parsed_and_matched() -> None:
    assert "portability.agenda.missing-file" in _rules(_set({"TRANSVERSE/AGENDA.ICS": None}))
    assert "portability.agenda.unreadable" in _rules(_set({"TRANSVERSE/AGENDA.ICS": b"\x00\xff not a calendar"}))
    other = replace(APPOINTMENT, summary="Autre chose")
    assert "portability.agenda.missing" in _rules(_set({"TRANSVERSE/AGENDA.ICS": agenda((other,))}))
    assert "portability.agenda.missing" in _rules(_set({"TRANSVERSE/AGENDA.ICS": agenda(attendee="QUELQU'UN")}))
    early = replace(APPOINTMENT, start=datetime(2019, 5, 3, 10, 0, tzinfo=PARIS))
    assert "portability.depth.outside" in _rules(_set({"TRANSVERSE/AGENDA.ICS": agenda((APPOINTMENT, early))}))
    no_version = agenda().replace(b"VERSION:2.0\r\n", b"")
    assert "portability.agenda.header" in _rules(_set({"TRANSVERSE/AGENDA.ICS": no_version}))


def test_traces_must_be_rfc5424_syslog() -> None:
    assert "portability.traces.missing-file" in _rules(_set({"TRANSVERSE/TRACES.LOG": None}))
    assert "portability.traces.empty" in _rules(_set({"TRANSVERSE/TRACES.LOG": b"\n\n"}))
    assert "portability.traces.encoding" in _rules(_set({"TRANSVERSE/TRACES.LOG": b"\xff\xfe<1>1"}))
    report = check_export(_set({"TRANSVERSE/TRACES.LOG": b"2026-03-02 export done\n"}), EXPECTED)
    assert "line 1" in next(f.message for f in report.findings if f.rule == "portability.traces.format")
    bsd = b"<13>Mar  2 09:30:00 cabinet logiciel: export\n"
    report = check_export(_set({"TRANSVERSE/TRACES.LOG": bsd}), EXPECTED)
    assert {f.rule: f.severity for f in report.findings}["portability.traces.rfc3164"] is Severity.WARNING
    bad_time = b"<110>1 yesterday host app - - - message\n"
    assert "portability.traces.format" in _rules(_set({"TRANSVERSE/TRACES.LOG": bad_time}))


def test_the_data_dictionary_must_cover_every_file() -> None:
    assert "portability.documentation.missing-file" in _rules(_set({"DOCUMENTATION/DICTIONNAIRE.CSV": None}))
    assert "portability.documentation.columns" in _rules(_set({"DOCUMENTATION/DICTIONNAIRE.CSV": b"data;where\nx;y\n"}))
    partial = b"donnee;format;emplacement\nDocuments;CDA R2;IHE_XDM/*/DOC*.XML\nVieux;?;ARCHIVE/*.DAT\n"
    report = check_export(_set({"DOCUMENTATION/DICTIONNAIRE.CSV": partial}), EXPECTED)
    by_rule = {f.rule: f for f in report.findings}
    assert "TRANSVERSE/AGENDA.ICS" in by_rule["portability.documentation.uncovered"].message
    assert by_rule["portability.documentation.stale"].severity is Severity.WARNING
    empty_format = b"donnee;format;emplacement\nTout;;*\n"
    assert "portability.documentation.row" in _rules(_set({"DOCUMENTATION/DICTIONNAIRE.CSV": empty_format}))


def test_the_integrity_report_must_match_the_files() -> None:
    members = conforming_members()
    report = json.loads(members[INTEGRITY])
    report["files"][0]["sha256"] = "0" * 64
    report["files"][1]["size"] += 1
    report["files"].pop(2)
    report["files"].append({"path": "ABSENT.TXT", "size": 1, "sha256": "0" * 64})
    report["volumes"]["documents"] = 1
    members[INTEGRITY] = json.dumps(report).encode()
    rules = _rules(zipped(members))
    assert {
        "portability.integrity.hash",
        "portability.integrity.size",
        "portability.integrity.unlisted",
        "portability.integrity.extra",
        "portability.integrity.volumes",
    } <= rules
    members[INTEGRITY] = b"{not json"
    assert "portability.integrity.unreadable" in _rules(zipped(members))
    members.pop(INTEGRITY)
    assert "portability.integrity.missing-file" in _rules(zipped(members))


def test_a_layout_file_renames_the_transverse_and_documentation_parts(tmp_path: Path) -> None:
    renamed = {
        n.replace("TRANSVERSE/", "DONNEES_TRANSVERSES/").replace("DOCUMENTATION/", "DOC_EXPORT/"): c
        for n, c in conforming_members().items()
    }
    renamed["DOC_EXPORT/DICTIONNAIRE.CSV"] = renamed["DOC_EXPORT/DICTIONNAIRE.CSV"].replace(
        b"TRANSVERSE/", b"DONNEES_TRANSVERSES/"
    )
    archive = zipped(with_integrity(renamed, "DOC_EXPORT/INTEGRITE.JSON"))
    assert "portability.agenda.missing-file" in _rules(archive)
    layout_file = tmp_path / "layout.toml"
    layout_file.write_text(
        '[portability]\ntransverse_folder = "DONNEES_TRANSVERSES"\ndocumentation_folder = "DOC_EXPORT"\n'
    )
    layout = PortabilityLayout.from_toml(layout_file)
    assert _rules(archive, layout=layout) == set()


@pytest.mark.parametrize(
    "content",
    ['[portability]\nfolder = "X"\n', '[portability]\nagenda = "../AGENDA.ICS"\n', "[portability\n", ""],
    ids=["unknown-key", "unsafe-name", "not-toml", "empty-is-default"],
)
def test_a_bad_layout_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "layout.toml"
    path.write_text(content)
    if not content:
        assert PortabilityLayout.from_toml(path) == PortabilityLayout()
        return
    with pytest.raises(LayoutError):
        PortabilityLayout.from_toml(path)


# -- hostile archives ---------------------------------------------------------------------------------
def _zip_with(name: str, content: bytes, compress: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compress) as archive:
        for member, data in conforming_members().items():
            archive.writestr(member, data)
        archive.writestr(name, content)
    return buffer.getvalue()


def test_hostile_archives_are_findings_not_crashes() -> None:
    assert "xdm.zip.unreadable" in _rules(b"this is not a zip at all")
    archive = conforming_archive()
    assert "xdm.zip.unreadable" in _rules(archive[: len(archive) // 2])
    assert "xdm.zip.path" in _rules(_zip_with("../../etc/cron.d/evil", b"x"))
    assert "xdm.zip.path" in _rules(_zip_with("/abs/evil", b"x"))
    assert "xdm.zip.bomb" in _rules(_zip_with("IHE_XDM/PAT00001/BOMB.BIN", b"\0" * (64 * 1024 * 1024)))
    assert "xdm.zip.too-large" in _rules(archive, max_bytes=1024)
    assert "xdm.zip.members" in _rules(archive, max_members=3)
    doctype = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>'
    assert "portability.metadata.unsafe" in _rules(_set({METADATA: doctype}))
    assert "portability.metadata.unreadable" in _rules(_set({METADATA: b"<rim:"}))
    broken_cda = b"<ClinicalDocument xmlns='urn:hl7-org:v3'><id root='1'/>"
    rules = _rules(_set({CDA_MEMBER: broken_cda}))
    assert "xds.cda.unreadable" in rules


def test_xds_instants_and_the_depth_boundary() -> None:
    moment = xds_instant("20230301230000")
    assert moment is not None and moment.isoformat() == "2023-03-01T23:00:00+00:00"
    assert within_depth(moment, date(2023, 3, 2)), "23:00 UTC on 1 March is 2 March in Paris"
    assert not within_depth(moment, date(2023, 3, 3))
    assert within_depth(moment, None)
    assert xds_instant("2021-04-01") is None and xds_instant("20211301") is None
