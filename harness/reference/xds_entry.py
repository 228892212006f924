"""The XDS metadata the practice gives its own CDA documents, whoever carries them.

The DMP feed (:mod:`harness.reference.dmp`) and the MSSanté XDM
(:mod:`harness.reference.mss`) describe the same document the same way (IHE ITI TF-3
§4.2, the DMP profile): one document entry read from the CDA header (type, dates,
legal authenticator, facility, practice setting, identifiers) plus the practice's class
and format codes, the same author slots, the same CX patient identifiers and the same
submission set. It is read once, here, so the two cannot drift apart; what only one of
them adds (the DMP's masking codes and defects, the XDM's ``URI`` slot) stays with it.
:mod:`harness.reference.xds_metadata` turns these values into ebRIM.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

from lxml import etree

from harness.reference.cda import HL7, ID_NAT_PS, ID_NAT_STRUCT, new_oid
from harness.reference.doctypes import Author, DmpCodes, DocumentCatalog, DocumentType, Practice
from harness.reference.xds_metadata import Code, DocumentEntry, SubmissionSet, XdsAuthor, new_uuid

PROFESSIONS = "1.2.250.1.213.1.1.4.5"
"""TRE_G15, the system of the author's role and specialty."""
N1_FORMAT_DISPLAY = "Document à corps non structuré en PDF"

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


# -- reading a CDA header ---------------------------------------------------------------------------
def hl7_path(path: str) -> str:
    """An ElementTree path (``a/b``) with each step in the HL7 v3 namespace."""
    return "/".join(f"{{{HL7}}}{step}" for step in path.split("/"))


def code_of(element: etree._Element | None) -> Code:
    """A CDA coded element (``code``, ``codeSystem``, ``displayName``), empty when absent."""
    if element is None:
        return Code("", "", "")
    return Code(element.get("code", ""), element.get("codeSystem", ""), element.get("displayName", ""))


def value_of(element: etree._Element | None) -> str:
    """The ``value`` attribute of a CDA element (a time stamp), "" when absent."""
    return "" if element is None else element.get("value", "")


def person_xcn(entity: etree._Element | None) -> str:
    """An XCN (``id^FAMILY^Given^^^^^^&OID&ISO``) for a CDA assignedEntity, "" when absent."""
    if entity is None:
        return ""
    identifier = entity.find(hl7_path("id"))
    if identifier is None:
        return ""
    family = entity.findtext(hl7_path("assignedPerson/name/family")) or ""
    given = entity.findtext(hl7_path("assignedPerson/name/given")) or ""
    return f"{identifier.get('extension', '')}^{family}^{given}^^^^^^&{identifier.get('root', '')}&ISO"


def xds_time(ts: str) -> str:
    """An HL7 TS as an XDS DTM: a time with its zone in UTC (``YYYYMMDDhhmmss``), a date as it is."""
    text = ts.strip()
    if len(text) <= 8 or text[-5] not in "+-":
        return text.split(".", 1)[0]
    digits, zone = text[:-5].split(".", 1)[0], text[-5:]
    offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])) * (1 if zone[0] == "+" else -1)
    padded = digits.ljust(14, "0")
    moment = datetime.strptime(padded, "%Y%m%d%H%M%S").replace(tzinfo=timezone(offset))
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S")[: len(digits)]


# -- the practice's identifiers -----------------------------------------------------------------------
def patient_cx(identifier: str, oid: str, kind: str) -> str:
    """A patient identifier as an XDS CX: ``id^^^&OID&ISO^<kind>`` (``NH`` for the INS, ``PI`` for the IPP)."""
    return f"{identifier}^^^&{oid}&ISO^{kind}"


def ipp_cx(patient_id: str, practice: Practice) -> str:
    """The practice's local identifier (IPP) of a patient as a CX (PI)."""
    return patient_cx(patient_id, practice.ipp_oid, "PI")


def practice_author(author: Author, practice: Practice) -> XdsAuthor:
    """The author slots of everything the practice submits: its physician, the practice, role and specialty."""
    return XdsAuthor(
        person=f"{author.id_nat_ps}^{author.family}^{author.given}^^^^^^&{ID_NAT_PS}&ISO",
        institution=f"{practice.name}^^^^^&{ID_NAT_STRUCT}&ISO^IDNST^^^{practice.id_nat_struct}",
        role=f"{author.profession_code}^{author.profession_display}^{PROFESSIONS}",
        specialty=f"{author.specialty_code}^{author.specialty_display}^{PROFESSIONS}",
    )


# -- entries and submission sets ------------------------------------------------------------------------
def default_format_code(kind: DocumentType, codes: DmpCodes) -> Code:
    """The formatCode of a type: the XDS-SD PDF one for N1, the type's own for a structured document."""
    if kind.structure == "N1":
        return Code(codes.n1_format_code, codes.n1_format_code_system, N1_FORMAT_DISPLAY)
    return Code(kind.format_code, kind.format_code_system, kind.title)


def document_entry(
    cda: bytes,
    kind: DocumentType,
    codes: DmpCodes,
    *,
    patient: str,
    source_patient: str,
    author: XdsAuthor,
    format_code: Code,
    masking: Sequence[Code] = (),
) -> DocumentEntry:
    """The entry of one of the practice's CDA documents, read from its header.

    ``patient`` and ``source_patient`` are CXs; ``format_code`` is usually
    :func:`default_format_code`; ``masking`` codes follow the CDA's confidentialityCode.
    """
    root = etree.fromstring(cda, _PARSER)
    event = root.find(hl7_path("documentationOf/serviceEvent/effectiveTime"))
    identifier = root.find(hl7_path("id"))
    assert identifier is not None
    extension = identifier.get("extension")
    return DocumentEntry(
        entry_uuid=new_uuid(),
        unique_id=f"{identifier.get('root')}^{extension}" if extension else str(identifier.get("root")),
        patient_cx=patient,
        source_patient_cx=source_patient,
        title=" ".join((root.findtext(hl7_path("title")) or "").split()),
        type_code=code_of(root.find(hl7_path("code"))),
        class_code=Code(kind.class_code, codes.class_code_system, kind.class_display),
        format_code=format_code,
        confidentiality=(code_of(root.find(hl7_path("confidentialityCode"))), *masking),
        facility_type=code_of(
            root.find(hl7_path("componentOf/encompassingEncounter/location/healthCareFacility/code"))
        ),
        practice_setting=code_of(
            root.find(
                hl7_path(
                    "documentationOf/serviceEvent/performer/assignedEntity/representedOrganization/"
                    "standardIndustryClassCode"
                )
            )
        ),
        author=author,
        legal_authenticator=person_xcn(root.find(hl7_path("legalAuthenticator/assignedEntity"))),
        creation_time=xds_time(value_of(root.find(hl7_path("effectiveTime")))),
        service_start=xds_time(value_of(event.find(hl7_path("low")) if event is not None else None)),
        service_stop=xds_time(value_of(event.find(hl7_path("high")) if event is not None else None)),
        hash=hashlib.sha1(cda).hexdigest(),
        size=len(cda),
    )


def submission_set(catalog: DocumentCatalog, patient: str, author: XdsAuthor, now: datetime) -> SubmissionSet:
    """A new submission set from the practice for the patient CX ``patient``, submitted ``now``."""
    codes = catalog.dmp
    return SubmissionSet(
        entry_uuid=new_uuid(),
        unique_id=new_oid(),
        source_id=catalog.practice.oid,
        patient_cx=patient,
        submission_time=now.astimezone(UTC).strftime("%Y%m%d%H%M%S"),
        content_type=Code(codes.content_type_code, codes.content_type_code_system, codes.content_type_display),
        author=author,
    )
