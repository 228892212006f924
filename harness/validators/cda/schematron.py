"""Our own ISO Schematron → XSLT 2 compiler, for rule folders that ship no skeleton.

ANS compiles its schematrons with the ISO skeleton (Rick Jelliffe's stylesheets, as
customised by ANS in ``schematrons/moteur/``) in three steps: resolve includes, expand
abstract patterns, generate an XSLT 2 stylesheet that writes SVRL. Copies of the ANS
tree without that code (ours has none) still need the same verdict, so this module
reproduces the semantics of the three steps in Python with lxml, and emits an XSLT
that Saxon runs. What "the same semantics" means here, step by step:

1. **Includes** (:func:`resolve_includes`): an ``include`` is replaced by the root
   element of the named file (or the element whose ``@id``/``@xml:id`` is the
   fragment), recursively. Paths are resolved as Windows does; a file found only by
   ignoring case, or not found at all, is a warning — and a missing file contributes
   nothing, exactly as ANS's Saxon 9 behaved.
2. **Abstract patterns** (:func:`expand_abstract_patterns`): ``pattern[@is-a]`` becomes
   a copy of the abstract pattern's content with each ``$param`` replaced, parameter by
   parameter in document order, by plain substring replacement, in ``test``,
   ``context`` and ``select`` attributes and in text — not in ``let/@value``.
3. **XSLT generation** (:func:`generate_xslt`): only the patterns active in the default
   phase; one mode per pattern; one template per rule, earlier rules winning
   (priority 1000 + number of following siblings); lets as variables in document order
   (schema lets as parameters, pattern lets as global variables); asserts as
   ``choose``, reports as ``if``; ``value-of`` and ``name`` with no padding (the
   skeleton means to pad them with a space, but its ``<axsl:text> </axsl:text>`` is
   whitespace-only and so stripped when the skeleton itself is compiled); the
   ANS SVRL flavour (``failed-assert`` without ``@test``, location in the
   "human" notation ``/a/b[2]/c`` that shows an index only after a same-named
   preceding sibling).

Value-set documents are read with ``document()`` relative to the compiled stylesheet,
which must therefore carry the base URI of the schematron's own folder; references to
value sets that differ in case or are absent are repaired by :func:`value_set_repairs`
(and reported), since SaxonC, unlike Saxon 9, stops on a missing document.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from harness.findings import Finding, Severity, warning
from harness.validators.cda.rules import RuleSet

COMPILER_VERSION = "harness-schematron 2"
"""Changes whenever the generated XSLT changes, so cached compilations are not reused."""

ISO = "http://purl.oclc.org/dsdl/schematron"
XSL = "http://www.w3.org/1999/XSL/Transform"
SVRL = "http://purl.oclc.org/dsdl/svrl"
HARNESS = "urn:segur-harness:schematron"
GUARD = f"Q{{{HARNESS}}}document"
TEMPLATE_ID_KEY = f"Q{{{HARNESS}}}templateId"
HL7 = "urn:hl7-org:v3"
"""The guarded document() function, as an EQName so no prefix needs declaring."""

FIXED_NAMESPACES = {
    "xsl": XSL,
    "svrl": SVRL,
    "xs": "http://www.w3.org/2001/XMLSchema",
    "xsd": "http://www.w3.org/2001/XMLSchema",
    "saxon": "http://saxon.sf.net/",
    "schold": "http://www.ascc.net/xml/schematron",
    "iso": ISO,
    "xhtml": "http://www.w3.org/1999/xhtml",
}
"""Prefixes in scope in a skeleton-generated stylesheet."""

SOURCE = "cda.schematron"

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True, remove_pis=True, huge_tree=False
)


def _iso(name: str) -> str:
    return f"{{{ISO}}}{name}"


def _x(name: str) -> str:
    return f"{{{XSL}}}{name}"


def _svrl(name: str) -> str:
    return f"{{{SVRL}}}{name}"


@dataclass
class Compilation:
    """What compiling one schematron read and noticed.

    Attributes:
        source: the top-level schematron.
        files: every rule file read (top level first), for the cache key and the report.
        findings: repairs and gaps (warnings), each naming its file.
    """

    source: Path
    files: list[Path] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    pattern_files: dict[str, str] = field(default_factory=dict)
    unrunnable: list[str] = field(default_factory=list)


# -- step 1: includes ---------------------------------------------------------------------------
def resolve_includes(rules: RuleSet, schematron: Path, compilation: Compilation) -> etree._Element:
    """The schema with every ``include`` replaced by what it names (step 1)."""
    root = etree.parse(str(schematron), _PARSER).getroot()
    compilation.files.append(schematron)
    _expand_includes(rules, root, schematron, compilation, depth=0)
    return root


def _expand_includes(
    rules: RuleSet, element: etree._Element, owner: Path, compilation: Compilation, depth: int
) -> None:
    for include in list(element.iter(_iso("include"))):
        href = include.get("href", "").strip()
        replacement = _included(rules, href, owner, compilation, depth)
        _replace(include, replacement)


def _included(rules: RuleSet, href: str, owner: Path, compilation: Compilation, depth: int) -> etree._Element | None:
    where = rules.relative(owner)
    if depth > 20:
        compilation.findings.append(_gap("cda.rules.include-loop", f"includes nest too deeply at '{href}'", where))
        return None
    path_part, _, fragment = href.partition("#")
    if not path_part:
        compilation.findings.append(_gap("cda.rules.include-unsupported", f"include '{href}' has no file", where))
        return None
    resolved = rules.resolve(owner.parent, path_part)
    if resolved.path is None:
        compilation.findings.append(
            _gap(
                "cda.rules.include-missing",
                f"include '{href}' names a file that does not exist; its rules are left out, "
                "as the official pipeline (Saxon 9) silently did",
                where,
            )
        )
        return None
    target_name = rules.relative(resolved.path)
    if resolved.repaired:
        compilation.findings.append(
            _gap(
                "cda.rules.include-case",
                f"include '{href}' differs only in letter case from '{target_name}'; resolved as Windows does",
                where,
            )
        )
    try:
        document = etree.parse(str(resolved.path), _PARSER).getroot()
    except (etree.XMLSyntaxError, OSError) as exc:
        compilation.findings.append(
            _gap("cda.rules.include-unreadable", f"included file '{target_name}' cannot be read: {exc}", where)
        )
        return None
    compilation.files.append(resolved.path)
    target: etree._Element | None = document
    if fragment:
        target = next(
            (
                e
                for e in document.iter(f"{{{ISO}}}*")
                if e.get("id") == fragment or e.get("{http://www.w3.org/XML/1998/namespace}id") == fragment
            ),
            None,
        )
    if target is None or etree.QName(target).namespace != ISO or etree.QName(target).localname == "schema":
        compilation.findings.append(
            _gap(
                "cda.rules.include-not-fragment",
                f"include '{href}' does not lead to a Schematron fragment; nothing is included",
                where,
            )
        )
        return None
    piece = copy.deepcopy(target)
    piece.tail = None
    for pattern in piece.iter(_iso("pattern")):
        if pattern.get("id"):
            compilation.pattern_files.setdefault(pattern.get("id", ""), target_name)
    _expand_includes(rules, piece, resolved.path, compilation, depth + 1)
    return piece


def _replace(old: etree._Element, new: etree._Element | None) -> None:
    parent = old.getparent()
    if parent is None:
        return
    if new is None:
        _remove_keeping_tail(old)
        return
    new.tail = old.tail
    parent.replace(old, new)


def _remove_keeping_tail(element: etree._Element) -> None:
    parent = element.getparent()
    if parent is None:
        return
    if element.tail:
        previous = element.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + element.tail
        else:
            parent.text = (parent.text or "") + element.tail
    parent.remove(element)


def _gap(rule: str, message: str, rule_file: str) -> Finding:
    """A warning about the rule files themselves, naming the file where the gap is."""
    return Finding(Severity.WARNING, rule, message, source=SOURCE, rule_file=rule_file)


# -- step 2: abstract patterns ------------------------------------------------------------------
def expand_abstract_patterns(schema: etree._Element, compilation: Compilation) -> etree._Element:
    """A new schema where abstract patterns are instantiated and their declarations dropped (step 2)."""
    patterns_by_id: dict[str, list[etree._Element]] = {}
    for pattern in schema.iter(_iso("pattern")):
        patterns_by_id.setdefault(pattern.get("id", ""), []).append(pattern)
    result = _expand_copy(schema, patterns_by_id, compilation)
    return result


def _expand_copy(
    element: etree._Element, patterns_by_id: dict[str, list[etree._Element]], compilation: Compilation
) -> etree._Element:
    clone = etree.Element(element.tag, attrib=_attributes(element), nsmap=_nsmap(element))
    clone.text = element.text
    for child in element:
        if not isinstance(child.tag, str):
            continue
        if child.tag == _iso("pattern") and child.get("abstract") == "true":
            _append_text(clone, child.tail)
            continue
        if child.tag == _iso("pattern") and child.get("is-a") is not None:
            for real in _instantiate(child, patterns_by_id, compilation):
                clone.append(real)
            _append_text(clone, child.tail)
            continue
        piece = _expand_copy(child, patterns_by_id, compilation)
        piece.tail = child.tail
        clone.append(piece)
    return clone


def _append_text(parent: etree._Element, text: str | None) -> None:
    if not text:
        return
    if len(parent):
        last = parent[-1]
        last.tail = (last.tail or "") + text
    else:
        parent.text = (parent.text or "") + text


def _instantiate(
    caller: etree._Element, patterns_by_id: dict[str, list[etree._Element]], compilation: Compilation
) -> list[etree._Element]:
    caller_id = caller.get("id", "")
    is_a = caller.get("is-a", "")
    # The skeleton takes the parameters of the first pattern carrying the caller's id.
    first_caller = patterns_by_id.get(caller_id, [caller])[0] if caller_id else caller
    params = [(p.get("name", ""), p.get("value", "")) for p in first_caller.iterchildren(_iso("param"))]
    abstracts = patterns_by_id.get(is_a, [])
    if not abstracts:
        compilation.findings.append(
            warning(
                "cda.rules.abstract-missing",
                f"pattern '{caller_id}' instantiates abstract pattern '{is_a}', which no included file defines; "
                "it checks nothing",
                source=SOURCE,
            )
        )
    instances = []
    for abstract in abstracts:
        real = etree.Element(_iso("pattern"), nsmap=_nsmap(abstract))
        real.set("id", caller_id or f"generated-{is_a}")
        real.text = _macro(abstract.text, params)
        for child in abstract:
            if not isinstance(child.tag, str):
                continue
            piece = _macro_copy(child, params)
            real.append(piece)
        instances.append(real)
    return instances


_EXPANDED_ATTRIBUTES = ("test", "context", "select")


def _attributes(element: etree._Element) -> dict[str, str]:
    return {str(k): str(v) for k, v in element.attrib.items()}


def _nsmap(element: etree._Element) -> Any:
    """The element's namespace map (typed loosely: lxml maps the default namespace from None)."""
    return dict(element.nsmap)


def _text_of(element: etree._Element) -> str:
    return "".join(str(t) for t in element.itertext())


def _macro_copy(element: etree._Element, params: list[tuple[str, str]]) -> etree._Element:
    attrib = {k: (_macro(v, params) or "" if k in _EXPANDED_ATTRIBUTES else v) for k, v in _attributes(element).items()}
    clone = etree.Element(element.tag, attrib=attrib, nsmap=_nsmap(element))
    clone.text = _macro(element.text, params)
    for child in element:
        if not isinstance(child.tag, str):
            continue
        clone.append(_macro_copy(child, params))
    clone.tail = _macro(element.tail, params)
    return clone


def _macro(text: str | None, params: list[tuple[str, str]]) -> str | None:
    if text is None:
        return None
    for name, value in params:
        if name:
            text = text.replace(f"${name}", value)
    return text


# -- value-set references -----------------------------------------------------------------------
_XML_LITERAL = re.compile(r"""(['"])([^'"]*?\.xml)\1""", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ValueSetRepairs:
    """String paths the compiled stylesheet must read differently.

    Attributes:
        renamed: path as written → path with the real file's letter case.
        missing: paths to files that do not exist (read as empty, as Saxon 9 did).
    """

    renamed: dict[str, str]
    missing: frozenset[str]


def value_set_repairs(
    rules: RuleSet, schema: etree._Element, base_dir: Path, compilation: Compilation
) -> ValueSetRepairs:
    """Check every ``'….xml'`` literal of the schema against the rules folder, from ``base_dir``.

    The literals are where the ANS schematrons name their value sets (pattern ``let``s
    read by ``document()``). One warning per repair or gap, naming the file.
    """
    renamed: dict[str, str] = {}
    missing: set[str] = set()
    where = rules.relative(compilation.source)
    seen: set[str] = set()
    for element in schema.iter(f"{{{ISO}}}*"):
        for attribute in ("value", "test", "select", "context"):
            for _quote, literal in _XML_LITERAL.findall(element.get(attribute, "")):
                if literal in seen or "://" in literal:
                    continue
                seen.add(literal)
                resolved = rules.resolve(base_dir, literal)
                if resolved.path is None and _read_with_doc(schema, literal):
                    # doc(), unlike document(), stopped the official pipeline too: no verdict to emulate
                    compilation.unrunnable.append(literal)
                    compilation.findings.append(
                        _gap(
                            "cda.rules.vocabulary-missing",
                            f"this schematron reads '{literal}' with doc(), and the file does not exist; "
                            "it cannot run (the official pipeline stops on it too) and is left out",
                            where,
                        )
                    )
                elif resolved.path is None:
                    missing.add(literal)
                    compilation.findings.append(
                        _gap(
                            "cda.rules.value-set-missing",
                            f"value set '{literal}' does not exist in the rules folder; it is read as empty, "
                            "as the official pipeline (Saxon 9) did",
                            where,
                        )
                    )
                elif resolved.repaired:
                    fixed = _relative_spelling(literal, resolved.path, base_dir)
                    renamed[literal] = fixed
                    real = rules.relative(resolved.path)
                    compilation.findings.append(
                        _gap(
                            "cda.rules.value-set-case",
                            f"value set '{literal}' differs only in letter case from '{real}'; "
                            "resolved as Windows does",
                            where,
                        )
                    )
    return ValueSetRepairs(renamed, frozenset(missing))


def _read_with_doc(schema: etree._Element, literal: str) -> bool:
    """True when ``literal`` is an argument of ``doc()`` somewhere in the schema."""
    call = re.compile(r"(?<![\w:.-])doc\s*\(\s*(['\"])" + re.escape(literal) + r"\1")
    return any(
        call.search(element.get(attribute, ""))
        for element in schema.iter(f"{{{ISO}}}*")
        for attribute in ("test", "select", "context", "value")
    )


def _relative_spelling(literal: str, found: Path, base_dir: Path) -> str:
    ups = len([s for s in literal.replace("\\", "/").split("/") if s == ".."])
    anchor = base_dir
    for _ in range(ups):
        anchor = anchor.parent
    try:
        return "../" * ups + found.resolve().relative_to(anchor.resolve()).as_posix()
    except ValueError:
        return found.resolve().as_uri()


# -- step 3: XSLT generation --------------------------------------------------------------------
def generate_xslt(schema: etree._Element, base_dir: Path, repairs: ValueSetRepairs, direct: bool = True) -> bytes:
    """The XSLT 2 stylesheet that checks a document against ``schema`` and writes SVRL (step 3).

    With ``direct`` (the default), each pattern selects the nodes its rule contexts match
    instead of walking the whole tree (see :func:`_direct_selection`); the SVRL is the same,
    several times faster on the profile schematrons' hundreds of patterns.
    """
    namespaces = dict(FIXED_NAMESPACES)
    for ns in schema.iterchildren(_iso("ns")):
        prefix, uri = ns.get("prefix"), ns.get("uri")
        if prefix and uri:
            namespaces[prefix] = uri
    sheet = etree.Element(_x("stylesheet"), nsmap=namespaces)
    sheet.set("version", "2.0")
    sheet.set("{http://www.w3.org/XML/1998/namespace}base", base_dir.resolve().as_uri() + "/")
    sheet.set("exclude-result-prefixes", "xs xsd saxon schold iso xhtml")
    etree.SubElement(sheet, _x("output"), method="xml", encoding="UTF-8", indent="no")
    _document_guard(sheet, repairs)
    key = etree.SubElement(sheet, _x("key"), name=TEMPLATE_ID_KEY, match=f"*[Q{{{HL7}}}templateId]")
    key.set("use", f"Q{{{HL7}}}templateId/@root")

    phase = schema.get("defaultPhase") or "#ALL"
    active = _active_patterns(schema, phase)
    any_paren = any("(" in r.get("context", "") for r in schema.iter(_iso("rule")))
    children_xpath = "*" if any_paren else "*|comment()|processing-instruction()"

    for child in schema:
        if not isinstance(child.tag, str):
            continue
        if child.tag == _iso("let"):
            _global_let(sheet, child, as_param=True)
        elif child.tag == _iso("phase"):
            for let in child.iterchildren(_iso("let")):
                _global_let(sheet, let, as_param=False)
        elif child.tag in (_x("key"), _x("function")):
            sheet.append(_guarded(copy.deepcopy(child)))

    root_template = etree.SubElement(sheet, _x("template"), match="/")
    output = etree.SubElement(root_template, _svrl("schematron-output"))
    output.set("title", _literal_avt(_schema_title(schema)))
    output.set("schemaVersion", _literal_avt(schema.get("schemaVersion", "")))
    if phase != "#ALL":
        output.set("phase", _literal_avt(phase))
    for p in schema.iterchildren(_iso("p")):
        output.append(_svrl_text(p))

    elements = [c for c in schema if isinstance(c.tag, str)]
    for position, pattern in enumerate(elements):
        if pattern.tag != _iso("pattern") or pattern.get("abstract") == "true":
            continue
        if phase != "#ALL" and pattern.get("id") not in active:
            continue
        mode = f"M{position}"
        marker = etree.SubElement(output, _svrl("active-pattern"))
        if pattern.get("id"):
            _attribute(marker, "id", pattern.get("id", ""))
        _rich(marker, pattern)
        for p in pattern.iterchildren(_iso("p")):
            marker.append(_svrl_text(p))
        selection = _direct_selection(pattern, namespaces, children_xpath) if direct else None
        etree.SubElement(output, _x("apply-templates"), select=selection or "/", mode=mode)
        _pattern_templates(sheet, schema, pattern, mode, children_xpath, walk=selection is None)

    location = etree.SubElement(sheet, _x("template"), match="*", mode="schematron-select-full-path")
    steps = etree.SubElement(location, _x("for-each"), select="ancestor-or-self::*")
    etree.SubElement(steps, _x("variable"), name="step", select="name()")
    etree.SubElement(steps, _x("variable"), name="same", select="count(preceding-sibling::*[name() = $step])")
    etree.SubElement(
        steps, _x("value-of"), select="concat('/', $step, if ($same gt 0) then concat('[', $same + 1, ']') else '')"
    )
    etree.SubElement(sheet, _x("template"), match="text()", priority="-1")
    return etree.tostring(sheet, xml_declaration=True, encoding="UTF-8")


def _schema_title(schema: etree._Element) -> str:
    title = schema.find(_iso("title"))
    if title is not None:
        return _text_of(title)
    return schema.get("id", "")


def _active_patterns(schema: etree._Element, phase: str) -> set[str]:
    for candidate in schema.iterchildren(_iso("phase")):
        if candidate.get("id") == phase:
            return {a.get("pattern", "") for a in candidate.iterchildren(_iso("active"))}
    return set()


def _global_let(sheet: etree._Element, let: etree._Element, as_param: bool) -> None:
    name = let.get("name", "")
    value = let.get("value")
    if value is not None:
        declaration = etree.SubElement(sheet, _x("param" if as_param else "variable"), name=name)
        if value:
            declaration.set("select", _guard_document(value))
    else:
        declaration = etree.SubElement(sheet, _x("variable"), name=name)
        for child in let:
            declaration.append(copy.deepcopy(child))


def _direct_selection(pattern: etree._Element, namespaces: dict[str, str], children_xpath: str) -> str | None:
    """One expression selecting, in document order, every node the walk would visit that a rule matches.

    The skeleton walks the whole tree once per pattern and lets template priorities pick the
    first matching rule. XSLT defines "node N matches pattern P" as "N is in ``root(N)//(P)``",
    so selecting the union of ``//(context)`` over the pattern's rules, keeping only the node
    kinds the walk visits (the root, elements, and comments and processing instructions unless
    a context has a parenthesis), and applying templates to it fires exactly the same rules on
    exactly the same nodes, in the same order. A context using ``current()`` (whose meaning
    differs between a pattern and an expression) keeps the walk. ``*[cda:templateId/@root='X']``
    contexts, the common ANS form, are answered from a key on templateId roots.
    """
    parts = []
    for rule in pattern.iterchildren(_iso("rule")):
        if rule.get("abstract") == "true":
            continue
        context = " ".join(rule.get("context", "").split())
        if not context or "current()" in context:
            return None
        parts.append(_context_selection(context, namespaces))
    if not parts:
        return None
    kinds = ". instance of element() or . instance of document-node()"
    if children_xpath != "*":
        kinds += " or . instance of comment() or . instance of processing-instruction()"
    return f"({' | '.join(parts)})[{kinds}]"


_TEMPLATE_ID_CONTEXT = re.compile(
    r"""^\*\[\s*(?P<prefix>[A-Za-z_][\w.-]*):templateId\s*/\s*@root\s*=\s*(?P<q>['"])(?P<root>[^'"]+)(?P=q)\s*\]"""
    r"""(?P<rest>(?:/|//)[^|]*)?$"""
)


def _context_selection(context: str, namespaces: dict[str, str]) -> str:
    match = _TEMPLATE_ID_CONTEXT.match(context)
    if match and namespaces.get(match["prefix"]) == HL7 and "'" not in match["root"]:
        return f"key('{TEMPLATE_ID_KEY}', '{match['root']}'){match['rest'] or ''}"
    if context.startswith("/") and "|" not in context:
        return f"({_guard_document(context)})"
    return f"//({_guard_document(context)})"


def _pattern_templates(
    sheet: etree._Element,
    schema: etree._Element,
    pattern: etree._Element,
    mode: str,
    children_xpath: str,
    walk: bool = True,
) -> None:
    for let in pattern.iterchildren(_iso("let")):
        _global_let(sheet, let, as_param=False)
    siblings = [c for c in pattern if isinstance(c.tag, str)]
    for index, rule in enumerate(siblings):
        if rule.tag != _iso("rule") or rule.get("abstract") == "true":
            continue
        following = len(siblings) - index - 1
        template = etree.SubElement(
            sheet,
            _x("template"),
            match=_guard_document(rule.get("context", "")),
            priority=str(1000 + following),
            mode=mode,
        )
        fired = etree.SubElement(template, _svrl("fired-rule"))
        fired.set("context", _literal_avt(rule.get("context", "")))
        if rule.get("id"):
            fired.set("id", _literal_avt(rule.get("id", "")))
        if rule.get("role"):
            fired.set("role", _literal_avt(rule.get("role", "")))
        for name in ("{http://www.w3.org/XML/1998/namespace}space", "{http://www.w3.org/XML/1998/namespace}lang"):
            if rule.get(name):
                fired.set(name, _literal_avt(rule.get(name, "")))
        _rule_body(template, schema, pattern, rule, depth=0)
        if walk:
            etree.SubElement(template, _x("apply-templates"), select=children_xpath, mode=mode)
    if walk:
        etree.SubElement(sheet, _x("template"), match="text()", priority="-1", mode=mode)
        fallback = etree.SubElement(sheet, _x("template"), match="@*|node()", priority="-2", mode=mode)
        etree.SubElement(fallback, _x("apply-templates"), select=children_xpath, mode=mode)


def _rule_body(
    template: etree._Element, schema: etree._Element, pattern: etree._Element, rule: etree._Element, depth: int
) -> None:
    for child in rule:
        if not isinstance(child.tag, str):
            continue
        if child.tag == _iso("let"):
            value = child.get("value")
            variable = etree.SubElement(template, _x("variable"), name=child.get("name", ""))
            if value is not None:
                variable.set("select", _guard_document(value))
            else:
                for piece in child:
                    variable.append(copy.deepcopy(piece))
        elif child.tag == _iso("assert"):
            choose = etree.SubElement(template, _x("choose"))
            etree.SubElement(choose, _x("when"), test=_guard_document(child.get("test", "")))
            otherwise = etree.SubElement(choose, _x("otherwise"))
            otherwise.append(_outcome(child, "failed-assert"))
        elif child.tag == _iso("report"):
            condition = etree.SubElement(template, _x("if"), test=_guard_document(child.get("test", "")))
            condition.append(_outcome(child, "successful-report"))
        elif child.tag == _iso("extends") and depth < 10:
            wanted = child.get("rule", "")
            local = [r for r in pattern.iterchildren(_iso("rule")) if r.get("id") == wanted]
            found = local or [r for r in schema.iter(_iso("rule")) if r.get("id") == wanted]
            if found:
                _rule_body(template, schema, pattern, found[0], depth + 1)
        elif child.tag == _iso("title"):
            template.append(_svrl_text(child))


def _outcome(check: etree._Element, kind: str) -> etree._Element:
    result = etree.Element(_svrl(kind))
    if kind == "successful-report":
        result.set("test", _literal_avt(" ".join(check.get("test", "").split())))
    for name in ("id", "flag"):
        if check.get(name):
            _attribute(result, name, check.get(name, ""))
    _rich(result, check)
    if check.get("role"):
        _attribute(result, "role", check.get("role", ""))
    location = etree.SubElement(result, _x("attribute"), name="location")
    etree.SubElement(location, _x("apply-templates"), select=".", mode="schematron-select-full-path")
    result.append(_svrl_text(check))
    return result


def _rich(target: etree._Element, source: etree._Element) -> None:
    for name, label in (
        ("{http://www.w3.org/XML/1998/namespace}space", "xml:space"),
        ("{http://www.w3.org/XML/1998/namespace}lang", "xml:lang"),
    ):
        if source.get(name):
            _attribute(target, label, source.get(name, ""))


def _attribute(target: etree._Element, name: str, value: str) -> None:
    attribute = etree.SubElement(target, _x("attribute"), name=name)
    attribute.text = value


def _svrl_text(source: etree._Element) -> etree._Element:
    """``svrl:text`` holding the message: text as written, ``value-of``/``name`` padded with spaces."""
    text = etree.Element(_svrl("text"))
    _message_content(text, source)
    return text


def _message_content(target: etree._Element, source: etree._Element) -> None:
    _add_text(target, source.text)
    for child in source:
        if isinstance(child.tag, str):
            if child.tag == _iso("value-of"):
                etree.SubElement(target, _x("value-of"), select=_guard_document(child.get("select", ".")))
            elif child.tag == _iso("name"):
                path = child.get("path")
                etree.SubElement(target, _x("value-of"), select=f"name({path})" if path else "name(.)")
            elif child.tag in (_iso("emph"), _iso("dir"), _iso("span")):
                _add_text(target, _text_of(child))
        _add_text(target, child.tail)


def _add_text(target: etree._Element, text: str | None) -> None:
    if text:
        _append_text(target, text)


def _literal_avt(value: str) -> str:
    """An attribute value for a literal result element, braces escaped so it is not an AVT."""
    return value.replace("{", "{{").replace("}", "}}")


# -- document() guard ---------------------------------------------------------------------------
_DOCUMENT_CALL = re.compile(r"(?<![\w:.-])document\s*\(")


def _guard_document(expression: str) -> str:
    """Route ``document(…)`` calls through ``harness:document``, which applies the repairs."""
    return _DOCUMENT_CALL.sub(f"{GUARD}(", expression)


def _guarded(element: etree._Element) -> etree._Element:
    for node in element.iter():
        for attribute in ("select", "test", "match", "use"):
            if node.get(attribute):
                node.set(attribute, _guard_document(node.get(attribute, "")))
    return element


def _document_guard(sheet: etree._Element, repairs: ValueSetRepairs) -> None:
    """``harness:document($uri)``: document() with letter-case repairs, and absent files read as empty."""
    function = etree.SubElement(sheet, _x("function"), name=GUARD)
    function.set("as", "node()*")
    etree.SubElement(function, _x("param"), name="uri").set("as", "item()*")
    loop = etree.SubElement(function, _x("for-each"), select="$uri")
    choose = etree.SubElement(loop, _x("choose"))
    etree.SubElement(choose, _x("when"), test=". instance of node()").append(
        etree.Element(_x("sequence"), select="document(.)")
    )
    for wrong, right in sorted(repairs.renamed.items()):
        etree.SubElement(choose, _x("when"), test=f"string(.) = {_xpath_string(wrong)}").append(
            etree.Element(_x("sequence"), select=f"document({_xpath_string(right)})")
        )
    if repairs.missing:
        listed = ", ".join(_xpath_string(m) for m in sorted(repairs.missing))
        etree.SubElement(choose, _x("when"), test=f"string(.) = ({listed})")
    otherwise = etree.SubElement(choose, _x("otherwise"))
    otherwise.append(
        etree.Element(
            _x("sequence"),
            select="if (doc-available(resolve-uri(string(.), static-base-uri()))) then document(string(.)) else ()",
        )
    )


def _xpath_string(value: str) -> str:
    if "'" not in value:
        return f"'{value}'"
    return "concat(" + ', "\'", '.join(f"'{part}'" for part in value.split("'")) + ")"


@dataclass
class Prepared:
    """A schematron analysed and ready to compile.

    Attributes:
        inputs: every file the compiled XSLT depends on (the cache key hashes them).
        findings: repairs and gaps noticed (include case, missing files, missing value sets).
        pattern_files: pattern id → rule file defining it.
        repairs: value-set references to read differently.
        build: produces the XSLT (called only when the disk cache has none).
        unrunnable: files the schematron needs and cannot do without (it is then not run).
        messages: what the compiler said while building (the ANS skeleton's ``xsl:message``s).
    """

    inputs: list[Path]
    findings: list[Finding]
    pattern_files: dict[str, str]
    repairs: ValueSetRepairs
    build: Callable[[], bytes]
    unrunnable: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def analyse(rules: RuleSet, schematron: Path) -> tuple[etree._Element, Compilation, ValueSetRepairs]:
    """Steps 1 and 2 plus the value-set check: the expanded schema and what was noticed."""
    compilation = Compilation(source=schematron)
    included = resolve_includes(rules, schematron, compilation)
    expanded = expand_abstract_patterns(included, compilation)
    repairs = value_set_repairs(rules, expanded, schematron.parent, compilation)
    _check_phase(expanded, compilation, rules.relative(schematron))
    return expanded, compilation, repairs


def _check_phase(schema: etree._Element, compilation: Compilation, where: str) -> None:
    """Warn about patterns the default phase activates but no file declares (the skeleton says so too)."""
    phase = schema.get("defaultPhase") or "#ALL"
    if phase == "#ALL":
        return
    declared = {p.get("id") for p in schema.iterchildren(_iso("pattern"))}
    phases = [p for p in schema.iterchildren(_iso("phase")) if p.get("id") == phase]
    if not phases:
        compilation.findings.append(
            _gap("cda.rules.phase-missing", f"the default phase '{phase}' is not declared: no pattern runs", where)
        )
        return
    for active in phases[0].iterchildren(_iso("active")):
        name = active.get("pattern", "")
        if name not in declared:
            compilation.findings.append(
                _gap(
                    "cda.rules.phase-pattern-missing",
                    f"the phase activates pattern '{name}', which no included file declares; it checks nothing",
                    where,
                )
            )


def prepare(rules: RuleSet, schematron: Path) -> Prepared:
    """Our route: analyse now, generate the XSLT on demand."""
    expanded, compilation, repairs = analyse(rules, schematron)
    return Prepared(
        inputs=list(compilation.files),
        findings=compilation.findings,
        pattern_files=compilation.pattern_files,
        repairs=repairs,
        build=lambda: generate_xslt(expanded, schematron.parent, repairs),
        unrunnable=compilation.unrunnable,
    )


def compile_schematron(rules: RuleSet, schematron: Path) -> tuple[bytes, Compilation]:
    """The three steps: the XSLT for ``schematron`` and what compiling it noticed."""
    expanded, compilation, repairs = analyse(rules, schematron)
    return generate_xslt(expanded, schematron.parent, repairs), compilation


def guard_stylesheet(sheet: etree._Element, base_dir: Path, repairs: ValueSetRepairs) -> None:
    """Make a stylesheet compiled elsewhere (the ANS skeleton) read value sets as ours does.

    Sets the base URI to the schematron's folder, routes ``document()`` through
    ``harness:document`` and adds that function.
    """
    sheet.set("{http://www.w3.org/XML/1998/namespace}base", base_dir.resolve().as_uri() + "/")
    for node in sheet.iter(f"{{{XSL}}}*"):
        for attribute in ("select", "test", "match", "use"):
            value = node.get(attribute)
            if value and "document" in value:
                node.set(attribute, _guard_document(value))
    _document_guard(sheet, repairs)
