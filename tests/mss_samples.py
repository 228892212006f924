"""MSSanté messages and IHE_XDM.ZIP packages built independently of the reference system, for tests.

A conforming package is made from the ANS N1 example (``../shared``) with ebRIM metadata
from :mod:`tests.xds_samples`; tests then break one thing at a time.
"""

from __future__ import annotations

import io
import zipfile
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from lxml import etree

from harness.validators.xds import RIM
from tests.pdf_samples import conforming_pdfa
from tests.xds_samples import submission_for

ANS_N1 = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "ans" / "TestContenuCDA-3-0" / "ExemplesCDA"
) / "DOC_NON_STRUCTURE_CDA-R2-N1.xml"
EXAMPLE_INS = ("279035121518989", "1.2.250.1.213.1.4.10")
"""The matricule INS and OID of the ANS N1 example's patient."""
SUT_BAL = "jean.testeur@cabinet-temoin.mssante.fr"
CORRESPONDENT = "helene.lefevre@ch-test.mssante.fr"
PASSWORD = "bal-test-password"


def metadata_for(cda: bytes, uri: str = "DOC0001.XML") -> bytes:
    """METADATA.XML for one CDA, its DocumentEntry pointing at ``uri``."""
    request = submission_for(cda)
    entry = next(request.iter(f"{{{RIM}}}ExtrinsicObject"))
    slot = etree.Element(f"{{{RIM}}}Slot", name="URI")
    etree.SubElement(etree.SubElement(slot, f"{{{RIM}}}ValueList"), f"{{{RIM}}}Value").text = uri
    entry.insert(0, slot)
    return bytes(etree.tostring(request, xml_declaration=True, encoding="UTF-8"))


def xdm_members(cda: bytes | None = None) -> dict[str, bytes]:
    cda = cda if cda is not None else ANS_N1.read_bytes()
    return {
        "INDEX.HTM": b"<html><body>IHE XDM</body></html>",
        "README.TXT": b"Package IHE XDM",
        "IHE_XDM/SUBSET01/METADATA.XML": metadata_for(cda),
        "IHE_XDM/SUBSET01/DOC0001.XML": cda,
        "IHE_XDM/SUBSET01/DOC0001.PDF": conforming_pdfa(),
    }


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def document_code(cda: bytes) -> str:
    """``ClinicalDocument/code/@code``."""
    root = etree.fromstring(cda, etree.XMLParser(resolve_entities=False, no_network=True))
    code = root.find("{urn:hl7-org:v3}code")
    return code.get("code", "") if code is not None else ""


def message_with_xdm(
    xdm: bytes | None,
    *,
    sender: str = SUT_BAL,
    to: str = CORRESPONDENT,
    padding: int = 0,
    codes: tuple[str, ...] | None = None,
) -> EmailMessage:
    """A message as a conforming LGC would send it, the XDM (if any) and a PDF attached."""
    message = EmailMessage()
    message["From"] = f"Dr Jean TESTEUR Cabinet Temoin <{sender}>"
    message["To"] = to
    message["Date"] = formatdate()
    message["Message-ID"] = make_msgid(domain=sender.split("@")[1])
    message["Subject"] = "XDM/1.0/DDM+DOCUMENT NON STRUCTURE CORSE FIGATELLIX 12/10/1988"
    message["X-MSS-NIL"] = "DEV000042"
    message.set_content("Veuillez trouver ci-joint le document.")
    if xdm is not None:
        message["X-MSS-INS"] = "O"
        if codes is None and ANS_N1.is_file():
            codes = (document_code(ANS_N1.read_bytes()),)
        for code in codes or ():
            message["X-MSS-CODECDA"] = code
        message.add_attachment(conforming_pdfa(), maintype="application", subtype="pdf", filename="DOC0001.PDF")
        message.add_attachment(xdm, maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    if padding:
        message.add_attachment(bytes(padding), maintype="application", subtype="octet-stream", filename="PAD.BIN")
    return message
