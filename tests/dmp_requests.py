"""An independent DMP client for the simulator's tests, built by hand from ``docs/dmp-wire.md``.

Nothing here comes from the simulator's package: the ebRIM metadata is written element by
element with lxml, the VIHF is signed with signxml, the MTOM body is framed by hand, the
requests travel with ``requests`` over mutual TLS, and MTOM answers are split with
requests-toolbelt's decoder. So "the simulator accepts a submission built by an
independent client" is a real statement, and a shared misreading of the contract would
have to be made twice to go unnoticed.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import requests
from lxml import etree
from requests_toolbelt.multipart.decoder import MultipartDecoder
from signxml import XMLSigner, methods

from harness.pki import CertBundle, TestPki

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DSIG = "http://www.w3.org/2000/09/xmldsig#"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
HL7V3 = "urn:hl7-org:v3"
RIM_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
LCM_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RS_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
QUERY_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
XDSB_NS = "urn:ihe:iti:xds-b:2007"
XOP_NS = "http://www.w3.org/2004/08/xop/include"
TD_NS = "urn:segur-harness:dmp:td"
NS = {
    "env": SOAP12,
    "wsa": WSA,
    "wsse": WSSE,
    "saml": SAML,
    "rim": RIM_NS,
    "lcm": LCM_NS,
    "rs": RS_NS,
    "query": QUERY_NS,
    "xdsb": XDSB_NS,
    "xop": XOP_NS,
    "td": TD_NS,
}

ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
ITI57 = "urn:ihe:iti:2010:UpdateDocumentSet"
TD02 = "urn:segur-harness:dmp:td0.2"
TD03 = "urn:segur-harness:dmp:td0.3"

FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
FIND_SUBMISSION_SETS = "urn:uuid:f26abbcb-ac74-4422-8a30-edb644bbc1a9"
GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
GET_ASSOCIATIONS = "urn:uuid:a7ae438b-4bc2-4642-93e9-be891f7bb155"
GET_DOCUMENTS_AND_ASSOCIATIONS = "urn:uuid:bab9529a-4a10-40b3-a01f-f68a615d247a"

APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
DELETED = "urn:asip:ci-sis:2010:StatusType:Deleted"

INS_MATRICULE = "279035121518989"
INS_OID = "1.2.250.1.213.1.4.10"
OTHER_MATRICULE = "100000000000001"
"""A second, synthetic patient (an invented number, used only as 'someone else')."""


def cx(matricule: str = INS_MATRICULE, oid: str = INS_OID) -> str:
    return f"{matricule}^^^&{oid}&ISO^NH"


# -- the VIHF ------------------------------------------------------------------------------------


@dataclass
class VihfOptions:
    """What a test may change in the VIHF it sends."""

    version: str = "3.0"
    mode_name: str = "Authentification_Mode"
    omit: tuple[str, ...] = ()
    valid_from: timedelta = timedelta(minutes=-1)
    valid_for: timedelta = timedelta(minutes=5)
    issuer: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


def vihf(bundle: CertBundle, resource_id: str, options: VihfOptions | None = None) -> etree._Element:
    """A VIHF assertion signed (enveloped, exc-c14n, rsa-sha256) with ``bundle``'s key."""
    options = options or VihfOptions()
    now = datetime.now(UTC).replace(microsecond=0)
    assertion_id = "_" + uuid.uuid4().hex
    assertion = etree.Element(
        f"{{{SAML}}}Assertion",
        nsmap={"saml2": SAML, "xsi": XSI_NS},
        ID=assertion_id,
        IssueInstant=_instant(now),
        Version="2.0",
    )
    issuer = etree.SubElement(
        assertion, f"{{{SAML}}}Issuer", Format="urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"
    )
    issuer.text = options.issuer if options.issuer is not None else bundle.certificate.subject.rfc4514_string()
    etree.SubElement(assertion, f"{{{DSIG}}}Signature", nsmap={"ds": DSIG}, Id="placeholder")
    subject = etree.SubElement(assertion, f"{{{SAML}}}Subject")
    etree.SubElement(subject, f"{{{SAML}}}NameID").text = "Logiciel de test, LGC, cabinet"
    etree.SubElement(
        assertion,
        f"{{{SAML}}}Conditions",
        NotBefore=_instant(now + options.valid_from),
        NotOnOrAfter=_instant(now + options.valid_from + options.valid_for),
    )
    authn = etree.SubElement(assertion, f"{{{SAML}}}AuthnStatement", AuthnInstant=_instant(now))
    context = etree.SubElement(etree.SubElement(authn, f"{{{SAML}}}AuthnContext"), f"{{{SAML}}}AuthnContextClassRef")
    context.text = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified"
    statement = etree.SubElement(assertion, f"{{{SAML}}}AttributeStatement")
    attributes: dict[str, str | etree._Element] = {
        "VIHF_Version": options.version,
        "Identifiant_Structure": "1990000010",
        "Secteur_Activite": "SA07^1.2.250.1.71.4.2.4",
        "urn:oasis:names:tc:xspa:1.0:subject:subject-id": "LGC Test, modèle 1, cabinet",
        "urn:oasis:names:tc:xacml:2.0:subject:role": _role(),
        "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse": "normal",
        "urn:oasis:names:tc:xacml:2.0:resource:resource-id": resource_id,
        "Ressource_URN": "urn:dmp",
        "LPS_Nom": "LGC-TEST",
        "LPS_Version": "1.0",
        options.mode_name: "INDIRECTE",
        **options.extra,
    }
    for name, value in attributes.items():
        if name in options.omit:
            continue
        attribute = etree.SubElement(statement, f"{{{SAML}}}Attribute", Name=name)
        holder = etree.SubElement(attribute, f"{{{SAML}}}AttributeValue")
        if isinstance(value, str):
            holder.text = value
        else:
            holder.append(value)
    signer = XMLSigner(
        method=methods.enveloped,
        signature_algorithm="rsa-sha256",
        digest_algorithm="sha256",
        c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#",
    )
    signed: etree._Element = signer.sign(
        assertion, key=bundle.key_pem, cert=bundle.cert_pem.decode(), reference_uri=assertion_id, id_attribute="ID"
    )
    return signed


def _role() -> etree._Element:
    role = etree.Element(f"{{{HL7V3}}}Role", nsmap={None: HL7V3, "xsi": XSI_NS})
    role.set(f"{{{XSI_NS}}}type", "CE")
    role.set("code", "10")
    role.set("codeSystem", "1.2.250.1.213.1.1.4.5")
    role.set("displayName", "Médecin")
    return role


def _instant(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def tamper(assertion: etree._Element) -> etree._Element:
    """The same signed assertion with one attribute value changed after signing."""
    changed = etree.fromstring(etree.tostring(assertion))
    value = changed.find(f".//{{{SAML}}}Attribute[@Name='LPS_Version']/{{{SAML}}}AttributeValue")
    assert value is not None
    value.text = "9.9"
    return changed


# -- SOAP envelopes ------------------------------------------------------------------------------


def soap(action: str, to: str, body: etree._Element, assertion: etree._Element | None, message_id: str = "") -> bytes:
    envelope = etree.Element(f"{{{SOAP12}}}Envelope", nsmap={"soap": SOAP12, "wsa": WSA})
    header = etree.SubElement(envelope, f"{{{SOAP12}}}Header")
    etree.SubElement(header, f"{{{WSA}}}Action", {f"{{{SOAP12}}}mustUnderstand": "true"}).text = action
    etree.SubElement(header, f"{{{WSA}}}MessageID").text = message_id or f"urn:uuid:{uuid.uuid4()}"
    etree.SubElement(header, f"{{{WSA}}}To").text = to
    if assertion is not None:
        security = etree.SubElement(header, f"{{{WSSE}}}Security", nsmap={"wsse": WSSE})
        security.append(assertion)
    etree.SubElement(envelope, f"{{{SOAP12}}}Body").append(body)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def mtom_frame(envelope: bytes, parts: list[tuple[str, str, bytes]], action: str) -> tuple[str, bytes]:
    """A hand-framed MTOM body: root XOP part, then ``(content id, type, bytes)`` binary parts."""
    boundary = "uuid:" + str(uuid.uuid4())
    root_id = f"<root.{uuid.uuid4().hex}@test.client>"
    lines = [
        b"--" + boundary.encode(),
        b'Content-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"; action="'
        + action.encode()
        + b'"',
        b"Content-Transfer-Encoding: binary",
        b"Content-ID: " + root_id.encode(),
        b"",
        envelope,
    ]
    for content_id, content_type, content in parts:
        lines += [
            b"--" + boundary.encode(),
            b"Content-Type: " + content_type.encode(),
            b"Content-Transfer-Encoding: binary",
            b"Content-ID: <" + content_id.encode() + b">",
            b"",
            content,
        ]
    lines.append(b"--" + boundary.encode() + b"--")
    body = b"\r\n".join(lines) + b"\r\n"
    content_type = (
        f'multipart/related; type="application/xop+xml"; boundary="{boundary}"; '
        f'start="{root_id}"; start-info="application/soap+xml"; action="{action}"'
    )
    return content_type, body


# -- ebRIM metadata ------------------------------------------------------------------------------


@dataclass
class Doc:
    """One document to submit and how its metadata should read."""

    content: bytes
    entry_id: str = "Document01"
    unique_id: str = field(default_factory=lambda: f"1.2.250.1.999.1.{uuid.uuid4().int % 10**12}")
    patient_id: str = field(default_factory=cx)
    hash: str | None = None
    size: str | None = None
    confidentiality: list[tuple[str, str]] = field(default_factory=lambda: [("N", "2.16.840.1.113883.5.25")])
    service_start: str = "20210104134700"


def _slot(parent: etree._Element, name: str, *values: str) -> None:
    slot = etree.SubElement(parent, f"{{{RIM_NS}}}Slot", name=name)
    value_list = etree.SubElement(slot, f"{{{RIM_NS}}}ValueList")
    for value in values:
        etree.SubElement(value_list, f"{{{RIM_NS}}}Value").text = value


def _name(parent: etree._Element, text: str) -> None:
    etree.SubElement(etree.SubElement(parent, f"{{{RIM_NS}}}Name"), f"{{{RIM_NS}}}LocalizedString", value=text)


def _classification(parent: etree._Element, scheme: str, code: str, coding: str, display: str) -> None:
    element = etree.SubElement(
        parent,
        f"{{{RIM_NS}}}Classification",
        id=f"cl-{uuid.uuid4().hex[:10]}",
        classificationScheme=scheme,
        classifiedObject=parent.get("id", ""),
        nodeRepresentation=code,
    )
    _slot(element, "codingScheme", coding)
    _name(element, display)


def _identifier(parent: etree._Element, scheme: str, value: str, name: str) -> None:
    element = etree.SubElement(
        parent,
        f"{{{RIM_NS}}}ExternalIdentifier",
        id=f"ei-{uuid.uuid4().hex[:10]}",
        identificationScheme=scheme,
        registryObject=parent.get("id", ""),
        value=value,
    )
    _name(element, name)


def extrinsic_object(doc: Doc, *, lid: str = "", entry_id: str = "") -> etree._Element:
    """The ``rim:ExtrinsicObject`` of ``doc`` in the DMP profile (slots, classifications, identifiers)."""
    attributes = {
        "id": entry_id or doc.entry_id,
        "mimeType": "text/xml",
        "objectType": "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1",
    }
    if lid:
        attributes["lid"] = lid
    entry = etree.Element(f"{{{RIM_NS}}}ExtrinsicObject", attributes)
    _slot(entry, "creationTime", "20210401124745")
    _slot(entry, "hash", doc.hash if doc.hash is not None else hashlib.sha1(doc.content).hexdigest())
    _slot(entry, "languageCode", "fr-FR")
    _slot(entry, "serviceStartTime", doc.service_start)
    _slot(entry, "serviceStopTime", "20210104135500")
    _slot(entry, "size", doc.size if doc.size is not None else str(len(doc.content)))
    _slot(entry, "sourcePatientId", doc.patient_id)
    _name(entry, "CR d'examens biologiques")
    author = etree.SubElement(
        entry,
        f"{{{RIM_NS}}}Classification",
        id=f"cl-{uuid.uuid4().hex[:10]}",
        classificationScheme="urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d",
        classifiedObject=entry.get("id", ""),
        nodeRepresentation="",
    )
    _slot(author, "authorPerson", "801234534765^TESTEUR^JEAN^^^^^^&1.2.250.1.71.4.2.1&ISO")
    _slot(author, "authorInstitution", "CENTRE DE SANTE DU TEST^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^11120459876")
    _slot(author, "authorRole", "10^Médecin^1.2.250.1.213.1.1.4.5")
    _classification(
        entry, "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a", "10", "1.2.250.1.213.1.1.4.1", "Compte rendu"
    )
    for code, system in doc.confidentiality:
        _classification(entry, "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f", code, system, code)
    _classification(
        entry,
        "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d",
        "urn:ihe:iti:xds-sd:pdf:2008",
        "1.3.6.1.4.1.19376.1.2.3",
        "PDF",
    )
    _classification(
        entry, "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1", "SA07", "1.2.250.1.71.4.2.4", "Cabinet individuel"
    )
    _classification(
        entry, "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead", "AMBULATOIRE", "1.2.250.1.213.1.1.4.9", "Ambulatoire"
    )
    _classification(
        entry,
        "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983",
        "11502-2",
        "2.16.840.1.113883.6.1",
        "CR d'examens biologiques",
    )
    _identifier(entry, "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427", doc.patient_id, "XDSDocumentEntry.patientId")
    _identifier(entry, "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab", doc.unique_id, "XDSDocumentEntry.uniqueId")
    return entry


def submission_set(patient_id: str, set_id: str = "SubmissionSet01") -> etree._Element:
    package = etree.Element(f"{{{RIM_NS}}}RegistryPackage", id=set_id)
    _slot(package, "submissionTime", datetime.now(UTC).strftime("%Y%m%d%H%M%S"))
    author = etree.SubElement(
        package,
        f"{{{RIM_NS}}}Classification",
        id=f"cl-{uuid.uuid4().hex[:10]}",
        classificationScheme="urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d",
        classifiedObject=set_id,
        nodeRepresentation="",
    )
    _slot(author, "authorPerson", "801234534765^TESTEUR^JEAN^^^^^^&1.2.250.1.71.4.2.1&ISO")
    _classification(
        package, "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500", "04", "1.2.250.1.213.1.1.4.12", "Hospitalisation"
    )
    etree.SubElement(
        package,
        f"{{{RIM_NS}}}Classification",
        id=f"cl-{uuid.uuid4().hex[:10]}",
        classifiedObject=set_id,
        classificationNode="urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd",
    )
    _identifier(
        package,
        "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8",
        f"1.2.250.1.999.2.{uuid.uuid4().int % 10**12}",
        "XDSSubmissionSet.uniqueId",
    )
    _identifier(
        package, "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832", "1.2.250.1.999.3", "XDSSubmissionSet.sourceId"
    )
    _identifier(package, "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446", patient_id, "XDSSubmissionSet.patientId")
    return package


def association(kind: str, source: str, target: str, **slots: str) -> etree._Element:
    element = etree.Element(
        f"{{{RIM_NS}}}Association",
        id=f"as-{uuid.uuid4().hex[:10]}",
        associationType=kind,
        sourceObject=source,
        targetObject=target,
    )
    for name, value in slots.items():
        _slot(element, name, value)
    return element


def provide_and_register(
    docs: list[Doc],
    *,
    set_patient_id: str | None = None,
    transport: str = "mtom",
    replaces: dict[str, str] | None = None,
    missing: tuple[str, ...] = (),
) -> tuple[etree._Element, list[tuple[str, str, bytes]]]:
    """The ``xdsb:ProvideAndRegisterDocumentSetRequest`` and its MTOM parts (empty when inline)."""
    request = etree.Element(
        f"{{{XDSB_NS}}}ProvideAndRegisterDocumentSetRequest", nsmap={"xdsb": XDSB_NS, "xop": XOP_NS}
    )
    submit = etree.SubElement(request, f"{{{LCM_NS}}}SubmitObjectsRequest", nsmap={"lcm": LCM_NS, "rim": RIM_NS})
    objects = etree.SubElement(submit, f"{{{RIM_NS}}}RegistryObjectList")
    patient_id = set_patient_id or docs[0].patient_id
    objects.append(submission_set(patient_id))
    for doc in docs:
        objects.append(extrinsic_object(doc))
        objects.append(
            association(
                "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember",
                "SubmissionSet01",
                doc.entry_id,
                SubmissionSetStatus="Original",
            )
        )
    for entry_id, old in (replaces or {}).items():
        objects.append(association("urn:ihe:iti:2007:AssociationType:RPLC", entry_id, old))
    parts: list[tuple[str, str, bytes]] = []
    for doc in docs:
        document = etree.SubElement(request, f"{{{XDSB_NS}}}Document", id=doc.entry_id)
        if transport == "inline":
            document.text = base64.b64encode(doc.content).decode("ascii")
            continue
        content_id = f"{uuid.uuid4().hex}@test.client"
        etree.SubElement(document, f"{{{XOP_NS}}}Include", href=f"cid:{content_id}")
        if doc.entry_id not in missing:
            parts.append((content_id, "text/xml", doc.content))
    return request, parts


def stored_query(query_id: str, parameters: dict[str, list[str]], return_type: str = "LeafClass") -> etree._Element:
    request = etree.Element(f"{{{QUERY_NS}}}AdhocQueryRequest", nsmap={"query": QUERY_NS, "rim": RIM_NS})
    etree.SubElement(request, f"{{{QUERY_NS}}}ResponseOption", returnType=return_type, returnComposedObjects="true")
    query = etree.SubElement(request, f"{{{RIM_NS}}}AdhocQuery", id=query_id)
    for name, values in parameters.items():
        _slot(query, name, *values)
    return request


def find_documents(patient_id: str = "", statuses: tuple[str, ...] = (APPROVED,), **extra: list[str]) -> etree._Element:
    parameters = {
        "$XDSDocumentEntryPatientId": [f"'{patient_id or cx()}'"],
        "$XDSDocumentEntryStatus": ["(" + ",".join(f"'{s}'" for s in statuses) + ")"],
        **extra,
    }
    return stored_query(FIND_DOCUMENTS, parameters)


def retrieve(repository: str, *unique_ids: str) -> etree._Element:
    request = etree.Element(f"{{{XDSB_NS}}}RetrieveDocumentSetRequest", nsmap={"xdsb": XDSB_NS})
    for unique_id in unique_ids:
        item = etree.SubElement(request, f"{{{XDSB_NS}}}DocumentRequest")
        etree.SubElement(item, f"{{{XDSB_NS}}}RepositoryUniqueId").text = repository
        etree.SubElement(item, f"{{{XDSB_NS}}}DocumentUniqueId").text = unique_id
    return request


def status_update(patient_id: str, target: str, original: str, new: str) -> etree._Element:
    """An ITI-57 SubmitObjectsRequest changing one entry's availability status."""
    submit = etree.Element(f"{{{LCM_NS}}}SubmitObjectsRequest", nsmap={"lcm": LCM_NS, "rim": RIM_NS})
    objects = etree.SubElement(submit, f"{{{RIM_NS}}}RegistryObjectList")
    objects.append(submission_set(patient_id))
    objects.append(
        association(
            "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus",
            "SubmissionSet01",
            target,
            OriginalStatus=original,
            NewStatus=new,
        )
    )
    return submit


def metadata_update(doc: Doc, lid: str, previous_version: str) -> etree._Element:
    """An ITI-57 SubmitObjectsRequest carrying a new version of ``doc``'s entry (same lid)."""
    submit = etree.Element(f"{{{LCM_NS}}}SubmitObjectsRequest", nsmap={"lcm": LCM_NS, "rim": RIM_NS})
    objects = etree.SubElement(submit, f"{{{RIM_NS}}}RegistryObjectList")
    objects.append(submission_set(doc.patient_id))
    objects.append(extrinsic_object(doc, lid=lid, entry_id="DocumentV2"))
    objects.append(
        association(
            "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember",
            "SubmissionSet01",
            "DocumentV2",
            SubmissionSetStatus="Original",
            PreviousVersion=previous_version,
        )
    )
    return submit


def td_request(name: str, patient_id: str) -> etree._Element:
    element = etree.Element(f"{{{TD_NS}}}{name}", nsmap={"td": TD_NS})
    etree.SubElement(element, f"{{{TD_NS}}}patientId").text = patient_id
    return element


# -- transport -----------------------------------------------------------------------------------


class DmpClient:
    """Posts SOAP 1.2 (plain or MTOM) to the simulator over mutual TLS with ``bundle``."""

    def __init__(self, url: str, pki: TestPki, bundle: CertBundle | None = None, timeout: float = 10.0) -> None:
        self.url = url
        self.pki = pki
        self.bundle = bundle if bundle is not None else pki.organisation
        self.timeout = timeout
        self.http = requests.Session()
        self.http.trust_env = False
        self.http.verify = str(pki.ca_bundle_path)
        self.http.cert = (str(self.bundle.chain_path), str(self.bundle.key_path))

    def assertion(self, resource_id: str, options: VihfOptions | None = None) -> etree._Element:
        return vihf(self.bundle, resource_id, options)

    def call(
        self,
        action: str,
        body: etree._Element,
        *,
        patient_id: str = "",
        assertion: etree._Element | None = None,
        parts: list[tuple[str, str, bytes]] | None = None,
        options: VihfOptions | None = None,
        mtom: bool | None = None,
    ) -> requests.Response:
        """Send ``body`` under ``action`` with a fresh VIHF for ``patient_id`` (or the ``assertion`` given)."""
        if assertion is None:
            assertion = self.assertion(patient_id or cx(), options)
        envelope = soap(action, self.url, body, assertion)
        if mtom or (mtom is None and parts):
            content_type, data = mtom_frame(envelope, parts or [], action)
        else:
            content_type, data = f'application/soap+xml; charset=UTF-8; action="{action}"', envelope
        return self.post(content_type, data)

    def post(self, content_type: str, data: bytes) -> requests.Response:
        return self.http.post(self.url, data=data, headers={"Content-Type": content_type}, timeout=self.timeout)

    def submit(
        self,
        docs: list[Doc],
        *,
        transport: str = "mtom",
        set_patient_id: str | None = None,
        replaces: dict[str, str] | None = None,
        missing: tuple[str, ...] = (),
        options: VihfOptions | None = None,
        assertion: etree._Element | None = None,
    ) -> requests.Response:
        """An ITI-41 of ``docs`` (MTOM by default), with a VIHF for the submission set's patient."""
        request, parts = provide_and_register(
            docs, set_patient_id=set_patient_id, transport=transport, replaces=replaces, missing=missing
        )
        patient_id = set_patient_id or docs[0].patient_id
        return self.call(
            ITI41,
            request,
            patient_id=patient_id,
            parts=parts,
            options=options,
            assertion=assertion,
            mtom=transport == "mtom",
        )

    def close(self) -> None:
        self.http.close()


# -- reading answers -----------------------------------------------------------------------------


@dataclass
class Reply:
    """A parsed answer: the SOAP envelope and, for MTOM, the attachments by Content-ID."""

    http_status: int
    root: etree._Element
    attachments: dict[str, bytes]

    @property
    def body(self) -> etree._Element:
        body = self.root.find(f"{{{SOAP12}}}Body")
        assert body is not None
        return body[0]

    @property
    def action(self) -> str:
        return self.root.findtext(f"{{{SOAP12}}}Header/{{{WSA}}}Action") or ""

    @property
    def relates_to(self) -> str:
        return self.root.findtext(f"{{{SOAP12}}}Header/{{{WSA}}}RelatesTo") or ""

    @property
    def status(self) -> str:
        """Short RegistryResponse / AdhocQueryResponse status (``Success``...), or ``Fault``."""
        if self.body.tag == f"{{{SOAP12}}}Fault":
            return "Fault"
        holder = self.body if self.body.get("status") else self.body.find(f"{{{RS_NS}}}RegistryResponse")
        assert holder is not None
        return holder.get("status", "").rsplit(":", 1)[-1]

    @property
    def errors(self) -> list[tuple[str, str, str]]:
        """``(errorCode, codeContext, severity short name)`` of every RegistryError."""
        return [
            (e.get("errorCode", ""), e.get("codeContext", ""), e.get("severity", "").rsplit(":", 1)[-1])
            for e in self.body.iter(f"{{{RS_NS}}}RegistryError")
        ]

    @property
    def error_codes(self) -> list[str]:
        return [code for code, _, severity in self.errors if severity == "Error"]

    @property
    def fault(self) -> tuple[str, str, str]:
        """``(code value, subcode value, reason text)`` of a SOAP fault."""
        fault = self.body
        return (
            fault.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Value") or "",
            fault.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Subcode/{{{SOAP12}}}Value") or "",
            fault.findtext(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text") or "",
        )

    def objects(self, local: str) -> list[etree._Element]:
        return list(self.body.iter(f"{{{RIM_NS}}}{local}"))


def read(response: requests.Response) -> Reply:
    """Parse an answer, plain SOAP or MTOM (split with requests-toolbelt, not the simulator)."""
    content_type = response.headers.get("Content-Type", "")
    if content_type.lower().startswith("multipart/related"):
        decoder = MultipartDecoder(response.content, content_type)
        root_part, attachments = None, {}
        for part in decoder.parts:
            headers = {k.decode().lower(): v.decode() for k, v in part.headers.items()}
            if headers.get("content-type", "").startswith("application/xop+xml"):
                root_part = part.content
            else:
                attachments[headers.get("content-id", "").strip("<>")] = part.content
        assert root_part is not None, "no XOP root part"
        return Reply(response.status_code, etree.fromstring(root_part), attachments)
    return Reply(response.status_code, etree.fromstring(response.content), {})


def slot_value(element: etree._Element, name: str) -> str:
    return element.findtext(f"{{{RIM_NS}}}Slot[@name='{name}']/{{{RIM_NS}}}ValueList/{{{RIM_NS}}}Value") or ""
