#!/usr/bin/env python3
"""Benchmark of the main job: a full conformance run against the reference system.

Measures wall time, peak RSS (the largest of the harness process and the
reference-system process, from ``getrusage(RUSAGE_CHILDREN)`` after each
finished), and scenarios per second. Targets: ≤ 20 s and ≤ 400 MB on 2 cores.

    python bench/bench_main_job.py [--repeat 3]

A benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_run(workdir: Path) -> tuple[float, int, int]:
    run_dir = workdir / "run"
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", f"--run-dir={run_dir}", f"--out={workdir}"],
        check=False,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    scenarios = 0
    with (run_dir / "journal.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            if record.get("type") == "verdict" and record["verdict"].get("nodeid"):
                scenarios += 1
    return wall, peak_kb, scenarios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    walls: list[float] = []
    peaks: list[int] = []
    scenarios = 0
    for _ in range(args.repeat):
        workdir = Path(tempfile.mkdtemp(prefix="bench-main-"))
        try:
            wall, peak_kb, scenarios = one_run(workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        walls.append(wall)
        peaks.append(peak_kb)
    print(f"{'runs':<24}{args.repeat}")
    print(f"{'scenarios per run':<24}{scenarios}")
    print(f"{'wall time median (s)':<24}{statistics.median(walls):.2f}  (min {min(walls):.2f}, max {max(walls):.2f})")
    print(f"{'peak RSS (MB)':<24}{max(peaks) / 1024:.0f}")
    print(f"{'scenarios / s':<24}{scenarios / statistics.median(walls):.2f}")


if __name__ == "__main__":
    main()
