"""The one table formatter: every study's markdown table goes through :func:`markdown_table`."""

from __future__ import annotations

import math
from typing import Any, Sequence


def cell(x: Any, spec: str = ".3f", missing: str = "—") -> str:
    """A number formatted with ``spec``; None and NaN (an undefined metric) print as ``missing``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return missing
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return format(x, spec)
    return str(x)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; cells that are not strings go through :func:`cell`."""
    def fmt(row: Sequence[Any]) -> str:
        return "| " + " | ".join(c if isinstance(c, str) else cell(c) for c in row) + " |"

    for r in rows:
        if len(r) != len(header):
            raise ValueError(f"a row has {len(r)} cells for {len(header)} columns: {r}")
    return "\n".join([fmt(header), "|" + "---|" * len(header)] + [fmt(r) for r in rows])
