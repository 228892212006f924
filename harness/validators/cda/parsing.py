"""Reading untrusted CDA bytes safely, before any rule sees them.

A document comes from the SUT, from a vendor's folder, from an MSSanté attachment:
anything. Nothing past this module parses raw bytes. It refuses what a CDA never
needs and an attacker loves: a DOCTYPE (entity expansion, external DTDs, XXE),
oversized input (checked before parsing), and entity references. It finds the
``ClinicalDocument`` — at the root, or embedded once in an "auto-présentable"
document (an XSLT stylesheet that carries its CDA, as ANS publishes some examples).
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from harness.findings import Finding, error, warning

HL7 = "urn:hl7-org:v3"
CLINICAL_DOCUMENT = f"{{{HL7}}}ClinicalDocument"
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
"""Bigger documents are refused unread (a CDA with an embedded PDF is a few MB)."""
SOURCE = "cda.parse"


@dataclass(frozen=True, slots=True)
class ParsedCda:
    """A document that parsed safely.

    Attributes:
        tree: the whole XML document.
        document: the ``ClinicalDocument`` element (the root, or the one embedded).
        embedded: True when the ClinicalDocument is not the root element.
    """

    tree: etree._ElementTree
    document: etree._Element
    embedded: bool


def safe_parser() -> etree.XMLParser:
    """The parser for untrusted XML: no entity resolution, no DTD, no network, no huge trees."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
    )


def parse_cda(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[ParsedCda | None, list[Finding]]:
    """The parsed document, or None with the findings that say why it cannot be judged."""
    if len(data) > max_bytes:
        return None, [
            error(
                "cda.parse.too-large",
                f"the document is {len(data):,} bytes, above the {max_bytes:,}-byte limit; it was not read",
                source=SOURCE,
            )
        ]
    if not data.strip():
        return None, [error("cda.parse.empty", "the document is empty", source=SOURCE)]
    try:
        tree = etree.ElementTree(etree.fromstring(data, safe_parser()))
    except etree.XMLSyntaxError as exc:
        return None, [error("cda.parse.not-xml", f"not well-formed XML: {exc}", source=SOURCE)]
    except (ValueError, MemoryError) as exc:
        return None, [error("cda.parse.not-xml", f"cannot be read as XML: {exc}", source=SOURCE)]
    docinfo = tree.docinfo
    if getattr(docinfo, "doctype", "") or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        return None, [
            error(
                "cda.parse.doctype",
                "the document declares a DOCTYPE; a CDA needs none, and entities or external DTDs are refused",
                source=SOURCE,
            )
        ]
    root = tree.getroot()
    if any(isinstance(node, etree._Entity) for node in root.iter()):
        return None, [error("cda.parse.entity", "the document uses entity references; they are refused", source=SOURCE)]
    if root.tag == CLINICAL_DOCUMENT:
        return ParsedCda(tree, root, False), []
    embedded = list(root.iter(CLINICAL_DOCUMENT))
    if len(embedded) == 1:
        return ParsedCda(tree, embedded[0], True), [
            warning(
                "cda.parse.embedded",
                f"the root element is {root.tag}, not ClinicalDocument; the one ClinicalDocument inside it "
                "(an auto-présentable document) is judged, and the schematrons run on the whole file as ANS does",
                location=tree.getpath(embedded[0]),
                source=SOURCE,
            )
        ]
    return None, [
        error(
            "cda.parse.root",
            f"the root element is {root.tag}, not {{{HL7}}}ClinicalDocument"
            + (f", and it embeds {len(embedded)} ClinicalDocuments" if embedded else ""),
            location="/" + etree.QName(root).localname,
            source=SOURCE,
        )
    ]
