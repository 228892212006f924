"""The MSSanté operator simulator: SMTP and IMAP with STARTTLS, DST-style entry points, BALs, TLS faults."""

from harness.simulators.mssante.records import MailSession, SubmittedMessage
from harness.simulators.mssante.simulator import MssanteSimulator
from harness.simulators.mssante.tls import ALLOWED_TLS12_SUITES, TlsPolicy, offered_outside_policy

__all__ = [
    "ALLOWED_TLS12_SUITES",
    "MailSession",
    "MssanteSimulator",
    "SubmittedMessage",
    "TlsPolicy",
    "offered_outside_policy",
]
