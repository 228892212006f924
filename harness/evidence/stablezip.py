"""Zip archives that come out byte-identical from the same inputs.

The evidence pack must be reproducible (same run folder, same bytes) and the
XLSX matrix inside it too, yet :mod:`zipfile` stamps every member with the
current time and the writer's umask. Here every member gets the same fixed
metadata: a timestamp chosen by the caller (the run's end), mode 0644, Unix as
creating system, deflate at zlib's default level, members in the order given.
Reproducibility holds for a given zlib build; a different zlib may compress
differently, which changes the zip but never the manifest's hashes.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path

FILE_MODE = 0o100644
"""Regular file, rw-r--r--."""
UNIX = 3
"""``create_system`` value for Unix, so ``external_attr`` is read as a mode."""
ZIP64_LIMIT = (1 << 31) - 1
CHUNK = 1 << 20

ZipTime = tuple[int, int, int, int, int, int]


def zip_time(moment: datetime) -> ZipTime:
    """A zip timestamp (UTC, even seconds, clamped to 1980–2107) for ``moment``."""
    utc = moment.astimezone(UTC) if moment.tzinfo else moment
    year = min(max(utc.year, 1980), 2107)
    if year != utc.year:
        return (year, 1, 1, 0, 0, 0)
    return (utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second - utc.second % 2)


def member(name: str, date_time: ZipTime, size: int = 0) -> zipfile.ZipInfo:
    """A :class:`zipfile.ZipInfo` with the fixed metadata for ``name``."""
    info = zipfile.ZipInfo(name, date_time)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = UNIX
    info.external_attr = FILE_MODE << 16
    info.file_size = size
    return info


def add_bytes(archive: zipfile.ZipFile, name: str, data: bytes, date_time: ZipTime) -> str:
    """Add ``data`` as member ``name``; returns its SHA-256."""
    with archive.open(member(name, date_time, len(data)), "w", force_zip64=len(data) > ZIP64_LIMIT) as out:
        out.write(data)
    return hashlib.sha256(data).hexdigest()


def add_file(archive: zipfile.ZipFile, name: str, path: Path, date_time: ZipTime) -> tuple[int, str]:
    """Stream the file at ``path`` into member ``name``; returns (size, SHA-256) of what was read."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    read = 0
    with (
        open(path, "rb") as source,
        archive.open(member(name, date_time, size), "w", force_zip64=size > ZIP64_LIMIT) as out,
    ):
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            read += len(chunk)
    return read, digest.hexdigest()


def restamp(data: bytes, date_time: ZipTime) -> bytes:
    """Rewrite a zip held in memory with the fixed metadata, keeping member order and content.

    Used on the XLSX openpyxl writes, whose members carry the wall-clock time.
    """
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            add_bytes(target, info.filename, source.read(info), date_time)
    return out.getvalue()
