"""The NIR / NIA key check, so a matricule with a wrong key is never stored as an INS.

Key = 97 − (the 13-character number mod 97), Corsican departments ``2A``/``2B`` counted
as ``19``/``18``. The reference system checks it itself rather than trusting INSi or
the harness's validators (it is an independent client).
"""

from __future__ import annotations

import re

_BODY = re.compile(r"^[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{6}$")


def nir_key(body: str) -> int:
    """The 2-digit key of a 13-character NIR/NIA; raises ValueError if ``body`` is not one."""
    body = body.upper()
    if not _BODY.match(body):
        raise ValueError(f"not a 13-character NIR/NIA: {body!r}")
    digits = body.replace("2A", "19", 1) if "2A" in body[5:7] else body.replace("2B", "18", 1)
    return 97 - int(digits) % 97


def is_valid_matricule(matricule: str) -> bool:
    """True when ``matricule`` is 13 characters plus a correct 2-digit key."""
    if len(matricule) != 15 or not matricule[13:].isdigit():
        return False
    try:
        return nir_key(matricule[:13]) == int(matricule[13:])
    except ValueError:
        return False
