"""Checks on the PDFs a SUT produces: PDF/A features, the INS DataMatrix, the printed INS.

A level-1 CI-SIS document carries a PDF (``nonXMLBody``, ``shared/docs/protocols.md``
§6.2), and ANS texts require PDF/A for it (PDF/A-1 in the portability IG [C]; the
exact Structuration minimale clause is inferred [I]). The INS guides also require the
INS on printed documents, as text and as a DataMatrix. This module answers, from the
bytes alone, whether a PDF has what a PDF/A validator looks at first and whether the
INS is there.

It is **not** a full PDF/A validator (veraPDF is): it checks the identification in the
XMP metadata (``pdfaid:part``/``pdfaid:conformance``), the ``GTS_PDFA1`` OutputIntent
with an ICC profile, embedded fonts, and the forbidden features (encryption,
JavaScript, embedded files, LZW, transparency for PDF/A-1), the trailer ``/ID`` and
the header version. What it does not check is listed in :func:`check_pdfa`.

The layout of the ANS INS DataMatrix (référentiel [INS5]) is not known to us: we only
check that some DataMatrix of the document carries the 15-character matricule and the
INS OID, and say so with an info finding ``pdf.ins-datamatrix.layout-not-checked``.

Every function is bounded (input size, objects visited, image pixels) and never
raises: pikepdf, Pillow, zxing-cpp and pypdf errors become findings or empty results.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import pikepdf
from PIL import Image, ImageOps
from pypdf import PdfReader

from harness.findings import Finding, error, info, warning

SOURCE = "pdf"
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
MAX_OBJECTS = 500_000
"""Objects visited in one PDF before giving up (a warning says the walk was cut)."""
MAX_IMAGES = 200
MAX_IMAGE_PIXELS = 25_000_000
_SMALL_IMAGE = 400
"""Images narrower than this (pixels) are also tried scaled up."""

_HEADER = re.compile(rb"%PDF-([0-9])\.([0-9])")
_CONFORMANCE = {1: ("A", "B"), 2: ("A", "B", "U"), 3: ("A", "B", "U")}
_FONT_FILES = ("/FontFile", "/FontFile2", "/FontFile3")
_STANDARD_BLEND_MODES = ("/Normal", "/Compatible")

_Loc = Callable[[str], str]
"""The location helper of one check: ``loc("detail") -> "label: detail"``."""


# --------------------------------------------------------------------------------------
# PDF/A
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Walk:
    """What a walk over every object reachable from the trailer found."""

    fonts_not_embedded: set[str] = field(default_factory=set)
    transparency: list[str] = field(default_factory=list)
    lzw: list[str] = field(default_factory=list)
    javascript: list[str] = field(default_factory=list)
    embedded_files: list[str] = field(default_factory=list)
    truncated: bool = False


def check_pdfa(
    data: bytes,
    part: int = 1,
    source_label: str = "",
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[Finding]:
    """Check ``data`` against the PDF/A-``part`` features a SUT most often gets wrong.

    Rules (errors unless said): ``pdf.too-large`` (over ``max_bytes``, not opened),
    ``pdf.not-pdf``, ``pdf.unreadable`` (damaged: qpdf had to reconstruct it, or could
    not), ``pdf.encrypted``, ``pdf.header`` (``%PDF-`` not at byte 0), ``pdf.version``
    (warning: above 1.4 for PDF/A-1), ``pdf.pdfa.identification`` (no XMP, or
    ``pdfaid:part``/``pdfaid:conformance`` wrong), ``pdf.output-intent`` (no
    ``GTS_PDFA1`` intent with an ICC ``DestOutputProfile``), ``pdf.font-not-embedded``,
    ``pdf.javascript``, ``pdf.embedded-files`` (error for part 1, warning for part 2
    where only PDF/A attachments are allowed, not checked for part 3), ``pdf.lzw``,
    ``pdf.transparency`` (part 1 only: image ``SMask``, ExtGState ``SMask``, ``CA``/``ca``
    below 1 or a blend mode, transparency groups), ``pdf.trailer-id``, ``pdf.too-complex``
    (warning: the object walk stopped at :data:`MAX_OBJECTS`).

    Not checked: XMP/Info consistency, colour spaces against the OutputIntent, font
    widths and encodings, annotations and forms, the tagged structure of level A,
    every rule of ISO 19005 that veraPDF checks.

    ``source_label`` (e.g. ``"nonXMLBody"``) prefixes every location.

    Raises:
        ValueError: ``part`` is not 1, 2 or 3 (a caller's mistake, not the PDF's).
    """

    if part not in _CONFORMANCE:
        raise ValueError(f"PDF/A part must be 1, 2 or 3, not {part!r}")

    def loc(detail: str) -> str:
        return f"{source_label}: {detail}" if source_label else detail

    if len(data) > max_bytes:
        return [
            error(
                "pdf.too-large", f"{len(data)} bytes, above the {max_bytes}-byte limit: not opened", loc("file"), SOURCE
            )
        ]
    start = data.find(b"%PDF-", 0, 1024)
    if start < 0:
        what = "empty" if not data else f"starts with {data[:8]!r}"
        return [error("pdf.not-pdf", f"not a PDF ({what}): no %PDF- header", loc("header"), SOURCE)]
    findings: list[Finding] = []
    if start > 0:
        findings.append(error("pdf.header", f"the %PDF- header is at byte {start}, not 0", loc("header"), SOURCE))
    findings.extend(_check_version(data[start:], part, loc))
    pdf, opened = _open(data, loc)
    findings.extend(opened)
    if pdf is None:
        return findings
    with pdf:
        try:
            findings.extend(_check_document(pdf, part, loc))
        except Exception as exc:  # a hostile PDF must not crash the run
            findings.append(error("pdf.unreadable", f"the PDF could not be inspected: {exc}", loc("file"), SOURCE))
    return findings


def _check_version(data: bytes, part: int, loc: _Loc) -> list[Finding]:
    match = _HEADER.match(data)
    if not match:
        return [error("pdf.header", f"malformed PDF header {data[:12]!r}", loc("header"), SOURCE)]
    major, minor = int(match.group(1)), int(match.group(2))
    if part == 1 and (major, minor) > (1, 4):
        return [
            warning("pdf.version", f"PDF {major}.{minor} header: PDF/A-1 is based on PDF 1.4", loc("header"), SOURCE)
        ]
    return []


def _open(data: bytes, loc: _Loc) -> tuple[pikepdf.Pdf | None, list[Finding]]:
    """Open strictly; if that fails, say so and try qpdf's reconstruction to go on checking."""
    encrypted = error("pdf.encrypted", "the PDF is encrypted with a user password", loc("trailer"), SOURCE)
    try:
        return pikepdf.open(io.BytesIO(data), attempt_recovery=False), []
    except pikepdf.PasswordError:
        return None, [encrypted]
    except Exception as exc:  # pikepdf raises several types on damaged files
        reason = _short(exc)
    try:
        pdf = pikepdf.open(io.BytesIO(data), attempt_recovery=True)
    except pikepdf.PasswordError:
        return None, [error("pdf.unreadable", f"the PDF is damaged ({reason})", loc("file"), SOURCE), encrypted]
    except Exception as exc:
        message = f"the PDF is damaged or truncated beyond repair ({reason}; {_short(exc)})"
        return None, [error("pdf.unreadable", message, loc("file"), SOURCE)]
    message = f"the PDF is damaged or truncated ({reason}); later findings come from qpdf's repair"
    return pdf, [error("pdf.unreadable", message, loc("file"), SOURCE)]


_STREAM_NAME = re.compile(r"^(?:stream )?<_io\.BytesIO object at 0x[0-9a-fA-F]+>:? *")


def _short(exc: BaseException) -> str:
    """The first line of an exception message, without qpdf's name for our in-memory stream."""
    lines = str(exc).strip().splitlines()
    return _STREAM_NAME.sub("", lines[0])[:200] if lines else type(exc).__name__


def _check_document(pdf: pikepdf.Pdf, part: int, loc: _Loc) -> list[Finding]:
    findings: list[Finding] = []
    if pdf.is_encrypted:
        findings.append(error("pdf.encrypted", "the PDF is encrypted (PDF/A forbids /Encrypt)", loc("trailer"), SOURCE))
    if "/ID" not in pdf.trailer:
        findings.append(error("pdf.trailer-id", "the trailer has no /ID", loc("trailer"), SOURCE))
    findings.extend(_check_identification(pdf, part, loc))
    findings.extend(_check_output_intent(pdf, loc))
    walk = _walk(pdf)
    for font in sorted(walk.fonts_not_embedded):
        findings.append(error("pdf.font-not-embedded", f"font {font} is not embedded", loc(f"font {font}"), SOURCE))
    findings.extend(_once("pdf.javascript", "the PDF contains JavaScript", walk.javascript, loc))
    findings.extend(_once("pdf.lzw", "LZWDecode is forbidden in PDF/A", walk.lzw, loc))
    if part == 1:
        findings.extend(_once("pdf.transparency", "PDF/A-1 forbids transparency", walk.transparency, loc))
        findings.extend(_once("pdf.embedded-files", "PDF/A-1 forbids embedded files", walk.embedded_files, loc))
    elif part == 2:
        findings.extend(
            _once(
                "pdf.embedded-files",
                "PDF/A-2 allows only PDF/A embedded files; the attachments were not checked",
                walk.embedded_files,
                loc,
                severity_error=False,
            )
        )
    if walk.truncated:
        findings.append(
            warning("pdf.too-complex", f"more than {MAX_OBJECTS} objects: the walk stopped there", loc("file"), SOURCE)
        )
    return findings


def _once(rule: str, message: str, where: list[str], loc: _Loc, *, severity_error: bool = True) -> list[Finding]:
    """One finding for all the places a forbidden feature was seen (the first three named)."""
    if not where:
        return []
    if len(where) > 1:
        more = f" and {len(where) - 3} more" if len(where) > 3 else ""
        message = f"{message}, in {len(where)} places: {', '.join(where[:3])}{more}"
    make = error if severity_error else warning
    return [make(rule, message, loc(where[0]), SOURCE)]


def _check_identification(pdf: pikepdf.Pdf, part: int, loc: _Loc) -> list[Finding]:
    rule = "pdf.pdfa.identification"
    if "/Metadata" not in pdf.Root:
        return [error(rule, "no XMP metadata stream (/Root /Metadata): no PDF/A identification", loc("XMP"), SOURCE)]
    try:
        meta = pdf.open_metadata(set_pikepdf_as_editor=False, update_docinfo=False, strict=True)
        found_part = str(meta.get("pdfaid:part", "") or "").strip()
        conformance = str(meta.get("pdfaid:conformance", "") or "").strip()
    except Exception as exc:  # malformed XMP
        return [error(rule, f"the XMP metadata cannot be parsed: {_short(exc)}", loc("XMP"), SOURCE)]
    findings: list[Finding] = []
    if found_part != str(part):
        findings.append(error(rule, f"pdfaid:part is {found_part or 'absent'}, {part} expected", loc("XMP"), SOURCE))
    allowed = _CONFORMANCE[part]
    if conformance.upper() not in allowed:
        findings.append(
            error(
                rule,
                f"pdfaid:conformance is {conformance or 'absent'}, one of {'/'.join(allowed)} expected",
                loc("XMP"),
                SOURCE,
            )
        )
    return findings


def _check_output_intent(pdf: pikepdf.Pdf, loc: _Loc) -> list[Finding]:
    rule = "pdf.output-intent"
    intents = pdf.Root.get("/OutputIntents")
    if not isinstance(intents, pikepdf.Array):
        return [error(rule, "no /OutputIntents in the catalog", loc("/Root/OutputIntents"), SOURCE)]
    for index, intent in enumerate(intents):
        if not isinstance(intent, pikepdf.Dictionary) or intent.get("/S") != pikepdf.Name.GTS_PDFA1:
            continue
        profile = intent.get("/DestOutputProfile")
        if not isinstance(profile, pikepdf.Stream):
            return [
                error(rule, "the GTS_PDFA1 OutputIntent has no DestOutputProfile", loc(f"OutputIntent {index}"), SOURCE)
            ]
        try:
            icc = profile.read_bytes()
        except Exception as exc:
            return [error(rule, f"the ICC profile cannot be read: {_short(exc)}", loc(f"OutputIntent {index}"), SOURCE)]
        if len(icc) < 128 or icc[36:40] != b"acsp":
            return [error(rule, "DestOutputProfile is not an ICC profile", loc(f"OutputIntent {index}"), SOURCE)]
        return []
    return [error(rule, "no OutputIntent with /S /GTS_PDFA1", loc("/Root/OutputIntents"), SOURCE)]


def _walk(pdf: pikepdf.Pdf) -> _Walk:
    """Visit every object reachable from the trailer once (iteratively, bounded).

    Each object is named by the first key path that reached it, e.g.
    ``/Root/Pages/Kids[0]/Resources/XObject/Im1 (obj 10 0)``.
    """
    found = _Walk()
    seen: set[tuple[int, int]] = set()
    stack: list[tuple[pikepdf.Object, str]] = [(pdf.trailer, "")]
    visited = 0
    while stack:
        obj, path = stack.pop()
        if obj.is_indirect:
            if obj.objgen in seen:
                continue
            seen.add(obj.objgen)
        visited += 1
        if visited > MAX_OBJECTS:
            found.truncated = True
            break
        if isinstance(obj, pikepdf.Array):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(obj) if _is_container(item))
            continue
        if not isinstance(obj, (pikepdf.Dictionary, pikepdf.Stream)):
            continue
        where = f"{path or 'trailer'} (obj {obj.objgen[0]} {obj.objgen[1]})" if obj.is_indirect else path or "trailer"
        _inspect(obj, where, found)
        stack.extend((value, f"{path}{key}") for key, value in obj.items() if key != "/Parent" and _is_container(value))
    return found


def _is_container(obj: pikepdf.Object) -> bool:
    return isinstance(obj, (pikepdf.Array, pikepdf.Dictionary, pikepdf.Stream))


def _names(value: pikepdf.Object | None) -> list[pikepdf.Object]:
    if value is None:
        return []
    return list(value) if isinstance(value, pikepdf.Array) else [value]


def _inspect(obj: pikepdf.Object, where: str, found: _Walk) -> None:
    """Record what ``obj`` (a dictionary or a stream) holds that PDF/A forbids or needs."""
    type_ = obj.get("/Type")
    subtype = obj.get("/Subtype")
    is_stream = isinstance(obj, pikepdf.Stream)
    if is_stream and pikepdf.Name.LZWDecode in _names(obj.get("/Filter")):
        found.lzw.append(where)
    if is_stream and subtype == pikepdf.Name.Image and "/SMask" in obj:
        found.transparency.append(f"{where} (image with SMask)")
    if type_ == pikepdf.Name.Font or (subtype in _FONT_SUBTYPES and "/BaseFont" in obj):
        name = _font_name(obj)
        if name and not _font_embedded(obj):
            found.fonts_not_embedded.add(name)
    if not is_stream and (type_ == pikepdf.Name.ExtGState or any(k in obj for k in ("/CA", "/ca", "/SMask", "/BM"))):
        _inspect_transparency_state(obj, where, found)
    if obj.get("/S") == pikepdf.Name.Transparency:
        found.transparency.append(f"{where} (transparency group)")
    if obj.get("/S") == pikepdf.Name.JavaScript or "/JS" in obj:
        found.javascript.append(where)
    if "/JavaScript" in obj and type_ is None and subtype is None:
        found.javascript.append(f"{where} (/Names /JavaScript)")
    if "/EmbeddedFiles" in obj:
        found.embedded_files.append(f"{where} (/Names /EmbeddedFiles)")
    elif "/EF" in obj:
        found.embedded_files.append(f"{where} (file specification with /EF)")


_FONT_SUBTYPES = {
    pikepdf.Name.Type1,
    pikepdf.Name.MMType1,
    pikepdf.Name.TrueType,
    pikepdf.Name.Type0,
    pikepdf.Name.CIDFontType0,
    pikepdf.Name.CIDFontType2,
}


def _font_name(font: pikepdf.Object) -> str:
    base = font.get("/BaseFont")
    return str(base) if base is not None else str(font.get("/Name", ""))


def _font_embedded(font: pikepdf.Object) -> bool:
    subtype = font.get("/Subtype")
    if subtype == pikepdf.Name.Type3:
        return True  # glyphs are content streams of the file itself
    if subtype == pikepdf.Name.Type0:
        descendants = font.get("/DescendantFonts")
        if not isinstance(descendants, pikepdf.Array) or len(descendants) == 0:
            return False
        font = descendants[0]
    descriptor = font.get("/FontDescriptor")
    return isinstance(descriptor, pikepdf.Dictionary) and any(key in descriptor for key in _FONT_FILES)


def _inspect_transparency_state(state: pikepdf.Object, where: str, found: _Walk) -> None:
    """ExtGState (or annotation) keys that make transparency: SMask, CA/ca below 1, a blend mode."""
    smask = state.get("/SMask")
    if smask is not None and smask != pikepdf.Name("/None"):
        found.transparency.append(f"{where} (soft mask)")
    for key in ("/CA", "/ca"):
        value = state.get(key)
        if isinstance(value, (int, float, Decimal)) and float(value) < 1.0:
            found.transparency.append(f"{where} ({key[1:]} {float(value)})")
    blends = [str(b) for b in _names(state.get("/BM"))]
    if any(b not in _STANDARD_BLEND_MODES for b in blends):
        found.transparency.append(f"{where} (blend mode {'/'.join(blends)})")


# --------------------------------------------------------------------------------------
# DataMatrix
# --------------------------------------------------------------------------------------


def read_datamatrix(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> list[str]:
    """The texts of every DataMatrix symbol found in the image XObjects of every page.

    Images in Form XObjects are searched too. A small image that decodes nothing is
    tried again with a white quiet zone and scaled up. Inline images and symbols drawn
    as vector paths are not seen (that would need a page renderer). Never raises.
    """
    if len(data) > max_bytes or b"%PDF-" not in data[:1024]:
        return []
    texts: list[str] = []
    try:
        with pikepdf.open(io.BytesIO(data)) as pdf:
            for image in _page_images(pdf):
                for text in _decode(image):
                    if text not in texts:
                        texts.append(text)
    except Exception:  # an unreadable PDF simply has no readable symbol
        return texts
    return texts


def _page_images(pdf: pikepdf.Pdf) -> Iterator[Image.Image]:
    seen: set[tuple[int, int]] = set()
    count = 0
    for page in pdf.pages:
        stack: list[pikepdf.Object] = [page.obj]
        while stack and count < MAX_IMAGES:
            holder = stack.pop()
            resources = holder.get("/Resources")
            xobjects = resources.get("/XObject") if isinstance(resources, pikepdf.Dictionary) else None
            if not isinstance(xobjects, pikepdf.Dictionary):
                continue
            for _, xobject in xobjects.items():
                if not isinstance(xobject, pikepdf.Stream) or xobject.objgen in seen:
                    continue
                if xobject.is_indirect:
                    seen.add(xobject.objgen)
                if xobject.get("/Subtype") == pikepdf.Name.Form:
                    stack.append(xobject)
                elif xobject.get("/Subtype") == pikepdf.Name.Image:
                    image = _to_pil(xobject)
                    if image is not None:
                        count += 1
                        yield image


def _to_pil(stream: pikepdf.Stream) -> Image.Image | None:
    try:
        width, height = int(stream.get("/Width", 0)), int(stream.get("/Height", 0))
        if width <= 0 or height <= 0 or width * height > MAX_IMAGE_PIXELS:
            return None
        return pikepdf.PdfImage(stream).as_pil_image()
    except Exception:  # unsupported filters, bad data
        return None


def _decode(image: Image.Image) -> list[str]:
    """Decode as is; a small image that gives nothing is retried with a quiet zone, scaled up,
    then also binarised (a grey surround becomes white quiet zone)."""
    try:
        gray = image.convert("L")
        texts = _read(gray)
        if texts or max(gray.size) >= _SMALL_IMAGE:
            return texts
        binary = gray.point(lambda v: 255 if v >= 128 else 0)
        for candidate in (gray, binary):
            texts = _read(_quiet_and_large(candidate))
            if texts:
                return texts
        return []
    except Exception:  # Pillow or zxing failure on odd images
        return []


def _quiet_and_large(image: Image.Image) -> Image.Image:
    padded = ImageOps.expand(image, border=max(8, max(image.size) // 5), fill=255)
    factor = max(2, _SMALL_IMAGE // max(padded.size))
    return padded.resize((padded.width * factor, padded.height * factor), Image.Resampling.NEAREST)


def _read(image: Image.Image) -> list[str]:
    # Imported here, not at module level: zxing-cpp's nanobind module aborts the process if it
    # is initialised twice, which happens when pytest's in-process runs drop and re-import modules.
    import zxingcpp

    formats = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.DataMatrix)
    return [b.text for b in zxingcpp.read_barcodes(image, formats=formats) if b.valid]


def check_ins_datamatrix(data: bytes, matricule: str, oid: str) -> list[Finding]:
    """Errors when no DataMatrix decodes, or none carries the matricule INS and its OID.

    Rules: ``pdf.ins-datamatrix.missing``, ``pdf.ins-datamatrix.ins`` (errors) and
    always ``pdf.ins-datamatrix.layout-not-checked`` (info): the field layout of the
    ANS INS DataMatrix [INS5] is not known to us, so only the presence of both values
    in the decoded text is checked (inferred).
    """
    findings = [
        info(
            "pdf.ins-datamatrix.layout-not-checked",
            "the field layout of the ANS INS DataMatrix is not checked: only that it carries the matricule and OID",
            "DataMatrix",
            SOURCE,
        )
    ]
    texts = read_datamatrix(data)
    if not texts:
        findings.insert(0, error("pdf.ins-datamatrix.missing", "no DataMatrix could be decoded", "DataMatrix", SOURCE))
        return findings
    wanted = matricule.replace(" ", "")
    if not any(wanted in text.replace(" ", "") and oid in text for text in texts):
        findings.insert(
            0,
            error(
                "pdf.ins-datamatrix.ins",
                f"none of the {len(texts)} DataMatrix symbols carries matricule {wanted} with OID {oid}",
                "DataMatrix",
                SOURCE,
            ),
        )
    return findings


# --------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------


def pdf_text(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """The extractable text of every page (pypdf), or "" when there is none or on any error."""
    if len(data) > max_bytes or not data:
        return ""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            return ""
        return "\n".join(page.extract_text() or "" for page in reader.pages)
    except Exception:  # pypdf raises many types on damaged files
        return ""


_BLANKS = re.compile(r"\s+")


def check_ins_printed(data: bytes, matricule: str) -> list[Finding]:
    """Error ``pdf.ins-printed`` unless the matricule INS appears in the text (spaces ignored)."""
    wanted = _BLANKS.sub("", matricule)
    text = _BLANKS.sub("", pdf_text(data))
    if wanted and wanted in text:
        return []
    reason = "the PDF has no extractable text" if not text else f"matricule INS {wanted} is not in the text"
    return [error("pdf.ins-printed", reason, "text", SOURCE)]
