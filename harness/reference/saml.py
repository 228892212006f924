"""The signed SAML 2.0 assertion that stands for the user's CPS card in INSi calls.

Outside the "Centres de santé" profile the practice calls INSi in CPS mode: the TLS
client certificate is the CPS certificate and ``wsse:Security`` carries this
assertion, signed with the CPS key (RSA-SHA256, exclusive c14n, enveloped, signature
placed right after ``Issuer`` as the SAML schema wants).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import methods
from signxml.signer import XMLSigner

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
IDNAT_PS_OID = "1.2.250.1.71.4.2.1"


def holder_id(cert_pem: bytes) -> str:
    """The identifier of a certificate's holder: UID, else serialNumber, else CN of its subject."""
    subject = x509.load_pem_x509_certificate(cert_pem).subject
    for oid in (NameOID.USER_ID, NameOID.SERIAL_NUMBER, NameOID.COMMON_NAME):
        values = subject.get_attributes_for_oid(oid)
        if values:
            value = values[0].value
            return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return subject.rfc4514_string()


def cps_assertion(
    cert_pem: bytes, key_pem: bytes, idnat_ps: str, now: datetime, software: str, version: str
) -> etree._Element:
    """A signed assertion naming ``idnat_ps`` as the authenticated health professional."""
    instant = _instant(now)
    assertion = etree.Element(
        f"{{{SAML}}}Assertion",
        nsmap={"saml": SAML, "ds": DS},
        ID=f"_{uuid.uuid4()}",
        IssueInstant=instant,
        Version="2.0",
    )
    issuer = etree.SubElement(assertion, f"{{{SAML}}}Issuer")
    issuer.text = idnat_ps
    etree.SubElement(assertion, f"{{{DS}}}Signature", Id="placeholder")
    subject = etree.SubElement(assertion, f"{{{SAML}}}Subject")
    name_id = etree.SubElement(
        subject, f"{{{SAML}}}NameID", Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
    )
    name_id.text = idnat_ps
    etree.SubElement(subject, f"{{{SAML}}}SubjectConfirmation", Method="urn:oasis:names:tc:SAML:2.0:cm:sender-vouches")
    etree.SubElement(
        assertion,
        f"{{{SAML}}}Conditions",
        NotBefore=_instant(now - timedelta(minutes=1)),
        NotOnOrAfter=_instant(now + timedelta(minutes=10)),
    )
    authn = etree.SubElement(assertion, f"{{{SAML}}}AuthnStatement", AuthnInstant=instant)
    context = etree.SubElement(etree.SubElement(authn, f"{{{SAML}}}AuthnContext"), f"{{{SAML}}}AuthnContextClassRef")
    context.text = "urn:oasis:names:tc:SAML:2.0:ac:classes:TLSClient"
    attributes = etree.SubElement(assertion, f"{{{SAML}}}AttributeStatement")
    for name, value in (
        ("Identifiant_PS", f"{idnat_ps}^^^&{IDNAT_PS_OID}&ISO"),
        ("Secteur_Activite", "SA07^1.2.250.1.71.4.2.4"),
        ("Mode_Acces", "normal"),
        ("LPS_Nom", software),
        ("LPS_Version", version),
    ):
        attribute = etree.SubElement(attributes, f"{{{SAML}}}Attribute", Name=name)
        etree.SubElement(attribute, f"{{{SAML}}}AttributeValue").text = value
    signer = XMLSigner(
        method=methods.enveloped,
        signature_algorithm="rsa-sha256",
        digest_algorithm="sha256",
        c14n_algorithm=EXC_C14N,
    )
    signed: etree._Element = signer.sign(assertion, key=key_pem, cert=cert_pem.decode("ascii"), id_attribute="ID")
    return signed


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
