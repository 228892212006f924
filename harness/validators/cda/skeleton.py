"""The official compile route: the ISO skeleton ANS ships under ``schematrons/moteur/``.

When the configured TestContenuCDA folder is a full release, ANS's own three
stylesheets compile the schematron exactly as ``compilverif.bat`` does
(``iso_dsdl_include.xsl`` → ``iso_abstract_expand.xsl`` → ``iso_svrl_for_xslt2.xsl``),
run in process with SaxonC instead of one JVM per step. Two things are added, both
reported: the top-level includes are pointed at the files Windows would open (the
tree's includes differ in case on Linux, and missing ones are dropped, as Saxon 9
did), and the generated stylesheet gets the value-set guard of our own route (base
URI of the schematron's folder; value sets differing in case or absent are read as
the official pipeline read them).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from lxml import etree

from harness.validators.cda import schematron
from harness.validators.cda.rules import SKELETON_FILES, RuleSet

ROUTE_VERSION = "ans-skeleton 1"

_RAW_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def skeleton_files(rules: RuleSet) -> list[Path]:
    """The stylesheets of the route, the ones the three steps import included."""
    moteur = rules.schematrons / "moteur"
    files = [moteur / name for name in SKELETON_FILES]
    imported = moteur / "iso_schematron_skeleton_for_saxon.xsl"
    if imported.is_file():
        files.append(imported)
    return files


def skeleton_hash(rules: RuleSet) -> str:
    digest = hashlib.sha256()
    for path in skeleton_files(rules):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def prepare(rules: RuleSet, source: Path) -> schematron.Prepared:
    """Analyse ``source`` as our route does (for findings), and compile it with the skeleton on demand."""
    _expanded, compilation, repairs = schematron.analyse(rules, source)
    inputs = list(compilation.files) + skeleton_files(rules)

    messages: list[str] = []

    def build() -> bytes:
        return _compile_with_skeleton(rules, source, repairs, messages)

    return schematron.Prepared(
        inputs=inputs,
        findings=compilation.findings,
        pattern_files=compilation.pattern_files,
        repairs=repairs,
        build=build,
        unrunnable=compilation.unrunnable,
        messages=messages,
    )


def _compile_with_skeleton(
    rules: RuleSet, source: Path, repairs: schematron.ValueSetRepairs, messages: list[str]
) -> bytes:
    """The three steps; what the skeleton says (``xsl:message``) goes to ``messages``, not to stderr."""
    from harness.validators.cda.engine import _SAXON_LOCK, saxon

    prepared = _point_includes(rules, source)
    moteur = rules.schematrons / "moteur"
    text = prepared
    with _SAXON_LOCK:
        processor = saxon()
        for name in SKELETON_FILES:
            compiler = processor.new_xslt30_processor()
            step = compiler.compile_stylesheet(stylesheet_file=str(moteur / name))
            step.set_save_xsl_message(True, None)
            node = processor.parse_xml(xml_text=text)
            result = step.transform_to_string(xdm_node=node)
            said = step.get_xsl_messages()
            if said is not None:
                messages.extend(f"{name}: {' '.join(str(m).split())}" for m in said)
            if not result:
                raise RuntimeError(f"{name} produced nothing")
            text = result
    sheet = etree.fromstring(text.encode("utf-8"), _RAW_PARSER)
    schematron.guard_stylesheet(sheet, source.parent, repairs)
    return etree.tostring(sheet, xml_declaration=True, encoding="UTF-8")


def _point_includes(rules: RuleSet, source: Path) -> str:
    """The top-level schematron with each include href replaced by the absolute URI of the file Windows would open."""
    root = etree.parse(str(source), _RAW_PARSER).getroot()
    for include in list(root.iter(f"{{{schematron.ISO}}}include")):
        href = include.get("href", "")
        path_part, _, fragment = href.partition("#")
        resolved = rules.resolve(source.parent, path_part) if path_part else None
        if resolved is None:
            continue
        if resolved.path is None:
            parent = include.getparent()
            if parent is not None:
                parent.remove(include)
            continue
        include.set("href", resolved.path.resolve().as_uri() + (f"#{fragment}" if fragment else ""))
    return etree.tostring(root, encoding="unicode")
