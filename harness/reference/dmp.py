"""The practice's DMP feed: when and what it sends, how it reads the answer, what it remembers.

A document the practice produced goes to the patient's DMP when the professional
validates it (automatic feed), or when the user sends it explicitly (e.g. a historical
document), but only for a qualified identity (its INS, never the IPP, is the DMP's
key) whose holder has not opposed the feed; otherwise nothing is sent and the answer
says why. A replacement is a new version of the document sent with an RPLC
association to the entry it replaces; a deletion is an ITI-57 status change. The
practice never asks for an authorisation (TD0.3) to feed or delete.

The XDS metadata are read from the CDA itself (type, dates, author, facility,
practice setting, identifiers) plus the practice's class and format codes, as for an
MSSanté XDM (:mod:`harness.reference.xds_entry`), and the masking codes of the
document's visibility setting (:mod:`harness.reference.xds_metadata` writes them).
What was sent (entry UUIDs, the registry's answers) and the patient's consent live in
the store; each call is in the practice's call log. The DMP defects
of :mod:`harness.reference.defects` are switched here, each where it acts (the VIHF
ones in :mod:`harness.reference.vihf`, the historical date in :mod:`harness.reference.cda`).

In a Pro Santé Connect session (inferred from DMP/PSC.01 and PSC.10, no public wire
detail read) the VIHF names the PSC professional (``Subject/NameID`` their
SubjectNameID, ``subject-id`` their names), each request carries the PSC access token
as Bearer, and the call log says ``auth_mode`` ``PSC`` with the professional's
SubjectNameID; otherwise the practice's own professional and the organisation
certificate alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from harness.reference import SOFTWARE, __version__
from harness.reference.cda import NIR_OID_ASSURANCE_MALADIE, carried_ins
from harness.reference.dmp_client import ITI41, ITI57, TD03, DmpAnswer, DmpClient
from harness.reference.documents import DocumentService
from harness.reference.identity import Conflict
from harness.reference.insi import AuthMode
from harness.reference.model import InvalidInput, Patient
from harness.reference.mtom import Attachment, new_content_id
from harness.reference.vihf import VihfSubject
from harness.reference.xds_entry import (
    default_format_code,
    document_entry,
    ipp_cx,
    patient_cx,
    practice_author,
    submission_set,
)
from harness.reference.xds_metadata import (
    DELETED,
    Code,
    DocumentEntry,
    SubmissionSet,
    XdsAuthor,
    provide_and_register_request,
    status_change_request,
)

log = logging.getLogger("harness.reference")

SENT, NOT_SENT, FAILED = "sent", "not-sent", "failed"
ACTIONS = ("send", "replace", "delete")
VISIBILITY = ("masked_to_ps", "invisible_to_patient", "invisible_to_legal_representatives")
MASKING_SYSTEM = "1.2.250.1.213.1.1.4.13"
MASKING_CODES = {
    "masked_to_ps": Code("MASQUE_PS", MASKING_SYSTEM, "Masqué aux professionnels de santé"),
    "invisible_to_patient": Code("INVISIBLE_PATIENT", MASKING_SYSTEM, "Non visible par le patient"),
    "invisible_to_legal_representatives": Code(
        "INVISIBLE_REPRESENTANTS_LEGAUX", MASKING_SYSTEM, "Non visible par les représentants légaux du patient"
    ),
}
"""Visibility setting → the JDV_J08 code the entry's confidentialityCode carries for it."""
TEXT_FORMAT_CODE = "urn:ihe:iti:xds-sd:text:2008"
"""The XDS-SD plain-text formatCode the ``dmp-wrong-format-code`` defect sends for a PDF (N1) document."""
TRANSACTIONS = {ITI41: "TD2.1 ProvideAndRegisterDocumentSet-b", ITI57: "TD3.3 UpdateDocumentSet", TD03: "TD0.3"}
NOT_QUALIFIED = "the identity is not qualified (status {status}): no DMP feed without a qualified INS"
OPPOSED = "the patient opposed the feed of their DMP"


@dataclass(frozen=True, slots=True)
class DmpOutcome:
    """What the control API answers to a validation or a DMP operation."""

    result: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"dmp": self.result, "detail": self.detail}


class DmpService:
    """The DMP side of the practice's documents."""

    def __init__(self, documents: DocumentService) -> None:
        self.documents = documents
        self.identities = documents.identities
        self.store = documents.store
        self.catalog = documents.catalog

    def has(self, defect: str) -> bool:
        return self.identities.has(defect)

    # -- settings ---------------------------------------------------------------------------------
    def set_visibility(self, patient_id: str, document_id: str, body: Any) -> None:
        """Record who may see the document in the DMP; it applies to the document's next feed."""
        visibility = _booleans(body, VISIBILITY)
        with self.identities.lock(patient_id):
            record = self.documents.produced_record(patient_id, document_id)
            state = self._state(patient_id, record)
            state["visibility"] = visibility
            self._save(patient_id, record, state)

    def set_consent(self, patient_id: str, body: Any) -> None:
        """Record the patient's opposition (or not) to the feed and to the consultation of their DMP."""
        consent = _booleans(body, ("feed_opposition", "consultation_opposition"))
        with self.identities.lock(patient_id):
            self.identities.get(patient_id)
            self.store.save_dmp_consent(patient_id, {**consent, "recorded": self.identities.clock.iso()})

    # -- operations -------------------------------------------------------------------------------
    def validate(self, patient_id: str, document_id: str) -> DmpOutcome:
        """The professional validates the document; the practice then feeds the DMP (the conforming way)."""
        with self.identities.lock(patient_id):
            patient = self.identities.get(patient_id)
            record = self.documents.produced_record(patient_id, document_id)
            state = self._state(patient_id, record)
            state["validated"] = self.identities.clock.iso()
            self._save(patient_id, record, state)
            if self.has("dmp-no-auto-feed"):
                return DmpOutcome(NOT_SENT, "document validated")
            return self._feed(patient, record, state)

    def act(self, patient_id: str, document_id: str, body: Any) -> DmpOutcome:
        """``send``, ``replace`` or ``delete`` the document in the DMP."""
        if not isinstance(body, dict) or body.get("action") not in ACTIONS:
            raise InvalidInput(f"the body must be an object with 'action' one of {', '.join(ACTIONS)}")
        action = str(body["action"])
        with self.identities.lock(patient_id):
            patient = self.identities.get(patient_id)
            record = self.documents.produced_record(patient_id, document_id)
            state = self._state(patient_id, record)
            if action == "send":
                return self._feed(patient, record, state)
            if action == "replace":
                return self._replace(patient, record, state)
            return self._delete(patient, record, state)

    def _feed(self, patient: Patient, record: dict[str, Any], state: dict[str, Any]) -> DmpOutcome:
        current = state.get("current")
        if current:
            return DmpOutcome(NOT_SENT, f"already in the DMP as entry {current['entry_uuid']}; replace it instead")
        return self._send(patient, record, state, replaced=None)

    def _replace(self, patient: Patient, record: dict[str, Any], state: dict[str, Any]) -> DmpOutcome:
        current = state.get("current")
        if not current:
            return DmpOutcome(NOT_SENT, "the document is not in the DMP: there is nothing to replace")
        blocked = self._blocked(patient)
        if blocked:
            return DmpOutcome(NOT_SENT, blocked)
        self._client()  # a 409 before a new version is made when no DMP is configured
        produced = self.documents.new_version(patient.id, str(current["document_id"]))
        found = self.store.find_document(patient.id, produced.document_id)
        assert found is not None  # just stored by new_version
        replaced = None if self.has("dmp-replace-without-rplc") else str(current["entry_uuid"])
        return self._send(patient, found[0], state, replaced=replaced)

    def _send(
        self, patient: Patient, record: dict[str, Any], state: dict[str, Any], replaced: str | None
    ) -> DmpOutcome:
        """One ITI-41 for the document of ``record`` (RPLC to ``replaced`` when given), recorded in ``state``."""
        blocked = self._blocked(patient)
        if blocked:
            return DmpOutcome(NOT_SENT, blocked)
        patient_cx = self._patient_cx(patient)
        assert patient_cx is not None  # _blocked let only identities with a usable identifier through
        client = self._client()
        now = self.identities.clock.now()
        found = self.store.find_document(patient.id, str(record["document_id"]))
        assert found is not None
        cda = found[1]
        entry = self._entry(patient, patient_cx, record, cda, state)
        attachment = Attachment(new_content_id("document"), "text/xml", cda)
        request = provide_and_register_request(
            self._submission(patient_cx, entry.author, now),
            [(entry, attachment.href)],
            {entry.entry_uuid: replaced} if replaced else {},
        )
        subject = self._subject(patient_cx)
        self._authorisation(client, patient, patient_cx, subject, now)
        answer = client.provide_and_register(request, [attachment], subject, now)
        self._trace(client, ITI41, patient.id, answer, record["document_id"], entry.entry_uuid)
        event: dict[str, Any] = {
            "action": "replace" if state.get("current") else "send",
            "document_id": record["document_id"],
            "entry_uuid": entry.entry_uuid,
            "status": answer.status,
            "message_id": answer.message_id,
            "time": self.identities.clock.iso(),
        }
        if replaced:
            event["replaces"] = replaced
        state.setdefault("history", []).append(event)
        if answer.status in ("Success", "PartialSuccess"):
            state["current"] = {
                "entry_uuid": entry.entry_uuid,
                "unique_id": entry.unique_id,
                "document_id": record["document_id"],
                "patient_cx": patient_cx,
            }
            self._save(patient.id, record, state)
            warnings = f" ({answer.describe()})" if answer.errors else ""
            return DmpOutcome(SENT, f"sent to the DMP as entry {entry.entry_uuid}{warnings}")
        self._save(patient.id, record, state)
        return DmpOutcome(FAILED, f"the DMP refused the document: {answer.describe()}")

    def _delete(self, patient: Patient, record: dict[str, Any], state: dict[str, Any]) -> DmpOutcome:
        current = state.get("current")
        if not current:
            return DmpOutcome(NOT_SENT, "the document is not in the DMP: there is nothing to delete")
        event: dict[str, Any] = {"action": "delete", "entry_uuid": current["entry_uuid"]}
        if self.has("dmp-delete-local-only"):
            state["current"] = None
            state.setdefault("history", []).append({**event, "time": self.identities.clock.iso()})
            self._save(patient.id, record, state)
            return DmpOutcome(SENT, f"entry {current['entry_uuid']} deleted")
        client = self._client()
        now = self.identities.clock.now()
        patient_cx = str(current["patient_cx"])
        subject = self._subject(patient_cx)
        self._authorisation(client, patient, patient_cx, subject, now)
        request = status_change_request(
            self._submission(patient_cx, self._author(), now), current["entry_uuid"], DELETED
        )
        answer = client.update_document_set(request, subject, now)
        self._trace(client, ITI57, patient.id, answer, current["document_id"], current["entry_uuid"])
        event.update(status=answer.status, message_id=answer.message_id, time=self.identities.clock.iso())
        state.setdefault("history", []).append(event)
        if answer.accepted:
            state["current"] = None
            self._save(patient.id, record, state)
            return DmpOutcome(SENT, f"entry {current['entry_uuid']} deleted from the DMP")
        self._save(patient.id, record, state)
        return DmpOutcome(FAILED, f"the DMP refused the deletion: {answer.describe()}")

    # -- rules --------------------------------------------------------------------------------------
    def _blocked(self, patient: Patient) -> str:
        """Why the practice must not feed this patient's DMP ("" when it may)."""
        if self._patient_cx(patient) is None:
            return NOT_QUALIFIED.format(status=patient.status.value)
        consent = self.store.dmp_consent(patient.id) or {}
        if consent.get("feed_opposition") and not self.has("dmp-feeds-despite-opposition"):
            return OPPOSED
        return ""

    def _patient_cx(self, patient: Patient) -> str | None:
        """The patient's identifier in the DMP: the qualified INS as a CX (NH), or None without one."""
        ins = carried_ins(patient)
        if ins is None:
            return ipp_cx(patient.id, self.catalog.practice) if self.has("dmp-feeds-unqualified") else None
        matricule, oid = ins
        if self.has("dmp-patient-id-wrong-oid"):
            oid = NIR_OID_ASSURANCE_MALADIE
        return patient_cx(matricule, oid, "NH")

    def _authorisation(
        self, client: DmpClient, patient: Patient, patient_cx: str, subject: VihfSubject, now: datetime
    ) -> None:
        """The ``dmp-requests-authorisation`` defect: a TD0.3 before each feed or deletion."""
        if self.has("dmp-requests-authorisation"):
            answer = client.add_authorisation(patient_cx, subject, now)
            self._trace(client, TD03, patient.id, answer, "", "")

    # -- metadata ------------------------------------------------------------------------------------
    def _entry(
        self, patient: Patient, patient_cx: str, record: dict[str, Any], cda: bytes, state: dict[str, Any]
    ) -> DocumentEntry:
        kind = self.catalog.find(str(record["kind"]), str(record["structure"]))
        if kind is None:
            raise Conflict(f"document {record['document_id']!r} is of a type the practice no longer produces")
        codes = self.catalog.dmp
        format_code = default_format_code(kind, codes)
        if kind.structure == "N1" and self.has("dmp-wrong-format-code"):
            format_code = Code(TEXT_FORMAT_CODE, codes.n1_format_code_system, "Document à corps non structuré")
        masking: list[Code] = []
        if not self.has("dmp-no-masking-code"):
            visibility = state.get("visibility") or {}
            masking = [code for name, code in MASKING_CODES.items() if visibility.get(name)]
        return document_entry(
            cda,
            kind,
            codes,
            patient=patient_cx,
            source_patient=ipp_cx(patient.id, self.catalog.practice),
            author=self._author(),
            format_code=format_code,
            masking=masking,
        )

    def _author(self) -> XdsAuthor:
        return practice_author(self.catalog.author, self.catalog.practice)

    def _submission(self, patient_cx: str, author: XdsAuthor, now: datetime) -> SubmissionSet:
        return submission_set(self.catalog, patient_cx, author, now)

    def _subject(self, patient_cx: str) -> VihfSubject:
        author, practice = self.catalog.author, self.catalog.practice
        user_id, family, given = author.id_nat_ps, author.family, author.given
        psc = self.identities.psc_user()
        if psc is not None:
            user_id, family, given = psc.subject_name_id, psc.family, psc.given
        return VihfSubject(
            user_id=user_id,
            user_name=f"{family} {given}, {practice.name}",
            role_code=author.profession_code,
            role_display=author.profession_display,
            sector=practice.healthcare_facility_code,
            patient_cx=patient_cx,
            software=SOFTWARE,
            version=__version__,
        )

    # -- plumbing -------------------------------------------------------------------------------------
    def _client(self) -> DmpClient:
        endpoint = self.identities.endpoints.dmp()
        if endpoint is None:
            raise Conflict("no DMP endpoint configured (PUT /config/endpoints)")
        psc = self.identities.psc_user()
        token = psc.access_token if psc is not None else ""
        subject = psc.subject_name_id if psc is not None else ""
        return DmpClient(
            endpoint, self.identities.call_timeout_s, self.identities.defects, psc_token=token, psc_subject=subject
        )

    def _state(self, patient_id: str, record: dict[str, Any]) -> dict[str, Any]:
        state = self.store.dmp_document(str(record["set_id"]))
        if state is None:
            visibility = dict.fromkeys(VISIBILITY, False)
            state = {"patient_id": patient_id, "validated": "", "visibility": visibility, "current": None}
        return state

    def _save(self, patient_id: str, record: dict[str, Any], state: dict[str, Any]) -> None:
        self.store.save_dmp_document(str(record["set_id"]), patient_id, state)

    def _trace(
        self, client: DmpClient, action: str, patient_id: str, answer: DmpAnswer, document_id: str, entry_uuid: str
    ) -> None:
        entry: dict[str, Any] = {
            "timestamp": self.identities.clock.iso(),
            "service": "DMP",
            "operation": TRANSACTIONS[action],
            "auth_mode": AuthMode.PSC.value if client.psc_token else AuthMode.ORGANISATION.value,
            "patient_id": patient_id,
            "return_code": answer.status,
            "message_id": answer.message_id,
            "document_id": document_id,
            "entry_uuid": entry_uuid,
        }
        if client.psc_token:
            entry["subject_name_id"] = client.psc_subject
        if answer.errors:
            entry["errors"] = [e.to_json() for e in answer.errors]
        if answer.detail:
            entry["detail"] = answer.detail
        self.store.add_trace(entry)
        log.info("DMP %s for %s: %s", TRANSACTIONS[action], patient_id, answer.describe())


def _booleans(body: Any, names: tuple[str, ...]) -> dict[str, bool]:
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    wrong = [name for name in names if not isinstance(body.get(name), bool)]
    if wrong:
        raise InvalidInput(f"{', '.join(repr(n) for n in wrong)} must be true or false")
    return {name: bool(body[name]) for name in names}
