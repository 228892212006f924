"""XDS metadata of a DMP feed, against the DMP rules and against the CDA it describes.

The DMP judges a submission (IHE ITI-41) by its ebRIM metadata: the submission set
and one document entry per document. Much of it must repeat what the CDA inside
already says (patient INS, type code, dates, author, confidentiality, facility), and
a mismatch is exactly the kind of defect that makes a document unfindable or
misfiled. This module checks each entry's metadata against the DMP profile
(``shared/docs/protocols.md`` §2.3) and **cross-checks** it with its CDA; it also
serves the MSSanté XDM ``METADATA.XML``, which carries the same ebRIM.

Value sets come from the JDV files of the CDA rules folder: J07 (typeCode), J08
(confidentialityCode), J02 (healthcareFacilityTypeCode), J04 (practiceSettingCode).
The DMP's own sets (J57 classCode, J60 formatCode, J66 typeCode) are not in the ANS
data we have; their checks say so (info) instead of silently passing.

Everything here is pure: an lxml element and bytes in, findings out.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from lxml import etree

from harness.findings import Finding, error, info, warning
from harness.validators.cda.parsing import parse_cda
from harness.validators.cda.valuesets import ValueSets
from harness.validators.ins import InsOid, check_matricule

SOURCE = "xds"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
HL7 = "urn:hl7-org:v3"

SUBMISSION_SET_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
STABLE_DOCUMENT_ENTRY = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"


class Scheme:
    """Classification and identification schemes of IHE ITI TF-3 §4.2.5."""

    CLASS_CODE = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
    CONFIDENTIALITY_CODE = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
    FORMAT_CODE = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
    HEALTHCARE_FACILITY_TYPE_CODE = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
    PRACTICE_SETTING_CODE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
    TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
    ENTRY_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
    ENTRY_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
    ENTRY_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
    SET_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
    SET_CONTENT_TYPE_CODE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
    SET_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
    SET_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
    SET_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"


LOINC = "2.16.840.1.113883.6.1"
CONFIDENTIALITY_SYSTEM = "2.16.840.1.113883.5.25"
MASKING_SYSTEM = "1.2.250.1.213.1.1.4.13"
MASKING_CODES = frozenset({"MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REPRESENTANTS_LEGAUX"})
N1_FORMAT_CODE = "urn:ihe:iti:xds-sd:pdf:2008"
RPPS_ID_ROOT = "1.2.250.1.71.4.2.1"
_CX = re.compile(r"^(?P<id>[^^]+)\^\^\^&(?P<oid>[0-9.]+)&ISO\^(?P<type>[A-Z]+)$")


@dataclass(frozen=True, slots=True)
class Coded:
    """A classification's code, coding scheme and display name."""

    code: str
    scheme: str
    display: str


@dataclass(frozen=True, slots=True)
class PatientCx:
    """An XDS patient identifier ``id^^^&oid&ISO^type``."""

    id: str
    oid: str
    type: str

    @classmethod
    def parse(cls, text: str) -> PatientCx | None:
        match = _CX.match(text.strip())
        return cls(match["id"], match["oid"], match["type"]) if match else None


# -- ebRIM accessors ------------------------------------------------------------------------------
def _rim(name: str) -> str:
    return f"{{{RIM}}}{name}"


def slot_values(obj: etree._Element, name: str) -> list[str]:
    """The values of the slot ``name`` of a registry object."""
    return [
        (v.text or "").strip()
        for s in obj.iterchildren(_rim("Slot"))
        if s.get("name") == name
        for v in s.iter(_rim("Value"))
    ]


def classifications(obj: etree._Element, scheme: str) -> list[etree._Element]:
    return [c for c in obj.iterchildren(_rim("Classification")) if c.get("classificationScheme") == scheme]


def coded(obj: etree._Element, scheme: str) -> list[Coded]:
    """The codes of a coded metadata attribute (classification with ``codingScheme`` slot)."""
    out = []
    for item in classifications(obj, scheme):
        systems = slot_values(item, "codingScheme")
        names = [(s.get("value") or "") for s in item.iter(_rim("LocalizedString"))]
        out.append(Coded(item.get("nodeRepresentation", ""), systems[0] if systems else "", names[0] if names else ""))
    return out


def external_id(obj: etree._Element, scheme: str) -> str:
    for item in obj.iterchildren(_rim("ExternalIdentifier")):
        if item.get("identificationScheme") == scheme:
            return item.get("value", "")
    return ""


def document_entries(request: etree._Element) -> list[etree._Element]:
    return list(request.iter(_rim("ExtrinsicObject")))


def submission_set(request: etree._Element) -> etree._Element | None:
    for package in request.iter(_rim("RegistryPackage")):
        if any(
            c.get("classificationNode") == SUBMISSION_SET_NODE for c in package.iterchildren(_rim("Classification"))
        ):
            return package
    for item in request.iter(_rim("Classification")):
        if item.get("classificationNode") == SUBMISSION_SET_NODE:
            target = item.get("classifiedObject")
            for package in request.iter(_rim("RegistryPackage")):
                if package.get("id") == target:
                    return package
    return None


def entry_confidentiality(entry: etree._Element) -> list[Coded]:
    return coded(entry, Scheme.CONFIDENTIALITY_CODE)


def masking_codes(entry: etree._Element) -> set[str]:
    """The DMP masking / visibility codes an entry carries."""
    return {c.code for c in entry_confidentiality(entry) if c.scheme == MASKING_SYSTEM and c.code in MASKING_CODES}


# -- the checks -----------------------------------------------------------------------------------
def check_submission(
    request: etree._Element,
    documents: Mapping[str, bytes],
    value_sets: ValueSets | None = None,
    expected_ins: tuple[str, str] | None = None,
) -> list[Finding]:
    """Every finding about one submission (an element holding the ``rim:RegistryObjectList``).

    ``documents`` maps entry ids to the bytes received; ``expected_ins`` is the patient's
    qualified INS ``(matricule, oid)`` as the scenario knows it.
    """
    findings: list[Finding] = []
    package = submission_set(request)
    entries = document_entries(request)
    if package is None:
        findings.append(error("xds.submission-set.missing", "the submission has no submission set", source=SOURCE))
    if not entries:
        findings.append(error("xds.entry.missing", "the submission has no document entry", source=SOURCE))
    set_patient = external_id(package, Scheme.SET_PATIENT_ID) if package is not None else ""
    if package is not None:
        findings.extend(_check_submission_set(package))
    for entry in entries:
        where = f"ExtrinsicObject[@id='{entry.get('id', '')}']"
        entry_patient = external_id(entry, Scheme.ENTRY_PATIENT_ID)
        if set_patient and entry_patient != set_patient:
            findings.append(
                error(
                    "xds.patient-id.mismatch",
                    f"the entry's patientId {entry_patient!r} differs from the submission set's {set_patient!r}",
                    where,
                    SOURCE,
                )
            )
        findings.extend(check_entry(entry, documents.get(entry.get("id", "")), value_sets, expected_ins))
    return findings


def _check_submission_set(package: etree._Element) -> list[Finding]:
    findings = []
    where = "RegistryPackage (submission set)"
    for scheme, name in (
        (Scheme.SET_PATIENT_ID, "patientId"),
        (Scheme.SET_SOURCE_ID, "sourceId"),
        (Scheme.SET_UNIQUE_ID, "uniqueId"),
    ):
        if not external_id(package, scheme):
            findings.append(error(f"xds.submission-set.{name}", f"the submission set has no {name}", where, SOURCE))
    if not slot_values(package, "submissionTime"):
        findings.append(
            error("xds.submission-set.submissionTime", "the submission set has no submissionTime", where, SOURCE)
        )
    if not coded(package, Scheme.SET_CONTENT_TYPE_CODE):
        findings.append(
            error("xds.submission-set.contentTypeCode", "the submission set has no contentTypeCode", where, SOURCE)
        )
    authors = classifications(package, Scheme.SET_AUTHOR)
    if not authors or not any(slot_values(a, "authorPerson") for a in authors):
        findings.append(error("xds.submission-set.author", "the submission set has no authorPerson", where, SOURCE))
    return findings


def check_entry(
    entry: etree._Element,
    document: bytes | None,
    value_sets: ValueSets | None = None,
    expected_ins: tuple[str, str] | None = None,
) -> list[Finding]:
    """The DMP rules for one document entry, then the cross-checks with its CDA."""
    findings: list[Finding] = []
    where = f"ExtrinsicObject[@id='{entry.get('id', '')}']"

    def need(rule: str, ok: bool, message: str, severity: str = "error") -> None:
        if not ok:
            make = error if severity == "error" else warning
            findings.append(make(rule, message, where, SOURCE))

    patient = PatientCx.parse(external_id(entry, Scheme.ENTRY_PATIENT_ID))
    need("xds.patient-id.format", patient is not None, "patientId must be matricule^^^&INS OID&ISO^NH")
    if patient is not None:
        ins_oids = {o.value for o in InsOid}
        need("xds.patient-id.oid", patient.oid in ins_oids, f"patientId's authority {patient.oid} is not an INS OID")
        need("xds.patient-id.type", patient.type == "NH", f"patientId's identifier type is {patient.type}, not NH")
        findings.extend(
            Finding(f.severity, "xds.patient-id." + f.rule.rsplit(".", 1)[-1], f.message, where, SOURCE)
            for f in check_matricule(patient.id, patient.oid)
            if f.severity.value == "error" and f.rule.startswith("ins.matricule")
        )
        if expected_ins is not None:
            need(
                "xds.patient-id.ins",
                (patient.id, patient.oid) == expected_ins,
                f"patientId must be the patient's qualified INS {expected_ins[0]} ({expected_ins[1]}); "
                f"got {patient.id} ({patient.oid})",
            )
    need("xds.mime-type", entry.get("mimeType") in ("text/xml", "application/xml"), "mimeType must be text/xml")
    type_codes = coded(entry, Scheme.TYPE_CODE)
    need("xds.type-code", len(type_codes) == 1, "exactly one typeCode is required")
    for code in type_codes:
        need("xds.type-code.loinc", code.scheme == LOINC, f"typeCode {code.code} must be LOINC ({LOINC})")
        _in_jdv(findings, value_sets, "JDV_J07_XdsTypeCode_CISIS", code, "xds.type-code.jdv", where)
    need("xds.class-code", len(coded(entry, Scheme.CLASS_CODE)) == 1, "exactly one classCode is required")
    formats = coded(entry, Scheme.FORMAT_CODE)
    need("xds.format-code", len(formats) == 1, "exactly one formatCode is required")
    confidentiality = entry_confidentiality(entry)
    base = [c for c in confidentiality if c.scheme == CONFIDENTIALITY_SYSTEM]
    need(
        "xds.confidentiality.base",
        len(base) == 1 and base[0].code in ("N", "R", "V"),
        f"one confidentialityCode N, R or V ({CONFIDENTIALITY_SYSTEM}) is required; got {[c.code for c in base]}",
    )
    others = [c for c in confidentiality if c.scheme != CONFIDENTIALITY_SYSTEM]
    for code in others:
        need(
            "xds.confidentiality.masking",
            code.scheme == MASKING_SYSTEM and code.code in MASKING_CODES,
            f"confidentialityCode {code.code} ({code.scheme}) is neither N/R/V nor a DMP masking code",
        )
    facility = coded(entry, Scheme.HEALTHCARE_FACILITY_TYPE_CODE)
    need("xds.facility-type", len(facility) == 1, "exactly one healthcareFacilityTypeCode is required")
    for code in facility:
        _in_jdv(
            findings, value_sets, "JDV_J02_XdsHealthcareFacilityTypeCode_CISIS", code, "xds.facility-type.jdv", where
        )
    setting = coded(entry, Scheme.PRACTICE_SETTING_CODE)
    need("xds.practice-setting", len(setting) == 1, "exactly one practiceSettingCode is required")
    for code in setting:
        _in_jdv(findings, value_sets, "JDV_J04_XdsPracticeSettingCode_CISIS", code, "xds.practice-setting.jdv", where)
    persons = [p for a in classifications(entry, Scheme.ENTRY_AUTHOR) for p in slot_values(a, "authorPerson")]
    need("xds.author", bool(persons), "the entry must name its authorPerson")
    for person in persons:
        need(
            "xds.author.rpps",
            f"&{RPPS_ID_ROOT}&ISO" in person and person.startswith("8"),
            f"authorPerson {person!r} should be identified by its IdNat_PS (8 + RPPS, {RPPS_ID_ROOT})",
            "warning",
        )
    for name in ("creationTime", "serviceStartTime"):
        values = slot_values(entry, name)
        need(f"xds.{name}", len(values) == 1 and _dtm(values[0]) is not None, f"{name} must be one XDS DTM")
    need("xds.unique-id", bool(external_id(entry, Scheme.ENTRY_UNIQUE_ID)), "the entry has no uniqueId")
    if document is None:
        findings.append(error("xds.document.missing", "no document was received for this entry", where, SOURCE))
        return findings
    _check_hash_and_size(findings, entry, document, where)
    findings.extend(cross_check(entry, document))
    if value_sets is not None and value_sets.get("JDV_J66") is None:
        findings.append(
            info(
                "xds.jdv.dmp-sets-absent",
                "JDV_J57 (classCode), J60 (formatCode) and J66 (DMP typeCode) are not in the rules folder; "
                "those codes are checked for presence and against the CDA only",
                where,
                SOURCE,
            )
        )
    return findings


def _in_jdv(
    findings: list[Finding], value_sets: ValueSets | None, name: str, code: Coded, rule: str, where: str
) -> None:
    if value_sets is None:
        return
    value_set = value_sets.get(name)
    if value_set is None:
        findings.append(info(f"{rule}-unavailable", f"{name} is not in the rules folder", where, SOURCE))
    elif not value_set.contains(code.code, code.scheme):
        findings.append(error(rule, f"{code.code} ({code.scheme}) is not in {name}", where, SOURCE))


def _check_hash_and_size(findings: list[Finding], entry: etree._Element, document: bytes, where: str) -> None:
    hashes, sizes = slot_values(entry, "hash"), slot_values(entry, "size")
    if hashes and hashes[0].lower() != hashlib.sha1(document).hexdigest():
        findings.append(error("xds.hash", "the hash slot is not the SHA-1 of the document received", where, SOURCE))
    if sizes and sizes[0] != str(len(document)):
        findings.append(
            error("xds.size", f"the size slot says {sizes[0]}, the document has {len(document)} bytes", where, SOURCE)
        )


# -- metadata against the CDA -------------------------------------------------------------------
def cross_check(entry: etree._Element, document: bytes) -> list[Finding]:
    """The metadata must say what the CDA says: patient, type, dates, author, codes, identity of the document."""
    where = f"ExtrinsicObject[@id='{entry.get('id', '')}']"
    parsed, problems = parse_cda(document)
    if parsed is None:
        return [
            error("xds.cda.unreadable", f"the document is not a readable CDA: {problems[0].message}", where, SOURCE)
        ]
    cda = parsed.document
    findings: list[Finding] = []

    def same(rule: str, metadata: str, in_cda: str, what: str) -> None:
        if metadata != in_cda:
            findings.append(error(rule, f"{what}: the metadata say {metadata!r}, the CDA {in_cda!r}", where, SOURCE))

    patient = PatientCx.parse(external_id(entry, Scheme.ENTRY_PATIENT_ID))
    ids = [(e.get("extension", ""), e.get("root", "")) for e in cda.iterfind(_h("recordTarget/patientRole/id"))]
    if patient is not None and (patient.id, patient.oid) not in ids:
        findings.append(
            error(
                "xds.cda.patient",
                f"patientId {patient.id} ({patient.oid}) is not an id of the CDA's recordTarget {ids}",
                where,
                SOURCE,
            )
        )
    code = cda.find(_h("code"))
    for type_code in coded(entry, Scheme.TYPE_CODE)[:1]:
        same("xds.cda.type-code", type_code.code, code.get("code", "") if code is not None else "", "typeCode")
    document_id = cda.find(_h("id"))
    if document_id is not None:
        wanted = document_id.get("root", "") + (
            f"^{document_id.get('extension')}" if document_id.get("extension") else ""
        )
        same("xds.cda.unique-id", external_id(entry, Scheme.ENTRY_UNIQUE_ID), wanted, "uniqueId")
    effective = cda.find(_h("effectiveTime"))
    _same_instant(
        findings, "xds.cda.creation-time", slot_values(entry, "creationTime"), effective, "creationTime", where
    )
    low = cda.find(_h("documentationOf/serviceEvent/effectiveTime/low"))
    _same_instant(
        findings, "xds.cda.service-start", slot_values(entry, "serviceStartTime"), low, "serviceStartTime", where
    )
    confidentiality = cda.find(_h("confidentialityCode"))
    base = [c.code for c in entry_confidentiality(entry) if c.scheme == CONFIDENTIALITY_SYSTEM]
    if confidentiality is not None and base:
        same("xds.cda.confidentiality", base[0], confidentiality.get("code", ""), "confidentialityCode")
    facility = cda.find(_h("componentOf/encompassingEncounter/location/healthCareFacility/code"))
    for item in coded(entry, Scheme.HEALTHCARE_FACILITY_TYPE_CODE)[:1]:
        same("xds.cda.facility-type", item.code, facility.get("code", "") if facility is not None else "", "facility")
    industry = cda.find(
        _h("documentationOf/serviceEvent/performer/assignedEntity/representedOrganization/standardIndustryClassCode")
    )
    for item in coded(entry, Scheme.PRACTICE_SETTING_CODE)[:1]:
        if industry is not None:
            same("xds.cda.practice-setting", item.code, industry.get("code", ""), "practiceSettingCode")
    author_ids = {e.get("extension", "") for e in cda.iterfind(_h("author/assignedAuthor/id"))}
    persons = [p for a in classifications(entry, Scheme.ENTRY_AUTHOR) for p in slot_values(a, "authorPerson")]
    if persons and author_ids and not any(p.split("^", 1)[0] in author_ids for p in persons):
        findings.append(
            error(
                "xds.cda.author",
                f"authorPerson {persons} names none of the CDA's authors {sorted(author_ids)}",
                where,
                SOURCE,
            )
        )
    if cda.find(_h("component/nonXMLBody")) is not None:
        for item in coded(entry, Scheme.FORMAT_CODE)[:1]:
            same(
                "xds.format-code.n1",
                item.code,
                N1_FORMAT_CODE,
                "formatCode of a level-1 (structuration minimale) document",
            )
    return findings


def _h(path: str) -> str:
    return "/".join(f"{{{HL7}}}{step}" for step in path.split("/"))


_DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?$")
_HL7_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?(?P<tz>[+-]\d{4})?$")


def _dtm(text: str) -> tuple[datetime, int] | None:
    """An XDS DTM (UTC, YYYY[MM[DD[hh[mm[ss]]]]]) as an instant and its precision (number of fields)."""
    match = _DTM.match(text.strip())
    if not match:
        return None
    return _instant(match.groups(), UTC)


def _cda_time(text: str) -> tuple[datetime, int] | None:
    match = _HL7_TS.match(text.strip())
    if not match:
        return None
    zone = UTC
    if match["tz"]:
        sign = 1 if match["tz"][0] == "+" else -1
        zone = timezone(sign * timedelta(hours=int(match["tz"][1:3]), minutes=int(match["tz"][3:5])))
    return _instant(match.groups()[:6], zone)


def _instant(parts: tuple[str | None, ...], zone: timezone) -> tuple[datetime, int] | None:
    fields = [int(p) for p in parts if p]
    precision = len(fields)
    v = fields + [1, 1, 0, 0, 0][precision - 1 :] if precision < 6 else fields
    try:
        moment = datetime(v[0], v[1], v[2], v[3], v[4], v[5], tzinfo=zone)
    except (ValueError, IndexError):
        return None
    return moment.astimezone(UTC), precision


def _same_instant(
    findings: list[Finding], rule: str, values: list[str], element: etree._Element | None, what: str, where: str
) -> None:
    if not values or element is None or not element.get("value"):
        return
    metadata, in_cda = _dtm(values[0]), _cda_time(element.get("value", ""))
    if metadata is None or in_cda is None:
        return
    precision = min(metadata[1], in_cda[1])
    formats = ["%Y", "%Y%m", "%Y%m%d", "%Y%m%d%H", "%Y%m%d%H%M", "%Y%m%d%H%M%S"]
    fmt = formats[precision - 1]
    if precision <= 3:
        # a date alone is a local day: compare the CDA's local date, not its UTC instant
        local = _HL7_TS.match(element.get("value", ""))
        in_cda_text = "".join(g or "" for g in local.groups()[:precision]) if local else ""
        metadata_text = values[0][: len(in_cda_text)]
        same = metadata_text == in_cda_text
    else:
        same = metadata[0].strftime(fmt) == in_cda[0].strftime(fmt)
    if not same:
        findings.append(
            error(
                rule,
                f"{what}: the metadata say {values[0]} (UTC), the CDA {element.get('value')}",
                where,
                SOURCE,
            )
        )
