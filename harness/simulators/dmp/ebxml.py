"""ebXML RegRep 3.0 / IHE XDS.b metadata as the DMP simulator reads it: namespaces, UUIDs, typed objects.

A submission arrives as a ``lcm:SubmitObjectsRequest``; scenarios and validators want to
ask "what is the entry's patientId, its confidentiality codes, its hash" without writing
XPath, and the evidence must still show exactly what was sent. So every registry object
is parsed into a dataclass that keeps *everything* (each slot, classification and
external identifier, in order) plus the raw element it came from.

The UUIDs are the standard ones of IHE ITI TF-3 §4.2.5 (``docs/dmp-wire.md``); the
deletion and archiving statuses are the contract's inferred DMP values.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
XDSB = "urn:ihe:iti:xds-b:2007"
XOP = "http://www.w3.org/2004/08/xop/include"
HL7 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"

# -- object types and classification nodes -------------------------------------------------------
SUBMISSION_SET_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
FOLDER_NODE = "urn:uuid:d9d542f3-6cc4-48b6-8870-ea235fbc94c2"
STABLE_ENTRY = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
ON_DEMAND_ENTRY = "urn:uuid:34268e47-fdf5-41a6-ba33-82133c465248"
REGISTRY_PACKAGE_TYPE = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:RegistryPackage"
ASSOCIATION_TYPE = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Association"

# -- DocumentEntry classification schemes and identifiers ----------------------------------------
DE_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
CLASS_CODE = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
CONFIDENTIALITY_CODE = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
EVENT_CODE = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
FORMAT_CODE = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
HEALTHCARE_FACILITY_TYPE_CODE = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
PRACTICE_SETTING_CODE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DE_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"

# -- SubmissionSet classification schemes and identifiers ----------------------------------------
SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
CONTENT_TYPE_CODE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SS_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"

# -- associations --------------------------------------------------------------------------------
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"
XFRM = "urn:ihe:iti:2007:AssociationType:XFRM"
APND = "urn:ihe:iti:2007:AssociationType:APND"
XFRM_RPLC = "urn:ihe:iti:2007:AssociationType:XFRM_RPLC"
SIGNS = "urn:ihe:iti:2007:AssociationType:signs"
UPDATE_AVAILABILITY_STATUS = "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus"

# -- stored queries (ITI-18) ---------------------------------------------------------------------
FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
FIND_SUBMISSION_SETS = "urn:uuid:f26abbcb-ac74-4422-8a30-edb644bbc1a9"
GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
GET_ASSOCIATIONS = "urn:uuid:a7ae438b-4bc2-4642-93e9-be891f7bb155"
GET_DOCUMENTS_AND_ASSOCIATIONS = "urn:uuid:bab9529a-4a10-40b3-a01f-f68a615d247a"
STORED_QUERIES = {
    FIND_DOCUMENTS: "FindDocuments",
    FIND_SUBMISSION_SETS: "FindSubmissionSets",
    GET_DOCUMENTS: "GetDocuments",
    GET_ASSOCIATIONS: "GetAssociations",
    GET_DOCUMENTS_AND_ASSOCIATIONS: "GetDocumentsAndAssociations",
}

# -- response statuses and severities ------------------------------------------------------------
RESPONSE_STATUS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:"
SEVERITY_ERROR = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"
SEVERITY_WARNING = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Warning"

CONFIDENTIALITY_HL7 = "2.16.840.1.113883.5.25"
"""Code system of the CDA confidentiality codes ``N``/``R``/``V``."""
MASKING_SYSTEM = "1.2.250.1.213.1.1.4.13"
"""Code system of the DMP masking codes ``MASQUE_PS``, ``INVISIBLE_PATIENT``, ``INVISIBLE_REPRESENTANTS_LEGAUX``."""


class AvailabilityStatus(enum.StrEnum):
    """Status of a registry object. Deleted and Archived are the contract's inferred DMP values."""

    APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
    DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
    DELETED = "urn:asip:ci-sis:2010:StatusType:Deleted"
    ARCHIVED = "urn:asip:ci-sis:2010:StatusType:Archived"

    @classmethod
    def read(cls, value: str) -> AvailabilityStatus | None:
        """The status named by ``value``; the ebXML spelling of Archived/Deleted is accepted too."""
        value = value.strip()
        for status in cls:
            if value == status.value:
                return status
        tail = value.rsplit(":", 1)[-1]
        if value.startswith("urn:oasis:names:tc:ebxml-regrep:StatusType:") and tail in ("Archived", "Deleted"):
            return cls.ARCHIVED if tail == "Archived" else cls.DELETED
        return None

    @property
    def short(self) -> str:
        return self.value.rsplit(":", 1)[-1]


class ResponseStatus(enum.StrEnum):
    """``rs:RegistryResponse/@status``, by its short name."""

    SUCCESS = "Success"
    FAILURE = "Failure"
    PARTIAL_SUCCESS = "PartialSuccess"

    @property
    def urn(self) -> str:
        return RESPONSE_STATUS + self.value


class MetadataError(Exception):
    """A SubmitObjectsRequest the registry cannot store (``XDSRepositoryMetadataError``)."""

    def __init__(self, message: str, location: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.location = location


# -- the objects -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Code:
    """A coded value as XDS carries it: ``nodeRepresentation``, ``codingScheme`` slot, ``Name``."""

    code: str
    scheme: str = ""
    display: str = ""


@dataclass(slots=True, kw_only=True)
class Classification:
    """One ``rim:Classification``: a code (external scheme) or a node (internal, e.g. submission set)."""

    id: str
    scheme: str
    classified_object: str
    node_representation: str = ""
    node: str = ""
    name: str = ""
    slots: dict[str, list[str]] = field(default_factory=dict)
    element: etree._Element | None = None

    @property
    def code(self) -> Code:
        coding = self.slots.get("codingScheme", [])
        return Code(self.node_representation, coding[0] if coding else "", self.name)


@dataclass(slots=True, kw_only=True)
class ExternalIdentifier:
    """One ``rim:ExternalIdentifier`` (patientId, uniqueId, sourceId)."""

    id: str
    scheme: str
    registry_object: str
    value: str
    name: str = ""


@dataclass(slots=True, kw_only=True)
class Author:
    """An ``author`` classification's slots."""

    person: str = ""
    institutions: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    specialties: list[str] = field(default_factory=list)
    telecommunications: list[str] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class RegistryObject:
    """What every ebRIM object carries; ``element`` is the raw element as received."""

    id: str
    lid: str = ""
    object_type: str = ""
    status: str = ""
    home: str = ""
    name: str = ""
    description: str = ""
    version_name: str = ""
    slots: dict[str, list[str]] = field(default_factory=dict)
    classifications: list[Classification] = field(default_factory=list)
    external_identifiers: list[ExternalIdentifier] = field(default_factory=list)
    element: etree._Element | None = None

    def slot(self, name: str) -> list[str]:
        """Every value of slot ``name`` (empty when absent)."""
        return list(self.slots.get(name, []))

    def first(self, name: str) -> str:
        """The first value of slot ``name``, or ``""``."""
        values = self.slots.get(name, [])
        return values[0] if values else ""

    def classified(self, scheme: str) -> list[Classification]:
        return [c for c in self.classifications if c.scheme == scheme]

    def codes(self, scheme: str) -> list[Code]:
        return [c.code for c in self.classified(scheme)]

    def code(self, scheme: str) -> Code | None:
        found = self.codes(scheme)
        return found[0] if found else None

    def external(self, scheme: str) -> str:
        for identifier in self.external_identifiers:
            if identifier.scheme == scheme:
                return identifier.value
        return ""

    def authors(self, scheme: str) -> list[Author]:
        return [
            Author(
                person=(c.slots.get("authorPerson") or [""])[0],
                institutions=list(c.slots.get("authorInstitution", [])),
                roles=list(c.slots.get("authorRole", [])),
                specialties=list(c.slots.get("authorSpecialty", [])),
                telecommunications=list(c.slots.get("authorTelecommunication", [])),
            )
            for c in self.classified(scheme)
        ]


@dataclass(slots=True, kw_only=True)
class DocumentEntry(RegistryObject):
    """An ``rim:ExtrinsicObject``: one document's metadata."""

    mime_type: str = ""

    @property
    def patient_id(self) -> str:
        return self.external(DE_PATIENT_ID)

    @property
    def unique_id(self) -> str:
        return self.external(DE_UNIQUE_ID)

    @property
    def hash(self) -> str:
        return self.first("hash")

    @property
    def size(self) -> int | None:
        text = self.first("size").strip()
        return int(text) if text.isdigit() else None

    @property
    def creation_time(self) -> str:
        return self.first("creationTime")

    @property
    def service_start_time(self) -> str:
        return self.first("serviceStartTime")

    @property
    def service_stop_time(self) -> str:
        return self.first("serviceStopTime")

    @property
    def language_code(self) -> str:
        return self.first("languageCode")

    @property
    def source_patient_id(self) -> str:
        return self.first("sourcePatientId")

    @property
    def class_code(self) -> Code | None:
        return self.code(CLASS_CODE)

    @property
    def type_code(self) -> Code | None:
        return self.code(TYPE_CODE)

    @property
    def format_code(self) -> Code | None:
        return self.code(FORMAT_CODE)

    @property
    def healthcare_facility_type_code(self) -> Code | None:
        return self.code(HEALTHCARE_FACILITY_TYPE_CODE)

    @property
    def practice_setting_code(self) -> Code | None:
        return self.code(PRACTICE_SETTING_CODE)

    @property
    def confidentiality_codes(self) -> list[Code]:
        return self.codes(CONFIDENTIALITY_CODE)

    @property
    def event_codes(self) -> list[Code]:
        return self.codes(EVENT_CODE)

    @property
    def entry_authors(self) -> list[Author]:
        return self.authors(DE_AUTHOR)


@dataclass(slots=True, kw_only=True)
class SubmissionSet(RegistryObject):
    """The ``rim:RegistryPackage`` classified as a submission set."""

    @property
    def patient_id(self) -> str:
        return self.external(SS_PATIENT_ID)

    @property
    def unique_id(self) -> str:
        return self.external(SS_UNIQUE_ID)

    @property
    def source_id(self) -> str:
        return self.external(SS_SOURCE_ID)

    @property
    def submission_time(self) -> str:
        return self.first("submissionTime")

    @property
    def content_type_code(self) -> Code | None:
        return self.code(CONTENT_TYPE_CODE)

    @property
    def set_authors(self) -> list[Author]:
        return self.authors(SS_AUTHOR)


@dataclass(slots=True, kw_only=True)
class Association:
    """One ``rim:Association`` (HasMember, RPLC, UpdateAvailabilityStatus...)."""

    id: str
    type: str
    source: str
    target: str
    status: str = ""
    slots: dict[str, list[str]] = field(default_factory=dict)
    element: etree._Element | None = None

    def first(self, name: str) -> str:
        values = self.slots.get(name, [])
        return values[0] if values else ""


@dataclass(slots=True, kw_only=True)
class SubmitObjects:
    """A parsed ``lcm:SubmitObjectsRequest``: the submission set, entries and associations, in order."""

    submission_set: SubmissionSet | None
    entries: list[DocumentEntry] = field(default_factory=list)
    associations: list[Association] = field(default_factory=list)
    folders: list[RegistryObject] = field(default_factory=list)
    element: etree._Element | None = None

    def entry(self, entry_id: str) -> DocumentEntry | None:
        return next((e for e in self.entries if e.id == entry_id), None)


# -- parsing -------------------------------------------------------------------------------------


def _q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


def _children(parent: etree._Element, namespace: str, name: str) -> list[etree._Element]:
    return [c for c in parent if isinstance(c.tag, str) and c.tag == _q(namespace, name)]


def read_slots(element: etree._Element) -> dict[str, list[str]]:
    """The ``rim:Slot`` children of ``element``: name → values in order (a repeated slot adds values)."""
    slots: dict[str, list[str]] = {}
    for slot in _children(element, RIM, "Slot"):
        values = slots.setdefault(slot.get("name", ""), [])
        for value_list in _children(slot, RIM, "ValueList"):
            values.extend((v.text or "").strip() for v in _children(value_list, RIM, "Value"))
    return slots


def localized(element: etree._Element, name: str) -> str:
    """The first ``LocalizedString/@value`` under ``rim:Name`` or ``rim:Description``."""
    holder = element.find(_q(RIM, name))
    if holder is None:
        return ""
    string = holder.find(_q(RIM, "LocalizedString"))
    return (string.get("value", "") if string is not None else "").strip()


def read_classification(element: etree._Element, default_object: str = "") -> Classification:
    return Classification(
        id=element.get("id", ""),
        scheme=element.get("classificationScheme", ""),
        classified_object=element.get("classifiedObject", default_object),
        node_representation=element.get("nodeRepresentation", ""),
        node=element.get("classificationNode", ""),
        name=localized(element, "Name"),
        slots=read_slots(element),
        element=element,
    )


def _common(element: etree._Element) -> dict[str, Any]:
    object_id = element.get("id", "").strip()
    version = element.find(_q(RIM, "VersionInfo"))
    return {
        "id": object_id,
        "lid": element.get("lid", "").strip(),
        "object_type": element.get("objectType", ""),
        "status": element.get("status", ""),
        "home": element.get("home", ""),
        "name": localized(element, "Name"),
        "description": localized(element, "Description"),
        "version_name": version.get("versionName", "") if version is not None else "",
        "slots": read_slots(element),
        "classifications": [read_classification(c, object_id) for c in _children(element, RIM, "Classification")],
        "external_identifiers": [
            ExternalIdentifier(
                id=e.get("id", ""),
                scheme=e.get("identificationScheme", ""),
                registry_object=e.get("registryObject", object_id),
                value=e.get("value", "").strip(),
                name=localized(e, "Name"),
            )
            for e in _children(element, RIM, "ExternalIdentifier")
        ],
        "element": element,
    }


def read_association(element: etree._Element) -> Association:
    return Association(
        id=element.get("id", "").strip(),
        type=element.get("associationType", "").strip(),
        source=element.get("sourceObject", "").strip(),
        target=element.get("targetObject", "").strip(),
        status=element.get("status", ""),
        slots=read_slots(element),
        element=element,
    )


def read_entry(element: etree._Element) -> DocumentEntry:
    common = _common(element)
    return DocumentEntry(mime_type=element.get("mimeType", ""), **common)


def parse_submit_objects(request: etree._Element) -> SubmitObjects:
    """Read a ``lcm:SubmitObjectsRequest`` (or its ``rim:RegistryObjectList``).

    Top-level ``rim:Classification`` elements are attached to the object they classify,
    so a submission set classified either way is recognised.

    Raises:
        MetadataError: no ``RegistryObjectList``, an object without ``id``, no submission
            set or more than one, an ``ExtrinsicObject`` of an unknown ``objectType``.
    """
    if etree.QName(request).localname == "RegistryObjectList":
        objects: etree._Element | None = request
    else:
        objects = request.find(_q(RIM, "RegistryObjectList"))
    if objects is None:
        raise MetadataError("SubmitObjectsRequest sans rim:RegistryObjectList", "lcm:SubmitObjectsRequest")
    loose = [read_classification(c) for c in _children(objects, RIM, "Classification")]
    entries: list[DocumentEntry] = []
    packages: list[RegistryObject] = []
    associations: list[Association] = []
    for child in objects:
        if not isinstance(child.tag, str):
            continue
        local = etree.QName(child).localname
        if local in ("ExtrinsicObject", "RegistryPackage", "Association") and not child.get("id", "").strip():
            raise MetadataError(f"rim:{local} sans attribut id", f"rim:{local}")
        if local == "ExtrinsicObject":
            entry = read_entry(child)
            if entry.object_type not in (STABLE_ENTRY, ON_DEMAND_ENTRY):
                raise MetadataError(f"ExtrinsicObject {entry.id}: objectType {entry.object_type!r} inconnu", entry.id)
            entries.append(entry)
        elif local == "RegistryPackage":
            packages.append(RegistryObject(**_common(child)))
        elif local == "Association":
            associations.append(read_association(child))
    for classification in loose:
        for target in [*entries, *packages]:
            if target.id == classification.classified_object:
                target.classifications.append(classification)
    sets = [p for p in packages if any(c.node == SUBMISSION_SET_NODE for c in p.classifications)]
    folders = [p for p in packages if any(c.node == FOLDER_NODE for c in p.classifications)]
    if not sets:
        raise MetadataError("aucun lot de soumission (RegistryPackage classé XDSSubmissionSet)", "rim:RegistryPackage")
    if len(sets) > 1:
        raise MetadataError(f"{len(sets)} lots de soumission dans la même requête", "rim:RegistryPackage")
    package = sets[0]
    submission_set = SubmissionSet(
        id=package.id,
        lid=package.lid,
        object_type=package.object_type,
        status=package.status,
        home=package.home,
        name=package.name,
        description=package.description,
        version_name=package.version_name,
        slots=package.slots,
        classifications=package.classifications,
        external_identifiers=package.external_identifiers,
        element=package.element,
    )
    return SubmitObjects(
        submission_set=submission_set,
        entries=entries,
        associations=associations,
        folders=folders,
        element=request,
    )


def is_uuid(value: str) -> bool:
    """True for ``urn:uuid:`` identifiers (others are symbolic, to be replaced by the registry)."""
    return value.startswith("urn:uuid:") and len(value) == 45


def patient_cx(matricule: str, oid: str) -> str:
    """The HL7 CX form XDS and the VIHF use for an INS: ``<matricule>^^^&<oid>&ISO^NH``."""
    return f"{matricule}^^^&{oid}&ISO^NH"


def patient_key(cx: str) -> tuple[str, str] | None:
    """``(identifier, assigning authority OID)`` of a CX value, or None when it has neither.

    The comparison key of patient identifiers: ``279035121518989^^^&1.2.250.1.213.1.4.10&ISO^NH``
    and the same without ``^NH`` name the same patient.
    """
    parts = cx.strip().split("^")
    if len(parts) < 4 or not parts[0]:
        return None
    authority = parts[3].split("&")
    oid = authority[1] if len(authority) > 1 else ""
    if not oid:
        return None
    return parts[0], oid
