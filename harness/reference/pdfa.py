"""PDF/A-1b files for Cabinet Témoin: the page a practice prints, in an archivable PDF.

reportlab lays the page out with an embedded TrueType font (Bitstream Vera, shipped with
reportlab), never one of the 14 standard fonts that PDF/A forbids unembedded. pikepdf then
gives the file what PDF/A-1b (ISO 19005-1, level B) asks of it: XMP metadata carrying the
PDF/A identification (``pdfaid:part`` 1, ``pdfaid:conformance`` B) and the same title,
author, subject, tool, producer and dates as the Info dictionary; an sRGB output intent
(``/GTS_PDFA1``); PDF 1.4 with a classic cross-reference table; a trailer ``/ID``. There is
no transparency: the only image is an opaque greyscale DataMatrix, no soft mask, no alpha.

``archival=False`` (the ``pdf-not-pdfa`` defect) writes the same page with the standard
Helvetica font, not embedded, and no XMP metadata at all.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from xml.sax.saxutils import escape

import pikepdf
import reportlab
from PIL import Image, ImageCms
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader, simpleSplit
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

FONT_DIR = Path(reportlab.__file__).parent / "fonts"
REGULAR, BOLD = "Vera", "VeraBd"
STANDARD_REGULAR, STANDARD_BOLD = "Helvetica", "Helvetica-Bold"
MARGIN = 56.0
DATAMATRIX_SIDE = 80.0
"""Printed side of the INS DataMatrix, in points (about 28 mm)."""
SRGB_CONDITION = "sRGB IEC61966-2.1"


@dataclass(frozen=True, slots=True)
class PrintedDocument:
    """What the page says; every line is plain text, wrapped to the page width."""

    title: str
    author: str
    subject: str
    created: datetime
    """An aware date-time: the creation and modification date of the file."""
    producer: str
    letterhead: tuple[str, ...]
    identity: tuple[str, ...]
    body: tuple[str, ...]
    footer: str = ""
    datamatrix: Image.Image | None = None


def build_pdf(document: PrintedDocument, archival: bool = True) -> bytes:
    """The PDF of ``document``: PDF/A-1b, or (``archival=False``) a plain PDF with a standard font."""
    regular, bold = _fonts() if archival else (STANDARD_REGULAR, STANDARD_BOLD)
    layout = io.BytesIO()
    canvas = Canvas(layout, pagesize=A4, pdfVersion=(1, 4), invariant=True, initialFontName=regular)
    _draw(canvas, document, regular, bold)
    canvas.showPage()
    canvas.save()
    with pikepdf.open(io.BytesIO(layout.getvalue())) as pdf:
        _set_info(pdf, document)
        _add_output_intent(pdf)
        if archival:
            pdf.Root.Metadata = pdf.make_stream(
                _xmp(document).encode("utf-8"), Type=pikepdf.Name.Metadata, Subtype=pikepdf.Name.XML
            )
        out = io.BytesIO()
        pdf.save(
            out,
            force_version="1.4",
            object_stream_mode=pikepdf.ObjectStreamMode.disable,
            fix_metadata_version=False,
            deterministic_id=True,
        )
    return out.getvalue()


@cache
def _fonts() -> tuple[str, str]:
    """Register the embedded TrueType fonts once per process."""
    pdfmetrics.registerFont(TTFont(REGULAR, str(FONT_DIR / "Vera.ttf")))
    pdfmetrics.registerFont(TTFont(BOLD, str(FONT_DIR / "VeraBd.ttf")))
    return REGULAR, BOLD


def _draw(canvas: Canvas, document: PrintedDocument, regular: str, bold: str) -> None:
    width, height = A4
    text_width = width - 2 * MARGIN
    y = height - MARGIN
    if document.datamatrix is not None:
        side = DATAMATRIX_SIDE
        canvas.drawImage(ImageReader(document.datamatrix), width - MARGIN - side, y - side, side, side)
        canvas.setFont(regular, 7)
        canvas.drawCentredString(width - MARGIN - side / 2, y - side - 9, "INS")
        text_width -= side + 12
    for index, line in enumerate(document.letterhead):
        canvas.setFont(bold if index == 0 else regular, 12 if index == 0 else 9)
        canvas.drawString(MARGIN, y - 12, line)
        y -= 16 if index == 0 else 12
    y = min(y, height - MARGIN - DATAMATRIX_SIDE - 16) - 24
    canvas.setFont(bold, 16)
    canvas.drawString(MARGIN, y, document.title)
    y -= 28
    canvas.setFont(bold, 10)
    canvas.drawString(MARGIN, y, "Patient")
    y -= 14
    y = _paragraphs(canvas, document.identity, regular, 10, y, width - 2 * MARGIN)
    y -= 14
    _paragraphs(canvas, document.body, regular, 10, y, width - 2 * MARGIN)
    if document.footer:
        canvas.setFont(regular, 7)
        canvas.drawString(MARGIN, MARGIN / 2, document.footer)


def _paragraphs(canvas: Canvas, lines: tuple[str, ...], font: str, size: float, y: float, width: float) -> float:
    canvas.setFont(font, size)
    for line in lines:
        for part in simpleSplit(line, font, size, width) or [""]:
            canvas.drawString(MARGIN, y, part)
            y -= size * 1.4
    return y


def _set_info(pdf: pikepdf.Pdf, document: PrintedDocument) -> None:
    stamp = _pdf_date(document.created)
    info = pdf.make_indirect(
        pikepdf.Dictionary(
            Title=document.title,
            Author=document.author,
            Subject=document.subject,
            Creator=document.producer,
            Producer=document.producer,
            CreationDate=stamp,
            ModDate=stamp,
        )
    )
    pdf.trailer.Info = info


def _add_output_intent(pdf: pikepdf.Pdf) -> None:
    profile = pdf.make_stream(srgb_icc_profile(), N=3)
    intent = pikepdf.Dictionary(
        Type=pikepdf.Name.OutputIntent,
        S=pikepdf.Name.GTS_PDFA1,
        OutputConditionIdentifier=SRGB_CONDITION,
        Info=SRGB_CONDITION,
        DestOutputProfile=profile,
    )
    pdf.Root.OutputIntents = pikepdf.Array([pdf.make_indirect(intent)])


def _pdf_date(moment: datetime) -> str:
    """``D:YYYYMMDDHHmmSS+HH'mm'``, the PDF date format."""
    offset = moment.strftime("%z") or "+0000"
    return f"D:{moment:%Y%m%d%H%M%S}{offset[:3]}'{offset[3:]}'"


def _xmp(document: PrintedDocument) -> str:
    """The XMP packet: the Info dictionary's values again, plus the PDF/A-1b identification."""
    stamp = document.created.isoformat(timespec="seconds")
    title, author, subject, tool = (
        escape(v) for v in (document.title, document.author, document.subject, document.producer)
    )
    return f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">
   <dc:format>application/pdf</dc:format>
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">{title}</rdf:li></rdf:Alt></dc:title>
   <dc:creator><rdf:Seq><rdf:li>{author}</rdf:li></rdf:Seq></dc:creator>
   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">{subject}</rdf:li></rdf:Alt></dc:description>
  </rdf:Description>
  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/">
   <xmp:CreatorTool>{tool}</xmp:CreatorTool>
   <xmp:CreateDate>{stamp}</xmp:CreateDate>
   <xmp:ModifyDate>{stamp}</xmp:ModifyDate>
   <xmp:MetadataDate>{stamp}</xmp:MetadataDate>
  </rdf:Description>
  <rdf:Description rdf:about="" xmlns:pdf="http://ns.adobe.com/pdf/1.3/">
   <pdf:Producer>{tool}</pdf:Producer>
  </rdf:Description>
  <rdf:Description rdf:about="" xmlns:pdfaid="http://www.aiim.org/pdfa/ns/id/">
   <pdfaid:part>1</pdfaid:part>
   <pdfaid:conformance>B</pdfaid:conformance>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""


# -- the sRGB output intent profile ---------------------------------------------------------------

D65_WHITE = (0.9505, 1.0, 1.0891)
"""The sRGB media white point (D65), as ICC v2 profiles give it."""
CURVE_POINTS = 1024


@cache
def srgb_icc_profile() -> bytes:
    """An ICC v2 sRGB display profile for the PDF/A-1 output intent.

    Pillow's LittleCMS builds sRGB as an ICC v4 profile, but PDF/A-1 is PDF 1.4, which
    knows ICC profiles up to version 2. So the profile is rewritten with v2 tag types:
    the ``mluc`` texts become ``desc``/``text``, the parametric ``para`` tone curve
    becomes a sampled ``curv``; the colorants come from LittleCMS unchanged.
    """
    source = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    tags = _icc_tags(source)
    curve = _sampled_curve(tags[b"rTRC"])
    out: list[tuple[bytes, bytes]] = [
        (b"desc", _icc_desc("sRGB IEC61966-2.1 (Cabinet Temoin)")),
        (b"cprt", _icc_text("No copyright, use freely")),
        (b"wtpt", b"XYZ \0\0\0\0" + b"".join(_s15f16(v) for v in D65_WHITE)),
        (b"rXYZ", tags[b"rXYZ"]),
        (b"gXYZ", tags[b"gXYZ"]),
        (b"bXYZ", tags[b"bXYZ"]),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    table_size = 4 + 12 * len(out)
    offset = 128 + table_size
    entries, data = b"", b""
    for signature, payload in out:
        padded = payload + b"\0" * (-len(payload) % 4)
        entries += struct.pack(">4sII", signature, offset + len(data), len(payload))
        data += padded
    header = bytearray(source[:128])
    header[0:4] = struct.pack(">I", 128 + table_size + len(data))
    header[8:12] = bytes((2, 0x10, 0, 0))  # version 2.1.0
    header[84:100] = bytes(16)  # the profile ID is a v4 field
    return bytes(header) + struct.pack(">I", len(out)) + entries + data


def _icc_tags(profile: bytes) -> dict[bytes, bytes]:
    count = struct.unpack(">I", profile[128:132])[0]
    tags = {}
    for index in range(count):
        signature, offset, size = struct.unpack(">4sII", profile[132 + 12 * index : 144 + 12 * index])
        tags[signature] = profile[offset : offset + size]
    return tags


def _sampled_curve(para: bytes) -> bytes:
    """A ``curv`` table sampling the sRGB ``para`` curve (ICC function type 3: a power with a linear toe)."""
    if para[:4] != b"para" or struct.unpack(">H", para[8:10])[0] != 3:
        raise ValueError("expected the sRGB parametric curve (ICC function type 3)")
    g, a, b, c, d = (_from_s15f16(para[12 + 4 * i : 16 + 4 * i]) for i in range(5))

    def value(x: float) -> float:
        return float((a * x + b) ** g) if x >= d else c * x

    samples = (min(max(value(i / (CURVE_POINTS - 1)), 0.0), 1.0) for i in range(CURVE_POINTS))
    table = b"".join(struct.pack(">H", round(v * 65535)) for v in samples)
    return b"curv\0\0\0\0" + struct.pack(">I", CURVE_POINTS) + table


def _icc_desc(text: str) -> bytes:
    """A v2 ``textDescriptionType``: ASCII, no Unicode or ScriptCode variants."""
    ascii_text = text.encode("ascii") + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(ascii_text)) + ascii_text + bytes(4 + 4 + 2 + 1 + 67)


def _icc_text(text: str) -> bytes:
    return b"text\0\0\0\0" + text.encode("ascii") + b"\0"


def _s15f16(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _from_s15f16(raw: bytes) -> float:
    return float(struct.unpack(">i", raw)[0]) / 65536
