"""A simulated INSi téléservice (CNAM): the national service that returns a patient's INS.

The practice software under test calls it exactly as it would call INSi: SOAP 1.2 over
HTTPS, WS-Addressing, ContexteBAM/ContexteLPS headers, authenticated by an
organisation certificate on mutual TLS or a signed CPS assertion. The simulator
answers from a synthetic identity base, can be made to fail on purpose, and records
every exchange for the scenarios' verdicts.

Parts: :mod:`.identities` (who INSi knows), :mod:`.soap` (safe parsing, answers),
:mod:`.checks` (findings about requests), :mod:`.auth` (who is calling),
:mod:`.faults` (injected failures), :mod:`.service` (the decisions),
:mod:`.server` (sockets and TLS), :mod:`.wsdl` (the served WSDL), :mod:`.simulator`
(the facade).
"""

from harness.simulators.insi.auth import AuthMode
from harness.simulators.insi.faults import FaultKind, InsiFault
from harness.simulators.insi.identities import FormerIns, IdentityBase, IdentityBaseError, InsiIdentity
from harness.simulators.insi.simulator import InsiSimulator
from harness.simulators.insi.soap import ACTION_CARD, ACTION_TRAITS, Operation

__all__ = [
    "ACTION_CARD",
    "ACTION_TRAITS",
    "AuthMode",
    "FaultKind",
    "FormerIns",
    "IdentityBase",
    "IdentityBaseError",
    "InsiFault",
    "InsiIdentity",
    "InsiSimulator",
    "Operation",
]
