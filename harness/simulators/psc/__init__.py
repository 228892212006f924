"""Pro Santé Connect simulator: the national OpenID Connect provider of health professionals, on loopback.

The practice software logs professionals in with Pro Santé Connect (PSC, a Keycloak realm
``esante-wallet``): authorization code with PKCE, tokens, userinfo with the PSC claims, logout,
and CIBA for a login confirmed on the professional's phone. This simulator serves those
endpoints over HTTPS with synthetic professionals, records every exchange and every call as a
typed record with findings about the client (``psc.*`` rules), and can issue wrong tokens
(:class:`PscMisbehaviourKind`) or fail (:class:`PscFaultKind`). :class:`PscUserAgent` plays the
professional's browser.
"""

from harness.simulators.psc.faults import (
    PscFault,
    PscFaultKind,
    PscMisbehaviour,
    PscMisbehaviourKind,
)
from harness.simulators.psc.professionals import Professional, ProfessionalsError, load_professionals
from harness.simulators.psc.records import (
    RECORD_KINDS,
    AuthorizationRecord,
    CibaRequestRecord,
    IntrospectionRecord,
    LogoutRecord,
    PscRecord,
    RecordKind,
    TokenRequestRecord,
    UserinfoRequestRecord,
)
from harness.simulators.psc.service import (
    ACR,
    CIBA_GRANT,
    PATH,
    STANDARD_DISCOVERY,
    WALLET_DISCOVERY,
    ClientRegistration,
)
from harness.simulators.psc.simulator import PscSimulator
from harness.simulators.psc.user_agent import Hop, LoginResult, PscUserAgent

__all__ = [
    "ACR",
    "CIBA_GRANT",
    "PATH",
    "RECORD_KINDS",
    "STANDARD_DISCOVERY",
    "WALLET_DISCOVERY",
    "AuthorizationRecord",
    "CibaRequestRecord",
    "ClientRegistration",
    "Hop",
    "IntrospectionRecord",
    "LoginResult",
    "LogoutRecord",
    "Professional",
    "ProfessionalsError",
    "PscFault",
    "PscFaultKind",
    "PscMisbehaviour",
    "PscMisbehaviourKind",
    "PscRecord",
    "PscSimulator",
    "PscUserAgent",
    "RecordKind",
    "TokenRequestRecord",
    "UserinfoRequestRecord",
    "load_professionals",
]
