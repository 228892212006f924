"""The vendor's own statements for documentation proofs, read from a TOML file given on the command line.

Some ANS proofs are documents only the vendor can write (how keys are managed, how an
administrator runs an export). The scenarios fill what the run measured into a template
and take the rest from a file the vendor passes (``--id-document-statement``,
``--portability-statement``): one table, one string per field. A missing or unreadable file
leaves the fields to be supplied; it never fails the scenario.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path

import pytest

TO_BE_SUPPLIED = "(to be supplied by the vendor: {option})"


def read_statement(request: pytest.FixtureRequest, dest: str, table: str, fields: Mapping[str, str]) -> dict[str, str]:
    """The known ``fields`` of table ``[table]`` in the file of option ``dest``; ``{"error": ...}`` if unreadable."""
    path = request.config.getoption(dest)
    if not path:
        return {}
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8")).get(table, {})
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return {"error": f"cannot read {path}: {exc}"}
    return {key: str(value) for key, value in data.items() if key in fields} if isinstance(data, dict) else {}


def statement_lines(statement: Mapping[str, str], fields: Mapping[str, str], option: str) -> list[str]:
    """One Markdown bullet per field: the vendor's text, or a placeholder naming the option to use."""
    missing = TO_BE_SUPPLIED.format(option=option)
    lines = [f"- {label}: {statement.get(key) or missing}" for key, label in fields.items()]
    if statement.get("error"):
        lines.append(f"- (the statement file was not read: {statement['error']})")
    return lines
