"""The HTTP control-API adapter: drives any SUT that implements ``openapi.yaml``.

A vendor adds these endpoints to a test build of their software. Every call has a
timeout, for the whole answer, and an answer at most :data:`MAX_ANSWER_BYTES` long (read by
chunks, never whole); a refused connection, a timeout, a 5xx or a body that is not the JSON
the spec describes becomes a :class:`SutError` naming the endpoint (a 404 too: on
``/patients/{id}`` it means the SUT lost an identity), a timeout more precisely a
:class:`SutTimeout`. A 501, or a capability the
SUT does not declare in ``GET /capabilities``, becomes ``not-supported``; a 422 is
:class:`SutRefused`, a business refusal some scenarios expect (and so is a 401 to a
password login: a wrong password).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import requests
import urllib3

from harness.sut.base import SutAdapter, SutError, SutRefused, SutTimeout
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

MAX_ANSWER_BYTES = 512 * 1024 * 1024
"""The most an answer may hold (a raw-storage dump, a portability archive in base64); more is a SutError."""
ANSWER_CHUNK_BYTES = 64 * 1024


class HttpSut(SutAdapter):
    """Adapter for a SUT exposing the control API at ``base_url``.

    Example:
        >>> sut = HttpSut("http://127.0.0.1:8080", timeout_s=10)
        >>> sut.describe().capabilities  # doctest: +SKIP
    """

    name = "http"

    def __init__(self, base_url: str, timeout_s: float = 10.0, max_answer_bytes: int = MAX_ANSWER_BYTES) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_answer_bytes = max_answer_bytes
        self._session = requests.Session()
        self._description: SutDescription | None = None

    def close(self) -> None:
        self._session.close()

    # -- transport ---------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        capability: Capability | None = None,
        params: dict[str, str] | None = None,
        refusals: tuple[int, ...] = (422,),
        timeout_s: float | None = None,
    ) -> Any:
        """One call; ``timeout_s`` replaces the adapter's timeout for it (a long export)."""
        if capability is not None:
            self.require(capability)
        url = f"{self.base_url}{path}"
        timeout = self.timeout_s if timeout_s is None else timeout_s
        where = f"{method} {path}"
        try:
            response = self._session.request(method, url, json=body, params=params, timeout=timeout, stream=True)
            content = _bounded_content(response, self.max_answer_bytes, time.monotonic() + timeout, where, timeout)
        except requests.Timeout:
            raise SutTimeout(f"{where}: no answer within {timeout:g} s") from None
        except requests.ConnectionError as exc:
            raise SutError(f"{where}: cannot connect to the SUT ({_short(exc)})") from None
        except requests.RequestException as exc:  # a broken chunked body, a bad content encoding...
            raise SutError(f"{where}: the answer could not be read ({_short(exc)})") from None
        if response.status_code == 501:
            raise NotSupported(f"{where} answered 501 Not Implemented")
        if response.status_code in refusals:
            raise SutRefused(f"{where}: refused ({response.status_code}): {_problem(content)}")
        if response.status_code >= 400:
            raise SutError(f"{where}: HTTP {response.status_code}: {_problem(content)}")
        if response.status_code == 204 or not content:
            return None
        try:
            return json.loads(content)
        except ValueError:
            raise SutError(f"{where}: the answer is not JSON: {content[:120].decode('utf-8', 'replace')!r}") from None

    def _patient(self, data: Any, where: str) -> PatientRecord:
        try:
            return PatientRecord.from_json(data)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise SutError(f"{where}: malformed patient in the answer ({exc})") from None

    # -- description -------------------------------------------------------------
    def describe(self) -> SutDescription:
        if self._description is None:
            data = self._call("GET", "/capabilities")
            try:
                if not isinstance(data["capabilities"], list) or not isinstance(data.get("profiles", []), list):
                    raise TypeError("'capabilities' and 'profiles' must be arrays")
                caps = frozenset(Capability(c) for c in data["capabilities"] if c in Capability._value2member_map_)
                mllp = data.get("mllp")
                self._description = SutDescription(
                    publisher=str(data["sut"]["publisher"]),
                    software=str(data["sut"]["software"]),
                    version=str(data["sut"]["version"]),
                    capabilities=caps,
                    profiles=tuple(str(p) for p in data.get("profiles", [])),
                    mllp=(str(mllp["host"]), int(mllp["port"])) if mllp else None,
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise SutError(f"GET /capabilities: malformed answer ({exc})") from None
        return self._description

    # -- operations ----------------------------------------------------------------
    def configure_endpoints(self, config: EndpointConfig) -> None:
        self._call("PUT", "/config/endpoints", config.to_json())

    def reset(self) -> None:
        self._call("POST", "/reset", capability=Capability.RESET)

    def set_clock(self, now: datetime) -> None:
        self._call("PUT", "/clock", {"now": now.isoformat()}, capability=Capability.CLOCK)

    def create_patient(self, traits: PatientTraits, identity_document: str = "") -> PatientRecord:
        body = {"traits": traits.to_json(), "identity_document": identity_document}
        return self._patient(self._call("POST", "/patients", body, Capability.IDENTITY), "POST /patients")

    def get_patient(self, patient_id: str) -> PatientRecord:
        self.require(Capability.IDENTITY)
        return self._patient(self._call("GET", f"/patients/{patient_id}"), "GET /patients/{id}")

    def list_patients(self) -> list[PatientRecord]:
        data = self._call("GET", "/patients", capability=Capability.IDENTITY)
        return [self._patient(p, "GET /patients") for p in _items(data, "GET /patients")]

    def find_patients_by_ins(self, typed_matricule: str) -> list[PatientRecord]:
        data = self._call("GET", "/patients", capability=Capability.IDENTITY, params={"ins": typed_matricule})
        return [self._patient(p, "GET /patients?ins=") for p in _items(data, "GET /patients?ins=")]

    def update_traits(self, patient_id: str, changes: dict[str, Any]) -> PatientRecord:
        self.require(Capability.IDENTITY)
        data = self._call("PATCH", f"/patients/{patient_id}", {"traits": changes})
        return self._patient(data, "PATCH /patients/{id}")

    def check_identity(self, patient_id: str, document_type: str) -> PatientRecord:
        self.require(Capability.IDENTITY)
        data = self._call("POST", f"/patients/{patient_id}/identity-check", {"document_type": document_type})
        return self._patient(data, "POST /patients/{id}/identity-check")

    def search_ins(
        self, patient_id: str, mode: str = "traits", carte_vitale: dict[str, Any] | None = None
    ) -> InsOperationResult:
        self.require(Capability.INSI)
        body: dict[str, Any] = {"mode": mode}
        if carte_vitale is not None:
            body["carte_vitale"] = carte_vitale
        return self._ins_result(self._call("POST", f"/patients/{patient_id}/ins/search", body), "ins/search")

    def verify_ins(self, patient_id: str) -> InsOperationResult:
        self.require(Capability.INSI)
        return self._ins_result(self._call("POST", f"/patients/{patient_id}/ins/verify", {}), "ins/verify")

    def _ins_result(self, data: Any, where: str) -> InsOperationResult:
        try:
            return InsOperationResult(
                code=str(data["code"]), outcome=str(data["outcome"]), patient=PatientRecord.from_json(data["patient"])
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise SutError(f"{where}: malformed answer ({exc})") from None

    def receive_identity_feed(self, message: bytes) -> FeedAck:
        data = self._call(
            "POST", "/identity-feeds", {"message": message.decode("utf-8", "replace")}, Capability.IDENTITY_FEED
        )
        try:
            ack = str(data["ack"]).encode("utf-8")
        except (KeyError, TypeError) as exc:
            raise SutError(f"POST /identity-feeds: malformed answer ({exc})") from None
        return FeedAck(ack_code=_msa_code(ack), message=ack, patient_id=str(data.get("patient_id") or ""))

    def worklist(self) -> list[WorklistItem]:
        data = self._call("GET", "/worklist", capability=Capability.WORKLIST)
        try:
            return [
                WorklistItem(str(i["patient_id"]), str(i.get("reason", "")), str(i.get("created", "")))
                for i in _items(data, "GET /worklist")
            ]
        except (KeyError, TypeError) as exc:
            raise SutError(f"GET /worklist: malformed answer ({exc})") from None

    def traces(self) -> list[TraceEntry]:
        data = self._call("GET", "/traces", capability=Capability.TRACES)
        try:
            return [TraceEntry.from_json(t) for t in _items(data, "GET /traces")]
        except (AttributeError, TypeError, ValueError) as exc:
            raise SutError(f"GET /traces: malformed answer ({exc})") from None

    def produce_document(
        self, patient_id: str, type_code: str, structure: str = "N1", act_date: str | None = None
    ) -> ProducedDocument:
        self.require(Capability.DOCUMENTS)
        body = {"type_code": type_code, "structure": structure}
        if act_date is not None:
            body["act_date"] = act_date
        data = self._call("POST", f"/patients/{patient_id}/documents", body)
        return _produced(data, "POST /patients/{id}/documents")

    def import_document(self, patient_id: str, cda: bytes, stylesheet: bytes | None = None) -> StoredDocument:
        self.require(Capability.DOCUMENTS)
        body: dict[str, Any] = {"cda_base64": base64.b64encode(cda).decode("ascii")}
        if stylesheet is not None:
            body["stylesheet_base64"] = base64.b64encode(stylesheet).decode("ascii")
        data = self._call("POST", f"/patients/{patient_id}/documents/import", body)
        return _stored(data, "POST /patients/{id}/documents/import")

    def list_documents(self, patient_id: str, sort: str = "creation-date") -> list[StoredDocument]:
        self.require(Capability.DOCUMENTS)
        data = self._call("GET", f"/patients/{patient_id}/documents", params={"sort": sort})
        where = "GET /patients/{id}/documents"
        return [_stored(d, where) for d in _items(data, where)]

    def set_document_visibility(
        self,
        patient_id: str,
        document_id: str,
        masked_to_ps: bool,
        invisible_to_patient: bool,
        invisible_to_legal_representatives: bool,
    ) -> None:
        self.require(Capability.DMP)
        body = {
            "masked_to_ps": masked_to_ps,
            "invisible_to_patient": invisible_to_patient,
            "invisible_to_legal_representatives": invisible_to_legal_representatives,
        }
        self._call("PUT", f"/patients/{patient_id}/documents/{_segment(document_id)}/visibility", body)

    def validate_document(self, patient_id: str, document_id: str) -> DmpOutcome:
        self.require(Capability.DMP)
        data = self._call("POST", f"/patients/{patient_id}/documents/{_segment(document_id)}/validate")
        return _dmp_outcome(data, "POST /patients/{id}/documents/{document_id}/validate")

    def dmp_action(self, patient_id: str, document_id: str, action: str) -> DmpOutcome:
        self.require(Capability.DMP)
        data = self._call("POST", f"/patients/{patient_id}/documents/{_segment(document_id)}/dmp", {"action": action})
        return _dmp_outcome(data, "POST /patients/{id}/documents/{document_id}/dmp")

    def set_dmp_consent(self, patient_id: str, feed_opposition: bool, consultation_opposition: bool) -> None:
        self.require(Capability.DMP)
        body = {"feed_opposition": feed_opposition, "consultation_opposition": consultation_opposition}
        self._call("PUT", f"/patients/{patient_id}/dmp-consent", body)

    # -- MSSanté and the Annuaire Santé ---------------------------------------------------
    def send_mss(self, request: MssSendRequest) -> MssOutcome:
        self.require(Capability.MSSANTE)
        data = self._call("POST", f"/patients/{request.patient_id}/mss-messages", request.to_json())
        return _mss_outcome(data, "POST /patients/{id}/mss-messages")

    def fetch_mss(self) -> list[ReceivedMessage]:
        self.require(Capability.MSSANTE)
        data = self._call("POST", "/mss/fetch", {})
        where = "POST /mss/fetch"
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            raise SutError(f"{where}: expected an object with a 'messages' list")
        try:
            return [ReceivedMessage.from_json(m) for m in data["messages"]]
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise SutError(f"{where}: malformed message in the answer ({exc})") from None

    def reply_mss(self, message_id: str, text: str) -> MssOutcome:
        self.require(Capability.MSSANTE)
        data = self._call("POST", "/mss/replies", {"message_id": message_id, "text": text})
        return _mss_outcome(data, "POST /mss/replies")

    def find_correspondents(self, idnps: str = "", family: str = "", given: str = "") -> list[Correspondent]:
        self.require(Capability.ANNUAIRE)
        params = {name: value for name, value in (("idnps", idnps), ("family", family), ("given", given)) if value}
        data = self._call("GET", "/annuaire/practitioners", params=params)
        where = "GET /annuaire/practitioners"
        if not isinstance(data, dict) or not isinstance(data.get("correspondents"), list):
            raise SutError(f"{where}: expected an object with a 'correspondents' list")
        try:
            return [Correspondent.from_json(c) for c in data["correspondents"]]
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise SutError(f"{where}: malformed correspondent in the answer ({exc})") from None

    # -- Pro Santé Connect and local accounts ---------------------------------------------------
    def psc_client(self) -> PscClient:
        data = self._call("GET", "/psc/client", capability=Capability.PSC)
        return _record(PscClient.from_json, data, "GET /psc/client")

    def start_psc_login(self) -> PscLogin:
        data = self._call("POST", "/psc/login", {}, Capability.PSC)
        return _record(PscLogin.from_json, data, "POST /psc/login")

    def start_psc_ciba(self, login_hint: str) -> None:
        self._call("POST", "/psc/ciba", {"login_hint": login_hint}, Capability.PSC)

    def psc_session(self) -> PscSession:
        data = self._call("GET", "/psc/session", capability=Capability.PSC)
        return _record(PscSession.from_json, data, "GET /psc/session")

    def psc_logout(self) -> PscLogout:
        data = self._call("POST", "/psc/logout", {}, Capability.PSC)
        return _record(PscLogout.from_json, data, "POST /psc/logout")

    def create_user(self, login: str, password: str, subject_name_id: str, family: str, given: str) -> str:
        body = {
            "login": login,
            "password": password,
            "subject_name_id": subject_name_id,
            "family": family,
            "given": given,
        }
        data = self._call("POST", "/users", body, Capability.PSC)
        if not isinstance(data, dict) or not isinstance(data.get("user_id"), str) or not data["user_id"]:
            raise SutError("POST /users: expected an object with a 'user_id' string")
        return str(data["user_id"])

    def password_login(self, login: str, password: str) -> PscSession:
        """The session after a login with the SUT's password; a wrong password is a SutRefused (401)."""
        body = {"login": login, "password": password}
        data = self._call("POST", "/users/login", body, Capability.PSC, refusals=(401, 422))
        return _record(PscSession.from_json, data, "POST /users/login")

    # -- copies of identity documents ------------------------------------------------------------
    def store_id_document(self, patient_id: str, content: bytes, media_type: str) -> str:
        body = {"content_base64": base64.b64encode(content).decode("ascii"), "media_type": media_type}
        data = self._call("POST", f"/patients/{patient_id}/id-documents", body, Capability.ID_DOCUMENTS)
        if not isinstance(data, dict) or not isinstance(data.get("document_id"), str) or not data["document_id"]:
            raise SutError("POST /patients/{id}/id-documents: expected an object with a 'document_id' string")
        return str(data["document_id"])

    def list_id_documents(self, patient_id: str) -> list[IdDocumentCopy]:
        data = self._call("GET", f"/patients/{patient_id}/id-documents", capability=Capability.ID_DOCUMENTS)
        where = "GET /patients/{id}/id-documents"
        return [_record(IdDocumentCopy.from_json, d, where) for d in _listed(data, "documents", where)]

    def read_id_document(self, patient_id: str, document_id: str) -> bytes:
        path = f"/patients/{patient_id}/id-documents/{_segment(document_id)}"
        data = self._call("GET", path, capability=Capability.ID_DOCUMENTS)
        where = "GET /patients/{id}/id-documents/{document_id}"
        if not isinstance(data, dict) or not isinstance(data.get("content_base64"), str):
            raise SutError(f"{where}: expected an object with a 'content_base64' string")
        try:
            return base64.b64decode(data["content_base64"], validate=True)
        except ValueError:
            raise SutError(f"{where}: 'content_base64' is not base64") from None

    def record_activity(self, patient_id: str, kind: str) -> None:
        self._call("POST", f"/patients/{patient_id}/activities", {"kind": kind}, Capability.ID_DOCUMENTS)

    def raw_storage(self) -> list[RawStorageItem]:
        data = self._call("GET", "/storage/raw", capability=Capability.ID_DOCUMENTS)
        where = "GET /storage/raw"
        return [_record(RawStorageItem.from_json, item, where) for item in _items(data, where)]

    def run_maintenance(self) -> list[str]:
        data = self._call("POST", "/maintenance/run", {}, Capability.ID_DOCUMENTS)
        where = "POST /maintenance/run"
        deleted = _listed(data, "deleted", where)
        if not all(isinstance(d, str) for d in deleted):
            raise SutError(f"{where}: 'deleted' must list document ids (strings)")
        return [str(d) for d in deleted]

    # -- portability ---------------------------------------------------------------------------------
    def create_appointment(self, patient_id: str, start: datetime, end: datetime, summary: str) -> str:
        body = {"start": start.isoformat(), "end": end.isoformat(), "summary": summary}
        data = self._call("POST", f"/patients/{patient_id}/appointments", body, Capability.PORTABILITY)
        if not isinstance(data, dict) or not isinstance(data.get("appointment_id"), str) or not data["appointment_id"]:
            raise SutError("POST /patients/{id}/appointments: expected an object with an 'appointment_id' string")
        return str(data["appointment_id"])

    def list_appointments(self, patient_id: str) -> list[Appointment]:
        data = self._call("GET", f"/patients/{patient_id}/appointments", capability=Capability.PORTABILITY)
        where = "GET /patients/{id}/appointments"
        return [_record(Appointment.from_json, a, where) for a in _listed(data, "appointments", where)]

    def export_portability(self, request: PortabilityRequest, timeout_s: float | None = None) -> PortabilityExport:
        self.require(Capability.PORTABILITY)
        data = self._call("POST", "/portability/exports", request.to_json(), timeout_s=timeout_s)
        return _record(PortabilityExport.from_json, data, "POST /portability/exports")

    def import_portability(self, archive: bytes, timeout_s: float | None = None) -> PortabilityImport:
        self.require(Capability.PORTABILITY)
        body = {"archive_base64": base64.b64encode(archive).decode("ascii")}
        data = self._call("POST", "/portability/imports", body, timeout_s=timeout_s)
        return _record(PortabilityImport.from_json, data, "POST /portability/imports")


R = TypeVar("R")


def _record(parse: Callable[[dict[str, Any]], R], data: Any, where: str) -> R:
    """``parse(data)``, a malformed answer being a SutError naming the endpoint."""
    if not isinstance(data, dict):
        raise SutError(f"{where}: expected a JSON object")
    try:
        return parse(data)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise SutError(f"{where}: malformed answer ({exc})") from None


def _mss_outcome(data: Any, where: str) -> MssOutcome:
    try:
        return MssOutcome.from_json(data)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise SutError(f"{where}: malformed answer ({exc})") from None


def _segment(document_id: str) -> str:
    """A document id as one path segment (``root^extension`` ids hold a caret)."""
    return quote(document_id, safe="")


def _dmp_outcome(data: Any, where: str) -> DmpOutcome:
    try:
        return DmpOutcome.from_json(data)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise SutError(f"{where}: malformed answer ({exc})") from None


def _produced(data: Any, where: str) -> ProducedDocument:
    try:
        return ProducedDocument.from_json(data)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise SutError(f"{where}: malformed document in the answer ({exc})") from None


def _stored(data: Any, where: str) -> StoredDocument:
    try:
        return StoredDocument.from_json(data)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise SutError(f"{where}: malformed document in the answer ({exc})") from None


def _listed(data: Any, name: str, where: str) -> list[Any]:
    if not isinstance(data, dict) or not isinstance(data.get(name), list):
        raise SutError(f"{where}: expected an object with a '{name}' list")
    return list(data[name])


def _items(data: Any, where: str) -> list[Any]:
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise SutError(f"{where}: expected an object with an 'items' list")
    return list(data["items"])


def _msa_code(ack: bytes) -> str:
    """MSA-1 of an HL7 v2 ACK, or '' when there is none."""
    for segment in ack.replace(b"\n", b"\r").split(b"\r"):
        if segment.startswith(b"MSA|"):
            fields = segment.split(b"|")
            return fields[1].decode("ascii", "replace") if len(fields) > 1 else ""
    return ""


def _problem(content: bytes) -> str:
    try:
        data = json.loads(content)
        if isinstance(data, dict):
            return str(data.get("detail") or data.get("title") or data)[:200]
    except ValueError:
        pass
    return content[:200].decode("utf-8", "replace")


def _bounded_content(response: requests.Response, limit: int, deadline: float, where: str, timeout: float) -> bytes:
    """The answer's body, read by chunks: more than ``limit`` bytes is a SutError, past ``deadline`` a SutTimeout.

    ``requests`` applies its timeout to each read only; a SUT trickling its answer a byte at
    a time would otherwise hold the run for ever, and an endless answer fill the memory.
    """
    if getattr(response, "_content_consumed", False):  # a response hook has read it already (the contract tests)
        if len(response.content) > limit:
            raise SutError(f"{where}: the answer is larger than {limit:,} bytes")
        return bytes(response.content)
    chunks: list[bytes] = []
    size = 0
    with response:
        while True:
            try:
                chunk = response.raw.read1(ANSWER_CHUNK_BYTES, decode_content=True)  # what arrived, not a full chunk
            except urllib3.exceptions.ReadTimeoutError:
                raise SutTimeout(f"{where}: no answer within {timeout:g} s") from None
            except urllib3.exceptions.HTTPError as exc:  # a broken chunked body, a bad content encoding...
                raise SutError(f"{where}: the answer could not be read ({_short(exc)})") from None
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise SutError(f"{where}: the answer is larger than {limit:,} bytes: not read further")
            if time.monotonic() > deadline:
                raise SutTimeout(f"{where}: the answer did not end within {timeout:g} s")
            chunks.append(chunk)
    return b"".join(chunks)


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 160 else text[:157] + "..."
