"""Data portability (PORT/va1.01, LGC.PORT.01): the practice's agenda, its export archive, and importing one.

Export (``docs/portability-archive.md`` is the contract): one zip, deflated, every member
dated by the practice clock, named ``portabilite-<YYYYMMDDHHMMSS>.zip``::

    INDEX.HTM, README.TXT               the XDM index and readme
    IHE_XDM/PAT00001/METADATA.XML       one submission set per patient, numbered in the export's order
    IHE_XDM/PAT00001/DOC00001.XML       each document's CDA R2, the stored bytes unchanged
    IHE_XDM/PAT00001/DOC00001.PDF       its PDF/A-1 copy, with a DocumentEntry of its own
    TRANSVERSE/AGENDA.ICS               iCalendar: the appointments of the patients exported
    TRANSVERSE/TRACES.LOG               Syslog (RFC 5424): what the practice did for them
    DOCUMENTATION/DICTIONNAIRE.CSV      the data dictionary
    DOCUMENTATION/INTEGRITE.JSON        volumes, size and SHA-256 of every other member

The metadata are those of the MSSanté XDM (:mod:`harness.reference.mss`, the entries of
:mod:`harness.reference.xds_entry`) plus each entry's ``sourcePatientInfo`` (PID-3 the IPP
and the INS, PID-5 ``BIRTHNAME^FIRST^ALL FIRST NAMES^^^^L``, PID-7, PID-8); ``patientId`` is
the INS of a qualified identity, else the IPP, as everywhere the practice shares a document.
The PDF copy of a level-1 document is the PDF its CDA embeds; a structured document (the VSM,
an imported CDA without PDF) gets one printed from its CDA (title, identity, section texts).
The depth ``since`` keeps the documents produced and the appointments starting on or after
that day (French legal time).

Import: the archive is read with the bounded, hostile-input-proof :class:`~harness.reference.mss.SafeZip`
(64 MiB, 50,000 members, sizes and ratio checked before anything is inflated, no member name
escaping its folder) and each METADATA.XML and CDA without DTD, entities or network. Each CDA
entry's patient is read from the CDA's recordTarget (the entry's ``sourcePatientInfo`` when the
CDA has none) and found by its strict traits or created (``origin`` ``import``); an INS
received with it is handled like an INS from an identity feed: verified with INSi, kept only
on an OK verification (the identity then RECUP, or QUAL if it was VALI), otherwise put aside
on the work list. The CDA is stored as an imported document (one already there is skipped);
PDF entries are copies and are not imported. Each VEVENT of the agenda becomes an appointment
of the patient its ATTENDEE names (the INS, or an identifier of the archive's patients). An
archive that cannot be read at all is refused (422); a part that cannot be taken is listed
in ``refused``.

Defects (:mod:`harness.reference.defects`): ``port-drops-old-documents``, ``port-omits-ins``,
``port-omits-pdf``, ``port-wrong-hashes``, ``port-invalid-cda``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import io
import json
import logging
import re
import textwrap
import threading
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from icalendar import Calendar, Event, vCalAddress
from lxml import etree

from harness.reference import PUBLISHER, SOFTWARE, __version__, xds_entry
from harness.reference.cda import HL7, carried_ins, new_oid
from harness.reference.datamatrix import datamatrix_image, ins_payload
from harness.reference.doctypes import DocumentType
from harness.reference.documents import INS_TYPES, MAX_DOCUMENT_BYTES, DocumentService, iso_time, local_zone
from harness.reference.identity import Conflict, same_ins
from harness.reference.model import Ins, InvalidInput, Patient, Status, Traits, decoded_base64, traits_from_json
from harness.reference.mss import (
    CDA_TYPES,
    SafeZip,
    UnreadableXdm,
    ZipLimits,
    embedded_pdf,
    metadata_patient_ids,
    metadata_root,
    practice_entry,
    safe_xml,
    slot_value,
    unsafe_name,
    xdm_patient_cx,
    xdm_submit_objects,
)
from harness.reference.nir import is_valid_matricule
from harness.reference.pdfa import PrintedDocument, build_pdf
from harness.reference.store import DuplicateAppointment
from harness.reference.xds_entry import hl7_path
from harness.reference.xds_metadata import RIM, Code, DocumentEntry, add_slot, new_uuid

log = logging.getLogger("harness.reference")

SCOPES = ("unitaire", "cible", "massif")
PATIENTS = "IHE_XDM"
AGENDA = "TRANSVERSE/AGENDA.ICS"
TRACES = "TRANSVERSE/TRACES.LOG"
DICTIONARY = "DOCUMENTATION/DICTIONNAIRE.CSV"
INTEGRITY = "DOCUMENTATION/INTEGRITE.JSON"
HOSTNAME = "cabinet-temoin"
"""The HOSTNAME of the traces and the domain of the agenda's UIDs."""
APP_NAME = "CabinetTemoin"
"""The software's name as a Syslog APP-NAME (printable ASCII, no space)."""
SD_ID = "portabilite@32473"
"""The structured-data id of the traces (32473: the enterprise number RFC 5612 reserves for examples)."""
SYSLOG_PRI = 13 * 8 + 6
"""Facility 13 (log audit), severity 6 (informational)."""
MAX_ARCHIVE_BYTES = 64 * 1024 * 1024
MAX_BODY_BYTES = MAX_ARCHIVE_BYTES * 4 // 3 + 64 * 1024
"""A ``POST /portability/imports`` body: the base64 of the largest archive, and some room."""
ARCHIVE_LIMITS = ZipLimits(
    archive_bytes=MAX_ARCHIVE_BYTES, members=50_000, member_bytes=128 * 1024 * 1024, total_bytes=512 * 1024 * 1024
)
"""What an import agrees to open: the PDF copies are never read, what is read is bounded by :data:`MAX_READ`."""
MAX_READ = 16 * 1024 * 1024
"""The most the import reads of one METADATA.XML or agenda (a CDA: ``MAX_DOCUMENT_BYTES``)."""
MAX_SUMMARY = 500
MAX_UID = 255
RECENT_DAYS = 365
"""The ``port-drops-old-documents`` defect keeps this many days of documents."""
PDF_FORMAT = Code(
    "urn:ihe:iti:xds:2017:mimeTypeSufficient", "1.3.6.1.4.1.19376.1.2.3", "Format défini par le type MIME"
)
"""The formatCode of a PDF copy, and of a structured CDA whose format the practice does not know (IHE)."""
FALLBACK_CLASS = ("10", "Compte rendu")
"""The classCode given to an imported document of a type the practice does not produce (inferred)."""
RENDERED_LINES = 26
"""How many lines of section text a printed copy of a structured document holds (one page)."""
RENDERED_WIDTH = 85
IMPORT_KO_REASON = "INS verification KO (portability import): INS not kept"
IMPORT_IMPOSSIBLE_REASON = "INS verification impossible (portability import): INS not kept"
IMPORT_CONFLICT_REASON = "received INS differs from the local INS (portability import): INS not kept"
DICTIONARY_ROWS = (
    (
        "Métadonnées des documents du patient (identité, INS, date de production, type)",
        "ebRIM XDS.b (IHE XDM)",
        f"{PATIENTS}/*/METADATA.XML",
    ),
    ("Documents du patient", "CDA R2 (N1 ou N3)", f"{PATIENTS}/*/DOC*.XML"),
    ("Copie PDF de chaque document du patient", "PDF/A-1", f"{PATIENTS}/*/DOC*.PDF"),
    ("Sommaire de l'archive (patients et documents)", "HTML (IHE XDM INDEX.HTM)", "INDEX.HTM"),
    (
        "Description de l'export (logiciel, version, date, périmètre, profondeur)",
        "Texte UTF-8 (IHE XDM README.TXT)",
        "README.TXT",
    ),
    ("Agenda : rendez-vous des patients exportés", "iCalendar RFC 5545", AGENDA),
    ("Traces : créations, imports, rendez-vous, appels INSi, export", "Syslog RFC 5424", TRACES),
    ("Dictionnaire des données", "CSV UTF-8 séparé par des points-virgules", DICTIONARY),
    ("Rapport d'intégrité et de volumétrie", "JSON", INTEGRITY),
)
"""The data dictionary: what each kind of data is, its format, where it is (a glob from the archive root)."""

_CX = re.compile(r"^(?P<id>[^\^]+)\^\^\^&(?P<oid>[0-9.]+)&ISO\^(?P<type>[A-Z]+)$")
_ATTENDEE = re.compile(r"^urn:oid:(?P<oid>[0-2](?:\.\d+)+):(?P<id>\S+)$", re.IGNORECASE)
_METADATA = re.compile(rf"^{PATIENTS}/[^/]+/METADATA\.XML$", re.IGNORECASE)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """A checked ``POST /portability/exports`` body."""

    scope: str
    patient_ids: tuple[str, ...]
    since: date | None


@dataclass(frozen=True, slots=True)
class _ExportedFile:
    """One file of a patient folder: its name, bytes and DocumentEntry."""

    name: str
    content: bytes
    entry: DocumentEntry


@dataclass(slots=True)
class _Folder:
    """One patient of the export and what is exported of it."""

    name: str
    patient: Patient
    files: list[_ExportedFile] = field(default_factory=list)
    documents: list[dict[str, Any]] = field(default_factory=list)
    """The store's records of the documents exported."""
    appointments: list[dict[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class _Imported:
    """What an import did so far."""

    patient_ids: list[str] = field(default_factory=list)
    documents: int = 0
    appointments: int = 0
    refused: list[str] = field(default_factory=list)
    by_identifier: dict[tuple[str, str], str] = field(default_factory=dict)
    """(OID, identifier) the archive gives a patient (its INS, the exporter's IPP) → the local identity."""
    ins_checked: dict[tuple[str, str], Patient] = field(default_factory=dict)
    """(local id, matricule) → the identity after the received INS was dealt with, so INSi is called once."""
    holders: dict[Ins, str] = field(default_factory=dict)
    """The INS the practice's identities hold → the identity (read once per import)."""

    def patient(self, patient_id: str) -> None:
        if patient_id not in self.patient_ids:
            self.patient_ids.append(patient_id)

    def to_json(self) -> dict[str, Any]:
        return {
            "patient_ids": list(self.patient_ids),
            "documents": self.documents,
            "appointments": self.appointments,
            "refused": list(self.refused),
        }


class PortabilityService:
    """The agenda of the practice, the export of its patients' data and the import of another software's export."""

    def __init__(self, documents: DocumentService) -> None:
        self.documents = documents
        self.identities = documents.identities
        self.store = documents.store
        self.catalog = documents.catalog
        self._importing = threading.Lock()

    def has(self, defect: str) -> bool:
        return self.identities.has(defect)

    # -- agenda ------------------------------------------------------------------------------------------
    def create_appointment(self, patient_id: str, body: Any) -> dict[str, str]:
        """Store the appointment a ``POST /patients/{id}/appointments`` body gives; its id."""
        patient = self.identities.get(patient_id)
        start, end, summary = _appointment_request(body)
        return {"appointment_id": self._add_appointment(patient.id, start, end, summary)}

    def list_appointments(self, patient_id: str) -> dict[str, list[dict[str, str]]]:
        """The patient's appointments, earliest first."""
        self.identities.get(patient_id)
        records = sorted(self.store.list_appointments(patient_id), key=lambda r: _moment(r["start"]))
        keys = ("patient_id", "start", "end", "summary")
        return {"appointments": [{"appointment_id": r["id"], **{k: r[k] for k in keys}} for r in records]}

    def _add_appointment(self, patient_id: str, start: datetime, end: datetime, summary: str, uid: str = "") -> str:
        """Add an appointment (an activity of the patient); DuplicateAppointment when ``uid`` is known."""
        appointment_id = str(uuid.uuid4())
        now = self.identities.clock.iso()
        self.store.add_appointment(
            {
                "id": appointment_id,
                "patient_id": patient_id,
                "start": start.isoformat(),
                "end": end.isoformat(),
                "summary": summary,
                "uid": uid or f"{appointment_id}@{HOSTNAME}",
                "created": now,
            }
        )
        self.store.note_activity(patient_id, now, "appointment")
        return appointment_id

    # -- export ------------------------------------------------------------------------------------------
    def export(self, body: Any) -> dict[str, str]:
        """The archive a ``POST /portability/exports`` body asks for: its file name and base64 bytes."""
        request = export_request(body)
        if request.scope == "massif":
            patients = self.identities.all()
        else:
            patients = [self.identities.get(p) for p in request.patient_ids]
        now = self.identities.clock.now().astimezone(local_zone()).replace(microsecond=0)
        folders = [self._folder(f"PAT{n:05d}", p, request.since, now) for n, p in enumerate(patients, 1)]
        members: list[tuple[str, bytes]] = [
            ("INDEX.HTM", _index_html(folders, now).encode("utf-8")),
            ("README.TXT", _readme(request, len(folders), now).encode("utf-8")),
        ]
        for folder in folders:
            members.append((f"{PATIENTS}/{folder.name}/METADATA.XML", self._metadata(folder, now)))
            members += [(f"{PATIENTS}/{folder.name}/{f.name}", f.content) for f in folder.files]
        agenda, events = self._agenda(folders, now)
        members.append((AGENDA, agenda))
        members.append((TRACES, self._traces(folders, request, now).encode("utf-8")))
        members.append((DICTIONARY, _dictionary().encode("utf-8")))
        volumes = {"patients": len(folders), "documents": sum(len(f.files) for f in folders), "appointments": events}
        members.append((INTEGRITY, self._integrity(members, volumes, now)))
        archive = _zip(members, now)
        return {
            "file_name": f"portabilite-{now:%Y%m%d%H%M%S}.zip",
            "archive_base64": base64.b64encode(archive).decode("ascii"),
        }

    def _folder(self, name: str, patient: Patient, since: date | None, now: datetime) -> _Folder:
        folder = _Folder(name, patient)
        records = self.store.list_documents(patient.id)
        order = {r["document_id"]: i for i, r in enumerate(records)}
        records.sort(key=lambda r: (_moment(str(r.get("creation_time", ""))), order[r["document_id"]]))
        patient_cx = self._patient_cx(patient)
        ipp_cx = xds_entry.ipp_cx(patient.id, self.catalog.practice)
        for record in records:
            if not self._within_depth(str(record.get("creation_time", "")), since, now):
                continue
            found = self.store.find_document(patient.id, str(record["document_id"]))
            if found is None:
                continue
            cda = found[1]
            root = etree.fromstring(cda, _PARSER)
            number = len(folder.documents) + 1
            entry = practice_entry(self.catalog, self._kind(record, root), cda, patient_cx, ipp_cx)
            written = cda
            if self.has("port-invalid-cda"):
                written = _without_confidentiality_code(cda)
                entry = replace(entry, hash=hashlib.sha1(written).hexdigest(), size=len(written))
            folder.files.append(_ExportedFile(f"DOC{number:05d}.XML", written, entry))
            if not self.has("port-omits-pdf"):
                pdf = embedded_pdf(cda) or self._printed_copy(root, patient, record)
                pdf_entry = replace(
                    entry,
                    entry_uuid=new_uuid(),
                    unique_id=new_oid(),
                    mime_type="application/pdf",
                    format_code=PDF_FORMAT,
                    hash=hashlib.sha1(pdf).hexdigest(),
                    size=len(pdf),
                )
                folder.files.append(_ExportedFile(f"DOC{number:05d}.PDF", pdf, pdf_entry))
            folder.documents.append(record)
        appointments = sorted(self.store.list_appointments(patient.id), key=lambda r: _moment(r["start"]))
        folder.appointments = [a for a in appointments if _on_or_after(_moment(a["start"]), since)]
        return folder

    def _within_depth(self, creation_time: str, since: date | None, now: datetime) -> bool:
        moment = _moment(creation_time)
        if self.has("port-drops-old-documents"):
            return moment >= now - timedelta(days=RECENT_DAYS)
        return _on_or_after(moment, since)

    def _patient_cx(self, patient: Patient) -> str:
        if self.has("port-omits-ins"):
            return xds_entry.ipp_cx(patient.id, self.catalog.practice)
        return xdm_patient_cx(patient, self.catalog.practice)

    def _kind(self, record: dict[str, Any], root: etree._Element) -> DocumentType:
        """The type the practice produced the document as; for an imported one, what the practice knows of its code."""
        kind = self.catalog.find(str(record.get("kind", "")), str(record.get("structure", "")))
        if kind is not None:
            return kind
        code = root.find(f"{{{HL7}}}code")
        type_code = str(record.get("type_code") or (code.get("code", "") if code is not None else ""))
        structure = "N1" if root.find(f"{{{HL7}}}component/{{{HL7}}}nonXMLBody") is not None else "N3"
        known = next((t for t in self.catalog.types if type_code in (t.code, *t.aliases)), None)
        class_code, class_display = (known.class_code, known.class_display) if known else FALLBACK_CLASS
        structured = known is not None and known.structure == "N3" and structure == "N3"
        return DocumentType(
            code=type_code,
            code_system=code.get("codeSystem", "") if code is not None else "",
            display_name=code.get("displayName", "") if code is not None else "",
            title=str(record.get("title", "")),
            structure=structure,
            body=(),
            class_code=class_code,
            class_display=class_display,
            format_code=known.format_code if structured and known else PDF_FORMAT.code,
            format_code_system=known.format_code_system if structured and known else PDF_FORMAT.system,
        )

    def _metadata(self, folder: _Folder, now: datetime) -> bytes:
        patient = folder.patient
        author = xds_entry.practice_author(self.catalog.author, self.catalog.practice)
        submission = xds_entry.submission_set(self.catalog, self._patient_cx(patient), author, now)
        submit = xdm_submit_objects(submission, [(f.entry, f.name) for f in folder.files])
        info = self._source_patient_info(patient)
        for exported in folder.files:
            entry = submit.find(f".//{{{RIM}}}ExtrinsicObject[@id='{exported.entry.entry_uuid}']")
            assert entry is not None  # xdm_submit_objects wrote every entry
            add_slot(entry, "sourcePatientInfo", info[0])
            values = entry.find(f"{{{RIM}}}Slot[@name='sourcePatientInfo']/{{{RIM}}}ValueList")
            assert values is not None
            for value in info[1:]:
                etree.SubElement(values, f"{{{RIM}}}Value").text = value
        return etree.tostring(submit, xml_declaration=True, encoding="UTF-8", pretty_print=True)

    def _source_patient_info(self, patient: Patient) -> list[str]:
        """PID-3 (the IPP, then the INS of a qualified identity), PID-5 (birth name), PID-7, PID-8."""
        traits = patient.traits
        values = [f"PID-3|{xds_entry.ipp_cx(patient.id, self.catalog.practice)}"]
        ins = carried_ins(patient)
        if ins is not None and not self.has("port-omits-ins"):
            values.append(f"PID-3|{xds_entry.patient_cx(ins[0], ins[1], 'NH')}")
        names = (traits.birth_name, traits.first_first_name, " ".join(traits.first_names))
        values.append("PID-5|{}^{}^{}^^^^L".format(*(_hl7(n) for n in names)))
        values.append(f"PID-7|{traits.birth_date.replace('-', '')}")
        values.append(f"PID-8|{traits.sex}")
        return values

    def _printed_copy(self, root: etree._Element, patient: Patient, record: dict[str, Any]) -> bytes:
        """A PDF/A-1 page of a CDA that embeds no PDF: its title, the patient it names, the text of its sections."""
        title = " ".join((root.findtext(f"{{{HL7}}}title") or str(record.get("title", "")) or "Document").split())
        try:
            traits, ins, _ = cda_identity(root)
        except InvalidInput:
            traits, ins = patient.traits, None
        identity = [
            f"Nom de naissance : {traits.birth_name}",
            f"Prénom(s) de naissance : {' '.join(traits.first_names)}",
            f"Sexe : {'Féminin' if traits.sex == 'F' else 'Masculin'}",
            f"Date de naissance : {_french_date(traits.birth_date)}",
        ]
        matrix = None
        if ins is not None:
            identity.append(f"Matricule INS : {ins.matricule} ({INS_TYPES.get(ins.oid, 'INS')})")
            payload = ins_payload(
                ins.matricule, ins.oid, traits.birth_name, traits.first_names, traits.sex, traits.birth_date
            )
            matrix = datamatrix_image(payload)
        effective = root.find(f"{{{HL7}}}effectiveTime")
        created = _moment(str(record.get("creation_time", "")))
        if effective is not None and effective.get("value"):
            with contextlib.suppress(InvalidInput):
                created = _moment(iso_time(str(effective.get("value"))))
        person = "author/assignedAuthor/assignedPerson/name"
        names = (root.findtext(hl7_path(f"{person}/{part}")) or "" for part in ("given", "family"))
        author = " ".join(" ".join(names).split())
        custodian = root.findtext(hl7_path("custodian/assignedCustodian/representedCustodianOrganization/name"))
        producer = f"{SOFTWARE} {__version__}"
        return build_pdf(
            PrintedDocument(
                title=title,
                author=author or producer,
                subject=f"Copie PDF du document {record.get('document_id', '')}",
                created=created,
                producer=producer,
                letterhead=tuple(line for line in (" ".join((custodian or "").split()), author) if line),
                identity=tuple(identity),
                body=_section_lines(root),
                footer=f"Copie PDF produite par {producer} pour la portabilité — document {record.get('document_id')}",
                datamatrix=matrix,
            )
        )

    def _agenda(self, folders: Sequence[_Folder], now: datetime) -> tuple[bytes, int]:
        calendar = Calendar()
        calendar.add("prodid", f"-//{PUBLISHER}//{SOFTWARE} {__version__}//FR")
        calendar.add("version", "2.0")
        calendar.add("calscale", "GREGORIAN")
        count = 0
        for folder in folders:
            traits = folder.patient.traits
            for record in folder.appointments:
                event = Event()
                event.add("uid", record["uid"])
                event.add("dtstamp", _moment(record["created"] or now.isoformat()).astimezone(UTC))
                event.add("dtstart", _moment(record["start"]).astimezone(UTC))
                event.add("dtend", _moment(record["end"]).astimezone(UTC))
                event.add("summary", record["summary"])
                attendee = vCalAddress(self._attendee(folder.patient))
                attendee.params["cn"] = f"{traits.first_first_name} {traits.birth_name}"
                event.add("attendee", attendee)
                calendar.add_component(event)
                count += 1
        return calendar.to_ical(), count

    def _attendee(self, patient: Patient) -> str:
        """``urn:oid:<INS OID>:<matricule>`` for a qualified identity, else ``urn:oid:<IPP OID>:<local id>``."""
        ins = carried_ins(patient)
        if ins is not None:
            return f"urn:oid:{ins[1]}:{ins[0]}"
        return f"urn:oid:{self.catalog.practice.ipp_oid}:{patient.id}"

    def _traces(self, folders: Sequence[_Folder], request: ExportRequest, now: datetime) -> str:
        """RFC 5424 lines: identity creations, documents, appointments, INSi calls of the patients, the export."""
        events: list[tuple[datetime, str, dict[str, str], str]] = []
        insi = [t for t in self.store.list_traces() if t.get("service") == "INSi"]
        for folder in folders:
            patient = folder.patient
            where = {"patient": patient.id, "dossier": folder.name}
            if patient.created:
                events.append((_moment(patient.created), "IDENTITE", where, "création de l'identité"))
            for record in folder.documents:
                produced = record.get("origin") == "produced"
                when = str(record.get("stored_at") or record.get("creation_time", ""))
                what = "document produit" if produced else "document importé"
                events.append(
                    (
                        _moment(when),
                        "DOC-PRODUIT" if produced else "DOC-IMPORTE",
                        {**where, "document": str(record["document_id"]), "type": str(record.get("type_code", ""))},
                        f"{what} : {record.get('title', '')}",
                    )
                )
            for appointment in folder.appointments:
                events.append(
                    (
                        _moment(appointment["created"] or appointment["start"]),
                        "RDV",
                        {**where, "rdv": appointment["uid"], "debut": appointment["start"]},
                        f"rendez-vous enregistré : {appointment['summary']}",
                    )
                )
            for trace in (t for t in insi if t.get("patient_id") == patient.id):
                detail = {
                    **where,
                    "operation": str(trace.get("operation", "")),
                    "cr": str(trace.get("return_code", "")),
                }
                purpose = str(trace.get("purpose", ""))
                events.append((_moment(str(trace.get("timestamp", ""))), "INSI", detail, f"appel INSi ({purpose})"))
        events.sort(key=lambda e: e[0])
        for folder in folders:
            where = {"patient": folder.patient.id, "dossier": folder.name}
            events.append((now, "EXPORT", where, "données du patient exportées (portabilité)"))
        since = request.since.isoformat() if request.since else "historique complet"
        summary = {"perimetre": request.scope, "profondeur": since, "patients": str(len(folders))}
        events.append((now, "EXPORT", summary, "export de portabilité terminé"))
        lines = [_syslog(moment, msgid, data, text) for moment, msgid, data, text in events]
        return "\n".join(lines) + "\n"

    def _integrity(self, members: Sequence[tuple[str, bytes]], volumes: dict[str, int], now: datetime) -> bytes:
        files = []
        for name, content in members:
            digest = hashlib.sha256(name.encode("utf-8") if self.has("port-wrong-hashes") else content).hexdigest()
            files.append({"path": name, "size": len(content), "sha256": digest})
        report = {"generated": now.isoformat(), "volumes": volumes, "files": files}
        return json.dumps(report, ensure_ascii=False, indent=2).encode("utf-8")

    # -- import ------------------------------------------------------------------------------------------
    def import_archive(self, body: Any) -> dict[str, Any]:
        """Import the archive a ``POST /portability/imports`` body carries; raises InvalidInput when unreadable."""
        data = _archive_field(body)
        with self._importing:
            try:
                with SafeZip(data, ARCHIVE_LIMITS, "the archive") as archive:
                    return self._import(archive).to_json()
            except UnreadableXdm as exc:
                raise InvalidInput(str(exc)) from None

    def _import(self, archive: SafeZip) -> _Imported:
        result = _Imported(holders={p.ins: p.id for p in self.identities.all() if p.ins is not None})
        metadata = sorted(name for name in archive.names if _METADATA.match(name))
        if not metadata:
            raise InvalidInput(f"the archive has no {PATIENTS}/<patient>/METADATA.XML: not a portability archive")
        for name in metadata:
            self._import_folder(archive, name, result)
        agenda = _member(archive, AGENDA)
        if agenda is not None:
            try:
                self._import_agenda(archive.read(agenda, MAX_READ), result)
            except UnreadableXdm as exc:
                result.refused.append(f"{agenda}: {exc}")
        return result

    def _import_folder(self, archive: SafeZip, metadata: str, result: _Imported) -> None:
        folder = metadata.rsplit("/", 1)[0]
        try:
            root = metadata_root(archive.read(metadata, MAX_READ))
        except UnreadableXdm as exc:
            result.refused.append(f"{metadata}: {exc}")
            return
        set_ids = metadata_patient_ids(root)
        for entry in root.iter(f"{{{RIM}}}ExtrinsicObject"):
            if entry.get("mimeType", "") not in CDA_TYPES:
                continue  # the PDF copies: the CDA is the document
            uri = slot_value(entry, "URI")
            where = f"{folder}/{uri}" if uri else f"{metadata}: DocumentEntry {entry.get('id', '')[:80]!r}"
            member = None if not uri or unsafe_name(uri) or ":" in uri else _member(archive, f"{folder}/{uri}")
            if member is None:
                result.refused.append(f"{where[:200]}: no file of the folder for this DocumentEntry (URI slot)")
                continue
            try:
                patient_id = self._import_cda(archive.read(member, MAX_DOCUMENT_BYTES), entry, member, result)
            except (UnreadableXdm, InvalidInput) as exc:
                result.refused.append(f"{member}: {exc}")
                continue
            except Exception as exc:  # a document the practice cannot take must not fail the whole import
                log.exception("portability import: %s could not be imported", member)
                result.refused.append(f"{member}: could not be imported ({type(exc).__name__})")
                continue
            for cx in [*set_ids, *_pid3(entry)]:
                identifier = _cx(cx)
                if identifier is not None:
                    result.by_identifier.setdefault(identifier, patient_id)

    def _import_cda(self, content: bytes, entry: etree._Element, where: str, result: _Imported) -> str:
        """Store one CDA of the archive for the patient it names; the local identity's id. Raises InvalidInput."""
        if len(content) > MAX_DOCUMENT_BYTES:
            raise InvalidInput(f"the document is {len(content)} bytes, above {MAX_DOCUMENT_BYTES}")
        root = _cda_root(content)
        try:
            traits, ins, identifiers = cda_identity(root)
        except InvalidInput:
            traits, ins, identifiers = _source_identity(entry)
        patient = self._identity(traits, ins, where, result)
        for identifier in identifiers:
            result.by_identifier.setdefault(identifier, patient.id)
        document_id = _document_id(root)
        with self.identities.lock(patient.id):
            if self.store.find_document(patient.id, document_id) is not None:
                return patient.id  # already there: the same archive imported again
            if self.store.document_content(document_id) is not None:
                raise InvalidInput(f"document {document_id!r} is already stored for another identity")
            try:
                self.documents.import_document(patient.id, {"cda_base64": base64.b64encode(content).decode("ascii")})
            except Conflict:
                return patient.id
        result.documents += 1
        return patient.id

    def _identity(self, traits: Traits, ins: Ins | None, where: str, result: _Imported) -> Patient:
        """The local identity holding the INS received, else the one with these strict traits, else a new one.

        A new identity is PROV, origin ``import``. Raises InvalidInput when the identity with these
        traits holds another INS (homonyms, or an error: the document is not attached to it).
        """
        holder = result.holders.get(ins) if ins is not None else None
        known = (self.store.get_patient(holder) if holder else None) or self.store.find_by_match_key(traits.match_key())
        if known is not None and ins is not None and known.ins is not None and known.ins != ins:
            detail = {"source": "portability-import", "received_ins": ins.to_json(), "file": where}
            self.identities.add_work_item(known.id, IMPORT_CONFLICT_REASON, detail)
            raise InvalidInput(f"INS {ins.matricule} differs from the INS of {known.id}, whose traits are the same")
        patient = known or self.identities.create_record(traits, Status.PROV, origin="import")
        if ins is not None and patient.ins != ins:
            key = (patient.id, ins.matricule)
            if key not in result.ins_checked:
                result.ins_checked[key] = self._received_ins(patient, traits, ins, where, result)
            patient = result.ins_checked[key]
        result.patient(patient.id)
        return patient

    def _received_ins(self, patient: Patient, traits: Traits, ins: Ins, where: str, result: _Imported) -> Patient:
        """An INS received in the archive for an identity without one: kept only once INSi confirms it (rule 52)."""
        detail: dict[str, Any] = {"source": "portability-import", "received_ins": ins.to_json(), "file": where}
        with self.identities.lock(patient.id):
            patient = self.identities.get(patient.id)
            checked = self.identities.verify_received(patient.id, traits)
            if checked.code in ("fault", "error"):
                self.identities.add_work_item(patient.id, IMPORT_IMPOSSIBLE_REASON, {**detail, "code": checked.code})
                result.refused.append(f"{where}: INS {ins.matricule} not verified ({checked.detail}): not kept")
                return patient
            if not same_ins(checked.individu, ins):
                self.identities.add_work_item(patient.id, IMPORT_KO_REASON, {**detail, "code": checked.code}, ko=True)
                result.refused.append(f"{where}: INS {ins.matricule} not confirmed by INSi (CR {checked.code})")
                return patient
            assert checked.individu is not None
            updated = self.identities.with_insi_identity(patient, checked.individu, patient.status.with_ins())
            self.store.save_patient(updated)
            result.holders[ins] = updated.id
            return updated

    def _import_agenda(self, content: bytes, result: _Imported) -> None:
        try:
            calendars = Calendar.from_ical(content, multiple=True)
            events = [e for c in calendars for e in c.walk("VEVENT")]
        except Exception as exc:  # icalendar raises ValueError, KeyError, IndexError... on broken input
            result.refused.append(f"{AGENDA}: not iCalendar ({type(exc).__name__}: {_short(exc)})")
            return
        for event in events:
            uid = str(event.get("UID") or "").strip()
            try:
                if self._import_event(event, uid, result):
                    result.appointments += 1
            except InvalidInput as exc:
                result.refused.append(f"{AGENDA}: VEVENT {uid[:80]!r}: {exc}")
            except Exception as exc:  # a property icalendar cannot decode
                result.refused.append(f"{AGENDA}: VEVENT {uid[:80]!r}: unreadable ({type(exc).__name__})")

    def _import_event(self, event: Any, uid: str, result: _Imported) -> bool:
        """Add one VEVENT to the agenda; False when it is already there. Raises InvalidInput."""
        if not uid or len(uid) > MAX_UID:
            raise InvalidInput(f"a VEVENT needs a UID of 1 to {MAX_UID} characters")
        start = _event_instant(event.get("DTSTART"), "DTSTART").astimezone(local_zone())
        if event.get("DTEND") is not None:
            end = _event_instant(event.get("DTEND"), "DTEND").astimezone(local_zone())
        else:
            duration = getattr(event.get("DURATION"), "dt", None)
            end = start + duration if isinstance(duration, timedelta) else start
        if end < start:
            raise InvalidInput("DTEND is before DTSTART")
        summary = " ".join(str(event.get("SUMMARY") or "").split())[:MAX_SUMMARY] or "Rendez-vous"
        attendees = event.get("ATTENDEE")
        listed = attendees if isinstance(attendees, list) else [attendees] if attendees is not None else []
        patient_id = next((p for p in (self._attendee_patient(str(a), result) for a in listed) if p), "")
        if not patient_id:
            raise InvalidInput("no ATTENDEE names a patient of the archive or an INS the practice holds")
        try:
            self._add_appointment(patient_id, start, end, summary, uid=uid)
        except DuplicateAppointment:
            return False
        result.patient(patient_id)
        return True

    def _attendee_patient(self, value: str, result: _Imported) -> str:
        match = _ATTENDEE.match(value.strip())
        if match is None:
            return ""
        oid, identifier = match["oid"], match["id"]
        found = result.by_identifier.get((oid, identifier))
        if found:
            return found
        return result.holders.get(Ins(identifier, oid), "") if oid in INS_TYPES else ""


# -- requests -----------------------------------------------------------------------------------------------
def export_request(body: Any) -> ExportRequest:
    """A checked export request; raises InvalidInput."""
    if not isinstance(body, dict):
        raise InvalidInput("the body must be an object with 'scope', 'patient_ids' and 'since'")
    scope = body.get("scope")
    if scope not in SCOPES:
        raise InvalidInput(f"'scope' must be one of {', '.join(SCOPES)}")
    patient_ids = body.get("patient_ids", [])
    if not isinstance(patient_ids, list) or not all(isinstance(p, str) and p for p in patient_ids):
        raise InvalidInput("'patient_ids' must be a list of patient ids")
    unique = tuple(dict.fromkeys(patient_ids))
    if scope == "unitaire" and len(unique) != 1:
        raise InvalidInput("a 'unitaire' export names exactly one patient")
    if scope == "cible" and not unique:
        raise InvalidInput("a 'cible' export names at least one patient")
    if scope == "massif" and unique:
        raise InvalidInput("a 'massif' export takes every patient: give no 'patient_ids'")
    since = body.get("since", "") or ""
    if not isinstance(since, str) or (since and not _DATE.match(since)):
        raise InvalidInput("'since' must be a YYYY-MM-DD date, or empty for the whole history")
    try:
        depth = date.fromisoformat(since) if since else None
    except ValueError:
        raise InvalidInput(f"'since' {since!r} is not a date") from None
    return ExportRequest(str(scope), unique, depth)


def _appointment_request(body: Any) -> tuple[datetime, datetime, str]:
    if not isinstance(body, dict):
        raise InvalidInput("the body must be an object with 'start', 'end' and 'summary'")
    instants = []
    for name in ("start", "end"):
        value = body.get(name)
        if not isinstance(value, str):
            raise InvalidInput(f"'{name}' must be an ISO 8601 date-time with its offset")
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput(f"'{name}' is not an ISO 8601 date-time: {value[:60]!r}") from None
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise InvalidInput(f"'{name}' must carry its offset (e.g. +01:00)")
        instants.append(moment)
    start, end = instants
    if end < start:
        raise InvalidInput("'end' is before 'start'")
    summary = body.get("summary")
    if not isinstance(summary, str) or not summary.strip() or len(summary) > MAX_SUMMARY:
        raise InvalidInput(f"'summary' must be a non-empty string of at most {MAX_SUMMARY} characters")
    return start, end, summary.strip()


def _archive_field(body: Any) -> bytes:
    if not isinstance(body, dict):
        raise InvalidInput("the body must be an object with an 'archive_base64' string")
    return decoded_base64(body.get("archive_base64"), "archive_base64", MAX_ARCHIVE_BYTES)


# -- reading CDA documents ----------------------------------------------------------------------------------
def _cda_root(content: bytes) -> etree._Element:
    """A received CDA parsed safely (no DTD, entities or network); raises InvalidInput."""
    try:
        root = safe_xml(content, "the CDA")
    except UnreadableXdm as exc:
        raise InvalidInput(str(exc)) from None
    if root.tag != f"{{{HL7}}}ClinicalDocument":
        raise InvalidInput("not a CDA R2 ClinicalDocument (urn:hl7-org:v3)")
    return root


def _document_id(root: etree._Element) -> str:
    identifier = root.find(hl7_path("id"))
    if identifier is None or not identifier.get("root"):
        raise InvalidInput("the CDA has no ClinicalDocument/id/@root")
    extension = identifier.get("extension")
    return f"{identifier.get('root')}^{extension}" if extension else str(identifier.get("root"))


def cda_identity(root: etree._Element) -> tuple[Traits, Ins | None, list[tuple[str, str]]]:
    """The patient a CDA names (recordTarget): strict traits, the INS if any, every (OID, id); raises InvalidInput."""
    role = root.find(hl7_path("recordTarget/patientRole"))
    person = role.find(hl7_path("patient")) if role is not None else None
    name = person.find(hl7_path("name")) if person is not None else None
    if role is None or person is None or name is None:
        raise InvalidInput("the CDA names no patient (recordTarget/patientRole/patient/name)")
    identifiers = [(i.get("root", ""), i.get("extension", "")) for i in role.iterfind(hl7_path("id"))]
    ins = next((Ins(e, r) for r, e in identifiers if r in INS_TYPES and is_valid_matricule(e)), None)

    def texts(tag: str, qualifier: str | None) -> list[str]:
        elements = name.iterfind(hl7_path(tag))
        found = [" ".join((e.text or "").split()) for e in elements if e.get("qualifier") == qualifier]
        return [t for t in found if t]

    birth_name = (texts("family", "BR") or texts("family", None) or [""])[0]
    first_names = " ".join(texts("given", None) or texts("given", "BR")).split()
    gender = person.find(hl7_path("administrativeGenderCode"))
    birth_time = person.find(hl7_path("birthTime"))
    data: dict[str, Any] = {
        "birth_name": birth_name,
        "first_names": first_names,
        "sex": gender.get("code", "") if gender is not None else "",
        "birth_date": _birth_date(birth_time.get("value", "") if birth_time is not None else ""),
    }
    used_name, used_first = texts("family", "CL"), texts("given", "CL")
    if used_name:
        data["used_name"] = used_name[0]
    if used_first:
        data["used_first_name"] = used_first[0]
    county = " ".join((person.findtext(hl7_path("birthplace/place/addr/county")) or "").split())
    try:
        traits = traits_from_json({**data, "birthplace_cog": county} if county else data)
    except InvalidInput:
        traits = traits_from_json(data)  # a birthplace that is no COG code is left out; any other refusal stands
    return traits, ins, [(r, e) for r, e in identifiers if r and e]


def _source_identity(entry: etree._Element) -> tuple[Traits, Ins | None, list[tuple[str, str]]]:
    """The patient of a DocumentEntry's ``sourcePatientInfo`` (for a CDA naming none); raises InvalidInput."""
    values: dict[str, list[str]] = {}
    for slot in entry.iterfind(f"{{{RIM}}}Slot[@name='sourcePatientInfo']"):
        for value in slot.iter(f"{{{RIM}}}Value"):
            key, _, content = (value.text or "").partition("|")
            values.setdefault(key.strip().upper(), []).append(content.strip())
    name = (values.get("PID-5") or [""])[0].split("^")
    first_names = (name[2] if len(name) > 2 and name[2] else name[1] if len(name) > 1 else "").split()
    data = {
        "birth_name": _unhl7(name[0]),
        "first_names": [_unhl7(n) for n in first_names],
        "sex": (values.get("PID-8") or [""])[0],
        "birth_date": _birth_date((values.get("PID-7") or [""])[0]),
    }
    try:
        traits = traits_from_json(data)
    except InvalidInput as exc:
        raise InvalidInput(f"neither the CDA nor sourcePatientInfo names the patient ({exc})") from None
    identifiers = [i for i in (_cx(v) for v in values.get("PID-3", [])) if i is not None]
    ins = next((Ins(i, o) for o, i in identifiers if o in INS_TYPES and is_valid_matricule(i)), None)
    return traits, ins, identifiers


def _birth_date(ts: str) -> str:
    """An HL7 birth date (``YYYYMMDD``, ``YYYYMM``, ``YYYY``) as ``YYYY-MM-DD`` with ``00`` for what is missing."""
    digits = ts.strip()[:8]
    if not re.fullmatch(r"\d{4}(?:\d{2}){0,2}", digits):
        return ""
    padded = digits.ljust(8, "0")
    return f"{padded[:4]}-{padded[4:6]}-{padded[6:8]}"


def _section_lines(root: etree._Element) -> tuple[str, ...]:
    """The narrative of a CDA's sections (or a text body), wrapped and cut to one page."""
    lines: list[str] = []
    for section in root.iter(hl7_path("section")):
        title = " ".join((section.findtext(hl7_path("title")) or "").split())
        text = section.find(hl7_path("text"))
        body = " ".join(" ".join(str(t) for t in text.itertext()).split()) if text is not None else ""
        if title:
            lines.append(title.upper())
        lines += textwrap.wrap(body, RENDERED_WIDTH)
    if not lines:
        text = root.find(hl7_path("component/nonXMLBody/text"))
        if text is not None and text.get("mediaType", "text/plain").startswith("text/"):
            raw = text.text or ""
            if text.get("representation") == "B64":
                try:
                    raw = base64.b64decode("".join(raw.split())).decode("utf-8", "replace")
                except ValueError:
                    raw = ""
            for paragraph in raw.splitlines():
                lines += textwrap.wrap(" ".join(paragraph.split()), RENDERED_WIDTH)
    if len(lines) > RENDERED_LINES:
        lines = [*lines[: RENDERED_LINES - 1], "[…] Texte intégral : le document CDA du même nom (.XML)."]
    return tuple(lines) or ("(document sans texte lisible : voir le document CDA du même nom)",)


def _without_confidentiality_code(cda: bytes) -> bytes:
    """The ``port-invalid-cda`` defect: the CDA without ``ClinicalDocument/confidentialityCode``."""
    root = etree.fromstring(cda, _PARSER)
    for element in root.findall(hl7_path("confidentialityCode")):
        root.remove(element)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


# -- writing the archive --------------------------------------------------------------------------------------
def _zip(members: Sequence[tuple[str, bytes]], now: datetime) -> bytes:
    stamp = max(now.replace(tzinfo=None), datetime(1980, 1, 1)).timetuple()[:6]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.external_attr = 0o644 << 16
            archive.writestr(info, content, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def _index_html(folders: Sequence[_Folder], now: datetime) -> str:
    parts = []
    for folder in folders:
        traits = folder.patient.traits
        base = f"{PATIENTS}/{folder.name}"
        label = f"{traits.birth_name} {' '.join(traits.first_names)}, né(e) le {_french_date(traits.birth_date)}"
        documents = []
        for exported in folder.files:
            if exported.name.endswith(".PDF"):
                continue
            pdf = exported.name[:-4] + ".PDF"
            has_pdf = any(f.name == pdf for f in folder.files)
            documents.append(
                f'<li><a href="{base}/{exported.name}">{html.escape(exported.entry.title or exported.name)}</a>'
                f" ({html.escape(exported.entry.creation_time[:8])})"
                + (f' — <a href="{base}/{pdf}">PDF</a>' if has_pdf else "")
                + "</li>"
            )
        items = "\n".join(documents) or "<li>aucun document dans la profondeur demandée</li>"
        parts.append(
            f"<h2>{html.escape(folder.name)} : {html.escape(label)}</h2>\n"
            f'<p>Métadonnées : <a href="{base}/METADATA.XML">METADATA.XML</a></p>\n<ul>\n{items}\n</ul>'
        )
    body = "\n".join(parts) or "<p>Aucun patient exporté.</p>"
    return (
        '<!DOCTYPE html>\n<html lang="fr"><head><meta charset="utf-8"><title>Portabilité des données</title></head>'
        f"<body>\n<h1>Archive de portabilité — {html.escape(SOFTWARE)}, {now:%d/%m/%Y %H:%M}</h1>\n{body}\n"
        f'<h2>Données transverses et documentation</h2>\n<ul>\n<li><a href="{AGENDA}">Agenda (iCalendar)</a></li>\n'
        f'<li><a href="{TRACES}">Traces (Syslog)</a></li>\n'
        f'<li><a href="{DICTIONARY}">Dictionnaire des données</a></li>\n'
        f'<li><a href="{INTEGRITY}">Rapport d\'intégrité et de volumétrie</a></li>\n</ul>\n</body></html>\n'
    )


def _readme(request: ExportRequest, patients: int, now: datetime) -> str:
    depth = f"depuis le {request.since.isoformat()}" if request.since else "historique complet"
    lines = (
        "Archive de portabilité des données (exigence PORT/va1.01, LGC.PORT.01), structure IHE XDM.",
        f"Logiciel : {SOFTWARE}",
        f"Version : {__version__}",
        f"Éditeur : {PUBLISHER}",
        f"Date de l'export : {now.isoformat()} (horloge du cabinet)",
        f"Périmètre : {request.scope} ({patients} patient(s))",
        f"Profondeur : {depth}",
        f"Contenu : INDEX.HTM (sommaire), {PATIENTS}/PATnnnnn/ (METADATA.XML, documents CDA R2 DOCnnnnn.XML",
        f"et leur copie PDF/A-1 DOCnnnnn.PDF), {AGENDA}, {TRACES}, {DICTIONARY}, {INTEGRITY}.",
    )
    return "\r\n".join(lines) + "\r\n"


def _dictionary() -> str:
    rows = [("donnee", "format", "emplacement"), *DICTIONARY_ROWS]
    return "\r\n".join(";".join(cell.replace(";", ",") for cell in row) for row in rows) + "\r\n"


def _syslog(moment: datetime, msgid: str, data: dict[str, str], text: str) -> str:
    """One RFC 5424 line: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG``."""
    stamp = moment.astimezone(local_zone()).replace(microsecond=0).isoformat()
    params = " ".join(f'{k}="{_sd_value(v)}"' for k, v in data.items())
    message = " ".join(text.split())
    return f"<{SYSLOG_PRI}>1 {stamp} {HOSTNAME} {APP_NAME} - {msgid} [{SD_ID} {params}] {message}"


def _sd_value(value: str) -> str:
    """An SD-PARAM value: ``"``, ``\\`` and ``]`` escaped (RFC 5424 §6.3.3), one line."""
    flat = " ".join(value.split())
    return flat.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


# -- small helpers ---------------------------------------------------------------------------------------------
def _member(archive: SafeZip, path: str) -> str | None:
    """The member named ``path``, ignoring case (IHE XDM media are often upper case)."""
    wanted = path.upper()
    return next((name for name in archive.names if name.upper() == wanted), None)


def _pid3(entry: etree._Element) -> list[str]:
    values = entry.iterfind(f"{{{RIM}}}Slot[@name='sourcePatientInfo']/{{{RIM}}}ValueList/{{{RIM}}}Value")
    texts = [(v.text or "").strip() for v in values]
    return [t.split("|", 1)[1] for t in texts if t.upper().startswith("PID-3|")]


def _cx(text: str) -> tuple[str, str] | None:
    """(OID, id) of a CX ``id^^^&oid&ISO^type``, or None."""
    match = _CX.match(text.strip())
    return (match["oid"], match["id"]) if match else None


def _moment(iso: str) -> datetime:
    """An ISO date or date-time as an aware instant: a date is its midnight, a naive time is French legal time."""
    text = iso.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = datetime(1970, 1, 1, tzinfo=UTC)
    if _DATE.match(text) or moment.tzinfo is None:
        moment = moment.replace(tzinfo=local_zone())
    return moment


def _on_or_after(moment: datetime, since: date | None) -> bool:
    """Within the depth: on or after ``since`` (French legal time), or always without a depth."""
    return since is None or moment.astimezone(local_zone()).date() >= since


def _event_instant(prop: Any, name: str) -> datetime:
    value = getattr(prop, "dt", None)
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=local_zone())
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=local_zone())
    raise InvalidInput(f"no usable {name}")


def _hl7(text: str) -> str:
    """Text in an HL7 v2 component, its delimiters escaped."""
    escapes = {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\"}
    return "".join(escapes.get(c, c) for c in text)


def _unhl7(text: str) -> str:
    for escaped, plain in (("\\F\\", "|"), ("\\S\\", "^"), ("\\T\\", "&"), ("\\R\\", "~"), ("\\E\\", "\\")):
        text = text.replace(escaped, plain)
    return text


def _french_date(birth_date: str) -> str:
    year, _, rest = birth_date.partition("-")
    month, _, day = rest.partition("-")
    return f"{day}/{month}/{year}" if month else birth_date


def _short(value: object) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= 200 else text[:197] + "..."
