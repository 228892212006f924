"""Compiling ANS schematrons once and running them with SaxonC-HE, in process.

Compiling a volet schematron costs a few hundred milliseconds; running the compiled
stylesheet on a document costs a few. So the engine compiles each schematron once,
keeps the generated XSLT on disk keyed by a hash of every file it was built from
(the schematron, everything it includes, the compile route), and keeps the loaded
Saxon executable in memory for the life of the process. A process has one Saxon
processor; Saxonica does not document the Python API as thread-safe, so calls into
Saxon are serialised by a lock (xdist workers are separate processes and unaffected).

Two compile routes give the XSLT (see :mod:`harness.validators.cda.skeleton` and
:mod:`harness.validators.cda.schematron`): the official ISO skeleton when the rules
folder ships it, our own compiler otherwise. Reports say which one ran.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from harness.findings import Finding, Severity, info
from harness.validators.cda import schematron, skeleton
from harness.validators.cda.rules import RuleSet

CACHE_ENV = "SEGUR_HARNESS_CACHE"
SVRL = "{http://purl.oclc.org/dsdl/svrl}"
SOURCE = "cda.schematron"

_SAXON_LOCK = threading.RLock()
_PROCESSOR: Any = None


class SchematronError(RuntimeError):
    """A schematron could not be compiled or run (the report records it as an error finding)."""


def saxon() -> Any:
    """The process's one PySaxonProcessor, created on first use."""
    global _PROCESSOR
    with _SAXON_LOCK:
        if _PROCESSOR is None:
            from saxonche import PySaxonProcessor  # type: ignore[import-not-found]

            _PROCESSOR = PySaxonProcessor(license=False)
        return _PROCESSOR


def default_cache_dir() -> Path:
    """``$SEGUR_HARNESS_CACHE/cda`` or ``~/.cache/segur-harness/cda``."""
    base = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "segur-harness")
    return Path(base) / "cda"


@dataclass
class CompiledSchematron:
    """A schematron ready to run.

    Attributes:
        source: the top-level schematron file.
        rule_file: its path relative to the rules folder.
        route: ``ans-skeleton`` or ``harness`` (which compiler produced the XSLT).
        key: the cache key (hash of every input file and of the route).
        findings: what compiling noticed (repairs and gaps of the rule files).
        pattern_files: pattern id → the rule file that defines it, for findings.
        compile_s: time spent compiling (0 when the XSLT came from the disk cache).
        from_cache: the XSLT came from the disk cache.
        unrunnable: why the schematron cannot run at all ("" when it can); it is then not compiled.
    """

    source: Path
    rule_file: str
    route: str
    key: str
    executable: Any
    findings: list[Finding] = field(default_factory=list)
    pattern_files: dict[str, str] = field(default_factory=dict)
    compile_s: float = 0.0
    from_cache: bool = False
    unrunnable: str = ""


@dataclass
class SchematronRun:
    """The outcome of running one compiled schematron on one document."""

    svrl: bytes
    findings: list[Finding]
    fired_rules: int
    failed_asserts: int
    successful_reports: int


class SchematronEngine:
    """Compiles and runs the schematrons of one rule set.

    Args:
        rules: the TestContenuCDA folder.
        cache_dir: where compiled XSLT is kept; None for :func:`default_cache_dir`.
        route: ``auto`` (the ANS skeleton when the folder has it, else ours), ``ans-skeleton`` or ``harness``.
    """

    def __init__(self, rules: RuleSet, cache_dir: Path | None = None, route: str = "auto") -> None:
        if route not in ("auto", "ans-skeleton", "harness"):
            raise ValueError(f"unknown compile route {route!r}")
        if route == "ans-skeleton" and not rules.has_skeleton:
            raise SchematronError(f"{rules.root} has no schematrons/moteur/ skeleton to compile with")
        self.rules = rules
        self.cache_dir = cache_dir or default_cache_dir()
        self.route = ("ans-skeleton" if rules.has_skeleton else "harness") if route == "auto" else route
        self._compiled: dict[Path, CompiledSchematron] = {}

    @property
    def description(self) -> str:
        return describe_rules(self.rules, self.route)

    def compiled(self, path: Path) -> CompiledSchematron:
        """The compiled form of ``path``, compiling it on first use; SchematronError if it cannot be."""
        key_path = path.resolve()
        cached = self._compiled.get(key_path)
        if cached is not None:
            return cached
        started = time.perf_counter()
        if self.route == "ans-skeleton":
            prepared = skeleton.prepare(self.rules, key_path)
        else:
            prepared = schematron.prepare(self.rules, key_path)
        key = _cache_key(self.route, prepared.inputs)
        executable: Any = None
        from_cache = False
        unrunnable = ""
        if prepared.unrunnable:
            unrunnable = "it reads missing files with doc(): " + ", ".join(prepared.unrunnable)
        else:
            executable, from_cache = self._executable(prepared, key, key_path)
        said = [
            info("cda.rules.compiler-message", message, source=SOURCE, rule_file=self.rules.relative(key_path))
            for message in prepared.messages
        ]
        compiled = CompiledSchematron(
            source=key_path,
            rule_file=self.rules.relative(key_path),
            route=self.route,
            key=key,
            executable=executable,
            findings=list(prepared.findings) + said,
            pattern_files=dict(prepared.pattern_files),
            compile_s=time.perf_counter() - started,
            from_cache=from_cache,
            unrunnable=unrunnable,
        )
        self._compiled[key_path] = compiled
        return compiled

    def _executable(self, prepared: schematron.Prepared, key: str, source: Path) -> tuple[Any, bool]:
        """The loaded executable, from the disk cache when it holds this key; and whether it did."""
        xslt_file = self.cache_dir / f"{key}.xsl"
        said_file = xslt_file.with_suffix(".messages")
        from_cache = xslt_file.is_file()
        if from_cache:
            xslt = xslt_file.read_bytes()
            if said_file.is_file():
                prepared.messages.extend(said_file.read_text(encoding="utf-8").splitlines())
        else:
            try:
                xslt = prepared.build()
            except Exception as exc:
                raise SchematronError(f"compiling {self.rules.relative(source)} failed: {exc}") from exc
            if prepared.messages:
                self._store(said_file, "\n".join(prepared.messages).encode("utf-8"))
            self._store(xslt_file, xslt)
        return self._load(xslt, source), from_cache

    def _store(self, target: Path, xslt: bytes) -> None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_bytes(xslt)
            temporary.replace(target)
        except OSError:
            pass  # a read-only cache only costs speed

    def _load(self, xslt: bytes, source: Path) -> Any:
        with _SAXON_LOCK:
            processor = saxon()
            compiler = processor.new_xslt30_processor()
            try:
                return compiler.compile_stylesheet(stylesheet_text=xslt.decode("utf-8"))
            except Exception as exc:
                raise SchematronError(
                    f"Saxon refused the XSLT compiled from {self.rules.relative(source)}: {exc}"
                ) from exc

    def parse(self, xml_text: str) -> Any:
        """The document as a Saxon node, parsed once and reused for every schematron."""
        with _SAXON_LOCK:
            try:
                return saxon().parse_xml(xml_text=xml_text)
            except Exception as exc:
                raise SchematronError(f"Saxon could not read the document: {exc}") from exc

    def run(self, compiled: CompiledSchematron, document: Any) -> SchematronRun:
        """Run ``compiled`` on a document parsed by :meth:`parse`."""
        if compiled.executable is None:
            raise SchematronError(f"{compiled.rule_file} cannot run: {compiled.unrunnable}")
        with _SAXON_LOCK:
            try:
                output = compiled.executable.transform_to_string(xdm_node=document)
            except Exception as exc:
                raise SchematronError(f"running {compiled.rule_file} failed: {exc}") from exc
        if output is None:
            raise SchematronError(f"running {compiled.rule_file} produced no SVRL")
        svrl = output.encode("utf-8")
        return read_svrl(svrl, compiled)


def describe_rules(rules: RuleSet, route: str = "auto") -> str:
    """What reports say of the rules: ``TestContenuCDA <version> (<compiler>)``."""
    if route == "auto":
        route = "ans-skeleton" if rules.has_skeleton else "harness"
    compiler = "ANS ISO skeleton" if route == "ans-skeleton" else schematron.COMPILER_VERSION
    return f"TestContenuCDA {rules.version} ({compiler})"


def _cache_key(route: str, inputs: list[Path]) -> str:
    digest = hashlib.sha256(route.encode("utf-8"))
    digest.update((skeleton.ROUTE_VERSION if route == "ans-skeleton" else schematron.COMPILER_VERSION).encode())
    for path in inputs:
        digest.update(b"\0" + str(path).encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:32]


_SEVERITY_BY_ROLE = {
    "warning": Severity.WARNING,
    "warn": Severity.WARNING,
    "info": Severity.INFO,
    "information": Severity.INFO,
    "informational": Severity.INFO,
}


def read_svrl(svrl: bytes, compiled: CompiledSchematron) -> SchematronRun:
    """Findings and counts from SVRL: failed asserts and successful reports are errors unless their role says less.

    ANS's schematrons write both kinds as "Erreur de conformité"; the rule id is the pattern id
    (with the assert's own id when it has one), and the rule file is the file defining the pattern.
    """
    root = etree.fromstring(svrl, etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True))
    findings: list[Finding] = []
    pattern = ""
    fired = failed = reports = 0
    for element in root:
        tag = element.tag
        if tag == f"{SVRL}active-pattern":
            pattern = element.get("id", "")
        elif tag == f"{SVRL}fired-rule":
            fired += 1
        elif tag in (f"{SVRL}failed-assert", f"{SVRL}successful-report"):
            if tag == f"{SVRL}failed-assert":
                failed += 1
            else:
                reports += 1
            text = element.find(f"{SVRL}text")
            message = " ".join("".join(str(t) for t in text.itertext()).split()) if text is not None else ""
            rule = pattern or "schematron"
            if element.get("id"):
                rule = f"{rule}#{element.get('id')}"
            severity = _SEVERITY_BY_ROLE.get((element.get("role") or element.get("flag") or "").lower(), Severity.ERROR)
            findings.append(
                Finding(
                    severity=severity,
                    rule=f"ans:{rule}",
                    message=message,
                    location=element.get("location", ""),
                    source=SOURCE,
                    rule_file=compiled.pattern_files.get(pattern, compiled.rule_file),
                )
            )
    return SchematronRun(svrl, findings, fired, failed, reports)
