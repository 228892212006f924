"""Finding correspondents in the Annuaire Santé (REM LGC section ANN) and writing to them by MSSanté.

The SUT is pointed at the harness's Annuaire Santé simulator (FHIR R4, ``ESANTE-API-KEY``)
seeded from ``fixtures/annuaire/directory.json``. A scenario adds a practitioner whose
``telecom`` holds a personal e-mail first and an MSSanté BAL after it (typed ``MSSANTE``
by the fr-core e-mail-type extension): the MSSanté address is the one a correspondent
must be written to, the other is not a secure-messaging address at all.

The rows about loading the public extract file (``ANN/va1.01``), creating users and
correspondents from the directory (``.02``, ``.03``) and the import schedule (``.04``)
need the SUT's screens and stay ``manual``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.plugin.evidence import ScenarioEvidence
from harness.simulators.annuaire import AnnuaireSimulator
from harness.simulators.annuaire.search import mailboxes as mss_mailboxes
from harness.simulators.annuaire.service import API_KEY_HEADER
from harness.simulators.insi import IdentityBase
from harness.simulators.mssante import MssanteSimulator
from harness.sut.base import SutAdapter, SutError
from harness.sut.model import MssSendRequest
from scenarios.insi_steps import identity_named, qualified_patient

pytestmark = pytest.mark.usefixtures("insi")

IDNPS = "810000009001"
MSS_BAL = "paul.correspondant@ch-test.mssante.fr"
PERSONAL = "paul.correspondant@example.org"
EMAIL_TYPE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type"
MAILBOX_METADATA = "https://interop.esante.gouv.fr/ig/fhir/annuaire/StructureDefinition/as-ext-mailbox-mss-metadata"
SEND_TIMEOUT_S = 15.0


def correspondent() -> dict[str, Any]:
    """A practitioner with a personal e-mail listed before the MSSanté BAL (PER)."""
    return {
        "resourceType": "Practitioner",
        "id": "pra-9001",
        "meta": {"lastUpdated": "2026-11-02T09:00:00.000+01:00", "versionId": "1"},
        "identifier": [
            {
                "use": "official",
                "system": "urn:oid:1.2.250.1.71.4.2.1",
                "value": IDNPS,
                "type": {
                    "coding": [{"system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203", "code": "IDNPS"}]
                },
            }
        ],
        "active": True,
        "name": [{"use": "official", "family": "CORRESPONDANT", "given": ["Paul"], "prefix": ["DR"]}],
        "telecom": [
            {"system": "email", "value": PERSONAL},
            {
                "system": "email",
                "value": MSS_BAL,
                "extension": [
                    {
                        "url": EMAIL_TYPE,
                        "valueCoding": {
                            "system": "https://mos.esante.gouv.fr/NOS/TRE_R256-TypeMessagerie/FHIR/TRE-R256-TypeMessagerie",
                            "code": "MSSANTE",
                        },
                    },
                    {
                        "url": MAILBOX_METADATA,
                        "extension": [
                            {
                                "url": "type",
                                "valueCodeableConcept": {
                                    "coding": [
                                        {
                                            "system": "https://mos.esante.gouv.fr/NOS/TRE_R257-TypeBAL/FHIR/TRE-R257-TypeBAL",
                                            "code": "PER",
                                        }
                                    ]
                                },
                            }
                        ],
                    },
                ],
            },
        ],
    }


@pytest.mark.requirement("ANN/va1.05", scenario="ANN/va1.05.01", manual_proofs=("ANN/va1.05.01.01",))
def test_a_correspondent_is_found_with_his_mssante_address_and_written_to(
    sut: SutAdapter,
    insi_identities: IdentityBase,
    annuaire: AnnuaireSimulator,
    mssante: MssanteSimulator,
    evidence: ScenarioEvidence,
) -> None:
    """Looked up by IDNPS, the correspondent comes back with his MSSanté BAL only; a document then reaches it."""
    added = annuaire.add_resource(correspondent())
    expected = mss_mailboxes(added)
    mark = annuaire.recorder.mark()
    try:
        found = sut.find_correspondents(idnps=IDNPS)
    except SutError as exc:  # the SUT answered that the directory failed it: judged below from the exchanges
        evidence.note(f"the SUT reports the look-up failed: {exc}")
        found = []
    evidence.attach(
        "correspondents.json",
        json.dumps([c.to_json() for c in found], indent=2, ensure_ascii=False).encode("utf-8"),
        "application/json",
        "what the SUT found in the Annuaire Santé",
    )
    calls = annuaire.recorder.since(mark)
    evidence.expect(bool(calls), "ann.lookup.none", "the SUT must query the Annuaire Santé API")
    for call in calls:
        http = call.meta.get("http", {})
        headers = {k.lower(): v for k, v in dict(http.get("request_headers", {})).items()}
        evidence.expect(
            headers.get(API_KEY_HEADER.lower()) == annuaire.api_key,
            "ann.lookup.api-key",
            f"every call must carry the {API_KEY_HEADER} header with the key given; {http.get('target', '')} "
            f"answered {http.get('status')}",
        )
    match = [c for c in found if c.idnps == IDNPS]
    if evidence.expect(bool(match), "ann.lookup.not-found", f"the practitioner {IDNPS} must be found"):
        mailboxes = list(match[0].mailboxes)
        evidence.expect(
            set(mailboxes) == set(expected) and PERSONAL not in mailboxes,
            "ann.mailbox.mss",
            f"the MSSanté addresses are the telecoms typed MSSANTE ({expected}); the SUT kept {mailboxes}",
        )
        if mailboxes and mailboxes[0] in expected:
            _write_to(sut, insi_identities, mssante, evidence, mailboxes[0])
    evidence.conclude()


def _write_to(
    sut: SutAdapter, identities: IdentityBase, mssante: MssanteSimulator, evidence: ScenarioEvidence, bal: str
) -> None:
    patient = qualified_patient(sut, identity_named(identities, "ordinary-1"))
    produced = sut.produce_document(patient.id, "11490-0", "N1")
    before = mssante.last_message_seq()
    outcome = sut.send_mss(MssSendRequest(patient.id, (produced.document_id,), (bal,)))
    evidence.note(f"sending to {bal}: the SUT reports {outcome.result} ({outcome.detail})")
    message = mssante.wait_for_message(before, timeout=SEND_TIMEOUT_S)
    if evidence.expect(
        message is not None and bal in message.delivered,
        "ann.mailbox.delivery",
        f"the document must reach the correspondent's BAL {bal} found in the directory",
    ):
        assert message is not None
        evidence.attach(f"message-{message.seq}.eml", message.raw, "message/rfc822", "the message sent")
