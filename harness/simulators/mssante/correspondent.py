"""Mail a correspondent sends to the SUT's BAL: what reception scenarios deliver through the operator.

A professional elsewhere writes to the LGC's user with a document in an ``IHE_XDM.ZIP``
(protocols.md §3.2: ``INDEX.HTM``, ``README.TXT``, ``IHE_XDM/SUBSET01/METADATA.XML`` and
the documents, each referenced by its DocumentEntry's ``URI`` slot). The receiving LGC
identifies the patient from the ``patientId`` of that metadata (MSS/CONF.24), so the
metadata built here carries exactly what a receiver reads: the patient's CX on the
submission set and on each entry, the entry's ``URI``, ``hash``, ``size`` and
``uniqueId``, and its ``mimeType``. It is not a full DMP metadata set (no class, type or
format codes): receivers read those from the CDA header.
"""

from __future__ import annotations

import hashlib
import io
import uuid
import zipfile
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid

from lxml import etree

from harness.validators.xds import RIM, STABLE_DOCUMENT_ENTRY, SUBMISSION_SET_NODE, Scheme

LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
SUBSET = "IHE_XDM/SUBSET01"


@dataclass(frozen=True, slots=True)
class XdmDocument:
    """One document for the package: the CDA and, when there is one, its PDF rendering."""

    cda: bytes
    unique_id: str
    pdf: bytes | None = None


def patient_cx(matricule: str, oid: str) -> str:
    """The XDS patient identifier for an INS: ``matricule^^^&oid&ISO^NH``."""
    return f"{matricule}^^^&{oid}&ISO^NH"


def _slot(parent: etree._Element, name: str, value: str) -> None:
    slot = etree.SubElement(parent, f"{{{RIM}}}Slot", name=name)
    etree.SubElement(etree.SubElement(slot, f"{{{RIM}}}ValueList"), f"{{{RIM}}}Value").text = value


def _identifier(parent: etree._Element, scheme: str, value: str, owner: str, label: str) -> None:
    found = etree.SubElement(
        parent,
        f"{{{RIM}}}ExternalIdentifier",
        id=f"urn:uuid:{uuid.uuid4()}",
        identificationScheme=scheme,
        registryObject=owner,
        value=value,
    )
    etree.SubElement(etree.SubElement(found, f"{{{RIM}}}Name"), f"{{{RIM}}}LocalizedString", value=label)


def metadata(documents: list[tuple[str, XdmDocument]], cx: str) -> bytes:
    """METADATA.XML for ``documents`` (file name in the subset, document) of the patient ``cx``."""
    request = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    objects = etree.SubElement(request, f"{{{RIM}}}RegistryObjectList")
    for number, (name, document) in enumerate(documents, start=1):
        entry_id = f"Document{number:02d}"
        entry = etree.SubElement(
            objects, f"{{{RIM}}}ExtrinsicObject", id=entry_id, mimeType="text/xml", objectType=STABLE_DOCUMENT_ENTRY
        )
        _slot(entry, "URI", name)
        _slot(entry, "hash", hashlib.sha1(document.cda).hexdigest())  # XDS hashes are SHA-1
        _slot(entry, "size", str(len(document.cda)))
        _identifier(entry, Scheme.ENTRY_PATIENT_ID, cx, entry_id, "XDSDocumentEntry.patientId")
        _identifier(entry, Scheme.ENTRY_UNIQUE_ID, document.unique_id, entry_id, "XDSDocumentEntry.uniqueId")
    package = etree.SubElement(objects, f"{{{RIM}}}RegistryPackage", id="SubmissionSet01")
    _slot(package, "submissionTime", formatdate(usegmt=True))
    _identifier(package, Scheme.SET_PATIENT_ID, cx, "SubmissionSet01", "XDSSubmissionSet.patientId")
    _identifier(package, Scheme.SET_UNIQUE_ID, f"2.25.{uuid.uuid4().int}", "SubmissionSet01", "uniqueId")
    etree.SubElement(
        objects,
        f"{{{RIM}}}Classification",
        id="SubmissionSetClassification",
        classificationNode=SUBMISSION_SET_NODE,
        classifiedObject="SubmissionSet01",
    )
    return bytes(etree.tostring(request, xml_declaration=True, encoding="UTF-8"))


def xdm_package(documents: list[XdmDocument], cx: str) -> bytes:
    """The ``IHE_XDM.ZIP`` bytes for the patient ``cx``."""
    named = [(f"DOC{n:04d}.XML", d) for n, d in enumerate(documents, start=1)]
    members = {
        "INDEX.HTM": b"<html><body><p>IHE XDM package</p></body></html>",
        "README.TXT": b"IHE XDM package written by the Segur conformance harness (correspondent simulator).\r\n",
        f"{SUBSET}/METADATA.XML": metadata(named, cx),
    }
    for name, document in named:
        members[f"{SUBSET}/{name}"] = document.cda
        if document.pdf is not None:
            members[f"{SUBSET}/{name[:-4]}.PDF"] = document.pdf
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def correspondent_message(
    sender: str,
    to: str,
    subject: str,
    text: str,
    *,
    xdm: bytes | None = None,
    pdf: bytes | None = None,
    read_receipt: bool = False,
    sender_label: str = "",
) -> tuple[str, bytes]:
    """The message (its Message-ID and its bytes, CRLF) a correspondent sends to the SUT's BAL."""
    message = EmailMessage()
    message_id = make_msgid(domain=sender.split("@", 1)[-1])
    message["From"] = f"{sender_label} <{sender}>" if sender_label else sender
    message["To"] = to
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = message_id
    message["Subject"] = subject
    message["X-MSS-NIL"] = "HARNESS-CORRESPONDENT"
    if read_receipt:
        message["Disposition-Notification-To"] = sender
    message.set_content(text)
    if pdf is not None:
        message.add_attachment(pdf, maintype="application", subtype="pdf", filename="DOC0001.PDF")
    if xdm is not None:
        message.add_attachment(xdm, maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    return message_id, message.as_bytes(policy=SMTP)
