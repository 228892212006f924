"""The evidence pack: a finalised run folder as one reproducible zip.

``<publisher>-<software>-<version>-<dsr>-<YYYYMMDD>.zip`` holds exactly the
files the signed manifest lists, plus ``manifest.json`` and ``manifest.sig``,
at the zip's root. The same run folder always gives the same bytes: members
sorted by path, every timestamp set to the run's end, mode 0644, deflate
(:mod:`harness.evidence.stablezip`). Each file is hashed while it is packed and
must match the manifest, so a pack that does not verify is never produced.
"""

from __future__ import annotations

import contextlib
import os
import re
import unicodedata
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from harness.evidence import layout, stablezip
from harness.evidence.journal import RunInfo, read_run, run_end
from harness.evidence.manifest import ManifestError, read_manifest

__all__ = ["PackError", "build_pack", "pack_name", "slug"]


class PackError(RuntimeError):
    """The run folder cannot be packed as it is (not finalised, changed since, unsafe)."""


def slug(text: str) -> str:
    """A lowercase ASCII name part: ``Médi Soft SA`` → ``medi-soft-sa``, ``2.4.1`` stays."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9.]+", "-", folded).strip("-.") or "unknown"


def pack_name(run: RunInfo, moment: datetime) -> str:
    """``<publisher>-<software>-<version>-<dsr>-<YYYYMMDD>.zip`` for ``run``, dated by ``moment`` (UTC)."""
    sut = run.sut
    day = moment.astimezone(UTC) if moment.tzinfo else moment
    parts = [sut.get("publisher", ""), sut.get("software", ""), sut.get("version", ""), run.dsr]
    return "-".join(slug(p) for p in parts) + f"-{day:%Y%m%d}.zip"


def build_pack(run_dir: Path, out_dir: Path) -> Path:
    """Write the run's evidence pack into ``out_dir``; returns the zip's path.

    Raises:
        PackError: no valid manifest or signature, a listed file missing or
            changed since finalisation, or ``out_dir`` inside the run folder.
    """
    run_dir = Path(run_dir).resolve()
    out_dir = Path(out_dir).resolve()
    if out_dir == run_dir or run_dir in out_dir.parents:
        raise PackError(f"the pack cannot be written inside the run folder it packs ({out_dir})")
    try:
        manifest = read_manifest(run_dir)
    except ManifestError as exc:
        raise PackError(f"{run_dir}: not a finalised run folder ({exc})") from None
    if not (run_dir / layout.SIGNATURE).is_file():
        raise PackError(f"{run_dir}: {layout.SIGNATURE} is missing; finalise the run first")
    run = read_run(run_dir)
    moment = run_end(run_dir)
    when = stablezip.zip_time(moment)

    expected = {entry.path: entry for entry in manifest.files}
    names = sorted([*expected, layout.MANIFEST, layout.SIGNATURE])
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / pack_name(run, moment)
    tmp = target.with_name(f".{target.name}.part")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            for name in names:
                source = run_dir / name
                if source.is_symlink() or not source.is_file():
                    raise PackError(f"{name}: listed in the manifest but not a regular file in {run_dir}")
                size, sha = stablezip.add_file(archive, name, source, when)
                entry = expected.get(name)
                if entry is not None and (size, sha) != (entry.size, entry.sha256):
                    raise PackError(f"{name}: changed since the manifest was written; finalise the run again")
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return target
