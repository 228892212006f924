"""The practice's CI-SIS documents: produced on request, imported from other producers, listed.

Producing a document prints it (a PDF/A-1b page with the patient's identity, the INS and
its DataMatrix for a qualified identity) and wraps it in a CDA R2 document: level 1 (the
PDF in ``nonXMLBody``) for the types of ``data/documents.toml``, or the structured VSM
under the "Médecin traitant" profile. The standalone PDF is returned beside the CDA, as
a practice sends both. Imported documents are kept with the producer's stylesheet
(CDA/INT.15); a patient's documents list by creation date or by type code (CDA/INT.04).
A document may be about an act of an earlier day (``act_date``, a historical document), and
a produced document can get a new version replacing it (same setId, for a DMP replacement).
The document defects of :mod:`harness.reference.defects` not in the CDA or PDF builders
are switched here.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lxml import etree

from harness.reference import SOFTWARE, __version__
from harness.reference.cda import HL7, Header, carried_ins, n1_document, new_oid
from harness.reference.datamatrix import datamatrix_image, ins_payload
from harness.reference.doctypes import DocumentCatalog, DocumentType, load_catalog
from harness.reference.identity import Conflict, IdentityService
from harness.reference.model import InvalidInput, Patient, decoded_base64, normalise_name
from harness.reference.pdfa import PrintedDocument, build_pdf
from harness.reference.store import DuplicateDocument, UnknownDocument
from harness.reference.vsm import vsm_document

SORTS = ("creation-date", "type-code")
MAX_DOCUMENT_BYTES = 2 * 1024 * 1024
INS_TYPES = {
    "1.2.250.1.213.1.4.8": "INS-NIR",
    "1.2.250.1.213.1.4.9": "INS-NIA",
    "1.2.250.1.213.1.4.10": "INS-NIR de test",
    "1.2.250.1.213.1.4.11": "INS-NIR de démonstration",
}
"""What the printed identity says the matricule is, by the OID of its assigning authority."""
_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(?:(\d{2})(\d{2})?(\d{2})?(?:\.\d+)?)?([+-]\d{4})?$")


def local_zone() -> tzinfo:
    """Metropolitan French time, as a practice in Paris stamps its documents (UTC without tz data)."""
    try:
        return ZoneInfo("Europe/Paris")
    except ZoneInfoNotFoundError:
        return UTC


@dataclass(frozen=True, slots=True)
class Produced:
    """A document just produced: what the control API returns."""

    document_id: str
    type_code: str
    cda: bytes
    pdf: bytes
    pdf_file_name: str

    def to_json(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id,
            "type_code": self.type_code,
            "cda_base64": base64.b64encode(self.cda).decode("ascii"),
            "pdf_base64": base64.b64encode(self.pdf).decode("ascii"),
            "pdf_file_name": self.pdf_file_name,
        }


class DocumentService:
    """The documents of the practice's patients."""

    def __init__(self, identities: IdentityService, catalog: DocumentCatalog | None = None) -> None:
        self.identities = identities
        self.store = identities.store
        self.catalog = catalog or load_catalog()

    def has(self, defect: str) -> bool:
        return self.identities.has(defect)

    # -- production -------------------------------------------------------------------------------
    def produce(self, patient_id: str, body: Any) -> Produced:
        """Produce, store and return the document a ``POST /patients/{id}/documents`` body asks for."""
        type_code, structure, act_date = _production_request(body)
        patient = self.identities.get(patient_id)
        kind = self.catalog.find(type_code, structure)
        if kind is None or (kind.profile and kind.profile not in self.identities.profiles):
            raise InvalidInput(f"{SOFTWARE} does not produce type code {type_code!r} in structure {structure}")
        created = self._now()
        if act_date is not None and act_date > created.date():
            raise InvalidInput(f"'act_date' {act_date.isoformat()} is after the production date")
        return self._make(patient, kind, created, act_date, set_id=new_oid(), version=1, replaces="")

    def new_version(self, patient_id: str, document_id: str) -> Produced:
        """A new version of a produced document (same setId, next versionNumber, RPLC to it), stored too."""
        patient = self.identities.get(patient_id)
        record = self.produced_record(patient_id, document_id)
        kind = self.catalog.find(str(record["kind"]), str(record["structure"]))
        if kind is None:
            raise Conflict(f"document {document_id!r} is of a type the practice no longer produces")
        act_date = date.fromisoformat(record["act_date"]) if record.get("act_date") else None
        return self._make(
            patient,
            kind,
            self._now(),
            act_date,
            set_id=str(record["set_id"]),
            version=int(record["version"]) + 1,
            replaces=document_id,
        )

    def produced_record(self, patient_id: str, document_id: str) -> dict[str, Any]:
        """What the store says of a document the practice produced for this patient; raises UnknownDocument/Conflict."""
        self.identities.get(patient_id)
        found = self.store.find_document(patient_id, document_id)
        if found is None:
            raise UnknownDocument(f"no document {document_id!r} for identity {patient_id!r}")
        record = found[0]
        if record.get("origin") != "produced" or not record.get("set_id"):
            raise Conflict(f"document {document_id!r} was not produced by {SOFTWARE}: it is not its to share")
        return record

    def _now(self) -> datetime:
        return self.identities.clock.now().astimezone(local_zone()).replace(microsecond=0)

    def _make(
        self,
        patient: Patient,
        kind: DocumentType,
        created: datetime,
        act_date: date | None,
        set_id: str,
        version: int,
        replaces: str,
    ) -> Produced:
        header = Header(
            document_id=new_oid(),
            set_id=set_id,
            type=kind,
            created=created,
            patient=patient,
            practice=self.catalog.practice,
            author=self.catalog.author,
            defects=self.identities.defects,
            act_date=act_date,
            version=version,
            replaces=replaces,
        )
        pdf = build_pdf(self._printed(header), archival=not self.has("pdf-not-pdfa"))
        root = n1_document(header, pdf) if kind.structure == "N1" else vsm_document(header)
        cda = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
        written_code = _described(root)["type_code"]
        produced = Produced(header.document_id, written_code, cda, pdf, pdf_file_name(created, kind, patient))
        record = {
            "type_code": written_code,
            "title": kind.title,
            "creation_time": created.isoformat(),
            "origin": "produced",
            "pdf_file_name": produced.pdf_file_name,
            "kind": kind.code,
            "structure": kind.structure,
            "set_id": set_id,
            "version": version,
            "act_date": act_date.isoformat() if act_date is not None else "",
            "replaces": replaces,
            "stored_at": self.identities.clock.iso(),
        }
        self.store.add_document(patient.id, header.document_id, record, cda, None)
        return produced

    def _printed(self, header: Header) -> PrintedDocument:
        patient, author, practice = header.patient, header.author, header.practice
        traits = patient.traits
        identity = [
            f"Nom de naissance : {traits.birth_name}",
            f"Prénom(s) de naissance : {' '.join(traits.first_names)}",
        ]
        if traits.used_name:
            identity.append(f"Nom utilisé : {traits.used_name}")
        if traits.used_first_name:
            identity.append(f"Prénom utilisé : {traits.used_first_name}")
        identity += [
            f"Sexe : {'Féminin' if traits.sex == 'F' else 'Masculin'}",
            f"Date de naissance : {_french_date(traits.birth_date)}",
        ]
        if traits.birthplace_cog:
            identity.append(f"Lieu de naissance (code INSEE) : {traits.birthplace_cog}")
        ins = carried_ins(patient)
        matrix = None
        if ins is not None:
            matricule, oid = ins
            identity.append(f"Matricule INS : {matricule} ({INS_TYPES.get(oid, 'INS')})")
            if not self.has("pdf-no-ins-datamatrix"):
                payload = ins_payload(
                    matricule, oid, traits.birth_name, traits.first_names, traits.sex, traits.birth_date
                )
                matrix = datamatrix_image(payload)
        identity.append(f"Identifiant local (IPP) : {patient.id}")
        signer = f"Dr {author.given} {author.family}"
        return PrintedDocument(
            title=header.type.title,
            author=signer,
            subject=header.type.display_name,
            created=header.created,
            producer=f"{SOFTWARE} {__version__}",
            letterhead=(
                practice.name,
                f"{signer} — {author.specialty_display}",
                f"N° RPPS : {author.id_nat_ps[1:]}",
                f"{practice.house_number} {practice.street_name}, {practice.postal_code} {practice.city}",
            ),
            identity=tuple(identity),
            body=(f"Le {header.created:%d/%m/%Y à %H:%M}", *header.type.body),
            footer=f"{SOFTWARE} {__version__} — document {header.document_id}",
            datamatrix=matrix,
        )

    # -- import and listing ------------------------------------------------------------------------
    def import_document(self, patient_id: str, body: Any) -> dict[str, Any]:
        """Store a document another producer made, with its stylesheet (CDA/INT.15); returns it as listed."""
        patient = self.identities.get(patient_id)
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object")
        cda = _base64_field(body, "cda_base64")
        if cda is None:
            raise InvalidInput("'cda_base64' is required")
        stylesheet = _base64_field(body, "stylesheet_base64")
        root = _parse_xml(cda, "the CDA")
        if root.tag != f"{{{HL7}}}ClinicalDocument":
            raise InvalidInput("the document is not a CDA R2 ClinicalDocument (urn:hl7-org:v3)")
        if stylesheet is not None:
            _parse_xml(stylesheet, "the stylesheet")
        record = _described(root)
        if self.has("import-drops-stylesheet"):
            stylesheet = None
        document_id = record.pop("document_id")
        record["stored_at"] = self.identities.clock.iso()
        try:
            self.store.add_document(patient.id, document_id, record, cda, stylesheet)
        except DuplicateDocument as exc:
            raise Conflict(str(exc)) from None
        return next(d for d in self.list_documents(patient.id, None) if d["document_id"] == document_id)

    def list_documents(self, patient_id: str, sort: str | None) -> list[dict[str, Any]]:
        """The patient's documents, newest first, or by type code then newest first (CDA/INT.04)."""
        self.identities.get(patient_id)
        sort = sort or SORTS[0]
        if sort not in SORTS:
            raise InvalidInput(f"unknown sort {sort!r}; use one of {', '.join(SORTS)}")
        documents = [_listed(d) for d in self.store.list_documents(patient_id)]
        if self.has("documents-unsorted"):
            return documents
        newest_first = sorted(documents, key=lambda d: _instant(d["creation_time"]), reverse=True)
        if sort == "type-code":
            return sorted(newest_first, key=lambda d: str(d["type_code"]))
        return newest_first


def pdf_file_name(created: datetime, kind: DocumentType, patient: Patient) -> str:
    """``<YYYYMMDD>_<type code>_<NOM>_<Prenom>.pdf``.

    Our assumption of an MSSanté-like convention (no ANS text fixes it): the date of the
    document, its type code, the birth name and the first birth first name, without
    diacritics, spaces or apostrophes.
    """
    name = _file_part(patient.traits.birth_name).upper()
    first = _file_part(patient.traits.first_first_name).capitalize()
    return f"{created:%Y%m%d}_{kind.code}_{name}_{first}.pdf"


def _file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "-", normalise_name(text)).strip("-")


def _french_date(birth_date: str) -> str:
    year, month, day = birth_date.split("-")
    return f"{day}/{month}/{year}"


def _production_request(body: Any) -> tuple[str, str, date | None]:
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    type_code, structure = body.get("type_code"), body.get("structure", "N1")
    if not isinstance(type_code, str) or not type_code.strip():
        raise InvalidInput("'type_code' must be a non-empty string")
    if structure not in ("N1", "N3"):
        raise InvalidInput("'structure' must be 'N1' or 'N3'")
    return type_code.strip(), str(structure), _act_date(body.get("act_date"))


def _act_date(value: Any) -> date | None:
    """The optional ``act_date`` (``YYYY-MM-DD``) of a production request; raises InvalidInput."""
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise InvalidInput("'act_date' must be a YYYY-MM-DD date")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"'act_date' {value!r} is not a date") from None


def _base64_field(body: dict[str, Any], name: str) -> bytes | None:
    value = body.get(name)
    return None if value is None else decoded_base64(value, name, MAX_DOCUMENT_BYTES)


def _parse_xml(content: bytes, what: str) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        return etree.fromstring(content, parser)
    except etree.XMLSyntaxError as exc:
        raise InvalidInput(f"{what} is not well-formed XML: {exc}") from None


def _described(root: etree._Element) -> dict[str, Any]:
    """What the listing says of an imported CDA, read from its header."""
    ns = {"cda": HL7}
    identifier = root.find("cda:id", ns)
    code = root.find("cda:code", ns)
    effective = root.find("cda:effectiveTime", ns)
    if identifier is None or not identifier.get("root"):
        raise InvalidInput("the CDA has no ClinicalDocument/id/@root")
    if code is None or not code.get("code"):
        raise InvalidInput("the CDA has no ClinicalDocument/code/@code")
    if effective is None or not effective.get("value"):
        raise InvalidInput("the CDA has no ClinicalDocument/effectiveTime/@value")
    extension = identifier.get("extension")
    return {
        "document_id": f"{identifier.get('root')}^{extension}" if extension else str(identifier.get("root")),
        "type_code": str(code.get("code")),
        "title": " ".join((root.findtext("cda:title", "", ns) or "").split()),
        "creation_time": iso_time(str(effective.get("value"))),
        "origin": "imported",
    }


def iso_time(ts: str) -> str:
    """An HL7 TS (``20240305101500+0100``, ``20240305``…) in ISO 8601; raises InvalidInput."""
    match = _TS.match(ts.strip())
    if not match:
        raise InvalidInput(f"not an HL7 time stamp: {ts[:40]!r}")
    year, month, day, hour, minute, second, zone = match.groups()
    text = "-".join(p for p in (year, month, day) if p)
    if hour:
        text += f"T{hour}:{minute or '00'}:{second or '00'}"
        if zone:
            text += f"{zone[:3]}:{zone[3:]}"
    return text


def _instant(iso: str) -> datetime:
    """An ISO date or date-time as an aware instant (a naive one taken as UTC), for sorting."""
    parts = iso.split("-")
    if len(parts) < 3:
        iso = "-".join(parts + ["01"] * (3 - len(parts)))
    moment = datetime.fromisoformat(iso)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _listed(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("document_id", "type_code", "title", "creation_time", "origin", "has_stylesheet", "stylesheet_sha256")
    return {key: record.get(key, "") for key in keys}
