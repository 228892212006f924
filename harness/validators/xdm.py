"""An IHE XDM package (``IHE_XDM.ZIP``) received or sent over MSSanté, read without trusting it.

The zip comes from the SUT or from a peer: anything. This module opens it with
bounded streaming (member count, declared and actual uncompressed sizes, compression
ratio), refuses hostile names (zip slip), encrypted members and symlinks, then checks
the XDM media layout (IHE ITI TF-1 §16 / TF-3 §4.1 — ``shared/docs/protocols.md``
§3.2, marked [I] there): ``INDEX.HTM`` and ``README.TXT`` at the root, one
``IHE_XDM/<subset>/METADATA.XML`` per submission set, every ``DocumentEntry`` ``URI``
slot naming a file of its subset. Each ``METADATA.XML`` is parsed with the CDA
parser's safe settings (no DTD, no entities, no network) and judged by
:func:`harness.validators.xds.check_submission` with the bytes each ``URI`` names, so
the hash/size and CDA cross-checks run as for a DMP feed.

Inferred, not read in an ANS text [I]: the subset folder is named ``SUBSETnn`` (other
names are a warning), and the "same document as PDF/A-1 beside it" is a PDF file in
the same subset folder, referenced or not (a PDF there is never reported as an
unreferenced document).
"""

from __future__ import annotations

import io
import re
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from lxml import etree

from harness.findings import Finding, error, warning
from harness.validators.cda.parsing import safe_parser as safe_xml_parser
from harness.validators.pdf import check_pdfa
from harness.validators.xds import RIM, check_submission, document_entries, slot_values

SOURCE = "xdm"
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_MEMBERS = 1000
DEFAULT_MAX_UNCOMPRESSED = 200 * 1024 * 1024
MAX_RATIO = 100
"""A member inflating more than this many times (and over :data:`RATIO_FLOOR` bytes) is a bomb."""
RATIO_FLOOR = 1024 * 1024
CHUNK = 64 * 1024
CDA_MIME_TYPES = frozenset({"text/xml", "application/xml"})

_DRIVE = re.compile(r"^[A-Za-z]:")
_METADATA = re.compile(r"^IHE_XDM/([^/]+)/METADATA\.XML$", re.IGNORECASE)
_SUBSET_NAME = re.compile(r"^SUBSET\d{2,}$")


@dataclass(slots=True)
class XdmReport:
    """What reading an XDM package found.

    Attributes:
        findings: every finding, in the order produced.
        documents: path in the zip → bytes, for the members that were read safely.
        metadata_paths: the ``METADATA.XML`` paths found, as spelled in the zip.
    """

    findings: list[Finding] = field(default_factory=list)
    documents: dict[str, bytes] = field(default_factory=dict)
    metadata_paths: list[str] = field(default_factory=list)


def check_xdm(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED,
    expected_ins: tuple[str, str] | None = None,
) -> XdmReport:
    """Every finding about one XDM zip; never raises on hostile input.

    Rules (errors unless said): ``xdm.zip.too-large``, ``xdm.zip.unreadable``,
    ``xdm.zip.members`` (more than ``max_members``), ``xdm.zip.path`` (absolute, ``..``,
    backslash, drive letter), ``xdm.zip.encrypted``, ``xdm.zip.symlink``, ``xdm.zip.bomb``
    (declared or actual size over ``max_uncompressed``, ratio over :data:`MAX_RATIO`, or
    more bytes than declared), ``xdm.zip.duplicate`` (warning), ``xdm.layout.index``,
    ``xdm.layout.readme``, ``xdm.layout.metadata``, ``xdm.layout.case`` (warning),
    ``xdm.layout.subset-name`` (warning), ``xdm.layout.unreferenced`` (warning),
    ``xdm.metadata.unsafe`` (DOCTYPE/entities: refused, never expanded),
    ``xdm.metadata.unreadable``, ``xdm.metadata.not-ebrim``, ``xdm.uri.missing`` (entry
    without ``URI`` slot), ``xdm.uri.path``, ``xdm.uri.missing-file``, ``xdm.pdf.missing``
    (warning), then every ``xds.*`` finding of ``check_submission`` and every ``pdf.*``
    finding of ``check_pdfa`` (part 1) for each PDF of a subset.
    """
    report = read_xdm(data, max_bytes=max_bytes, max_members=max_members, max_uncompressed=max_uncompressed)
    if not any(f.rule in ("xdm.zip.too-large", "xdm.zip.unreadable") for f in report.findings):
        _check_layout(report, expected_ins)
    return report


def read_xdm(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED,
) -> XdmReport:
    """The members that read safely, and the zip-level findings only (no layout, metadata or PDF checks).

    For callers that need the documents of an XDM (the MSSanté header checks) without judging it twice.
    """
    report = XdmReport()
    if len(data) > max_bytes:
        report.findings.append(
            error(
                "xdm.zip.too-large", f"{len(data):,} bytes, above the {max_bytes:,}-byte limit: not opened", "", SOURCE
            )
        )
        return report
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        report.findings.append(error("xdm.zip.unreadable", f"not a readable zip: {exc}", "", SOURCE))
        return report
    with archive:
        _read_members(archive, report, max_members, max_uncompressed)
    return report


# -- the zip ----------------------------------------------------------------------------------------
def unsafe_name(name: str) -> str:
    """Why a member name could escape the extraction folder, or "" when it cannot."""
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/"):
        return "is absolute"
    if _DRIVE.match(name):
        return "starts with a drive letter"
    if ".." in PurePosixPath(name).parts:
        return "contains '..'"
    if "\x00" in name:
        return "contains a NUL byte"
    return ""


def _read_members(archive: zipfile.ZipFile, report: XdmReport, max_members: int, max_uncompressed: int) -> None:
    try:
        members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        report.findings.append(error("xdm.zip.unreadable", f"the zip directory is broken: {exc}", "", SOURCE))
        return
    if len(members) > max_members:
        report.findings.append(
            error("xdm.zip.members", f"{len(members)} members, above the limit of {max_members}: not read", "", SOURCE)
        )
        return
    declared_total = sum(m.file_size for m in members)
    if declared_total > max_uncompressed:
        report.findings.append(
            error(
                "xdm.zip.bomb",
                f"the members declare {declared_total:,} uncompressed bytes, above {max_uncompressed:,}",
                "",
                SOURCE,
            )
        )
    budget = max_uncompressed
    for member in members:
        name = member.filename
        if member.is_dir():
            continue
        why = unsafe_name(name)
        if why:
            report.findings.append(error("xdm.zip.path", f"member name {name!r} {why}", name, SOURCE))
            continue
        if name in report.documents:
            report.findings.append(warning("xdm.zip.duplicate", f"member {name!r} appears twice", name, SOURCE))
            continue
        if member.flag_bits & 0x1:
            report.findings.append(error("xdm.zip.encrypted", f"member {name!r} is encrypted", name, SOURCE))
            continue
        if stat.S_ISLNK(member.external_attr >> 16):
            report.findings.append(error("xdm.zip.symlink", f"member {name!r} is a symbolic link", name, SOURCE))
            continue
        problem = _declared_bomb(member, min(budget, max_uncompressed))
        if problem:
            report.findings.append(error("xdm.zip.bomb", problem, name, SOURCE))
            continue
        content = _bounded_read(archive, member, budget, report)
        if content is None:
            continue
        budget -= len(content)
        report.documents[name] = content


def _declared_bomb(member: zipfile.ZipInfo, budget: int) -> str:
    if member.file_size > budget:
        return f"member {member.filename!r} declares {member.file_size:,} bytes, above the {budget:,} still allowed"
    ratio = member.file_size / max(member.compress_size, 1)
    if member.file_size > RATIO_FLOOR and ratio > MAX_RATIO:
        return f"member {member.filename!r} inflates {ratio:,.0f} times (limit {MAX_RATIO})"
    return ""


def _bounded_read(archive: zipfile.ZipFile, member: zipfile.ZipInfo, budget: int, report: XdmReport) -> bytes | None:
    """The member's bytes, read by chunks and stopped past its declared size or the budget."""
    name = member.filename
    limit = min(member.file_size, budget)
    chunks: list[bytes] = []
    total = 0
    try:
        with archive.open(member) as stream:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > limit:
                    report.findings.append(
                        error(
                            "xdm.zip.bomb",
                            f"member {name!r} inflates past {limit:,} bytes (declared {member.file_size:,}): not read",
                            name,
                            SOURCE,
                        )
                    )
                    return None
                chunks.append(chunk)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as exc:
        report.findings.append(error("xdm.zip.unreadable", f"member {name!r} cannot be read: {exc}", name, SOURCE))
        return None
    except Exception as exc:  # zlib.error and friends: a hostile member must not crash the run
        report.findings.append(error("xdm.zip.unreadable", f"member {name!r} cannot be read: {exc}", name, SOURCE))
        return None
    return b"".join(chunks)


# -- the XDM layout -----------------------------------------------------------------------------------
def _find(documents: dict[str, bytes], wanted: str, findings: list[Finding]) -> str | None:
    """The member spelled ``wanted``, or its case variant (with a warning), or None."""
    if wanted in documents:
        return wanted
    for name in documents:
        if name.upper() == wanted.upper():
            findings.append(warning("xdm.layout.case", f"{wanted} is spelled {name!r} in the zip", name, SOURCE))
            return name
    return None


def _check_layout(report: XdmReport, expected_ins: tuple[str, str] | None) -> None:
    findings, documents = report.findings, report.documents
    for wanted, rule in (("INDEX.HTM", "xdm.layout.index"), ("README.TXT", "xdm.layout.readme")):
        if _find(documents, wanted, findings) is None:
            findings.append(error(rule, f"no {wanted} at the root of the package", wanted, SOURCE))
    subsets: dict[str, str] = {}
    for name in documents:
        match = _METADATA.match(name)
        if not match:
            continue
        report.metadata_paths.append(name)
        folder = name.rsplit("/", 1)[0]
        subsets[folder] = name
        canonical = f"IHE_XDM/{match[1].upper()}/METADATA.XML"
        if name != canonical:
            findings.append(warning("xdm.layout.case", f"{canonical} is spelled {name!r}", name, SOURCE))
        if not _SUBSET_NAME.match(match[1].upper()):
            findings.append(
                warning("xdm.layout.subset-name", f"subset folder {match[1]!r} is not named SUBSETnn", name, SOURCE)
            )
    if not subsets:
        findings.append(
            error("xdm.layout.metadata", "no IHE_XDM/SUBSETnn/METADATA.XML in the package", "IHE_XDM/", SOURCE)
        )
    referenced: set[str] = set()
    for folder, metadata in subsets.items():
        referenced |= _check_subset(report, folder, metadata, expected_ins)
    for name in documents:
        if not name.upper().startswith("IHE_XDM/") or name in referenced or _METADATA.match(name):
            continue
        folder = name.rsplit("/", 1)[0]
        if folder in subsets and _is_pdf(name, documents[name]):
            continue  # the human-readable copy of the subset's CDA
        findings.append(warning("xdm.layout.unreferenced", f"{name!r} is named by no DocumentEntry URI", name, SOURCE))


def _is_pdf(name: str, content: bytes) -> bool:
    return name.lower().endswith(".pdf") or content[:1024].lstrip().startswith(b"%PDF-")


def parse_metadata(content: bytes, where: str) -> tuple[etree._Element | None, list[Finding]]:
    """A ``METADATA.XML`` parsed safely: a DOCTYPE or an entity is refused, never expanded."""
    if b"<!DOCTYPE" in content.upper() or b"<!ENTITY" in content.upper():
        return None, [
            error("xdm.metadata.unsafe", "METADATA.XML declares a DOCTYPE or entities: refused", where, SOURCE)
        ]
    try:
        tree = etree.ElementTree(etree.fromstring(content, safe_xml_parser()))
    except (etree.XMLSyntaxError, ValueError) as exc:
        return None, [error("xdm.metadata.unreadable", f"METADATA.XML is not well-formed XML: {exc}", where, SOURCE)]
    docinfo = tree.docinfo
    root = tree.getroot()
    if (
        docinfo.internalDTD is not None
        or docinfo.externalDTD is not None
        or any(isinstance(node, etree._Entity) for node in root.iter())
    ):
        return None, [error("xdm.metadata.unsafe", "METADATA.XML uses a DTD or entities: refused", where, SOURCE)]
    if root.find(f".//{{{RIM}}}RegistryObjectList") is None:
        return None, [error("xdm.metadata.not-ebrim", "METADATA.XML holds no rim:RegistryObjectList", where, SOURCE)]
    return root, []


def _check_subset(report: XdmReport, folder: str, metadata: str, expected_ins: tuple[str, str] | None) -> set[str]:
    """The findings of one submission set; returns the member names its entries reference."""
    findings, documents = report.findings, report.documents
    root, problems = parse_metadata(documents[metadata], metadata)
    findings.extend(problems)
    if root is None:
        return set()
    referenced: set[str] = set()
    by_entry: dict[str, bytes] = {}
    cda_entries = 0
    for entry in document_entries(root):
        entry_id = entry.get("id", "")
        where = f"{metadata}: ExtrinsicObject[@id='{entry_id}']"
        if entry.get("mimeType") in CDA_MIME_TYPES:
            cda_entries += 1
        uris = slot_values(entry, "URI")
        if not uris or not uris[0]:
            findings.append(error("xdm.uri.missing", "the DocumentEntry has no URI slot", where, SOURCE))
            continue
        uri = uris[0]
        why = unsafe_name(uri) or ("is not a relative path" if ":" in uri else "")
        if why:
            findings.append(error("xdm.uri.path", f"URI {uri!r} {why}", where, SOURCE))
            continue
        member = _find(documents, f"{folder}/{uri}", findings)
        if member is None:
            findings.append(
                error("xdm.uri.missing-file", f"URI {uri!r} names no file of {folder}/ in the package", where, SOURCE)
            )
            continue
        referenced.add(member)
        by_entry[entry_id] = documents[member]
    findings.extend(
        Finding(f.severity, f.rule, f.message, f"{metadata}: {f.location}", f.source, f.rule_file)
        for f in check_submission(root, by_entry, expected_ins=expected_ins)
    )
    pdfs = [n for n in documents if n.rsplit("/", 1)[0] == folder and _is_pdf(n, documents[n])]
    if len(pdfs) < cda_entries:
        findings.append(
            warning(
                "xdm.pdf.missing",
                f"{cda_entries} CDA entries but {len(pdfs)} PDF beside them in {folder}/ (PDF/A-1 copy expected)",
                folder,
                SOURCE,
            )
        )
    for pdf in pdfs:
        findings.extend(check_pdfa(documents[pdf], 1, source_label=pdf))
    return referenced
