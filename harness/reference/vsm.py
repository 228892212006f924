"""The structured body of the volet de synthèse médicale (CI-SIS VSM 2023.01) Cabinet Témoin writes.

The VSM schematron requires three top sections: "Pathologies, antécédents, allergies et
facteurs de risque" (1.2.250.1.213.1.1.2.29, with its two subsections), "Résultats"
(1.3.6.1.4.1.19376.1.5.3.1.3.27) and "Traitement au long cours" (1.2.250.1.213.1.1.2.32).
The reference system keeps no clinical record, so the synthesis is the same synthetic one
for every patient: coded entries for one active problem (CIM-10, "Problèmes actifs") and one
long-term treatment ("Traitements"), the rest as narrative text, which the CI-SIS section
templates allow when an optional subsection is absent.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from lxml import etree

from harness.reference.cda import XSI, E, Header, clinical_document, hl7_time, new_oid, vsm_templates
from harness.reference.doctypes import LOINC

CIM10 = "2.16.840.1.113883.6.3"
SNOMED_CT = "2.16.840.1.113883.6.96"
ATC = "2.16.840.1.113883.6.73"


def vsm_document(header: Header) -> etree._Element:
    """The whole VSM: the CI-SIS header with the volet's templateId, and the structured body."""
    return clinical_document(header, vsm_templates(header), vsm_body(header.created))


def vsm_body(created: datetime) -> etree._Element:
    """``component/structuredBody`` of the synthesis."""
    return E.component(
        E.structuredBody(
            _component(
                _section(
                    ["1.2.250.1.213.1.1.2.29"],
                    "46612-8",
                    "Conclusions de synthèse",
                    "Pathologies, antécédents, allergies et facteurs de risque",
                    None,
                    subsections=[
                        _section(
                            ["1.2.250.1.213.1.1.2.30"],
                            "34117-2",
                            "Historique et clinique",
                            "Pathologie en cours, antécédents et allergies",
                            _paragraphs(
                                "Antécédents : aucun antécédent notable.", "Allergies : aucune allergie connue."
                            ),
                            subsections=[_active_problems(created)],
                        ),
                        _section(
                            ["1.2.250.1.213.1.1.2.31"],
                            "57207-3",
                            "Facteurs de risque",
                            "Facteurs de risque",
                            _paragraphs("Non-fumeur. Pas de facteur de risque professionnel ni familial connu."),
                        ),
                    ],
                )
            ),
            _component(
                _section(
                    ["1.3.6.1.4.1.19376.1.5.3.1.3.27", "1.2.250.1.213.1.1.2.150"],
                    "30954-2",
                    "Résultats d'examens",
                    "Résultats",
                    _paragraphs("Pas de résultat d'examen récent à signaler."),
                )
            ),
            _component(
                _section(
                    ["1.2.250.1.213.1.1.2.32"],
                    "18776-5",
                    "Plan de traitement",
                    "Traitement au long cours",
                    None,
                    subsections=[_medications(created)],
                )
            ),
        )
    )


def _active_problems(created: datetime) -> etree._Element:
    """ "Problèmes actifs" (IHE PCC active problems) with one problem concern entry."""
    text = E.text(E.paragraph(E.content("Hypertension artérielle essentielle", ID="probleme-1")))
    return _section(
        ["2.16.840.1.113883.10.20.1.11", "1.3.6.1.4.1.19376.1.5.3.1.3.6", "1.2.250.1.213.1.1.2.132"],
        "11450-4",
        "Liste des problèmes actifs",
        "Problèmes actifs",
        text,
        entries=[_problem_concern(created, "I10", "Hypertension essentielle (primitive)", "#probleme-1")],
    )


def _problem_concern(created: datetime, code: str, display: str, reference: str) -> etree._Element:
    since = hl7_time(created)
    problem = E.observation(
        E.templateId(root="2.16.840.1.113883.10.20.1.28"),
        E.templateId(root="1.3.6.1.4.1.19376.1.5.3.1.4.5"),
        E.templateId(root="1.2.250.1.213.1.1.3.37"),
        E.id(root=new_oid()),
        E.code(code="64572001", displayName="maladie", codeSystem=SNOMED_CT, codeSystemName="SNOMED CT"),
        E.text(E.reference(value=reference)),
        E.statusCode(code="completed"),
        E.effectiveTime(E.low(value=since)),
        _coded_value(code, display, reference),
        classCode="OBS",
        moodCode="EVN",
    )
    return E.entry(
        E.act(
            E.templateId(root="2.16.840.1.113883.10.20.1.27"),
            E.templateId(root="1.3.6.1.4.1.19376.1.5.3.1.4.5.1"),
            E.templateId(root="1.3.6.1.4.1.19376.1.5.3.1.4.5.2"),
            E.templateId(root="1.2.250.1.213.1.1.3.39"),
            E.id(root=new_oid()),
            E.code(nullFlavor="NA"),
            E.statusCode(code="active"),
            E.effectiveTime(E.low(value=since)),
            E.entryRelationship(problem, typeCode="SUBJ", inversionInd="false"),
            classCode="ACT",
            moodCode="EVN",
        )
    )


def _medications(created: datetime) -> etree._Element:
    """ "Traitements" (IHE PCC medications) with one long-term treatment.

    The CI-SIS codes a product in CIS; without the ANSM base at hand the product is given
    as ``nullFlavor="OTH"`` with its ATC class as a translation, which the templates allow.
    """
    text = E.text(
        E.paragraph(
            E.content("AMLODIPINE 5 mg, comprimé", ID="traitement-1"),
            " : 1 comprimé par jour, ",
            E.content("voie orale", ID="traitement-1-voie"),
            ".",
        )
    )
    return _section(
        ["2.16.840.1.113883.10.20.1.8", "1.3.6.1.4.1.19376.1.5.3.1.3.19", "1.2.250.1.213.1.1.2.143"],
        "10160-0",
        "Traitements",
        "Traitements",
        text,
        entries=[_medication(created, "C08CA01", "amlodipine", "AMLODIPINE 5 mg", "#traitement-1")],
    )


def _medication(created: datetime, atc: str, display: str, name: str, reference: str) -> etree._Element:
    period = E.effectiveTime(E.period(value="1", unit="d"), operator="A")
    period.set(f"{{{XSI}}}type", "PIVL_TS")
    span = E.effectiveTime(E.low(value=hl7_time(created)[:8]), E.high(nullFlavor="UNK"))
    span.set(f"{{{XSI}}}type", "IVL_TS")
    product = E.manufacturedProduct(
        E.templateId(root="2.16.840.1.113883.10.20.1.53"),
        E.templateId(root="1.3.6.1.4.1.19376.1.5.3.1.4.7.2"),
        E.templateId(root="1.2.250.1.213.1.1.3.43"),
        E.manufacturedMaterial(
            E.code(
                E.originalText(E.reference(value=reference)),
                E.translation(code=atc, displayName=display, codeSystem=ATC, codeSystemName="ATC"),
                nullFlavor="OTH",
            ),
            E.name(name),
        ),
    )
    return E.entry(
        E.substanceAdministration(
            E.templateId(root="2.16.840.1.113883.10.20.1.24"),
            E.templateId(root="1.3.6.1.4.1.19376.1.5.3.1.4.7"),
            E.templateId(root="1.2.250.1.213.1.1.3.42"),
            E.templateId(root="1.3.6.1.4.1.19376.1.5.3.1.4.7.1"),
            E.id(root=new_oid()),
            E.code(
                code="DRUG", displayName="Médicament", codeSystem="2.16.840.1.113883.5.4", codeSystemName="HL7:ActCode"
            ),
            E.text(E.reference(value=reference)),
            E.statusCode(code="completed"),
            span,
            period,
            E.routeCode(
                E.originalText(E.reference(value=f"{reference}-voie")),
                code="20053000",
                displayName="Voie orale",
                codeSystem="0.4.0.127.0.16.1.1.2.1",
                codeSystemName="EDQM",
            ),
            E.doseQuantity(E.low(value="1", unit="{tablet}"), E.high(value="1", unit="{tablet}")),
            E.consumable(product),
            classCode="SBADM",
            moodCode="EVN",
        ),
        typeCode="DRIV",
    )


def _coded_value(code: str, display: str, reference: str) -> etree._Element:
    value = E.value(
        E.originalText(E.reference(value=reference)),
        code=code,
        displayName=display,
        codeSystem=CIM10,
        codeSystemName="CIM-10",
    )
    value.set(f"{{{XSI}}}type", "CD")
    return value


def _section(
    templates: list[str],
    code: str,
    code_display: str,
    title: str,
    text: etree._Element | None,
    subsections: Iterable[etree._Element] = (),
    entries: Iterable[etree._Element] = (),
) -> etree._Element:
    section = E.section(
        *(E.templateId(root=t) for t in templates),
        E.id(root=new_oid()),
        E.code(code=code, displayName=code_display, codeSystem=LOINC, codeSystemName="LOINC"),
        E.title(title),
    )
    if text is not None:
        section.append(text)
    section.extend(entries)
    section.extend(_component(s) for s in subsections)
    return section


def _component(section: etree._Element) -> etree._Element:
    return E.component(section)


def _paragraphs(*lines: str) -> etree._Element:
    return E.text(*(E.paragraph(line) for line in lines))
