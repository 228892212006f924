#!/usr/bin/env python3
"""Benchmark of CDA validation over the ANS example documents.

Measures, in one process with an empty compile cache:

- **cold**: the first pass over the examples, every schematron compiled on first use
  (our compiler, then Saxon loading the XSLT), per document on average;
- **warm**: further passes, compiled rules reused (median of ``--repeat`` passes);
- compile time per schematron (analysis + XSLT generation + Saxon load), slowest first;
- **one-shot**: compiling and running afresh for every document, as one invocation of
  the official batch files per document does (here in process, so it flatters the
  one-shot route: no JVM start), on ``--one-shot`` documents, and the ratio to warm;
- peak RSS (``getrusage``), which only grows.

    python bench/bench_cda.py [--rules ../shared/data/ans/TestContenuCDA-3-0] [--repeat 3] [--one-shot 8]
                              [--route auto|harness|ans-skeleton] [--documents DIR]

A benchmark, not a test: it prints figures and never fails on them. Target: warm
≤ 50 ms per document on average.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.validators.cda import CdaValidator, RuleSet


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pass(validator: CdaValidator, documents: list[tuple[str, bytes]]) -> float:
    started = time.perf_counter()
    for name, data in documents:
        validator.validate(data, name)
    return (time.perf_counter() - started) / len(documents)


def _hostile_inputs() -> list[tuple[str, bytes]]:
    laughs = '<!ENTITY a0 "lol">' + "".join(f'<!ENTITY a{i} "{("&a" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    cda = '<ClinicalDocument xmlns="urn:hl7-org:v3"><title>{}</title></ClinicalDocument>'
    return [
        ("billion laughs", f"<!DOCTYPE d [{laughs}]>{cda.format('&a9;')}".encode()),
        ("external entity", f'<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>{cda.format("&x;")}'.encode()),
        ("external DTD", b'<!DOCTYPE d SYSTEM "http://127.0.0.1:9/x.dtd"><ClinicalDocument xmlns="urn:hl7-org:v3"/>'),
        ("200 MB document", b"<ClinicalDocument><title>" + b"x" * (200 * 1024 * 1024)),
        ("non-XML bytes", bytes(range(256)) * 64),
        ("wrong root element", b"<html><body>not a CDA</body></html>"),
    ]


def main() -> None:
    default_rules = Path(__file__).resolve().parents[2] / "shared" / "data" / "ans" / "TestContenuCDA-3-0"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=Path, default=default_rules)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--one-shot", type=int, default=8, help="documents for the one-shot comparison")
    parser.add_argument("--route", default="auto", help="auto, harness or ans-skeleton")
    parser.add_argument("--documents", type=Path, default=None, help="folder of CDA files; default RULES/ExemplesCDA")
    args = parser.parse_args()

    rules = RuleSet.open(args.rules)
    folder = args.documents or rules.root / "ExemplesCDA"
    documents = [(p.name, p.read_bytes()) for p in sorted(folder.glob("*.xml"))]
    print(f"rules {rules.root} ({rules.version}), {len(documents)} documents, route {args.route}")
    print(f"RSS at start: {_rss_mb():.0f} MB")

    with tempfile.TemporaryDirectory() as cache:
        validator = CdaValidator(rules, cache_dir=Path(cache), route=args.route)
        cold = _pass(validator, documents)
        assert validator.engine is not None
        compiled = sorted(validator.engine._compiled.values(), key=lambda c: -c.compile_s)
        warm_runs = [_pass(validator, documents) for _ in range(args.repeat)]
        warm = statistics.median(warm_runs)
        print(f"cold (compile included): {cold * 1000:.1f} ms per document")
        print(f"warm (compiled rules reused): {warm * 1000:.1f} ms per document (median of {args.repeat})")
        total_compile = sum(c.compile_s for c in compiled)
        print(f"{len(compiled)} schematrons compiled in {total_compile:.2f} s; slowest:")
        for item in compiled[:5]:
            print(f"  {item.rule_file}: {item.compile_s * 1000:.0f} ms")
        print(f"  median {statistics.median(c.compile_s for c in compiled) * 1000:.0f} ms")
        print(f"peak RSS after warm passes: {_rss_mb():.0f} MB")

        hostile = _hostile_inputs()
        print(f"hostile and broken inputs (peak RSS with them built, the 200 MB one included: {_rss_mb():.0f} MB):")
        for label, data in hostile:
            started = time.perf_counter()
            report = validator.validate(data, label)
            rules_hit = sorted({f.rule for f in report.errors})
            print(f"  {label}: {(time.perf_counter() - started) * 1000:.1f} ms, {', '.join(rules_hit)}")
        print(f"  peak RSS after validating them: {_rss_mb():.0f} MB")
        del hostile

    sample = documents[: args.one_shot]
    started = time.perf_counter()
    for name, data in sample:
        with tempfile.TemporaryDirectory() as fresh:
            CdaValidator(rules, cache_dir=Path(fresh), route=args.route).validate(data, name)
    one_shot = (time.perf_counter() - started) / len(sample)
    print(f"one-shot (compile and run afresh per document): {one_shot * 1000:.0f} ms per document on {len(sample)}")
    print(f"ratio one-shot / warm: {one_shot / warm:.0f}x")
    print(f"peak RSS: {_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
