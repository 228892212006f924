"""Identity feeds reach the SUT over MLLP when it listens, and through the control API when it does not.

The INSi scenarios send PAM-FR messages "from another identification domain" with
:class:`scenarios.insi_steps.IdentityFeed`. A vendor's SUT may have no MLLP listener
in its test build; the feed must then go through ``POST /identity-feeds`` and still
leave the message, the ACK and the exchange in the evidence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from harness.pki import TestPki
from harness.plugin.evidence import ScenarioEvidence
from harness.simulators.insi import InsiSimulator
from harness.sut.model import SutDescription
from harness.sut.reference import ReferenceSut
from scenarios.insi_steps import IdentityFeed, unknown_to_insi


class ReferenceWithoutMllp(ReferenceSut):
    """The reference system, but announcing no MLLP listener (as a SUT without one would)."""

    def describe(self) -> SutDescription:
        return replace(super().describe(), mllp=None)


@pytest.fixture(scope="module")
def insi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InsiSimulator]:
    with InsiSimulator(TestPki.generate(tmp_path_factory.mktemp("pki"))) as simulator:
        yield simulator


@pytest.mark.parametrize("transport", ["mllp", "control-api"])
def test_a_feed_reaches_the_sut_and_its_ack_is_kept(transport: str, insi: InsiSimulator, tmp_path: Path) -> None:
    adapter = ReferenceSut if transport == "mllp" else ReferenceWithoutMllp
    sut = adapter(tmp_path / "reference", timeout_s=5.0)
    try:
        evidence = ScenarioEvidence()
        stranger = unknown_to_insi()
        feed = IdentityFeed(sut, evidence, insi, timeout_s=3.0)
        code = feed.send(stranger, reliability="VALI")
        feed.settle()
        created = [p for p in sut.list_patients() if p.traits.birth_name == stranger.birth_name]
    finally:
        sut.close()
    assert code in {"AA", "AE", "AR"}
    (exchange,) = evidence.exchanges()
    assert exchange.protocol == "control-api" if transport == "control-api" else exchange.protocol.startswith("mllp")
    assert exchange.request.startswith(b"MSH|") and b"PID|" in exchange.request
    assert b"MSA|" in exchange.response
    ((artefact, data),) = evidence.files
    assert artefact.name.endswith(".hl7") and artefact.media_type == "application/hl7-v2"
    assert data == exchange.request, "the message attached is the one that travelled"
    assert len(created) == 1, "the identity was integrated whichever way it came"
