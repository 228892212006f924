"""The INS DataMatrix that Cabinet Témoin prints on its documents.

The ANS référentiel INS [INS5] asks for a DataMatrix carrying the INS and the strict
traits on printed documents; its exact payload layout is not available to us, so the
layout used here is **inferred** (our documented assumption, not an ANS text)::

    INS:<matricule, 15 characters>;OID:<INS OID>;NOM:<birth name>;PRENOMS:<birth first names,
    space-separated>;SEXE:<M|F>;NAISS:<YYYY-MM-DD>

The symbol is a square ECC 200 DataMatrix made with zxing-cpp, returned as an opaque
8-bit greyscale image (no alpha: PDF/A-1 forbids transparency).
"""

from __future__ import annotations

from typing import Any, cast

import zxingcpp
from PIL import Image

MODULE_PX = 6
"""Pixels per module in the image: enough for a reader of the rendered page, and for zxing-cpp."""


def ins_payload(
    matricule: str, oid: str, birth_name: str, first_names: tuple[str, ...], sex: str, birth_date: str
) -> str:
    """The text encoded in the INS DataMatrix (inferred layout, see the module docstring)."""
    fields = (
        ("INS", matricule),
        ("OID", oid),
        ("NOM", birth_name),
        ("PRENOMS", " ".join(first_names)),
        ("SEXE", sex),
        ("NAISS", birth_date),
    )
    return ";".join(f"{name}:{value}" for name, value in fields)


def datamatrix_image(payload: str, module_px: int = MODULE_PX) -> Image.Image:
    """A square DataMatrix of ``payload`` with its quiet zone, as an 8-bit greyscale image."""
    barcode = zxingcpp.create_barcode(payload, zxingcpp.BarcodeFormat.DataMatrix, forceSquare=True)
    pixels = barcode.to_image(scale=module_px, add_quiet_zones=True)
    return Image.fromarray(cast(Any, pixels)).convert("L")
