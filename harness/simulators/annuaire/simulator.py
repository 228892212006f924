"""The Annuaire Santé simulator as scenarios and the CLI see it: start, stop, reset, directory, faults, records.

:class:`AnnuaireSimulator` assembles the parts (the seeded :class:`Directory`, the FHIR
service, the HTTPS server, the recorder) behind the few operations a scenario needs: point the
SUT at :attr:`AnnuaireSimulator.url` with :attr:`AnnuaireSimulator.api_key`, add or change
directory entries, inject a fault, then read :attr:`AnnuaireSimulator.recorder`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.pki import TestPki
from harness.simulators.annuaire.directory import RESOURCE_TYPES, Directory
from harness.simulators.annuaire.faults import AnnuaireFault, AnnuaireFaultKind, FaultSwitch, as_fault
from harness.simulators.annuaire.server import AnnuaireServer, Limits, server_ssl_context
from harness.simulators.annuaire.service import API_KEY_HEADER, PATH, AnnuaireService
from harness.simulators.lifecycle import ServedSimulator
from harness.simulators.recording import ExchangeRecorder


class AnnuaireSimulator(ServedSimulator):
    """A simulated Annuaire Santé FHIR API (``/fhir/v2``) on loopback, over HTTPS with an API key.

    Example::

        with AnnuaireSimulator(pki) as annuaire:
            sut.configure_annuaire(annuaire.url, annuaire.api_key, pki.ca_bundle_pem)
            mark = annuaire.recorder.mark()
            ...  # the professional looks a correspondent up
            searches = annuaire.recorder.since(mark, action="search-type Practitioner")
    """

    name = "Annuaire"

    def __init__(
        self,
        pki: TestPki,
        port: int = 0,
        api_key: str = "test-api-key",
        page_size: int = 50,
        directory: Directory | None = None,
        *,
        host: str = "127.0.0.1",
        socket_timeout_s: float = 10.0,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        self.pki = pki
        self.host = host
        self.port = port
        self.api_key = api_key
        self.page_size = page_size
        self.recorder = ExchangeRecorder()
        """Every exchange (simulator ``annuaire``; protocol ``http``, or ``tls`` for a refused handshake)."""
        self.limits = Limits(socket_timeout_s=socket_timeout_s)
        self._seed = directory
        self.directory = directory if directory is not None else Directory.default()
        self._faults = FaultSwitch()
        self._service = AnnuaireService(self.directory, self._faults, self._base_url, api_key, page_size)
        self._server: AnnuaireServer | None = None

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> AnnuaireSimulator:
        """Bind and serve in a background thread (a second call does nothing)."""
        if self._server is not None:
            return self
        context = server_ssl_context(self.pki.server.chain_path, self.pki.server.key_path, self.pki.ca_bundle_path)
        server = AnnuaireServer(self._service, self.recorder, self.host, self.port, context, self.limits)
        self._server = server
        server.start()
        return self

    @property
    def url(self) -> str:
        """The FHIR base, ``https://127.0.0.1:PORT/fhir/v2``.

        Raises:
            RuntimeError: the simulator is not started (the port is chosen when it binds).
        """
        return self.served_url("https", PATH)

    def _base_url(self) -> str:
        return self.url if self._server is not None else PATH

    def describe(self) -> dict[str, Any]:
        """What a person or a SUT configuration needs to reach the simulator."""
        return {
            "service": "annuaire",
            "base_url": self.url,
            "api_key_header": API_KEY_HEADER,
            "api_key": self.api_key,
            "format": "application/fhir+json",
            "page_size": self.page_size,
            "ca_bundle": str(self.pki.ca_bundle_path),
            "resources": self.directory.counts(),
            "fault": self.fault.kind.value if self.fault else None,
        }

    # -- steering --------------------------------------------------------------------------------
    def add_resource(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        """Add (or replace) a Practitioner, PractitionerRole, Organization, HealthcareService or Device (validated)."""
        return self.directory.add(resource)

    def set_fault(self, fault: AnnuaireFault | AnnuaireFaultKind | str, count: int | None = None) -> AnnuaireFault:
        """Inject ``fault`` into every following call it affects, or only the next ``count``."""
        if count is not None:
            fault = as_fault(fault).times(count)
        return self._faults.set(fault)

    def clear_fault(self) -> None:
        self._faults.clear()

    @property
    def fault(self) -> AnnuaireFault | None:
        return self._faults.current()

    def reset(self) -> None:
        """Back to the seed: no exchange, no fault, no kept search, the directory reloaded.

        The recorder's marks keep counting, as :meth:`ExchangeRecorder.clear` promises.
        """
        self.recorder.clear()
        self._faults.clear()
        self._service.forget_searches()
        fresh = (
            Directory.default()
            if self._seed is None
            else Directory([r for kind in RESOURCE_TYPES for r in self._seed.all(kind)])
        )
        self.directory = fresh
        self._service.directory = fresh
