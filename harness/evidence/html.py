"""``index.html``: the human entry point of an evidence pack.

One self-contained page (inline CSS, no script, nothing fetched) that a
reviewer opens from the unzipped pack: the run facts, how many requirements
and verdicts ended in each status, the compliance matrix with links to each
evidence folder and file, and per requirement its statement, expected proofs
and the verdicts with their reasons and findings.

Everything shown can come from the SUT (reasons quote what it answered,
artefact names are its own), so every value is HTML-escaped, links are built
only from safe relative paths, and a Content-Security-Policy forbids scripts
and remote loads should anything slip through.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import quote

from harness.catalog.model import Catalog, Requirement
from harness.evidence import layout
from harness.evidence.journal import RecordedVerdict, RunInfo
from harness.evidence.matrix import MatrixRow, requirement_sort_key, run_facts
from harness.verdicts import STATUS_PRECEDENCE, VerdictStatus

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:"

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5rem;color:#1b1b1b;line-height:1.4}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:2px solid #d9e1f2}
h3{font-size:1.05rem;margin:1.5rem 0 .3rem}table{border-collapse:collapse;margin:.5rem 0;font-size:.88rem}
th,td{border:1px solid #ccc;padding:.25rem .45rem;text-align:left;vertical-align:top}
th{background:#d9e1f2}td.pre{white-space:pre-line}.facts th{width:14rem}
.s{display:inline-block;padding:0 .4rem;border-radius:.25rem;font-weight:600;font-size:.82rem}
.passed{background:#c6efce}.failed{background:#ffc7ce}.error{background:#e4a0f0}.manual{background:#ffeb9c}
.not-supported{background:#fce4d6}.not-applicable{background:#e7e6e6}.none{background:#fff;border:1px solid #ccc}
.req{border-left:4px solid #d9e1f2;padding-left:.8rem;margin-bottom:1.2rem}.muted{color:#666}
code{font-size:.85rem}ul.files{margin:.2rem 0;padding-left:1.2rem}
"""


def esc(value: object) -> str:
    """HTML-escaped text of ``value`` (quotes too, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


def href(path: str) -> str | None:
    """A percent-encoded relative link for a path inside the run, or None if it is not safe."""
    target = path.rstrip("/")
    if not layout.is_safe_relative(target):
        return None
    return quote(target, safe="/") + ("/" if path.endswith("/") else "")


def link(path: str, text: str | None = None) -> str:
    url = href(path)
    label = esc(text if text is not None else path)
    return f'<a href="{esc(url)}">{label}</a>' if url else label


def badge(status: VerdictStatus | str | None, text: str | None = None) -> str:
    value = status.value if isinstance(status, VerdictStatus) else (status or "none")
    css = value if value in {s.value for s in VerdictStatus} else "none"
    return f'<span class="s {css}">{esc(text if text is not None else value)}</span>'


def anchor(ref: str) -> str:
    return "req-" + layout.safe_name(ref, 120)


def render_index(
    run: RunInfo | None,
    catalog: Catalog,
    rows: Sequence[MatrixRow],
    records: Sequence[RecordedVerdict],
    moment: datetime,
) -> str:
    """The whole page. ``moment`` (the run's end) is the only time shown as "report date"."""
    sut = run.sut if run else {}
    title = "Rapport de conformité Ségur"
    subject = " ".join(x for x in (sut.get("software", ""), sut.get("version", "")) if x)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="fr"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}{' — ' + esc(subject) if subject else ''}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="muted">{esc(subject or "logiciel inconnu")} — rapport du {esc(moment.isoformat())}</p>',
        _facts(run),
        _summary(rows, records),
        _matrix(rows),
        _details(catalog, rows),
        _outside_catalog(catalog, records),
        "</body></html>",
        "",
    ]
    return "\n".join(parts)


def _facts(run: RunInfo | None) -> str:
    if run is None:
        return "<p>Aucune information d'exécution (journal sans ligne de début).</p>"
    signer = run.signer or {}
    signer_text = ""
    if signer:
        signer_text = signer.get("subject", "") + (
            " — clé générée par le harness, pas une clé de l'éditeur" if signer.get("generated") else ""
        )
    facts = [
        *run_facts(run),
        ("Hôte", ", ".join(f"{k}: {v}" for k, v in sorted(run.host.items()))),
        ("Ligne de commande", " ".join(run.command)),
        ("Signataire du manifeste", signer_text),
    ]
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    return f'<h2>Exécution</h2><table class="facts">{body}</table>'


def _summary(rows: Sequence[MatrixRow], records: Sequence[RecordedVerdict]) -> str:
    by_requirement: dict[str, VerdictStatus] = {row.requirement.ref: row.requirement_status for row in rows}
    requirement_counts = Counter(by_requirement.values())
    verdict_counts = Counter(r.verdict.status for r in records)
    header = "".join(f"<th>{badge(s)}</th>" for s in STATUS_PRECEDENCE) + "<th>total</th>"
    req_cells = "".join(f"<td>{requirement_counts.get(s, 0)}</td>" for s in STATUS_PRECEDENCE)
    verdict_cells = "".join(f"<td>{verdict_counts.get(s, 0)}</td>" for s in STATUS_PRECEDENCE)
    return (
        "<h2>Synthèse</h2><table><tr><th></th>"
        + header
        + f"</tr><tr><th>Exigences</th>{req_cells}<td>{len(by_requirement)}</td></tr>"
        + f"<tr><th>Verdicts</th>{verdict_cells}<td>{len(records)}</td></tr></table>"
    )


def _matrix(rows: Sequence[MatrixRow]) -> str:
    head = (
        "<tr><th>N° exigence</th><th>Profil</th><th>N° scénario</th><th>Statut harness</th>"
        "<th>Statut scénario</th><th>Preuves produites</th><th>Preuves à fournir par l'éditeur</th>"
        "<th>Commentaire</th></tr>"
    )
    body: list[str] = []
    for row in rows:
        req = row.requirement
        folders = "<br>".join(link(folder + "/", folder) for folder in row.evidence_folders)
        body.append(
            "<tr>"
            f'<td><a href="#{esc(anchor(req.ref))}">{esc(req.ref)}</a></td>'
            f"<td>{esc(req.profile)}</td>"
            f"<td>{esc(row.scenario.ref if row.scenario else '')}</td>"
            f"<td>{badge(row.requirement_status)}</td>"
            f"<td>{badge(row.scenario_status, row.scenario_status_text())}</td>"
            f"<td>{folders}</td>"
            f"<td>{esc(', '.join(row.vendor_proofs))}</td>"
            f'<td class="pre">{esc(row.comment)}</td>'
            "</tr>"
        )
    return f"<h2>Matrice de conformité</h2><table>{head}{''.join(body)}</table>"


def _details(catalog: Catalog, rows: Sequence[MatrixRow]) -> str:
    rows_by_ref: dict[str, list[MatrixRow]] = {}
    for row in rows:
        rows_by_ref.setdefault(row.requirement.ref, []).append(row)
    sections = [_requirement(req, rows_by_ref.get(req.ref, [])) for req in sorted(catalog, key=requirement_sort_key)]
    return "<h2>Exigences</h2>" + "".join(sections)


def _requirement(req: Requirement, rows: list[MatrixRow]) -> str:
    status = rows[0].requirement_status if rows else VerdictStatus.MANUAL
    out = [
        f'<section class="req" id="{esc(anchor(req.ref))}">',
        f"<h3>{esc(req.ref)} {badge(status)}</h3>",
        f'<p class="muted">{esc(" / ".join(x for x in (req.section, req.bloc, req.fonction) if x))}'
        f" — {esc(req.nature.value)} — profil {esc(req.profile)}"
        f"{' (conditionnelle)' if req.conditional else ''}"
        f"{' — DSR va1 ' + esc(', '.join(req.va1_refs)) if req.va1_refs else ''}</p>",
        f"<p>{esc(req.statement) or '<em>énoncé non renseigné</em>'}</p>",
    ]
    for row in rows:
        sc = row.scenario
        if sc is not None:
            out.append(f"<h4>{esc(sc.ref)} — {esc(sc.summary)}</h4>")
            if sc.steps:
                out.append("<ol>" + "".join(f"<li>{esc(step)}</li>" for step in sc.steps) + "</ol>")
            if sc.proofs:
                vendor = set(row.vendor_proofs)
                proof_rows = "".join(
                    f"<tr><td>{esc(p.ref)}</td><td>{esc(p.kind.value)}</td><td>{esc(p.text)}</td>"
                    f"<td>{'oui' if p.ref in vendor else 'non'}</td></tr>"
                    for p in sc.proofs
                )
                out.append(
                    "<table><tr><th>Preuve attendue</th><th>Nature</th><th>Description</th>"
                    f"<th>À fournir par l'éditeur</th></tr>{proof_rows}</table>"
                )
        out.extend(_verdict(record) for record in row.scenario_verdicts)
        if row.related_verdicts:
            out.append("<h4>Verdicts d'autres scénarios couvrant cette exigence</h4>")
            out.extend(_verdict(record) for record in row.related_verdicts)
    out.append("</section>")
    return "".join(out)


def _verdict(record: RecordedVerdict) -> str:
    verdict = record.verdict
    out = [
        f"<p>{badge(verdict.status)} {esc(verdict.title)}"
        + (f' <code class="muted">{esc(verdict.nodeid)}</code>' if verdict.nodeid else "")
        + "</p>"
    ]
    if verdict.reason:
        out.append(f'<p class="pre">{esc(verdict.reason)}</p>')
    if verdict.findings:
        found = "".join(
            f"<tr><td>{esc(f.severity.value)}</td><td>{esc(f.rule)}</td><td>{esc(f.location)}</td>"
            f"<td>{esc(f.message)}</td></tr>"
            for f in verdict.findings
        )
        out.append(f"<table><tr><th>Gravité</th><th>Règle</th><th>Où</th><th>Constat</th></tr>{found}</table>")
    files: list[str] = []
    if record.folder:
        files.append(link(f"{record.folder}/{layout.VERDICT}", layout.VERDICT))
    for exchange in verdict.exchanges:
        path = str(exchange.get("path", ""))
        if path:
            label = f"{exchange.get('simulator', '')} {exchange.get('action', '')}".strip() or path
            files.append(link(path, label))
    for artefact in verdict.artefacts:
        if artefact.path:
            files.append(
                link(artefact.path, artefact.name) + (f" — {esc(artefact.description)}" if artefact.description else "")
            )
    if files:
        out.append('<ul class="files">' + "".join(f"<li>{item}</li>" for item in files) + "</ul>")
    return "".join(out)


def _outside_catalog(catalog: Catalog, records: Sequence[RecordedVerdict]) -> str:
    strays = [r for r in records if not any(ref in catalog for ref in r.verdict.requirement_refs)]
    if not strays:
        return ""
    return "<h2>Verdicts hors catalogue</h2>" + "".join(_verdict(r) for r in strays)
