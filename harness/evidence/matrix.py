"""The compliance matrix: ANS's REM spreadsheet layout, with the harness's verdicts added.

A vendor answers ANS requirement by requirement; the matrix gives them one row
per (requirement × compliance scenario), in the column layout and order of the
published REM spreadsheet (requirements.md §1.3), followed by our columns:
the requirement's derived status, the scenario's verdict(s), the evidence
folders produced, the proofs the vendor still has to supply, and a comment.

Formats:

- ``matrix.xlsx`` for people (header bold and frozen, filters, widths, a fill
  colour per status, a second sheet with the run facts). Timestamps are fixed
  to the run's end so the file is reproducible.
- ``matrix.csv`` for tools: RFC 4180 with commas and CRLF, UTF-8 with a BOM so
  spreadsheet software detects the encoding. We chose commas over the
  semicolons French Excel expects on double-click: the CSV is for scripts and
  diffs, the XLSX is for Excel. A cell starting with ``= + - @`` (text that can
  come from the SUT) is prefixed with ``'`` so no spreadsheet runs it as a formula.

Status rules: a requirement's status is :func:`harness.verdicts.combine` over
every verdict naming it (none → ``manual``, never dropped). A scenario's status
comes from the verdicts carrying its exact id. A verdict naming the requirement
under another scenario id (one scenario proving several requirements) counts
for the requirement's status and appears, with its evidence, on the
requirement's first row, never as that row's scenario status.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from harness.catalog.model import Catalog, ComplianceScenario, Requirement
from harness.evidence import layout, stablezip
from harness.evidence.journal import RecordedVerdict, RunInfo, write_atomic
from harness.findings import Severity
from harness.verdicts import Verdict, VerdictStatus, combine

if TYPE_CHECKING:
    from pathlib import Path

MAX_PROOFS = 10
AREA_ORDER: tuple[str, ...] = ("INS", "DMP", "MSS", "PSC", "ANN", "TBB", "HOP", "DOC", "PORT", "EPR")
"""ANS's section order; other areas follow, alphabetically."""

ANS_COLUMNS: tuple[str, ...] = (
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
    *(f"N° preuve {n}" for n in range(1, MAX_PROOFS + 1)),
)
HARNESS_COLUMNS: tuple[str, ...] = (
    "Statut harness",
    "Statut scénario",
    "Preuves produites",
    "Preuves à fournir par l'éditeur",
    "Commentaire",
)
COLUMNS: tuple[str, ...] = ANS_COLUMNS + HARNESS_COLUMNS
NO_VERDICT = "—"
NO_VERDICT_COMMENT = "Aucun verdict du harness : preuves manuelles attendues."
MAX_COMMENT_ITEMS = 3


@dataclass(frozen=True, slots=True)
class MatrixRow:
    """One matrix row: a requirement, one of its scenarios (or none) and what the run says.

    Attributes:
        requirement: the catalogue requirement.
        scenario: the compliance scenario of this row; None for a requirement without any.
        requirement_status: the requirement's derived status (same on all its rows).
        scenario_verdicts: the verdicts of this row's scenario, with their evidence folders.
        related_verdicts: verdicts naming the requirement under another scenario id
            (first row only).
        vendor_proofs: ANS proof ids the vendor must still supply for this row.
        comment: reasons and first findings of the non-passed verdicts.
    """

    requirement: Requirement
    scenario: ComplianceScenario | None
    requirement_status: VerdictStatus
    scenario_verdicts: tuple[RecordedVerdict, ...]
    vendor_proofs: tuple[str, ...]
    comment: str
    related_verdicts: tuple[RecordedVerdict, ...] = ()

    @property
    def scenario_status(self) -> VerdictStatus | None:
        """The combined status of this row's verdicts; None when it has none."""
        if not self.scenario_verdicts:
            return None
        return combine([r.verdict.status for r in self.scenario_verdicts])

    @property
    def evidence_folders(self) -> tuple[str, ...]:
        """Evidence folders of the scenario's verdicts, then of the related ones."""
        return tuple(r.folder for r in (*self.scenario_verdicts, *self.related_verdicts) if r.folder)

    def scenario_status_text(self) -> str:
        """``passed``; ``failed (passed 2, failed 1)`` for several verdicts; ``—`` for none."""
        status = self.scenario_status
        if status is None:
            return NO_VERDICT
        if len(self.scenario_verdicts) == 1:
            return status.value
        counts = Counter(r.verdict.status.value for r in self.scenario_verdicts)
        detail = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
        return f"{status.value} ({detail})"

    def cells(self) -> list[str]:
        """The row's values in :data:`COLUMNS` order."""
        req, sc = self.requirement, self.scenario
        proofs = [p.ref for p in sc.proofs] if sc else []
        if len(proofs) > MAX_PROOFS:
            proofs = [*proofs[: MAX_PROOFS - 1], ", ".join(proofs[MAX_PROOFS - 1 :])]
        proofs += [""] * (MAX_PROOFS - len(proofs))
        return [
            "OUI" if req.conditional else "NON",
            req.profile,
            req.section_id,
            req.section,
            req.bloc,
            req.fonction,
            req.nature.value,
            req.ref,
            req.statement,
            sc.ref if sc else "",
            sc.summary if sc else "",
            *proofs,
            self.requirement_status.value,
            self.scenario_status_text(),
            "\n".join(self.evidence_folders),
            ", ".join(self.vendor_proofs),
            self.comment,
        ]


def requirement_statuses(catalog: Catalog, verdicts: Iterable[Verdict | RecordedVerdict]) -> dict[str, VerdictStatus]:
    """Each catalogue requirement's status from every verdict naming it (none → ``manual``).

    This is the verdicts' part only: :func:`build_rows` then keeps a ``passed``
    requirement ``manual`` while a proof is left to the vendor, and the rows are
    what the matrix and ``index.html`` show.
    """
    by_ref: dict[str, list[VerdictStatus]] = {req.ref: [] for req in catalog}
    for item in verdicts:
        verdict = item.verdict if isinstance(item, RecordedVerdict) else item
        for ref in verdict.requirement_refs:
            if ref in by_ref:
                by_ref[ref].append(verdict.status)
    return {ref: combine(statuses) for ref, statuses in by_ref.items()}


def build_rows(catalog: Catalog, records: Sequence[RecordedVerdict | Verdict]) -> list[MatrixRow]:
    """The matrix rows for every requirement of ``catalog``, in ANS order.

    Plain :class:`Verdict` objects are accepted too (their evidence folder is then unknown).
    """
    recorded = [r if isinstance(r, RecordedVerdict) else RecordedVerdict(r, "", "") for r in records]
    statuses = requirement_statuses(catalog, recorded)
    naming: dict[str, list[RecordedVerdict]] = {}
    for record in recorded:
        for ref in dict.fromkeys(record.verdict.requirement_refs):
            naming.setdefault(ref, []).append(record)

    rows: list[MatrixRow] = []
    for req in sorted(catalog, key=requirement_sort_key):
        own = naming.get(req.ref, [])
        scenario_refs = {sc.ref for sc in req.scenarios}
        unattached = [r for r in own if not scenario_refs.intersection(r.verdict.scenario_refs)]
        status = statuses[req.ref]
        scenarios: list[ComplianceScenario | None] = [*sorted(req.scenarios, key=lambda s: natural_key(s.ref))]
        shown_by_row = [
            [r for r in own if sc is not None and sc.ref in r.verdict.scenario_refs] for sc in scenarios or [None]
        ]
        proofs_by_row = [
            _vendor_proofs(sc, shown, status) for sc, shown in zip(scenarios or [None], shown_by_row, strict=True)
        ]
        if status is VerdictStatus.PASSED and any(proofs_by_row):
            # Every automated check passed, but ANS still expects a proof only the
            # vendor can give (a CNDA certificate, documentation...): not done yet.
            status = VerdictStatus.MANUAL
        for index, sc in enumerate(scenarios or [None]):
            shown = shown_by_row[index]
            related = unattached if index == 0 else []
            rows.append(
                MatrixRow(
                    requirement=req,
                    scenario=sc,
                    requirement_status=status,
                    scenario_verdicts=tuple(shown),
                    vendor_proofs=proofs_by_row[index],
                    comment=_comment(shown, related),
                    related_verdicts=tuple(related),
                )
            )
    return rows


def _vendor_proofs(
    scenario: ComplianceScenario | None, shown: list[RecordedVerdict], requirement_status: VerdictStatus
) -> tuple[str, ...]:
    """The proofs the vendor still supplies for this row.

    All of them when nothing automated stands for the scenario (no verdict,
    ``manual`` or ``not-supported``); none when it is not applicable; otherwise
    the proofs only a vendor can give (documentation, CNDA certificate, written
    commitment, test-platform reference), plus any proof the verdicts name as
    covered by none of them when they list the proofs they cover.
    """
    if scenario is None:
        return ()
    status = combine([r.verdict.status for r in shown]) if shown else requirement_status
    if status is VerdictStatus.NOT_APPLICABLE:
        return ()
    if status in (VerdictStatus.MANUAL, VerdictStatus.NOT_SUPPORTED):
        return tuple(p.ref for p in scenario.proofs)
    covered = {ref for r in shown for ref in r.verdict.proof_refs}
    return tuple(p.ref for p in scenario.proofs if p.kind.needs_vendor or (covered and p.ref not in covered))


def _comment(shown: list[RecordedVerdict], related: list[RecordedVerdict]) -> str:
    if not shown and not related:
        return NO_VERDICT_COMMENT
    lines: list[str] = []
    for record in shown:
        lines += _verdict_comment(record.verdict)
    for record in related:
        verdict = record.verdict
        lines.append(f"{verdict.status.value} via {verdict.scenario_ref or 'un scénario hors catalogue'}")
        lines += _verdict_comment(verdict)[:1]
    return "\n".join(dict.fromkeys(lines))


def _verdict_comment(verdict: Verdict) -> list[str]:
    """A non-passed verdict's reason and first error findings."""
    lines: list[str] = []
    if verdict.status is not VerdictStatus.PASSED:
        if verdict.reason:
            lines.append(f"{verdict.status.value}: {verdict.reason}")
        errors = [f for f in verdict.findings if f.severity is Severity.ERROR]
        lines += [f"[{f.rule}] {f.message}" for f in errors[:MAX_COMMENT_ITEMS]]
        if len(errors) > MAX_COMMENT_ITEMS:
            lines.append(f"(+{len(errors) - MAX_COMMENT_ITEMS} autres constats)")
    return lines


# -- ordering --------------------------------------------------------------------------
_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[tuple[int, int, str], ...]:
    """Sort key comparing digit runs as numbers: ``va1.9`` before ``va1.10``."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in _DIGITS.split(text) if part)


def requirement_sort_key(req: Requirement) -> tuple[int, str, tuple[tuple[int, int, str], ...]]:
    """ANS order: area (INS, DMP, MSS, PSC, ANN, TBB, HOP, DOC, PORT, EPR, then others), then ref."""
    area = req.area
    rank = AREA_ORDER.index(area) if area in AREA_ORDER else len(AREA_ORDER)
    return rank, area if rank == len(AREA_ORDER) else "", natural_key(req.ref)


# -- CSV -------------------------------------------------------------------------------
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def matrix_csv(rows: Sequence[MatrixRow]) -> bytes:
    """The matrix as RFC 4180 CSV (commas, CRLF), UTF-8 with a BOM."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_csv_cell(cell) for cell in row.cells()])
    return out.getvalue().encode("utf-8-sig")


# -- XLSX ------------------------------------------------------------------------------
STATUS_FILLS: dict[str, str] = {
    VerdictStatus.PASSED.value: "C6EFCE",
    VerdictStatus.FAILED.value: "FFC7CE",
    VerdictStatus.ERROR.value: "E4A0F0",
    VerdictStatus.MANUAL.value: "FFEB9C",
    VerdictStatus.NOT_SUPPORTED.value: "FCE4D6",
    VerdictStatus.NOT_APPLICABLE.value: "E7E6E6",
}
_WIDTHS: dict[str, float] = {
    "Exigence conditionnelle": 12,
    "Profil": 18,
    "ID Section": 10,
    "Section": 22,
    "Bloc": 22,
    "Fonction": 24,
    "Nature de l'exigence": 15,
    "N° exigence": 16,
    "Énoncé de l'exigence": 60,
    "N° scénario": 18,
    "Scénario de conformité": 50,
    "Statut harness": 15,
    "Statut scénario": 18,
    "Preuves produites": 55,
    "Preuves à fournir par l'éditeur": 30,
    "Commentaire": 60,
}
_WRAPPED = {"Énoncé de l'exigence", "Scénario de conformité", "Preuves produites", "Commentaire"}
MAX_CELL = 32_000
"""Excel refuses cells over 32,767 characters; longer text is cut with a mark."""


def matrix_xlsx(rows: Sequence[MatrixRow], run: RunInfo | None, moment: datetime) -> bytes:
    """The matrix as an XLSX workbook, reproducible: every timestamp is ``moment``."""
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter
    from openpyxl.writer.excel import ExcelWriter

    def clean(value: str) -> str:
        text = str(ILLEGAL_CHARACTERS_RE.sub("\ufffd", value))
        return text if len(text) <= MAX_CELL else text[:MAX_CELL] + " […]"

    def put(ws: Any, row: int, column: int, value: str) -> Any:
        cell = ws.cell(row=row, column=column)
        cell.value = clean(value)
        cell.data_type = "s"  # text, never a formula, whatever it starts with
        return cell

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Matrice"
    bold = Font(bold=True)
    header_fill = PatternFill("solid", fgColor="D9E1F2")
    top = Alignment(vertical="top")
    wrapped = Alignment(vertical="top", wrap_text=True)
    for column, title in enumerate(COLUMNS, start=1):
        cell = put(sheet, 1, column, title)
        cell.font = bold
        cell.fill = header_fill
        cell.alignment = wrapped
        sheet.column_dimensions[get_column_letter(column)].width = _WIDTHS.get(title, 16)
    status_columns = {COLUMNS.index("Statut harness") + 1, COLUMNS.index("Statut scénario") + 1}
    for index, row in enumerate(rows, start=2):
        for column, value in enumerate(row.cells(), start=1):
            cell = put(sheet, index, column, value)
            cell.alignment = wrapped if COLUMNS[column - 1] in _WRAPPED else top
            colour = STATUS_FILLS.get(value.split(" ")[0]) if column in status_columns else None
            if colour:
                cell.fill = PatternFill("solid", fgColor=colour)
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(COLUMNS))}{max(1, len(rows) + 1)}"

    facts = workbook.create_sheet("Exécution")
    facts.column_dimensions["A"].width = 24
    facts.column_dimensions["B"].width = 80
    for index, (label, value) in enumerate(run_facts(run), start=1):
        put(facts, index, 1, label).font = bold
        put(facts, index, 2, value)

    naive = moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
    workbook.properties.creator = "segur-harness"
    workbook.properties.title = "Matrice de conformité Ségur"
    workbook.properties.created = naive
    workbook.properties.modified = naive
    buffer = io.BytesIO()
    # ExcelWriter, not Workbook.save: save() overwrites 'modified' with the wall clock
    ExcelWriter(workbook, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED)).save()
    return stablezip.restamp(buffer.getvalue(), stablezip.zip_time(moment))


def run_facts(run: RunInfo | None) -> list[tuple[str, str]]:
    """The run's facts as (label, value) pairs, in French like ANS's forms: the matrix's and ``index.html``'s."""
    if run is None:
        return [("Exécution", "inconnue (journal sans début)")]
    sut = run.sut
    return [
        ("Éditeur", sut.get("publisher", "")),
        ("Logiciel", sut.get("software", "")),
        ("Version", sut.get("version", "")),
        ("Adaptateur", sut.get("adapter", "")),
        ("DSR", run.dsr),
        ("Profils", ", ".join(run.profiles)),
        ("Identifiant d'exécution", run.run_id),
        ("Début", run.started.isoformat()),
        ("Fin", run.ended.isoformat() if run.ended else "inachevée"),
        ("Version du harness", run.harness_version),
        ("Version du catalogue", run.catalog_version),
        ("Règles CDA (TestContenuCDA)", run.rules.get("cda", "") or "non configurées : règles du harness seules"),
    ]


def write_matrix(directory: Path, rows: Sequence[MatrixRow], run: RunInfo | None, moment: datetime) -> None:
    """Write ``matrix.csv`` and ``matrix.xlsx`` into ``directory``."""
    write_atomic(directory / layout.MATRIX_CSV, matrix_csv(rows))
    write_atomic(directory / layout.MATRIX_XLSX, matrix_xlsx(rows, run, moment))
