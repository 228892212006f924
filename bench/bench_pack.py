#!/usr/bin/env python3
"""Benchmark of the evidence pipeline: finalise a run, build its pack, verify it.

Builds a synthetic run of ``--files`` evidence files of about ``--size`` bytes
(exchanges and attached files spread over one verdict per five files, against a
synthetic catalogue with one requirement per verdict), then times
``finalize_run``, ``build_pack``, ``verify_pack`` on the zip and on the folder,
and checks that a second pack is byte-identical. Peak RSS comes from
``getrusage(RUSAGE_SELF)`` after each phase (it only grows, so each figure is
the peak so far).

    python bench/bench_pack.py [--files 1000] [--size 4096] [--repeat 3]

A benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.catalog.model import (
    Catalog,
    ComplianceScenario,
    ExpectedProof,
    Nature,
    ProofKind,
    Requirement,
)
from harness.evidence.journal import RunInfo, RunJournal
from harness.evidence.manifest import finalize_run
from harness.evidence.pack import build_pack
from harness.evidence.verify import verify_pack
from harness.simulators.recording import Exchange
from harness.verdicts import Artefact, Verdict, VerdictStatus

AREAS = ("INS", "DMP", "MSS", "PSC", "DOC")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FILES_PER_VERDICT = 5  # 3 exchanges + 2 attached files


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_catalog(count: int) -> Catalog:
    reqs: dict[str, Requirement] = {}
    for n in range(count):
        area = AREAS[n % len(AREAS)]
        ref = f"{area}/va1.{n:03d}"
        proofs = (ExpectedProof(f"{ref}.01.01", ProofKind.LOG, "log"),)
        reqs[ref] = Requirement(
            rem="LGC",
            ref=ref,
            va1_refs=(),
            socle_ref="",
            wave="va1",
            section_id=area,
            section=area,
            bloc="bloc",
            fonction="fonction",
            nature=Nature.EXIGENCE,
            profile="Général",
            status="Approuvée",
            statement=f"statement {ref}",
            scenarios=(ComplianceScenario(f"{ref}.01", "summary", ("step",), proofs),),
        )
    return Catalog(requirements=reqs, profiles=("Général",), version="bench")


def build_run(run_dir: Path, files: int, size: int, catalog: Catalog) -> None:
    rng = random.Random(42)
    journal = RunJournal(run_dir, durable=False)
    journal.start(
        RunInfo(
            run_id=run_dir.name,
            sut={"publisher": "Bench", "software": "Cabinet", "version": "1.0", "adapter": "bench"},
            dsr="LGC",
            profiles=["Général"],
            catalog_version=catalog.version,
            started=T0,
        )
    )
    refs = list(catalog.requirements)

    def payload() -> bytes:
        return rng.randbytes(size // 2).hex().encode()  # text-like, ~size bytes, not very compressible

    for index in range((files + FILES_PER_VERDICT - 1) // FILES_PER_VERDICT):
        ref = refs[index % len(refs)]
        when = T0 + timedelta(seconds=index)
        exchanges = [
            Exchange("insi", "soap12", "urn:verify", "inbound", when, when, payload(), b"<ok/>", seq=k)
            for k in range(3)
        ]
        attached = [(Artefact(f"doc-{k}.xml", "text/xml"), payload()) for k in range(2)]
        status = VerdictStatus.PASSED if index % 7 else VerdictStatus.FAILED
        verdict = Verdict(f"bench.py::test[{index}]", f"{ref}.01", [ref], "bench", status, reason="bench")
        journal.record(verdict, exchanges, attached)
    journal.finish(T0 + timedelta(hours=1))


def timed(action: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def one_round(workdir: Path, files: int, size: int) -> dict[str, tuple[float, float]]:
    catalog = synthetic_catalog(max(1, files // FILES_PER_VERDICT))
    run_dir = workdir / "run"
    build_run(run_dir, files, size, catalog)
    figures: dict[str, tuple[float, float]] = {}
    seconds, _ = timed(lambda: finalize_run(run_dir, catalog))
    figures["finalize_run"] = (seconds, peak_rss_mb())
    seconds, pack = timed(lambda: build_pack(run_dir, workdir / "out"))
    figures["build_pack"] = (seconds, peak_rss_mb())
    assert isinstance(pack, Path)
    seconds, zip_result = timed(lambda: verify_pack(pack))
    figures["verify_pack (zip)"] = (seconds, peak_rss_mb())
    seconds, dir_result = timed(lambda: verify_pack(run_dir))
    figures["verify_pack (folder)"] = (seconds, peak_rss_mb())
    seconds, _ = timed(lambda: finalize_run(run_dir, catalog))
    figures["finalize_run again (no-op)"] = (seconds, peak_rss_mb())
    again = build_pack(run_dir, workdir / "out2")
    same = hashlib.sha256(pack.read_bytes()).digest() == hashlib.sha256(again.read_bytes()).digest()
    for label, result in (("zip", zip_result), ("folder", dir_result)):
        if not getattr(result, "ok", False):
            print(f"warning: verification of the {label} reported problems: {getattr(result, 'problems', '?')}")
    if not same:
        print("warning: the second pack differs from the first")
    evidence = sum(1 for p in run_dir.rglob("*") if p.is_file())
    print(f"run folder: {evidence} files, pack {pack.stat().st_size / 1e6:.1f} MB, reproducible pack: {same}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000, help="evidence files in the run (default 1000)")
    parser.add_argument("--size", type=int, default=4096, help="approximate size of each file in bytes")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the table shows the median")
    args = parser.parse_args()

    rounds: list[dict[str, tuple[float, float]]] = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="bench-pack-") as tmp:
            rounds.append(one_round(Path(tmp), args.files, args.size))

    print(f"\n{args.files} files of ~{args.size} bytes, median of {args.repeat} round(s)")
    print(f"{'phase':<28} {'seconds':>9} {'peak RSS MB':>12}")
    for phase in rounds[0]:
        seconds = statistics.median(r[phase][0] for r in rounds)
        rss = max(r[phase][1] for r in rounds)
        print(f"{phase:<28} {seconds:>9.3f} {rss:>12.1f}")


if __name__ == "__main__":
    main()
