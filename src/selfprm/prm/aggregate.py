"""Step scores -> one solution score."""

from __future__ import annotations

import math
from typing import Sequence

AGGREGATIONS = ("min", "product", "last", "geomean")


def aggregate(scores: Sequence[float], how: str = "min") -> float:
    """``min`` (the weakest step), ``product``, ``last`` or ``geomean`` of step scores in (0, 1).

    Unscored steps (NaN) are skipped; a solution with no scored step gets 0.
    """
    s = [x for x in scores if not math.isnan(x)]
    if not s:
        return 0.0
    if how == "min":
        return min(s)
    if how == "last":
        return s[-1]
    if how == "product":
        return math.prod(s)
    if how == "geomean":
        return math.exp(sum(math.log(max(x, 1e-12)) for x in s) / len(s))
    raise ValueError(f"unknown aggregation {how!r}; choose from {AGGREGATIONS}")
