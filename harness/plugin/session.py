"""Run-wide state of the plugin: options, catalogue, SUT, profiles, journal.

One :class:`HarnessSession` lives in ``config.stash`` for the whole pytest run. It
opens the SUT lazily (so the harness's own tests never start a reference
system), decides which profiles are selected, and owns the evidence journal.
"""

from __future__ import annotations

import getpass
import platform
import secrets
import socket
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from harness import __version__
from harness.catalog import GENERAL_PROFILE, Catalog, Requirement, load_catalog
from harness.plugin.recording import VerdictWriter
from harness.simulators.recording import ExchangeRecorder
from harness.sut.base import SutAdapter, SutError
from harness.sut.factory import open_sut
from harness.sut.model import SutDescription

SESSION_KEY = pytest.StashKey["HarnessSession"]()


def new_run_id(now: datetime) -> str:
    """Sortable, unique run id: ``20261122-140501-3fa2``."""
    return now.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


@dataclass
class HarnessSession:
    """Everything the plugin knows about the current conformance run."""

    config: pytest.Config
    sut_spec: str
    dsr: str
    requested_profiles: tuple[str, ...]
    run_dir: Path
    sut_timeout_s: float
    catalog_dir: Path | None
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    recorders: dict[str, ExchangeRecorder] = field(default_factory=dict)
    covered: set[str] = field(default_factory=set)
    """Requirement ids some collected scenario names."""
    covered_scenarios: set[str] = field(default_factory=set)
    """Compliance-scenario ids some collected scenario performs."""
    _sut: SutAdapter | None = None
    _sut_error: str = ""
    _catalog: Catalog | None = None
    _writer: VerdictWriter | None = None

    def verdict_writer(self) -> VerdictWriter:
        """The run's verdict writer, started (journal opened) on the first verdict."""
        if self._writer is None:
            self._writer = VerdictWriter(self)
        return self._writer

    def existing_verdict_writer(self) -> VerdictWriter | None:
        """The writer if any verdict was written, else None (the run was not a conformance run)."""
        return self._writer

    @property
    def catalog(self) -> Catalog:
        """The DSR's catalogue, loaded on first use (CatalogError if the data is invalid)."""
        if self._catalog is None:
            self._catalog = load_catalog(self.dsr, self.catalog_dir)
        return self._catalog

    @classmethod
    def from_config(cls, config: pytest.Config) -> HarnessSession:
        started = datetime.now(UTC)
        run_dir_opt = config.getoption("segur_run_dir")
        run_dir = Path(run_dir_opt) if run_dir_opt else Path("reports") / new_run_id(started)
        catalog_dir = config.getoption("segur_catalog_dir")
        profiles = tuple(config.getoption("segur_profiles") or ())
        return cls(
            config=config,
            sut_spec=str(config.getoption("segur_sut")),
            dsr=str(config.getoption("segur_dsr")),
            requested_profiles=profiles,
            run_dir=run_dir.resolve(),
            sut_timeout_s=float(config.getoption("segur_sut_timeout")),
            catalog_dir=Path(catalog_dir) if catalog_dir else None,
            started=started,
        )

    # -- SUT -----------------------------------------------------------------------
    def sut(self) -> SutAdapter:
        """The adapter, opened on first use; raises SutError if it cannot be opened."""
        if self._sut is None:
            if self._sut_error:
                raise SutError(self._sut_error)
            try:
                # The SUT's own files (the reference system's database and log) live outside
                # the run folder: the evidence pack holds what the harness observed.
                self._sut = open_sut(self.sut_spec, None, timeout_s=self.sut_timeout_s)
                self._sut.describe()
            except SutError as exc:
                self._sut_error = f"cannot open the SUT {self.sut_spec!r}: {exc}"
                if self._sut is not None:
                    self._sut.close()
                    self._sut = None
                raise SutError(self._sut_error) from None
        return self._sut

    def sut_description(self) -> SutDescription | None:
        try:
            return self.sut().describe()
        except SutError:
            return None

    def close(self) -> None:
        if self._sut is not None:
            self._sut.close()
            self._sut = None

    # -- profiles ----------------------------------------------------------------
    def check_profiles(self) -> None:
        """Reject ``--profile`` values the catalogue does not know."""
        unknown = [p for p in self.requested_profiles if p not in self.catalog.profiles]
        if unknown:
            raise pytest.UsageError(f"unknown profile(s) {unknown}; known: {', '.join(self.catalog.profiles)}")

    def selected_profiles(self) -> tuple[str, ...]:
        """``--profile`` values if given, else the profiles the SUT declares; always Général."""
        if self.requested_profiles:
            chosen = self.requested_profiles
        else:
            description = self.sut_description()
            chosen = description.profiles if description else ()
        return (GENERAL_PROFILE, *[p for p in chosen if p != GENERAL_PROFILE])

    def applies(self, requirement: Requirement) -> bool:
        return requirement.profile in self.selected_profiles()

    # -- run facts -----------------------------------------------------------------
    def rule_versions(self) -> dict[str, str]:
        """The external rules judging this run's documents, with their versions (for ``run.json``)."""
        from harness.validators.cda import RulesError, RuleSet
        from harness.validators.cda.engine import describe_rules

        folder = self.config.getoption("segur_cda_rules", None)
        try:
            rules = RuleSet.open(folder) if folder else RuleSet.from_environment()
        except RulesError:
            return {}
        return {"cda": describe_rules(rules)} if rules is not None else {}

    def host_facts(self) -> dict[str, str]:
        return {
            "hostname": socket.gethostname(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "user": _user(),
            "harness_version": __version__,
        }


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return ""
