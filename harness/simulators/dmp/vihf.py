"""VIHF verification: is the SAML 2.0 assertion in ``wsse:Security`` one the DMP would accept?

Every DMP request carries a VIHF (``docs/dmp-wire.md`` § VIHF): a SAML assertion signed
with the organisation certificate, saying who acts (structure, sector, role), for which
patient (``resource-id``) and with which software. This module verifies the signature
with signxml against the test PKI's CA bundle, then reads *only what the signature
covers* (``VerifyResult.signed_xml``), which defeats signature-wrapping; it checks the
validity window, the issuer and the required attributes. The known variances of the ANS
texts (``VIHF_Version`` 4.0, ``Authentification_mode`` spelling) are tolerated with a
warning finding. A refusal names the WS-Security fault to answer:
``wsse:FailedAuthentication`` when the assertion cannot be trusted (signature,
certificate, validity), ``wsse:InvalidSecurity`` when it is absent or incomplete.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree
from signxml.exceptions import InvalidInput, InvalidSignature
from signxml.verifier import SignatureConfiguration, XMLVerifier

from harness.findings import Finding, error, warning
from harness.simulators.dmp.ebxml import patient_key
from harness.simulators.dmp.soap import WSSE, Envelope

SAML2 = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
SOURCE = "dmp-simulator"
CLOCK_SKEW = timedelta(minutes=5)
X509_SUBJECT_NAME = "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"

SUBJECT_ID = "urn:oasis:names:tc:xspa:1.0:subject:subject-id"
ROLE = "urn:oasis:names:tc:xacml:2.0:subject:role"
PURPOSE_OF_USE = "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"
RESOURCE_ID = "urn:oasis:names:tc:xacml:2.0:resource:resource-id"

REQUIRED_ATTRIBUTES = {
    "VIHF_Version": "VIHF_Version",
    "Identifiant_Structure": "Identifiant_Structure",
    "Secteur_Activite": "Secteur_Activite",
    SUBJECT_ID: "subject-id",
    ROLE: "role",
    PURPOSE_OF_USE: "purposeofuse",
    RESOURCE_ID: "resource-id",
    "Ressource_URN": "Ressource_URN",
    "LPS_Nom": "LPS_Nom",
    "LPS_Version": "LPS_Version",
    "Authentification_Mode": "Authentification_Mode",
}
"""Attribute name → the suffix of its finding rule ``dmp.vihf.attribute.<suffix>``."""
VERSIONS = {"3.0": "", "4.0": "VIHF_Version 4.0 (table de correspondance de l'IG ANS; l'exemple de l'IG dit 3.0)"}
AUTHENTICATION_MODES = ("INDIRECTE", "DIRECTE")
_SECTEUR = re.compile(r"^SA\d{2}\^1\.2\.250\.1\.71\.4\.2\.4$")

INVALID_SECURITY = "InvalidSecurity"
FAILED_AUTHENTICATION = "FailedAuthentication"


@dataclass(frozen=True, slots=True)
class CodedValue:
    """An HL7 v3 coded attribute value (``Role``, ``PurposeOfUse``)."""

    code: str
    code_system: str = ""
    display_name: str = ""


@dataclass(slots=True, kw_only=True)
class VihfAssertion:
    """What a verified VIHF says (read from the signed assertion only)."""

    id: str
    issue_instant: str
    issuer: str
    issuer_format: str
    name_id: str
    not_before: str
    not_on_or_after: str
    authn_context: str
    attributes: dict[str, list[str]] = field(default_factory=dict)
    """Every attribute by the name sent, values as text (an HL7 value gives its ``code``)."""
    coded: dict[str, list[CodedValue]] = field(default_factory=dict)
    """The HL7 v3 coded values by attribute name (role, purpose of use)."""
    signer: str = ""
    """Subject (RFC 4514) of the certificate that signed it."""
    element: etree._Element | None = None

    def value(self, name: str) -> str:
        """First value of ``name``, looked up case-insensitively (``Authentification_mode`` counts)."""
        for sent, values in self.attributes.items():
            if sent.lower() == name.lower() and values:
                return values[0]
        return ""

    @property
    def version(self) -> str:
        return self.value("VIHF_Version")

    @property
    def resource_id(self) -> str:
        return self.value(RESOURCE_ID)

    @property
    def authentication_mode(self) -> str:
        return self.value("Authentification_Mode")

    @property
    def structure(self) -> str:
        return self.value("Identifiant_Structure")

    @property
    def roles(self) -> list[CodedValue]:
        return list(self.coded.get(ROLE, []))


@dataclass(slots=True, kw_only=True)
class VihfCheck:
    """The verdict on one request's VIHF.

    Attributes:
        accepted: whether the request may be served.
        fault: the ``wsse:`` fault subcode to answer when refused (``InvalidSecurity``, ``FailedAuthentication``).
        reason: short machine name of the refusal (``missing``, ``signature``, ``expired``, ``attribute``...).
        message: the human text of the refusal (goes into the SOAP fault).
        findings: every problem noticed, refusal or not.
        assertion: what the assertion says, once its signature holds.
    """

    accepted: bool
    fault: str = ""
    reason: str = ""
    message: str = ""
    findings: list[Finding] = field(default_factory=list)
    assertion: VihfAssertion | None = None

    def refuse(self, fault: str, reason: str, rule: str, message: str, location: str) -> VihfCheck:
        self.accepted = False
        self.fault, self.reason, self.message = fault, reason, message
        self.findings.append(error(rule, message, location, SOURCE))
        return self

    def to_meta(self) -> dict[str, object]:
        """The JSON-ready summary recorded in the exchange."""
        assertion = self.assertion
        return {
            "accepted": self.accepted,
            "fault": self.fault or None,
            "reason": self.reason or None,
            "message": self.message or None,
            "signer": assertion.signer if assertion else None,
            "version": assertion.version if assertion else None,
            "resource_id": assertion.resource_id if assertion else None,
            "attributes": dict(assertion.attributes) if assertion else {},
            "findings": [f.to_dict() for f in self.findings],
        }


class VihfVerifier:
    """Verifies VIHF assertions against the CA bundle of the test PKI."""

    def __init__(self, ca_bundle_path: Path) -> None:
        self.ca_bundle_path = Path(ca_bundle_path)

    def verify(self, envelope: Envelope, tls_subject: str | None = None, now: datetime | None = None) -> VihfCheck:
        """Check the VIHF of ``envelope`` (``tls_subject``: the TLS client certificate's subject)."""
        now = now or datetime.now(UTC)
        check = VihfCheck(accepted=True)
        security = envelope.header_block(WSSE, "Security")
        assertions = security.findall(f"{{{SAML2}}}Assertion") if security is not None else []
        if not assertions:
            where = "wsse:Security" if security is not None else "soap:Header"
            return check.refuse(
                INVALID_SECURITY,
                "missing",
                "dmp.vihf.missing",
                "VIHF absent: aucune saml2:Assertion dans wsse:Security",
                where,
            )
        if len(assertions) > 1:
            check.findings.append(
                warning(
                    "dmp.vihf.structure",
                    f"{len(assertions)} assertions in wsse:Security; the first is used",
                    "wsse:Security",
                    SOURCE,
                )
            )
        header_assertion = assertions[0]
        signed, signer = self._signed(header_assertion, check)
        if signed is None or signer is None:
            return check
        assertion = _read(signed, signer)
        check.assertion = assertion
        if not _structure(signed, assertion, check):
            return check
        if not _issuer(assertion, signer, check):
            return check
        if not _window(assertion, now, check):
            return check
        if not _attributes(assertion, check):
            return check
        if tls_subject is not None and tls_subject != assertion.signer:
            check.findings.append(
                warning(
                    "dmp.vihf.signer",
                    f"the VIHF is signed by {assertion.signer}, not by the TLS client certificate {tls_subject}",
                    "saml2:Assertion/ds:Signature",
                    SOURCE,
                )
            )
        return check

    def _signed(
        self, assertion: etree._Element, check: VihfCheck
    ) -> tuple[etree._Element | None, x509.Certificate | None]:
        try:
            result = XMLVerifier().verify(
                etree.tostring(assertion),
                ca_pem_file=str(self.ca_bundle_path),
                expect_config=SignatureConfiguration(expect_references=1, location="./"),
            )
        except (InvalidInput, InvalidSignature) as exc:  # InvalidCertificate and InvalidDigest are InvalidSignature
            check.refuse(
                FAILED_AUTHENTICATION,
                "signature",
                "dmp.vihf.signature",
                f"signature du VIHF invalide: {type(exc).__name__}: {exc}",
                "saml2:Assertion/ds:Signature",
            )
            return None, None
        except Exception as exc:  # signxml may raise lxml or crypto errors on hostile input
            check.refuse(
                FAILED_AUTHENTICATION,
                "signature",
                "dmp.vihf.signature",
                f"signature du VIHF illisible: {type(exc).__name__}: {exc}",
                "saml2:Assertion/ds:Signature",
            )
            return None, None
        if isinstance(result, list):  # one reference expected, so never a list; typed as one anyway
            result = result[0]
        signed = result.signed_xml
        signer = _signer(assertion, result.signature_key)
        if signed is None or etree.QName(signed).localname != "Assertion" or signed.get("ID") != assertion.get("ID"):
            check.refuse(
                FAILED_AUTHENTICATION,
                "signature",
                "dmp.vihf.signature",
                "la signature du VIHF ne couvre pas l'assertion elle-même",
                "saml2:Assertion/ds:Signature/ds:SignedInfo/ds:Reference",
            )
            return None, None
        if signer is None:
            check.refuse(
                FAILED_AUTHENTICATION,
                "signature",
                "dmp.vihf.signature",
                "certificat signataire du VIHF introuvable dans ds:KeyInfo",
                "saml2:Assertion/ds:Signature/ds:KeyInfo",
            )
            return None, None
        return signed, signer


# -- reading -------------------------------------------------------------------------------------


def _read(signed: etree._Element, signer: x509.Certificate) -> VihfAssertion:
    conditions = signed.find(f"{{{SAML2}}}Conditions")
    issuer = signed.find(f"{{{SAML2}}}Issuer")
    attributes: dict[str, list[str]] = {}
    coded: dict[str, list[CodedValue]] = {}
    for attribute in signed.iterfind(f"{{{SAML2}}}AttributeStatement/{{{SAML2}}}Attribute"):
        name = attribute.get("Name", "").strip()
        values = attributes.setdefault(name, [])
        for value in attribute.iterfind(f"{{{SAML2}}}AttributeValue"):
            child = next((c for c in value if isinstance(c.tag, str)), None)
            if child is not None:
                item = CodedValue(child.get("code", ""), child.get("codeSystem", ""), child.get("displayName", ""))
                coded.setdefault(name, []).append(item)
                values.append(item.code)
            else:
                values.append((value.text or "").strip())
    return VihfAssertion(
        id=signed.get("ID", ""),
        issue_instant=signed.get("IssueInstant", ""),
        issuer=(issuer.text or "").strip() if issuer is not None else "",
        issuer_format=issuer.get("Format", "") if issuer is not None else "",
        name_id=(signed.findtext(f"{{{SAML2}}}Subject/{{{SAML2}}}NameID") or "").strip(),
        not_before=conditions.get("NotBefore", "") if conditions is not None else "",
        not_on_or_after=conditions.get("NotOnOrAfter", "") if conditions is not None else "",
        authn_context=(
            signed.findtext(f"{{{SAML2}}}AuthnStatement/{{{SAML2}}}AuthnContext/{{{SAML2}}}AuthnContextClassRef") or ""
        ).strip(),
        attributes=attributes,
        coded=coded,
        signer=signer.subject.rfc4514_string(),
        element=signed,
    )


def _structure(signed: etree._Element, assertion: VihfAssertion, check: VihfCheck) -> bool:
    problems = []
    if signed.get("Version") != "2.0":
        problems.append(f"Version={signed.get('Version')!r} (2.0 attendu)")
    if not assertion.id:
        problems.append("ID absent")
    if not assertion.issue_instant:
        problems.append("IssueInstant absent")
    if not assertion.name_id:
        problems.append("Subject/NameID absent")
    if problems:
        check.refuse(
            INVALID_SECURITY,
            "structure",
            "dmp.vihf.structure",
            "VIHF mal formé: " + "; ".join(problems),
            "saml2:Assertion",
        )
        return False
    if signed.find(f"{{{SAML2}}}AuthnStatement") is None:
        check.findings.append(
            warning("dmp.vihf.authn-statement", "the VIHF has no AuthnStatement", "saml2:Assertion", SOURCE)
        )
    return True


def _issuer(assertion: VihfAssertion, signer: x509.Certificate, check: VihfCheck) -> bool:
    if assertion.issuer_format and assertion.issuer_format != X509_SUBJECT_NAME:
        check.findings.append(
            warning(
                "dmp.vihf.issuer-format",
                f"Issuer Format is {assertion.issuer_format!r}, expected {X509_SUBJECT_NAME}",
                "saml2:Issuer/@Format",
                SOURCE,
            )
        )
    if not _same_name(assertion.issuer, signer.subject):
        check.refuse(
            INVALID_SECURITY,
            "issuer",
            "dmp.vihf.issuer",
            f"Issuer {assertion.issuer!r} n'est pas le DN du certificat signataire ({assertion.signer})",
            "saml2:Issuer",
        )
        return False
    return True


def _same_name(text: str, subject: x509.Name) -> bool:
    """Whether ``text`` is the DN ``subject``, attributes compared in any order (RFC 4514 or LDAP order)."""
    try:
        parsed = x509.Name.from_rfc4514_string(text)
    except ValueError:
        return False

    def attributes(name: x509.Name) -> list[tuple[str, str]]:
        return sorted((a.oid.dotted_string, str(a.value)) for a in name)

    return attributes(parsed) == attributes(subject)


def _window(assertion: VihfAssertion, now: datetime, check: VihfCheck) -> bool:
    not_before, not_after = _instant(assertion.not_before), _instant(assertion.not_on_or_after)
    if not_after is None:
        check.refuse(
            INVALID_SECURITY,
            "conditions",
            "dmp.vihf.conditions",
            "VIHF sans Conditions/@NotOnOrAfter lisible: sa durée de validité doit être bornée",
            "saml2:Conditions",
        )
        return False
    if not_before is not None and now + CLOCK_SKEW < not_before:
        check.refuse(
            FAILED_AUTHENTICATION,
            "not-yet-valid",
            "dmp.vihf.not-yet-valid",
            f"VIHF pas encore valide (NotBefore {assertion.not_before})",
            "saml2:Conditions/@NotBefore",
        )
        return False
    if now - CLOCK_SKEW >= not_after:
        check.refuse(
            FAILED_AUTHENTICATION,
            "expired",
            "dmp.vihf.expired",
            f"VIHF expiré (NotOnOrAfter {assertion.not_on_or_after})",
            "saml2:Conditions/@NotOnOrAfter",
        )
        return False
    return True


def _attributes(assertion: VihfAssertion, check: VihfCheck) -> bool:
    missing: list[str] = []
    for name, suffix in REQUIRED_ATTRIBUTES.items():
        exact = assertion.attributes.get(name)
        if exact and any(exact):
            continue
        variants = [
            sent for sent, values in assertion.attributes.items() if sent.lower() == name.lower() and any(values)
        ]
        if variants:
            check.findings.append(
                warning(
                    "dmp.vihf.attribute-name",
                    f"attribute {variants[0]!r} accepted for {name!r} (spelling differs from the ANS mapping)",
                    f"saml2:Attribute[@Name='{variants[0]}']",
                    SOURCE,
                )
            )
            continue
        missing.append(name)
        check.findings.append(
            error(
                f"dmp.vihf.attribute.{suffix}",
                f"attribut VIHF obligatoire {name!r} absent ou vide",
                f"saml2:Attribute[@Name='{name}']",
                SOURCE,
            )
        )
    if missing:
        check.accepted = False
        check.fault, check.reason = INVALID_SECURITY, "attribute"
        check.message = "VIHF incomplet: attribut(s) obligatoire(s) absent(s): " + ", ".join(missing)
        return False
    return _values(assertion, check)


def _values(assertion: VihfAssertion, check: VihfCheck) -> bool:
    version = assertion.version
    if version not in VERSIONS:
        check.refuse(
            INVALID_SECURITY,
            "version",
            "dmp.vihf.version",
            f"VIHF_Version {version!r} inconnue (3.0 ou 4.0 attendue)",
            "saml2:Attribute[@Name='VIHF_Version']",
        )
        return False
    if VERSIONS[version]:
        check.findings.append(
            warning("dmp.vihf.version", VERSIONS[version], "saml2:Attribute[@Name='VIHF_Version']", SOURCE)
        )
    notes: list[tuple[str, str, str]] = []
    mode = assertion.authentication_mode
    if mode not in AUTHENTICATION_MODES:
        notes.append(
            (
                "dmp.vihf.authentication-mode",
                f"Authentification_Mode {mode!r} is neither INDIRECTE nor DIRECTE",
                "Authentification_Mode",
            )
        )
    if not _SECTEUR.match(assertion.value("Secteur_Activite")):
        notes.append(
            (
                "dmp.vihf.secteur-activite",
                f"Secteur_Activite {assertion.value('Secteur_Activite')!r} is not SAxx^1.2.250.1.71.4.2.4",
                "Secteur_Activite",
            )
        )
    if not any(role.code and role.code_system for role in assertion.roles):
        notes.append(("dmp.vihf.role", "the role attribute carries no HL7 Role element with code and codeSystem", ROLE))
    if assertion.value("Ressource_URN") != "urn:dmp":
        notes.append(
            (
                "dmp.vihf.ressource-urn",
                f"Ressource_URN is {assertion.value('Ressource_URN')!r}, expected urn:dmp",
                "Ressource_URN",
            )
        )
    if assertion.value(PURPOSE_OF_USE).lower() != "normal":
        notes.append(
            (
                "dmp.vihf.purposeofuse",
                f"purposeofuse is {assertion.value(PURPOSE_OF_USE)!r}, expected normal",
                PURPOSE_OF_USE,
            )
        )
    if patient_key(assertion.resource_id) is None:
        notes.append(
            ("dmp.vihf.resource-id", f"resource-id {assertion.resource_id!r} is not an INS in CX form", RESOURCE_ID)
        )
    for rule, message, name in notes:
        finder = error if rule == "dmp.vihf.resource-id" else warning
        check.findings.append(finder(rule, message, f"saml2:Attribute[@Name='{name}']", SOURCE))
    return True


def resource_id_finding(check: VihfCheck, patient_id: str) -> Finding | None:
    """An error when the VIHF's ``resource-id`` does not name the patient ``patient_id`` the request is about."""
    if check.assertion is None or not patient_id:
        return None
    sent = check.assertion.resource_id
    if patient_key(sent) is not None and patient_key(sent) == patient_key(patient_id):
        return None
    return error(
        "dmp.vihf.resource-id",
        f"le resource-id du VIHF ({sent!r}) ne désigne pas le patient de la requête ({patient_id!r})",
        f"saml2:Attribute[@Name='{RESOURCE_ID}']",
        SOURCE,
    )


# -- helpers -------------------------------------------------------------------------------------


def _signer(assertion: etree._Element, signature_key: object) -> x509.Certificate | None:
    """The certificate of the assertion's ``KeyInfo`` whose public key made the signature."""
    for text in assertion.iterfind(f".//{{{DS}}}X509Certificate"):
        body = "".join((text.text or "").split())
        try:
            certificate = x509.load_pem_x509_certificate(
                f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n".encode("ascii")
            )
        except (ValueError, UnicodeEncodeError):
            continue
        spki = certificate.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if isinstance(signature_key, bytes) and signature_key.strip() == spki.strip():
            return certificate
    return None


def _instant(value: str) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
