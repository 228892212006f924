"""index.html: self-contained, escaped, linked to the evidence."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from harness.evidence.html import href, render_index
from harness.evidence.journal import read_records, read_run
from harness.evidence.matrix import build_rows
from tests.test_evidence_support import HOSTILE_REASON, T_END, make_run, small_catalog


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name == "href" and value:
                self.links.append(value)
            if name == "src" and value:
                self.sources.append(value)


def page(tmp_path: Path) -> tuple[str, Path]:
    run_dir = make_run(tmp_path / "run")
    catalog = small_catalog()
    records = read_records(run_dir)
    return render_index(read_run(run_dir), catalog, build_rows(catalog, records), records, T_END), run_dir


def test_everything_from_the_sut_is_escaped(tmp_path: Path) -> None:
    html, _ = page(tmp_path)
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in html
    assert HOSTILE_REASON not in html
    parsed = _Collector()
    parsed.feed(html)
    assert "script" not in parsed.tags and "img" not in parsed.tags
    assert not parsed.sources, "nothing is loaded"


def test_self_contained_with_links_to_the_evidence(tmp_path: Path) -> None:
    html, run_dir = page(tmp_path)
    parsed = _Collector()
    parsed.feed(html)
    assert "<style>" in html and "Content-Security-Policy" in html
    assert not any(re.match(r"^[a-z]+:", link) or link.startswith("//") for link in parsed.links), "no remote link"
    local = [link for link in parsed.links if not link.startswith("#")]
    assert "requirements/INS_va1.06/INS_va1.06.01/qualifiee-ko/" in local
    assert "requirements/INS_va1.06/INS_va1.06.01/qualifiee-ko/exchanges/001-insi.json" in local
    for link in local:
        target = run_dir / link.replace("%3C", "<").replace("%3E", ">").replace("%20", " ")
        assert target.exists(), link
    anchors = {link[1:] for link in parsed.links if link.startswith("#")}
    assert all(f'id="{a}"' in html for a in anchors)


def test_page_shows_facts_summary_and_proofs(tmp_path: Path) -> None:
    html, _ = page(tmp_path)
    assert "Cabinet Plus" in html and "Éditeur Démo" in html and "LGC" in html
    assert "Synthèse" in html and "Matrice de conformité" in html
    assert "INS/va1.06.01.02" in html and "Our paraphrase of INS/va1.06." in html
    assert "the SUT timed out" in html and "cda.header.author" in html


def test_unsafe_paths_are_not_linked() -> None:
    assert href("../etc/passwd") is None and href("/abs") is None
    assert href("requirements/a b/f.json") == "requirements/a%20b/f.json"
