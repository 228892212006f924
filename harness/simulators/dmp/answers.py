"""The XML bodies the simulated DMP answers: RegistryResponse, AdhocQueryResponse, RetrieveDocumentSetResponse.

Kept apart from the decisions so that the element order of the ebRS 3.0 and XDS.b schemas
(``RegistryErrorList`` before ``RegistryObjectList``; ``RegistryResponse`` before the
``DocumentResponse`` elements) is written in one place.
"""

from __future__ import annotations

from lxml import etree

from harness.simulators.dmp.ebxml import QUERY, RIM, RS, SEVERITY_ERROR, SEVERITY_WARNING, XDSB, XOP, ResponseStatus
from harness.simulators.dmp.records import RegistryError
from harness.simulators.dmp.store import StoredEntry


def registry_response(status: ResponseStatus, errors: list[RegistryError]) -> etree._Element:
    """``rs:RegistryResponse`` with its ``RegistryErrorList`` when there are errors or warnings."""
    root = etree.Element(f"{{{RS}}}RegistryResponse", nsmap={"rs": RS}, status=status.urn)
    _errors(root, errors)
    return root


def adhoc_query_response(
    status: ResponseStatus, errors: list[RegistryError], objects: list[etree._Element]
) -> etree._Element:
    """``query:AdhocQueryResponse`` holding ``objects`` in its ``rim:RegistryObjectList``."""
    root = etree.Element(
        f"{{{QUERY}}}AdhocQueryResponse", nsmap={"query": QUERY, "rs": RS, "rim": RIM}, status=status.urn
    )
    _errors(root, errors)
    holder = etree.SubElement(root, f"{{{RIM}}}RegistryObjectList")
    for element in objects:
        holder.append(element)
    return root


def retrieve_response(
    status: ResponseStatus, errors: list[RegistryError], documents: list[tuple[StoredEntry, str]]
) -> etree._Element:
    """``xdsb:RetrieveDocumentSetResponse``; each document is an ``xop:Include`` of the given Content-ID."""
    root = etree.Element(f"{{{XDSB}}}RetrieveDocumentSetResponse", nsmap={"xdsb": XDSB, "rs": RS, "xop": XOP})
    root.append(registry_response(status, errors))
    for stored, content_id in documents:
        item = etree.SubElement(root, f"{{{XDSB}}}DocumentResponse")
        etree.SubElement(item, f"{{{XDSB}}}RepositoryUniqueId").text = stored.repository_unique_id
        etree.SubElement(item, f"{{{XDSB}}}DocumentUniqueId").text = stored.unique_id
        etree.SubElement(item, f"{{{XDSB}}}mimeType").text = stored.mime_type or "application/octet-stream"
        document = etree.SubElement(item, f"{{{XDSB}}}Document")
        etree.SubElement(document, f"{{{XOP}}}Include", href=f"cid:{content_id}")
    return root


def _errors(parent: etree._Element, errors: list[RegistryError]) -> None:
    if not errors:
        return
    highest = SEVERITY_ERROR if any(e.is_error for e in errors) else SEVERITY_WARNING
    holder = etree.SubElement(parent, f"{{{RS}}}RegistryErrorList", highestSeverity=highest)
    for problem in errors:
        item = etree.SubElement(holder, f"{{{RS}}}RegistryError")
        item.set("errorCode", problem.code)
        item.set("codeContext", problem.context)
        item.set("severity", problem.severity)
        if problem.location:
            item.set("location", problem.location)
