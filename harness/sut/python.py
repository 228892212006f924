"""The Python adapter: drive a SUT written in Python through an object in-process.

``--sut python:package.module:ClassName`` imports the class and instantiates it
without arguments. The object offers any subset of :class:`SutAdapter`'s methods
(same names, same records from :mod:`harness.sut.model`) plus ``describe()``.
Calls run in a daemon thread with a timeout so a hanging SUT gives an ``error``
verdict instead of a hung run (:class:`SutTimeout`; a call stuck for good does not keep
the process from exiting); a missing method is ``not-supported``; any other exception the
object raises, or an answer of the wrong type, is the SUT breaking (:class:`SutError`).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from harness.sut.base import SutAdapter, SutError, SutTimeout
from harness.sut.model import (
    Appointment,
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
from harness.verdicts import NotSupported, ScenarioOutcome

T = TypeVar("T")


def load_object(import_path: str) -> Any:
    """Import ``package.module:ClassName`` and return an instance of the class."""
    module_name, _, attr = import_path.partition(":")
    if not module_name or not attr:
        raise SutError(f"expected 'package.module:ClassName', got {import_path!r}")
    try:
        module = importlib.import_module(module_name)
        factory = getattr(module, attr)
    except Exception as exc:  # ImportError, AttributeError, but also a SyntaxError in the module
        raise SutError(f"cannot load {import_path!r}: {type(exc).__name__}: {exc}") from None
    if not callable(factory):
        raise SutError(f"{import_path!r} is not a class or factory")
    try:
        return factory()
    except Exception as exc:
        raise SutError(f"cannot create {import_path!r}: {type(exc).__name__}: {exc}") from exc


class PythonSut(SutAdapter):
    """Adapter delegating to an in-process Python object."""

    name = "python"

    def __init__(self, target: Any, timeout_s: float = 10.0) -> None:
        self.target = target
        self.timeout_s = timeout_s

    def close(self) -> None:
        closer = getattr(self.target, "close", None)
        if callable(closer):
            closer()

    def _delegate(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._delegate_within(self.timeout_s, method, *args, **kwargs)

    def _delegate_within(self, timeout_s: float | None, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` of the target, giving up after ``timeout_s`` (None: the adapter's timeout)."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        func: Callable[..., Any] | None = getattr(self.target, method, None)
        if not callable(func):
            raise NotSupported(f"the Python SUT has no '{method}' operation")
        outcome: dict[str, Any] = {}
        finished = threading.Event()

        def call() -> None:
            try:
                outcome["value"] = func(*args, **kwargs)
            except BaseException as exc:  # handed back to the caller's thread below
                outcome["error"] = exc
            finally:
                finished.set()

        # A daemon thread per call: a call stuck for good is abandoned, never joined.
        threading.Thread(target=call, name=f"python-sut-{method}", daemon=True).start()
        if not finished.wait(timeout):
            raise SutTimeout(f"{method}: no answer within {timeout:g} s")
        exc = outcome.get("error")
        if exc is None:
            return outcome.get("value")
        if isinstance(exc, ScenarioOutcome | SutError):
            raise exc
        if not isinstance(exc, Exception):
            raise exc
        raise SutError(f"{method}: the SUT raised {type(exc).__name__}: {exc}") from exc

    def describe(self) -> SutDescription:
        description = self._delegate("describe")
        if not isinstance(description, SutDescription):
            raise SutError("describe() must return a harness.sut.model.SutDescription")
        return description

    def configure_endpoints(self, config: EndpointConfig) -> None:
        self._delegate("configure_endpoints", config)

    def reset(self) -> None:
        self._delegate("reset")

    def set_clock(self, now: datetime) -> None:
        self._delegate("set_clock", now)

    def create_patient(self, traits: PatientTraits, identity_document: str = "") -> PatientRecord:
        return _typed(self._delegate("create_patient", traits, identity_document), PatientRecord, "create_patient")

    def get_patient(self, patient_id: str) -> PatientRecord:
        return _typed(self._delegate("get_patient", patient_id), PatientRecord, "get_patient")

    def list_patients(self) -> list[PatientRecord]:
        return _typed_list(self._delegate("list_patients"), PatientRecord, "list_patients")

    def find_patients_by_ins(self, typed_matricule: str) -> list[PatientRecord]:
        return _typed_list(
            self._delegate("find_patients_by_ins", typed_matricule), PatientRecord, "find_patients_by_ins"
        )

    def update_traits(self, patient_id: str, changes: dict[str, Any]) -> PatientRecord:
        return _typed(self._delegate("update_traits", patient_id, changes), PatientRecord, "update_traits")

    def check_identity(self, patient_id: str, document_type: str) -> PatientRecord:
        return _typed(self._delegate("check_identity", patient_id, document_type), PatientRecord, "check_identity")

    def search_ins(
        self, patient_id: str, mode: str = "traits", carte_vitale: dict[str, Any] | None = None
    ) -> InsOperationResult:
        result = self._delegate("search_ins", patient_id, mode, carte_vitale)
        return _typed(result, InsOperationResult, "search_ins")

    def verify_ins(self, patient_id: str) -> InsOperationResult:
        return _typed(self._delegate("verify_ins", patient_id), InsOperationResult, "verify_ins")

    def receive_identity_feed(self, message: bytes) -> FeedAck:
        return _typed(self._delegate("receive_identity_feed", message), FeedAck, "receive_identity_feed")

    def worklist(self) -> list[WorklistItem]:
        return _typed_list(self._delegate("worklist"), WorklistItem, "worklist")

    def traces(self) -> list[TraceEntry]:
        return _typed_list(self._delegate("traces"), TraceEntry, "traces")

    def produce_document(
        self, patient_id: str, type_code: str, structure: str = "N1", act_date: str | None = None
    ) -> ProducedDocument:
        # act_date only when asked, so an object written before it existed keeps working
        extra = {} if act_date is None else {"act_date": act_date}
        produced = self._delegate("produce_document", patient_id, type_code, structure, **extra)
        return _typed(produced, ProducedDocument, "produce_document")

    def import_document(self, patient_id: str, cda: bytes, stylesheet: bytes | None = None) -> StoredDocument:
        stored = self._delegate("import_document", patient_id, cda, stylesheet)
        return _typed(stored, StoredDocument, "import_document")

    def list_documents(self, patient_id: str, sort: str = "creation-date") -> list[StoredDocument]:
        return _typed_list(self._delegate("list_documents", patient_id, sort), StoredDocument, "list_documents")

    def set_document_visibility(
        self,
        patient_id: str,
        document_id: str,
        masked_to_ps: bool,
        invisible_to_patient: bool,
        invisible_to_legal_representatives: bool,
    ) -> None:
        self._delegate(
            "set_document_visibility",
            patient_id,
            document_id,
            masked_to_ps,
            invisible_to_patient,
            invisible_to_legal_representatives,
        )

    def validate_document(self, patient_id: str, document_id: str) -> DmpOutcome:
        return _typed(self._delegate("validate_document", patient_id, document_id), DmpOutcome, "validate_document")

    def dmp_action(self, patient_id: str, document_id: str, action: str) -> DmpOutcome:
        return _typed(self._delegate("dmp_action", patient_id, document_id, action), DmpOutcome, "dmp_action")

    def set_dmp_consent(self, patient_id: str, feed_opposition: bool, consultation_opposition: bool) -> None:
        self._delegate("set_dmp_consent", patient_id, feed_opposition, consultation_opposition)

    def send_mss(self, request: MssSendRequest) -> MssOutcome:
        return _typed(self._delegate("send_mss", request), MssOutcome, "send_mss")

    def fetch_mss(self) -> list[ReceivedMessage]:
        return _typed_list(self._delegate("fetch_mss"), ReceivedMessage, "fetch_mss")

    def reply_mss(self, message_id: str, text: str) -> MssOutcome:
        return _typed(self._delegate("reply_mss", message_id, text), MssOutcome, "reply_mss")

    def find_correspondents(self, idnps: str = "", family: str = "", given: str = "") -> list[Correspondent]:
        found = self._delegate("find_correspondents", idnps, family, given)
        return _typed_list(found, Correspondent, "find_correspondents")

    def psc_client(self) -> PscClient:
        return _typed(self._delegate("psc_client"), PscClient, "psc_client")

    def start_psc_login(self) -> PscLogin:
        return _typed(self._delegate("start_psc_login"), PscLogin, "start_psc_login")

    def start_psc_ciba(self, login_hint: str) -> None:
        self._delegate("start_psc_ciba", login_hint)

    def psc_session(self) -> PscSession:
        return _typed(self._delegate("psc_session"), PscSession, "psc_session")

    def psc_logout(self) -> PscLogout:
        return _typed(self._delegate("psc_logout"), PscLogout, "psc_logout")

    def create_user(self, login: str, password: str, subject_name_id: str, family: str, given: str) -> str:
        user_id = self._delegate("create_user", login, password, subject_name_id, family, given)
        return _typed(user_id, str, "create_user")

    def password_login(self, login: str, password: str) -> PscSession:
        return _typed(self._delegate("password_login", login, password), PscSession, "password_login")

    def store_id_document(self, patient_id: str, content: bytes, media_type: str) -> str:
        document_id = self._delegate("store_id_document", patient_id, content, media_type)
        return _typed(document_id, str, "store_id_document")

    def list_id_documents(self, patient_id: str) -> list[IdDocumentCopy]:
        return _typed_list(self._delegate("list_id_documents", patient_id), IdDocumentCopy, "list_id_documents")

    def read_id_document(self, patient_id: str, document_id: str) -> bytes:
        return _typed(self._delegate("read_id_document", patient_id, document_id), bytes, "read_id_document")

    def record_activity(self, patient_id: str, kind: str) -> None:
        self._delegate("record_activity", patient_id, kind)

    def raw_storage(self) -> list[RawStorageItem]:
        return _typed_list(self._delegate("raw_storage"), RawStorageItem, "raw_storage")

    def run_maintenance(self) -> list[str]:
        return _typed_list(self._delegate("run_maintenance"), str, "run_maintenance")

    def create_appointment(self, patient_id: str, start: datetime, end: datetime, summary: str) -> str:
        appointment_id = self._delegate("create_appointment", patient_id, start, end, summary)
        return _typed(appointment_id, str, "create_appointment")

    def list_appointments(self, patient_id: str) -> list[Appointment]:
        return _typed_list(self._delegate("list_appointments", patient_id), Appointment, "list_appointments")

    def export_portability(self, request: PortabilityRequest, timeout_s: float | None = None) -> PortabilityExport:
        exported = self._delegate_within(timeout_s, "export_portability", request)
        return _typed(exported, PortabilityExport, "export_portability")

    def import_portability(self, archive: bytes, timeout_s: float | None = None) -> PortabilityImport:
        imported = self._delegate_within(timeout_s, "import_portability", archive)
        return _typed(imported, PortabilityImport, "import_portability")


def _typed(value: Any, expected: type[T], method: str) -> T:
    if not isinstance(value, expected):
        raise SutError(f"{method}() returned {type(value).__name__}, expected {expected.__name__}")
    return value


def _typed_list(value: Any, expected: type[T], method: str) -> list[T]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, expected) for v in value):
        raise SutError(f"{method}() must return a list of {expected.__name__}, got {type(value).__name__}")
    return list(value)
