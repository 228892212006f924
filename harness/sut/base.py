"""The adapter interface: every way of driving a SUT offers these operations.

Scenarios talk to a :class:`SutAdapter`, never to the SUT's code or sockets. An
operation whose capability the SUT does not declare raises
:class:`harness.verdicts.NotSupported`, which the plugin records as
``not-supported``; a SUT that breaks (refuses connections, hangs, answers
garbage) raises :class:`SutError`, recorded as ``error``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from harness.sut.model import (
    Appointment,
    Capability,
    Correspondent,
    DmpOutcome,
    EndpointConfig,
    FeedAck,
    IdDocumentCopy,
    InsOperationResult,
    MssOutcome,
    MssSendRequest,
    PatientRecord,
    PatientTraits,
    PortabilityExport,
    PortabilityImport,
    PortabilityRequest,
    ProducedDocument,
    PscClient,
    PscLogin,
    PscLogout,
    PscSession,
    RawStorageItem,
    ReceivedMessage,
    StoredDocument,
    SutDescription,
    TraceEntry,
    WorklistItem,
)
from harness.verdicts import NotSupported


class SutError(RuntimeError):
    """The SUT could not be driven: connection refused, timeout, malformed answer."""


class SutTimeout(SutError):
    """The SUT gave no answer within the time allowed."""


class SutRefused(SutError):
    """The SUT refused the data or request on purpose (control API 422): a business answer.

    Scenarios catch it where refusing is the conforming behaviour (a mistyped
    matricule INS); anywhere else it is an error like any other SutError.
    """


class SutAdapter:
    """Base class of adapters; each operation defaults to not-supported.

    Subclasses override what they can do and report it in :meth:`describe`.
    """

    name = "abstract"

    def describe(self) -> SutDescription:
        raise NotImplementedError

    def require(self, capability: Capability) -> None:
        """Raise NotSupported unless the SUT declares ``capability``."""
        if capability not in self.describe().capabilities:
            raise NotSupported(f"the SUT does not declare the '{capability.value}' capability")

    def close(self) -> None:
        """Release what the adapter holds (processes, sessions)."""

    # -- configuration -------------------------------------------------------
    def configure_endpoints(self, config: EndpointConfig) -> None:
        raise NotSupported("the adapter cannot configure the SUT's endpoints")

    def reset(self) -> None:
        raise NotSupported("the SUT cannot be reset")

    def set_clock(self, now: datetime) -> None:
        raise NotSupported("the SUT's clock cannot be set")

    # -- identity --------------------------------------------------------------
    def create_patient(self, traits: PatientTraits, identity_document: str = "") -> PatientRecord:
        raise NotSupported("identity management is not offered")

    def get_patient(self, patient_id: str) -> PatientRecord:
        raise NotSupported("identity management is not offered")

    def list_patients(self) -> list[PatientRecord]:
        raise NotSupported("identity management is not offered")

    def update_traits(self, patient_id: str, changes: dict[str, Any]) -> PatientRecord:
        raise NotSupported("identity management is not offered")

    def find_patients_by_ins(self, typed_matricule: str) -> list[PatientRecord]:
        """The identities found by a matricule INS as a user types it; SutRefused if the SUT refuses it."""
        raise NotSupported("identity management is not offered")

    def check_identity(self, patient_id: str, document_type: str) -> PatientRecord:
        raise NotSupported("identity management is not offered")

    # -- INSi ------------------------------------------------------------------
    def search_ins(
        self, patient_id: str, mode: str = "traits", carte_vitale: dict[str, Any] | None = None
    ) -> InsOperationResult:
        raise NotSupported("INSi operations are not offered")

    def verify_ins(self, patient_id: str) -> InsOperationResult:
        raise NotSupported("INSi operations are not offered")

    # -- identity feeds, work list, traces -------------------------------------
    def receive_identity_feed(self, message: bytes) -> FeedAck:
        raise NotSupported("identity feeds are not offered")

    def worklist(self) -> list[WorklistItem]:
        raise NotSupported("the work list is not exposed")

    def traces(self) -> list[TraceEntry]:
        raise NotSupported("the SUT's call log is not exposed")

    # -- documents -------------------------------------------------------------
    def produce_document(
        self, patient_id: str, type_code: str, structure: str = "N1", act_date: str | None = None
    ) -> ProducedDocument:
        """The document of LOINC type ``type_code`` the SUT produces for the patient.

        ``structure`` is ``N1`` (CDA R2 structuration minimale: the PDF in ``nonXMLBody``)
        or ``N3`` (structured body, e.g. the volet de synthèse médicale). ``act_date``
        (``YYYY-MM-DD``) makes it a document about an act of that day (a historical
        document): the CDA ``serviceEvent`` carries that date, ``effectiveTime`` stays
        the production time.
        """
        raise NotSupported("document production is not offered")

    def import_document(self, patient_id: str, cda: bytes, stylesheet: bytes | None = None) -> StoredDocument:
        """Store a document received from another producer, with the producer's stylesheet if given."""
        raise NotSupported("document import is not offered")

    def list_documents(self, patient_id: str, sort: str = "creation-date") -> list[StoredDocument]:
        """The patient's documents, sorted by ``creation-date`` (newest first) or ``type-code``."""
        raise NotSupported("document listing is not offered")

    # -- DMP -------------------------------------------------------------------------------
    def set_document_visibility(
        self,
        patient_id: str,
        document_id: str,
        masked_to_ps: bool,
        invisible_to_patient: bool,
        invisible_to_legal_representatives: bool,
    ) -> None:
        """Set who may see the document in the DMP; applies to its next feed."""
        raise NotSupported("DMP operations are not offered")

    def validate_document(self, patient_id: str, document_id: str) -> DmpOutcome:
        """The professional validates the document; a conforming SUT then feeds the DMP by itself."""
        raise NotSupported("DMP operations are not offered")

    def dmp_action(self, patient_id: str, document_id: str, action: str) -> DmpOutcome:
        """``send`` the document to the DMP, ``replace`` the entry sent before, or ``delete`` it."""
        raise NotSupported("DMP operations are not offered")

    def set_dmp_consent(self, patient_id: str, feed_opposition: bool, consultation_opposition: bool) -> None:
        """Record the patient's opposition (or not) to the feed and to the consultation of their DMP."""
        raise NotSupported("DMP operations are not offered")

    # -- MSSanté and the Annuaire Santé ---------------------------------------------------
    def send_mss(self, request: MssSendRequest) -> MssOutcome:
        """Send the patient's documents (or a plain message) by MSSanté, as the professional asks."""
        raise NotSupported("MSSanté sending is not offered")

    def fetch_mss(self) -> list[ReceivedMessage]:
        """Read the BAL now (IMAP) and integrate what arrived; the messages read, with what the SUT did."""
        raise NotSupported("MSSanté reception is not offered")

    def reply_mss(self, message_id: str, text: str) -> MssOutcome:
        """Reply to a message the SUT read from its BAL."""
        raise NotSupported("MSSanté replies are not offered")

    def find_correspondents(self, idnps: str = "", family: str = "", given: str = "") -> list[Correspondent]:
        """Search the Annuaire Santé for professionals, as a user writing a message would."""
        raise NotSupported("Annuaire Santé look-up is not offered")

    # -- Pro Santé Connect --------------------------------------------------------------------------
    def psc_client(self) -> PscClient:
        """The redirect URIs the SUT registers at Pro Santé Connect (the harness registers them in its simulator)."""
        raise NotSupported("Pro Santé Connect is not offered")

    def start_psc_login(self) -> PscLogin:
        """Begin a web-mode login: the SUT answers with the authorization URL it sends the browser to."""
        raise NotSupported("Pro Santé Connect is not offered")

    def start_psc_ciba(self, login_hint: str) -> None:
        """Begin a CIBA login for the professional ``login_hint`` (SubjectNameID); the SUT then polls PSC itself."""
        raise NotSupported("CIBA login is not offered")

    def psc_session(self) -> PscSession:
        """Who is logged in now, and how (after a refused login: why it was refused)."""
        raise NotSupported("Pro Santé Connect is not offered")

    def psc_logout(self) -> PscLogout:
        """Log the current user out; a PSC session ends with the end-session URL the browser is sent to."""
        raise NotSupported("Pro Santé Connect is not offered")

    def create_user(self, login: str, password: str, subject_name_id: str, family: str, given: str) -> str:
        """Create a local account (login and password) for the professional ``subject_name_id``; its id."""
        raise NotSupported("local accounts are not exposed")

    def password_login(self, login: str, password: str) -> PscSession:
        """Log in with the SUT's own login and password (the other method PSC accounts are linked with)."""
        raise NotSupported("local accounts are not exposed")

    # -- copies of identity documents ------------------------------------------------------------
    def store_id_document(self, patient_id: str, content: bytes, media_type: str) -> str:
        """Keep a copy of the patient's identity document (encrypted at rest); its id."""
        raise NotSupported("identity-document copies are not offered")

    def list_id_documents(self, patient_id: str) -> list[IdDocumentCopy]:
        """The copies the SUT still keeps for the patient."""
        raise NotSupported("identity-document copies are not offered")

    def read_id_document(self, patient_id: str, document_id: str) -> bytes:
        """The copy as the SUT gives it back to a user (decrypted)."""
        raise NotSupported("identity-document copies are not offered")

    def record_activity(self, patient_id: str, kind: str) -> None:
        """Something happened for the patient (``consultation``...): it restarts the retention period."""
        raise NotSupported("patient activity is not exposed")

    def raw_storage(self) -> list[RawStorageItem]:
        """Everything the SUT keeps on disk, as stored (files, database files), for the harness to scan."""
        raise NotSupported("the raw storage is not exposed")

    def run_maintenance(self) -> list[str]:
        """Run the retention job now (by the SUT's clock); the ids of the copies it deleted."""
        raise NotSupported("the retention job cannot be triggered")

    # -- portability -----------------------------------------------------------------------------------
    def create_appointment(self, patient_id: str, start: datetime, end: datetime, summary: str) -> str:
        """Put an appointment of the patient in the SUT's agenda (``start``/``end`` timezone-aware); its id."""
        raise NotSupported("the agenda is not offered")

    def list_appointments(self, patient_id: str) -> list[Appointment]:
        """The patient's appointments in the SUT's agenda, earliest first."""
        raise NotSupported("the agenda is not offered")

    def export_portability(self, request: PortabilityRequest, timeout_s: float | None = None) -> PortabilityExport:
        """Export the data of the patients ``request`` names as a portability archive (LGC.PORT.01).

        ``timeout_s`` replaces the adapter's usual call timeout for this call (an export takes long).
        """
        raise NotSupported("data portability is not offered")

    def import_portability(self, archive: bytes, timeout_s: float | None = None) -> PortabilityImport:
        """Import a portability archive another software exported; what the SUT took and refused.

        ``timeout_s`` replaces the adapter's usual call timeout for this call.
        """
        raise NotSupported("data portability is not offered")
