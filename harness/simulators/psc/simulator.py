"""The Pro Santé Connect simulator as scenarios and the CLI see it: clients, professionals, CIBA, switches, records.

:class:`PscSimulator` assembles the parts (the test professionals, the OIDC service and its
signing key, the HTTPS server, the recorder) behind the few operations a scenario needs:
register the SUT's client, point the SUT at :attr:`PscSimulator.discovery_url`, drive a login
(with :class:`~harness.simulators.psc.user_agent.PscUserAgent`), make tokens or endpoints
misbehave, answer CIBA requests, then read the typed records (:attr:`authorizations`,
:attr:`token_requests`...) and the exchanges (:attr:`recorder`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from harness.pki import TestPki
from harness.simulators import https
from harness.simulators.lifecycle import ServedSimulator
from harness.simulators.psc.faults import (
    FaultSwitch,
    MisbehaviourSwitch,
    PscFault,
    PscFaultKind,
    PscMisbehaviour,
    PscMisbehaviourKind,
    as_fault,
    as_misbehaviour,
)
from harness.simulators.psc.professionals import Professional, check_unique, load_professionals
from harness.simulators.psc.records import (
    AuthorizationRecord,
    CibaRequestRecord,
    IntrospectionRecord,
    LogoutRecord,
    PscRecord,
    PscRecords,
    RecordKind,
    TokenRequestRecord,
    UserinfoRequestRecord,
)
from harness.simulators.psc.server import Limits, PscServer
from harness.simulators.psc.service import PATH, STANDARD_DISCOVERY, WALLET_DISCOVERY, ClientRegistration, PscService
from harness.simulators.recording import ExchangeRecorder


class PscSimulator(ServedSimulator):
    """A simulated Pro Santé Connect (Keycloak realm ``esante-wallet``) on loopback, over HTTPS.

    Args:
        pki: the test PKI (its server certificate serves TLS; clients trust its CA bundle).
        professionals: who can log in; default ``fixtures/psc/professionals.json`` (a path reads another file).
        ciba_interval_s, ciba_expires_in_s: the ``interval`` and ``expires_in`` of CIBA answers.
        auto_approve_ciba: approve each CIBA request at its first poll after ``interval``.
        clock: wall time in seconds, for every token time and expiry (tests pass a clock they advance).

    Example::

        with PscSimulator(pki) as psc:
            psc.register_client("lgc", "secret", ["http://127.0.0.1:8400/callback"], ["http://127.0.0.1:8400/"])
            sut.configure_psc(psc.discovery_url, "lgc", "secret", pki.ca_bundle_pem)
            mark = psc.mark()
            result = PscUserAgent(psc).login(sut.start_psc_login().authorization_url, "899700012345")
            authorization = psc.wait_for("authorization", after=mark)
    """

    name = "PSC"

    def __init__(
        self,
        pki: TestPki,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        professionals: Iterable[Professional] | Path | None = None,
        ciba_interval_s: int = 5,
        ciba_expires_in_s: int = 120,
        auto_approve_ciba: bool = False,
        clock: Callable[[], float] = time.time,
        socket_timeout_s: float = 10.0,
    ) -> None:
        self.pki = pki
        self.host = host
        self.port = port
        if professionals is None or isinstance(professionals, Path):
            loaded = load_professionals(professionals)
        else:
            loaded = check_unique(professionals, "professionals")
        self.recorder = ExchangeRecorder()
        """Every exchange (simulator ``psc``; protocol ``http``, or ``tls`` for a refused handshake)."""
        self.records = PscRecords()
        self.limits = Limits(socket_timeout_s=socket_timeout_s)
        self._misbehaviours = MisbehaviourSwitch()
        self._faults = FaultSwitch()
        self._service = PscService(
            loaded,
            self._issuer,
            self.records,
            self._misbehaviours,
            self._faults,
            clock,
            ciba_interval_s=ciba_interval_s,
            ciba_expires_in_s=ciba_expires_in_s,
            auto_approve_ciba=auto_approve_ciba,
        )
        self._server: PscServer | None = None

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> PscSimulator:
        """Bind and serve in a background thread (a second call does nothing)."""
        if self._server is not None:
            return self
        context = https.server_ssl_context(
            self.pki.server.chain_path,
            self.pki.server.key_path,
            self.pki.ca_bundle_path,
            require_client_certificate=False,
            check_time=True,
        )
        server = PscServer(self._service, self.recorder, self.host, self.port, context, self.limits)
        self._server = server
        server.start()
        return self

    @property
    def issuer(self) -> str:
        """``https://127.0.0.1:PORT/auth/realms/esante-wallet``.

        Raises:
            RuntimeError: the simulator is not started (the port is chosen when it binds).
        """
        return self.served_url("https", PATH)

    def _issuer(self) -> str:
        return self.issuer if self._server is not None else PATH

    @property
    def discovery_url(self) -> str:
        """PSC's discovery document, ``{issuer}/.well-known/wallet-openid-configuration``."""
        return self.issuer + WALLET_DISCOVERY

    @property
    def standard_discovery_url(self) -> str:
        """The same document at the standard ``{issuer}/.well-known/openid-configuration``."""
        return self.issuer + STANDARD_DISCOVERY

    @property
    def ca_bundle_path(self) -> Path:
        return self.pki.ca_bundle_path

    def access_token_claims(self, token: str) -> dict[str, Any] | None:
        """The claims of an access token this simulator issued (signature, issuer and type checked), else None.

        What a resource server behind PSC would learn by introspection: scenarios use it to tell
        whose PSC identity a call to INSi or the DMP carried.
        """
        claims = self._service.keys.verify(token)
        if claims is None or claims.get("typ") != "Bearer" or claims.get("iss") != self.issuer:
            return None
        return claims

    def discovery(self) -> dict[str, Any]:
        """The discovery document as served."""
        return self._service.discovery()

    def describe(self) -> dict[str, Any]:
        """What a person or a SUT configuration needs to reach the simulator."""
        return {
            "service": "psc",
            "issuer": self.issuer,
            "discovery_url": self.discovery_url,
            "clients": sorted(self._service.clients),
            "professionals": [p.subject_name_id for p in self.professionals],
            "ca_bundle": str(self.pki.ca_bundle_path),
            "misbehaviour": self.misbehaviour.kind.value if self.misbehaviour else None,
            "fault": self.fault.kind.value if self.fault else None,
        }

    # -- clients and professionals ---------------------------------------------------------------
    def register_client(
        self,
        client_id: str,
        client_secret: str,
        redirect_uris: Iterable[str],
        post_logout_redirect_uris: Iterable[str] = (),
        *,
        userinfo_signed: bool = False,
    ) -> None:
        """Register (or replace) a confidential client: its secret, redirect and post-logout redirect URIs.

        Raises:
            ValueError: an empty id or secret, or no redirect URI.
        """
        redirects = tuple(redirect_uris)
        if not client_id or not client_secret or not redirects:
            raise ValueError("a client needs an id, a secret and at least one redirect URI")
        registration = ClientRegistration(
            client_id, client_secret, redirects, tuple(post_logout_redirect_uris), userinfo_signed
        )
        self._service.register(registration)

    @property
    def clients(self) -> dict[str, ClientRegistration]:
        return dict(self._service.clients)

    @property
    def professionals(self) -> list[Professional]:
        return list(self._service.professionals.values())

    def professional(self, subject_name_id: str) -> Professional:
        """The professional with this ``SubjectNameID``.

        Raises:
            KeyError: nobody has it.
        """
        return self._service.professionals[subject_name_id]

    # -- CIBA ------------------------------------------------------------------------------------
    def approve_ciba(self, auth_req_id: str) -> None:
        """The professional accepts the CIBA request (their next poll after ``interval`` gets tokens)."""
        self._service.decide_ciba(auth_req_id, approve=True)

    def deny_ciba(self, auth_req_id: str) -> None:
        """The professional refuses: the client's next poll gets ``access_denied``."""
        self._service.decide_ciba(auth_req_id, approve=False)

    @property
    def auto_approve_ciba(self) -> bool:
        return self._service.auto_approve_ciba

    @auto_approve_ciba.setter
    def auto_approve_ciba(self, value: bool) -> None:
        self._service.auto_approve_ciba = value

    # -- switches --------------------------------------------------------------------------------
    def set_misbehaviour(
        self, misbehaviour: PscMisbehaviour | PscMisbehaviourKind | str, count: int | None = None
    ) -> PscMisbehaviour:
        """Make the next tokens (or userinfo answers) wrong in one way, until cleared or for ``count`` answers."""
        return self._misbehaviours.set(as_misbehaviour(misbehaviour, count))

    def clear_misbehaviour(self) -> None:
        self._misbehaviours.clear()

    @property
    def misbehaviour(self) -> PscMisbehaviour | None:
        return self._misbehaviours.current()

    def set_fault(
        self, fault: PscFault | PscFaultKind | str, delay_s: float | None = None, count: int | None = None
    ) -> PscFault:
        """Make an endpoint fail (``token-timeout`` waits ``delay_s``, 10 s by default, 120 s at most)."""
        return self._faults.set(as_fault(fault, delay_s, count))

    def clear_fault(self) -> None:
        self._faults.clear()

    @property
    def fault(self) -> PscFault | None:
        return self._faults.current()

    def reset(self) -> None:
        """No exchange, record, login, code, session, token, CIBA request, misbehaviour or fault.

        Registered clients stay (the harness registers the SUT's once per run); marks keep counting.
        """
        self.recorder.clear()
        self.records.clear()
        self._misbehaviours.clear()
        self._faults.clear()
        self._service.forget()

    # -- records ---------------------------------------------------------------------------------
    @property
    def authorizations(self) -> list[AuthorizationRecord]:
        return [r for r in self.records.of("authorization") if isinstance(r, AuthorizationRecord)]

    @property
    def token_requests(self) -> list[TokenRequestRecord]:
        return [r for r in self.records.of("token") if isinstance(r, TokenRequestRecord)]

    @property
    def userinfo_requests(self) -> list[UserinfoRequestRecord]:
        return [r for r in self.records.of("userinfo") if isinstance(r, UserinfoRequestRecord)]

    @property
    def introspections(self) -> list[IntrospectionRecord]:
        return [r for r in self.records.of("introspection") if isinstance(r, IntrospectionRecord)]

    @property
    def logouts(self) -> list[LogoutRecord]:
        return [r for r in self.records.of("logout") if isinstance(r, LogoutRecord)]

    @property
    def ciba_requests(self) -> list[CibaRequestRecord]:
        return [r for r in self.records.of("ciba") if isinstance(r, CibaRequestRecord)]

    def mark(self) -> int:
        """A position in the records: :meth:`wait_for` with ``after=`` it sees only later ones."""
        return self.records.mark()

    def wait_for(
        self,
        kind: RecordKind,
        after: int = 0,
        timeout_s: float = 5.0,
        predicate: Callable[[Any], bool] = lambda record: True,
    ) -> PscRecord | None:
        """The first ``kind`` record after ``after`` matching ``predicate``, waiting up to ``timeout_s`` (else None).

        ``kind`` is ``authorization``, ``token``, ``userinfo``, ``introspection``, ``logout`` or ``ciba``.
        """
        return self.records.wait_for(kind, after, timeout_s, predicate)

    def wait_for_login(self, after: int = 0, timeout_s: float = 5.0) -> AuthorizationRecord | None:
        """The first authorization after ``after`` that ended in a code (the professional logged in)."""
        found = self.wait_for("authorization", after, timeout_s, lambda r: r.outcome == "code-issued")
        return found if isinstance(found, AuthorizationRecord) else None
