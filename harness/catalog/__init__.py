"""The requirement catalogue: ANS requirements as typed, validated data."""

from harness.catalog.loader import CatalogError, load_catalog
from harness.catalog.model import (
    GENERAL_PROFILE,
    Catalog,
    ComplianceScenario,
    ExpectedProof,
    Nature,
    ProofKind,
    Requirement,
)

__all__ = [
    "GENERAL_PROFILE",
    "Catalog",
    "CatalogError",
    "ComplianceScenario",
    "ExpectedProof",
    "Nature",
    "ProofKind",
    "Requirement",
    "load_catalog",
]
