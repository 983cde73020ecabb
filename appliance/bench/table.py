"""What the benchmarks' printed tables share: a missing figure, and an error on one line."""
from __future__ import annotations


def fmt(value, spec: str = ",.0f", missing: str = "-") -> str:
    """``value`` formatted with ``spec``, or ``missing`` when there is no figure (None)."""
    return missing if value is None else format(value, spec)


def one_line(text: str) -> str:
    """A (multi-line) error in one table cell: its first and last non-empty lines."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if len(lines) < 2 else f"{lines[0]} ... {lines[-1]}"
