"""Plain-text tables for the summaries people read: columns padded to their widest cell."""
from __future__ import annotations


def table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    """One line per row, each column left-aligned to its widest cell, trailing spaces dropped."""
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return [(indent + "  ".join(cell.ljust(w) for cell, w in zip(r, widths))).rstrip() for r in rows]
