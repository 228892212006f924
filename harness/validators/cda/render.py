"""Reports of CDA validation in the forms people ask for: JSON, SVRL, HTML.

The CLI table is drawn in :mod:`harness.cli`; these functions turn a list of
:class:`~harness.validators.cda.report.CdaReport` into bytes for a file, a CI job
or the evidence pack. SVRL is what ANS's own tools read; the other two say more
(every stage, the harness's own rules, the volet choice, the rule-set version).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

from lxml import etree

from harness import __version__
from harness.findings import Severity
from harness.validators.cda.report import CdaReport, Stage, StageReport

SVRL = "http://purl.oclc.org/dsdl/svrl"
HARNESS = "urn:segur-harness:validation"


def stage_cell(report: CdaReport, stage: Stage, *, profiles: bool | None = None) -> str:
    """One word for a stage (or, for schematrons, the volet or the profiles): ok, FAIL, warn, skipped, -."""
    stages = [s for s in report.stages if s.stage is stage]
    if stage is Stage.SCHEMATRON and profiles is not None:
        volet = report.volet.schematron if report.volet else ""
        stages = [s for s in stages if (s.rule_file != volet) is profiles and s.rule_file]
    if not stages:
        return "-"
    if all(s.skipped for s in stages):
        return "skipped"
    if any(s.errors for s in stages):
        return "FAIL"
    if any(f.severity is Severity.WARNING for s in stages for f in s.findings):
        return "warn"
    return "ok"


def to_json(reports: Sequence[CdaReport], ruleset: str) -> bytes:
    """Every report, whole, with a summary line; stable keys for CI parsers."""
    data = {
        "tool": f"segur-harness {__version__}",
        "ruleset": ruleset,
        "summary": {
            "documents": len(reports),
            "passed": sum(1 for r in reports if r.ok),
            "failed": sum(1 for r in reports if not r.ok),
        },
        "documents": [r.to_dict() for r in reports],
    }
    return json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8")


def to_svrl(reports: Sequence[CdaReport]) -> bytes:
    """One XML document holding, per document, the SVRL of each schematron run (as the schematron wrote it)."""
    root = etree.Element(f"{{{HARNESS}}}validation", nsmap={"h": HARNESS, "svrl": SVRL})
    root.set("tool", f"segur-harness {__version__}")
    for report in reports:
        document = etree.SubElement(root, f"{{{HARNESS}}}document", subject=report.subject, ok=str(report.ok).lower())
        document.set("ruleset", report.ruleset)
        for stage in report.stages:
            if stage.stage is not Stage.SCHEMATRON:
                _non_svrl_stage(document, stage)
                continue
            holder = etree.SubElement(document, f"{{{HARNESS}}}schematron", name=stage.name, file=stage.rule_file)
            holder.set("version", stage.version)
            if stage.svrl:
                holder.append(etree.fromstring(stage.svrl, etree.XMLParser(resolve_entities=False, huge_tree=True)))
            for finding in stage.findings:
                if finding.source != "cda.schematron" or finding.rule.startswith("cda."):
                    _finding(holder, finding.severity.value, finding.rule, finding.message, finding.location)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _non_svrl_stage(parent: etree._Element, stage: StageReport) -> None:
    holder = etree.SubElement(parent, f"{{{HARNESS}}}stage", name=stage.name, stage=stage.stage.value)
    if stage.skipped:
        holder.set("skipped", stage.skipped)
    for finding in stage.findings:
        _finding(holder, finding.severity.value, finding.rule, finding.message, finding.location)


def _finding(parent: etree._Element, severity: str, rule: str, message: str, location: str) -> None:
    element = etree.SubElement(parent, f"{{{HARNESS}}}finding", severity=severity, rule=rule)
    if location:
        element.set("location", location)
    element.text = message


def to_html(reports: Sequence[CdaReport], ruleset: str) -> bytes:
    """A self-contained page: one summary row per document, then each document's findings by stage."""
    rows = []
    for index, report in enumerate(reports):
        volet = report.volet.schematron.rsplit("/", 1)[-1] if report.volet and report.volet.schematron else "—"
        cells = [
            stage_cell(report, Stage.XSD),
            stage_cell(report, Stage.SCHEMATRON, profiles=False),
            stage_cell(report, Stage.SCHEMATRON, profiles=True),
            stage_cell(report, Stage.HEADER),
            stage_cell(report, Stage.PDF),
        ]
        verdict = "pass" if report.ok else "FAIL"
        rows.append(
            f'<tr class="{verdict.lower()}"><td><a href="#d{index}">{html.escape(report.subject)}</a></td>'
            f"<td>{html.escape(volet)}</td>" + "".join(f"<td>{c}</td>" for c in cells) + f"<td>{verdict}</td></tr>"
        )
    details = [_html_document(i, r) for i, r in enumerate(reports)]
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>CDA validation</title>
<style>
body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .5em}}
tr.fail td:last-child{{color:#b00;font-weight:bold}} .error{{color:#b00}} .warning{{color:#a60}} .info{{color:#555}}
code{{font-size:90%}}
</style></head><body>
<h1>CDA validation</h1>
<p>Rules: {html.escape(ruleset or "harness rules only (no ANS rules folder)")} · tool segur-harness {__version__}</p>
<table><tr><th>document</th><th>volet</th><th>XSD</th><th>volet schematron</th><th>profiles</th>
<th>header (harness)</th><th>PDF</th><th>verdict</th></tr>
{"".join(rows)}
</table>
{"".join(details)}
</body></html>
"""
    return page.encode("utf-8")


def _html_document(index: int, report: CdaReport) -> str:
    parts = [f'<h2 id="d{index}">{html.escape(report.subject)}</h2>']
    if report.volet:
        parts.append(
            f"<p>Volet: {html.escape(report.volet.schematron or 'none')} — {html.escape(report.volet.reason)}</p>"
        )
    for stage in report.stages:
        label = f"{stage.stage.value}: {stage.name}"
        if stage.rule_file:
            label += f" ({stage.rule_file}, {stage.version})"
        parts.append(f"<h3>{html.escape(label)}</h3>")
        if stage.skipped:
            parts.append(f"<p>skipped: {html.escape(stage.skipped)}</p>")
            continue
        if stage.stage is Stage.SCHEMATRON:
            parts.append(
                f"<p>{stage.fired_rules} rules fired, {stage.failed_asserts} failed asserts, "
                f"{stage.successful_reports} successful reports</p>"
            )
        if not stage.findings:
            parts.append("<p>no findings</p>")
            continue
        items = "".join(
            f'<li class="{f.severity.value}">{f.severity.value} <code>{html.escape(f.rule)}</code> '
            f"{html.escape(f.message)}"
            + (f" <code>{html.escape(f.location)}</code>" if f.location else "")
            + (f" <small>({html.escape(f.rule_file)})</small>" if f.rule_file else "")
            + "</li>"
            for f in stage.findings
        )
        parts.append(f"<ul>{items}</ul>")
    return "\n".join(parts)
