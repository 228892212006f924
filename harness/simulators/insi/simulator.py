"""The INSi simulator as scenarios and the CLI see it: start, stop, reset, faults, records.

:class:`InsiSimulator` assembles the parts (identity base, authentication against
the test PKI, the SOAP service, the HTTPS server, the recorder) behind the few
operations a scenario needs, so that a scenario never touches a socket: it points
the SUT at :attr:`InsiSimulator.url`, lets it call, then reads
:attr:`InsiSimulator.recorder`.
"""

from __future__ import annotations

from typing import Any

from harness.pki import TestPki
from harness.simulators.insi.auth import Authenticator, AuthMode
from harness.simulators.insi.faults import FaultKind, FaultSwitch, InsiFault, as_fault
from harness.simulators.insi.identities import IdentityBase
from harness.simulators.insi.server import InsiServer, Limits, server_ssl_context
from harness.simulators.insi.service import InsiService
from harness.simulators.insi.soap import ACTION_CARD, ACTION_TRAITS, Operation
from harness.simulators.lifecycle import ServedSimulator
from harness.simulators.recording import ExchangeRecorder

PATH = "/insi"


class InsiSimulator(ServedSimulator):
    """A simulated INSi téléservice on loopback (SOAP 1.2 over HTTPS with optional mutual TLS).

    Example::

        with InsiSimulator(pki) as insi:
            sut.configure(insi.url, pki.ca_bundle_pem, pki.organisation.chain_pem, ...)
            mark = insi.recorder.mark()
            ...  # the SUT searches an INS
            call = insi.recorder.since(mark)[0]
            assert call.meta["cr"] == "00"
    """

    name = "INSi"

    def __init__(
        self,
        pki: TestPki,
        identities: IdentityBase | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = True,
        *,
        socket_timeout_s: float = 10.0,
        request_timeout_s: float = 30.0,
    ) -> None:
        self.pki = pki
        self.base = identities if identities is not None else IdentityBase.default()
        self.host = host
        self.port = port
        self.tls = tls
        self.recorder = ExchangeRecorder()
        """Every exchange (simulator ``insi``, protocol ``soap12``; ``http``/``tls`` for failed requests)."""
        self.limits = Limits(socket_timeout_s=socket_timeout_s, request_timeout_s=request_timeout_s)
        self._faults = FaultSwitch()
        self._authenticator = Authenticator(pki.ca_bundle_path, pki.org_ca.certificate, pki.pp_ca.certificate)
        self._service = InsiService(self.base, self._authenticator, self._faults, path=PATH)
        self._server: InsiServer | None = None

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> InsiSimulator:
        """Bind and serve in a background thread (a second call does nothing)."""
        if self._server is not None:
            return self
        context = (
            server_ssl_context(self.pki.server.chain_path, self.pki.server.key_path, self.pki.ca_bundle_path)
            if self.tls
            else None
        )
        server = InsiServer(self._service, self.recorder, self.host, self.port, context, self.limits)
        self._server = server
        self._service.location = self.url
        server.start()
        return self

    # -- where it is -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT/insi`` (``http://`` when started with ``tls=False``).

        Raises:
            RuntimeError: the simulator is not started (the port is chosen when it binds).
        """
        return self.served_url("https" if self.tls else "http", PATH)

    @property
    def wsdl_url(self) -> str:
        return self.url + "?wsdl"

    def describe(self) -> dict[str, Any]:
        """What a person or a SUT configuration needs to reach the simulator."""
        return {
            "service": "insi",
            "endpoint": self.url,
            "wsdl": self.wsdl_url,
            "soap_version": "1.2",
            "ca_bundle": str(self.pki.ca_bundle_path),
            "organisation": {
                "cert_path": str(self.pki.organisation.cert_path),
                "chain_path": str(self.pki.organisation.chain_path),
                "key_path": str(self.pki.organisation.key_path),
            },
            "cps": {
                "cert_path": str(self.pki.cps.cert_path),
                "chain_path": str(self.pki.cps.chain_path),
                "key_path": str(self.pki.cps.key_path),
            },
            "actions": {Operation.RECSANSVITALE.value: ACTION_TRAITS, Operation.RECVITALE.value: ACTION_CARD},
            "auth_modes": [AuthMode.ORGANISATION.value, AuthMode.CPS.value],
            "identities": len(self.base),
            "fault": self.fault.kind.value if self.fault else None,
        }

    # -- steering ----------------------------------------------------------------------------
    def set_fault(self, fault: InsiFault | FaultKind, count: int | None = None) -> InsiFault:
        """Inject ``fault`` into every following operation call, or only the next ``count`` it affects."""
        if count is not None:
            fault = as_fault(fault).times(count)
        return self._faults.set(fault)

    def clear_fault(self) -> None:
        self._faults.clear()

    @property
    def fault(self) -> InsiFault | None:
        """The fault in force, if any."""
        return self._faults.current()

    def reset(self) -> None:
        """Back to a fresh state: no recorded exchange, no identity override, no fault."""
        self.recorder.clear()
        self.base.reset()
        self._faults.clear()
