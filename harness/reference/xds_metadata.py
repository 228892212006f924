"""The ebRIM metadata of the practice's DMP submissions (IHE ITI TF-3 §4.2, the DMP profile).

Pure builders from records to lxml elements, no sockets: a submission set and its
document entries (classifications, external identifiers, slots), the associations
between them (``HasMember``, ``RPLC`` to a replaced entry), the ITI-41 request whose
documents are ``xop:Include`` references to MTOM parts, and the ITI-57 status change
that deletes an entry. The classification and identification scheme UUIDs are the
standard ones of ITI TF-3 §4.2.5. What goes into each field (read from the CDA, the
masking codes, the defects) is decided in :mod:`harness.reference.dmp`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from lxml import etree

from harness.reference.mtom import XOP

XDSB = "urn:ihe:iti:xds-b:2007"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
NSMAP = {"xdsb": XDSB, "lcm": LCM, "rim": RIM, "xop": XOP}

CLASSIFICATION = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification"
EXTERNAL_IDENTIFIER = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:ExternalIdentifier"
REGISTRY_PACKAGE = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:RegistryPackage"
ASSOCIATION = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Association"
STABLE_ENTRY = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
SUBMISSION_SET_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"

HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
REPLACES = "urn:ihe:iti:2007:AssociationType:RPLC"
UPDATE_AVAILABILITY_STATUS = "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus"
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DELETED = "urn:asip:ci-sis:2010:StatusType:Deleted"
"""The status a DMP deletion (TD3.3c) gives an entry (docs/dmp-wire.md: inferred)."""


class Scheme:
    """Classification and identification schemes (ITI TF-3 §4.2.5)."""

    ENTRY_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
    CLASS_CODE = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
    CONFIDENTIALITY_CODE = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
    FORMAT_CODE = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
    HEALTHCARE_FACILITY_TYPE_CODE = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
    PRACTICE_SETTING_CODE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
    TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
    ENTRY_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
    ENTRY_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
    SET_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
    SET_CONTENT_TYPE_CODE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
    SET_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
    SET_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
    SET_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"


@dataclass(frozen=True, slots=True)
class Code:
    """A coded metadata value: code, coding scheme (OID) and display name."""

    code: str
    system: str
    display: str


@dataclass(frozen=True, slots=True)
class XdsAuthor:
    """The author slots: XCN person, XON institution, role and specialty (``code^display^system``)."""

    person: str
    institution: str
    role: str
    specialty: str


@dataclass(frozen=True, slots=True)
class DocumentEntry:
    """One document entry (``rim:ExtrinsicObject``), every value already in its XDS form."""

    entry_uuid: str
    unique_id: str
    patient_cx: str
    source_patient_cx: str
    title: str
    type_code: Code
    class_code: Code
    format_code: Code
    confidentiality: tuple[Code, ...]
    facility_type: Code
    practice_setting: Code
    author: XdsAuthor
    legal_authenticator: str
    creation_time: str
    service_start: str
    service_stop: str
    hash: str
    size: int
    language: str = "fr-FR"
    mime_type: str = "text/xml"


@dataclass(frozen=True, slots=True)
class SubmissionSet:
    """The submission set (``rim:RegistryPackage``) wrapping the entries of one request."""

    entry_uuid: str
    unique_id: str
    source_id: str
    patient_cx: str
    submission_time: str
    content_type: Code
    author: XdsAuthor
    title: str = ""


def new_uuid() -> str:
    """A fresh ``urn:uuid:`` registry object id."""
    return f"urn:uuid:{uuid.uuid4()}"


# -- requests ---------------------------------------------------------------------------------------
def provide_and_register_request(
    submission: SubmissionSet, entries: list[tuple[DocumentEntry, str]], replaced: dict[str, str]
) -> etree._Element:
    """ITI-41: the metadata, then one ``xdsb:Document`` per entry holding an ``xop:Include`` of its part.

    ``entries`` pairs each entry with the ``cid:`` href of its MTOM part; ``replaced`` maps
    a new entry's UUID to the UUID of the entry it replaces (an RPLC association each).
    """
    request = etree.Element(f"{{{XDSB}}}ProvideAndRegisterDocumentSetRequest", nsmap=NSMAP)
    associations = [_association(HAS_MEMBER, submission.entry_uuid, e.entry_uuid, original=True) for e, _ in entries]
    associations += [_association(REPLACES, new, old) for new, old in replaced.items()]
    request.append(_submit_objects(submission, [e for e, _ in entries], associations))
    for entry, href in entries:
        document = etree.SubElement(request, f"{{{XDSB}}}Document", id=entry.entry_uuid)
        etree.SubElement(document, f"{{{XOP}}}Include", href=href)
    return request


def status_change_request(
    submission: SubmissionSet, target_uuid: str, new_status: str, original_status: str = APPROVED
) -> etree._Element:
    """ITI-57: a submission set and the UpdateAvailabilityStatus association moving an entry to ``new_status``."""
    association = _association(UPDATE_AVAILABILITY_STATUS, submission.entry_uuid, target_uuid)
    add_slot(association, "OriginalStatus", original_status)
    add_slot(association, "NewStatus", new_status)
    return _submit_objects(submission, [], [association], nsmap=NSMAP)


def _submit_objects(
    submission: SubmissionSet,
    entries: list[DocumentEntry],
    associations: list[etree._Element],
    nsmap: dict[str, str] | None = None,
) -> etree._Element:
    submit = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap=nsmap)
    objects = etree.SubElement(submit, f"{{{RIM}}}RegistryObjectList")
    objects.extend(_extrinsic_object(e) for e in entries)
    objects.append(_registry_package(submission))
    objects.append(
        _rim(
            "Classification",
            id=new_uuid(),
            objectType=CLASSIFICATION,
            classifiedObject=submission.entry_uuid,
            classificationNode=SUBMISSION_SET_NODE,
        )
    )
    objects.extend(associations)
    return submit


# -- registry objects -------------------------------------------------------------------------------
def _extrinsic_object(entry: DocumentEntry) -> etree._Element:
    obj = _rim(
        "ExtrinsicObject",
        id=entry.entry_uuid,
        lid=entry.entry_uuid,
        mimeType=entry.mime_type,
        objectType=STABLE_ENTRY,
        status=APPROVED,
    )
    for name, value in (
        ("creationTime", entry.creation_time),
        ("hash", entry.hash),
        ("languageCode", entry.language),
        ("legalAuthenticator", entry.legal_authenticator),
        ("serviceStartTime", entry.service_start),
        ("serviceStopTime", entry.service_stop),
        ("size", str(entry.size)),
        ("sourcePatientId", entry.source_patient_cx),
    ):
        if value:
            add_slot(obj, name, value)
    _name(obj, entry.title)
    obj.append(_author(Scheme.ENTRY_AUTHOR, entry.entry_uuid, entry.author))
    for scheme, code in (
        (Scheme.CLASS_CODE, entry.class_code),
        *((Scheme.CONFIDENTIALITY_CODE, c) for c in entry.confidentiality),
        (Scheme.FORMAT_CODE, entry.format_code),
        (Scheme.HEALTHCARE_FACILITY_TYPE_CODE, entry.facility_type),
        (Scheme.PRACTICE_SETTING_CODE, entry.practice_setting),
        (Scheme.TYPE_CODE, entry.type_code),
    ):
        obj.append(_coded(scheme, entry.entry_uuid, code))
    obj.append(_external_id(Scheme.ENTRY_PATIENT_ID, entry.entry_uuid, entry.patient_cx, "XDSDocumentEntry.patientId"))
    obj.append(_external_id(Scheme.ENTRY_UNIQUE_ID, entry.entry_uuid, entry.unique_id, "XDSDocumentEntry.uniqueId"))
    return obj


def _registry_package(submission: SubmissionSet) -> etree._Element:
    package = _rim("RegistryPackage", id=submission.entry_uuid, objectType=REGISTRY_PACKAGE)
    add_slot(package, "submissionTime", submission.submission_time)
    if submission.title:
        _name(package, submission.title)
    package.append(_author(Scheme.SET_AUTHOR, submission.entry_uuid, submission.author))
    package.append(_coded(Scheme.SET_CONTENT_TYPE_CODE, submission.entry_uuid, submission.content_type))
    for scheme, value, name in (
        (Scheme.SET_PATIENT_ID, submission.patient_cx, "XDSSubmissionSet.patientId"),
        (Scheme.SET_SOURCE_ID, submission.source_id, "XDSSubmissionSet.sourceId"),
        (Scheme.SET_UNIQUE_ID, submission.unique_id, "XDSSubmissionSet.uniqueId"),
    ):
        package.append(_external_id(scheme, submission.entry_uuid, value, name))
    return package


def _association(kind: str, source: str, target: str, original: bool = False) -> etree._Element:
    association = _rim(
        "Association",
        id=new_uuid(),
        objectType=ASSOCIATION,
        associationType=kind,
        sourceObject=source,
        targetObject=target,
    )
    if original:
        add_slot(association, "SubmissionSetStatus", "Original")
    return association


def _author(scheme: str, owner: str, author: XdsAuthor) -> etree._Element:
    classification = _rim(
        "Classification",
        id=new_uuid(),
        objectType=CLASSIFICATION,
        classificationScheme=scheme,
        classifiedObject=owner,
        nodeRepresentation="",
    )
    for name, value in (
        ("authorPerson", author.person),
        ("authorInstitution", author.institution),
        ("authorRole", author.role),
        ("authorSpecialty", author.specialty),
    ):
        if value:
            add_slot(classification, name, value)
    return classification


def _coded(scheme: str, owner: str, code: Code) -> etree._Element:
    classification = _rim(
        "Classification",
        id=new_uuid(),
        objectType=CLASSIFICATION,
        classificationScheme=scheme,
        classifiedObject=owner,
        nodeRepresentation=code.code,
    )
    add_slot(classification, "codingScheme", code.system)
    _name(classification, code.display)
    return classification


def _external_id(scheme: str, owner: str, value: str, name: str) -> etree._Element:
    identifier = _rim(
        "ExternalIdentifier",
        id=new_uuid(),
        objectType=EXTERNAL_IDENTIFIER,
        identificationScheme=scheme,
        registryObject=owner,
        value=value,
    )
    _name(identifier, name)
    return identifier


def add_slot(obj: etree._Element, name: str, value: str) -> None:
    """A slot with one value; slots come before Name, as the ebRIM schema orders them."""
    slot = etree.Element(f"{{{RIM}}}Slot", name=name)
    etree.SubElement(etree.SubElement(slot, f"{{{RIM}}}ValueList"), f"{{{RIM}}}Value").text = value
    position = next((i for i, child in enumerate(obj) if child.tag != f"{{{RIM}}}Slot"), len(obj))
    obj.insert(position, slot)


def _name(obj: etree._Element, text: str) -> None:
    name = etree.SubElement(obj, f"{{{RIM}}}Name")
    etree.SubElement(name, f"{{{RIM}}}LocalizedString", value=text)


def _rim(tag: str, **attributes: str) -> etree._Element:
    return etree.Element(f"{{{RIM}}}{tag}", attrib=attributes)
