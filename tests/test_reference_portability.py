"""The reference system's data portability (PORT/va1.01): agenda, export archive, import, defects, hostile archives.

A practice with three patients (one qualified through the INSi simulator, two local) and
documents of several dates is exported; the archive is read back with independent tools
(zipfile, lxml, icalendar, the harness's PDF/A checks) against ``docs/portability-archive.md``,
then imported into a second, empty practice. Each portability defect is shown in the
archive it produces; hostile archives get a 422 or a ``refused`` line, never a 500.
"""

from __future__ import annotations

import base64
import csv
import fnmatch
import hashlib
import io
import json
import re
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from icalendar import Calendar
from lxml import etree

from harness.findings import Severity
from harness.pki import TestPki
from harness.plugin.fixtures import insi_endpoint_config
from harness.simulators.insi import InsiSimulator
from harness.sut.base import SutAdapter, SutError, SutRefused, SutTimeout
from harness.sut.http import HttpSut
from harness.sut.model import (
    Appointment,
    Capability,
    PatientRecord,
    PatientTraits,
    PortabilityExport,
    PortabilityImport,
    PortabilityRequest,
    ProducedDocument,
    SutDescription,
)
from harness.sut.python import PythonSut
from harness.sut.reference import ReferenceSut
from harness.validators.pdf import check_ins_datamatrix, check_pdfa
from harness.verdicts import NotSupported
from tests.mss_samples import zipped

ANS = Path(__file__).resolve().parents[2] / "shared" / "data" / "ans"
CDA_XSD = ANS / "TestContenuCDA-3-0" / "infrastructure" / "cda" / "CDA_extended.xsd"
HL7 = "urn:hl7-org:v3"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
NS = {"rim": RIM, "cda": HL7}
ENTRY_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
ENTRY_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SET_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
IPP_OID = "2.25.332939664781100416336680135615873606944.1"
TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
PARIS_WINTER = timezone(timedelta(hours=1))
T_OLD = datetime(2023, 1, 10, 9, 0, tzinfo=UTC)
T_MID = datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
T_NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
LOCAL = PatientTraits("DUPONT-LEGRAND", ("MARIE", "CLAIRE"), "F", "1950-07-14", "", "MARTIN")
OTHER = PatientTraits("HORSCHAMP", ("LUC",), "M", "2001-02-03")
RFC5424 = re.compile(r"^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|\[[^\]]*\](?:\[[^\]]*\])*)(?: (.*))?$")
LAYOUT = (
    "INDEX.HTM",
    "README.TXT",
    "TRANSVERSE/AGENDA.ICS",
    "TRANSVERSE/TRACES.LOG",
    "DOCUMENTATION/DICTIONNAIRE.CSV",
    "DOCUMENTATION/INTEGRITE.JSON",
)


# -- the practice exported ---------------------------------------------------------------------------------
@dataclass
class Seeded:
    patient: PatientRecord
    documents: list[tuple[ProducedDocument, datetime]] = field(default_factory=list)
    appointments: list[tuple[datetime, str]] = field(default_factory=list)


@dataclass
class World:
    source: ReferenceSut
    qualified: Seeded
    local: Seeded
    other: Seeded
    massif: PortabilityExport


@pytest.fixture(scope="module")
def insi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InsiSimulator]:
    with InsiSimulator(TestPki.generate(tmp_path_factory.mktemp("pki"))) as simulator:
        yield simulator


def start(folder: Path, insi: InsiSimulator | None, *defects: str) -> ReferenceSut:
    sut = ReferenceSut(folder, defects=defects)
    if insi is not None:
        sut.configure_endpoints(insi_endpoint_config(insi.url, insi.pki))
    return sut


def qualified_patient(sut: ReferenceSut, insi: InsiSimulator) -> PatientRecord:
    """An identity with an INS, the honest way: INSi retrieval by traits, then an identity-document check."""
    known = insi.base.named("plain")
    traits = PatientTraits(known.birth_name, tuple(known.first_names), known.sex, known.birth_date, known.birthplace)
    patient = sut.create_patient(traits)
    assert sut.search_ins(patient.id, mode="traits").outcome == "found"
    qualified = sut.check_identity(patient.id, "CN")
    assert qualified.status.value == "QUAL" and qualified.ins is not None
    return qualified


def produce(sut: SutAdapter, seeded: Seeded, when: datetime, type_code: str, structure: str = "N1") -> None:
    sut.set_clock(when)
    seeded.documents.append((sut.produce_document(seeded.patient.id, type_code, structure=structure), when))


def appoint(sut: SutAdapter, seeded: Seeded, start_at: datetime, summary: str) -> None:
    sut.create_appointment(seeded.patient.id, start_at, start_at + timedelta(minutes=20), summary)
    seeded.appointments.append((start_at, summary))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, insi: InsiSimulator) -> Iterator[World]:
    sut = start(tmp_path_factory.mktemp("portability-source"), insi)
    try:
        sut.set_clock(T_OLD)
        qualified = Seeded(qualified_patient(sut, insi))
        local = Seeded(sut.create_patient(LOCAL))
        other = Seeded(sut.create_patient(OTHER))
        produce(sut, qualified, T_OLD, "11488-4")
        produce(sut, local, T_OLD, "60591-5", structure="N3")  # a VSM: no PDF inside, a printed copy
        produce(sut, qualified, T_MID, "11490-0")
        produce(sut, other, T_MID, "11488-4")
        produce(sut, local, T_NOW, "57833-6")
        produce(sut, qualified, T_NOW, "60591-5", structure="N3")
        appoint(sut, qualified, datetime(2024, 2, 1, 10, 0, tzinfo=PARIS_WINTER), "Vaccination")
        appoint(sut, qualified, datetime(2026, 3, 10, 9, 0, tzinfo=PARIS_WINTER), "Consultation de suivi")
        appoint(sut, local, datetime(2026, 3, 5, 14, 30, tzinfo=PARIS_WINTER), "Renouvellement; ordonnance")
        appoint(sut, other, datetime(2026, 3, 6, 8, 0, tzinfo=PARIS_WINTER), "Bilan")
        massif = sut.export_portability(PortabilityRequest("massif"), timeout_s=60)
        yield World(sut, qualified, local, other, massif)
    finally:
        sut.close()


def members(archive: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        return {name: opened.read(name) for name in opened.namelist()}


def entries(metadata: bytes) -> list[etree._Element]:
    return etree.fromstring(metadata).findall(".//rim:ExtrinsicObject", NS)


def slot(entry: etree._Element, name: str) -> list[str]:
    return [v.text or "" for v in entry.findall(f"rim:Slot[@name='{name}']/rim:ValueList/rim:Value", NS)]


def external(entry: etree._Element, scheme: str) -> str:
    found = entry.find(f"rim:ExternalIdentifier[@identificationScheme='{scheme}']", NS)
    assert found is not None
    return str(found.get("value"))


def type_code(entry: etree._Element) -> str:
    found = entry.find(f"rim:Classification[@classificationScheme='{TYPE_CODE}']", NS)
    assert found is not None
    return str(found.get("nodeRepresentation"))


def folder_of(files: dict[str, bytes], traits: PatientTraits) -> str:
    """The IHE_XDM folder whose entries name this patient (PID-5)."""
    for name, content in files.items():
        if name.endswith("/METADATA.XML"):
            infos = [v for e in entries(content) for v in slot(e, "sourcePatientInfo")]
            if f"PID-5|{traits.birth_name}^{traits.first_names[0]}^{' '.join(traits.first_names)}^^^^L" in infos:
                return name.rsplit("/", 1)[0]
    raise AssertionError(f"no folder for {traits.birth_name}")


def cda_ids(files: dict[str, bytes], folder: str) -> set[str]:
    return {
        external(e, ENTRY_UNIQUE_ID)
        for e in entries(files[f"{folder}/METADATA.XML"])
        if e.get("mimeType") == "text/xml"
    }


def ins_cx(patient: PatientRecord) -> str:
    assert patient.ins is not None
    return f"{patient.ins.matricule}^^^&{patient.ins.oid}&ISO^NH"


def export(sut: SutAdapter, scope: str, *patients: PatientRecord, since: str = "") -> dict[str, bytes]:
    request = PortabilityRequest(scope, tuple(p.id for p in patients), since)
    return members(sut.export_portability(request, timeout_s=60).archive)


# -- the agenda ------------------------------------------------------------------------------------------------
def test_appointments_round_trip_and_bad_ones_are_refused(world: World) -> None:
    sut, patient = world.source, world.qualified.patient
    listed = sut.list_appointments(patient.id)
    assert [(datetime.fromisoformat(a.start), a.summary) for a in listed] == world.qualified.appointments
    assert all(a.patient_id == patient.id and a.appointment_id for a in listed)
    assert datetime.fromisoformat(listed[0].end) - datetime.fromisoformat(listed[0].start) == timedelta(minutes=20)
    at = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
    for begin, end, summary in (
        (at.replace(tzinfo=None), at, "naive start"),
        (at, at - timedelta(minutes=1), "ends before it starts"),
        (at, at, "   "),
        (at, at, "x" * 501),
    ):
        with pytest.raises(SutRefused):
            sut.create_appointment(patient.id, begin, end, summary)
    with pytest.raises(SutError, match="HTTP 404"):
        sut.create_appointment("P999999", at, at, "nobody")
    with pytest.raises(SutError, match="HTTP 404"):
        sut.list_appointments("P999999")
    assert len(sut.list_appointments(patient.id)) == len(listed)


def test_an_appointment_is_an_activity_of_the_patient_and_reset_wipes_the_agenda(tmp_path: Path) -> None:
    sut = start(tmp_path / "ref", None)
    try:
        sut.set_clock(T_NOW)
        patient = sut.create_patient(OTHER)
        copy = sut.store_id_document(patient.id, b"%PDF-1.4 copie", "application/pdf")
        sut.set_clock(T_NOW + timedelta(days=5 * 365 - 30))
        sut.create_appointment(patient.id, T_NOW, T_NOW + timedelta(minutes=15), "Suivi")
        sut.set_clock(T_NOW + timedelta(days=5 * 365 + 30))
        assert sut.run_maintenance() == [], "the appointment restarted the retention period"
        assert [c.document_id for c in sut.list_id_documents(patient.id)] == [copy]
        sut.reset()
        assert sut.list_patients() == []
        assert sut.list_appointments(sut.create_patient(OTHER).id) == []
    finally:
        sut.close()


# -- the export --------------------------------------------------------------------------------------------------
def test_the_archive_has_the_layout_of_the_contract(world: World) -> None:
    files = members(world.massif.archive)
    assert re.fullmatch(r"portabilite-\d{14}\.zip", world.massif.file_name)
    assert world.massif.file_name == "portabilite-20260302103000.zip"  # the practice clock, French legal time
    for name in LAYOUT:
        assert name in files, name
    folders = sorted({n.rsplit("/", 1)[0] for n in files if n.startswith("IHE_XDM/")})
    assert folders == ["IHE_XDM/PAT00001", "IHE_XDM/PAT00002", "IHE_XDM/PAT00003"]
    for folder in folders:
        names = sorted(n.rsplit("/", 1)[1] for n in files if n.startswith(folder + "/"))
        assert names[-1] == "METADATA.XML"
        cdas = [n for n in names if n.endswith(".XML") and n != "METADATA.XML"]
        assert cdas and all(re.fullmatch(r"DOC\d{5}\.XML", n) for n in cdas)
        assert sorted(n for n in names if n.endswith(".PDF")) == [n[:-4] + ".PDF" for n in cdas]
    with zipfile.ZipFile(io.BytesIO(world.massif.archive)) as opened:
        assert {i.compress_type for i in opened.infolist()} == {zipfile.ZIP_DEFLATED}
        assert {i.date_time for i in opened.infolist()} == {(2026, 3, 2, 10, 30, 0)}
    readme = files["README.TXT"].decode("utf-8")
    for text in ("Cabinet Témoin", "0.1.0", "2026-03-02T10:30:00+01:00", "massif", "historique complet"):
        assert text in readme
    index = files["INDEX.HTM"].decode("utf-8")
    assert all(f'href="{n}"' in index for n in files if n.startswith("IHE_XDM/") and not n.endswith("METADATA.XML"))


def test_each_document_is_there_unchanged_with_its_metadata_and_a_pdf_copy(world: World) -> None:
    files = members(world.massif.archive)
    for seeded in (world.qualified, world.local, world.other):
        folder = folder_of(files, seeded.patient.traits)
        metadata = entries(files[f"{folder}/METADATA.XML"])
        by_id = {external(e, ENTRY_UNIQUE_ID): e for e in metadata}
        for produced, when in seeded.documents:
            entry = by_id[produced.document_id]
            [uri] = slot(entry, "URI")
            content = files[f"{folder}/{uri}"]
            assert content == produced.cda, "the stored CDA bytes, unchanged"
            assert slot(entry, "hash") == [hashlib.sha1(content).hexdigest()]
            assert slot(entry, "size") == [str(len(content))]
            assert slot(entry, "creationTime") == [when.strftime("%Y%m%d%H%M%S")]
            assert type_code(entry) == produced.type_code and entry.get("mimeType") == "text/xml"
            pdf_name = uri[:-4] + ".PDF"
            [pdf_entry] = [e for e in metadata if slot(e, "URI") == [pdf_name]]
            pdf = files[f"{folder}/{pdf_name}"]
            assert pdf_entry.get("mimeType") == "application/pdf"
            assert slot(pdf_entry, "hash") == [hashlib.sha1(pdf).hexdigest()]
            assert slot(pdf_entry, "size") == [str(len(pdf))]
            assert external(pdf_entry, ENTRY_UNIQUE_ID) != produced.document_id
            for name in ("creationTime", "sourcePatientInfo", "sourcePatientId"):
                assert slot(pdf_entry, name) == slot(entry, name)
            assert type_code(pdf_entry) == type_code(entry)
            assert external(pdf_entry, ENTRY_PATIENT_ID) == external(entry, ENTRY_PATIENT_ID)
            if produced.type_code != "SYNTH":
                assert pdf == produced.pdf, "a level-1 document's copy is the PDF it embeds"
            assert check_pdfa(pdf, 1, source_label=pdf_name) == []


def test_the_printed_copy_of_a_structured_document_carries_the_ins_and_its_datamatrix(world: World) -> None:
    files = members(world.massif.archive)
    folder = folder_of(files, world.qualified.patient.traits)
    [vsm] = [d for d, _ in world.qualified.documents if d.type_code == "SYNTH"]
    entry = next(e for e in entries(files[f"{folder}/METADATA.XML"]) if external(e, ENTRY_UNIQUE_ID) == vsm.document_id)
    pdf = files[f"{folder}/{slot(entry, 'URI')[0][:-4]}.PDF"]
    ins = world.qualified.patient.ins
    assert ins is not None
    assert check_pdfa(pdf, 1) == []
    assert [f for f in check_ins_datamatrix(pdf, ins.matricule, ins.oid) if f.severity is not Severity.INFO] == []


def test_the_patient_is_identified_by_the_ins_of_a_qualified_identity_else_by_the_ipp(world: World) -> None:
    files = members(world.massif.archive)
    for seeded, qualified in ((world.qualified, True), (world.local, False)):
        patient = seeded.patient
        folder = folder_of(files, patient.traits)
        metadata = files[f"{folder}/METADATA.XML"]
        ipp = f"{patient.id}^^^&{IPP_OID}&ISO^PI"
        expected = ins_cx(patient) if qualified else ipp
        assert {external(e, ENTRY_PATIENT_ID) for e in entries(metadata)} == {expected}
        package = etree.fromstring(metadata).find(".//rim:RegistryPackage", NS)
        assert package is not None and external(package, SET_PATIENT_ID) == expected
        traits = patient.traits
        info = slot(entries(metadata)[0], "sourcePatientInfo")
        assert info == [
            f"PID-3|{ipp}",
            *([f"PID-3|{ins_cx(patient)}"] if qualified else []),
            f"PID-5|{traits.birth_name}^{traits.first_names[0]}^{' '.join(traits.first_names)}^^^^L",
            f"PID-7|{traits.birth_date.replace('-', '')}",
            f"PID-8|{traits.sex}",
        ]


@pytest.mark.parametrize(
    ("scope", "since", "who", "documents"),
    [
        pytest.param("unitaire", "", ("local",), 2, id="unitaire"),
        pytest.param("cible", "2025-01-01", ("qualified", "local"), 3, id="cible-since"),
        pytest.param("cible", "2025-06-01", ("qualified",), 2, id="since-is-inclusive"),
        pytest.param("massif", "2026-03-02", ("qualified", "local", "other"), 2, id="massif-today"),
        pytest.param("massif", "2027-01-01", ("qualified", "local", "other"), 0, id="massif-future"),
    ],
)
def test_scope_and_depth(world: World, scope: str, since: str, who: tuple[str, ...], documents: int) -> None:
    chosen: list[Seeded] = [getattr(world, name) for name in who]
    patients = [s.patient for s in chosen] if scope != "massif" else []
    files = export(world.source, scope, *patients, since=since)
    folders = {n.rsplit("/", 1)[0] for n in files if n.startswith("IHE_XDM/")}
    assert len(folders) == len(chosen)
    depth = date.fromisoformat(since) if since else date.min
    for seeded in chosen:
        wanted = {d.document_id for d, when in seeded.documents if when.astimezone(PARIS_WINTER).date() >= depth}
        if wanted:
            assert cda_ids(files, folder_of(files, seeded.patient.traits)) == wanted
    exported = {i for n in files if n.endswith("/METADATA.XML") for i in cda_ids(files, n.rsplit("/", 1)[0])}
    assert len(exported) == documents
    calendar = Calendar.from_ical(files["TRANSVERSE/AGENDA.ICS"])
    starts = sorted(e.get("DTSTART").dt for e in calendar.walk("VEVENT"))
    assert starts == sorted(t for s in chosen for t, _ in s.appointments if t.date() >= depth)
    report = json.loads(files["DOCUMENTATION/INTEGRITE.JSON"])
    assert report["volumes"] == {"patients": len(chosen), "documents": 2 * documents, "appointments": len(starts)}


def test_export_requests_that_are_refused(world: World) -> None:
    sut, a, b = world.source, world.qualified.patient, world.local.patient
    for request in (
        PortabilityRequest("tout"),
        PortabilityRequest("unitaire"),
        PortabilityRequest("unitaire", (a.id, b.id)),
        PortabilityRequest("cible"),
        PortabilityRequest("massif", (a.id,)),
        PortabilityRequest("massif", since="01/01/2025"),
        PortabilityRequest("massif", since="2025-02-30"),
    ):
        with pytest.raises(SutRefused):
            sut.export_portability(request)
    with pytest.raises(SutError, match="HTTP 404"):
        sut.export_portability(PortabilityRequest("cible", (a.id, "P999999")))


def test_the_agenda_is_icalendar_with_the_patient_as_attendee(world: World) -> None:
    calendar = Calendar.from_ical(members(world.massif.archive)["TRANSVERSE/AGENDA.ICS"])
    assert str(calendar["VERSION"]) == "2.0" and "Cabinet" in str(calendar["PRODID"])
    events = {str(e["SUMMARY"]): e for e in calendar.walk("VEVENT")}
    assert len(events) == 4
    for seeded in (world.qualified, world.local, world.other):
        patient = seeded.patient
        for start_at, summary in seeded.appointments:
            event = events[summary]
            assert event.decoded("DTSTART") == start_at
            assert event.decoded("DTEND") == start_at + timedelta(minutes=20)
            assert str(event["UID"]).endswith("@cabinet-temoin") and event.get("DTSTAMP") is not None
            attendee = event["ATTENDEE"]
            assert attendee.params["CN"] == f"{patient.traits.first_names[0]} {patient.traits.birth_name}"
            if patient.ins is not None and patient.status.value == "QUAL":
                assert str(attendee) == f"urn:oid:{patient.ins.oid}:{patient.ins.matricule}"
            else:
                assert str(attendee) == f"urn:oid:{IPP_OID}:{patient.id}"


def test_an_empty_agenda_is_a_calendar_without_events(world: World) -> None:
    files = export(world.source, "unitaire", world.other.patient, since="2027-01-01")
    calendar = Calendar.from_ical(files["TRANSVERSE/AGENDA.ICS"])
    assert calendar.name == "VCALENDAR" and calendar.walk("VEVENT") == []


def test_traces_are_rfc5424_lines_with_one_event_at_least_per_patient(world: World) -> None:
    files = members(world.massif.archive)
    lines = files["TRANSVERSE/TRACES.LOG"].decode("utf-8").splitlines()
    parsed = [RFC5424.match(line) for line in lines]
    assert lines and all(parsed), [line for line, m in zip(lines, parsed, strict=True) if not m]
    for match in parsed:
        assert match is not None
        assert int(match[1]) <= 191 and match[3] == "cabinet-temoin" and match[4] == "CabinetTemoin"
        assert datetime.fromisoformat(match[2]).utcoffset() is not None
    for seeded in (world.qualified, world.local, world.other):
        mine = [line for line in lines if f'patient="{seeded.patient.id}"' in line]
        assert any(" EXPORT " in line for line in mine)
        assert sum(" DOC-PRODUIT " in line for line in mine) == len(seeded.documents)
        assert sum(" RDV " in line for line in mine) == len(seeded.appointments)
    insi_lines = [line for line in lines if " INSI " in line]
    assert insi_lines and all(f'patient="{world.qualified.patient.id}"' in line for line in insi_lines)
    assert " EXPORT " in lines[-1] and 'perimetre="massif"' in lines[-1]


def test_the_dictionary_covers_every_file_and_the_integrity_report_is_right(world: World) -> None:
    files = members(world.massif.archive)
    rows = list(csv.reader(io.StringIO(files["DOCUMENTATION/DICTIONNAIRE.CSV"].decode("utf-8")), delimiter=";"))
    assert rows[0] == ["donnee", "format", "emplacement"] and all(len(r) == 3 and all(r) for r in rows[1:])
    patterns = [r[2] for r in rows[1:]]
    for name in files:
        assert any(fnmatch.fnmatchcase(name, p) for p in patterns), name
    report = json.loads(files["DOCUMENTATION/INTEGRITE.JSON"])
    datetime.fromisoformat(report["generated"])
    listed = {item["path"]: item for item in report["files"]}
    assert set(listed) == set(files) - {"DOCUMENTATION/INTEGRITE.JSON"}
    for name, item in listed.items():
        assert item["size"] == len(files[name]) and item["sha256"] == hashlib.sha256(files[name]).hexdigest()
    documents = sum(len(entries(c)) for n, c in files.items() if n.endswith("METADATA.XML"))
    assert report["volumes"] == {"patients": 3, "documents": documents, "appointments": 4}
    assert documents == 2 * 6


# -- the import --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, insi: InsiSimulator, world: World) -> Iterator[ReferenceSut]:
    sut = start(tmp_path_factory.mktemp("portability-target"), insi)
    try:
        sut.set_clock(T_NOW + timedelta(days=1))
        yield sut
    finally:
        sut.close()


@pytest.fixture(scope="module")
def imported(target: ReferenceSut, world: World) -> PortabilityImport:
    return target.import_portability(world.massif.archive, timeout_s=60)


def test_the_import_gives_back_the_patients_their_documents_and_appointments(
    world: World, target: ReferenceSut, imported: PortabilityImport
) -> None:
    assert imported.refused == ()
    assert imported.documents == 6 and imported.appointments == 4 and len(imported.patient_ids) == 3
    patients = {p.traits.birth_name: p for p in target.list_patients()}
    assert set(patients) == {s.patient.traits.birth_name for s in (world.qualified, world.local, world.other)}
    assert set(imported.patient_ids) == {p.id for p in patients.values()}
    for seeded in (world.qualified, world.local, world.other):
        source = seeded.patient
        copy = patients[source.traits.birth_name]
        assert copy.traits == source.traits and copy.origin == "import"
        stored = target.list_documents(copy.id)
        assert {(d.document_id, d.type_code) for d in stored} == {
            (d.document_id, d.type_code) for d, _ in seeded.documents
        }
        assert all(d.origin == "imported" for d in stored)
        appointments = target.list_appointments(copy.id)
        assert [(datetime.fromisoformat(a.start), a.summary) for a in appointments] == seeded.appointments
    copy = patients[world.qualified.patient.traits.birth_name]
    assert copy.ins == world.qualified.patient.ins, "the INS, confirmed by INSi"
    assert copy.status.value == "RECUP", "an imported INS is not qualified: no identity document was checked here"
    assert patients[world.local.patient.traits.birth_name].ins is None
    verification = [t for t in target.traces() if t.service == "INSi" and t.patient_id == copy.id]
    assert [t.purpose for t in verification] == ["verification"]


def test_importing_the_same_archive_again_adds_nothing(
    world: World, target: ReferenceSut, imported: PortabilityImport
) -> None:
    again = target.import_portability(world.massif.archive, timeout_s=60)
    assert (again.documents, again.appointments, again.refused) == (0, 0, ())
    assert set(again.patient_ids) == set(imported.patient_ids)
    assert len(target.list_patients()) == 3


# -- hostile and broken archives ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def blank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceSut]:
    sut = start(tmp_path_factory.mktemp("portability-blank"), None)  # no INSi configured
    try:
        yield sut
    finally:
        sut.close()


@pytest.fixture
def fresh(blank: ReferenceSut) -> ReferenceSut:
    blank.reset()
    return blank


def rezipped(archive: bytes, **changes: bytes) -> bytes:
    files = members(archive)
    for key, content in changes.items():
        files[key.replace("__", "/").replace("_DOT_", ".")] = content
    return zipped(files)


def declares_ten_gigabytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("IHE_XDM/PAT00001/METADATA.XML", b"<a/>")
        archive.writestr("IHE_XDM/PAT00001/DOC00001.XML", b"\0" * 4096)
        archive.getinfo("IHE_XDM/PAT00001/DOC00001.XML").file_size = 10 * 1024**3  # the central directory lies
    return buffer.getvalue()


XXE = (
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b'<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0">&x;</lcm:SubmitObjectsRequest>'
)


@pytest.mark.parametrize(
    "archive",
    [
        pytest.param(lambda w: b"not a zip at all", id="not-a-zip"),
        pytest.param(lambda w: w.massif.archive[: len(w.massif.archive) // 2], id="truncated"),
        pytest.param(lambda w: zipped({"README.TXT": b"hello"}), id="no-ihe-xdm"),
        pytest.param(lambda w: zipped({"IHE_XDM/PAT00001/METADATA.XML": b"<a/>", "../../evil": b"x"}), id="zip-slip"),
        pytest.param(lambda w: zipped({"/etc/IHE_XDM/P/METADATA.XML": b"<a/>"}), id="absolute"),
        pytest.param(lambda w: zipped({"IHE_XDM\\P\\METADATA.XML": b"<a/>"}), id="backslash"),
        pytest.param(lambda w: declares_ten_gigabytes(), id="bomb-declaring-10-GB"),
        pytest.param(lambda w: zipped({"IHE_XDM/P/DOC00001.XML": b"\0" * (8 * 1024 * 1024)}), id="ratio"),
    ],
)
def test_an_unreadable_archive_is_refused_quickly(fresh: ReferenceSut, world: World, archive: object) -> None:
    assert callable(archive)
    started = time.monotonic()
    with pytest.raises(SutRefused):
        fresh.import_portability(archive(world))
    assert time.monotonic() - started < 5
    assert fresh.list_patients() == []


def test_a_body_that_is_not_base64_is_refused(fresh: ReferenceSut) -> None:
    answer = requests.post(f"{fresh.base_url}/portability/imports", json={"archive_base64": "%%%"}, timeout=10)
    assert answer.status_code == 422


def test_broken_parts_are_refused_one_by_one_and_the_rest_is_imported(fresh: ReferenceSut, world: World) -> None:
    files = members(world.massif.archive)
    qualified = folder_of(files, world.qualified.patient.traits)
    local = folder_of(files, world.local.patient.traits)
    [broken_cda] = sorted(n for n in files if n.startswith(local + "/DOC") and n.endswith(".XML"))[:1]
    agenda = files["TRANSVERSE/AGENDA.ICS"].replace(
        b"END:VCALENDAR",
        b"BEGIN:VEVENT\r\nUID:stranger@elsewhere\r\nDTSTAMP:20260301T080000Z\r\nDTSTART:20260309T080000Z\r\n"
        b"SUMMARY:Inconnu\r\nATTENDEE;CN=PERSONNE:urn:oid:1.2.3.4:X99\r\nEND:VEVENT\r\nEND:VCALENDAR",
    )
    files.update({f"{qualified}/METADATA.XML": XXE, broken_cda: b"<ClinicalDocument", "TRANSVERSE/AGENDA.ICS": agenda})
    result = fresh.import_portability(zipped(files))
    refused = "\n".join(result.refused)
    assert "DOCTYPE" in refused and broken_cda in refused and "stranger@elsewhere" in refused
    assert b"root:" not in json.dumps(result.to_json()).encode()
    names = {p.traits.birth_name for p in fresh.list_patients()}
    assert names == {world.local.patient.traits.birth_name, world.other.patient.traits.birth_name}
    assert result.documents == 2  # the local patient's other document, the other patient's one
    # the qualified patient's folder was refused: its appointments name nobody the practice knows
    assert result.appointments == 2


def test_without_insi_a_received_ins_is_not_kept_and_is_put_aside(fresh: ReferenceSut, world: World) -> None:
    result = fresh.import_portability(world.massif.archive, timeout_s=60)
    assert result.documents == 6 and result.appointments == 4
    ins = world.qualified.patient.ins
    assert ins is not None
    [message] = result.refused
    assert ins.matricule in message and "not kept" in message
    [copy] = [p for p in fresh.list_patients() if p.traits == world.qualified.patient.traits]
    assert copy.ins is None and copy.status.value == "PROV"
    assert any(w.patient_id == copy.id and "portability import" in w.reason for w in fresh.worklist())
    assert len(fresh.list_appointments(copy.id)) == 2, "its appointments found it by the INS the archive gives it"


def test_a_member_lying_about_its_size_is_refused(fresh: ReferenceSut, world: World) -> None:
    files = members(world.massif.archive)
    folder = folder_of(files, world.other.patient.traits)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
        archive.getinfo(f"{folder}/DOC00001.XML").file_size = 100  # inflates far past what it declares
    result = fresh.import_portability(buffer.getvalue())
    assert any(f"{folder}/DOC00001.XML" in r for r in result.refused)
    assert result.documents == 5


# -- defects -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cda_schema() -> etree.XMLSchema | None:
    """The ANS CDA schema when the reference data are beside the repository, else None (that check is skipped)."""
    return etree.XMLSchema(etree.parse(str(CDA_XSD))) if CDA_XSD.is_file() else None


def defective_export(tmp_path: Path, insi: InsiSimulator, defect: str) -> tuple[dict[str, bytes], Seeded]:
    sut = start(tmp_path / defect, insi, defect)
    try:
        sut.set_clock(T_OLD)
        seeded = Seeded(qualified_patient(sut, insi))
        produce(sut, seeded, T_OLD, "11488-4")
        produce(sut, seeded, T_NOW, "60591-5", structure="N3")
        return export(sut, "massif"), seeded
    finally:
        sut.close()


def test_defect_port_drops_old_documents(tmp_path: Path, insi: InsiSimulator) -> None:
    files, seeded = defective_export(tmp_path, insi, "port-drops-old-documents")
    [(recent, _)] = [(d, t) for d, t in seeded.documents if t == T_NOW]
    assert cda_ids(files, "IHE_XDM/PAT00001") == {recent.document_id}


def test_defect_port_omits_ins(tmp_path: Path, insi: InsiSimulator) -> None:
    files, seeded = defective_export(tmp_path, insi, "port-omits-ins")
    metadata = entries(files["IHE_XDM/PAT00001/METADATA.XML"])
    assert {external(e, ENTRY_PATIENT_ID).endswith("^PI") for e in metadata} == {True}
    assert not any(v.startswith("PID-3|") and v.endswith("^NH") for e in metadata for v in slot(e, "sourcePatientInfo"))
    assert seeded.patient.ins is not None
    assert seeded.patient.ins.matricule.encode() in files["IHE_XDM/PAT00001/DOC00001.XML"], "the CDA stays as stored"


def test_defect_port_omits_pdf(tmp_path: Path, insi: InsiSimulator) -> None:
    files, _ = defective_export(tmp_path, insi, "port-omits-pdf")
    assert not [n for n in files if n.upper().endswith(".PDF")]
    assert {e.get("mimeType") for e in entries(files["IHE_XDM/PAT00001/METADATA.XML"])} == {"text/xml"}


def test_defect_port_wrong_hashes(tmp_path: Path, insi: InsiSimulator) -> None:
    files, _ = defective_export(tmp_path, insi, "port-wrong-hashes")
    report = json.loads(files["DOCUMENTATION/INTEGRITE.JSON"])
    for item in report["files"]:
        assert item["size"] == len(files[item["path"]])
        assert item["sha256"] != hashlib.sha256(files[item["path"]]).hexdigest()


def test_defect_port_invalid_cda(tmp_path: Path, insi: InsiSimulator, cda_schema: etree.XMLSchema | None) -> None:
    files, seeded = defective_export(tmp_path, insi, "port-invalid-cda")
    by_id = {external(e, ENTRY_UNIQUE_ID): e for e in entries(files["IHE_XDM/PAT00001/METADATA.XML"])}
    for produced, _ in seeded.documents:
        assert (
            produced.cda is not None and etree.fromstring(produced.cda).find("cda:confidentialityCode", NS) is not None
        )
        entry = by_id[produced.document_id]
        written = files[f"IHE_XDM/PAT00001/{slot(entry, 'URI')[0]}"]
        document = etree.fromstring(written)
        assert document.find("cda:confidentialityCode", NS) is None
        if cda_schema is not None:
            assert cda_schema.validate(etree.fromstring(produced.cda)) and not cda_schema.validate(document)
        assert slot(entry, "hash") == [hashlib.sha1(written).hexdigest()] and slot(entry, "size") == [str(len(written))]


# -- the adapters ------------------------------------------------------------------------------------------------
def test_portability_records_round_trip_through_json() -> None:
    appointment = Appointment("a1", "P1", "2026-03-02T09:30:00+01:00", "2026-03-02T09:50:00+01:00", "Suivi")
    assert Appointment.from_json(appointment.to_json()) == appointment
    request = PortabilityRequest("cible", ("P1", "P2"), "2025-01-01")
    assert PortabilityRequest.from_json(request.to_json()) == request
    exported = PortabilityExport("portabilite-20260302093000.zip", b"PK\x03\x04")
    assert exported.to_json()["archive_base64"] == base64.b64encode(b"PK\x03\x04").decode()
    assert PortabilityExport.from_json(exported.to_json()) == exported
    result = PortabilityImport(("P1",), 3, 1, ("one refused",))
    assert PortabilityImport.from_json(result.to_json()) == result
    bad_answers: list[dict[str, object]] = [
        {**result.to_json(), "documents": True},
        {**result.to_json(), "refused": "x"},
        {"patient_ids": []},
    ]
    for bad in bad_answers:
        with pytest.raises((TypeError, KeyError)):
            PortabilityImport.from_json(bad)
    with pytest.raises(ValueError):
        PortabilityExport.from_json({"file_name": "x.zip", "archive_base64": "%%%"})


class SlowPortability:
    """A Python SUT whose export takes a little while."""

    def describe(self) -> SutDescription:
        return SutDescription("Py", "Python SUT", "1", frozenset({Capability.PORTABILITY}), ())

    def export_portability(self, request: PortabilityRequest) -> PortabilityExport:
        time.sleep(0.4)
        return PortabilityExport("p.zip", b"PK")

    def import_portability(self, archive: bytes) -> dict[str, str]:
        return {"not": "a record"}

    def list_appointments(self, patient_id: str) -> list[Appointment]:
        return [Appointment("a", patient_id, "s", "e", "x")]


def test_the_python_adapter_honours_the_call_timeout_override() -> None:
    sut = PythonSut(SlowPortability(), timeout_s=0.1)
    with pytest.raises(SutTimeout, match=r"^export_portability: no answer within 0\.1 s$"):
        sut.export_portability(PortabilityRequest("massif"))
    assert sut.export_portability(PortabilityRequest("massif"), timeout_s=5).file_name == "p.zip"
    with pytest.raises(SutError, match="returned dict, expected PortabilityImport"):
        sut.import_portability(b"PK")
    assert sut.list_appointments("P1")[0].patient_id == "P1"
    with pytest.raises(NotSupported, match="no 'create_appointment' operation"):
        sut.create_appointment("P1", T_NOW, T_NOW, "x")


def test_the_http_adapter_raises_sut_timeout_with_the_timeout_it_was_given(world: World) -> None:
    assert issubclass(SutTimeout, SutError)
    sut = HttpSut(world.source.base_url, timeout_s=10)
    try:
        with pytest.raises(SutTimeout, match=r"^POST /portability/exports: no answer within 0\.0001 s$"):
            sut.export_portability(PortabilityRequest("massif"), timeout_s=0.0001)
    finally:
        sut.close()
