"""Validating one CDA document the way ANS does, stage by stage, in process.

:class:`CdaValidator` holds what is worth keeping between documents (the compiled
schema, the compiled schematrons, the loaded value sets) and turns bytes into a
:class:`~harness.validators.cda.report.CdaReport`. Without a rules folder it still
parses safely and applies the harness's own header and PDF rules, and says in the
report that the ANS stages were skipped. Nothing a document contains makes it raise:
every failure becomes a finding in the stage where it happened.
"""

from __future__ import annotations

import base64
import binascii
import time
from pathlib import Path

from lxml import etree

from harness import __version__
from harness.findings import Finding, error, info
from harness.validators import pdf
from harness.validators.cda import header
from harness.validators.cda.engine import SchematronEngine, SchematronError
from harness.validators.cda.parsing import DEFAULT_MAX_BYTES, HL7, ParsedCda, parse_cda
from harness.validators.cda.report import CdaReport, Stage, StageReport, VoletChoice
from harness.validators.cda.rules import CDA_SCHEMA, RuleSet
from harness.validators.cda.valuesets import ValueSets
from harness.validators.cda.volets import choose_volet, forced_volet, index_volets
from harness.validators.cda.xsd import SchemaUnavailable, load_schema, validate_against_schema

HARNESS_RULES = f"harness {__version__}"
MAX_PDF_BYTES = 40 * 1024 * 1024


class CdaValidator:
    """Validates CDA documents against one rule set (or none).

    Args:
        rules: the TestContenuCDA folder; None to apply only the harness's own rules.
        cache_dir: where compiled schematrons are kept (see :mod:`harness.validators.cda.engine`).
        route: ``auto``, ``ans-skeleton`` or ``harness``: which compiler turns schematrons into XSLT.
        max_bytes: documents above this size are refused unread.
        profiles: also run the profile schematrons (IHE, modèles de contenus, modèles ANS).
    """

    def __init__(
        self,
        rules: RuleSet | None = None,
        *,
        cache_dir: Path | None = None,
        route: str = "auto",
        max_bytes: int = DEFAULT_MAX_BYTES,
        profiles: bool = True,
    ) -> None:
        self.rules = rules
        self.max_bytes = max_bytes
        self.profiles = profiles
        self.engine = SchematronEngine(rules, cache_dir, route) if rules is not None else None
        self._volets = index_volets(rules) if rules is not None else []
        self._value_sets: ValueSets | None = None

    @property
    def ruleset(self) -> str:
        """Which rules judge: the ANS folder version and compiler, or the harness's own only."""
        return self.engine.description if self.engine is not None else ""

    @property
    def value_sets(self) -> ValueSets | None:
        if self._value_sets is None and self.rules is not None and (self.rules.root / "jeuxDeValeurs").is_dir():
            self._value_sets = ValueSets.load(self.rules.root / "jeuxDeValeurs")
        return self._value_sets

    # -- the pipeline -------------------------------------------------------------------------------
    def validate(
        self, data: bytes, subject: str = "document", *, volet: str | None = None, ins_required: bool = True
    ) -> CdaReport:
        """The report for one document. ``volet`` forces a volet schematron (file name)."""
        started = time.perf_counter()
        report = CdaReport(subject=subject, ruleset=self.ruleset)
        parse_stage = StageReport(Stage.PARSE, "XML", version=HARNESS_RULES)
        parsed, parse_stage.findings = parse_cda(data, self.max_bytes)
        parse_stage.duration_s = time.perf_counter() - started
        report.stages.append(parse_stage)
        if parsed is None:
            for stage in (Stage.XSD, Stage.SCHEMATRON, Stage.HEADER):
                report.stages.append(StageReport(stage, stage.value, skipped="the document could not be read safely"))
            report.duration_s = time.perf_counter() - started
            return report
        report.stages.append(self._xsd(parsed))
        report.volet, choice_findings = self._choose(parsed, volet)
        parse_stage.findings.extend(choice_findings)
        report.stages.extend(self._schematrons(parsed, report.volet))
        report.stages.append(self._header(parsed, ins_required))
        if report.volet.level1:
            report.stages.append(self._embedded_pdf(parsed))
        report.duration_s = time.perf_counter() - started
        return report

    def _choose(self, parsed: ParsedCda, volet: str | None) -> tuple[VoletChoice, list[Finding]]:
        if volet and self.rules is not None:
            try:
                return forced_volet(self.rules, volet), []
            except FileNotFoundError as exc:
                return VoletChoice("", "", str(exc)), [error("cda.volet.unknown", str(exc), source="cda.volet")]
        return choose_volet(parsed.document, self.rules, self._volets)

    def _xsd(self, parsed: ParsedCda) -> StageReport:
        stage = StageReport(Stage.XSD, "CDA_extended.xsd", rule_file=CDA_SCHEMA)
        if self.rules is None or self.rules.schema_path is None:
            stage.skipped = "no rules folder with infrastructure/cda/CDA_extended.xsd is configured"
            return stage
        stage.version = self.rules.version
        started = time.perf_counter()
        try:
            schema = load_schema(self.rules.schema_path)
        except SchemaUnavailable as exc:
            stage.findings.append(error("cda.xsd.unavailable", str(exc), source="cda.xsd", rule_file=CDA_SCHEMA))
        else:
            stage.findings = validate_against_schema(schema, parsed.document, CDA_SCHEMA)
        stage.duration_s = time.perf_counter() - started
        return stage

    def _schematrons(self, parsed: ParsedCda, volet: VoletChoice) -> list[StageReport]:
        if self.engine is None or self.rules is None:
            return [StageReport(Stage.SCHEMATRON, "ANS schematrons", skipped="no ANS rules folder is configured")]
        paths: list[Path] = []
        if volet.schematron:
            paths.append(self.rules.root / volet.schematron)
        if self.profiles:
            paths.extend(self.rules.profile_schematrons())
            minimale = self.rules.structuration_minimale()
            if volet.level1 and minimale is not None:
                paths.append(minimale)
        stages: list[StageReport] = []
        try:
            started = time.perf_counter()
            node = self.engine.parse(etree.tostring(parsed.tree, encoding="unicode"))
            parse_s = time.perf_counter() - started
        except SchematronError as exc:
            stage = StageReport(Stage.SCHEMATRON, "ANS schematrons", version=self.rules.version)
            stage.findings.append(error("cda.schematron.unreadable", str(exc), source="cda.schematron"))
            return [stage]
        for index, path in enumerate(paths):
            stages.append(self._run_one(path, node, parse_s if index == 0 else 0.0))
        if volet.level1 and self.profiles and self.rules.structuration_minimale() is None:
            note = StageReport(
                Stage.SCHEMATRON,
                "structurationMinimale",
                version=self.rules.version,
                skipped="the rules folder has no profils/structurationMinimale; the harness's own header "
                "and PDF rules judge the level-1 structure",
            )
            stages.append(note)
        return stages

    def _run_one(self, path: Path, node: object, extra_s: float) -> StageReport:
        assert self.engine is not None and self.rules is not None
        name = self.rules.relative(path).removeprefix("schematrons/").removesuffix(".sch")
        stage = StageReport(Stage.SCHEMATRON, name, rule_file=self.rules.relative(path), version=self.rules.version)
        started = time.perf_counter()
        try:
            compiled = self.engine.compiled(path)
            stage.findings.extend(compiled.findings)
            if compiled.unrunnable:
                stage.skipped = f"not run: {compiled.unrunnable}"
                stage.duration_s = time.perf_counter() - started
                return stage
            run = self.engine.run(compiled, node)
        except SchematronError as exc:
            stage.findings.append(
                error("cda.schematron.failed", str(exc), source="cda.schematron", rule_file=stage.rule_file)
            )
        else:
            stage.findings.extend(run.findings)
            stage.fired_rules = run.fired_rules
            stage.failed_asserts = run.failed_asserts
            stage.successful_reports = run.successful_reports
            stage.svrl = run.svrl
        stage.duration_s = time.perf_counter() - started + extra_s
        return stage

    def _header(self, parsed: ParsedCda, ins_required: bool) -> StageReport:
        stage = StageReport(Stage.HEADER, "CI-SIS header (harness rules)", version=HARNESS_RULES)
        started = time.perf_counter()
        stage.findings = header.check_header(parsed.document, self.value_sets, ins_required=ins_required)
        stage.duration_s = time.perf_counter() - started
        return stage

    def _embedded_pdf(self, parsed: ParsedCda) -> StageReport:
        stage = StageReport(Stage.PDF, "embedded PDF (nonXMLBody)", version=HARNESS_RULES)
        started = time.perf_counter()
        stage.findings = check_embedded_pdf(parsed.document)
        stage.duration_s = time.perf_counter() - started
        return stage


def embedded_pdf(document: etree._Element) -> tuple[bytes | None, list[Finding]]:
    """The PDF carried by a level-1 document's ``nonXMLBody/text``, or the findings saying why not."""
    location = "/ClinicalDocument/component/nonXMLBody/text"
    text = document.find(f"{{{HL7}}}component/{{{HL7}}}nonXMLBody/{{{HL7}}}text")
    if text is None:
        return None, [error("cda.n1.text", "the nonXMLBody has no text element", location=location, source="cda.n1")]
    findings: list[Finding] = []
    if text.get("mediaType") != "application/pdf":
        findings.append(
            error(
                "cda.n1.media-type",
                f"mediaType is {text.get('mediaType')!r}, not 'application/pdf'",
                location,
                "cda.n1",
            )
        )
    if text.get("representation") != "B64":
        findings.append(
            error(
                "cda.n1.representation",
                f"representation is {text.get('representation')!r}, not 'B64'",
                location,
                "cda.n1",
            )
        )
    payload = "".join((text.text or "").split())
    if len(payload) > MAX_PDF_BYTES * 4 // 3 + 4:
        findings.append(error("cda.n1.too-large", "the embedded PDF is above the size limit", location, "cda.n1"))
        return None, findings
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        findings.append(error("cda.n1.base64", f"the embedded PDF is not valid base64: {exc}", location, "cda.n1"))
        return None, findings
    if not data:
        findings.append(error("cda.n1.empty", "the nonXMLBody text is empty", location, "cda.n1"))
        return None, findings
    return data, findings


def check_embedded_pdf(document: etree._Element) -> list[Finding]:
    """The base64 PDF of a level-1 document, decoded and checked as PDF/A-1."""
    data, findings = embedded_pdf(document)
    if data is None:
        return findings
    findings.extend(pdf.check_pdfa(data, part=1))
    if not [f for f in findings if f.severity.value == "error"]:
        findings.append(
            info("cda.n1.pdf", f"the embedded PDF ({len(data):,} bytes) was checked as PDF/A-1", source="cda.n1")
        )
    return findings
