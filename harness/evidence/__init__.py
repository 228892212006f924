"""Evidence: what a conformance run leaves behind, and how a reviewer checks it.

The run journal is the source of truth; everything else is rebuilt from it and
sealed by a signed manifest. One module per concern, used in this order:

- :mod:`~harness.evidence.journal` — ``RunJournal``: ``start``, ``record`` (one
  call per scenario), ``finish``; ``read_verdicts`` / ``read_run`` to read back.
- :mod:`~harness.evidence.redact` — secrets out of exchanges before they are written.
- :mod:`~harness.evidence.matrix` — the compliance matrix (CSV, XLSX) in ANS's layout.
- :mod:`~harness.evidence.html` — ``index.html``.
- :mod:`~harness.evidence.signing` — detached CMS signature and its verification.
- :mod:`~harness.evidence.manifest` — ``finalize_run``: rebuild, hash, sign.
- :mod:`~harness.evidence.pack` — ``build_pack``: the reproducible zip.
- :mod:`~harness.evidence.verify` — ``verify_pack``: check a zip or folder.
- :mod:`~harness.evidence.layout` and :mod:`~harness.evidence.stablezip` — the
  folder's names, and zips that come out byte-identical.

Nothing is imported here, so importing one part does not load the others
(openpyxl and cryptography are only loaded when a run is finalised or verified).
"""
