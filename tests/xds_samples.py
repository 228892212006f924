"""Builds ebRIM metadata for a CDA, as a conforming DMP client would, for the XDS validator's tests.

Written from the CDA's own header so the cross-checks pass; tests then break one
field at a time. Independent of the reference system's and the simulator's code.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from lxml import etree

from harness.validators.xds import CONFIDENTIALITY_SYSTEM, LOINC, MASKING_SYSTEM, RIM, SUBMISSION_SET_NODE, Scheme

HL7 = "urn:hl7-org:v3"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"


def _h(root: etree._Element, path: str) -> etree._Element:
    found = root.find("/".join(f"{{{HL7}}}{s}" for s in path.split("/")))
    assert found is not None, path
    return found


def _utc(hl7: str) -> str:
    return datetime.strptime(hl7, "%Y%m%d%H%M%S%z").astimezone(UTC).strftime("%Y%m%d%H%M%S")


def _slot(parent: etree._Element, name: str, *values: str) -> None:
    slot = etree.SubElement(parent, f"{{{RIM}}}Slot", name=name)
    values_list = etree.SubElement(slot, f"{{{RIM}}}ValueList")
    for value in values:
        etree.SubElement(values_list, f"{{{RIM}}}Value").text = value


def _coded(parent: etree._Element, scheme: str, code: str, system: str, display: str, number: int) -> None:
    item = etree.SubElement(
        parent,
        f"{{{RIM}}}Classification",
        id=f"cl{number}",
        classificationScheme=scheme,
        classifiedObject=parent.get("id", ""),
        nodeRepresentation=code,
    )
    _slot(item, "codingScheme", system)
    name = etree.SubElement(item, f"{{{RIM}}}Name")
    etree.SubElement(name, f"{{{RIM}}}LocalizedString", value=display)


def _external(parent: etree._Element, scheme: str, value: str, number: int) -> None:
    etree.SubElement(
        parent,
        f"{{{RIM}}}ExternalIdentifier",
        id=f"ei{number}",
        identificationScheme=scheme,
        registryObject=parent.get("id", ""),
        value=value,
    )


def submission_for(cda: bytes, masking: tuple[str, ...] = ()) -> etree._Element:
    """``lcm:SubmitObjectsRequest`` for one CDA (entry id ``Document01``)."""
    root = etree.fromstring(cda)
    ins = next(
        e
        for e in root.iterfind(f"{{{HL7}}}recordTarget/{{{HL7}}}patientRole/{{{HL7}}}id")
        if "1.2.250.1.213.1.4" in e.get("root", "")
    )
    patient = f"{ins.get('extension')}^^^&{ins.get('root')}&ISO^NH"
    author = _h(root, "author/assignedAuthor/id").get("extension", "")
    request = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    objects = etree.SubElement(request, f"{{{RIM}}}RegistryObjectList")
    entry = etree.SubElement(objects, f"{{{RIM}}}ExtrinsicObject", id="Document01", mimeType="text/xml")
    entry.set("objectType", "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1")
    _slot(entry, "creationTime", _utc(_h(root, "effectiveTime").get("value", "")))
    _slot(entry, "serviceStartTime", _utc(_h(root, "documentationOf/serviceEvent/effectiveTime/low").get("value", "")))
    _slot(entry, "hash", hashlib.sha1(cda).hexdigest())
    _slot(entry, "size", str(len(cda)))
    _slot(entry, "languageCode", "fr-FR")
    code = _h(root, "code")
    facility = _h(root, "componentOf/encompassingEncounter/location/healthCareFacility/code")
    setting = _h(
        root, "documentationOf/serviceEvent/performer/assignedEntity/representedOrganization/standardIndustryClassCode"
    )
    author_class = etree.SubElement(
        entry,
        f"{{{RIM}}}Classification",
        id="cl0",
        classificationScheme=Scheme.ENTRY_AUTHOR,
        classifiedObject="Document01",
    )
    author_class.set("nodeRepresentation", "")
    _slot(author_class, "authorPerson", f"{author}^NOM^Prenom^^^^^^&1.2.250.1.71.4.2.1&ISO")
    _coded(entry, Scheme.CLASS_CODE, "10", "1.2.250.1.213.1.1.4.1", "Compte rendu", 1)
    _coded(entry, Scheme.TYPE_CODE, code.get("code", ""), LOINC, code.get("displayName", ""), 2)
    _coded(entry, Scheme.FORMAT_CODE, "urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3", "PDF", 3)
    _coded(
        entry,
        Scheme.CONFIDENTIALITY_CODE,
        _h(root, "confidentialityCode").get("code", ""),
        CONFIDENTIALITY_SYSTEM,
        "Normal",
        4,
    )
    for number, mask in enumerate(masking, start=20):
        _coded(entry, Scheme.CONFIDENTIALITY_CODE, mask, MASKING_SYSTEM, mask, number)
    _coded(entry, Scheme.HEALTHCARE_FACILITY_TYPE_CODE, facility.get("code", ""), facility.get("codeSystem", ""), "", 5)
    _coded(entry, Scheme.PRACTICE_SETTING_CODE, setting.get("code", ""), setting.get("codeSystem", ""), "", 6)
    _external(entry, Scheme.ENTRY_PATIENT_ID, patient, 1)
    document_id = _h(root, "id")
    unique = document_id.get("root", "") + (f"^{document_id.get('extension')}" if document_id.get("extension") else "")
    _external(entry, Scheme.ENTRY_UNIQUE_ID, unique, 2)
    package = etree.SubElement(objects, f"{{{RIM}}}RegistryPackage", id="SubmissionSet01")
    _slot(package, "submissionTime", datetime.now(UTC).strftime("%Y%m%d%H%M%S"))
    set_author = etree.SubElement(
        package,
        f"{{{RIM}}}Classification",
        id="cl7",
        classificationScheme=Scheme.SET_AUTHOR,
        classifiedObject="SubmissionSet01",
    )
    set_author.set("nodeRepresentation", "")
    _slot(set_author, "authorPerson", f"{author}^NOM^Prenom^^^^^^&1.2.250.1.71.4.2.1&ISO")
    _coded(package, Scheme.SET_CONTENT_TYPE_CODE, "04", "1.3.6.1.4.1.19376.1.2.1.2", "Consultation", 8)
    _external(package, Scheme.SET_PATIENT_ID, patient, 3)
    _external(package, Scheme.SET_SOURCE_ID, "1.2.250.1.999.1", 4)
    _external(package, Scheme.SET_UNIQUE_ID, "1.2.250.1.999.1.1", 5)
    etree.SubElement(
        objects,
        f"{{{RIM}}}Classification",
        id="cl9",
        classifiedObject="SubmissionSet01",
        classificationNode=SUBMISSION_SET_NODE,
    )
    return request
