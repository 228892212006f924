"""Shared helpers for the harness's own tests."""

from __future__ import annotations

from pathlib import Path

import pikepdf  # noqa: F401  (see below)
import pytest

pytest_plugins = ["pytester"]

# pytester's in-process runs unload the modules a run imported; pikepdf's nanobind core
# aborts the process when it is loaded a second time. Loaded here, once, it stays loaded.

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ANS_DATA = SHARED / "data" / "ans"


@pytest.fixture(scope="session")
def ans_data() -> Path:
    """The ANS reference data beside the repository (``../shared/data/ans``)."""
    if not ANS_DATA.is_dir():
        pytest.skip(f"ANS reference data not found at {ANS_DATA}")
    return ANS_DATA


@pytest.fixture(scope="session")
def cda_rules(ans_data: Path) -> object:
    """The TestContenuCDA rule set of ``../shared`` (a copy without the ISO skeleton)."""
    from harness.validators.cda import RuleSet

    return RuleSet.open(ans_data / "TestContenuCDA-3-0")


@pytest.fixture(scope="session")
def cda_validator(cda_rules: object, tmp_path_factory: pytest.TempPathFactory) -> object:
    """One validator for the whole session, so each schematron is compiled once."""
    from harness.validators.cda import CdaValidator, RuleSet

    assert isinstance(cda_rules, RuleSet)
    return CdaValidator(cda_rules, cache_dir=tmp_path_factory.mktemp("cda-cache"))
