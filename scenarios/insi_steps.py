"""Steps the INSi scenarios share: bringing an identity to a status, sending a feed.

A scenario about a KO verification first needs an identity that is RECUP or QUAL;
getting there is the same few control-API calls every time, and when the SUT cannot
get there the scenario must say so plainly (a broken precondition is a finding
about the SUT, not a harness crash). Keeping those steps here keeps each scenario
about the one rule it checks.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import UTC, date, datetime

from harness.findings import error
from harness.identity_feed.mllp import MllpError, exchange_mllp
from harness.identity_feed.pam_fr import FeedPatient, build_ack_expectation, build_identity_message, parse_ack
from harness.plugin.evidence import ScenarioEvidence
from harness.simulators.insi import IdentityBase, InsiIdentity, InsiSimulator
from harness.simulators.recording import Exchange, utcnow
from harness.sut.base import SutAdapter
from harness.sut.model import IdentityStatus, Ins, PatientRecord, PatientTraits
from harness.validators.ins import nir_key
from harness.verdicts import NonConformity

TRAITS_OPERATION = "rechercherInsAvecTraitsIdentite"
CARD_OPERATION = "rechercherInsAvecCarteVitale"
ACTION_TRAITS = f"urn:ServiceIdentiteCertifiee:1.0.0:{TRAITS_OPERATION}"
"""WS-Addressing action of a search or verification by traits (RECSANSVITALE)."""
ACTION_CARTE_VITALE = f"urn:ServiceIdentiteCertifiee:1.0.0:{CARD_OPERATION}"
"""WS-Addressing action of a search by Carte Vitale (RECVITALE)."""

IDENTITY_DOCUMENT = "CN"
"""Carte nationale d'identité: the identity-document check that turns RECUP into QUAL."""

OTHER_DOMAIN = ("HOPITAL-VOISIN", "1.2.250.1.999.1.1.7")
"""The identification domain our feeds come from (a synthetic hospital and its IPP OID)."""


def identity_named(base: IdentityBase, key: str) -> InsiIdentity:
    """The identity of the simulator's base with this key (a missing key is a harness bug)."""
    for identity in base:
        if identity.key == key:
            return identity
    raise LookupError(f"no identity with key {key!r} in the INSi test base")


def traits_of(identity: InsiIdentity, used_name: str = "", with_birthplace: bool = True) -> PatientTraits:
    """The traits a user would type for ``identity`` (all birth first names, in order)."""
    return PatientTraits(
        birth_name=identity.birth_name,
        first_names=tuple(identity.first_names),
        sex=identity.sex,
        birth_date=identity.birth_date,
        birthplace_cog=identity.birthplace if with_birthplace else "",
        used_name=used_name,
        used_first_name=identity.first_names[0] if identity.first_names else "",
    )


def carte_vitale_of(identity: InsiIdentity) -> dict[str, object]:
    """What the SUT would read from the Carte Vitale carrying ``identity``."""
    return {
        "matricule_od": identity.matricule_od or identity.matricule,
        "rang": identity.rang or 1,
        "birth_date": identity.birth_date,
    }


def unknown_to_insi() -> InsiIdentity:
    """A fresh synthetic identity INSi does not know, with a well-formed test NIR.

    Used for feeds whose INS verification must come back KO (CR 01).
    """
    serial = f"{secrets.randbelow(1000):03d}"
    number = f"1850799134{serial}"  # born in 1985-07, abroad (99), in Spain (134)
    return InsiIdentity(
        key=f"stranger-{serial}",
        matricule=number + f"{nir_key(number):02d}",
        oid="1.2.250.1.213.1.4.10",
        birth_name=f"INCONNU{serial}",
        first_names=("ALBAN",),
        sex="M",
        birth_date="1985-07-14",
        birthplace="99134",
    )


# -- preconditions -------------------------------------------------------------------------
def _precondition(ok: bool, message: str) -> None:
    if not ok:
        raise NonConformity(
            f"precondition not reached: {message}",
            [error("harness.precondition", f"precondition not reached: {message}", source="scenario")],
        )


def retrieved_patient(sut: SutAdapter, identity: InsiIdentity) -> PatientRecord:
    """A new identity made RECUP by an INSi search by traits (fails the scenario if it cannot be)."""
    patient = sut.create_patient(traits_of(identity))
    result = sut.search_ins(patient.id, mode="traits")
    record = sut.get_patient(patient.id)
    _precondition(
        record.status is IdentityStatus.RECUP and record.ins is not None,
        f"an INSi search for {identity.key} should give RECUP with an INS "
        f"(INSi code {result.code}, status {record.status.value})",
    )
    return record


def qualified_patient(sut: SutAdapter, identity: InsiIdentity) -> PatientRecord:
    """A new identity made QUAL: INSi search, then an identity-document check."""
    patient = retrieved_patient(sut, identity)
    sut.check_identity(patient.id, IDENTITY_DOCUMENT)
    record = sut.get_patient(patient.id)
    _precondition(
        record.status is IdentityStatus.QUAL and record.ins is not None,
        f"a RECUP identity checked against an identity document should be QUAL (found {record.status.value})",
    )
    return record


def insi_calls(insi: InsiSimulator, mark: int, action: str | None = None) -> list[Exchange]:
    """The INSi exchanges since ``mark``, only those of ``action`` when given."""
    return [e for e in insi.recorder.since(mark) if action is None or e.action == action]


# -- identity feeds ----------------------------------------------------------------------------
class IdentityFeed:
    """The harness as another identification domain sending PAM-FR messages to the SUT.

    Messages go over MLLP when the SUT announces a listener, else through the control
    API; either way the message, the ACK and the exchange go into the evidence.
    """

    def __init__(
        self,
        sut: SutAdapter,
        evidence: ScenarioEvidence,
        insi: InsiSimulator,
        timeout_s: float = 5.0,
    ) -> None:
        self.sut = sut
        self.evidence = evidence
        self.insi = insi
        self.timeout_s = timeout_s
        self._sent: list[InsiIdentity] = []
        self._mark = insi.recorder.mark()

    def send(self, identity: InsiIdentity, reliability: str, used_name: str = "", event: str = "A28") -> str:
        """Send ``identity`` with its INS and PID-32 = ``reliability``; returns MSA-1 of the ACK."""
        control_id = "H" + secrets.token_hex(6).upper()
        patient = FeedPatient(
            ipp=secrets.token_hex(4).upper(),
            ipp_authority_name=OTHER_DOMAIN[0],
            ipp_authority_oid=OTHER_DOMAIN[1],
            traits=traits_of(identity, used_name=used_name),
            ins=Ins(identity.matricule, identity.oid),
            identity_reliability=reliability,
            ins_query_date=date.today(),
        )
        message = build_identity_message(
            patient, "A31" if event == "A31" else "A28", control_id=control_id, timestamp=datetime.now(UTC)
        )
        self._sent.append(identity)
        self.evidence.attach(f"feed-{control_id}.hl7", message, "application/hl7-v2", "PAM-FR message sent to the SUT")
        mllp = self.sut.describe().mllp
        if mllp is not None:
            try:
                record = exchange_mllp(mllp[0], mllp[1], message, timeout_s=self.timeout_s)
            except MllpError as exc:
                self.evidence.record_exchange(exc.exchange.to_exchange(action=f"ADT^{event}"))
                raise
            self.evidence.record_exchange(record.to_exchange(action=f"ADT^{event}"))
            ack_bytes = record.response
        else:
            started = utcnow()
            ack = self.sut.receive_identity_feed(message)
            ack_bytes = ack.message
            self.evidence.record_exchange(
                Exchange(
                    simulator="identity-feed",
                    protocol="control-api",
                    action=f"ADT^{event}",
                    direction="outbound",
                    started=started,
                    ended=utcnow(),
                    request=message,
                    response=ack_bytes,
                )
            )
        ack_read = parse_ack(ack_bytes)
        for finding in build_ack_expectation(message).check(ack_read):
            # A SUT may refuse data it cannot verify; the ACK is kept as a fact, not judged here.
            self.evidence.note(f"ACK: {finding.message}")
        return ack_read.code

    def settle(self, expect_insi_call: InsiSimulator | None = None) -> None:
        """Wait until the SUT has dealt with what was sent (its INSi calls, then the identities).

        A SUT may integrate feeds asynchronously; this waits for an INSi call naming each
        sent identity (when ``expect_insi_call`` is given) and for the identities to show
        up in the SUT, up to ``timeout_s``, without failing: the scenario judges.
        """
        deadline = time.monotonic() + self.timeout_s
        if expect_insi_call is not None:
            for identity in self._sent:
                _wait(deadline, lambda i=identity: any(_names(e, i) for e in insi_calls(self.insi, self._mark)))
        names = {i.birth_name for i in self._sent}
        _wait(deadline, lambda: names <= {p.traits.birth_name for p in self.sut.list_patients()})


def _names(exchange: Exchange, identity: InsiIdentity) -> bool:
    return identity.birth_name in exchange.request.decode("utf-8", "replace")


def _wait(deadline: float, done: Callable[[], bool]) -> bool:
    while True:
        if done():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
