"""TD0.2 (does the patient have a DMP, may this professional access it) and TD0.3 (add the authorisation).

The real messages are not public (``shared/docs/protocols.md`` §2.1); the bodies here are
the contract's **inferred** ones (``docs/dmp-wire.md`` § TD0.2 and TD0.3), answered from the
patient state a scenario set with :meth:`DmpSimulator.set_patient`. A patient the DMP
does not know answers ``NON_EXISTANT`` / ``NON_EXISTE``; TD0.3 for a known patient makes
the authorisation ``VALIDE`` and answers ``OK``, for an unknown one ``KO``.
"""

from __future__ import annotations

from lxml import etree

from harness.simulators.dmp.store import DmpStore

TD = "urn:segur-harness:dmp:td"
ACTION_TD02 = "urn:segur-harness:dmp:td0.2"
ACTION_TD03 = "urn:segur-harness:dmp:td0.3"


class TdError(Exception):
    """A TD request whose body is not the expected element."""


def request_patient_id(payload: etree._Element, operation: str) -> str:
    """The ``td:patientId`` of a ``TestExistenceRequest`` (td0.2) or ``AddAuthorizationRequest`` (td0.3).

    Raises:
        TdError: wrong element, or no patientId.
    """
    expected = "TestExistenceRequest" if operation == "td0.2" else "AddAuthorizationRequest"
    if payload.tag != f"{{{TD}}}{expected}":
        raise TdError(f"corps {payload.tag!r}: td:{expected} attendu ({{{TD}}})")
    patient_id = (payload.findtext(f"{{{TD}}}patientId") or "").strip()
    if not patient_id:
        raise TdError(f"td:{expected} sans td:patientId")
    return patient_id


def existence_answer(store: DmpStore, patient_id: str) -> tuple[etree._Element, dict[str, str]]:
    """The TD0.2 answer element and its values."""
    patient = store.patient(patient_id)
    values = {
        "dmpStatus": patient.dmp_status if patient else "NON_EXISTANT",
        "authorization": patient.authorization if patient else "NON_EXISTE",
        "feedOpposition": _bool(patient.feed_opposition if patient else False),
        "consultationOpposition": _bool(patient.consultation_opposition if patient else False),
    }
    return _element("TestExistenceResponse", values), values


def authorization_answer(store: DmpStore, patient_id: str) -> tuple[etree._Element, dict[str, str]]:
    """The TD0.3 answer element and its values; a known patient's authorisation becomes ``VALIDE``."""
    with store.lock:
        patient = store.patient(patient_id)
        if patient is not None:
            patient.authorization = "VALIDE"
    values = {"status": "OK" if patient is not None else "KO"}
    return _element("AddAuthorizationResponse", values), values


def _element(name: str, values: dict[str, str]) -> etree._Element:
    root = etree.Element(f"{{{TD}}}{name}", nsmap={"td": TD})
    for child, text in values.items():
        etree.SubElement(root, f"{{{TD}}}{child}").text = text
    return root


def _bool(value: bool) -> str:
    return "true" if value else "false"
