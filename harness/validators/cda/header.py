"""CI-SIS header rules of a CDA R2 document, written by the harness, needing no ANS rule files.

The ANS schematrons are the official judge, but they need the ANS rule tree, Saxon and
seconds per document, and they word their findings for people. The scenarios also need
a fast, always-available check with stable rule ids on the facts the Ségur
requirements are about (the INS and the strict traits in ``recordTarget``, the
author's national id, the custodian, the legal authenticator, the XDS-feeding codes).
That is this module: plain Python over lxml, one small function per header element.

Sources of the facts (``shared/docs/protocols.md`` §0 and §6.1, themselves read from
the TestContenuCDA-3-0 schematrons and examples and the fr-core INS profile):

- realmCode ``FR``; typeId ``2.16.840.1.113883.1.3``/``POCD_HD000040``; templateIds
  ``2.16.840.1.113883.2.8.2.1`` (HL7 France) and ``1.2.250.1.213.1.1.1.1`` (CI-SIS) once
  each plus a volet templateId; ``1.3.6.1.4.1.19376.1.2.20`` (IHE XDS-SD) for a level-1
  document (``nonXMLBody``) — §6.1.
- ``code`` in LOINC ``2.16.840.1.113883.6.1``; ``effectiveTime`` with a timezone;
  ``confidentialityCode`` N/R/V in ``2.16.840.1.113883.5.25``; ``languageCode`` fr-FR;
  ``setId``; ``versionNumber`` — §6.1.
- INS OIDs and the matricule key — §0 and §1.6, through :mod:`harness.validators.ins`.
- patient name qualifiers BR/CL, ``administrativeGenderCode`` in
  ``2.16.840.1.113883.5.1``, ``birthTime``, the birthplace COG in
  ``birthplace/place/addr/county`` — §6.1 (ANS example ``DOC_NON_STRUCTURE_CDA-R2-N1``).
- national PS id ``1.2.250.1.71.4.2.1`` (``8`` + RPPS, ``0`` + ADELI), national
  structure id ``1.2.250.1.71.4.2.2``, custodian roots, TRE_G15 profession
  ``1.2.250.1.213.1.1.4.5``, TRE_R02 secteur d'activité ``1.2.250.1.71.4.2.4``,
  practiceSettingCode ``1.2.250.1.213.1.1.4.9`` — §0 and §6.1.
- The JDV carrying each code, read from the files of ``jeuxDeValeurs/``:
  ``JDV_J02_XdsHealthcareFacilityTypeCode_CISIS`` (``1.2.250.1.213.1.1.5.466``),
  ``JDV_J04_XdsPracticeSettingCode_CISIS`` (``.467``), ``JDV_J07_XdsTypeCode_CISIS``
  (``.471``), ``JDV_J01_XdsAuthorSpecialty_CISIS`` (``.461``) and
  ``JDV_J143_AdministrativeGender_CISIS`` (``.590``). Their concepts show that J07 also
  holds codes of ``1.2.250.1.213.1.1.4.12`` beside LOINC, J02 and J04 also hold codes of
  ``1.2.250.1.213.1.1.4.6`` and J143 uses ``UN`` (not ``U``) for unknown sex.

Calibrated on the 73 ClinicalDocument examples of TestContenuCDA-3-0: where ANS
examples legitimately differ, the rule is a warning and says so (author without
``code``, structure-based author ids, the patient as legal authenticator, first-name
list not starting with the first birth first name). The structure of a
structure-based PS id (``<structure>/<local id>``) is not checked: we have no source
for it. Without a :class:`ValueSets`, code-system checks are warnings; with one, JDV
membership is an error, as in the ANS ``dansJeuDeValeurs`` assertions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from lxml import etree

from harness.findings import Finding, error, warning
from harness.validators.cda.valuesets import ValueSet, ValueSets
from harness.validators.ins import check_matricule, ins_oid, nir_key, normalise_trait

SOURCE = "cda.header"
HL7 = "urn:hl7-org:v3"
_NS = {"h": HL7}

OID_HL7_FRANCE = "2.16.840.1.113883.2.8.2.1"
OID_CI_SIS = "1.2.250.1.213.1.1.1.1"
OID_XDS_SD = "1.3.6.1.4.1.19376.1.2.20"
OID_TYPE_ID = "2.16.840.1.113883.1.3"
OID_LOINC = "2.16.840.1.113883.6.1"
OID_CISIS_DOC_TYPES = "1.2.250.1.213.1.1.4.12"
"""Non-LOINC document types that JDV_J07 carries beside LOINC (CSE, VSM, CNAM-HR examples)."""
OID_CONFIDENTIALITY = "2.16.840.1.113883.5.25"
OID_GENDER = "2.16.840.1.113883.5.1"
OID_PS = "1.2.250.1.71.4.2.1"
OID_STRUCTURE = "1.2.250.1.71.4.2.2"
OID_CUSTODIAN_ALT = "1.2.250.1.213.4.1"
OID_G15_PROFESSION = "1.2.250.1.213.1.1.4.5"
OID_R02_SECTEUR = "1.2.250.1.71.4.2.4"
OID_PRACTICE_SETTING = "1.2.250.1.213.1.1.4.9"

JDV_AUTHOR_SPECIALTY = "1.2.250.1.213.1.1.5.461"
JDV_HEALTHCARE_FACILITY = "1.2.250.1.213.1.1.5.466"
JDV_PRACTICE_SETTING = "1.2.250.1.213.1.1.5.467"
JDV_TYPE_CODE = "1.2.250.1.213.1.1.5.471"
JDV_GENDER = "1.2.250.1.213.1.1.5.590"

_CONFIDENTIALITY_CODES = ("N", "R", "V")
_GENDER_CODES = ("F", "M", "UN")
_TS_WITH_ZONE = re.compile(r"^[0-9]{8}(?:[0-9]{2}){0,3}(?:\.[0-9]{1,4})?[+-][0-9]{4}$")
_BIRTH_TIME = re.compile(r"^[0-9]{4}(?:[0-9]{2}){0,5}(?:\.[0-9]{1,4})?(?:[+-][0-9]{4})?$")
_COG = re.compile(r"^(?:[0-9]{5}|2[AB][0-9]{3})$")
_MATRICULE_SHAPE = re.compile(r"^[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{8}$")
_RPPS_ID = re.compile(r"^8[0-9]{11}$")
_ADELI_ID = re.compile(r"^0[0-9A-Za-z]{8,}$")
_STRUCTURE_BASED_ID = re.compile(r"^[0-9A-Za-z]+/\S+$")
_INS_RULES = {"ins.oid.unknown": "ins.oid", "ins.oid.test": "ins.oid-test"}


@dataclass(slots=True)
class _Context:
    """What every rule needs: the document, the value sets and the caller's options."""

    root: etree._Element
    value_sets: ValueSets | None
    ins_required: bool
    allow_test_ins: bool
    findings: list[Finding] = field(default_factory=list)
    _missing_jdv: set[str] = field(default_factory=set)

    def error(self, rule: str, message: str, location: str) -> None:
        self.findings.append(error(f"{SOURCE}.{rule}", message, location, SOURCE))

    def warning(self, rule: str, message: str, location: str) -> None:
        self.findings.append(warning(f"{SOURCE}.{rule}", message, location, SOURCE))

    def jdv(self, oid: str, name: str) -> ValueSet | None:
        """The JDV, or None (and one warning per JDV) when value sets were given without it."""
        if self.value_sets is None:
            return None
        value_set = self.value_sets.get(oid)
        if value_set is None and oid not in self._missing_jdv:
            self._missing_jdv.add(oid)
            self.warning("jdv-unavailable", f"{name} ({oid}) is not in the value sets given: not checked", "")
        return value_set


def check_header(
    root: etree._Element,
    value_sets: ValueSets | None = None,
    *,
    ins_required: bool = True,
    allow_test_ins: bool = True,
) -> list[Finding]:
    """Check the CI-SIS header of ``root``, a ``{urn:hl7-org:v3}ClinicalDocument`` element.

    Args:
        root: the parsed document element.
        value_sets: the JDV to check the coded header values against; without it only
            the code systems are checked (warnings).
        ins_required: a missing INS is an error (document shared through the DMP) or,
            when False, a warning (exchanged by MSSanté only, where it is recommended).
        allow_test_ins: accept the test and demonstration INS OIDs (False in production).

    Returns:
        Findings with rule ids ``cda.header.*``, source ``cda.header`` and a simple XPath
        location (``/ClinicalDocument/recordTarget/patientRole/id[2]``).
    """
    ctx = _Context(root, value_sets, ins_required, allow_test_ins)
    if not isinstance(root.tag, str) or root.tag != f"{{{HL7}}}ClinicalDocument":
        ctx.error("root", f"the document element is {root.tag!r}, not {{{HL7}}}ClinicalDocument", "/")
        return ctx.findings
    for rule in _RULES:
        rule(ctx)
    return ctx.findings


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _all(element: etree._Element, path: str) -> list[etree._Element]:
    """Elements at ``path`` (``a/b/c``, local names in the HL7 namespace) below ``element``."""
    return list(element.iterfind("/".join(f"h:{step}" for step in path.split("/")), _NS))


def _one(element: etree._Element, path: str) -> etree._Element | None:
    found = _all(element, path)
    return found[0] if found else None


def _text(element: etree._Element | None) -> str:
    if element is None:
        return ""
    return "".join(t for t in element.itertext() if isinstance(t, str)).strip()


def _attr(element: etree._Element | None, name: str) -> str:
    return (element.get(name) or "").strip() if element is not None else ""


def _qualifiers(element: etree._Element) -> set[str]:
    return set(_attr(element, "qualifier").split())


def _local(element: etree._Element) -> str:
    return etree.QName(element).localname


def _xpath(element: etree._Element, child: str = "") -> str:
    """A simple XPath to ``element`` (``/ClinicalDocument/author[2]/time``), plus ``child`` if given.

    A step gets an index only when its parent has several children of that name.
    """
    steps: list[str] = []
    node: etree._Element | None = element
    while node is not None:
        name = _local(node)
        parent = node.getparent()
        if parent is not None:
            same = [c for c in parent if isinstance(c.tag, str) and c.tag == node.tag]
            if len(same) > 1:
                name = f"{name}[{same.index(node) + 1}]"
        steps.append(name)
        node = parent
    path = "/" + "/".join(reversed(steps))
    return f"{path}/{child}" if child else path


def _coded(code: etree._Element) -> str:
    return f"{_attr(code, 'code') or '?'} ({_attr(code, 'codeSystem') or 'no codeSystem'})"


def _check_jdv(ctx: _Context, code: etree._Element, rule: str, jdv_oid: str, jdv_name: str) -> bool:
    """Error ``rule`` when ``code`` is not in the JDV. True when the JDV was available."""
    value_set = ctx.jdv(jdv_oid, jdv_name)
    if value_set is None:
        return False
    if not value_set.contains(_attr(code, "code"), _attr(code, "codeSystem")):
        ctx.error(rule, f"{_coded(code)} is not in {jdv_name} ({jdv_oid})", _xpath(code))
    return True


# --------------------------------------------------------------------------------------
# Document-level elements
# --------------------------------------------------------------------------------------


def _realm_code(ctx: _Context) -> None:
    realms = _all(ctx.root, "realmCode")
    if len(realms) != 1 or _attr(realms[0], "code") != "FR":
        found = ", ".join(repr(_attr(r, "code")) for r in realms) or "none"
        ctx.error(
            "realm-code", f"exactly one realmCode code='FR' is required; found {found}", _xpath(ctx.root, "realmCode")
        )


def _type_id(ctx: _Context) -> None:
    type_id = _one(ctx.root, "typeId")
    if type_id is None or _attr(type_id, "root") != OID_TYPE_ID or _attr(type_id, "extension") != "POCD_HD000040":
        ctx.error(
            "type-id",
            f"typeId must be root {OID_TYPE_ID} extension POCD_HD000040",
            _xpath(type_id) if type_id is not None else _xpath(ctx.root, "typeId"),
        )


def _template_ids(ctx: _Context) -> None:
    roots = [_attr(t, "root") for t in _all(ctx.root, "templateId")]
    where = _xpath(ctx.root, "templateId")
    for oid, rule, label in ((OID_HL7_FRANCE, "hl7-france", "HL7 France"), (OID_CI_SIS, "ci-sis", "CI-SIS")):
        count = roots.count(oid)
        if count != 1:
            ctx.error(f"template-id.{rule}", f"the {label} templateId {oid} must appear once, found {count}", where)
    if not [r for r in roots if r not in (OID_HL7_FRANCE, OID_CI_SIS)]:
        ctx.error("template-id.volet", "no templateId declares the volet (document model) followed", where)
    if _all(ctx.root, "component/nonXMLBody") and OID_XDS_SD not in roots:
        ctx.error(
            "template-id.xds-sd",
            f"a level-1 document (nonXMLBody) must declare the IHE XDS-SD templateId {OID_XDS_SD}",
            where,
        )


def _document_id(ctx: _Context) -> None:
    ids = _all(ctx.root, "id")
    if len(ids) != 1 or not _attr(ids[0], "root"):
        ctx.error("id", "the document needs exactly one id with a root", _xpath(ctx.root, "id"))


def _title(ctx: _Context) -> None:
    if not _text(_one(ctx.root, "title")):
        ctx.error("title", "the document has no title", _xpath(ctx.root, "title"))


def _document_code(ctx: _Context) -> None:
    code = _one(ctx.root, "code")
    if code is None or not _attr(code, "code"):
        ctx.error("code.loinc", "the document type code is missing", _xpath(ctx.root, "code"))
        return
    if _check_jdv(ctx, code, "code.jdv", JDV_TYPE_CODE, "JDV_J07_XdsTypeCode_CISIS"):
        return
    if _attr(code, "codeSystem") not in (OID_LOINC, OID_CISIS_DOC_TYPES):
        ctx.error("code.loinc", f"document type {_coded(code)} is not a LOINC code ({OID_LOINC})", _xpath(code))


def _effective_time(ctx: _Context) -> None:
    times = _all(ctx.root, "effectiveTime")
    value = _attr(times[0], "value") if len(times) == 1 else ""
    if not _TS_WITH_ZONE.match(value):
        ctx.error(
            "effective-time",
            f"effectiveTime must be one timestamp with a timezone (YYYYMMDDHHMMSS+ZZZZ), found {value!r}",
            _xpath(ctx.root, "effectiveTime"),
        )


def _confidentiality_code(ctx: _Context) -> None:
    codes = _all(ctx.root, "confidentialityCode")
    ok = (
        len(codes) == 1
        and _attr(codes[0], "code") in _CONFIDENTIALITY_CODES
        and _attr(codes[0], "codeSystem") == OID_CONFIDENTIALITY
    )
    if not ok:
        found = ", ".join(_coded(c) for c in codes) or "none"
        ctx.error(
            "confidentiality-code",
            f"exactly one confidentialityCode N, R or V in {OID_CONFIDENTIALITY} is required; found {found}",
            _xpath(ctx.root, "confidentialityCode"),
        )


def _language_code(ctx: _Context) -> None:
    codes = _all(ctx.root, "languageCode")
    if len(codes) != 1 or _attr(codes[0], "code") != "fr-FR":
        found = ", ".join(repr(_attr(c, "code")) for c in codes) or "none"
        ctx.error(
            "language-code",
            f"exactly one languageCode fr-FR is required; found {found}",
            _xpath(ctx.root, "languageCode"),
        )


def _set_and_version(ctx: _Context) -> None:
    set_ids = _all(ctx.root, "setId")
    if len(set_ids) != 1 or not _attr(set_ids[0], "root"):
        ctx.error("set-id", "exactly one setId with a root is required", _xpath(ctx.root, "setId"))
    versions = _all(ctx.root, "versionNumber")
    value = _attr(versions[0], "value") if len(versions) == 1 else ""
    if not (value.isdigit() and value.isascii() and int(value) > 0):
        ctx.error(
            "version-number",
            f"exactly one versionNumber with a positive integer value is required; found {value!r}",
            _xpath(ctx.root, "versionNumber"),
        )


# --------------------------------------------------------------------------------------
# recordTarget: INS and strict traits
# --------------------------------------------------------------------------------------


def _looks_like_matricule(extension: str) -> bool:
    """A 15-character NIR-shaped value whose key is right: an INS, whatever its root says."""
    return bool(_MATRICULE_SHAPE.match(extension)) and nir_key(extension[:13]) == int(extension[13:])


def _ins(ctx: _Context) -> None:
    role = _one(ctx.root, "recordTarget/patientRole")
    if role is None:
        ctx.error("record-target", "no recordTarget/patientRole", _xpath(ctx.root, "recordTarget"))
        return
    ids = _all(role, "id")
    ins_ids = [i for i in ids if ins_oid(_attr(i, "root")) is not None]
    if not ins_ids:
        misfiled = [i for i in ids if _looks_like_matricule(_attr(i, "extension"))]
        for ident in misfiled:
            ctx.error(
                "ins.oid",
                f"id {_attr(ident, 'extension')} looks like a matricule INS but its root "
                f"{_attr(ident, 'root')!r} is not an INS authority",
                _xpath(ident),
            )
        if not misfiled:
            message = "no patientRole/id carries an INS (root = an INS OID)"
            if ctx.ins_required:
                ctx.error("ins.missing", message, _xpath(role, "id"))
            else:
                ctx.warning("ins.missing", message + " (recommended)", _xpath(role, "id"))
        return
    if len(ins_ids) > 1:
        ctx.warning("ins.multiple", f"{len(ins_ids)} ids carry an INS OID; one INS is expected", _xpath(role, "id"))
    for ident in ins_ids:
        location = _xpath(ident)
        for finding in check_matricule(
            _attr(ident, "extension"), _attr(ident, "root"), allow_test=ctx.allow_test_ins, location=location
        ):
            rule = _INS_RULES.get(finding.rule, finding.rule.replace("ins.matricule.", "ins.", 1))
            ctx.findings.append(Finding(finding.severity, f"{SOURCE}.{rule}", finding.message, location, SOURCE))


def _patient_name(ctx: _Context) -> None:
    patient = _one(ctx.root, "recordTarget/patientRole/patient")
    if patient is None:
        ctx.error("patient", "no recordTarget/patientRole/patient", _xpath(ctx.root, "recordTarget"))
        return
    names = _all(patient, "name")
    where = _xpath(names[0]) if names else _xpath(patient, "name")
    families = [f for n in names for f in _all(n, "family")]
    givens = [g for n in names for g in _all(n, "given")]
    if not any("BR" in _qualifiers(f) and _text(f) for f in families):
        ctx.error("patient.birth-name", "no family qualifier='BR' (nom de naissance)", where)
    first_names = [g for g in givens if not _qualifiers(g) and _text(g)]
    first_br = [g for g in givens if "BR" in _qualifiers(g) and _text(g)]
    if not first_names:
        ctx.error("patient.first-names", "no given without qualifier (liste des prénoms de naissance)", where)
    if not first_br:
        ctx.error("patient.first-name-br", "no given qualifier='BR' (premier prénom de naissance)", where)
    if first_names and first_br:
        listed = normalise_trait(_text(first_names[0]))
        first = normalise_trait(_text(first_br[0]))
        if listed != first and not listed.startswith(first + " "):
            ctx.warning(
                "patient.first-names-consistency",
                f"the first birth first name {_text(first_br[0])!r} does not start the list {_text(first_names[0])!r}",
                _xpath(first_names[0]),
            )


def _patient_gender_and_birth(ctx: _Context) -> None:
    patient = _one(ctx.root, "recordTarget/patientRole/patient")
    if patient is None:
        return
    gender = _one(patient, "administrativeGenderCode")
    if gender is None:
        ctx.error("patient.gender", "no administrativeGenderCode", _xpath(patient, "administrativeGenderCode"))
    elif not _check_jdv(ctx, gender, "patient.gender", JDV_GENDER, "JDV_J143_AdministrativeGender_CISIS") and (
        _attr(gender, "codeSystem") != OID_GENDER or _attr(gender, "code") not in _GENDER_CODES
    ):
        ctx.error(
            "patient.gender",
            f"administrativeGenderCode {_coded(gender)} is not F, M or UN in {OID_GENDER}",
            _xpath(gender),
        )
    birth = _one(patient, "birthTime")
    if birth is None:
        ctx.error("patient.birth-time", "no birthTime", _xpath(patient, "birthTime"))
    elif _attr(birth, "nullFlavor"):
        ctx.warning("patient.birth-time", f"birthTime is nullFlavor {_attr(birth, 'nullFlavor')}", _xpath(birth))
    elif not _BIRTH_TIME.match(_attr(birth, "value")):
        ctx.error("patient.birth-time", f"birthTime {_attr(birth, 'value')!r} is not a timestamp", _xpath(birth))


def _patient_birthplace(ctx: _Context) -> None:
    patient = _one(ctx.root, "recordTarget/patientRole/patient")
    if patient is None:
        return
    birthplace = _one(patient, "birthplace")
    if birthplace is None:
        if _has_ins(ctx):
            ctx.warning(
                "patient.birthplace-missing",
                "no birthplace: its COG is a strict trait of the INS identity",
                _xpath(patient, "birthplace"),
            )
        return
    county = _one(birthplace, "place/addr/county")
    cog = _text(county).upper()
    if county is None or not _COG.match(cog) or cog == "00000":
        ctx.error(
            "patient.birthplace-cog",
            f"birthplace/place/addr/county must be the COG of the birthplace (5 characters), found {cog!r}",
            _xpath(county) if county is not None else _xpath(birthplace, "place/addr/county"),
        )


def _has_ins(ctx: _Context) -> bool:
    return any(ins_oid(_attr(i, "root")) is not None for i in _all(ctx.root, "recordTarget/patientRole/id"))


# --------------------------------------------------------------------------------------
# Participants
# --------------------------------------------------------------------------------------


def _ps_id_extension(ctx: _Context, ident: etree._Element, rule: str) -> None:
    extension = _attr(ident, "extension")
    if _RPPS_ID.match(extension) or _ADELI_ID.match(extension) or _STRUCTURE_BASED_ID.match(extension):
        return
    ctx.warning(
        rule,
        f"PS id {extension!r} is neither 8 + RPPS (11 digits), 0 + ADELI, nor <structure>/<local id>",
        _xpath(ident),
    )


def _authors(ctx: _Context) -> None:
    authors = _all(ctx.root, "author")
    if not authors:
        ctx.error("author", "the document has no author", _xpath(ctx.root, "author"))
    for author in authors:
        if _one(author, "time") is None:
            ctx.error("author.time", "author has no time", _xpath(author, "time"))
        assigned = _one(author, "assignedAuthor")
        if assigned is None:
            ctx.error("author", "author has no assignedAuthor", _xpath(author, "assignedAuthor"))
            continue
        _author_id(ctx, assigned)
        _author_code(ctx, assigned)


def _author_id(ctx: _Context, assigned: etree._Element) -> None:
    ids = _all(assigned, "id")
    national = [i for i in ids if _attr(i, "root") == OID_PS]
    if not national:
        message = f"assignedAuthor has no id with root {OID_PS} (identifiant national PS)"
        if _one(assigned, "assignedAuthoringDevice") is not None:
            ctx.warning("author.id-root", message + " (authoring device)", _xpath(assigned, "id"))
        else:
            ctx.error("author.id-root", message, _xpath(ids[0]) if ids else _xpath(assigned, "id"))
    for ident in national:
        _ps_id_extension(ctx, ident, "author.id-extension")


def _author_code(ctx: _Context, assigned: etree._Element) -> None:
    code = _one(assigned, "code")
    if code is None:
        # CARD-F-PRC-* examples of ANS have no author code: a warning, not an error.
        ctx.warning(
            "author.code", "assignedAuthor has no code (profession, XDS authorSpecialty)", _xpath(assigned, "code")
        )
        return
    if _check_jdv(ctx, code, "author.code", JDV_AUTHOR_SPECIALTY, "JDV_J01_XdsAuthorSpecialty_CISIS"):
        return
    if _attr(code, "codeSystem") != OID_G15_PROFESSION:
        ctx.warning(
            "author.code",
            f"author code {_coded(code)} is not a TRE_G15 profession ({OID_G15_PROFESSION})",
            _xpath(code),
        )


def _custodian(ctx: _Context) -> None:
    custodians = _all(ctx.root, "custodian")
    organisation = _one(custodians[0], "assignedCustodian/representedCustodianOrganization") if custodians else None
    if len(custodians) != 1 or organisation is None:
        ctx.error(
            "custodian",
            "exactly one custodian/assignedCustodian/representedCustodianOrganization is required",
            _xpath(ctx.root, "custodian"),
        )
        return
    roots = [_attr(i, "root") for i in _all(organisation, "id")]
    if not any(r in (OID_STRUCTURE, OID_CUSTODIAN_ALT) for r in roots):
        ctx.error(
            "custodian",
            f"representedCustodianOrganization/id root must be {OID_STRUCTURE} or {OID_CUSTODIAN_ALT}; found {roots}",
            _xpath(organisation, "id"),
        )


def _legal_authenticator(ctx: _Context) -> None:
    authenticators = _all(ctx.root, "legalAuthenticator")
    if len(authenticators) != 1:
        ctx.error(
            "legal-authenticator",
            f"exactly one legalAuthenticator is required, found {len(authenticators)}",
            _xpath(ctx.root, "legalAuthenticator"),
        )
        return
    authenticator = authenticators[0]
    if _one(authenticator, "time") is None:
        ctx.error("legal-authenticator.time", "legalAuthenticator has no time", _xpath(authenticator, "time"))
    signature = _one(authenticator, "signatureCode")
    if _attr(signature, "code") != "S":
        ctx.error(
            "legal-authenticator.signature-code",
            f"legalAuthenticator/signatureCode must be code='S', found {_attr(signature, 'code')!r}",
            _xpath(authenticator, "signatureCode"),
        )
    ids = _all(authenticator, "assignedEntity/id")
    if not ids:
        ctx.error(
            "legal-authenticator.id",
            "legalAuthenticator/assignedEntity has no id",
            _xpath(authenticator, "assignedEntity/id"),
        )
        return
    roots = [_attr(i, "root") for i in ids]
    if OID_PS in roots:
        for ident in ids:
            if _attr(ident, "root") == OID_PS:
                _ps_id_extension(ctx, ident, "legal-authenticator.id-extension")
    elif any(ins_oid(r) is not None for r in roots):
        # ANS example VAC_2023.01: the patient is the legal authenticator, identified by INS.
        ctx.warning(
            "legal-authenticator.id-root",
            f"the legal authenticator is identified by an INS, not by a national PS id ({OID_PS})",
            _xpath(ids[0]),
        )
    else:
        ctx.error(
            "legal-authenticator.id-root",
            f"legalAuthenticator/assignedEntity/id root must be {OID_PS}; found {roots}",
            _xpath(ids[0]),
        )


# --------------------------------------------------------------------------------------
# documentationOf / componentOf
# --------------------------------------------------------------------------------------


def _service_event(ctx: _Context) -> None:
    events = _all(ctx.root, "documentationOf/serviceEvent")
    if not events:
        ctx.error("service-event", "no documentationOf/serviceEvent", _xpath(ctx.root, "documentationOf"))
        return
    settings = [
        code
        for event in events
        for code in _all(event, "performer/assignedEntity/representedOrganization/standardIndustryClassCode")
    ]
    if not settings:
        ctx.warning(
            "practice-setting",
            "no serviceEvent/performer/assignedEntity/representedOrganization/standardIndustryClassCode "
            "(XDS practiceSettingCode)",
            _xpath(events[0], "performer"),
        )
    for code in settings:
        if _check_jdv(ctx, code, "practice-setting", JDV_PRACTICE_SETTING, "JDV_J04_XdsPracticeSettingCode_CISIS"):
            continue
        if _attr(code, "codeSystem") != OID_PRACTICE_SETTING:
            ctx.warning(
                "practice-setting",
                f"practice setting {_coded(code)} is not in code system {OID_PRACTICE_SETTING}",
                _xpath(code),
            )


def _healthcare_facility(ctx: _Context) -> None:
    code = _one(ctx.root, "componentOf/encompassingEncounter/location/healthCareFacility/code")
    if code is None or not _attr(code, "code"):
        ctx.error(
            "healthcare-facility-code",
            "no componentOf/encompassingEncounter/location/healthCareFacility/code (XDS healthcareFacilityTypeCode)",
            _xpath(ctx.root, "componentOf"),
        )
        return
    if _check_jdv(
        ctx, code, "healthcare-facility-code", JDV_HEALTHCARE_FACILITY, "JDV_J02_XdsHealthcareFacilityTypeCode_CISIS"
    ):
        return
    if _attr(code, "codeSystem") != OID_R02_SECTEUR:
        ctx.warning(
            "healthcare-facility-code",
            f"healthCareFacility code {_coded(code)} is not a TRE_R02 secteur d'activité ({OID_R02_SECTEUR})",
            _xpath(code),
        )


_RULES: tuple[Callable[[_Context], None], ...] = (
    _realm_code,
    _type_id,
    _template_ids,
    _document_id,
    _title,
    _document_code,
    _effective_time,
    _confidentiality_code,
    _language_code,
    _set_and_version,
    _ins,
    _patient_name,
    _patient_gender_and_birth,
    _patient_birthplace,
    _authors,
    _custodian,
    _legal_authenticator,
    _service_event,
    _healthcare_facility,
)
"""Every header rule, in document order."""
