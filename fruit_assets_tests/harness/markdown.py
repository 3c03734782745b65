"""Reads the Markdown tables the assets put in their metadata back into rows, so tests compare
values, not substrings."""

from __future__ import annotations


def markdown_table(text: str) -> list[dict[str, str]]:
    """The first Markdown table in ``text`` as rows {column header: cell text}."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("|")]
    if len(lines) < 2:
        raise AssertionError(f"no Markdown table in {text[:200]!r}")
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:  # lines[1] is the |---| separator
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert len(cells) == len(header), line
        rows.append(dict(zip(header, cells)))
    return rows
