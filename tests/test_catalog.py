"""The catalogue: loads, holds exactly the LGC requirements the spine needs, rejects bad data."""

from __future__ import annotations

import csv
import shutil
from collections import Counter
from pathlib import Path

import pytest

from harness.catalog import GENERAL_PROFILE, CatalogError, Nature, load_catalog
from harness.catalog.import_rem import guess_proof_kind, write_skeletons
from harness.catalog.loader import default_data_dir
from harness.catalog.model import ProofKind

AREAS = ("INS", "DMP", "MSS", "PSC", "ANN", "CDA", "DOC", "PORT")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog("LGC")


def test_holds_every_non_obsolete_lgc_requirement_of_the_spine_areas(catalog) -> None:
    counts = Counter(r.area for r in catalog if r.status != "Obsolète")
    assert counts == {"INS": 53, "DMP": 28, "MSS": 54, "PSC": 4, "ANN": 5, "CDA": 6, "DOC": 10, "PORT": 1}
    assert sum(counts.values()) == 161


def test_holds_the_profiles_the_seeds_name(catalog) -> None:
    assert catalog.get("INS/va1.14").profile == "Centres de santé"
    assert catalog.get("INS/va1.42").profile == "Stockage des copies de titres d'identité"
    mailiz = catalog.get("MSS/va1.07")
    assert mailiz.profile == "Opérateur Mailiz" and mailiz.status == "Obsolète"
    assert mailiz.va1_refs == ("LGC.MSS.09",)
    assert catalog.get("INS/va1.42").va1_refs == ("LGC.INS.52",)
    assert catalog.get("INS/va1.14").conditional and not catalog.get("INS/va1.06").conditional


def test_ids_profiles_nature_and_proof_ids_match_the_ans_rows_exactly(catalog, ans_data: Path) -> None:
    with (ans_data / "requirements" / "rem-lgc.csv").open(encoding="utf-8", newline="") as fh:
        rows = [
            r
            for r in csv.DictReader(fh)
            if r["area"] in AREAS and (r["status"] != "Obsolète" or r["ref"] == "MSS/va1.07")
        ]
    with (ans_data / "requirements" / "rem-lgc-proofs.csv").open(encoding="utf-8", newline="") as fh:
        proofs = list(csv.DictReader(fh))
    expected_refs = {r["ref"] for r in rows}
    assert {r.ref for r in catalog} == expected_refs
    for row in rows:
        req = catalog.get(row["ref"])
        assert req.profile == row["profile"], row["ref"]
        assert req.nature is Nature(row["nature"]), row["ref"]
        assert req.status == row["status"], row["ref"]
        assert req.socle_ref == row["socle_ref"], row["ref"]
        assert list(req.va1_refs) == [v.strip() for v in row["va1_ref"].split("|") if v.strip()], row["ref"]
        assert req.section_id == row["section_id"]
        if row["scenario_ref"]:
            assert row["scenario_ref"] in {s.ref for s in req.scenarios}, row["ref"]
    for proof in proofs:
        if proof["ref"] in expected_refs:
            _, scenario = catalog.scenario(proof["scenario_ref"])
            assert proof["proof_ref"] in {p.ref for p in scenario.proofs}, proof["proof_ref"]


def test_statements_are_paraphrased_not_copied(catalog, ans_data: Path) -> None:
    """Our wording must differ from ANS's: no statement may share a long run of words with it."""
    with (ans_data / "requirements" / "rem-lgc.csv").open(encoding="utf-8", newline="") as fh:
        ans = {r["ref"]: r["statement"] for r in csv.DictReader(fh)}
    for req in catalog:
        ours = req.statement.lower().split()
        theirs = " ".join(ans[req.ref].lower().split())
        windows = {" ".join(ours[i : i + 8]) for i in range(max(0, len(ours) - 7))}
        assert not any(w in theirs for w in windows), req.ref


def test_every_scenario_has_a_summary_steps_and_typed_proofs(catalog) -> None:
    for req in catalog:
        assert req.statement
        for scenario in req.scenarios:
            assert scenario.summary, scenario.ref
            assert scenario.steps, scenario.ref
            for proof in scenario.proofs:
                assert isinstance(proof.kind, ProofKind)
                assert proof.text, proof.ref


def _copy_catalog(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(default_data_dir(), target)
    return target


def test_duplicate_id_is_an_error_naming_file_and_entry(tmp_path: Path) -> None:
    data = _copy_catalog(tmp_path)
    port = (data / "lgc" / "port.toml").read_text(encoding="utf-8")
    (data / "lgc" / "zz-extra.toml").write_text(port, encoding="utf-8")
    with pytest.raises(CatalogError) as err:
        load_catalog("LGC", data)
    assert any(
        "zz-extra.toml" in p and "duplicate id 'PORT/va1.01'" in p and "port.toml" in p for p in err.value.problems
    )


def test_unknown_profile_and_bad_reference_are_errors(tmp_path: Path) -> None:
    data = _copy_catalog(tmp_path)
    path = data / "lgc" / "port.toml"
    text = path.read_text(encoding="utf-8")
    text = text.replace(f'profile = "{GENERAL_PROFILE}"', 'profile = "Cabinet lunaire"', 1)
    text = text.replace('ref = "PORT/va1.01"', 'ref = "PORT va1 01"', 1)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogError) as err:
        load_catalog("LGC", data)
    problems = "\n".join(err.value.problems)
    assert "port.toml" in problems
    assert "unknown profile 'Cabinet lunaire'" in problems
    assert "malformed reference 'PORT va1 01'" in problems


def test_unknown_proof_kind_and_empty_statement_are_errors(tmp_path: Path) -> None:
    data = _copy_catalog(tmp_path)
    path = data / "lgc" / "port.toml"
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    lines = ['statement = ""' if line.startswith("statement = ") else line for line in lines]
    lines = ['kind = "telepathy"' if line.startswith("kind = ") else line for line in lines]
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(CatalogError) as err:
        load_catalog("LGC", data)
    problems = "\n".join(err.value.problems)
    assert "statement is empty" in problems and "unknown proof kind 'telepathy'" in problems


def test_broken_toml_is_reported_not_raised_raw(tmp_path: Path) -> None:
    data = _copy_catalog(tmp_path)
    (data / "lgc" / "port.toml").write_text("[[requirement]\nref = ", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"port\.toml: cannot read"):
        load_catalog("LGC", data)


def test_import_rem_writes_skeletons_with_exact_ids_and_no_ans_wording(tmp_path: Path, ans_data: Path) -> None:
    req_dir = ans_data / "requirements"
    written = write_skeletons(req_dir / "rem-lgc.csv", req_dir / "rem-lgc-proofs.csv", tmp_path, ["PSC"])
    assert [p.name for p in written] == ["psc.toml"]
    text = written[0].read_text(encoding="utf-8")
    assert 'ref = "PSC.08"' in text and 'ref = "PSC.01.08.01"' in text
    assert "DOIT" not in text  # no ANS sentence travels into the skeleton


def test_proof_kind_guess() -> None:
    assert guess_proof_kind("Attestation d'homologation CNDA") is ProofKind.CNDA_CERTIFICATE
    assert guess_proof_kind("Source SMTP du message émis") is ProofKind.SMTP_SOURCE
    assert guess_proof_kind("Capture d'écran") is ProofKind.SCREENSHOT


def test_select_filters_by_section_and_profile(catalog) -> None:
    ins = catalog.select(["ins"])
    assert ins and all(r.area == "INS" for r in ins)
    centres = catalog.select(profiles=["Centres de santé"])
    assert [r.ref for r in centres] == ["INS/va1.14"]


def test_coverage_counts_ans_scenarios_and_never_guesses(catalog, tmp_path: Path) -> None:
    from harness.plugin.coverage import Coverage, CoverageError, coverage_of
    from tests.conftest import REPO

    coverage = coverage_of(catalog, REPO / "scenarios")
    assert coverage["INS/va1.38"] is Coverage.AUTOMATED, "both of its ANS scenarios are performed"
    assert coverage["INS/va1.15"] is Coverage.MANUAL
    broken = tmp_path / "scenarios"
    broken.mkdir()
    (broken / "test_broken.py").write_text("def test_(:\n", encoding="utf-8")
    with pytest.raises(CoverageError, match="collecting the scenarios"):
        coverage_of(catalog, broken)
