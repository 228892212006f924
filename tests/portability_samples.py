"""Portability archives built independently of the reference system, for the validator's tests.

A conforming archive (``docs/portability-archive.md``) carries one patient: the ANS N1
example CDA (``../shared``) with its PDF copy, each with a DocumentEntry built by
:mod:`tests.xds_samples` plus ``URI`` and ``sourcePatientInfo``; an agenda written with the
``icalendar`` library; two RFC 5424 trace lines; a data dictionary and an integrity report
computed over the rest. Tests break one thing at a time and call :func:`with_integrity`
again when the break is not about the report.
"""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, vCalAddress
from lxml import etree

from harness.sut.model import PatientTraits
from harness.validators.portability import (
    ExpectedAppointment,
    ExpectedDocument,
    ExpectedExport,
    ExpectedPatient,
)
from harness.validators.xds import RIM, Scheme
from tests.mss_samples import ANS_N1, EXAMPLE_INS, zipped
from tests.pdf_samples import conforming_pdfa
from tests.xds_samples import submission_for

PARIS = ZoneInfo("Europe/Paris")
FOLDER = "IHE_XDM/PAT00001"
CDA_MEMBER = f"{FOLDER}/DOC00001.XML"
PDF_MEMBER = f"{FOLDER}/DOC00001.PDF"
DOCUMENT_ID = "1.3.6.1.4.1.19376.1.2.20.12345.1.1"
"""``ClinicalDocument/id/@root`` of the ANS N1 example."""
TRAITS = PatientTraits("PAT-TROIS", ("DOMINIQUE",), "F", "1979-03-28")
APPOINTMENT = ExpectedAppointment(datetime(2021, 5, 3, 10, 0, tzinfo=PARIS), "Consultation de suivi")
PATIENT = ExpectedPatient(
    TRAITS,
    EXAMPLE_INS,
    (ExpectedDocument(DOCUMENT_ID, "11488-4", datetime(2021, 4, 1, 13, 47, 45, tzinfo=PARIS)),),
    (APPOINTMENT,),
)
EXPECTED = ExpectedExport((PATIENT,), (), date(2020, 1, 1))
SOURCE_PATIENT_INFO = (
    f"PID-3|{EXAMPLE_INS[0]}^^^&{EXAMPLE_INS[1]}&ISO^NH",
    "PID-5|PAT-TROIS^DOMINIQUE^^^^^L",
    "PID-7|19790328",
    "PID-8|F",
)
DICTIONARY = """donnee;format;emplacement
Index de l'archive;HTML (IHE XDM);INDEX.HTM
Notice de l'archive;texte;README.TXT
Métadonnées des documents du patient;ebRIM (IHE XDM);IHE_XDM/*/METADATA.XML
Documents du patient;CDA R2;IHE_XDM/*/DOC*.XML
Copie PDF de chaque document;PDF/A-1;IHE_XDM/*/DOC*.PDF
Agenda;iCalendar RFC 5545;TRANSVERSE/AGENDA.ICS
Traces;Syslog RFC 5424;TRANSVERSE/TRACES.LOG
"""
TRACES = (
    '<110>1 2021-04-01T13:47:45+02:00 cabinet-test logiciel 42 DOC [doc@32473 id="1"] document produit\n'
    "<110>1 2026-03-02T09:30:00+01:00 cabinet-test logiciel 42 EXPORT - export de portabilité\n"
)


def _slot(entry: etree._Element, name: str, *values: str) -> None:
    slot = etree.Element(f"{{{RIM}}}Slot", name=name)
    value_list = etree.SubElement(slot, f"{{{RIM}}}ValueList")
    for value in values:
        etree.SubElement(value_list, f"{{{RIM}}}Value").text = value
    entry.insert(0, slot)


def _set_slot(entry: etree._Element, name: str, value: str) -> None:
    for slot in entry.iterfind(f"{{{RIM}}}Slot[@name='{name}']"):
        entry.remove(slot)
    _slot(entry, name, value)


def metadata(cda: bytes, pdf: bytes | None, *, source_patient_info: tuple[str, ...] = SOURCE_PATIENT_INFO) -> bytes:
    """METADATA.XML: the CDA's entry and, when given, the PDF's (same identity, type and dates)."""
    request = submission_for(cda)
    entry = next(request.iter(f"{{{RIM}}}ExtrinsicObject"))
    _slot(entry, "URI", "DOC00001.XML")
    if source_patient_info:
        _slot(entry, "sourcePatientInfo", *source_patient_info)
    if pdf is not None:
        twin = copy.deepcopy(entry)
        twin.set("id", "Document02")
        twin.set("mimeType", "application/pdf")
        _set_slot(twin, "URI", "DOC00001.PDF")
        _set_slot(twin, "hash", hashlib.sha1(pdf).hexdigest())
        _set_slot(twin, "size", str(len(pdf)))
        for child in twin.iter():
            if child.get("classifiedObject") == "Document01" or child.get("registryObject") == "Document01":
                child.set("classifiedObject" if child.get("classifiedObject") else "registryObject", "Document02")
            if child.get("id", "").startswith(("cl", "ei")):
                child.set("id", child.get("id", "") + "-pdf")
        for external in twin.iterfind(f"{{{RIM}}}ExternalIdentifier"):
            if external.get("identificationScheme") == Scheme.ENTRY_UNIQUE_ID:
                external.set("value", DOCUMENT_ID + ".2")
        entry.addnext(twin)
    return bytes(etree.tostring(request, xml_declaration=True, encoding="UTF-8"))


def agenda(
    appointments: tuple[ExpectedAppointment, ...] = (APPOINTMENT,), attendee: str = "DOMINIQUE PAT-TROIS"
) -> bytes:
    calendar = Calendar()
    calendar.add("prodid", "-//Tests//portabilite//FR")
    calendar.add("version", "2.0")
    for number, appointment in enumerate(appointments, 1):
        event = Event()
        event.add("uid", f"rdv-{number}@tests")
        event.add("dtstamp", datetime(2026, 3, 2, 9, 30, tzinfo=PARIS))
        event.add("dtstart", appointment.start)
        event.add("dtend", appointment.start.replace(minute=30))
        event.add("summary", appointment.summary)
        person = vCalAddress(f"urn:oid:{EXAMPLE_INS[1]}:{EXAMPLE_INS[0]}")
        person.params["cn"] = attendee
        event.add("attendee", person, encode=False)
        calendar.add_component(event)
    return bytes(calendar.to_ical())


def with_integrity(members: dict[str, bytes], path: str = "DOCUMENTATION/INTEGRITE.JSON") -> dict[str, bytes]:
    """``members`` with an integrity report that is right for them (volumes counted as the validator does)."""
    others = {n: c for n, c in members.items() if n != path}
    entries = sum(c.count(b"<rim:ExtrinsicObject") for n, c in others.items() if n.endswith("METADATA.XML"))
    report = {
        "generated": "2026-03-02T09:30:00+01:00",
        "volumes": {
            "patients": sum(1 for n in others if n.endswith("/METADATA.XML")),
            "documents": entries,
            "appointments": sum(c.count(b"BEGIN:VEVENT") for n, c in others.items() if n.endswith(".ICS")),
        },
        "files": [
            {"path": n, "size": len(c), "sha256": hashlib.sha256(c).hexdigest()} for n, c in sorted(others.items())
        ],
    }
    return {**others, path: json.dumps(report, indent=1).encode("utf-8")}


def conforming_members() -> dict[str, bytes]:
    cda, pdf = ANS_N1.read_bytes(), conforming_pdfa()
    members = {
        "INDEX.HTM": b"<html><body>Export de portabilite: PAT00001</body></html>",
        "README.TXT": b"Export de portabilite, massif, depuis 2020-01-01",
        f"{FOLDER}/METADATA.XML": metadata(cda, pdf),
        CDA_MEMBER: cda,
        PDF_MEMBER: pdf,
        "TRANSVERSE/AGENDA.ICS": agenda(),
        "TRANSVERSE/TRACES.LOG": TRACES.encode("utf-8"),
        "DOCUMENTATION/DICTIONNAIRE.CSV": DICTIONARY.encode("utf-8"),
    }
    return with_integrity(members)


def conforming_archive() -> bytes:
    return zipped(conforming_members())
