"""Fixtures scenarios use: the SUT, the simulators, the test PKI, evidence.

Simulators are session-wide (one server per run, on loopback) and reset before
each scenario; the SUT is opened once per run and reset before each scenario
when it offers the ``reset`` capability. The ``evidence`` fixture starts
collecting from every simulator recorder when the scenario starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.plugin.evidence import ScenarioEvidence
from harness.plugin.session import SESSION_KEY
from harness.sut.base import SutAdapter
from harness.sut.model import Capability, EndpointConfig, InsiEndpoint, MssanteEndpoint

if TYPE_CHECKING:
    # Imported lazily at run time: the plugin loads in every pytest run, and a run
    # that uses no simulator should not pay for (or depend on) starting one.
    from harness.pki import TestPki
    from harness.simulators.annuaire import AnnuaireSimulator
    from harness.simulators.dmp import DmpSimulator
    from harness.simulators.insi import IdentityBase, InsiSimulator
    from harness.simulators.mssante import MssanteSimulator
    from harness.simulators.psc import PscSimulator
    from harness.validators.cda import CdaValidator


def _evidence_key() -> pytest.StashKey[ScenarioEvidence]:
    from harness.plugin import EVIDENCE_KEY

    return EVIDENCE_KEY


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    """The run's test PKI (IGC-Santé stand-in), generated now; keys never leave the run."""
    from harness.pki import TestPki

    return TestPki.generate(Path(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="session")
def harness_sut(request: pytest.FixtureRequest) -> SutAdapter:
    """The SUT adapter for the whole run (opened on first use)."""
    return request.config.stash[SESSION_KEY].sut()


@pytest.fixture(scope="session")
def insi_simulator(request: pytest.FixtureRequest, pki: TestPki, harness_sut: SutAdapter) -> Iterator[InsiSimulator]:
    """The INSi simulator for the run, with the SUT pointed at it."""
    from harness.simulators.insi import InsiSimulator

    simulator = InsiSimulator(pki=pki)
    simulator.start()
    request.config.stash[SESSION_KEY].recorders["insi"] = simulator.recorder
    try:
        harness_sut.configure_endpoints(insi_endpoint_config(simulator.url, pki))
        yield simulator
    finally:
        simulator.stop()


def insi_endpoint_config(url: str, pki: TestPki) -> EndpointConfig:
    """What the SUT is told to reach INSi at ``url``: the CA bundle, the organisation and CPS-like credentials."""
    return EndpointConfig(
        insi=InsiEndpoint(
            url=url,
            ca_pem=pki.ca_bundle_pem.decode("ascii"),
            client_cert_pem=pki.organisation.chain_pem.decode("ascii"),
            client_key_pem=pki.organisation.key_pem.decode("ascii"),
            cps_cert_pem=pki.cps.chain_pem.decode("ascii"),
            cps_key_pem=pki.cps.key_pem.decode("ascii"),
        )
    )


@pytest.fixture(scope="session")
def dmp_simulator(request: pytest.FixtureRequest, pki: TestPki, harness_sut: SutAdapter) -> Iterator[DmpSimulator]:
    """The DMP simulator for the run (started on first use), with the SUT pointed at it."""
    from harness.simulators.dmp import DmpSimulator
    from harness.sut.model import DmpEndpoint

    simulator = DmpSimulator(pki=pki)
    simulator.start()
    request.config.stash[SESSION_KEY].recorders["dmp"] = simulator.recorder
    try:
        endpoint = DmpEndpoint(
            url=simulator.url,
            ca_pem=pki.ca_bundle_pem.decode("ascii"),
            client_cert_pem=pki.organisation.chain_pem.decode("ascii"),
            client_key_pem=pki.organisation.key_pem.decode("ascii"),
        )
        if Capability.DMP in harness_sut.describe().capabilities:
            harness_sut.configure_endpoints(EndpointConfig(dmp=endpoint))
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture
def dmp(dmp_simulator: DmpSimulator, harness_sut: SutAdapter, evidence: ScenarioEvidence) -> DmpSimulator:
    """The DMP simulator, reset (no fault, no patient, nothing stored) for this scenario."""
    dmp_simulator.reset()
    evidence.track("dmp", dmp_simulator.recorder)
    return dmp_simulator


@pytest.fixture(scope="session")
def mssante_simulator(
    request: pytest.FixtureRequest, pki: TestPki, harness_sut: SutAdapter
) -> Iterator[MssanteSimulator]:
    """The MSSanté operator simulator for the run (started on first use), with the SUT pointed at its BAL."""
    from harness.simulators.mssante import MssanteSimulator

    simulator = MssanteSimulator(pki).start()
    request.config.stash[SESSION_KEY].recorders["mssante"] = simulator.recorder
    try:
        if Capability.MSSANTE in harness_sut.describe().capabilities:
            harness_sut.configure_endpoints(EndpointConfig(mssante=mssante_endpoint(simulator, pki)))
        yield simulator
    finally:
        simulator.stop()


def mssante_endpoint(simulator: MssanteSimulator, pki: TestPki) -> MssanteEndpoint:
    """What the SUT is told to reach the operator: SMTP and IMAP, its BAL and password, the organisation certificate."""
    from harness.sut.model import MssanteEndpoint

    smtp_host, smtp_port = simulator.smtp_address
    imap_host, imap_port = simulator.imap_address
    return MssanteEndpoint(
        smtp_host=smtp_host,
        smtp_port=smtp_port,
        imap_host=imap_host,
        imap_port=imap_port,
        ca_pem=pki.ca_bundle_pem.decode("ascii"),
        client_cert_pem=pki.organisation.chain_pem.decode("ascii"),
        client_key_pem=pki.organisation.key_pem.decode("ascii"),
        address=simulator.sut_address,
        password=simulator.sut_password(),
        dst_urls=simulator.dst_urls,
    )


@pytest.fixture
def mssante(mssante_simulator: MssanteSimulator, evidence: ScenarioEvidence) -> MssanteSimulator:
    """The MSSanté simulator, reset (conforming TLS, empty BALs, no record) for this scenario."""
    mssante_simulator.reset()
    evidence.track("mssante", mssante_simulator.recorder)
    return mssante_simulator


@pytest.fixture(scope="session")
def annuaire_simulator(
    request: pytest.FixtureRequest, pki: TestPki, harness_sut: SutAdapter
) -> Iterator[AnnuaireSimulator]:
    """The Annuaire Santé simulator for the run (started on first use), with the SUT pointed at it."""
    from harness.simulators.annuaire import AnnuaireSimulator
    from harness.sut.model import AnnuaireEndpoint

    simulator = AnnuaireSimulator(pki=pki).start()
    request.config.stash[SESSION_KEY].recorders["annuaire"] = simulator.recorder
    try:
        if Capability.ANNUAIRE in harness_sut.describe().capabilities:
            endpoint = AnnuaireEndpoint(simulator.url, simulator.api_key, pki.ca_bundle_pem.decode("ascii"))
            harness_sut.configure_endpoints(EndpointConfig(annuaire=endpoint))
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture
def annuaire(annuaire_simulator: AnnuaireSimulator, evidence: ScenarioEvidence) -> AnnuaireSimulator:
    """The Annuaire Santé simulator, reset (seeded directory, no fault) for this scenario."""
    annuaire_simulator.reset()
    evidence.track("annuaire", annuaire_simulator.recorder)
    return annuaire_simulator


PSC_CLIENT_ID = "segur-harness-sut"
"""The client id the harness registers for the SUT at its Pro Santé Connect simulator."""


@pytest.fixture(scope="session")
def psc_simulator(request: pytest.FixtureRequest, pki: TestPki, harness_sut: SutAdapter) -> Iterator[PscSimulator]:
    """The Pro Santé Connect simulator for the run, with the SUT's client registered and the SUT pointed at it.

    The SUT says which redirect URIs it uses (``psc_client``); the harness registers them with a
    client secret made for the run, then gives the SUT the discovery URL, its client id and secret.
    """
    import secrets

    from harness.simulators.psc import PscSimulator
    from harness.sut.model import PscEndpoint

    simulator = PscSimulator(pki, ciba_interval_s=1).start()
    request.config.stash[SESSION_KEY].recorders["psc"] = simulator.recorder
    try:
        if Capability.PSC in harness_sut.describe().capabilities:
            client = harness_sut.psc_client()
            secret = secrets.token_urlsafe(24)
            simulator.register_client(PSC_CLIENT_ID, secret, [client.redirect_uri], [client.post_logout_redirect_uri])
            endpoint = PscEndpoint(simulator.discovery_url, PSC_CLIENT_ID, secret, pki.ca_bundle_pem.decode("ascii"))
            harness_sut.configure_endpoints(EndpointConfig(psc=endpoint))
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture
def psc(psc_simulator: PscSimulator, evidence: ScenarioEvidence) -> PscSimulator:
    """The Pro Santé Connect simulator, reset (no misbehaviour, no fault, no record; clients kept) for this scenario."""
    psc_simulator.reset()
    evidence.track("psc", psc_simulator.recorder)
    return psc_simulator


@pytest.fixture
def insi(insi_simulator: InsiSimulator, evidence: ScenarioEvidence) -> InsiSimulator:
    """The INSi simulator, reset (no fault, no override) for this scenario."""
    insi_simulator.reset()
    evidence.track("insi", insi_simulator.recorder)
    return insi_simulator


@pytest.fixture
def insi_identities(insi_simulator: InsiSimulator) -> IdentityBase:
    """The synthetic identities the INSi simulator knows (``fixtures/insi/identities.toml``)."""
    return insi_simulator.base


@pytest.fixture(scope="session")
def cda_validator(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> CdaValidator:
    """The CDA validator for documents the SUT produces: the ANS rules of ``--cda-rules`` when given.

    One per run, so every schematron is compiled once. Without ANS rules it applies the
    harness's own header and PDF rules, and the scenarios say so in their verdicts.
    """
    from harness.validators.cda import CdaValidator, RuleSet

    folder = request.config.getoption("segur_cda_rules")
    rules = RuleSet.open(folder) if folder else RuleSet.from_environment()
    return CdaValidator(rules)


@pytest.fixture
def sut(harness_sut: SutAdapter) -> SutAdapter:
    """The system under test, wiped clean for this scenario when it can be."""
    if Capability.RESET in harness_sut.describe().capabilities:
        harness_sut.reset()
    return harness_sut


@pytest.fixture
def evidence(request: pytest.FixtureRequest) -> ScenarioEvidence:
    """Collects this scenario's findings, exchanges and files for the verdict.

    Example::

        def test_x(sut, insi, evidence):
            evidence.expect(record.ins is None, "ins.removed", "the INS must be removed")
            evidence.conclude()
    """
    ev = ScenarioEvidence()
    for name, recorder in request.config.stash[SESSION_KEY].recorders.items():
        ev.track(name, recorder)
    request.node.stash[_evidence_key()] = ev
    return ev
