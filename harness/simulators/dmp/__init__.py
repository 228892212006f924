"""A simulated DMP (Mon espace santé): the national shared medical record a practice feeds and consults.

The practice software under test calls it exactly as it would call the DMP
(``docs/dmp-wire.md``): SOAP 1.2 with MTOM over HTTPS with mutual TLS, WS-Addressing,
a signed VIHF in ``wsse:Security``; ITI-41 to feed, ITI-18 and ITI-43 to consult, ITI-57
to mask, hide, archive or delete, and the inferred TD0.2/TD0.3. The simulator keeps
what it is sent, answers as the DMP would, can be made to fail on purpose, and records
every exchange whole for the scenarios' verdicts.

Parts: :mod:`.ebxml` (metadata model), :mod:`.mtom` (multipart/XOP), :mod:`.soap`
(safe parsing, faults), :mod:`.vihf` (the assertion), :mod:`.store` (patients, entries),
:mod:`.registry` (ITI-41, ITI-57), :mod:`.query` (ITI-18, ITI-43), :mod:`.td` (TD0.2,
TD0.3), :mod:`.answers` (response bodies), :mod:`.faults`, :mod:`.records` (what
scenarios read), :mod:`.service` (the decisions), :mod:`.server` (sockets and TLS),
:mod:`.simulator` (the facade).
"""

from harness.simulators.dmp.ebxml import AvailabilityStatus, Code, DocumentEntry, SubmissionSet
from harness.simulators.dmp.faults import DmpFault, DmpFaultKind
from harness.simulators.dmp.records import (
    QueryCall,
    RegistryError,
    Retrieval,
    Submission,
    TdCall,
    Transaction,
    Update,
    UpdateChange,
)
from harness.simulators.dmp.service import Operation
from harness.simulators.dmp.simulator import PATH, REPOSITORY_UNIQUE_ID, DmpSimulator
from harness.simulators.dmp.store import PatientState, StoredEntry
from harness.simulators.dmp.vihf import VihfAssertion, VihfCheck

__all__ = [
    "PATH",
    "REPOSITORY_UNIQUE_ID",
    "AvailabilityStatus",
    "Code",
    "DmpFault",
    "DmpFaultKind",
    "DmpSimulator",
    "DocumentEntry",
    "Operation",
    "PatientState",
    "QueryCall",
    "RegistryError",
    "Retrieval",
    "StoredEntry",
    "Submission",
    "SubmissionSet",
    "TdCall",
    "Transaction",
    "Update",
    "UpdateChange",
    "VihfAssertion",
    "VihfCheck",
]
