"""Integrating identities received from another identification domain (HL7 v2 PAM-FR).

The INS rules for third-party identities live here: a received INS is verified with
INSi automatically unless the local identity is already RECUP/QUAL (rule 52); an OK
verification gives RECUP, never a status trusted from the sender (rule 30); a KO
leaves a known identity untouched and creates an unknown one without INS (rule 51),
and puts the received data on the work list instead of integrating it (rule 55).
Both the MLLP listener and ``POST /identity-feeds`` come through :class:`FeedIntegrator`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from typing import Any

from harness.reference.identity import CheckedAnswer, IdentityService, same_ins
from harness.reference.model import ExternalId, Ins, Patient, Status
from harness.reference.pamfr import FeedMessage, FeedRejected, build_ack, parse_feed

log = logging.getLogger("harness.reference")

KO_FEED_REASON = "INS verification KO (identity feed): data not integrated"
IMPOSSIBLE_FEED_REASON = "INS verification impossible (identity feed): data not integrated"
CONFLICT_FEED_REASON = "received INS differs from the local INS: data not integrated"


@dataclass(frozen=True, slots=True)
class FeedReceipt:
    """The ACK returned to the sender and the local identity the message was applied to."""

    ack: str
    patient_id: str = ""

    def to_json(self) -> dict[str, str]:
        return {"ack": self.ack, "patient_id": self.patient_id}


class FeedIntegrator:
    """Applies PAM-FR identity messages to the practice's identities."""

    def __init__(self, service: IdentityService) -> None:
        self.service = service
        self._lock = threading.Lock()

    def receive_bytes(self, payload: bytes) -> bytes:
        """MLLP entry point: message bytes in, ACK bytes out."""
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            text = payload.decode("latin-1")
        return self.receive(text).ack.encode("utf-8")

    def receive(self, text: str) -> FeedReceipt:
        """Parse, apply and acknowledge one message; never raises."""
        now = self.service.clock.now()
        try:
            message = parse_feed(text)
        except FeedRejected as rejected:
            log.info("identity feed refused (%s): %s", rejected.ack_code, rejected.text)
            error = (rejected.error_code, rejected.text)
            return FeedReceipt(build_ack(rejected.ack_code, rejected.control_id, rejected.event, now, error=error))
        receiver = (message.sending_application, message.sending_facility)
        try:
            patient_id = self._integrate(message)
        except Exception as exc:
            log.exception("identity feed %s could not be applied", message.control_id)
            error = ("207", f"could not be applied: {type(exc).__name__}")
            return FeedReceipt(build_ack("AE", message.control_id, message.event, now, receiver, error))
        return FeedReceipt(build_ack("AA", message.control_id, message.event, now, receiver), patient_id)

    # -- rules ----------------------------------------------------------------------------------
    def _integrate(self, message: FeedMessage) -> str:
        with self._lock:
            known = self.service.store.find_by_match_key(message.traits.match_key())
            if known is None:
                return self._integrate_unknown(message)
            with self.service.lock(known.id):
                return self._integrate_known(self.service.get(known.id), message)

    def _integrate_unknown(self, message: FeedMessage) -> str:
        service = self.service
        received = Ins(message.ins.matricule, message.ins.oid) if message.ins else None
        if received is not None and service.has("no-auto-verify"):
            patient = service.create_record(
                message.traits, Status.RECUP, ins=received, origin="feed", external_ids=message.external_ids
            )
            return patient.id
        patient = service.create_record(message.traits, Status.PROV, origin="feed", external_ids=message.external_ids)
        if received is None:
            return patient.id
        with service.lock(patient.id):
            checked = self.service.verify_received(patient.id, message.traits)
            if checked.code in ("fault", "error"):
                self._put_aside(patient, IMPOSSIBLE_FEED_REASON, message, checked)
            elif same_ins(checked.individu, received):
                assert checked.individu is not None
                status = self._status_after_ok(Status.PROV, message)
                service.store.save_patient(service.with_insi_identity(patient, checked.individu, status))
            else:
                if service.has("keep-ins-on-ko-feed"):
                    service.store.save_patient(replace(patient, ins=received))
                self._put_aside(patient, KO_FEED_REASON, message, checked)
        return patient.id

    def _integrate_known(self, patient: Patient, message: FeedMessage) -> str:
        service = self.service
        received = Ins(message.ins.matricule, message.ins.oid) if message.ins else None
        if received is None:
            service.store.save_patient(self._with_non_strict_data(patient, message))
            return patient.id
        if patient.status.has_insi:
            if patient.ins == received:
                service.store.save_patient(self._with_non_strict_data(patient, message))
            else:
                self._put_aside(patient, CONFLICT_FEED_REASON, message, None)
            return patient.id
        if service.has("no-auto-verify"):
            updated = replace(self._with_non_strict_data(patient, message), ins=received)
            service.store.save_patient(replace(updated, status=patient.status.with_ins()))
            return patient.id
        checked = self.service.verify_received(patient.id, message.traits)
        if checked.code in ("fault", "error"):
            self._put_aside(patient, IMPOSSIBLE_FEED_REASON, message, checked)
        elif same_ins(checked.individu, received):
            assert checked.individu is not None
            status = self._status_after_ok(patient.status, message)
            updated = service.with_insi_identity(self._with_non_strict_data(patient, message), checked.individu, status)
            service.store.save_patient(updated)
        else:
            if service.has("update-on-ko-feed"):
                overwritten = replace(patient, traits=message.traits, ins=received, updated=service.clock.iso())
                service.store.save_patient(overwritten)
            self._put_aside(patient, KO_FEED_REASON, message, checked)
        return patient.id

    def _status_after_ok(self, local: Status, message: FeedMessage) -> Status:
        """Rule 30: the INS makes PROV RECUP (VALI QUAL); the sender's QUAL is not taken over."""
        if self.service.has("trust-received-status") and message.reliability == "QUAL":
            return Status.QUAL
        return local.with_ins()

    def _with_non_strict_data(self, patient: Patient, message: FeedMessage) -> Patient:
        traits = patient.traits
        if message.traits.used_name:
            traits = replace(traits, used_name=message.traits.used_name)
        if message.traits.used_first_name:
            traits = replace(traits, used_first_name=message.traits.used_first_name)
        return replace(
            patient,
            traits=traits,
            external_ids=_merged(patient.external_ids, message.external_ids),
            updated=self.service.clock.iso(),
        )

    def _put_aside(self, patient: Patient, reason: str, message: FeedMessage, checked: CheckedAnswer | None) -> None:
        detail: dict[str, Any] = {"source": "identity-feed", "received": message.summary()}
        if checked is not None:
            detail["code"] = checked.code
            if checked.detail:
                detail["detail"] = checked.detail
            if checked.individu is not None:
                detail["returned"] = checked.individu.to_json()
        self.service.add_work_item(patient.id, reason, detail, ko=reason == KO_FEED_REASON)


def _merged(current: tuple[ExternalId, ...], received: tuple[ExternalId, ...]) -> tuple[ExternalId, ...]:
    known = {(e.value, e.authority, e.oid, e.type_code) for e in current}
    return current + tuple(e for e in received if (e.value, e.authority, e.oid, e.type_code) not in known)
