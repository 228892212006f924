#!/usr/bin/env python3
"""Benchmark of the MSSanté operator simulator: messages per second with validation on, XDM validation time.

Starts a :class:`~harness.simulators.mssante.MssanteSimulator` on loopback with its default
validator (MSSanté headers and subject, and the whole ``IHE_XDM.ZIP``: zip safety, layout,
METADATA.XML through the XDS validator, PDF/A checks of the PDFs), then submits ``--count``
messages carrying a ``--size``-byte XDM with the standard library's smtplib (STARTTLS,
AUTH PLAIN, the organisation client certificate), first from one connection at a time,
then from ``--workers`` concurrent ones. Each message's acceptance (SMTP ``250`` after
DATA) includes its validation, so the figures are end to end. Also times the XDM
validation alone and the message-header validation alone.

    python bench/bench_mssante.py [--count 30] [--size 1048576] [--workers 4]

A benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import smtplib
import ssl
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from email.policy import SMTP
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.pki import TestPki
from harness.simulators.mssante import ALLOWED_TLS12_SUITES, MssanteSimulator
from harness.validators import mss, xdm
from tests.mss_samples import ANS_N1, CORRESPONDENT, PASSWORD, SUT_BAL, message_with_xdm, xdm_members, zipped


def current_rss_mb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def package_of_size(size: int) -> bytes:
    """A conforming XDM (the ANS N1 example) padded with an incompressible extra PDF page stream to ``size`` bytes."""
    members = xdm_members()
    base = len(zipped(members))
    rng = random.Random(11)
    members["IHE_XDM/SUBSET01/ANNEXE.BIN"] = rng.randbytes(max(0, size - base))
    return zipped(members)


def send(simulator: MssanteSimulator, context: ssl.SSLContext, raw: bytes) -> float:
    started = time.perf_counter()
    with smtplib.SMTP(*simulator.smtp_address, timeout=60) as client:
        client.starttls(context=context)
        client.login(SUT_BAL, PASSWORD)
        client.sendmail(SUT_BAL, [CORRESPONDENT], raw)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--size", type=int, default=1024 * 1024)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    if not ANS_N1.is_file():
        sys.exit(f"the ANS N1 example is needed: {ANS_N1}")
    package = package_of_size(args.size)
    raw = message_with_xdm(package).as_bytes(policy=SMTP)
    with tempfile.TemporaryDirectory() as folder:
        pki = TestPki.generate(Path(folder))
        context = ssl.create_default_context(cafile=str(pki.ca_bundle_path))
        context.load_cert_chain(str(pki.organisation.chain_path), str(pki.organisation.key_path))
        context.set_ciphers(":".join(ALLOWED_TLS12_SUITES))
        with MssanteSimulator(pki, max_message=64 * 1024 * 1024) as simulator:
            send(simulator, context, raw)  # warm-up: imports, first handshake
            simulator.reset()
            rss_before = current_rss_mb()
            started = time.perf_counter()
            sequential = [send(simulator, context, raw) for _ in range(args.count)]
            elapsed = time.perf_counter() - started
            rss_growth = current_rss_mb() - rss_before
            findings = {f.rule for m in simulator.messages for f in m.findings if f.severity.value == "error"}
            simulator.reset()
            started = time.perf_counter()
            with ThreadPoolExecutor(args.workers) as pool:
                concurrent = list(pool.map(lambda _: send(simulator, context, raw), range(args.count)))
            concurrent_elapsed = time.perf_counter() - started
    xdm_times, header_times = [], []
    for _ in range(10):
        t0 = time.perf_counter()
        xdm.check_xdm(package)
        xdm_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        mss.check_message(raw)
        header_times.append(time.perf_counter() - t0)
    print(
        f"message {len(raw) / 1e6:.2f} MB with a {len(package) / 1e6:.2f} MB IHE_XDM.ZIP; "
        f"errors found: {findings or 'none'}"
    )
    print(
        f"1 connection: {args.count / elapsed:.1f} messages/s "
        f"(median {statistics.median(sequential) * 1000:.0f} ms per session: STARTTLS, AUTH, DATA, validation)"
    )
    p95 = sorted(concurrent)[int(0.95 * (len(concurrent) - 1))]
    print(f"{args.workers} connections: {args.count / concurrent_elapsed:.1f} messages/s (p95 {p95 * 1000:.0f} ms)")
    print(f"XDM validation alone: median {statistics.median(xdm_times) * 1000:.1f} ms per message")
    print(f"header validation alone: median {statistics.median(header_times) * 1000:.1f} ms per message")
    print(f"memory: {rss_growth / args.count:.2f} MB per accepted message (kept whole, stored in the BAL and recorded)")


if __name__ == "__main__":
    main()
