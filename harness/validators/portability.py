"""A portability export (PORT/va1.01, LGC.PORT.01) judged against what the harness seeded.

The outgoing vendor's archive is the data a practice takes to its next software, so
it is judged as the receiving side would: can everything be found, identified and
trusted? ANS's guide "Portabilité des Données LGC" (draft 0.1.0) fixes the principles
(an IHE XDM-based archive, a patient part, a transverse part, export documentation
with a data dictionary and an integrity report, an INDEX; CDA R2 and PDF for every
document, iCalendar for the agenda, Syslog for traces) but not yet the folder names:
those are the harness's rule, written down in ``docs/portability-archive.md`` and
renamable through :class:`PortabilityLayout`.

The zip is opened with the XDM reader's bounded streaming (:func:`harness.validators.xdm.read_xdm`:
size, member count, ratio, zip slip, symlinks), each ``METADATA.XML`` with its safe parser,
each CDA entry cross-checked with its metadata (:func:`harness.validators.xds.cross_check`)
and, when the caller gives one, judged by the CDA validator; each PDF by the PDF/A checks.
The agenda is parsed with the ``icalendar`` library. Nothing here raises on hostile input:
every problem is a :class:`~harness.findings.Finding`.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import io
import json
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from lxml import etree

from harness.findings import Finding, Severity, error, info, warning
from harness.sut.model import PatientTraits
from harness.validators.ins import normalise_trait
from harness.validators.pdf import check_pdfa
from harness.validators.xdm import parse_metadata, read_xdm, unsafe_name
from harness.validators.xds import PatientCx, Scheme, coded, cross_check, document_entries, external_id, slot_values

if TYPE_CHECKING:
    from harness.validators.cda import CdaValidator

SOURCE = "portability"
PATIENTS_FOLDER = "IHE_XDM"
"""Fixed by IHE XDM, not configurable."""
DEFAULT_MAX_BYTES = 2 * 1024 * 1024 * 1024
DEFAULT_MAX_MEMBERS = 200_000
DEFAULT_MAX_UNCOMPRESSED = 8 * 1024 * 1024 * 1024
FRENCH_TIME = ZoneInfo("Europe/Paris")
"""``since`` is a calendar date in French legal time: a document is within the depth when its
production instant falls on or after midnight of that day, Paris time."""
CDA_MIME_TYPES = frozenset({"text/xml", "application/xml"})
INS_OIDS = frozenset({"1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.9", "1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.11"})
DICTIONARY_COLUMNS = ("donnee", "format", "emplacement")
MAX_LISTED = 10
"""How many names a finding lists before it says "and N more"."""

_FOLDER_NAME = re.compile(r"^[A-Z0-9_]{1,8}$")
_METADATA = re.compile(rf"^{PATIENTS_FOLDER}/([^/]+)/METADATA\.XML$", re.IGNORECASE)
_RFC5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<timestamp>\S+) (?P<host>\S{1,255}) (?P<app>\S{1,48}) (?P<proc>\S{1,128}) "
    r"(?P<msgid>\S{1,32}) (?P<sd>-|\[.*?\](?:\[.*?\])*)(?: (?P<msg>.*))?$"
)
_RFC3164 = re.compile(r"^<\d{1,3}>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ ")


def _error(rule: str, message: str, location: str = "") -> Finding:
    return error(rule, message, location, SOURCE)


def _warning(rule: str, message: str, location: str = "") -> Finding:
    return warning(rule, message, location, SOURCE)


def _info(rule: str, message: str, location: str = "") -> Finding:
    return info(rule, message, location, SOURCE)


class LayoutError(ValueError):
    """The ``--portability-layout`` file cannot be read or names something unsafe."""


@dataclass(frozen=True, slots=True)
class PortabilityLayout:
    """Where the harness looks for the non-XDM parts of the archive (ANS has not fixed the names yet)."""

    transverse_folder: str = "TRANSVERSE"
    documentation_folder: str = "DOCUMENTATION"
    agenda: str = "AGENDA.ICS"
    """In the transverse folder."""
    traces: str = "TRACES.LOG"
    """In the transverse folder."""
    dictionary: str = "DICTIONNAIRE.CSV"
    """In the documentation folder."""
    integrity: str = "INTEGRITE.JSON"
    """In the documentation folder."""

    @property
    def agenda_path(self) -> str:
        return f"{self.transverse_folder}/{self.agenda}"

    @property
    def traces_path(self) -> str:
        return f"{self.transverse_folder}/{self.traces}"

    @property
    def dictionary_path(self) -> str:
        return f"{self.documentation_folder}/{self.dictionary}"

    @property
    def integrity_path(self) -> str:
        return f"{self.documentation_folder}/{self.integrity}"

    @classmethod
    def from_toml(cls, path: Path) -> PortabilityLayout:
        """The layout of table ``[portability]`` of a TOML file; unknown keys and unsafe names are errors."""
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8")).get("portability", {})
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise LayoutError(f"cannot read the portability layout {path}: {exc}") from None
        if not isinstance(data, dict):
            raise LayoutError(f"{path}: [portability] must be a table")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise LayoutError(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
        for key, value in data.items():
            if not isinstance(value, str) or not value or unsafe_name(value) or value.strip("/") != value:
                raise LayoutError(f"{path}: {key} = {value!r} is not a safe relative name")
        return replace(cls(), **data)


@dataclass(frozen=True, slots=True)
class ExpectedDocument:
    """A document the harness seeded: its id as the SUT gave it (the CDA id), type and production instant."""

    document_id: str
    type_code: str
    created: datetime


@dataclass(frozen=True, slots=True)
class ExpectedAppointment:
    start: datetime
    summary: str


@dataclass(frozen=True, slots=True)
class ExpectedPatient:
    """A seeded patient: traits, the INS the SUT stores for it (``(matricule, oid)``) if any, and its data."""

    traits: PatientTraits
    ins: tuple[str, str] | None
    documents: tuple[ExpectedDocument, ...] = ()
    appointments: tuple[ExpectedAppointment, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.traits.birth_name} {' '.join(self.traits.first_names)} ({self.traits.birth_date})"


@dataclass(frozen=True, slots=True)
class ExpectedExport:
    """What the export asked for should hold.

    Attributes:
        patients: the seeded patients in the scope asked for.
        outside_scope: seeded patients the export must not carry.
        since: the depth asked for (None: the whole history).
    """

    patients: tuple[ExpectedPatient, ...]
    outside_scope: tuple[ExpectedPatient, ...] = ()
    since: date | None = None


@dataclass(frozen=True, slots=True)
class ExportedEntry:
    """One DocumentEntry of a patient folder, as the archive describes it."""

    folder: str
    member: str
    unique_id: str
    mime_type: str
    type_code: str
    created: datetime | None
    patient: PatientCx | None
    identifiers: tuple[str, ...]
    """PID-3 values of ``sourcePatientInfo``."""
    name: tuple[str, str]
    """Birth name and first name, from PID-5."""
    birth_date: str
    """PID-7, ``YYYYMMDD``."""
    sex: str

    @property
    def is_cda(self) -> bool:
        return self.mime_type in CDA_MIME_TYPES


@dataclass(slots=True)
class PortabilityReport:
    """What checking one archive found, and an inventory for the evidence."""

    findings: list[Finding] = field(default_factory=list)
    members: dict[str, bytes] = field(default_factory=dict)
    entries: list[ExportedEntry] = field(default_factory=list)
    folders: dict[str, str] = field(default_factory=dict)
    """Every patient folder → the seeded patient it was matched to (label), or "" (unmatched, or no seed given)."""
    events: int = 0
    trace_lines: int = 0
    cda_validated: int = 0
    dictionary: list[tuple[str, str, str]] = field(default_factory=list)
    """The data dictionary's rows read without a problem: ``(donnee, format, emplacement)``."""

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == Severity.ERROR]

    def inventory(self) -> dict[str, Any]:
        """Counts and names, no content: what the evidence pack keeps of the archive."""
        return {
            "members": len(self.members),
            "bytes": sum(len(c) for c in self.members.values()),
            "patients": dict(sorted(self.folders.items())),
            "document_entries": len(self.entries),
            "cda_entries": sum(1 for e in self.entries if e.is_cda),
            "cda_validated": self.cda_validated,
            "appointments": self.events,
            "trace_lines": self.trace_lines,
            "findings": {
                "errors": len(self.errors),
                "warnings": sum(1 for f in self.findings if f.severity == Severity.WARNING),
            },
        }


CdaCheck = Callable[[bytes, str], list[Finding]]
"""A CDA validator: ``(document bytes, member name) -> findings``."""

NOT_PORTABILITY_RULES = frozenset({"cda.header.ins.missing"})
"""CDA-validator rules left out of an export's judgement: a provisional identity's documents rightly
carry no INS; the INS is judged per patient, on every entry, by ``portability.identity.ins``."""


def cda_check(validator: CdaValidator, most: int = 20) -> CdaCheck:
    """The CDA validator as a :data:`CdaCheck`: its errors on each document (``most`` at most), less
    :data:`NOT_PORTABILITY_RULES`."""

    def check(content: bytes, name: str) -> list[Finding]:
        return [f for f in validator.validate(content, name).errors if f.rule not in NOT_PORTABILITY_RULES][:most]

    return check


def check_export(
    archive: bytes,
    expected: ExpectedExport | None = None,
    *,
    layout: PortabilityLayout | None = None,
    check_cda: CdaCheck | None = None,
    check_pdf: bool = True,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED,
) -> PortabilityReport:
    """Every finding about one portability archive; never raises on hostile input.

    Rules (errors unless said): the zip rules of :func:`harness.validators.xdm.read_xdm`
    (``xdm.zip.*``); ``portability.layout.index``, ``.readme``, ``.patients``,
    ``.folder-name`` (warning), ``.unreferenced`` (warning); ``portability.metadata.*`` (the
    XDM metadata rules); ``portability.entry.missing`` (warning: a patient folder with no
    document, as when nothing is within the depth), ``portability.entry.uri``, ``.file``,
    ``.hash``, ``.size``, ``.created``, ``.type``; ``portability.identity.traits``, ``.name``,
    ``.first-name``, ``.birth-date``, ``.sex``, ``.ins``; ``portability.pdf.missing`` and the ``pdf.*`` PDF/A-1 rules;
    ``xds.cda.*`` (metadata against the CDA) and whatever ``check_cda`` finds;
    ``portability.patient.missing``, ``.unexpected`` (info), ``portability.scope.outside``,
    ``portability.document.missing``, ``portability.depth.outside``;
    ``portability.agenda.missing-file``, ``.unreadable``, ``.header``, ``.event``,
    ``.missing``; ``portability.traces.missing-file``, ``.encoding``, ``.empty``,
    ``.format``, ``.rfc3164`` (warning); ``portability.documentation.missing-file``,
    ``.unreadable``, ``.columns``, ``.row``, ``.uncovered``, ``.stale`` (warning);
    ``portability.integrity.missing-file``, ``.unreadable``, ``.unlisted``, ``.hash``,
    ``.size``, ``.extra``, ``.volumes``.
    """
    layout = layout or PortabilityLayout()
    report = PortabilityReport()
    read = read_xdm(archive, max_bytes=max_bytes, max_members=max_members, max_uncompressed=max_uncompressed)
    report.findings.extend(read.findings)
    report.members = read.documents
    if any(f.rule in ("xdm.zip.too-large", "xdm.zip.unreadable", "xdm.zip.members") for f in read.findings):
        return report
    _check_root(report)
    referenced = _check_patient_part(report, check_cda, check_pdf)
    _check_unreferenced(report, referenced)
    events = _check_agenda(report, layout)
    _check_traces(report, layout)
    _check_dictionary(report, layout)
    _check_integrity(report, layout, len(events) if events is not None else None)
    if expected is not None:
        _check_expected(report, expected, events or [])
    return report


# -- the root and the patient part -------------------------------------------------------------------
def _check_root(report: PortabilityReport) -> None:
    upper = {name.upper() for name in report.members}
    for wanted, rule in (("INDEX.HTM", "portability.layout.index"), ("README.TXT", "portability.layout.readme")):
        if wanted not in upper:
            report.findings.append(_error(rule, f"no {wanted} at the root of the archive (IHE XDM)", wanted))


def _patient_folders(members: Iterable[str]) -> dict[str, str]:
    """Patient folder → its METADATA.XML member."""
    folders: dict[str, str] = {}
    for name in members:
        match = _METADATA.match(name)
        if match:
            folders[name.rsplit("/", 1)[0]] = name
    return folders


def _check_patient_part(report: PortabilityReport, check_cda: CdaCheck | None, check_pdf: bool) -> set[str]:
    """Judge every patient folder; the members the entries reference."""
    folders = _patient_folders(report.members)
    if not folders:
        report.findings.append(
            _error(
                "portability.layout.patients",
                f"no {PATIENTS_FOLDER}/<patient>/METADATA.XML: the archive has no patient part",
                f"{PATIENTS_FOLDER}/",
            )
        )
    referenced: set[str] = set()
    for folder, metadata in sorted(folders.items()):
        report.folders[folder] = ""
        referenced.add(metadata)
        name = folder.split("/", 1)[1]
        if not _FOLDER_NAME.match(name):
            report.findings.append(
                _warning(
                    "portability.layout.folder-name",
                    f"patient folder {name!r} is not 1-8 characters A-Z, 0-9, _ (IHE XDM media)",
                    folder,
                )
            )
        root, problems = parse_metadata(report.members[metadata], metadata)
        report.findings.extend(_renamed(f, "xdm.metadata.", "portability.metadata.") for f in problems)
        if root is None:
            continue
        referenced |= _check_folder(report, folder, metadata, root, check_cda, check_pdf)
    return referenced


def _renamed(finding: Finding, old: str, new: str) -> Finding:
    rule = new + finding.rule.removeprefix(old) if finding.rule.startswith(old) else finding.rule
    return Finding(finding.severity, rule, finding.message, finding.location, SOURCE, finding.rule_file)


def _check_folder(
    report: PortabilityReport,
    folder: str,
    metadata: str,
    root: etree._Element,
    check_cda: CdaCheck | None,
    check_pdf: bool,
) -> set[str]:
    findings, members = report.findings, report.members
    referenced: set[str] = set()
    entries = document_entries(root)
    if not entries:
        findings.append(
            _warning("portability.entry.missing", "the patient's METADATA.XML has no DocumentEntry", metadata)
        )
    for entry in entries:
        where = f"{metadata}: ExtrinsicObject[@id='{entry.get('id', '')}']"
        uris = slot_values(entry, "URI")
        uri = uris[0] if uris else ""
        why = "is missing" if not uri else unsafe_name(uri) or ("is not a relative path" if ":" in uri else "")
        if why:
            findings.append(_error("portability.entry.uri", f"the URI slot {why} ({uri!r})", where))
            continue
        member = f"{folder}/{uri}"
        content = members.get(member)
        if content is None:
            findings.append(_error("portability.entry.file", f"URI {uri!r} names no file of {folder}/", where))
            continue
        referenced.add(member)
        exported = _exported_entry(folder, member, entry)
        report.entries.append(exported)
        findings.extend(_entry_findings(entry, exported, content, where))
        if exported.is_cda:
            findings.extend(
                Finding(f.severity, f.rule, f.message, f"{member}: {f.location}", f.source, f.rule_file)
                for f in cross_check(entry, content)
            )
            if check_cda is not None:
                report.cda_validated += 1
                findings.extend(
                    Finding(f.severity, f.rule, f.message, f"{member}: {f.location}", f.source, f.rule_file)
                    for f in check_cda(content, member)
                )
            pdf = _pdf_beside(members, member)
            if pdf is None:
                findings.append(
                    _error("portability.pdf.missing", f"{member} has no PDF copy beside it (same name, .PDF)", member)
                )
            else:
                referenced.add(pdf)
        elif check_pdf and _is_pdf(member, content):
            findings.extend(check_pdfa(content, 1, source_label=member))
    return referenced


def _pdf_beside(members: dict[str, bytes], cda_member: str) -> str | None:
    stem = cda_member.rsplit(".", 1)[0]
    for suffix in (".PDF", ".pdf"):
        if stem + suffix in members:
            return stem + suffix
    return None


def _is_pdf(name: str, content: bytes) -> bool:
    return name.lower().endswith(".pdf") or content[:1024].lstrip().startswith(b"%PDF-")


def _source_patient_info(entry: etree._Element) -> dict[str, list[str]]:
    fields_by_name: dict[str, list[str]] = {}
    for value in slot_values(entry, "sourcePatientInfo"):
        name, _, content = value.partition("|")
        fields_by_name.setdefault(name.strip().upper(), []).append(content.strip())
    return fields_by_name


def _exported_entry(folder: str, member: str, entry: etree._Element) -> ExportedEntry:
    pid = _source_patient_info(entry)
    name = (pid.get("PID-5") or [""])[0].split("^")
    type_codes = coded(entry, Scheme.TYPE_CODE)
    created = slot_values(entry, "creationTime")
    return ExportedEntry(
        folder=folder,
        member=member,
        unique_id=external_id(entry, Scheme.ENTRY_UNIQUE_ID),
        mime_type=entry.get("mimeType", ""),
        type_code=type_codes[0].code if type_codes else "",
        created=xds_instant(created[0]) if created else None,
        patient=PatientCx.parse(external_id(entry, Scheme.ENTRY_PATIENT_ID)),
        identifiers=tuple(pid.get("PID-3", [])),
        name=(name[0] if name else "", name[1] if len(name) > 1 else ""),
        birth_date=(pid.get("PID-7") or [""])[0],
        sex=(pid.get("PID-8") or [""])[0],
    )


def xds_instant(text: str) -> datetime | None:
    """An XDS DTM (``YYYY[MM[DD[hh[mm[ss]]]]]``, UTC) as an aware datetime; None when malformed."""
    text = text.strip()
    if not re.fullmatch(r"\d{4}(\d{2}){0,5}", text):
        return None
    parts = [int(text[0:4])] + [int(text[i : i + 2]) for i in range(4, len(text), 2)]
    defaults = [0, 1, 1, 0, 0, 0]
    values = parts + defaults[len(parts) :]
    try:
        return datetime(values[0], values[1], values[2], values[3], values[4], values[5], tzinfo=UTC)
    except ValueError:
        return None


def _entry_findings(entry: etree._Element, exported: ExportedEntry, content: bytes, where: str) -> list[Finding]:
    """What an importer needs, present in the entry: hash, size, identity, production date, type."""
    findings: list[Finding] = []
    hashes, sizes = slot_values(entry, "hash"), slot_values(entry, "size")
    if not hashes or hashes[0].lower() != hashlib.sha1(content).hexdigest():
        findings.append(_error("portability.entry.hash", "the hash slot is not the SHA-1 of the file", where))
    if not sizes or sizes[0] != str(len(content)):
        findings.append(
            _error(
                "portability.entry.size", f"the size slot says {sizes[:1]}, the file has {len(content)} bytes", where
            )
        )
    if exported.created is None:
        findings.append(
            _error("portability.entry.created", "no creationTime (the production date) in XDS DTM form", where)
        )
    if not exported.type_code:
        findings.append(_error("portability.entry.type", "no typeCode (the type of the data)", where))
    for rule, present, what in (
        ("portability.identity.name", bool(exported.name[0]), "the patient's last name (PID-5.1)"),
        ("portability.identity.first-name", bool(exported.name[1]), "the patient's first name (PID-5.2)"),
        ("portability.identity.birth-date", bool(re.fullmatch(r"\d{8}", exported.birth_date)), "the birth date"),
        ("portability.identity.sex", exported.sex in ("F", "M", "U"), "the sex (PID-8 F, M or U)"),
    ):
        if not present:
            findings.append(_error(rule, f"sourcePatientInfo does not give {what}", where))
    return findings


def _check_unreferenced(report: PortabilityReport, referenced: set[str]) -> None:
    prefix = f"{PATIENTS_FOLDER}/".upper()
    unreferenced = sorted(n for n in report.members if n.upper().startswith(prefix) and n not in referenced)
    if unreferenced:
        report.findings.append(
            _warning(
                "portability.layout.unreferenced",
                f"{len(unreferenced)} file(s) of the patient part are named by no DocumentEntry: "
                f"{_listed(unreferenced)}",
                unreferenced[0],
            )
        )


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


# -- transverse part ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AgendaEvent:
    uid: str
    start: datetime | None
    summary: str
    attendees: tuple[str, ...]
    """``CN`` values."""


def _check_agenda(report: PortabilityReport, layout: PortabilityLayout) -> list[AgendaEvent] | None:
    path = layout.agenda_path
    content = report.members.get(path)
    if content is None:
        report.findings.append(
            _error("portability.agenda.missing-file", f"no agenda {path} (iCalendar, RFC 5545)", path)
        )
        return None
    from icalendar import Calendar

    try:
        calendar = Calendar.from_ical(content)
    except Exception as exc:  # icalendar raises ValueError, KeyError, IndexError... on broken input
        report.findings.append(
            _error("portability.agenda.unreadable", f"not iCalendar: {type(exc).__name__}: {exc}"[:300], path)
        )
        return None
    if isinstance(calendar, list) or getattr(calendar, "name", "") != "VCALENDAR":
        report.findings.append(_error("portability.agenda.unreadable", "not one VCALENDAR", path))
        return None
    if str(calendar.get("VERSION", "")) != "2.0" or not calendar.get("PRODID"):
        report.findings.append(
            _error("portability.agenda.header", "the VCALENDAR must give VERSION:2.0 and PRODID", path)
        )
    events: list[AgendaEvent] = []
    for component in calendar.walk("VEVENT"):
        missing = [p for p in ("UID", "DTSTAMP", "DTSTART", "SUMMARY") if component.get(p) is None]
        uid = str(component.get("UID", ""))
        if missing:
            report.findings.append(
                _error("portability.agenda.event", f"VEVENT {uid!r} lacks {', '.join(missing)}", path)
            )
        start = _ical_instant(component.get("DTSTART"))
        raw_attendees = component.get("ATTENDEE")
        attendees = raw_attendees if isinstance(raw_attendees, list) else [raw_attendees] if raw_attendees else []
        names = tuple(str(getattr(a, "params", {}).get("CN", "")) for a in attendees)
        events.append(AgendaEvent(uid, start, str(component.get("SUMMARY", "")), names))
    report.events = len(events)
    return events


def _ical_instant(prop: Any) -> datetime | None:
    value = getattr(prop, "dt", None)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=FRENCH_TIME)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=FRENCH_TIME)
    return None


def _check_traces(report: PortabilityReport, layout: PortabilityLayout) -> None:
    path = layout.traces_path
    content = report.members.get(path)
    if content is None:
        report.findings.append(_error("portability.traces.missing-file", f"no traces {path} (Syslog, RFC 5424)", path))
        return
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        report.findings.append(_error("portability.traces.encoding", f"the traces are not UTF-8: {exc}", path))
        return
    lines = [line for line in text.splitlines() if line.strip()]
    report.trace_lines = len(lines)
    if not lines:
        report.findings.append(_error("portability.traces.empty", "the traces file holds no event", path))
        return
    bad: list[int] = []
    legacy = 0
    for number, line in enumerate(lines, 1):
        match = _RFC5424.match(line)
        if match and _timestamp_ok(match["timestamp"]) and int(match["pri"]) <= 191:
            continue
        if _RFC3164.match(line):
            legacy += 1
        else:
            bad.append(number)
    if legacy:
        report.findings.append(
            _warning("portability.traces.rfc3164", f"{legacy} line(s) in BSD syslog (RFC 3164), not RFC 5424", path)
        )
    if bad:
        report.findings.append(
            _error(
                "portability.traces.format",
                f"{len(bad)} of {len(lines)} line(s) are not RFC 5424 syslog events (first: line {bad[0]}: "
                f"{lines[bad[0] - 1][:120]!r})",
                path,
            )
        )


def _timestamp_ok(text: str) -> bool:
    if text == "-":
        return True
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


# -- export documentation ----------------------------------------------------------------------------
def _check_dictionary(report: PortabilityReport, layout: PortabilityLayout) -> None:
    path = layout.dictionary_path
    content = report.members.get(path)
    if content is None:
        report.findings.append(
            _error(
                "portability.documentation.missing-file",
                f"no data dictionary {path} (the data, their format, where each is)",
                path,
            )
        )
        return
    try:
        rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig")), delimiter=";"))
    except (UnicodeDecodeError, csv.Error) as exc:
        report.findings.append(_error("portability.documentation.unreadable", f"not a UTF-8 CSV: {exc}", path))
        return
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    if any(column not in header for column in DICTIONARY_COLUMNS):
        report.findings.append(
            _error(
                "portability.documentation.columns",
                f"the header must name the columns {';'.join(DICTIONARY_COLUMNS)}; it is {';'.join(header)!r}",
                path,
            )
        )
        return
    at = {column: header.index(column) for column in DICTIONARY_COLUMNS}
    patterns: list[str] = []
    for number, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        cells = {column: row[i].strip() if i < len(row) else "" for column, i in at.items()}
        empty = [column for column, value in cells.items() if not value]
        if empty:
            report.findings.append(
                _error("portability.documentation.row", f"line {number} leaves {', '.join(empty)} empty", path)
            )
            continue
        patterns.append(cells["emplacement"])
        report.dictionary.append((cells["donnee"], cells["format"], cells["emplacement"]))
    if not patterns:
        report.findings.append(_error("portability.documentation.row", "the dictionary describes no data", path))
        return
    documented = [n for n in report.members if not n.startswith(f"{layout.documentation_folder}/")]
    uncovered = sorted(n for n in documented if not any(matches_location(n, p) for p in patterns))
    if uncovered:
        report.findings.append(
            _error(
                "portability.documentation.uncovered",
                f"{len(uncovered)} file(s) are described by no row of the dictionary: {_listed(uncovered)}",
                path,
            )
        )
    stale = [p for p in patterns if not any(matches_location(n, p) for n in report.members)]
    if stale:
        report.findings.append(
            _warning("portability.documentation.stale", f"rows whose emplacement matches no file: {stale[:5]}", path)
        )


def matches_location(name: str, pattern: str) -> bool:
    """Whether the member ``name`` is at the dictionary's ``emplacement`` (a glob, case ignored)."""
    return fnmatch.fnmatchcase(name.upper(), pattern.strip().strip("/").upper())


def _check_integrity(report: PortabilityReport, layout: PortabilityLayout, appointments: int | None) -> None:
    path = layout.integrity_path
    content = report.members.get(path)
    if content is None:
        report.findings.append(
            _error("portability.integrity.missing-file", f"no integrity and volume report {path}", path)
        )
        return
    try:
        data = json.loads(content)
        listed = {str(item["path"]): item for item in data["files"]}
        volumes = data.get("volumes", {})
        if not isinstance(volumes, dict):
            raise TypeError("'volumes' must be an object")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        report.findings.append(
            _error(
                "portability.integrity.unreadable",
                f"not the JSON of docs/portability-archive.md ({type(exc).__name__}: {exc})",
                path,
            )
        )
        return
    members = {name: data for name, data in report.members.items() if name != path}
    unlisted = sorted(set(members) - set(listed))
    extra = sorted(set(listed) - set(members))
    wrong_hash, wrong_size = [], []
    for name, item in listed.items():
        if name not in members:
            continue
        member = members[name]
        if not isinstance(item, dict) or str(item.get("sha256", "")).lower() != hashlib.sha256(member).hexdigest():
            wrong_hash.append(name)
        if not isinstance(item, dict) or item.get("size") != len(member):
            wrong_size.append(name)
    for rule, names, what in (
        ("portability.integrity.unlisted", unlisted, "are in the archive but not in the report"),
        ("portability.integrity.extra", extra, "are in the report but not in the archive"),
        ("portability.integrity.hash", sorted(wrong_hash), "have a sha256 that is not the file's"),
        ("portability.integrity.size", sorted(wrong_size), "have a size that is not the file's"),
    ):
        if names:
            report.findings.append(_error(rule, f"{len(names)} file(s) {what}: {_listed(names)}", path))
    actual = {
        "patients": len(report.folders),
        "documents": len(report.entries),
        "appointments": appointments,
    }
    wrong = {k: (volumes.get(k), v) for k, v in actual.items() if v is not None and volumes.get(k) != v}
    if wrong:
        report.findings.append(
            _error(
                "portability.integrity.volumes",
                "the volumes differ from the archive: "
                + ", ".join(f"{k} says {said!r}, the archive has {has}" for k, (said, has) in wrong.items()),
                path,
            )
        )


# -- against what was seeded -------------------------------------------------------------------------
def within_depth(moment: datetime, since: date | None) -> bool:
    """Whether ``moment`` is on or after ``since`` (French legal time); always true without a depth."""
    return since is None or moment.astimezone(FRENCH_TIME).date() >= since


def _same_person(entry: ExportedEntry, traits: PatientTraits) -> bool:
    return (
        normalise_trait(entry.name[0]) == normalise_trait(traits.birth_name)
        and normalise_trait(entry.name[1]) == normalise_trait(traits.first_names[0] if traits.first_names else "")
        and entry.birth_date == traits.birth_date.replace("-", "")
        and entry.sex == traits.sex
    )


def _carries_ins(entry: ExportedEntry, ins: tuple[str, str]) -> bool:
    if entry.patient is not None and (entry.patient.id, entry.patient.oid) == ins:
        return True
    return any((cx.id, cx.oid) == ins for cx in (PatientCx.parse(value) for value in entry.identifiers) if cx)


def _check_expected(report: PortabilityReport, expected: ExpectedExport, events: list[AgendaEvent]) -> None:
    findings = report.findings
    by_folder: dict[str, list[ExportedEntry]] = {}
    for entry in report.entries:
        by_folder.setdefault(entry.folder, []).append(entry)
    for name in report.folders:
        by_folder.setdefault(name, [])
    matched: dict[str, ExpectedPatient] = {}
    for patient in expected.patients:
        folder = _folder_of(by_folder, patient, exclude=set(matched))
        if folder is None:
            findings.append(
                _error(
                    "portability.patient.missing",
                    f"no patient folder carries {patient.label}, whose data the export was asked for",
                    f"{PATIENTS_FOLDER}/",
                )
            )
            continue
        matched[folder] = patient
        report.folders[folder] = patient.label
        _check_patient_entries(findings, patient, by_folder[folder], expected.since)
    for folder, entries in by_folder.items():
        if folder in matched:
            continue
        outside = next((p for p in expected.outside_scope if any(_same_person(e, p.traits) for e in entries)), None)
        report.folders[folder] = outside.label if outside else ""
        if outside is not None:
            findings.append(
                _error(
                    "portability.scope.outside",
                    f"{folder} carries {outside.label}, a patient outside the scope asked for",
                    folder,
                )
            )
        else:
            findings.append(
                _info("portability.patient.unexpected", f"{folder} carries a patient the harness did not seed", folder)
            )
    _check_events(findings, expected, events)


def _folder_of(by_folder: dict[str, list[ExportedEntry]], patient: ExpectedPatient, exclude: set[str]) -> str | None:
    ids = {d.document_id for d in patient.documents}
    for folder, entries in sorted(by_folder.items()):
        if folder in exclude:
            continue
        if any(_same_person(e, patient.traits) for e in entries) or any(e.unique_id in ids for e in entries):
            return folder
    return None


def _check_patient_entries(
    findings: list[Finding], patient: ExpectedPatient, entries: list[ExportedEntry], since: date | None
) -> None:
    for entry in entries:
        if not _same_person(entry, patient.traits):
            findings.append(
                _error(
                    "portability.identity.traits",
                    f"{entry.member} describes {entry.name[0]} {entry.name[1]} ({entry.birth_date}, {entry.sex}), "
                    f"not {patient.label} ({patient.traits.sex})",
                    entry.member,
                )
            )
        if patient.ins is not None and not _carries_ins(entry, patient.ins):
            findings.append(
                _error(
                    "portability.identity.ins",
                    f"{entry.member}: the software stores the INS {patient.ins[0]} ({patient.ins[1]}) of "
                    f"{patient.label}, but neither patientId nor PID-3 carries it",
                    entry.member,
                )
            )
        if entry.created is not None and not within_depth(entry.created, since):
            findings.append(
                _error(
                    "portability.depth.outside",
                    f"{entry.member} was produced {entry.created:%Y-%m-%d}, before the depth asked for ({since})",
                    entry.member,
                )
            )
    exported_ids = {e.unique_id for e in entries if e.is_cda}
    for document in patient.documents:
        if within_depth(document.created, since) and document.document_id not in exported_ids:
            findings.append(
                _error(
                    "portability.document.missing",
                    f"document {document.document_id} (type {document.type_code}, produced "
                    f"{document.created.astimezone(FRENCH_TIME):%Y-%m-%d}) of {patient.label} is within the depth "
                    f"({since or 'whole history'}) but not in the export",
                    f"{PATIENTS_FOLDER}/",
                )
            )


def _check_events(findings: list[Finding], expected: ExpectedExport, events: list[AgendaEvent]) -> None:
    for patient in expected.patients:
        for appointment in patient.appointments:
            if not within_depth(appointment.start, expected.since):
                continue
            found = any(
                e.start == appointment.start
                and e.summary == appointment.summary
                and any(normalise_trait(patient.traits.birth_name) in normalise_trait(cn) for cn in e.attendees)
                for e in events
            )
            if not found:
                findings.append(
                    _error(
                        "portability.agenda.missing",
                        f"the appointment of {patient.label} at {appointment.start.isoformat()} "
                        f"({appointment.summary!r}) is not in the agenda with the patient as ATTENDEE",
                        "agenda",
                    )
                )
    if expected.since is not None:
        early = [e for e in events if e.start is not None and not within_depth(e.start, expected.since)]
        if early:
            findings.append(
                _error(
                    "portability.depth.outside",
                    f"{len(early)} appointment(s) start before the depth asked for ({expected.since}): "
                    f"{_listed([e.uid for e in early])}",
                    "agenda",
                )
            )
