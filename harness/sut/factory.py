"""Build the adapter named by ``--sut``.

Accepted forms:

- ``reference`` or ``reference:defect-a,defect-b`` — start the built-in reference
  system (with the named defects switched on);
- ``http://host:port`` or ``https://…`` — a vendor SUT implementing the control API;
- ``python:package.module:ClassName`` — an in-process Python object.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from harness.sut.base import SutAdapter, SutError


def open_sut(spec: str, work_dir: Path | None = None, timeout_s: float = 10.0) -> SutAdapter:
    """The adapter for ``spec``; raises SutError when it cannot be built."""
    if spec == "reference" or spec.startswith("reference:"):
        from harness.sut.reference import ReferenceSut

        defects = [d.strip() for d in spec.partition(":")[2].split(",") if d.strip()]
        if work_dir is None:
            return ReferenceSut(Path(tempfile.mkdtemp(prefix="segur-reference-")), defects, None, timeout_s, True)
        work_dir.mkdir(parents=True, exist_ok=True)
        return ReferenceSut(work_dir, defects=defects, timeout_s=timeout_s)
    if spec.startswith(("http://", "https://")):
        from harness.sut.http import HttpSut

        return HttpSut(spec, timeout_s=timeout_s)
    if spec.startswith("python:"):
        from harness.sut.python import PythonSut, load_object

        return PythonSut(load_object(spec.removeprefix("python:")), timeout_s=timeout_s)
    raise SutError(f"unknown SUT {spec!r}: use 'reference[:defects]', an http(s) URL or 'python:module:Class'")
