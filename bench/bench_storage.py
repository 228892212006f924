#!/usr/bin/env python3
"""Benchmark of the raw-storage scan (INS/va1.42): time to judge 1 GB of a SUT's storage after a store.

Builds a synthetic dump of ``--size`` bytes (``--items`` files of random bytes, as encrypted
copies look) plus one new copy, and a 1 MB synthetic identity document with a marker, then
times :func:`harness.validators.storage.scan_store` (plaintext and marker search over every
byte, key-material patterns, signature and entropy of the new item) and
:func:`~harness.validators.storage.still_present`.

    python bench/bench_storage.py [--size 1073741824] [--items 64]

A benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.validators import storage
from harness.validators.storage import StoredItem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024 * 1024 * 1024)
    parser.add_argument("--items", type=int, default=64)
    args = parser.parse_args()
    marker = b"MARQUEUR-TITRE-BENCH"
    document = b"%PDF-1.4\n" + marker + os.urandom(1024 * 1024)
    piece = args.size // args.items
    before = [StoredItem(f"id-documents/{n:04d}.bin", os.urandom(piece)) for n in range(args.items)]
    after = [*before, StoredItem("id-documents/new.bin", os.urandom(len(document) + 28))]
    started = time.perf_counter()
    scan = storage.scan_store(before, after, document, [marker], max_bytes=2 * args.size)
    scan_s = time.perf_counter() - started
    started = time.perf_counter()
    storage.still_present(after, scan.added)
    present_s = time.perf_counter() - started
    errors = [f.rule for f in scan.findings if f.severity.value == "error"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"dump {sum(len(i.content) for i in after) / 1e9:.2f} GB in {len(after)} items; document 1 MB")
    print(f"scan_store: {scan_s:.1f} s ({sum(len(i.content) for i in after) / scan_s / 1e9:.2f} GB/s); errors {errors}")
    print(f"still_present: {present_s:.1f} s")
    print(f"peak RSS {peak:.0f} MB (the dump is held in memory, as the adapter hands it over)")


if __name__ == "__main__":
    main()
