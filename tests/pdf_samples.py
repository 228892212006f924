"""PDFs built in the tests themselves: a conforming PDF/A-1b and its broken variants.

Tests of the PDF validator, of level-1 CDA documents and of printed INS all need small
PDFs with known properties. Building them here (reportlab for the page, pikepdf for the
PDF/A additions, zxing-cpp for the DataMatrix) keeps binary fixtures out of the repository
and makes each property visible in code.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pikepdf
import reportlab
import zxingcpp
from PIL import Image, ImageCms
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

EMBEDDED_FONT = "HarnessVera"
"""Vera (shipped with reportlab), registered as TrueType so reportlab embeds it."""
TEST_MATRICULE = "279035121518989"
TEST_INS_OID = "1.2.250.1.213.1.4.10"


@dataclass(frozen=True, slots=True)
class Picture:
    """An image to draw: where (points from the bottom left) and how big."""

    image: Image.Image
    x: float = 72
    y: float = 500
    size: float = 96
    mask: str | None = None
    """reportlab ``drawImage`` mask; ``"auto"`` on an RGBA image produces an SMask."""


def _register_font() -> str:
    if EMBEDDED_FONT not in pdfmetrics.getRegisteredFontNames():
        vera = Path(reportlab.__file__).parent / "fonts" / "Vera.ttf"
        pdfmetrics.registerFont(TTFont(EMBEDDED_FONT, str(vera)))
    return EMBEDDED_FONT


def datamatrix_image(text: str, scale: int = 4) -> Image.Image:
    """A DataMatrix of ``text`` as a grayscale Pillow image (zxing-cpp adds the quiet zone)."""
    bitmap = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.DataMatrix).to_image(scale=scale)
    height, width = bitmap.shape[0], bitmap.shape[1]
    return Image.frombytes("L", (width, height), memoryview(bitmap).tobytes())


def ins_datamatrix_text(matricule: str = TEST_MATRICULE, oid: str = TEST_INS_OID) -> str:
    """A DataMatrix payload carrying a matricule and its OID (our own layout, not the ANS one)."""
    return f"INS:{matricule};OID:{oid}"


def reportlab_pdf(
    lines: Sequence[str] = ("Compte rendu",),
    *,
    embedded_font: bool = True,
    pictures: Sequence[Picture] = (),
) -> bytes:
    """One A4 page with ``lines`` of text and ``pictures``; Helvetica (not embedded) unless ``embedded_font``."""
    font = _register_font() if embedded_font else "Helvetica"
    out = io.BytesIO()
    page = canvas.Canvas(out, pdfVersion=(1, 4), invariant=1, initialFontName=font)
    page.setFont(font, 11)
    for index, line in enumerate(lines):
        page.drawString(72, 780 - 16 * index, line)
    for picture in pictures:
        page.drawImage(
            ImageReader(picture.image), picture.x, picture.y, width=picture.size, height=picture.size, mask=picture.mask
        )
    page.showPage()
    page.save()
    return out.getvalue()


def srgb_icc() -> bytes:
    """An sRGB ICC profile made by Pillow (LittleCMS)."""
    return bytes(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())


def add_pdfa(data: bytes, *, part: int = 1, conformance: str = "B", output_intent: bool = True) -> bytes:
    """``data`` with the PDF/A identification in XMP and a GTS_PDFA1 OutputIntent (sRGB)."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        with pdf.open_metadata() as meta:
            meta["pdfaid:part"] = str(part)
            meta["pdfaid:conformance"] = conformance
            meta["dc:title"] = "Harness test document"
        if output_intent:
            profile = pdf.make_stream(srgb_icc())
            profile.N = 3
            intent = pikepdf.Dictionary(
                Type=pikepdf.Name.OutputIntent,
                S=pikepdf.Name.GTS_PDFA1,
                OutputConditionIdentifier="sRGB IEC61966-2.1",
                DestOutputProfile=profile,
            )
            pdf.Root.OutputIntents = pdf.make_indirect(pikepdf.Array([intent]))
        return _save(pdf)


def _save(pdf: pikepdf.Pdf, **kwargs: object) -> bytes:
    out = io.BytesIO()
    pdf.save(out, static_id=True, **kwargs)  # type: ignore[arg-type]
    return out.getvalue()


def conforming_pdfa(
    lines: Sequence[str] = ("Compte rendu", f"INS {TEST_MATRICULE}"),
    datamatrix: str | None = None,
) -> bytes:
    """A PDF/A-1b-like PDF: embedded font, XMP identification, OutputIntent, optional DataMatrix."""
    pictures = [Picture(datamatrix_image(datamatrix))] if datamatrix is not None else []
    return add_pdfa(reportlab_pdf(lines, pictures=pictures))


def plain_pdf(lines: Sequence[str] = ("Compte rendu",)) -> bytes:
    """A reportlab PDF with standard Helvetica (not embedded), no XMP, no OutputIntent."""
    return reportlab_pdf(lines, embedded_font=False)


def smask_pdf() -> bytes:
    """PDF/A identification and intent, but an RGBA image drawn with a soft mask."""
    rgba = Image.new("RGBA", (16, 16), (200, 0, 0, 128))
    return add_pdfa(reportlab_pdf(pictures=[Picture(rgba, mask="auto")]))


def encrypted_pdf(user_password: str = "user") -> bytes:
    """The conforming PDF saved with AES-256 encryption (empty ``user_password`` opens without one)."""
    with pikepdf.open(io.BytesIO(conforming_pdfa())) as pdf:
        out = io.BytesIO()
        pdf.save(out, encryption=pikepdf.Encryption(owner="owner", user=user_password, R=6))
        return out.getvalue()


def with_javascript(data: bytes) -> bytes:
    """``data`` with an OpenAction running JavaScript."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        pdf.Root.OpenAction = pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS="app.alert('x')")
        return _save(pdf)


def with_embedded_file(data: bytes) -> bytes:
    """``data`` with an attached text file (``/Names /EmbeddedFiles``)."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        pdf.attachments["note.txt"] = pikepdf.AttachedFileSpec(pdf, b"attached", mime_type="text/plain")
        return _save(pdf)


def with_lzw_stream(data: bytes) -> bytes:
    """``data`` with a form XObject whose stream declares LZWDecode (raw bytes, never decoded)."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        form = pdf.make_stream(b"\x80\x0b\x60\x50\x22\x0c\x0c\x85\x01")
        form.Filter = pikepdf.Name.LZWDecode
        form.Type = pikepdf.Name.XObject
        form.Subtype = pikepdf.Name.Form
        form.BBox = [0, 0, 10, 10]
        page = pdf.pages[0]
        page.Resources.XObject = page.Resources.get("/XObject", pikepdf.Dictionary())
        page.Resources.XObject.Lzw = form
        return _save(pdf, compress_streams=False, stream_decode_level=pikepdf.StreamDecodeLevel.none)


def with_ca(data: bytes, alpha: float = 0.5) -> bytes:
    """``data`` with an ExtGState of constant alpha ``alpha`` in the page resources."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        page = pdf.pages[0]
        page.Resources.ExtGState = pikepdf.Dictionary(GS1=pikepdf.Dictionary(Type=pikepdf.Name.ExtGState, CA=alpha))
        return _save(pdf)


def truncated(data: bytes) -> bytes:
    """The first half of ``data``: no xref, no trailer."""
    return data[: len(data) // 2]
