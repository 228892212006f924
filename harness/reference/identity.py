"""The practice's INS rules for identities it manages itself (RNIV, INS implementation guide).

Creation, identity-document check, trait edits (rule 27), INSi retrieval by traits or
Carte Vitale (rules 37, 39) and unit verification (rules 48, 49), each INSi call traced.
Identities received from another domain reuse these building blocks in
:mod:`harness.reference.feeds`. The defects of :mod:`harness.reference.defects` that
concern these rules are switched here, each at the one place it acts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from harness.reference import CENTRE_DE_SANTE
from harness.reference.accounts import CurrentSession, UserSession
from harness.reference.insi import AuthMode, InsiClient, InsiNotConfigured
from harness.reference.model import (
    Ins,
    InsHistoryEntry,
    InvalidInput,
    Patient,
    Status,
    Traits,
    apply_trait_changes,
    traits_from_json,
)
from harness.reference.nir import is_valid_matricule
from harness.reference.settings import Clock, EndpointSettings
from harness.reference.soap import (
    CARD_OPERATION,
    TRAITS_OPERATION,
    CardQuery,
    InsiAnswer,
    InsiIndividu,
    LpsIdentity,
    TraitsQuery,
)
from harness.reference.store import Store

log = logging.getLogger("harness.reference")

RETRIEVAL = "retrieval"
VERIFICATION = "verification"
KO_VERIFICATION_REASON = "INS verification KO"


class UnknownPatient(LookupError):
    """No identity with this id (the API answers 404)."""


class Conflict(RuntimeError):
    """The operation does not apply in the current state (the API answers 409)."""


@dataclass(frozen=True, slots=True)
class InsOutcome:
    """What an INSi search or verification gives back to the caller."""

    code: str
    outcome: str
    patient: Patient
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "outcome": self.outcome, "patient": self.patient.to_json()}
        if self.detail:
            body["detail"] = self.detail
        return body


@dataclass(frozen=True, slots=True)
class CheckedAnswer:
    """An INSi answer plus the practice's own check of it (the NIR key of a returned matricule)."""

    answer: InsiAnswer
    rejected: str = ""

    @property
    def code(self) -> str:
        """The code the practice acts on: ``error`` when it rejected a CR 00."""
        return "error" if self.rejected else self.answer.code

    @property
    def individu(self) -> InsiIndividu | None:
        return None if self.rejected else self.answer.individu

    @property
    def detail(self) -> str:
        return self.rejected or self.answer.detail


class IdentityService:
    """Identities of the practice and the INS rules that apply to them."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        endpoints: EndpointSettings,
        lps: LpsIdentity,
        profiles: tuple[str, ...],
        defects: frozenset[str],
        call_timeout_s: float,
    ) -> None:
        self.store = store
        self.clock = clock
        self.endpoints = endpoints
        self.lps = lps
        self.profiles = profiles
        self.defects = defects
        self.call_timeout_s = call_timeout_s
        self._guard = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}
        self.session = CurrentSession()
        """Who is logged in to the practice (:mod:`harness.reference.psc` logs users in and out)."""

    # -- plumbing shared with the feed rules ------------------------------------------------
    def has(self, defect: str) -> bool:
        return defect in self.defects

    @contextmanager
    def lock(self, patient_id: str) -> Iterator[None]:
        """Serialise the operations on one identity (INSi calls included)."""
        with self._guard:
            lock = self._locks.setdefault(patient_id, threading.RLock())
        with lock:
            yield

    @property
    def auth_mode(self) -> AuthMode:
        """Organisation certificate under "Centres de santé", CPS otherwise."""
        if CENTRE_DE_SANTE in self.profiles and not self.has("cps-assertion-in-centre"):
            return AuthMode.ORGANISATION
        return AuthMode.CPS

    def psc_user(self) -> UserSession | None:
        """The Pro Santé Connect session the national-service calls are made in, if any.

        Inferred (PSC.10, INS/PSC.01, DMP/PSC.01; no public ANS wire detail was read): in
        a PSC session INSi and the DMP are called with the PSC access token as Bearer and
        the PSC professional as the user. The ``psc-not-used-for-apis`` defect ignores it.
        """
        return None if self.has("psc-not-used-for-apis") else self.session.psc()

    def insi_client(self) -> InsiClient:
        """A client for the configured endpoint, in PSC mode during a PSC session; raises InsiNotConfigured."""
        endpoint = self.endpoints.insi()
        if endpoint is None:
            raise InsiNotConfigured("no INSi endpoint configured (PUT /config/endpoints)")
        user = self.psc_user()
        return InsiClient(
            endpoint,
            AuthMode.PSC if user is not None else self.auth_mode,
            self.lps,
            self.call_timeout_s,
            with_idam=not self.has("bad-lps-context"),
            psc_token=user.access_token if user is not None else "",
            psc_subject=user.subject_name_id if user is not None else "",
        )

    def call_by_traits(self, client: InsiClient, query: TraitsQuery, purpose: str, patient_id: str) -> CheckedAnswer:
        """One RECSANSVITALE call, checked and traced."""
        answer = client.search_by_traits(query, self.clock.now())
        return self._checked_and_traced(client, answer, TRAITS_OPERATION, purpose, patient_id, query.to_json())

    def verify_received(self, patient_id: str, traits: Traits) -> CheckedAnswer:
        """Rule 52: the automatic unit verification of an INS received with ``traits`` (a feed, an import).

        An unconfigured INSi is an ``error`` answer, never an exception: the INS is then not kept.
        """
        t = traits
        query = TraitsQuery(t.birth_name, t.first_first_name, t.sex, t.birth_date, t.birthplace_cog)
        try:
            client = self.insi_client()
        except InsiNotConfigured as exc:
            return CheckedAnswer(InsiAnswer("error", detail=str(exc)))
        return self.call_by_traits(client, query, VERIFICATION, patient_id)

    def call_by_card(self, client: InsiClient, query: CardQuery, patient_id: str) -> CheckedAnswer:
        """One RECVITALE call, checked and traced."""
        answer = client.search_by_card(query, self.clock.now())
        return self._checked_and_traced(client, answer, CARD_OPERATION, RETRIEVAL, patient_id, query.to_json())

    def _checked_and_traced(
        self,
        client: InsiClient,
        answer: InsiAnswer,
        operation: str,
        purpose: str,
        patient_id: str,
        request: dict[str, Any],
    ) -> CheckedAnswer:
        rejected = ""
        if answer.individu is not None and not is_valid_matricule(answer.individu.active.matricule):
            rejected = f"INSi returned matricule {answer.individu.active.matricule!r} whose NIR key is wrong"
        self._trace(client, answer, operation, purpose, patient_id, request, rejected)
        log.info("INSi %s (%s) for %s: %s %s", operation, purpose, patient_id, answer.code, answer.detail)
        return CheckedAnswer(answer, rejected)

    def _trace(
        self,
        client: InsiClient,
        answer: InsiAnswer,
        operation: str,
        purpose: str,
        patient_id: str,
        request: dict[str, Any],
        rejected: str,
    ) -> None:
        if self.has("no-insi-trace"):
            return
        entry: dict[str, Any] = {
            "timestamp": self.clock.iso(),
            "service": "INSi",
            "operation": operation,
            "purpose": purpose,
            "auth_mode": client.auth_mode.value,
            "patient_id": patient_id,
            "return_code": answer.code,
            "label": answer.label,
            "message_id": answer.message_id,
            "request": request,
        }
        if client.psc_subject:
            entry["subject_name_id"] = client.psc_subject
        if answer.detail:
            entry["detail"] = answer.detail
        if answer.individu is not None and not self.has("incomplete-insi-trace"):
            entry["returned"] = answer.individu.to_json()
        if rejected:
            entry["rejected"] = rejected
        self.store.add_trace(entry)

    def add_work_item(self, patient_id: str, reason: str, detail: dict[str, Any], ko: bool = False) -> None:
        """Put an identity or received data aside for a user (a defect forgets it after a KO verification)."""
        if ko and self.has("no-worklist-on-ko"):
            return
        self.store.add_work_item(patient_id, reason, self.clock.iso(), detail)

    def with_insi_identity(self, patient: Patient, individu: InsiIndividu, status: Status) -> Patient:
        """``patient`` carrying the INS INSi returned, its history and INSi's reference strict traits."""
        tiq = individu.traits
        traits = replace(
            patient.traits,
            birth_name=tiq.birth_name or patient.traits.birth_name,
            first_names=tiq.first_names or patient.traits.first_names,
            sex=tiq.sex or patient.traits.sex,
            birth_date=tiq.birth_date or patient.traits.birth_date,
            birthplace_cog=tiq.birthplace_cog or patient.traits.birthplace_cog,
        )
        return replace(
            patient,
            traits=traits,
            ins=Ins(individu.active.matricule, individu.active.oid),
            ins_history=tuple(InsHistoryEntry(h.matricule, h.oid, h.start, h.end) for h in individu.history),
            status=status,
            updated=self.clock.iso(),
        )

    def create_record(self, traits: Traits, status: Status, **fields: Any) -> Patient:
        now = self.clock.iso()
        return self.store.create_patient(
            lambda pid: Patient(id=pid, traits=traits, status=status, created=now, updated=now, **fields)
        )

    # -- identities -----------------------------------------------------------------------------
    def get(self, patient_id: str) -> Patient:
        patient = self.store.get_patient(patient_id)
        if patient is None:
            raise UnknownPatient(f"no identity {patient_id!r}")
        return patient

    def all(self) -> list[Patient]:
        return self.store.list_patients()

    def find_by_typed_ins(self, typed: str) -> list[Patient]:
        """The identities holding the matricule INS a user typed (RNIV rule 17).

        The whole 15 characters are required and the control key must be right before
        any search; the ``skips-nir-key-check`` defect searches on the first 13 only.
        """
        matricule = typed.strip().upper()
        if self.has("matricule-field-13-chars"):
            if len(matricule) != 13:
                raise InvalidInput(f"the matricule field takes 13 characters; {len(matricule)} typed")
        elif not self.has("skips-nir-key-check"):
            if len(matricule) != 15:
                raise InvalidInput(f"a matricule INS has 15 characters (13 + key); {len(matricule)} typed")
            if not is_valid_matricule(matricule):
                raise InvalidInput("the control key of the typed matricule INS is wrong")
        body = matricule[:13]
        return [p for p in self.store.list_patients() if p.ins is not None and p.ins.matricule[:13] == body]

    def create(self, body: Any) -> Patient:
        """A new local identity: VALI when an identity document was checked, PROV otherwise."""
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object")
        if "traits" not in body:
            raise InvalidInput("'traits' is required")
        traits = traits_from_json(body["traits"])
        document = _document_type(body.get("identity_document"), required=False)
        return self.create_record(traits, Status.VALI if document else Status.PROV, identity_document=document)

    def update_traits(self, patient_id: str, body: Any) -> Patient:
        """Edit traits; a changed strict trait invalidates a retrieved INS (rule 27)."""
        if not isinstance(body, dict) or "traits" not in body:
            raise InvalidInput("the body must be an object with 'traits'")
        with self.lock(patient_id):
            patient = self.get(patient_id)
            traits = apply_trait_changes(patient.traits, body["traits"])
            updated = replace(patient, traits=traits, updated=self.clock.iso())
            invalidating = not traits.strict_equal(patient.traits)
            if self.has("drop-ins-on-any-trait-change"):
                invalidating = traits != patient.traits
            holds_ins = patient.ins is not None or patient.status.has_insi
            if invalidating and holds_ins and not self.has("keep-ins-on-trait-change"):
                updated = updated.without_ins()
            self.store.save_patient(updated)
            return updated

    def check_identity(self, patient_id: str, body: Any) -> Patient:
        """Record an identity-document check: PROV→VALI, RECUP→QUAL."""
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object")
        document = _document_type(body.get("document_type"), required=True)
        with self.lock(patient_id):
            patient = self.get(patient_id)
            updated = replace(
                patient,
                identity_document=document,
                status=patient.status.with_document_check(),
                updated=self.clock.iso(),
            )
            self.store.save_patient(updated)
            return updated

    # -- INSi -------------------------------------------------------------------------------------
    def search(self, patient_id: str, body: Any) -> InsOutcome:
        """Retrieve the INS by traits (one call per birth first name while CR 01) or by Carte Vitale."""
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object")
        mode = body.get("mode")
        if mode not in ("traits", "carte-vitale"):
            raise InvalidInput("'mode' must be 'traits' or 'carte-vitale'")
        with self.lock(patient_id):
            patient = self.get(patient_id)
            card = _card_query(body.get("carte_vitale"), patient) if mode == "carte-vitale" else None
            client = self._client()
            if card is not None:
                checked = self.call_by_card(client, card, patient.id)
            else:
                checked = self._search_by_traits(client, patient)
            return self._apply_search(patient, checked)

    def _search_by_traits(self, client: InsiClient, patient: Patient) -> CheckedAnswer:
        t = patient.traits
        checked: CheckedAnswer | None = None
        for first_name in t.first_names:
            query = TraitsQuery(t.birth_name, first_name, t.sex, t.birth_date, t.birthplace_cog)
            checked = self.call_by_traits(client, query, RETRIEVAL, patient.id)
            if checked.code != "01":
                break
        assert checked is not None  # traits always hold at least one first name
        return checked

    def _apply_search(self, patient: Patient, checked: CheckedAnswer) -> InsOutcome:
        individu = checked.individu
        if checked.code == "00" and individu is not None:
            status = Status.QUAL if self.has("qualify-without-document") else patient.status.with_ins()
            updated = self.with_insi_identity(patient, individu, status)
            self.store.save_patient(updated)
            return InsOutcome("00", "found", updated)
        if checked.code == "01":
            return InsOutcome("01", "not-found", patient)
        if checked.code == "02":
            if self.has("ignores-cr-02"):
                patient = replace(patient, status=patient.status.with_ins(), updated=self.clock.iso())
                self.store.save_patient(patient)
            return InsOutcome("02", "several", patient)
        return InsOutcome(checked.code, "error", patient, checked.detail)

    def verify(self, patient_id: str) -> InsOutcome:
        """Unit verification of the stored INS with the stored strict traits (rules 48, 49)."""
        with self.lock(patient_id):
            patient = self.get(patient_id)
            if patient.ins is None:
                raise Conflict(f"identity {patient_id} has no INS to verify")
            client = self._client()
            t = patient.traits
            query = TraitsQuery(t.birth_name, t.first_first_name, t.sex, t.birth_date, t.birthplace_cog)
            checked = self.call_by_traits(client, query, VERIFICATION, patient.id)
            if checked.code in ("fault", "error"):
                return InsOutcome(checked.code, "error", patient, checked.detail)
            if same_ins(checked.individu, patient.ins):
                return InsOutcome(checked.code, "OK", patient)
            if self.has("keep-status-on-ko"):
                return InsOutcome(checked.code, "KO", patient)
            updated = replace(patient.without_ins(), updated=self.clock.iso())
            self.store.save_patient(updated)
            self.add_work_item(
                patient.id,
                KO_VERIFICATION_REASON,
                {
                    "source": "verification",
                    "code": checked.code,
                    "invalidated_ins": patient.ins.to_json(),
                    "returned": checked.individu.to_json() if checked.individu else None,
                },
                ko=True,
            )
            return InsOutcome(checked.code, "KO", updated)

    def _client(self) -> InsiClient:
        try:
            return self.insi_client()
        except InsiNotConfigured as exc:
            raise Conflict(str(exc)) from None


def same_ins(individu: InsiIndividu | None, ins: Ins) -> bool:
    """True when INSi returned exactly this matricule and OID."""
    return individu is not None and individu.active.matricule == ins.matricule and individu.active.oid == ins.oid


def _document_type(value: Any, required: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str) or len(value) > 40:
        raise InvalidInput("the identity document type must be a short string")
    document: str = value.strip()
    if required and not document:
        raise InvalidInput("'document_type' is required")
    return document


def _card_query(data: Any, patient: Patient) -> CardQuery:
    if not isinstance(data, dict):
        raise InvalidInput("mode 'carte-vitale' needs a 'carte_vitale' object")
    od = data.get("matricule_od")
    if not isinstance(od, str) or not 13 <= len(od.strip()) <= 15:
        raise InvalidInput("'carte_vitale.matricule_od' must be a 13- or 15-character matricule")
    individual = data.get("matricule_individu") or ""
    birth_date = data.get("birth_date") or patient.traits.birth_date
    rang = data.get("rang", 1)
    if not isinstance(individual, str) or not isinstance(birth_date, str):
        raise InvalidInput("'carte_vitale' fields must be strings")
    if isinstance(rang, bool) or not isinstance(rang, int) or not 1 <= rang <= 9:
        raise InvalidInput("'carte_vitale.rang' must be an integer from 1 to 9")
    return CardQuery(matricule_od=od.strip(), birth_date=birth_date, rang=rang, matricule_individu=individual.strip())
