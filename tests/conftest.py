"""Shared helpers for the harness's own tests."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ANS_DATA = SHARED / "data" / "ans"


@pytest.fixture(scope="session")
def ans_data() -> Path:
    """The ANS reference data beside the repository (``../shared/data/ans``)."""
    if not ANS_DATA.is_dir():
        pytest.skip(f"ANS reference data not found at {ANS_DATA}")
    return ANS_DATA
