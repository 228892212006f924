"""Finalise, pack, verify: reproducible packs, tampering named, hostile zips contained."""

from __future__ import annotations

import io
import json
import shutil
import stat
import subprocess
import warnings
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from harness.evidence import layout
from harness.evidence.manifest import finalize_run, read_manifest
from harness.evidence.pack import PackError, build_pack, pack_name, slug
from harness.evidence.verify import Limits, PackVerification, ProblemKind, verify_pack
from tests.test_evidence_signing import certificate, write_pem
from tests.test_evidence_support import T_END, make_run, run_info, small_catalog

PRIVATE_KEY_TEXT = (
    b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n"
)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = make_run(tmp_path / "run")
    finalize_run(run, small_catalog())
    return run


@pytest.fixture
def pack(run_dir: Path, tmp_path: Path) -> Path:
    return build_pack(run_dir, tmp_path / "out")


def kinds_at(result: PackVerification) -> set[tuple[ProblemKind, str]]:
    return {(p.kind, p.path) for p in (*result.problems, *result.warnings)}


def rezip(
    source: Path,
    target: Path,
    edit: dict[str, bytes | None] | None = None,
    extra: list[tuple[zipfile.ZipInfo | str, bytes]] | None = None,
) -> Path:
    """Copy a zip member by member, replacing (bytes) or dropping (None) some, adding others."""
    edit = edit or {}
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename in edit:
                replacement = edit[info.filename]
                if replacement is not None:
                    dst.writestr(info.filename, replacement)
                continue
            dst.writestr(info, src.read(info))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns on duplicate names, which we want
            for name, data in extra or []:
                dst.writestr(name, data)
    return target


def patch_central_record(path: Path, member: str, offset: int, value: bytes) -> None:
    """Overwrite bytes of ``member``'s central-directory record (what zip readers trust)."""
    raw = bytearray(path.read_bytes())
    record = raw.find(b"PK\x01\x02")
    while record >= 0:
        name_length = int.from_bytes(raw[record + 28 : record + 30], "little")
        if raw[record + 46 : record + 46 + name_length] == member.encode():
            raw[record + offset : record + offset + len(value)] = value
            path.write_bytes(bytes(raw))
            return
        record = raw.find(b"PK\x01\x02", record + 4)
    raise AssertionError(f"{member} not found")


# -- finalise ------------------------------------------------------------------------------
def test_finalize_writes_the_layout(run_dir: Path) -> None:
    for name in (
        "journal.jsonl",
        "run.json",
        "matrix.csv",
        "matrix.xlsx",
        "index.html",
        "manifest.json",
        "manifest.sig",
        "signer.pem",
    ):
        assert (run_dir / name).is_file(), name
    manifest = read_manifest(run_dir)
    paths = [e.path for e in manifest.files]
    assert paths == sorted(paths)
    assert "manifest.json" not in paths and "manifest.sig" not in paths and "signer.pem" in paths
    assert manifest.run_id == "run" and manifest.signer["generated"] is True
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["signer"]["generated"] is True and run["signer"]["sha256"] == manifest.signer["sha256"]


def test_finalize_twice_changes_nothing(run_dir: Path) -> None:
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    finalize_run(run_dir, small_catalog())
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert before == after, "same manifest, same signature, same derived files"


def test_finalize_after_a_new_verdict_resigns(run_dir: Path) -> None:
    from harness.evidence.journal import RunJournal
    from harness.verdicts import Verdict, VerdictStatus

    old = (run_dir / "manifest.json").read_bytes()
    RunJournal(run_dir, durable=False).record(Verdict("n", "DMP/va1.16.x", ["DMP/va1.16"], "", VerdictStatus.PASSED))
    finalize_run(run_dir, small_catalog())
    assert (run_dir / "manifest.json").read_bytes() != old
    assert verify_pack(run_dir).ok


def test_a_killed_run_can_still_be_finalised_and_packed(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", finished=False)
    with open(run / layout.JOURNAL, "ab") as handle:
        handle.write(b'{"type": "verdict", "at": "2026-03-02T09:')
    finalize_run(run, small_catalog())
    packed = build_pack(run, tmp_path / "out")
    assert verify_pack(packed).ok
    assert json.loads((run / "run.json").read_text(encoding="utf-8"))["ended"] is None
    with zipfile.ZipFile(packed) as archive:
        assert len({i.date_time for i in archive.infolist()}) == 1, "dated by the last journal line"


def test_private_keys_and_excluded_paths_stay_out(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    (run / "sut").mkdir()
    (run / "sut" / "client.key").write_bytes(b"junk" * 40000 + PRIVATE_KEY_TEXT)
    (run / "sut" / "db.sqlite").write_bytes(b"data")
    (run / "notes").mkdir()
    (run / "notes" / "readme.txt").write_bytes(b"kept")
    finalize_run(run, small_catalog(), exclude=["sut/db.sqlite"])
    manifest = read_manifest(run)
    paths = {e.path for e in manifest.files}
    assert "notes/readme.txt" in paths and not any(p.startswith("sut/") for p in paths)
    reasons = {e["path"]: e["reason"] for e in manifest.excluded}
    assert reasons["sut/client.key"] == "holds a PEM private key"
    assert "pattern" in reasons["sut/db.sqlite"]
    assert verify_pack(run).ok, "excluded files are not 'extra' in the folder"
    packed = build_pack(run, tmp_path / "out")
    with zipfile.ZipFile(packed) as archive:
        assert not any(n.startswith("sut/") for n in archive.namelist())


def test_given_signer_is_used_and_trusted(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate("Labo de test", key)
    key_path, cert_path = write_pem(tmp_path, "lab", key, cert)
    finalize_run(run, small_catalog(), signer=(key_path, cert_path))
    assert read_manifest(run).signer["generated"] is False
    assert (run / "signer.pem").read_bytes() == cert_path.read_bytes()
    trusted = verify_pack(run, trusted_cert=cert_path)
    assert trusted.ok and not trusted.warnings
    other_key = ec.generate_private_key(ec.SECP256R1())
    _, other = write_pem(tmp_path, "other", other_key, certificate("Other", other_key))
    assert (ProblemKind.SIGNER_UNTRUSTED, "manifest.sig") in kinds_at(verify_pack(run, trusted_cert=other))
    unknown = verify_pack(run)
    assert unknown.ok and {w.kind for w in unknown.warnings} == {ProblemKind.SIGNER_UNVERIFIED}


# -- pack ----------------------------------------------------------------------------------
def test_pack_name_and_content(run_dir: Path, pack: Path) -> None:
    assert pack.name == "editeur-demo-cabinet-plus-4.2.0-lgc-20260302.zip"
    assert pack_name(run_info(), T_END) == pack.name
    assert slug("  Médi/Soft  SA ") == "medi-soft-sa" and slug("") == "unknown"
    manifest = read_manifest(run_dir)
    with zipfile.ZipFile(pack) as archive:
        names = archive.namelist()
        infos = archive.infolist()
    assert names == sorted([*(e.path for e in manifest.files), "manifest.json", "manifest.sig"])
    assert {i.date_time for i in infos} == {(2026, 3, 2, 9, 37, 0)}
    assert {stat.S_IMODE(i.external_attr >> 16) for i in infos} == {0o644}


def test_pack_twice_gives_identical_bytes(run_dir: Path, tmp_path: Path) -> None:
    first = build_pack(run_dir, tmp_path / "a").read_bytes()
    finalize_run(run_dir, small_catalog())
    second = build_pack(run_dir, tmp_path / "b").read_bytes()
    assert first == second


def test_pack_refuses_a_changed_or_unfinalised_folder(tmp_path: Path, run_dir: Path) -> None:
    with pytest.raises(PackError, match="inside the run folder"):
        build_pack(run_dir, run_dir / "out")
    unfinished = make_run(tmp_path / "raw")
    with pytest.raises(PackError, match="not a finalised run folder"):
        build_pack(unfinished, tmp_path / "out")
    target = run_dir / "matrix.csv"
    target.write_bytes(target.read_bytes().replace(b"passed", b"passeD", 1))
    with pytest.raises(PackError, match=r"matrix\.csv: changed"):
        build_pack(run_dir, tmp_path / "out2")
    assert not list((tmp_path / "out2").glob("*")), "no partial pack left behind"


# -- verify: good and tampered ------------------------------------------------------------------
def test_verify_ok(run_dir: Path, pack: Path) -> None:
    for source in (pack, run_dir):
        result = verify_pack(source)
        assert result.ok, [str(p) for p in result.problems]
        assert result.files_checked == len(read_manifest(run_dir).files)
        assert [w.kind for w in result.warnings] == [ProblemKind.SIGNER_GENERATED]
        assert result.signer is not None and result.signer["generated"] is True


def test_flip_one_byte_of_a_member(run_dir: Path, pack: Path, tmp_path: Path) -> None:
    member = "requirements/INS_va1.06/INS_va1.06.01/qualifiee-ko/files/trace.json"
    original = (run_dir / member).read_bytes()
    flipped = bytes([original[0] ^ 0x01]) + original[1:]

    tampered_zip = rezip(pack, tmp_path / "t.zip", {member: flipped})
    result = verify_pack(tampered_zip)
    assert not result.ok and kinds_at(result) >= {(ProblemKind.HASH_MISMATCH, member)}

    raw = bytearray(pack.read_bytes())
    with zipfile.ZipFile(pack) as archive:
        info = archive.getinfo(member)
    offset = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[offset + info.compress_size // 2] ^= 0x01
    (tmp_path / "raw.zip").write_bytes(bytes(raw))
    result = verify_pack(tmp_path / "raw.zip")
    assert not result.ok and {p.path for p in result.problems} == {member}

    (run_dir / member).write_bytes(flipped)
    result = verify_pack(run_dir)
    assert [(p.kind, p.path) for p in result.problems] == [(ProblemKind.HASH_MISMATCH, member)]


def test_flip_one_byte_of_the_manifest(run_dir: Path, pack: Path, tmp_path: Path) -> None:
    manifest = (run_dir / "manifest.json").read_bytes()
    changed = manifest.replace(b'"run_id": "run"', b'"run_id": "ruN"')
    assert len(changed) == len(manifest) and changed != manifest
    result = verify_pack(rezip(pack, tmp_path / "t.zip", {"manifest.json": changed}))
    assert [(p.kind, p.path) for p in result.problems] == [(ProblemKind.DIGEST_MISMATCH, "manifest.json")]
    (run_dir / "manifest.json").write_bytes(b"{" + manifest[1:-2] + b"!\n")
    assert (ProblemKind.MANIFEST_INVALID, "manifest.json") in kinds_at(verify_pack(run_dir))


def test_flip_one_byte_of_the_signature(run_dir: Path, pack: Path, tmp_path: Path) -> None:
    signature = bytearray((run_dir / "manifest.sig").read_bytes())
    signature[-1] ^= 0x01
    result = verify_pack(rezip(pack, tmp_path / "t.zip", {"manifest.sig": bytes(signature)}))
    assert not result.ok and {p.path for p in result.problems} == {"manifest.sig"}
    assert {p.kind for p in result.problems} <= {ProblemKind.SIGNATURE_INVALID}


def test_missing_signature_and_manifest(pack: Path, tmp_path: Path) -> None:
    no_sig = verify_pack(rezip(pack, tmp_path / "a.zip", {"manifest.sig": None}))
    assert (ProblemKind.SIGNATURE_MISSING, "manifest.sig") in kinds_at(no_sig) and not no_sig.ok
    no_manifest = verify_pack(rezip(pack, tmp_path / "b.zip", {"manifest.json": None}))
    assert (ProblemKind.MANIFEST_MISSING, "manifest.json") in kinds_at(no_manifest)


def test_extra_and_missing_files(run_dir: Path, pack: Path, tmp_path: Path) -> None:
    result = verify_pack(rezip(pack, tmp_path / "a.zip", extra=[("requirements/smuggled.txt", b"hi")]))
    assert [(p.kind, p.path) for p in result.problems] == [(ProblemKind.EXTRA_FILE, "requirements/smuggled.txt")]
    result = verify_pack(rezip(pack, tmp_path / "b.zip", {"matrix.csv": None}))
    assert [(p.kind, p.path) for p in result.problems] == [(ProblemKind.MISSING_FILE, "matrix.csv")]

    (run_dir / "later.txt").write_bytes(b"added after signing")
    (run_dir / "index.html").unlink()
    assert kinds_at(verify_pack(run_dir)) >= {
        (ProblemKind.EXTRA_FILE, "later.txt"),
        (ProblemKind.MISSING_FILE, "index.html"),
    }


def test_size_mismatch_is_named_without_reading(pack: Path, tmp_path: Path) -> None:
    result = verify_pack(rezip(pack, tmp_path / "a.zip", {"matrix.csv": b"short"}))
    assert [(p.kind, p.path) for p in result.problems] == [(ProblemKind.SIZE_MISMATCH, "matrix.csv")]


# -- verify: hostile input -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("../../evil.txt", ProblemKind.UNSAFE_NAME),
        ("/etc/cron.d/evil", ProblemKind.UNSAFE_NAME),
        ("requirements\\..\\..\\evil", ProblemKind.UNSAFE_NAME),
        ("C:/Windows/evil", ProblemKind.UNSAFE_NAME),
        ("matrix.csv", ProblemKind.DUPLICATE_ENTRY),
    ],
)
def test_hostile_member_names(pack: Path, tmp_path: Path, name: str, kind: ProblemKind) -> None:
    result = verify_pack(rezip(pack, tmp_path / "h.zip", extra=[(name, b"payload")]))
    assert not result.ok and kind in {p.kind for p in result.problems}
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()


def test_symlink_member(pack: Path, tmp_path: Path) -> None:
    link = zipfile.ZipInfo("requirements/link")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    result = verify_pack(rezip(pack, tmp_path / "s.zip", extra=[(link, b"/etc/passwd")]))
    assert (ProblemKind.SYMLINK, "requirements/link") in kinds_at(result) and not result.ok


def test_symlink_in_a_folder(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_bytes(b"secret")
    (run_dir / "link.txt").symlink_to(tmp_path / "outside.txt")
    result = verify_pack(run_dir)
    assert (ProblemKind.SYMLINK, "link.txt") in kinds_at(result) and not result.ok


def test_encrypted_member(pack: Path, tmp_path: Path) -> None:
    locked = rezip(pack, tmp_path / "e.zip", extra=[("requirements/locked.bin", b"x" * 10)])
    patch_central_record(locked, "requirements/locked.bin", 8, (0x0001).to_bytes(2, "little"))
    result = verify_pack(locked)
    assert (ProblemKind.ENCRYPTED, "requirements/locked.bin") in kinds_at(result) and not result.ok


def test_broken_zip_and_not_a_zip(pack: Path, tmp_path: Path) -> None:
    data = pack.read_bytes()
    (tmp_path / "cut.zip").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.zip").write_bytes(b"hello, this is not a zip\n" * 10)
    (tmp_path / "empty.zip").write_bytes(b"")
    (tmp_path / "damaged.zip").write_bytes(data[:-40] + b"\x00" * 40)
    assert ProblemKind.BROKEN_ZIP in verify_pack(tmp_path / "cut.zip").kinds()
    assert ProblemKind.NOT_A_ZIP in verify_pack(tmp_path / "text.zip").kinds()
    assert ProblemKind.NOT_A_ZIP in verify_pack(tmp_path / "empty.zip").kinds()
    damaged = verify_pack(tmp_path / "damaged.zip")
    assert not damaged.ok and damaged.kinds() & {ProblemKind.BROKEN_ZIP, ProblemKind.NOT_A_ZIP}
    assert ProblemKind.NOT_FOUND in verify_pack(tmp_path / "nope.zip").kinds()


def test_zip_bomb_with_a_huge_declared_size(pack: Path, tmp_path: Path) -> None:
    bombed = rezip(pack, tmp_path / "bomb.zip", extra=[("requirements/bomb.bin", b"tiny")])
    patch_central_record(bombed, "requirements/bomb.bin", 24, (0xFFFFFFF0).to_bytes(4, "little"))
    result = verify_pack(bombed)
    assert (ProblemKind.TOO_LARGE, "requirements/bomb.bin") in kinds_at(result) and not result.ok


def test_real_compression_bomb_is_not_inflated(pack: Path, tmp_path: Path) -> None:
    bombed = rezip(pack, tmp_path / "bomb.zip", extra=[("requirements/zeros.bin", bytes(20 << 20))])
    assert bombed.stat().st_size < 1 << 20
    result = verify_pack(bombed)
    assert (ProblemKind.TOO_LARGE, "requirements/zeros.bin") in kinds_at(result)


def test_entry_count_cap(pack: Path) -> None:
    result = verify_pack(pack, limits=Limits(max_entries=3))
    assert ProblemKind.TOO_MANY_ENTRIES in result.kinds() and not result.ok


def test_unreadable_trust_file(pack: Path, tmp_path: Path) -> None:
    (tmp_path / "trust.pem").write_bytes(b"not a certificate")
    result = verify_pack(pack, trusted_cert=tmp_path / "trust.pem")
    assert (ProblemKind.TRUST_UNREADABLE, str(tmp_path / "trust.pem")) in kinds_at(result)


def test_manifest_with_a_traversal_path_is_rejected_before_use(run_dir: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    manifest["files"].append({"path": "../../etc/passwd", "size": 1, "sha256": "0" * 64})
    (run_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    result = verify_pack(run_dir)
    assert (ProblemKind.MANIFEST_INVALID, "manifest.json") in kinds_at(result)


def test_problems_print_with_their_file(pack: Path, tmp_path: Path) -> None:
    result = verify_pack(rezip(pack, tmp_path / "b.zip", {"matrix.csv": None}))
    assert str(result.problems[0]).startswith("matrix.csv: ") and "[missing-file]" in str(result.problems[0])


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_verifies_a_finalised_run(run_dir: Path, pack: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(pack) as archive:
        for name in ("manifest.json", "manifest.sig", "signer.pem"):
            (tmp_path / name).write_bytes(archive.read(name))
    done = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", "manifest.sig", "-content",
         "manifest.json", "-CAfile", "signer.pem", "-purpose", "any", "-out", "/dev/null"],
        cwd=tmp_path, capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_layout_constants_match_the_folder(run_dir: Path) -> None:
    top = {p.name for p in run_dir.iterdir()}
    assert top == {
        layout.JOURNAL, layout.RUN, layout.REQUIREMENTS, layout.MATRIX_CSV, layout.MATRIX_XLSX,
        layout.INDEX_HTML, layout.MANIFEST, layout.SIGNATURE, layout.SIGNER_CERT,
    }  # fmt: skip
    assert io.BytesIO((run_dir / "matrix.xlsx").read_bytes()).read(2) == b"PK"


def test_central_directory_cap(pack: Path) -> None:
    result = verify_pack(pack, limits=Limits(max_directory_bytes=100))
    assert ProblemKind.TOO_LARGE in result.kinds() and not result.ok
