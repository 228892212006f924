"""Adapter for the built-in reference system: start its process, drive it over HTTP.

The reference system ("Cabinet Témoin", ``harness/reference/``) is the main job's
default SUT and the harness's own test subject. It runs as a separate process so
it reaches the simulators over sockets exactly like a vendor's software; this
adapter only starts and stops it and otherwise is the plain HTTP adapter.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from harness.sut.base import SutError
from harness.sut.http import HttpSut


class ReferenceSut(HttpSut):
    """The reference system in its own process, with optional switchable defects."""

    name = "reference"

    def __init__(
        self,
        work_dir: Path,
        defects: Sequence[str] = (),
        profiles: Sequence[str] | None = None,
        timeout_s: float = 10.0,
        remove_work_dir: bool = False,
    ) -> None:
        from harness.reference.launcher import ReferenceStartError, start_reference

        self.defects = tuple(defects)
        self.work_dir = work_dir
        self.remove_work_dir = remove_work_dir
        try:
            self.process = start_reference(work_dir, defects=self.defects, profiles=profiles)
        except ReferenceStartError as exc:
            if remove_work_dir:
                shutil.rmtree(work_dir, ignore_errors=True)
            raise SutError(f"the reference system did not start: {exc}") from None
        super().__init__(self.process.url, timeout_s=timeout_s)

    def close(self) -> None:
        super().close()
        self.process.stop()
        if self.remove_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
