#!/usr/bin/env python3
"""Benchmark of the DMP simulator: ITI-41 submissions per second with MTOM documents, memory per document.

Starts a :class:`~harness.simulators.dmp.DmpSimulator` on loopback (mutual TLS, VIHF
verification on, a validator that parses each CDA with lxml and walks it), then sends
``--count`` ITI-41 submissions of a ``--size``-byte CDA over MTOM with the tests'
independent client (``tests/dmp_requests.py``), first from one connection, then from
``--workers`` concurrent ones. Each worker signs one VIHF and reuses it (the server still
verifies every one), so the figures are the server's, not signxml's signing time.
Memory per stored document is the growth of the process's current RSS
(``/proc/self/statm``) over the sequential run divided by the documents stored: it
includes the recorded exchange (the whole request, as evidence keeps it) and the stored
bytes. Also times the VIHF verification alone.

    python bench/bench_dmp.py [--count 40] [--size 1048576] [--workers 4]

A benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import base64
import gc
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lxml import etree

from harness.findings import Finding, info
from harness.pki import TestPki
from harness.simulators.dmp import DmpSimulator, Submission
from harness.simulators.dmp.soap import parse_envelope
from harness.simulators.dmp.vihf import VihfVerifier
from tests import dmp_requests as client_lib

ROOT = Path(__file__).resolve().parents[1]
ANS_CDA = ROOT.parent / "shared/data/ans/TestContenuCDA-3-0/ExemplesCDA/DOC_NON_STRUCTURE_CDA-R2-N1.xml"


def current_rss_mb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cda_of_size(size: int) -> bytes:
    """The ANS N1 example (or a minimal CDA) with its base64 body padded so the document is ``size`` bytes."""
    rng = random.Random(7)
    if ANS_CDA.is_file():
        base = ANS_CDA.read_bytes()
    else:
        base = (
            b'<?xml version="1.0" encoding="UTF-8"?><ClinicalDocument xmlns="urn:hl7-org:v3"><component>'
            b'<nonXMLBody><text mediaType="application/pdf" representation="B64"></text></nonXMLBody>'
            b"</component></ClinicalDocument>"
        )
    marker = b"</text>"
    cut = base.rindex(marker)
    missing = max(0, size - len(base))
    padding = base64.b64encode(rng.randbytes(missing * 3 // 4 + 3))[:missing]
    return base[:cut] + padding + base[cut:]


def cda_validator(submission: Submission) -> list[Finding]:
    """Some real work per accepted submission: parse each document with lxml and count its elements."""
    findings = []
    for entry_id, content in submission.documents.items():
        root = etree.fromstring(content, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))
        count = sum(1 for _ in root.iter())
        findings.append(info("bench.cda", f"{entry_id}: {etree.QName(root).localname}, {count} elements"))
    return findings


def run(sim: DmpSimulator, pki: TestPki, cda: bytes, count: int, workers: int) -> tuple[float, list[float]]:
    """Send ``count`` submissions from ``workers`` connections; wall time and per-request latencies."""
    latencies: list[float] = []
    per_worker = [count // workers + (1 if k < count % workers else 0) for k in range(workers)]

    def worker(n: int) -> list[float]:
        http = client_lib.DmpClient(sim.url, pki, timeout=60)
        assertion = http.assertion(client_lib.cx())
        times = []
        try:
            for _ in range(n):
                started = time.perf_counter()
                reply = client_lib.read(http.submit([client_lib.Doc(cda)], assertion=assertion))
                times.append(time.perf_counter() - started)
                if reply.status != "Success":
                    print(f"warning: a submission answered {reply.status} {reply.errors or reply.fault}")
        finally:
            http.close()
        return times

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for times in pool.map(worker, per_worker):
            latencies.extend(times)
    return time.perf_counter() - started, latencies


def vihf_verify_ms(pki: TestPki, rounds: int = 200) -> float:
    envelope = parse_envelope(
        client_lib.soap(
            client_lib.ITI18,
            "https://127.0.0.1/dmp",
            client_lib.find_documents(),
            client_lib.vihf(pki.organisation, client_lib.cx()),
        )
    )
    verifier = VihfVerifier(pki.ca_bundle_path)
    started = time.perf_counter()
    for _ in range(rounds):
        check = verifier.verify(envelope)
        if not check.accepted:
            print(f"warning: the benchmark VIHF was refused: {check.message}")
            break
    return (time.perf_counter() - started) / rounds * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40, help="submissions per run (default 40)")
    parser.add_argument("--size", type=int, default=1024 * 1024, help="document size in bytes (default 1 MiB)")
    parser.add_argument("--workers", type=int, default=4, help="concurrent connections of the second run")
    args = parser.parse_args()

    cda = cda_of_size(args.size)
    with tempfile.TemporaryDirectory(prefix="bench-dmp-") as tmp:
        pki = TestPki.generate(Path(tmp))
        print(f"VIHF verification alone: {vihf_verify_ms(pki):.2f} ms")
        with DmpSimulator(pki, validator=cda_validator) as sim:
            sim.set_patient(client_lib.INS_MATRICULE, client_lib.INS_OID)
            run(sim, pki, cda, 2, 1)  # warm-up: TLS, lxml, signxml imports
            sim.reset()
            sim.set_patient(client_lib.INS_MATRICULE, client_lib.INS_OID)
            gc.collect()
            before = current_rss_mb()
            rows = []
            for workers in (1, max(1, args.workers)):
                wall, latencies = run(sim, pki, cda, args.count, workers)
                if workers == 1:
                    gc.collect()
                    stored = len(sim.entries(client_lib.cx()))
                    growth = current_rss_mb() - before
                    per_doc = growth / stored if stored else float("nan")
                rows.append((workers, wall, latencies))
            validated = sum(1 for s in sim.submissions if s.validator_findings)
            accepted = sum(1 for s in sim.submissions if s.accepted)

    print(f"\nITI-41 over MTOM, documents of {len(cda) / 1e6:.2f} MB, VIHF verified, lxml validator on each")
    header = ("connections", 11), ("submissions", 12), ("seconds", 9), ("per second", 11), ("MB/s", 7)
    header += (("median ms", 10), ("p95 ms", 8))
    print(" ".join(f"{name:>{width}}" for name, width in header))
    for workers, wall, latencies in rows:
        ordered = sorted(latencies)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] if ordered else 0.0
        rate = len(latencies) / wall if wall else 0.0
        print(
            f"{workers:>11} {len(latencies):>12} {wall:>9.2f} {rate:>11.1f} {rate * len(cda) / 1e6:>7.1f} "
            f"{statistics.median(latencies) * 1000 if latencies else 0:>10.1f} {p95 * 1000:>8.1f}"
        )
    print(f"accepted {accepted}, validated {validated} (of {len(rows) * args.count})")
    print(f"RSS growth over the sequential run: {growth:.1f} MB for {stored} stored documents")
    print(f"memory per stored document: {per_doc:.2f} MB (stored bytes + the recorded request, kept whole)")


if __name__ == "__main__":
    main()
