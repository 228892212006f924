"""Annuaire Santé simulator: the ANS FHIR directory API (``/fhir/v2``) for practitioner and MSSanté look-ups.

The practice software finds correspondents (Practitioner, PractitionerRole, Organization) and
their MSSanté addresses in the Annuaire Santé, which also lists the care activities
(HealthcareService) and heavy equipment (Device) of establishments. This simulator serves a synthetic, seeded
directory with the real API's search parameters, API-key check, paging and errors, records
every exchange, and can be made to fail (:class:`AnnuaireFaultKind`).
"""

from harness.simulators.annuaire.directory import (
    EMAIL_TYPE_URL,
    IDNPS_SYSTEM,
    MAILBOX_METADATA_URL,
    RPPS_SYSTEM,
    SMARTCARD_URL,
    TYPE_BAL_SYSTEM,
    Directory,
    DirectoryError,
)
from harness.simulators.annuaire.faults import AnnuaireFault, AnnuaireFaultKind
from harness.simulators.annuaire.service import API_KEY_HEADER, PATH
from harness.simulators.annuaire.simulator import AnnuaireSimulator

__all__ = [
    "API_KEY_HEADER",
    "EMAIL_TYPE_URL",
    "IDNPS_SYSTEM",
    "MAILBOX_METADATA_URL",
    "PATH",
    "RPPS_SYSTEM",
    "SMARTCARD_URL",
    "TYPE_BAL_SYSTEM",
    "AnnuaireFault",
    "AnnuaireFaultKind",
    "AnnuaireSimulator",
    "Directory",
    "DirectoryError",
]
