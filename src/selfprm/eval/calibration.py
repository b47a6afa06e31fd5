"""Calibration of predicted probabilities: ECE with equal-mass bins, Brier score, reliability diagram.

Expected calibration error (Guo et al. 2017, "On Calibration of Modern Neural Networks", eq. 3),
with *equal-mass* bins (each holds the same number of predictions, as Nixon et al. 2019,
"Measuring Calibration in Deep Learning", recommend over equal-width bins, whose sparse end bins
make the estimate noisy):

    ECE   = Σ_b |B_b| / n · | acc(B_b) − conf(B_b) |,   acc = mean label, conf = mean prediction
    Brier = 1/n Σ_i (p_i − y_i)²                        (Brier 1950)

Predictions are sorted and cut into ``n_bins`` consecutive runs of (almost) equal size
(``numpy.array_split``), so ties may fall into neighbouring bins; a bin never is empty.
``binning="width"`` gives Guo et al.'s equal-width bins ``[b/n, (b+1)/n)`` instead (empty ones dropped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np


def _clean(probs: Sequence[float], labels: Sequence[bool | int | float]) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=float)
    y = (np.asarray(labels, dtype=float) > 0.5).astype(float)
    if p.shape != y.shape:
        raise ValueError(f"{len(p)} probabilities for {len(y)} labels")
    keep = ~np.isnan(p)  # a step a judge could not score (cut off) has no prediction
    p, y = p[keep], y[keep]
    if np.any((p < 0) | (p > 1)):
        raise ValueError("probabilities must lie in [0, 1]")
    return p, y


@dataclass
class Reliability:
    """Per equal-mass bin: mean prediction, share of positives, and how many predictions it holds."""

    confidence: list[float]
    accuracy: list[float]
    counts: list[int]


def reliability(probs: Sequence[float], labels: Sequence[bool | int | float], n_bins: int = 10,
                binning: str = "mass") -> Reliability:
    """The bins of the module docstring: equal-mass (fewer bins when there are fewer predictions) or
    equal-width (``binning="width"``, empty bins left out)."""
    p, y = _clean(probs, labels)
    if len(p) == 0:
        return Reliability([], [], [])
    if binning == "mass":
        order = np.argsort(p, kind="mergesort")
        bins = [b for b in np.array_split(order, min(n_bins, len(p))) if len(b)]
    elif binning == "width":
        idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
        bins = [np.flatnonzero(idx == b) for b in range(n_bins) if np.any(idx == b)]
    else:
        raise ValueError(f"binning must be 'mass' or 'width', got {binning!r}")
    return Reliability([float(p[b].mean()) for b in bins], [float(y[b].mean()) for b in bins], [len(b) for b in bins])


def ece(probs: Sequence[float], labels: Sequence[bool | int | float], n_bins: int = 10, binning: str = "mass") -> float:
    """Expected calibration error over the bins of :func:`reliability`; NaN without predictions."""
    return ece_of(reliability(probs, labels, n_bins, binning))


def ece_of(r: Reliability) -> float:
    """ECE of already-binned predictions; NaN without predictions."""
    n = sum(r.counts)
    if n == 0:
        return math.nan
    # ECE = Σ_b |B_b|/n · |acc(B_b) − conf(B_b)|
    return float(sum(c / n * abs(a - f) for c, a, f in zip(r.counts, r.accuracy, r.confidence)))


def brier(probs: Sequence[float], labels: Sequence[bool | int | float]) -> float:
    """Mean squared gap between prediction and outcome; NaN without predictions."""
    p, y = _clean(probs, labels)
    return float(np.mean((p - y) ** 2)) if len(p) else math.nan


def plot_reliability(curves: dict[str, Reliability], path: str | Path, title: str = "reliability") -> Path:
    """One reliability diagram (mean prediction against share correct, per bin) with a line per judge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], ls=":", color="gray", label="calibrated")
    for name, r in curves.items():
        if r.counts:
            ax.plot(r.confidence, r.accuracy, marker="o", ms=3, label=name)
    ax.set_xlabel("mean predicted probability (equal-mass bins)")
    ax.set_ylabel("share correct")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
