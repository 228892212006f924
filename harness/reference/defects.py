"""The catalogue of switchable defects: one way each of breaking one INS, CI-SIS, DMP, MSSanté, Annuaire, PSC,
ID-document storage or data-portability rule.

The reference system conforms by default. Each defect named here flips exactly one
behaviour, observable through the control API or on the wire, so the harness's own
test suite can prove that the scenario guarding that rule fails when it should.
"""

from __future__ import annotations

DEFECTS: dict[str, str] = {
    "no-insi-trace": "INSi calls are not traced at all (rules 37, 39, 48, 53).",
    "incomplete-insi-trace": "traces keep the return code but drop what INSi returned (rule 39).",
    "keep-status-on-ko": "a KO verification keeps the INS and the status, and adds no work-list item (rule 49).",
    "update-on-ko-feed": "a KO feed for a known patient overwrites the local identity (rule 51).",
    "keep-ins-on-ko-feed": "a KO feed for an unknown patient creates it with the received INS (rule 51).",
    "no-worklist-on-ko": "a KO (feed or verification) adds no work-list item (rules 49, 55).",
    "no-auto-verify": "an INS received in a feed is stored without calling INSi (rule 52).",
    "trust-received-status": "an identity received as QUAL stays QUAL after an OK verification (rule 30).",
    "keep-ins-on-trait-change": "changing a strict trait keeps the INS and the status (rule 27).",
    "drop-ins-on-any-trait-change": "changing a secondary trait (the used name) also drops the INS (rule 27).",
    "cps-assertion-in-centre": "INSi is called with a CPS assertion even under the 'Centres de santé' profile.",
    "ignores-cr-02": "INSi CR 02 (several identities) marks the identity as if found, without an INS.",
    "skips-nir-key-check": "a search by matricule INS accepts 13 characters or a wrong control key (rule 17).",
    "matricule-field-13-chars": "the matricule search field takes 13 characters only, refusing the key (rule 17).",
    "qualify-without-document": "INSi CR 00 makes the identity QUAL at once, with no identity-document check.",
    "bad-lps-context": "the ContexteLPS header is sent without its LPS/IDAM element.",
    "cda-wrong-ins-oid": "the CDA recordTarget carries the INS under the Assurance Maladie NIR OID, not an INS OID.",
    "cda-no-ins": "the CDA recordTarget carries no INS, even for a qualified identity.",
    "cda-bad-nir-key": "the matricule INS in the CDA recordTarget has a wrong 2-digit control key.",
    "pdf-not-pdfa": "the PDF has no XMP PDF/A identification and uses a standard font, not embedded.",
    "pdf-no-ins-datamatrix": "the PDF prints the INS without its DataMatrix.",
    "cda-wrong-loinc": "the CDA document code is not the type code that was asked for.",
    "cda-no-legal-authenticator": "the CDA header has no legalAuthenticator.",
    "cda-wrong-template-version": "the VSM templateId has version 2021.01; an N1 document lacks the XDS-SD templateId.",
    "import-drops-stylesheet": "an imported CDA is stored without the producer's stylesheet (CDA/INT.15).",
    "documents-unsorted": "the document list ignores the sort asked for and keeps the storage order (CDA/INT.04).",
    "dmp-wrong-format-code": "an N1 document is sent with formatCode urn:ihe:iti:xds-sd:text:2008, not the PDF one.",
    "dmp-no-masking-code": "the visibility settings are not put in the entry's confidentialityCode (N alone).",
    "dmp-feeds-despite-opposition": "the DMP is fed although the patient opposed the feed.",
    "dmp-requests-authorisation": "a TD0.3 (add authorisation) is sent before each feed or deletion.",
    "dmp-historical-sending-date": (
        "a historical document carries the day it is made and sent, not its act date, in the CDA serviceEvent "
        "(and so in serviceStartTime/serviceStopTime)."
    ),
    "dmp-patient-id-wrong-oid": "the patient's CX (patientId, VIHF resource-id) has the NIR OID 1.2.250.1.213.1.4.2.",
    "dmp-unsigned-vihf": "the VIHF assertion is sent without its XML signature.",
    "dmp-expired-vihf": "the VIHF assertion's NotOnOrAfter is an hour in the past.",
    "dmp-feeds-unqualified": "a non-qualified identity is fed too, identified by its IPP (PI) instead of an INS.",
    "dmp-delete-local-only": "a deletion is recorded locally and reported done, but never reaches the DMP.",
    "dmp-replace-without-rplc": "a replacement is sent as a new document, with no RPLC association.",
    "dmp-no-auto-feed": "validating a document does not feed the DMP.",
    "mss-no-nil": "MSSanté messages carry no X-MSS-NIL header.",
    "mss-wrong-ins": "X-MSS-INS is N although the CDA carries the qualified INS.",
    "mss-no-codecda": "a message carrying CDA documents has no X-MSS-CODECDA header.",
    "mss-subject-no-prefix": "the subject of a message carrying documents lacks the 'XDM/1.0/DDM+' prefix.",
    "mss-xdm-no-metadata": "the IHE_XDM.ZIP has no METADATA.XML.",
    "mss-two-patients": "the XDM also carries the most recent document of another patient of the practice.",
    "mss-accepts-tls10": "the MSSanté TLS client accepts TLS 1.0 (cipher string 'DEFAULT:@SECLEVEL=0').",
    "mss-weak-ciphers": "the MSSanté TLS client offers every TLS 1.2 cipher ('ALL:@SECLEVEL=0'), not the six allowed.",
    "mss-accepts-expired-cert": "the MSSanté TLS client does not check the validity dates of the server certificate.",
    "mss-accepts-any-cert": "the MSSanté TLS client checks neither the server certificate nor its host name.",
    "mss-system-ca-only": "the MSSanté TLS client trusts the system store only, not the configured CA bundle.",
    "mss-no-message-id": "MSSanté messages carry no Message-ID.",
    "mss-reply-no-in-reply-to": "a reply carries neither In-Reply-To nor References.",
    "mss-no-return-receipt": "no Return-Receipt-To even when a delivery receipt is asked for.",
    "mss-bare-from": "the From header is the bare BAL address, without the sender's display label.",
    "mss-no-fin": "no X-MSS-MES: FIN even when the professional wants no reply.",
    "mss-unqualified-patient": "a RECUP identity (INS from INSi, not qualified) is written to at its patient BAL too.",
    "mss-smtp-plaintext": "SMTP AUTH and MAIL are sent in clear, without STARTTLS.",
    "mss-imap-plaintext": "IMAP LOGIN is sent in clear, without STARTTLS.",
    "mss-integrate-by-traits": (
        "a received XDM is attached to the patient named by the subject's birth name and birth date, "
        "not to the METADATA patientId (INS)."
    ),
    "mss-dst-internet-entry": "a DST submission goes to the 'internet' entry point, not the IGC-Santé one.",
    "mss-ignores-receipts": "a delivery or read receipt read from the BAL is taken for a message with no document.",
    "mss-no-mdn": "a message asking for a read receipt (Disposition-Notification-To) gets no MDN back.",
    "ann-wrong-mailbox": "the correspondent's BAL is the first e-mail telecom, not the one typed MSSANTE.",
    "ann-no-api-key": "Annuaire Santé searches are sent without the ESANTE-API-KEY header.",
    "psc-no-nonce": "the PSC authorization request carries no nonce, and none is checked in the ID token.",
    "psc-no-pkce": "the PSC authorization request has no code_challenge, the code exchange no code_verifier.",
    "psc-no-acr": "the PSC authorization request has no acr_values.",
    "psc-ignores-state": "the PSC callback's state is not checked (the latest login in progress is taken).",
    "psc-accepts-bad-signature": (
        "the ID token and a userinfo JWT are decoded without verifying their signature (alg none passes too)."
    ),
    "psc-accepts-expired": "the ID token's exp is not checked.",
    "psc-skips-claims": "the ID token's iss, aud, nonce and acr are not checked.",
    "psc-ignores-userinfo-sub": "the userinfo sub is not compared with the ID token's.",
    "psc-userinfo-optional": "an unusable userinfo answer (not JSON, too large) is replaced by the ID token's claims.",
    "psc-no-end-session": "logout is local only: no PSC end-session URL.",
    "psc-no-linking": "a PSC login always creates a new account, never the one whose IDNPS is the SubjectNameID.",
    "psc-not-used-for-apis": "INSi and DMP calls made in a PSC session carry no PSC token nor the PSC user.",
    "id-doc-plaintext": "copies of identity documents are stored as plaintext.",
    "id-doc-fixed-nonce": "a fixed nonce and no associated data: the same document stored twice gives the same bytes.",
    "id-doc-delete-after-creation": "the retention counts 5 years from the copy's creation, not the last activity.",
    "id-doc-never-delete": "the retention job deletes nothing.",
    "id-doc-delete-index-only": "the retention job removes the index row but leaves the ciphertext file on disk.",
    "port-drops-old-documents": "a portability export carries only the last 365 days of documents, whatever 'since'.",
    "port-omits-ins": "a portability export identifies patients by their IPP only: no INS in patientId or PID-3.",
    "port-omits-pdf": "a portability export has no PDF copy of the documents (neither the files nor their entries).",
    "port-wrong-hashes": "the portability integrity report gives wrong sha256 values (the sizes stay right).",
    "port-invalid-cda": (
        "the CDA files of a portability export lack ClinicalDocument/confidentialityCode (CDA R2 schema-invalid)."
    ),
}
"""Defect name → what it breaks."""


class UnknownDefect(ValueError):
    """A defect name that the reference system does not know."""


def parse_defects(text: str) -> frozenset[str]:
    """The defects named in a comma-separated list; raises UnknownDefect on a name it does not know."""
    names = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(names - DEFECTS.keys())
    if unknown:
        raise UnknownDefect(f"unknown defect(s): {', '.join(unknown)}; known: {', '.join(sorted(DEFECTS))}")
    return frozenset(names)


def describe_defects() -> str:
    """One line per known defect, for ``--help``."""
    width = max(len(name) for name in DEFECTS)
    return "\n".join(f"  {name.ljust(width)}  {text}" for name, text in DEFECTS.items())
