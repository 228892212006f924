"""HL7 v2.5 PAM-FR identity messages: hl7apy's checks plus the INS rules it cannot know.

hl7apy (STRICT) checks ER7 syntax, data types, lengths and the message structure, but
not table values, Z segments, or anything French (libraries.md item 1). A SUT that
sends or receives identities from another domain is judged on the French layer: the
PAM-FR 2.11 profile in MSH, the INS repetition of PID-3 (type, authority, namespace,
key), the birth-name repetition of PID-5, the birthplace of PID-11 and the reliability
code of PID-32. This module adds those checks on top of hl7apy and turns every parse
failure (garbage, truncation, LF separators, wrong charset) into findings: it never
raises.

Facts come from ``shared/docs/protocols.md`` §7 and the ANS ``hl7V2-exemples``
messages; what was inferred from the examples rather than read in the PAM-FR text is
marked so in the rule's message or docstring.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from hl7apy import SUPPORTED_LIBRARIES
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message, parse_segment

from harness.findings import Finding, Report, Severity, error, info, warning
from harness.sut.model import PatientTraits
from harness.validators import ins as ins_rules

RULESET_VERSION = "0.1.0"
RULESET = f"harness-hl7v2-pamfr {RULESET_VERSION}"
SOURCE = "hl7v2"

PAM_FR_VERSION = ("2.5", "FRA", "2.11")
"""MSH-12: HL7 version, internationalisation code, PAM-FR version."""
PAM_FR_PROFILE = ("2.11", "IHE_FRANCE-2.11-PAM")
"""MSH-21 (EI): entity identifier and namespace, as in the ANS examples."""
IDENTITY_EVENTS = frozenset({"A28", "A31"})
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""Larger inputs are not parsed: an identity message is a few kilobytes."""
MAX_SEGMENTS = 200
MAX_REPETITIONS = 1000
"""hl7apy costs about 0.2 ms per segment and 0.1 ms per repetition: beyond these limits a
hostile message could keep the validator busy for minutes, so it is not handed to hl7apy."""

RNIV_STATUSES = frozenset({"PROV", "RECUP", "VALI", "QUAL"})
TABLE_0445_ATTRIBUTES = frozenset(
    [
        "VIDE",
        "DOUB",
        "DESA",
        "DPOT",
        "DOUA",
        "COLP",
        "COLV",
        "FILI",
        "CACH",
        "ANOM",
        "IDVER",
        "RECD",
        "IDRA",
        "USUR",
        "HOMD",
        "HOMA",
        "INVA",
        "FICT",
        "DOUT",
    ]
)
"""Other codes of the French table 0445 (fr-core ``fr-core-cs-v2-0445``)."""

_STANDARD_ENCODING = "^~\\&"
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")
_ESCAPE_NAMES = "FSTRE"


@dataclass(frozen=True, slots=True)
class Er7Text:
    """A message decoded to text with CR separators, ready for hl7apy.

    Attributes:
        text: the segments joined by ``\\r`` (no trailing separator).
        segments: the segments, in order.
        field_separator: MSH-1.
        encoding: MSH-2 (component, repetition, escape, subcomponent).
        version: MSH-12.1 as sent ('' when absent).
        utf8: whether the bytes were valid UTF-8.
        findings: what decoding noticed (framing, BOM, charset, separators).
    """

    text: str
    segments: tuple[str, ...]
    field_separator: str
    encoding: str
    version: str
    utf8: bool
    findings: tuple[Finding, ...] = ()

    def encoding_chars(self) -> dict[str, str]:
        """The encoding characters in hl7apy's form."""
        return {
            "FIELD": self.field_separator,
            "COMPONENT": self.encoding[0],
            "REPETITION": self.encoding[1],
            "ESCAPE": self.encoding[2],
            "SUBCOMPONENT": self.encoding[3],
            "GROUP": "\r",
            "SEGMENT": "\r",
        }

    @property
    def hl7apy_version(self) -> str:
        """MSH-12.1 when hl7apy knows it, else 2.5 (the PAM-FR base)."""
        return self.version if self.version in SUPPORTED_LIBRARIES else "2.5"

    def unescape(self, value: str) -> str:
        """``value`` with the delimiter escapes (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\) resolved; others kept."""
        esc = self.encoding[2]
        if esc not in value:
            return value
        table = {
            "F": self.field_separator,
            "S": self.encoding[0],
            "T": self.encoding[3],
            "R": self.encoding[1],
            "E": esc,
        }
        pattern = re.escape(esc) + f"([{_ESCAPE_NAMES}])" + re.escape(esc)
        return re.sub(pattern, lambda m: table[m.group(1)], value)

    def segments_named(self, name: str) -> list[str]:
        """The segments whose id is ``name``, in order."""
        return [s for s in self.segments if s[:3] == name and (len(s) == 3 or s[3] == self.field_separator)]

    def read(self, element: Any, path: str = "") -> str:
        """The unescaped, stripped text of ``element`` or of its child at dotted ``path``.

        Example: ``er7.read(pid_3_rep, "cx_4.hd_2")``. hl7apy raises on odd content while
        navigating, so navigation happens inside this guard: '' when absent or unreadable.
        """
        try:
            for name in path.split(".") if path else ():
                element = getattr(element, name)
            raw = element.to_er7()
        except Exception:  # hl7apy raises ChildNotFound and others on odd content
            return ""
        return self.unescape(raw).strip() if isinstance(raw, str) else ""

    def reps(self, segment: Any, name: str) -> list[Any]:
        """The non-empty repetitions of field ``name`` of ``segment`` ([] when absent or unreadable)."""
        try:
            return [rep for rep in getattr(segment, name) if rep.to_er7()]
        except Exception:
            return []


def decode_er7(message: bytes) -> tuple[Er7Text | None, list[Finding]]:
    """Turn raw bytes into :class:`Er7Text`; None (with findings saying why) when it is not HL7 v2.

    Tolerated with a finding: MLLP framing left in, a UTF-8 BOM, non-UTF-8 bytes (read
    as Latin-1), CRLF or LF segment separators, non-standard encoding characters.
    """
    findings: list[Finding] = []
    if not isinstance(message, bytes | bytearray | memoryview):
        return None, [error("hl7v2.input", f"expected bytes, got {type(message).__name__}", "", SOURCE)]
    data = bytes(message)
    if len(data) > MAX_MESSAGE_BYTES:
        return None, [
            error(
                "hl7v2.input",
                f"{len(data)} bytes: larger than the {MAX_MESSAGE_BYTES} accepted for an identity message",
                "",
                SOURCE,
            )
        ]
    if b"\x0b" in data[:1] or b"\x1c" in data:
        findings.append(warning("hl7v2.framing", "MLLP framing bytes inside the message; ignored", "", SOURCE))
        data = data.replace(b"\x0b", b"").replace(b"\x1c", b"")
    if data.startswith(b"\xef\xbb\xbf"):
        findings.append(warning("hl7v2.encoding.bom", "the message starts with a UTF-8 byte-order mark", "", SOURCE))
        data = data[3:]
    try:
        text = data.decode("utf-8")
        utf8 = True
    except UnicodeDecodeError as exc:
        findings.append(error("hl7v2.encoding.utf8", f"not UTF-8 (byte {exc.start}): read as Latin-1", "", SOURCE))
        text = data.decode("latin-1")
        utf8 = False
    if "\r\n" in text:
        findings.append(
            warning(
                "hl7v2.segment-separator", "segments end with CR LF: HL7 v2 separates segments with CR only", "", SOURCE
            )
        )
    elif "\n" in text:
        findings.append(
            error("hl7v2.segment-separator", "segments are separated by LF: HL7 v2 requires CR (0x0D)", "", SOURCE)
        )
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    controls = sorted({f"0x{ord(c):02X}" for c in text if ord(c) < 0x20 and c not in "\r\t"})
    if controls:
        findings.append(
            error("hl7v2.encoding.control", f"control characters in the message: {', '.join(controls[:5])}", "", SOURCE)
        )
    text = text.strip("\r\n\t ")
    segments = tuple(s for s in text.split("\r") if s.strip())
    if not segments:
        findings.append(error("hl7v2.empty", "the message is empty", "", SOURCE))
        return None, findings
    msh = segments[0]
    if not msh.startswith("MSH") or len(msh) < 8:
        findings.append(error("hl7v2.msh.missing", "the message does not start with an MSH segment", "MSH", SOURCE))
        return None, findings
    field_separator, encoding = msh[3], msh[4:8]
    delimiters = field_separator + encoding
    if len(set(delimiters)) != 5 or any(c.isalnum() or c.isspace() for c in delimiters):
        findings.append(
            error(
                "hl7v2.msh.encoding-characters",
                f"MSH-1/MSH-2 {delimiters!r} are not five distinct delimiters",
                "MSH-2",
                SOURCE,
            )
        )
        return None, findings
    if delimiters != "|" + _STANDARD_ENCODING:
        findings.append(
            warning(
                "hl7v2.msh.encoding-characters",
                f"non-standard delimiters {delimiters!r} (expected '|{_STANDARD_ENCODING}')",
                "MSH-2",
                SOURCE,
            )
        )
    for index, segment in enumerate(segments, start=1):
        name = segment.split(field_separator, 1)[0]
        if not _SEGMENT_ID.match(name):
            findings.append(
                error(
                    "hl7v2.segment.id",
                    f"segment {index} has no valid segment id ({name[:10]!r})",
                    f"segment {index}",
                    SOURCE,
                )
            )
    repetitions = sum(s.count(encoding[1]) for s in segments[1:])
    if len(segments) > MAX_SEGMENTS or repetitions > MAX_REPETITIONS:
        findings.append(
            error(
                "hl7v2.limits",
                f"{len(segments)} segments and {repetitions} repetitions: more than this validator parses "
                f"({MAX_SEGMENTS} segments, {MAX_REPETITIONS} repetitions)",
                "",
                SOURCE,
            )
        )
        return None, findings
    msh_fields = msh.split(field_separator)
    version = msh_fields[11].split(encoding[0])[0] if len(msh_fields) > 11 else ""
    er7 = Er7Text(
        text="\r".join(segments),
        segments=segments,
        field_separator=field_separator,
        encoding=encoding,
        version=version,
        utf8=utf8,
        findings=tuple(findings),
    )
    return er7, findings


def parse_er7_segment(er7: Er7Text, segment: str) -> Any | None:
    """One segment parsed by hl7apy (QUIET: reading, not judging), or None when hl7apy refuses it."""
    try:
        return parse_segment(
            segment,
            version=er7.hl7apy_version,
            encoding_chars=er7.encoding_chars(),
            validation_level=VALIDATION_LEVEL.QUIET,
        )
    except Exception:  # hl7apy raises many exception types on hostile input
        return None


def validate_identity_message(
    message: bytes,
    *,
    subject: str = "HL7 v2 identity message",
    allow_test: bool = True,
    today: date | None = None,
) -> Report:
    """Validate an HL7 v2.5 PAM-FR 2.11 identity message (ADT A28/A31, or any ADT with a PID).

    Args:
        message: the raw message (no MLLP framing expected; tolerated with a warning).
        subject: what the report is about.
        allow_test: accept the test and demonstration INS authorities.
        today: the date birth dates are compared with (default: the real today).

    Returns:
        A report whose ruleset is :data:`RULESET`. Never raises.
    """
    started = time.perf_counter()
    findings: list[Finding] = []
    try:
        findings.extend(_validate(message, allow_test=allow_test, today=today or date.today()))
    except Exception as exc:  # last resort: a validator bug must not break a verdict
        findings.append(
            error("hl7v2.internal", f"the validator failed: {type(exc).__name__}: {_short(str(exc))}", "", SOURCE)
        )
    return Report(subject=subject, ruleset=RULESET, findings=findings, duration_s=time.perf_counter() - started)


# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Context:
    er7: Er7Text
    allow_test: bool
    today: date
    parsed: dict[str, list[Any]] = field(default_factory=dict)
    event: str = ""
    ins_present: bool = False
    findings: list[Finding] = field(default_factory=list)

    def segment(self, name: str) -> Any | None:
        """The first segment ``name``: from the STRICT parse when hl7apy kept all of them, else parsed alone."""
        texts = self.er7.segments_named(name)
        if not texts:
            return None
        parsed = self.parsed.get(name, [])
        if len(parsed) == len(texts):
            return parsed[0]
        return parse_er7_segment(self.er7, texts[0])

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def read(self, element: Any, path: str = "") -> str:
        return self.er7.read(element, path)

    def reps(self, segment: Any, name: str) -> list[Any]:
        return self.er7.reps(segment, name)


def _validate(message: bytes, *, allow_test: bool, today: date) -> list[Finding]:
    er7, findings = decode_er7(message)
    if er7 is None:
        return findings
    strict_findings, parsed = _strict_parse(er7)
    findings.extend(strict_findings)
    ctx = _Context(er7, allow_test, today, parsed=_segments_of(parsed) if parsed is not None else {})
    msh = ctx.segment("MSH")
    if msh is None:
        ctx.add(error("hl7v2.msh.unreadable", "hl7apy cannot read the MSH segment", "MSH", SOURCE))
    else:
        _check_msh(ctx, msh)
    _check_pid(ctx)
    _check_pv1(ctx)
    _check_zfd(ctx)
    return findings + ctx.findings


def _strict_parse(er7: Er7Text) -> tuple[list[Finding], Any | None]:
    """hl7apy's own verdict: STRICT parse (data types, lengths) then structure validation.

    Returns the findings and the parsed message (None when the parse itself failed).
    """
    if er7.version not in SUPPORTED_LIBRARIES:
        return [
            error(
                "hl7v2.msh.version",
                f"MSH-12 version {er7.version!r} is not an HL7 v2 version hl7apy knows",
                "MSH-12",
                SOURCE,
            )
        ], None
    try:
        parsed = parse_message(er7.text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    except Exception as exc:
        return [error("hl7v2.parse", f"hl7apy STRICT parse failed: {_describe(exc)}", "", SOURCE)], None
    try:
        parsed.validate()
    except Exception as exc:
        return [error("hl7v2.structure", f"hl7apy structure validation failed: {_describe(exc)}", "", SOURCE)], parsed
    return [], parsed


def _segments_of(message: Any) -> dict[str, list[Any]]:
    """The segments of a parsed message by name, in order, groups flattened."""
    found: dict[str, list[Any]] = {}

    def walk(node: Any) -> None:
        for child in node.children:
            if child.classname == "Segment":
                found.setdefault(str(child.name), []).append(child)
            elif child.classname == "Group":
                walk(child)

    try:
        walk(message)
    except Exception:  # a partial map only costs a re-parse per segment
        return {}
    return found


def _check_msh(ctx: _Context, msh: Any) -> None:
    read = ctx.read
    message_type = read(msh, "msh_9.msg_1")
    event = read(msh, "msh_9.msg_2")
    structure = read(msh, "msh_9.msg_3")
    ctx.event = event
    if message_type != "ADT":
        ctx.add(
            error(
                "hl7v2.msh.message-type",
                f"MSH-9 {message_type or '(empty)'}^{event}: not an ADT identity message",
                "MSH-9",
                SOURCE,
            )
        )
    elif event not in IDENTITY_EVENTS:
        ctx.add(
            info(
                "hl7v2.msh.message-type",
                f"event {event or '(empty)'} is not A28/A31; its PID is checked with the same rules",
                "MSH-9",
                SOURCE,
            )
        )
    elif structure != "ADT_A05":
        ctx.add(
            warning(
                "hl7v2.msh.message-structure",
                f"MSH-9.3 is {structure or '(empty)'}: ADT^{event} uses ADT_A05",
                "MSH-9.3",
                SOURCE,
            )
        )
    if not read(msh, "msh_10"):
        ctx.add(error("hl7v2.msh.control-id", "MSH-10 (message control id) is empty", "MSH-10", SOURCE))

    version = read(msh, "msh_12.vid_1")
    country = read(msh, "msh_12.vid_2.ce_1")
    pam_version = read(msh, "msh_12.vid_3.ce_1")
    expected = "^".join(PAM_FR_VERSION)
    sent = "^".join(p for p in (version, country, pam_version) if p) or "(empty)"
    if version != PAM_FR_VERSION[0] or country != PAM_FR_VERSION[1] or not pam_version:
        ctx.add(error("hl7v2.msh.version", f"MSH-12 is {sent}: PAM-FR messages say {expected}", "MSH-12", SOURCE))
    elif pam_version != PAM_FR_VERSION[2]:
        ctx.add(
            warning(
                "hl7v2.msh.version",
                f"PAM-FR version {pam_version}: these rules are written for {PAM_FR_VERSION[2]}",
                "MSH-12.3",
                SOURCE,
            )
        )

    profiles = [(read(rep, "ei_1"), read(rep, "ei_2")) for rep in ctx.reps(msh, "msh_21")]
    wanted = "^".join(PAM_FR_PROFILE)
    if PAM_FR_PROFILE in profiles:
        pass
    elif any(ns == PAM_FR_PROFILE[1] for _, ns in profiles):
        ctx.add(
            warning(
                "hl7v2.msh.profile",
                f"MSH-21 names {PAM_FR_PROFILE[1]} with another version ({wanted} expected)",
                "MSH-21",
                SOURCE,
            )
        )
    elif any(re.fullmatch(r"IHE_FRANCE-[0-9.]+-PAM", ns) for _, ns in profiles):
        other = next(ns for _, ns in profiles if ns.startswith("IHE_FRANCE-"))
        ctx.add(warning("hl7v2.msh.profile", f"MSH-21 names {other}, not {PAM_FR_PROFILE[1]}", "MSH-21", SOURCE))
    else:
        shown = "~".join("^".join(p) for p in profiles) or "(empty)"
        ctx.add(
            error("hl7v2.msh.profile", f"MSH-21 is {shown}: the PAM-FR profile {wanted} is expected", "MSH-21", SOURCE)
        )

    if read(msh, "msh_17") != "FRA":
        ctx.add(warning("hl7v2.msh.country", "MSH-17 (country code) is not FRA", "MSH-17", SOURCE))
    charsets = [read(rep) for rep in ctx.reps(msh, "msh_18")]
    if not charsets:
        ctx.add(
            warning(
                "hl7v2.msh.charset",
                "MSH-18 is empty (ASCII by default): PAM-FR messages declare UNICODE UTF-8",
                "MSH-18",
                SOURCE,
            )
        )
    elif charsets[0] != "UNICODE UTF-8":
        ctx.add(warning("hl7v2.msh.charset", f"MSH-18 is {charsets[0]!r}, 'UNICODE UTF-8' expected", "MSH-18", SOURCE))
    elif not ctx.er7.utf8:
        ctx.add(
            error("hl7v2.msh.charset", "MSH-18 declares UNICODE UTF-8 but the bytes are not UTF-8", "MSH-18", SOURCE)
        )


def _check_pid(ctx: _Context) -> None:
    texts = ctx.er7.segments_named("PID")
    if not texts:
        ctx.add(error("hl7v2.pid.missing", "no PID segment", "PID", SOURCE))
        return
    if len(texts) > 1:
        ctx.add(error("hl7v2.pid.repeated", f"{len(texts)} PID segments: an identity message has one", "PID", SOURCE))
    pid = ctx.segment("PID")
    if pid is None:
        ctx.add(error("hl7v2.pid.unreadable", "hl7apy cannot read the PID segment", "PID", SOURCE))
        return
    ins = _check_pid3(ctx, pid)
    traits = _check_traits(ctx, pid)
    if ins is not None and traits is not None:
        for finding in ins_rules.check_matricule_against_traits(ins[0], ins[1], traits):
            ctx.add(replace(finding, location=ins[2]))
    _check_pid32(ctx, pid)


def _check_pid3(ctx: _Context, pid: Any) -> tuple[str, str, str] | None:
    """PID-3 rules; returns (matricule, OID, location) of the first INS repetition."""
    read = ctx.read
    reps = ctx.reps(pid, "pid_3")
    if not reps:
        ctx.add(error("hl7v2.pid3.missing", "PID-3 (patient identifiers) is empty", "PID-3", SOURCE))
        return None
    first_ins: tuple[str, str, str] | None = None
    ins_count = 0
    ipp_seen = False
    for index, rep in enumerate(reps, start=1):
        value = read(rep, "cx_1")
        namespace = read(rep, "cx_4.hd_1")
        oid = read(rep, "cx_4.hd_2")
        oid_type = read(rep, "cx_4.hd_3")
        type_code = read(rep, "cx_5")
        location = f"PID-3[{index}]"
        is_ins = type_code == "INS" or namespace.startswith("ASIP-SANTE-INS") or ins_rules.ins_oid(oid) is not None
        if not is_ins:
            if type_code == "PI":
                ipp_seen = True
                if not namespace and not oid:
                    ctx.add(
                        warning(
                            "hl7v2.pid3.ipp-authority",
                            "the IPP has no assigning authority (CX.4)",
                            f"{location}.4",
                            SOURCE,
                        )
                    )
            continue
        ins_count += 1
        ctx.ins_present = True
        if first_ins is None:
            first_ins = (value, oid, f"{location}.1")
        if type_code != "INS":
            ctx.add(
                error(
                    "hl7v2.pid3.ins-type",
                    f"identifier type {type_code or '(empty)'} on an INS: PID-3 uses INS (NH is the XDS/VIHF form)",
                    f"{location}.5",
                    SOURCE,
                )
            )
        if not oid:
            ctx.add(
                error(
                    "hl7v2.pid3.ins-authority",
                    "the INS has no assigning authority OID (CX.4.2)",
                    f"{location}.4.2",
                    SOURCE,
                )
            )
        if oid_type != "ISO":
            ctx.add(
                error(
                    "hl7v2.pid3.ins-authority",
                    f"CX.4.3 is {oid_type or '(empty)'}: ISO expected for an OID",
                    f"{location}.4.3",
                    SOURCE,
                )
            )
        known = ins_rules.ins_oid(oid)
        if known is not None:
            if not namespace:
                ctx.add(
                    warning(
                        "hl7v2.pid3.ins-namespace",
                        f"no namespace (CX.4.1); {known.namespace} goes with {known.value}",
                        f"{location}.4.1",
                        SOURCE,
                    )
                )
            elif namespace != known.namespace:
                ctx.add(
                    error(
                        "hl7v2.pid3.ins-namespace",
                        f"namespace {namespace} does not match OID {known.value} ({known.namespace} expected)",
                        f"{location}.4.1",
                        SOURCE,
                    )
                )
        if not value:
            ctx.add(
                error("hl7v2.pid3.ins-value", "the INS repetition has no matricule (CX.1)", f"{location}.1", SOURCE)
            )
        elif oid:
            ctx.findings.extend(
                ins_rules.check_matricule(value, oid, allow_test=ctx.allow_test, location=f"{location}.1")
            )
    if ins_count > 1:
        ctx.add(
            warning(
                "hl7v2.pid3.ins-repeated", f"{ins_count} INS repetitions in PID-3: one is expected", "PID-3", SOURCE
            )
        )
    if not ipp_seen:
        ctx.add(warning("hl7v2.pid3.ipp-missing", "no local identifier of type PI (IPP) in PID-3", "PID-3", SOURCE))
    return first_ins


_TRAIT_LOCATIONS = {
    "birth_name": "PID-5.1",
    "first_names": "PID-5.2/PID-5.3",
    "sex": "PID-8",
    "birth_date": "PID-7",
    "birthplace_cog": "PID-11(BDL).9",
}


def _check_traits(ctx: _Context, pid: Any) -> PatientTraits | None:
    """PID-5/7/8/11 read as strict traits and checked with the INS trait rules."""
    read = ctx.read
    names = ctx.reps(pid, "pid_5")
    legal = [rep for rep in names if read(rep, "xpn_7") == "L"]
    if not legal:
        severity_rule = error if ctx.ins_present else warning
        ctx.add(
            severity_rule(
                "hl7v2.pid5.birth-name",
                "no PID-5 repetition of type L (birth name and birth first names)",
                "PID-5",
                SOURCE,
            )
        )
        return None
    if len(legal) > 1:
        ctx.add(warning("hl7v2.pid5.birth-name", f"{len(legal)} PID-5 repetitions of type L", "PID-5", SOURCE))
    name = legal[0]
    birth_name = read(name, "xpn_1.fn_1")
    first = read(name, "xpn_2")
    listed = read(name, "xpn_3").split()
    if listed and first and listed[0] != first:
        ctx.add(
            warning(
                "hl7v2.pid5.first-names",
                f"PID-5.3 {' '.join(listed)!r} does not start with PID-5.2 "
                f"{first!r} (PAM-FR puts the whole list of birth first names there, as the ANS examples "
                "do; inferred)",
                "PID-5.3",
                SOURCE,
            )
        )
        first_names = (first, *listed)
    else:
        first_names = tuple(listed) if listed else ((first,) if first else ())

    # PID-7 is TS (date in component 1) in v2.5 and DTM in v2.6: take what precedes a component separator.
    birth_date = _iso_birth_date(read(pid, "pid_7").split(ctx.er7.encoding[0])[0])
    sex = read(pid, "pid_8")
    birthplaces = [rep for rep in ctx.reps(pid, "pid_11") if read(rep, "xad_7") == "BDL"]
    cog = ""
    if not birthplaces:
        if ctx.ins_present:
            ctx.add(
                warning(
                    "hl7v2.pid11.bdl-missing", "no PID-11 repetition of type BDL (birthplace COG)", "PID-11", SOURCE
                )
            )
    else:
        if len(birthplaces) > 1:
            ctx.add(
                warning("hl7v2.pid11.bdl-repeated", f"{len(birthplaces)} BDL repetitions in PID-11", "PID-11", SOURCE)
            )
        cog = read(birthplaces[0], "xad_9")
        if not cog:
            ctx.add(
                error(
                    "hl7v2.pid11.bdl-cog",
                    "the BDL repetition of PID-11 has no COG in component 9",
                    "PID-11(BDL).9",
                    SOURCE,
                )
            )
    traits = PatientTraits(
        birth_name=birth_name,
        first_names=first_names,
        sex=sex,
        birth_date=birth_date,
        birthplace_cog=cog,
    )
    for finding in ins_rules.check_traits(traits, today=ctx.today):
        if finding.rule == "ins.traits.birthplace-missing":
            continue  # reported above in HL7 terms
        moved = replace(finding, location=_TRAIT_LOCATIONS.get(finding.location, finding.location))
        if not ctx.ins_present and moved.severity is Severity.ERROR:
            moved = replace(moved, severity=Severity.WARNING, message=f"{moved.message} (no INS carried)")
        ctx.add(moved)
    return traits


def _iso_birth_date(value: str) -> str:
    """HL7 DT/DTM → ISO date; YYYY and YYYYMM become partial dates with 00; anything else is kept raw."""
    if len(value) in (4, 6) and value.isdigit():
        return f"{value[:4]}-{value[4:6] or '00'}-00"
    if len(value) >= 8 and value[:8].isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:8]}"
    return value


def _check_pid32(ctx: _Context, pid: Any) -> None:
    codes = [ctx.read(rep) for rep in ctx.reps(pid, "pid_32")]
    codes = [c for c in codes if c]
    if not codes:
        ctx.add(error("hl7v2.pid32.missing", "PID-32 (identity reliability code) is empty", "PID-32", SOURCE))
        return
    for code in codes:
        if code not in RNIV_STATUSES and code not in TABLE_0445_ATTRIBUTES:
            ctx.add(
                warning("hl7v2.pid32.code", f"PID-32 code {code!r} is not in the French table 0445", "PID-32", SOURCE)
            )
    statuses = [c for c in codes if c in RNIV_STATUSES]
    if not statuses:
        ctx.add(
            warning(
                "hl7v2.pid32.status", "PID-32 carries no identity status (PROV, RECUP, VALI, QUAL)", "PID-32", SOURCE
            )
        )
        return
    status = statuses[0]
    if ctx.ins_present:
        if status == "PROV":
            ctx.add(
                warning(
                    "hl7v2.pid32.ins-status",
                    "an INS travels with a PROV identity: an identity never retrieved through INSi cannot hold an INS",
                    "PID-32",
                    SOURCE,
                )
            )
        elif status == "RECUP":
            ctx.add(
                warning(
                    "hl7v2.pid32.ins-status",
                    "an INS travels with a RECUP identity: only a qualified identity may transmit its INS",
                    "PID-32",
                    SOURCE,
                )
            )
        elif status == "VALI":
            ctx.add(
                info(
                    "hl7v2.pid32.ins-status",
                    "an INS travels with VALI, as in the ANS examples; how PAM-FR "
                    "2.11 distinguishes a qualified identity in PID-32 is not confirmed",
                    "PID-32",
                    SOURCE,
                )
            )
    elif status in ("RECUP", "QUAL"):
        ctx.add(
            error("hl7v2.pid32.status-without-ins", f"PID-32 says {status} but PID-3 carries no INS", "PID-32", SOURCE)
        )


def _check_pv1(ctx: _Context) -> None:
    texts = ctx.er7.segments_named("PV1")
    if not texts or ctx.event not in IDENTITY_EVENTS:
        return  # a missing PV1 is reported by hl7apy's structure validation
    pv1 = ctx.segment("PV1")
    patient_class = ctx.read(pv1, "pv1_2") if pv1 is not None else ""
    if patient_class != "N":
        ctx.add(
            warning(
                "hl7v2.pv1.patient-class",
                f"PV1-2 is {patient_class or '(empty)'}: an identity-only {ctx.event} has no visit (N)",
                "PV1-2",
                SOURCE,
            )
        )


def _check_zfd(ctx: _Context) -> None:
    """ZFD (PAM-FR): only fields 5 (INS obtained via) and 6 (INSi query date) are read.

    Their meaning is inferred from the ANS examples (``ZFD|||Y|N|INSI|20211201||``);
    the other fields are not understood well enough to be checked.
    """
    texts = ctx.er7.segments_named("ZFD")
    if not texts:
        if ctx.ins_present:
            ctx.add(
                info(
                    "hl7v2.zfd.missing", "no ZFD segment: how and when the INS was obtained is not sent", "ZFD", SOURCE
                )
            )
        return
    zfd = ctx.segment("ZFD")
    if zfd is None:
        ctx.add(warning("hl7v2.zfd.unreadable", "hl7apy cannot read the ZFD segment", "ZFD", SOURCE))
        return
    method = ctx.read(zfd, "zfd_5")
    query_date = ctx.read(zfd, "zfd_6")
    if ctx.ins_present and not method:
        ctx.add(info("hl7v2.zfd.method", "ZFD-5 (how the INS was obtained, e.g. INSI) is empty", "ZFD-5", SOURCE))
    if query_date and not _is_hl7_date(query_date[:8]):
        ctx.add(warning("hl7v2.zfd.insi-date", f"ZFD-6 {query_date!r} is not a YYYYMMDD date", "ZFD-6", SOURCE))


def _is_hl7_date(value: str) -> bool:
    if len(value) != 8 or not value.isdigit():
        return False
    try:
        date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return False
    return True


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {_short(str(exc))}"


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
