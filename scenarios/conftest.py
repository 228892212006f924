"""Fixtures only the conformance scenarios need (the plugin provides the shared ones)."""

from __future__ import annotations

import pytest

from harness.plugin.evidence import ScenarioEvidence
from harness.simulators.insi import InsiSimulator
from harness.sut.base import SutAdapter
from scenarios.insi_steps import IdentityFeed


@pytest.fixture
def identity_feed(sut: SutAdapter, insi: InsiSimulator, evidence: ScenarioEvidence) -> IdentityFeed:
    """Another identification domain that sends PAM-FR identity messages to the SUT."""
    return IdentityFeed(sut, evidence, insi)
