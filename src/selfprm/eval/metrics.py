"""Evaluation metrics: step AUROC, ProcessBench's first-error F1, best-of-N, label cost."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from selfprm.prm.aggregate import aggregate


def auroc(scores: Sequence[float], labels: Sequence[bool | int | float]) -> float:
    """Area under the ROC curve, via the Mann-Whitney U statistic (ties count one half).

    ``labels`` above 0.5 are positives. NaN when one class is absent.
    """
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=float) > 0.5
    keep = ~np.isnan(s)
    s, y = s[keep], y[keep]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def within_group_auroc(groups: Sequence[Sequence[tuple[float, bool]]]) -> float:
    """AUROC over the (right, wrong) pairs *within* each group (the samples of one problem), ties
    one half, NaN scores skipped: what a verifier for best-of-N needs. A pooled AUROC also rewards
    telling easy problems from hard ones, which picks nothing among one problem's samples.
    NaN when no group holds both a right and a wrong sample."""
    wins = pairs = 0.0
    for g in groups:
        kept = [(s, ok) for s, ok in g if not math.isnan(s)]
        n_pos = sum(bool(ok) for _, ok in kept)
        n = n_pos * (len(kept) - n_pos)  # the group's (right, wrong) pairs; its AUROC is their win share
        if n:
            wins += auroc([s for s, _ in kept], [ok for _, ok in kept]) * n
            pairs += n
    return wins / pairs if pairs else math.nan


def step_auroc(step_scores: Sequence[Sequence[float]], step_labels: Sequence[Sequence[bool]]) -> float:
    """AUROC of all steps pooled: does the PRM rank sound steps above unsound ones?"""
    flat_s = [x for row in step_scores for x in row]
    flat_y = [y for row in step_labels for y in row]
    return auroc(flat_s, flat_y)


def predicted_first_error(scores: Sequence[float], threshold: float) -> int:
    """ProcessBench's prediction: the first step scoring below ``threshold``, or -1."""
    for i, x in enumerate(scores):
        if not math.isnan(x) and x < threshold:
            return i
    return -1


@dataclass
class FirstErrorF1:
    f1: float
    error_accuracy: float  # on solutions with an error: predicted the right first error
    correct_accuracy: float  # on error-free solutions: predicted none
    n_error: int
    n_correct: int
    threshold: float


def first_error_f1(step_scores: Sequence[Sequence[float]], first_errors: Sequence[int], threshold: float) -> FirstErrorF1:
    """ProcessBench (arXiv 2412.06559): F1 = harmonic mean of the accuracy on erroneous samples
    (predicted index == labelled first error) and on error-free samples (predicted -1)."""
    hits_err = hits_ok = n_err = n_ok = 0
    for scores, fe in zip(step_scores, first_errors):
        pred = predicted_first_error(scores, threshold)
        if fe == -1:
            n_ok += 1
            hits_ok += pred == -1
        else:
            n_err += 1
            hits_err += pred == fe
    acc_err = hits_err / n_err if n_err else math.nan
    acc_ok = hits_ok / n_ok if n_ok else math.nan
    f1 = 0.0 if acc_err + acc_ok == 0 else 2 * acc_err * acc_ok / (acc_err + acc_ok)
    return FirstErrorF1(f1, acc_err, acc_ok, n_err, n_ok, threshold)


def tune_threshold(
    step_scores: Sequence[Sequence[float]], first_errors: Sequence[int], grid: Sequence[float] | None = None
) -> float:
    """The threshold maximising first-error F1 on a *dev* split (never call this on the test split)."""
    if grid is None:
        grid = [i / 100 for i in range(1, 100)]
    best, best_f1 = 0.5, -1.0
    for th in grid:
        f1 = first_error_f1(step_scores, first_errors, th).f1
        if not math.isnan(f1) and f1 > best_f1:
            best, best_f1 = th, f1
    return best


@dataclass
class BestOfN:
    prm: float
    majority_vote: float
    random_pick: float
    oracle_pick: float
    n: int
    problems: int


def best_of_n(groups: Sequence[Sequence[tuple[str | None, bool, float]]], n: int) -> BestOfN:
    """Accuracy of picking one of ``n`` solutions per problem.

    Each group holds ``(final_answer, correct, prm_score)`` for the samples of one problem (at
    least ``n``; the first ``n`` are used). The picks are :mod:`selfprm.search.best_of_n`'s, the
    one implementation of them: the PRM takes its highest score, majority vote the most common
    answer, both breaking a tie by the first solution met (samples come in random order, so this
    is a random tie-break that needs no generator). ``random_pick`` is the expected accuracy of a
    uniform pick, computed exactly; ``oracle_pick`` is right when any sample is.
    """
    from selfprm.search.best_of_n import best_of_n_pick, majority_vote_pick

    prm = mv = rnd = orc = 0.0
    for g in groups:
        g = list(g)[:n]
        if len(g) < n:
            raise ValueError(f"a group has {len(g)} samples, fewer than n={n}")
        answers = [a for a, _, _ in g]
        prm += g[best_of_n_pick(answers, [s for _, _, s in g])][1]
        pick = majority_vote_pick(answers)
        if pick is not None:
            mv += next(ok for a, ok, _ in g if a == pick)
        rnd += sum(ok for _, ok, _ in g) / n
        orc += any(ok for _, ok, _ in g)
    k = max(1, len(groups))
    return BestOfN(prm / k, mv / k, rnd / k, orc / k, n, len(groups))


def solution_scores(step_scores: Sequence[Sequence[float]], how: str = "min") -> list[float]:
    return [aggregate(s, how) for s in step_scores]
