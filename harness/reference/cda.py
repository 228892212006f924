"""The CI-SIS CDA R2 header Cabinet Témoin writes, and the level-1 (structuration minimale) body.

One function per header part, in the order the CDA schema wants them, so each rule of
the CI-SIS header is written at one place: the patient with the INS and the strict traits
(the INS only for a qualified identity, as the référentiel INS requires), the author,
custodian and legal authenticator with their national identifiers (IdNat_PS, IdNat_Struct),
the documented act (on the act date of a historical document), the document it replaces,
the encounter and its healthcare facility. The defects of
:mod:`harness.reference.defects` that concern the CDA are switched here, each where it acts.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, cast

from lxml import etree
from lxml.builder import ElementMaker

from harness.reference.doctypes import LOINC, Author, DocumentType, Practice
from harness.reference.model import Patient, Status
from harness.reference.nir import nir_key

HL7 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"


class _Builder:
    """lxml's ElementMaker in the HL7 namespace, typed: ``E.tag(*children, **attributes)`` is an element."""

    def __init__(self) -> None:
        self._maker = ElementMaker(namespace=HL7, nsmap={None: HL7, "xsi": XSI})

    def __getattr__(self, tag: str) -> Callable[..., etree._Element]:
        return cast(Callable[..., etree._Element], getattr(self._maker, tag))

    def __call__(self, tag: str, *children: Any, **attributes: str) -> etree._Element:
        return cast(etree._Element, self._maker(tag, *children, **attributes))


E = _Builder()

HL7_FRANCE_TEMPLATE = "2.16.840.1.113883.2.8.2.1"
CISIS_TEMPLATE = "1.2.250.1.213.1.1.1.1"
XDS_SD_TEMPLATE = "1.3.6.1.4.1.19376.1.2.20"
"""IHE XDS-SD (scanned documents): the third templateId of a level-1 document."""
VSM_TEMPLATE = "1.2.250.1.213.1.1.1.13"
VSM_VERSION, WRONG_VSM_VERSION = "2023.01", "2021.01"

ID_NAT_PS = "1.2.250.1.71.4.2.1"
ID_NAT_STRUCT = "1.2.250.1.71.4.2.2"
PROFESSION = "1.2.250.1.213.1.1.4.5"
"""TRE_G15 profession/specialty codes (JDV_J01)."""
PRACTICE_SETTING = "1.2.250.1.213.1.1.4.9"
FACILITY_TYPE = "1.2.250.1.71.4.2.4"
"""TRE_R02 secteur d'activité (JDV_J02 healthcareFacilityTypeCode)."""
NIR_OID_ASSURANCE_MALADIE = "1.2.250.1.213.1.4.2"
"""The NIR as the Assurance Maladie assigns it: not an INS OID (the ``cda-wrong-ins-oid`` defect)."""
WRONG_TYPE = ("34133-9", "Synthèse d'épisode de soins")
"""The LOINC code the ``cda-wrong-loinc`` defect writes instead of the asked type."""

GENDERS = {"F": "Féminin", "M": "Masculin"}


@dataclass(frozen=True, slots=True)
class Header:
    """What one document's header says besides the practice's own facts."""

    document_id: str
    set_id: str
    type: DocumentType
    created: datetime
    patient: Patient
    practice: Practice
    author: Author
    defects: frozenset[str]
    act_date: date | None = None
    """The day of the act a historical document is about; None when the act is the production itself."""
    version: int = 1
    replaces: str = ""
    """``ClinicalDocument/id/@root`` of the version this one replaces ("" for a first version)."""

    @property
    def act_day(self) -> date | None:
        """The act date the document says (the ``dmp-historical-sending-date`` defect forgets it)."""
        return None if "dmp-historical-sending-date" in self.defects else self.act_date


Template = tuple[str, str]
"""A templateId: root, and extension ("" for none)."""


def n1_document(header: Header, pdf: bytes) -> etree._Element:
    """A level-1 document: the header and the PDF, base64, in ``component/nonXMLBody``."""
    text = E.text(base64.b64encode(pdf).decode("ascii"), mediaType="application/pdf", representation="B64")
    return clinical_document(header, n1_templates(header), E.component(E.nonXMLBody(text)))


def n1_templates(header: Header) -> list[Template]:
    """HL7 France, CI-SIS and IHE XDS-SD: exactly these three for structuration minimale."""
    templates = [(HL7_FRANCE_TEMPLATE, ""), (CISIS_TEMPLATE, ""), (XDS_SD_TEMPLATE, "")]
    if "cda-wrong-template-version" in header.defects:
        return templates[:2]
    return templates


def vsm_templates(header: Header) -> list[Template]:
    """HL7 France, CI-SIS and the VSM volet with its version (2023.01) as extension."""
    version = WRONG_VSM_VERSION if "cda-wrong-template-version" in header.defects else VSM_VERSION
    return [(HL7_FRANCE_TEMPLATE, ""), (CISIS_TEMPLATE, ""), (VSM_TEMPLATE, version)]


def clinical_document(header: Header, templates: list[Template], body: etree._Element) -> etree._Element:
    """The ClinicalDocument with the CI-SIS header and ``body`` as its component."""
    document = E.ClinicalDocument(
        E.realmCode(code="FR"),
        E.typeId(root="2.16.840.1.113883.1.3", extension="POCD_HD000040"),
        *(
            E.templateId(root=root, extension=extension) if extension else E.templateId(root=root)
            for root, extension in templates
        ),
        E.id(root=header.document_id),
        _type_code(header),
        E.title(header.type.title),
        E.effectiveTime(value=hl7_time(header.created)),
        E.confidentialityCode(code="N", displayName="Normal", codeSystem="2.16.840.1.113883.5.25"),
        E.languageCode(code="fr-FR"),
        E.setId(root=header.set_id),
        E.versionNumber(value=str(header.version)),
        record_target(header),
        _author(header),
        _custodian(header.practice),
    )
    if "cda-no-legal-authenticator" not in header.defects:
        document.append(_legal_authenticator(header))
    document.append(_documentation_of(header))
    if header.replaces:
        document.append(_related_document(header))
    document.append(_component_of(header))
    document.append(body)
    return document


def _type_code(header: Header) -> etree._Element:
    if "cda-wrong-loinc" in header.defects:
        code, display = WRONG_TYPE
        return E.code(code=code, displayName=display, codeSystem=LOINC, codeSystemName="LOINC")
    kind = header.type
    names = {"codeSystemName": "LOINC"} if kind.code_system == LOINC else {}
    return E.code(code=kind.code, displayName=kind.display_name, codeSystem=kind.code_system, **names)


# -- the patient ----------------------------------------------------------------------------------


def record_target(header: Header) -> etree._Element:
    """``recordTarget``: the INS (qualified identities only) and the IPP, the strict traits, the used names."""
    patient = header.patient
    role = E.patientRole()
    ins = carried_ins(patient)
    if ins is not None and "cda-no-ins" not in header.defects:
        matricule, oid = ins
        if "cda-bad-nir-key" in header.defects:
            matricule = with_wrong_key(matricule)
        if "cda-wrong-ins-oid" in header.defects:
            oid = NIR_OID_ASSURANCE_MALADIE
        role.append(E.id(root=oid, extension=matricule))
    role.append(E.id(root=header.practice.ipp_oid, extension=patient.id))
    traits = patient.traits
    name = E.name(
        E.family(traits.birth_name, qualifier="BR"),
        E.given(" ".join(traits.first_names)),
        E.given(traits.first_first_name, qualifier="BR"),
    )
    if traits.used_name:
        name.append(E.family(traits.used_name, qualifier="CL"))
    if traits.used_first_name:
        name.append(E.given(traits.used_first_name, qualifier="CL"))
    person = E.patient(
        name,
        E.administrativeGenderCode(
            code=traits.sex, displayName=GENDERS[traits.sex], codeSystem="2.16.840.1.113883.5.1"
        ),
        E.birthTime(value=hl7_birth_date(traits.birth_date)),
    )
    if traits.birthplace_cog:
        person.append(E.birthplace(E.place(E.addr(E.county(traits.birthplace_cog)))))
    role.append(person)
    return E.recordTarget(role)


def carried_ins(patient: Patient) -> tuple[str, str] | None:
    """The INS (matricule, OID) a document may carry: only that of a qualified identity."""
    if patient.status is Status.QUAL and patient.ins is not None:
        return patient.ins.matricule, patient.ins.oid
    return None


def with_wrong_key(matricule: str) -> str:
    """``matricule`` with a 2-digit control key that is not its key (the ``cda-bad-nir-key`` defect)."""
    right = nir_key(matricule[:13])
    return f"{matricule[:13]}{right % 97 + 1:02d}"


# -- the practice -----------------------------------------------------------------------------------


def _author(header: Header) -> etree._Element:
    author, practice = header.author, header.practice
    return E.author(
        E.time(value=hl7_time(header.created)),
        E.assignedAuthor(
            E.id(root=ID_NAT_PS, extension=author.id_nat_ps),
            E.code(code=author.specialty_code, displayName=author.specialty_display, codeSystem=PROFESSION),
            _address(practice),
            E.telecom(value=practice.telephone, use="WP"),
            E.assignedPerson(_person_name(author)),
            _organisation("representedOrganization", practice),
        ),
    )


def _custodian(practice: Practice) -> etree._Element:
    return E.custodian(
        E.assignedCustodian(
            E.representedCustodianOrganization(
                E.id(root=ID_NAT_STRUCT, extension=practice.id_nat_struct),
                E.name(practice.name),
                E.telecom(value=practice.telephone, use="WP"),
                _address(practice),
            )
        )
    )


def _legal_authenticator(header: Header) -> etree._Element:
    return E.legalAuthenticator(
        E.time(value=hl7_time(header.created)),
        E.signatureCode(code="S"),
        E.assignedEntity(
            E.id(root=ID_NAT_PS, extension=header.author.id_nat_ps),
            E.assignedPerson(_person_name(header.author)),
        ),
    )


def _documentation_of(header: Header) -> etree._Element:
    """The documented act: the consultation (for the VSM, the LOINC 'Historique et clinique' act), on its day."""
    practice, stamp = header.practice, act_time(header)
    event = E.serviceEvent(classCode="ACT")
    if header.type.structure == "N3":
        event.append(
            E.code(code="34117-2", displayName="Historique et clinique", codeSystem=LOINC, codeSystemName="LOINC")
        )
    organisation = _organisation("representedOrganization", header.practice)
    organisation.append(
        E.standardIndustryClassCode(
            code=practice.practice_setting_code,
            displayName=practice.practice_setting_display,
            codeSystem=PRACTICE_SETTING,
            codeSystemName="practiceSettingCode",
        )
    )
    event.extend(
        [
            E.effectiveTime(E.low(value=stamp), E.high(value=stamp)),
            E.performer(
                E.assignedEntity(
                    E.id(root=ID_NAT_PS, extension=header.author.id_nat_ps),
                    E.assignedPerson(_person_name(header.author)),
                    organisation,
                ),
                typeCode="PRF",
            ),
        ]
    )
    return E.documentationOf(event)


def _related_document(header: Header) -> etree._Element:
    """The version this document replaces (RPLC), same setId, previous versionNumber."""
    return E.relatedDocument(
        E.parentDocument(
            E.id(root=header.replaces),
            E.setId(root=header.set_id),
            E.versionNumber(value=str(header.version - 1)),
        ),
        typeCode="RPLC",
    )


def _component_of(header: Header) -> etree._Element:
    practice = header.practice
    return E.componentOf(
        E.encompassingEncounter(
            E.effectiveTime(E.low(value=act_time(header))),
            E.location(
                E.healthCareFacility(
                    E.id(root=ID_NAT_STRUCT, extension=practice.id_nat_struct),
                    E.code(
                        code=practice.healthcare_facility_code,
                        displayName=practice.healthcare_facility_display,
                        codeSystem=FACILITY_TYPE,
                    ),
                )
            ),
        )
    )


def _organisation(tag: str, practice: Practice) -> etree._Element:
    return E(
        tag,
        E.id(root=ID_NAT_STRUCT, extension=practice.id_nat_struct),
        E.name(practice.name),
        E.telecom(value=practice.telephone, use="WP"),
        _address(practice),
    )


def _address(practice: Practice) -> etree._Element:
    return E.addr(
        E.houseNumber(practice.house_number),
        E.streetName(practice.street_name),
        E.postalCode(practice.postal_code),
        E.city(practice.city),
    )


def _person_name(author: Author) -> etree._Element:
    return E.name(E.prefix(author.prefix), E.given(author.given), E.family(author.family), E.suffix(author.suffix))


# -- HL7 data types -----------------------------------------------------------------------------------


def hl7_time(moment: datetime) -> str:
    """An HL7 TS with seconds and the time zone: ``20240305101500+0100``."""
    return moment.strftime("%Y%m%d%H%M%S%z")


def act_time(header: Header) -> str:
    """When the documented act took place: the act date (day precision) of a historical document, else now."""
    day = header.act_day
    return day.strftime("%Y%m%d") if day is not None else hl7_time(header.created)


def hl7_birth_date(birth_date: str) -> str:
    """``YYYY-MM-DD`` as an HL7 TS; INSi's ``00`` for an unknown month or day shortens it."""
    year, month, day = birth_date.split("-")
    if month == "00":
        return year
    return f"{year}{month}" if day == "00" else f"{year}{month}{day}"


def new_oid() -> str:
    """A fresh globally unique OID (``2.25.<UUID as an integer>``, ITU-T X.667)."""
    return f"2.25.{uuid.uuid4().int}"
