"""Choosing one answer among N sampled solutions: best-of-N, majority and weighted majority vote.

* best-of-N: the solution whose aggregated PRM score is highest.
* majority vote (self-consistency, Wang et al. 2022): the most common final answer.
* weighted majority vote (Li et al. 2023; Snell et al. 2024, arXiv 2408.03314 §5): every answer
  collects the sum of the PRM scores of the solutions that reach it,
  ``â = argmax_a Σ_i 1[a_i = a] · score_i``.

Scores are solution scores (one float per solution, e.g. ``aggregate(step_scores, "min")``), so
any PRM and any aggregation plug in. Ties are broken by the first solution met: the samples of a
problem come in random order, so that is a random tie-break that keeps the pick deterministic.
:func:`selfprm.eval.metrics.best_of_n` scores these same picks.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

from selfprm.prm.aggregate import aggregate
from selfprm.types import Trajectory


@dataclass
class Pick:
    """The answer a method chose for one problem, whether it is right, and what it cost."""

    answer: str | None
    correct: bool
    policy_tokens: int


def best_of_n_pick(answers: Sequence[str | None], scores: Sequence[float]) -> int:
    """Index of the highest-scoring solution (the first on a tie)."""
    if not answers:
        raise ValueError("no solutions to pick from")
    # NaN (a solution the PRM could not score) ranks below every score
    return max(range(len(answers)), key=lambda i: (-math.inf if math.isnan(scores[i]) else scores[i], -i))


def majority_vote_pick(answers: Sequence[str | None]) -> str | None:
    """The most common non-empty answer (the first met on a tie); None when no solution answered."""
    return weighted_majority_pick(answers, [1.0] * len(answers))


def weighted_majority_pick(answers: Sequence[str | None], scores: Sequence[float]) -> str | None:
    """The answer with the largest summed score over the solutions that give it."""
    total: dict[str, float] = defaultdict(float)
    for a, s in zip(answers, scores):
        if a is not None:
            total[a] += s
    if not total:
        return None
    order = {a: i for i, a in reversed(list(enumerate(answers)))}  # first occurrence of each answer
    return max(total, key=lambda a: (total[a], -order[a]))


def pick_all(
    group: Sequence[Trajectory],
    step_scores: Sequence[Sequence[float]] | None,
    how: str = "min",
) -> dict[str, Pick]:
    """Best-of-N, majority and weighted majority on one problem's ``group`` of solutions.

    ``step_scores`` holds the PRM's step scores of each solution (None: majority vote only).
    A truncated solution has no answer and never wins a vote, but it can still be best-of-N's
    pick (then it is wrong), exactly as a reader would take it.
    """
    problem_tokens = sum(t.tokens_generated for t in group)
    answers = [None if t.truncated else t.final_answer for t in group]
    checker = {a: any(t.outcome for t, b in zip(group, answers) if b == a) for a in set(answers)}
    out: dict[str, Pick] = {}
    mv = majority_vote_pick(answers)
    out["majority_vote"] = Pick(mv, bool(checker.get(mv, False)) if mv is not None else False, problem_tokens)
    if step_scores is not None:
        scores = [aggregate(s, how) for s in step_scores]
        i = best_of_n_pick(answers, scores)
        out["best_of_n"] = Pick(answers[i], bool(group[i].outcome), problem_tokens)
        wm = weighted_majority_pick(answers, scores)
        out["weighted_majority"] = Pick(wm, bool(checker.get(wm, False)) if wm is not None else False, problem_tokens)
    return out
