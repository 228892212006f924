"""The CDA R2 schema with ANS extensions (``infrastructure/cda/CDA_extended.xsd``).

ANS validates every document against this schema before any schematron. The schema
is compiled once per rules folder (about 40 ms) and reused for every document.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, cast

from lxml import etree

from harness.findings import Finding, error

SOURCE = "cda.xsd"
MAX_FINDINGS = 200


class SchemaUnavailable(RuntimeError):
    """The schema files are missing or do not compile."""


@cache
def load_schema(path: Path) -> etree.XMLSchema:
    """The compiled schema at ``path`` (cached for the process)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        return etree.XMLSchema(etree.parse(str(path), parser))
    except (OSError, etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
        raise SchemaUnavailable(f"{path} cannot be used: {exc}") from exc


def validate_against_schema(schema: etree.XMLSchema, document: etree._Element, rule_file: str) -> list[Finding]:
    """One error finding per schema violation (the first MAX_FINDINGS), located by XPath and line."""
    if schema.validate(document):
        return []
    findings = []
    entries: list[Any] = list(cast(Iterable[Any], schema.error_log))
    for entry in entries[:MAX_FINDINGS]:
        findings.append(
            error("cda.xsd", f"line {entry.line}: {entry.message}", location=entry.path or "", source=SOURCE)
        )
    remaining = len(entries) - MAX_FINDINGS
    if remaining > 0:
        findings.append(error("cda.xsd", f"{remaining} further schema errors not listed", source=SOURCE))
    return [_with_file(f, rule_file) for f in findings]


def _with_file(finding: Finding, rule_file: str) -> Finding:
    return Finding(finding.severity, finding.rule, finding.message, finding.location, finding.source, rule_file)
