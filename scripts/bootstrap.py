#!/usr/bin/env python3
"""Set up the project's virtual environment on demand, then run one of its jobs.

The README's two commands go through this script so they work on a fresh clone
with nothing but Python 3.11 and the package registries:

    python3 scripts/bootstrap.py demo   # full conformance run against the reference system, pack verified
    python3 scripts/bootstrap.py test   # the harness's own test suite

It creates ``.venv`` next to the project, installs the project (editable, with
its test extras) and reinstalls only when ``pyproject.toml`` changes. Extra
arguments are passed to the job.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".segur-harness-installed"


def ensure_environment() -> None:
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    if not (BIN / "python").exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    python = str(BIN / "python")
    print("installing the harness and its dependencies", flush=True)
    quiet = ["-q"] if os.environ.get("CI") else []
    # uv installs the stack several times faster than pip; fall back to pip if it is unavailable.
    if subprocess.call([python, "-m", "pip", "install", *quiet, "--disable-pip-version-check", "uv"]) == 0:
        code = subprocess.call([str(BIN / "uv"), "pip", "install", *quiet, "--python", python, "-e", f"{ROOT}[test]"])
    else:
        code = 1
    if code != 0:
        subprocess.check_call(
            [python, "-m", "pip", "install", *quiet, "--disable-pip-version-check", "-e", f"{ROOT}[test]"]
        )
    STAMP.write_text(wanted)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"demo", "test", "lint", "shell"}:
        print(__doc__)
        return 2
    job, extra = argv[0], argv[1:]
    ensure_environment()
    os.chdir(ROOT)
    if job == "demo":
        env = dict(os.environ)
        # The ANS CDA rules are data the harness never ships; when the shared reference
        # data sits beside the clone (as in CI), the demo judges documents with them.
        shared_rules = ROOT.parent / "shared" / "data" / "ans" / "TestContenuCDA-3-0"
        if "SEGUR_HARNESS_CDA_RULES" not in env and shared_rules.is_dir():
            env["SEGUR_HARNESS_CDA_RULES"] = str(shared_rules)
            print(f"CDA rules: {shared_rules}")
        return subprocess.call([str(BIN / "segur-harness"), "run", *extra], env=env)
    if job == "test":
        return subprocess.call([str(BIN / "python"), "-m", "pytest", *extra])
    if job == "lint":
        code = subprocess.call([str(BIN / "ruff"), "check", "harness", "scenarios", "tests", "bench", "scripts"])
        return code or subprocess.call([str(BIN / "mypy")])
    return subprocess.call(
        [os.environ.get("SHELL", "/bin/sh")], env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
