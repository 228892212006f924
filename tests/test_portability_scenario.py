"""The portability scenario's own helpers: an export that never comes is a finding, not a hang."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from harness.plugin.evidence import ScenarioEvidence
from harness.sut.model import PortabilityExport, PortabilityRequest
from harness.sut.python import PythonSut
from scenarios import test_portability


class _Options:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def getoption(self, name: str) -> Any:
        return {"segur_portability_timeout": self.timeout, "segur_portability_layout": None}[name]


class _Request:
    def __init__(self, timeout: float) -> None:
        self.config = _Options(timeout)


class SlowExporter:
    """A Python SUT whose export takes far longer than the harness allows."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def export_portability(self, request: PortabilityRequest) -> PortabilityExport:
        self.release.wait(30)
        return PortabilityExport("late.zip", b"PK")


def test_an_export_past_its_timeout_is_a_finding_in_bounded_time() -> None:
    target = SlowExporter()
    sut = PythonSut(target, timeout_s=10)
    evidence = ScenarioEvidence()
    started = time.monotonic()
    try:
        exported = test_portability._export(sut, evidence, _Request(0.3), PortabilityRequest("massif"))  # type: ignore[arg-type]
    finally:
        target.release.set()
    assert exported is None
    assert time.monotonic() - started < 5, "the portability timeout, not the adapter's, bounds the wait"
    assert [f.rule for f in evidence.findings] == ["portability.export.timeout"]
    assert "0.3 s" in evidence.findings[0].message


def test_an_export_in_time_is_returned() -> None:
    class Quick:
        def export_portability(self, request: PortabilityRequest) -> PortabilityExport:
            return PortabilityExport("x.zip", b"PK\x05\x06" + b"\0" * 18)

    evidence = ScenarioEvidence()
    exported = test_portability._export(PythonSut(Quick()), evidence, _Request(5), PortabilityRequest("massif"))  # type: ignore[arg-type]
    assert exported is not None and exported.file_name == "x.zip" and evidence.findings == []


@pytest.mark.parametrize("months", [1, 2, 3, 12, 20, 26, 40, 44, 50])
def test_seeded_dates_stay_clear_of_the_depth_boundary(months: int) -> None:
    """No seeded date within a month of ``since``, so time zones cannot flip a document in or out."""
    from datetime import UTC, datetime

    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    moment = test_portability._months(now, months)
    since = test_portability._years(now, -test_portability.DEPTH_YEARS)
    assert abs((moment - since).days) > 30


def test_the_documentation_template_lists_the_dictionary_and_leaves_the_vendor_parts() -> None:
    from harness.validators.portability import PortabilityLayout, check_export
    from tests.portability_samples import EXPECTED, conforming_archive

    archive = conforming_archive()
    report = check_export(archive, EXPECTED)
    text = test_portability._documentation(
        report,
        PortabilityExport("export.zip", archive),
        PortabilityRequest("unitaire", ("P1",), "2020-01-01"),
        PortabilityLayout(),
        {"launch": "Menu Administration"},
    ).decode("utf-8")
    assert "| Documents du patient | CDA R2 | `IHE_XDM/*/DOC*.XML` | 1 |" in text
    assert "| Copie PDF de chaque document | PDF/A-1 | `IHE_XDM/*/DOC*.PDF` | 1 |" in text
    assert "which rights it needs: Menu Administration" in text
    assert text.count("(to be supplied by the vendor: --portability-statement)") == 2
    assert "scope unitaire, patients P1, since 2020-01-01" in text


def test_an_unreadable_statement_file_is_said_not_fatal(tmp_path: Any) -> None:
    from scenarios.vendor_statements import read_statement, statement_lines

    path = tmp_path / "statement.toml"
    path.write_text("[portability\nlaunch = 1")

    class Config:
        def getoption(self, name: str) -> str:
            return str(path)

    class Request:
        config = Config()

    statement = read_statement(Request(), "segur_portability_statement", "portability", {"launch": "Launch"})  # type: ignore[arg-type]
    assert "cannot read" in statement["error"]
    lines = statement_lines(statement, {"launch": "Launch"}, "--portability-statement")
    assert lines[0] == "- Launch: (to be supplied by the vendor: --portability-statement)"
    assert lines[1].startswith("- (the statement file was not read: cannot read")
