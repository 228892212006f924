"""The VIHF: the signed SAML 2.0 assertion that identifies the practice and the user to the DMP.

Every DMP request carries one in ``wsse:Security`` (shared/docs/protocols.md §2.2, the
ANS mapping): issued and signed with the organisation certificate (the practice
authenticates "indirectly", ``Authentification_Mode`` INDIRECTE), naming the
professional in ``Subject/NameID``, valid a few minutes, with the attributes the DMP
reads (structure, sector, role, purpose of use, the patient's INS, the software).
The signature follows the CPS assertion of :mod:`harness.reference.saml`: RSA-SHA256,
exclusive c14n, enveloped, placed right after ``Issuer``. The VIHF defects of
:mod:`harness.reference.defects` are switched here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from lxml import etree
from signxml import methods
from signxml.signer import XMLSigner

from harness.reference.saml import DS, EXC_C14N, SAML, holder_id

HL7 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
VIHF_VERSION = "3.0"
LIFETIME = timedelta(minutes=5)
"""How long a VIHF is valid: a few minutes, for one request."""
EXPIRED_BY = timedelta(hours=1)
"""How far in the past the ``dmp-expired-vihf`` defect puts NotOnOrAfter (beyond any clock skew)."""
PURPOSE_OF_USE_SYSTEM = "1.2.250.1.213.1.1.4.248"
PROFESSION_SYSTEM = "1.2.250.1.213.1.1.4.5"
SECTOR_SYSTEM = "1.2.250.1.71.4.2.4"


@dataclass(frozen=True, slots=True)
class VihfSubject:
    """Who acts, where, about whom: what the assertion says besides the signing certificate."""

    user_id: str
    """The professional's national identifier (IdNat_PS), ``Subject/NameID``."""
    user_name: str
    """subject-id: the user's name (and service)."""
    role_code: str
    role_display: str
    sector: str
    """Secteur_Activite code (TRE_R02, e.g. ``SA07``)."""
    patient_cx: str
    """resource-id: the patient's INS in CX form, as the XDS patientId."""
    software: str
    version: str


def vihf_assertion(
    subject: VihfSubject, cert_pem: bytes, key_pem: bytes, now: datetime, defects: frozenset[str] = frozenset()
) -> etree._Element:
    """The VIHF for one request at ``now``, signed with the organisation key (unless a defect says otherwise)."""
    issued = now - 2 * EXPIRED_BY if "dmp-expired-vihf" in defects else now
    not_on_or_after = now - EXPIRED_BY if "dmp-expired-vihf" in defects else now + LIFETIME
    certificate = x509.load_pem_x509_certificate(cert_pem)
    assertion = etree.Element(
        f"{{{SAML}}}Assertion",
        nsmap={"saml2": SAML, "ds": DS, "xsi": XSI},
        ID=f"_{uuid.uuid4()}",
        IssueInstant=_instant(issued),
        Version="2.0",
    )
    issuer = etree.SubElement(
        assertion, f"{{{SAML}}}Issuer", Format="urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"
    )
    issuer.text = certificate.subject.rfc4514_string()
    placeholder = etree.SubElement(assertion, f"{{{DS}}}Signature", Id="placeholder")
    subject_element = etree.SubElement(assertion, f"{{{SAML}}}Subject")
    name_id = etree.SubElement(
        subject_element, f"{{{SAML}}}NameID", Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
    )
    name_id.text = subject.user_id
    etree.SubElement(
        subject_element, f"{{{SAML}}}SubjectConfirmation", Method="urn:oasis:names:tc:SAML:2.0:cm:sender-vouches"
    )
    etree.SubElement(
        assertion,
        f"{{{SAML}}}Conditions",
        NotBefore=_instant(issued - timedelta(minutes=1)),
        NotOnOrAfter=_instant(not_on_or_after),
    )
    authn = etree.SubElement(assertion, f"{{{SAML}}}AuthnStatement", AuthnInstant=_instant(issued))
    context = etree.SubElement(etree.SubElement(authn, f"{{{SAML}}}AuthnContext"), f"{{{SAML}}}AuthnContextClassRef")
    context.text = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified"
    _attributes(etree.SubElement(assertion, f"{{{SAML}}}AttributeStatement"), subject, holder_id(cert_pem))
    if "dmp-unsigned-vihf" in defects:
        assertion.remove(placeholder)
        return assertion
    signer = XMLSigner(
        method=methods.enveloped,
        signature_algorithm="rsa-sha256",
        digest_algorithm="sha256",
        c14n_algorithm=EXC_C14N,
    )
    signed: etree._Element = signer.sign(assertion, key=key_pem, cert=cert_pem.decode("ascii"), id_attribute="ID")
    return signed


def _attributes(statement: etree._Element, subject: VihfSubject, structure_id: str) -> None:
    for name, value in (
        ("VIHF_Version", VIHF_VERSION),
        ("Authentification_Mode", "INDIRECTE"),
        ("Identifiant_Structure", structure_id),
        ("Secteur_Activite", f"{subject.sector}^{SECTOR_SYSTEM}"),
        ("urn:oasis:names:tc:xspa:1.0:subject:subject-id", subject.user_name),
        ("urn:oasis:names:tc:xacml:2.0:resource:resource-id", subject.patient_cx),
        ("Ressource_URN", "urn:dmp"),
        ("LPS_Nom", subject.software),
        ("LPS_Version", subject.version),
    ):
        etree.SubElement(_attribute(statement, name), f"{{{SAML}}}AttributeValue").text = value
    _coded(
        statement,
        "urn:oasis:names:tc:xacml:2.0:subject:role",
        "Role",
        subject.role_code,
        PROFESSION_SYSTEM,
        subject.role_display,
    )
    _coded(
        statement,
        "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse",
        "PurposeOfUse",
        "normal",
        PURPOSE_OF_USE_SYSTEM,
        "Accès normal",
    )


def _attribute(statement: etree._Element, name: str) -> etree._Element:
    return etree.SubElement(statement, f"{{{SAML}}}Attribute", Name=name)


def _coded(statement: etree._Element, name: str, tag: str, code: str, system: str, display: str) -> None:
    """An attribute whose value is an HL7 v3 CE element (``xsi:type="CE"``), as the VIHF writes roles."""
    value = etree.SubElement(_attribute(statement, name), f"{{{SAML}}}AttributeValue")
    default_namespace: Any = {None: HL7}  # lxml's stubs do not type the default-namespace key
    element = etree.SubElement(
        value, f"{{{HL7}}}{tag}", nsmap=default_namespace, code=code, codeSystem=system, displayName=display
    )
    element.set(f"{{{XSI}}}type", "CE")


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
