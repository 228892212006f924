"""The boundaries that keep verdicts honest (DESIGN.md), checked on the import graph.

The reference system must reach the simulators over sockets only and share no code
with the harness's simulators or validators, or a bug both sides share would hide
itself. Scenarios must drive the SUT through adapters, never by importing the
reference system. Validators are pure and start nothing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO


def imported_modules(folder: Path) -> dict[str, set[str]]:
    """Every module each Python file under ``folder`` imports (absolute names)."""
    out: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        out[str(path.relative_to(REPO))] = names
    return out


def offenders(folder: Path, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path, names in imported_modules(folder).items():
        for name in sorted(names):
            if name.startswith(forbidden) and not name.startswith(allowed):
                found.append(f"{path} imports {name}")
    return found


def test_the_reference_system_imports_nothing_of_the_harness() -> None:
    assert offenders(REPO / "harness" / "reference", ("harness",), allowed=("harness.reference",)) == []


def test_scenarios_never_import_the_reference_system() -> None:
    assert offenders(REPO / "scenarios", ("harness.reference",)) == []


@pytest.mark.parametrize("forbidden", ["harness.simulators", "harness.plugin", "harness.evidence", "harness.sut.http"])
def test_validators_are_pure(forbidden: str) -> None:
    assert offenders(REPO / "harness" / "validators", (forbidden,)) == []


def test_simulators_know_no_scenario_and_no_plugin() -> None:
    assert offenders(REPO / "harness" / "simulators", ("scenarios", "harness.plugin", "harness.reference")) == []


def test_the_catalogue_knows_no_runner() -> None:
    assert (
        offenders(
            REPO / "harness" / "catalog", ("harness.evidence", "harness.simulators", "harness.sut", "harness.plugin")
        )
        == []
    )
