"""The compliance matrix: ANS columns, one row per (requirement × scenario), derived statuses."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import openpyxl
import pytest

from harness.evidence.journal import RecordedVerdict, read_records
from harness.evidence.matrix import (
    COLUMNS,
    NO_VERDICT,
    MatrixRow,
    build_rows,
    matrix_csv,
    matrix_xlsx,
    natural_key,
    requirement_statuses,
)
from harness.verdicts import Verdict, VerdictStatus
from tests.test_evidence_support import T_END, make_run, run_info, small_catalog

ANS_HEADER = [
    "Exigence conditionnelle",
    "Profil",
    "ID Section",
    "Section",
    "Bloc",
    "Fonction",
    "Nature de l'exigence",
    "N° exigence",
    "Énoncé de l'exigence",
    "N° scénario",
    "Scénario de conformité",
    *[f"N° preuve {n}" for n in range(1, 11)],
    "Statut harness",
    "Statut scénario",
    "Preuves produites",
    "Preuves à fournir par l'éditeur",
    "Commentaire",
]


@pytest.fixture
def rows(tmp_path: Path) -> list[MatrixRow]:
    return build_rows(small_catalog(), read_records(make_run(tmp_path / "run")))


def by_key(rows: list[MatrixRow]) -> dict[tuple[str, str], dict[str, str]]:
    return {
        (row.requirement.ref, row.scenario.ref if row.scenario else ""): dict(zip(COLUMNS, row.cells(), strict=True))
        for row in rows
    }


def test_columns_are_ans_then_ours() -> None:
    assert list(COLUMNS) == ANS_HEADER


def test_one_row_per_requirement_and_scenario_in_ans_order(rows: list[MatrixRow]) -> None:
    keys = [(r.requirement.ref, r.scenario.ref if r.scenario else "") for r in rows]
    assert keys == [
        ("INS/va1.06", "INS/va1.06.01"),
        ("INS/va1.63", "INS/va1.63.01"),
        ("DMP/va1.16", ""),
        ("MSS/va1.07", "MSS/va1.07.01"),
        ("MSS/va1.07", "MSS/va1.07.02"),
        ("CDA/DD.04", "CDA/DD.04.01"),
    ]


def test_statuses_are_derived_from_all_verdicts(rows: list[MatrixRow]) -> None:
    table = by_key(rows)
    ins = table[("INS/va1.06", "INS/va1.06.01")]
    assert ins["Statut scénario"] == "passed"
    assert ins["Statut harness"] == "manual", "passed, but a proof only the vendor can give is still due"
    assert ins["Preuves produites"] == "requirements/INS_va1.06/INS_va1.06.01/qualifiee-ko"
    assert ins["Preuves à fournir par l'éditeur"] == "INS/va1.06.01.02", "documentation needs the vendor"
    assert ins["Exigence conditionnelle"] == "NON" and ins["N° preuve 1"] == "INS/va1.06.01.01"

    conditional = table[("INS/va1.63", "INS/va1.63.01")]
    assert conditional["Exigence conditionnelle"] == "OUI" and conditional["Profil"] == "Centres de santé"
    assert conditional["Statut harness"] == "passed", "named by the INS/va1.06.01 verdict"
    assert conditional["Statut scénario"] == NO_VERDICT, "that verdict is another scenario's"
    assert conditional["Preuves produites"] == "requirements/INS_va1.06/INS_va1.06.01/qualifiee-ko"
    assert conditional["Commentaire"] == "passed via INS/va1.06.01"

    manual = table[("DMP/va1.16", "")]
    assert manual["Statut harness"] == "manual" and manual["Statut scénario"] == NO_VERDICT
    assert manual["N° scénario"] == "" and manual["Commentaire"]

    tls, dst = table[("MSS/va1.07", "MSS/va1.07.01")], table[("MSS/va1.07", "MSS/va1.07.02")]
    assert tls["Statut harness"] == dst["Statut harness"] == "error", "error dominates"
    assert tls["Statut scénario"] == "passed" and dst["Statut scénario"] == "error"
    assert dst["Commentaire"] == "error: the SUT timed out"

    cda = table[("CDA/DD.04", "CDA/DD.04.01")]
    assert cda["Statut harness"] == "failed"
    assert "[cda.header.author]" in cda["Commentaire"] and "odd style" not in cda["Commentaire"]


def test_requirement_statuses() -> None:
    catalog = small_catalog()
    verdicts = [
        Verdict("a", "MSS/va1.07.01", ["MSS/va1.07"], "", VerdictStatus.PASSED),
        Verdict("b", "MSS/va1.07.02", ["MSS/va1.07"], "", VerdictStatus.NOT_APPLICABLE),
        Verdict("c", "X.01", ["NOT/IN.CATALOG"], "", VerdictStatus.FAILED),
    ]
    statuses = requirement_statuses(catalog, verdicts)
    assert set(statuses) == set(catalog.requirements)
    assert statuses["MSS/va1.07"] is VerdictStatus.PASSED
    assert statuses["DMP/va1.16"] is VerdictStatus.MANUAL


def test_manual_and_not_supported_rows_ask_for_every_proof() -> None:
    catalog = small_catalog()
    rows = build_rows(
        catalog,
        [
            Verdict("a", "MSS/va1.07.01", ["MSS/va1.07"], "", VerdictStatus.NOT_SUPPORTED),
            Verdict("b", "MSS/va1.07.02", ["MSS/va1.07"], "", VerdictStatus.NOT_APPLICABLE),
        ],
    )
    table = by_key(rows)
    assert table[("MSS/va1.07", "MSS/va1.07.01")]["Preuves à fournir par l'éditeur"] == "MSS/va1.07.01.01"
    assert table[("MSS/va1.07", "MSS/va1.07.02")]["Preuves à fournir par l'éditeur"] == ""
    assert table[("INS/va1.06", "INS/va1.06.01")]["Preuves à fournir par l'éditeur"] == (
        "INS/va1.06.01.01, INS/va1.06.01.02"
    )


def test_several_verdicts_for_one_scenario_and_stray_scenario_ids() -> None:
    rows = build_rows(
        small_catalog(),
        [
            RecordedVerdict(Verdict("a[1]", "INS/va1.06.01", ["INS/va1.06"], "", VerdictStatus.PASSED), "f/1", "1"),
            RecordedVerdict(Verdict("a[2]", "INS/va1.06.01", ["INS/va1.06"], "", VerdictStatus.FAILED), "f/2", "2"),
            RecordedVerdict(Verdict("z", "INS/harness.99", ["INS/va1.63"], "", VerdictStatus.PASSED), "f/3", "3"),
        ],
    )
    table = by_key(rows)
    assert table[("INS/va1.06", "INS/va1.06.01")]["Statut scénario"] == "failed (failed 1, passed 1)"
    assert table[("INS/va1.06", "INS/va1.06.01")]["Preuves produites"] == "f/1\nf/2"
    stray = table[("INS/va1.63", "INS/va1.63.01")]
    assert stray["Preuves produites"] == "f/3" and stray["Statut scénario"] == NO_VERDICT


def test_natural_order() -> None:
    refs = ["INS/va1.10", "INS/va1.9", "INS/va1.09.01", "INS/va1.100"]
    assert sorted(refs, key=natural_key) == ["INS/va1.9", "INS/va1.09.01", "INS/va1.10", "INS/va1.100"]


def test_csv_is_rfc4180_with_bom_and_no_formulas(rows: list[MatrixRow]) -> None:
    data = matrix_csv(rows)
    assert data.startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in data
    parsed = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert parsed[0] == ANS_HEADER
    assert len(parsed) == len(rows) + 1
    cda = next(r for r in parsed if r[7] == "CDA/DD.04")
    comment = cda[COLUMNS.index("Commentaire")]
    assert "\n" in comment, "multi-line cells survive the round trip"
    assert all(not cell.startswith(("=", "+", "@")) for row in parsed for cell in row)


def test_xlsx_layout_and_reproducibility(rows: list[MatrixRow], tmp_path: Path) -> None:
    data = matrix_xlsx(rows, run_info(), T_END)
    assert data == matrix_xlsx(rows, run_info(), T_END), "same input, same bytes"
    path = tmp_path / "m.xlsx"
    path.write_bytes(data)
    workbook = openpyxl.load_workbook(path)
    sheet = workbook["Matrice"]
    assert [c.value for c in sheet[1]] == ANS_HEADER
    assert sheet.freeze_panes == "A2" and sheet["A1"].font.b
    assert sheet.column_dimensions["I"].width == 60
    assert sheet.max_row == len(rows) + 1
    status_col = COLUMNS.index("Statut harness") + 1
    cells = [sheet.cell(row=i, column=status_col) for i in range(2, sheet.max_row + 1)]
    fills = {cell.value: cell.fill.fgColor.rgb for cell in cells}
    assert fills["passed"].endswith("C6EFCE") and fills["error"].endswith("E4A0F0")
    assert workbook.properties.modified.isoformat().startswith("2026-03-02T09:37")
    assert "Exécution" in workbook.sheetnames


def test_xlsx_never_holds_a_formula(tmp_path: Path) -> None:
    catalog = small_catalog()
    rows = build_rows(
        catalog, [Verdict("a", "CDA/DD.04.01", ["CDA/DD.04"], "", VerdictStatus.FAILED, reason='=HYPERLINK("x")\x07')]
    )
    path = tmp_path / "m.xlsx"
    path.write_bytes(matrix_xlsx(rows, None, T_END))
    sheet = openpyxl.load_workbook(path)["Matrice"]
    comments = [sheet.cell(row=i, column=COLUMNS.index("Commentaire") + 1) for i in range(2, sheet.max_row + 1)]
    cell = next(c for c in comments if c.value and "HYPERLINK" in c.value)
    assert cell.data_type == "s" and cell.value.startswith("failed: =HYPERLINK")
    assert "\x07" not in cell.value, "control characters Excel rejects are replaced"


def test_a_verdict_standing_for_several_scenarios_fills_each_of_their_rows() -> None:
    both = Verdict("t", "INS/va1.06.01", ["INS/va1.06", "INS/va1.63"], "", VerdictStatus.PASSED)
    both.also_scenario_refs = ["INS/va1.63.01"]
    table = by_key(build_rows(small_catalog(), [RecordedVerdict(both, "f/1", "1")]))
    second = table[("INS/va1.63", "INS/va1.63.01")]
    assert second["Statut scénario"] == "passed", "the verdict is that scenario's own, not a related one"
    assert second["Preuves produites"] == "f/1" and "via" not in second["Commentaire"]


def test_a_requirement_is_passed_only_when_no_proof_is_left_to_the_vendor() -> None:
    catalog = small_catalog()
    passed = [Verdict("t", "INS/va1.63.01", ["INS/va1.63"], "", VerdictStatus.PASSED)]
    assert by_key(build_rows(catalog, passed))[("INS/va1.63", "INS/va1.63.01")]["Statut harness"] == "passed"
    with_doc = [Verdict("t", "INS/va1.06.01", ["INS/va1.06"], "", VerdictStatus.PASSED)]
    assert by_key(build_rows(catalog, with_doc))[("INS/va1.06", "INS/va1.06.01")]["Statut harness"] == "manual"


def test_the_run_facts_name_the_cda_rules_that_judged_the_documents() -> None:
    from dataclasses import replace

    from harness.evidence.journal import RunInfo
    from harness.evidence.matrix import run_facts

    judged = replace(run_info(), rules={"cda": "TestContenuCDA sha256:0123456789abcdef (harness-schematron 2)"})
    assert RunInfo.from_dict(judged.to_dict()).rules == judged.rules
    assert ("Règles CDA (TestContenuCDA)", judged.rules["cda"]) in run_facts(judged)
    assert dict(run_facts(run_info()))["Règles CDA (TestContenuCDA)"].startswith("non configurées")
