"""``arith-fuzzy``: the ``arith`` problems with the outcome graded by a noisy judge.

MetaStone-S1 (Wang et al., arXiv 2507.01951, Sec. 5 "Limitations") trains its SPR model on outcome
pseudo-labels from crisp verifiers only and leaves fuzzy-outcome domains open. This domain makes
the outcome fuzzy in a controlled way: the final answer is graded by a judge that errs

* at random, flipping any verdict with probability ``error_rate``; and
* leniently, the way LLM judges are (Zheng et al., "Judging LLM-as-a-Judge", arXiv 2306.05685,
  Sec. 3.3; judges favour confident, fluent answers): a wrong answer written *fluently* (no
  ``redo:`` line, not truncated: nothing in the text admits doubt) is accepted with probability
  ``min(1, lenient_factor * error_rate)`` instead of ``error_rate``.

The step oracle stays exact, so label quality is always measured against the truth; the true
outcome is kept in ``trajectory.meta["true_outcome"]``. A verdict is a pure function of the
judge's seed and the trajectory's text (problem id, steps, answer), so a rollout that writes the
same text gets the same verdict, as a deterministic judge would give.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from selfprm.domains.arith import REDO, ArithConfig, ArithDomain
from selfprm.types import Problem, Trajectory


@dataclass
class FuzzyJudgeConfig:
    """The noisy outcome judge.

    Parameters:
        error_rate: chance that a verdict is flipped at random (0 gives ``arith``'s crisp outcome).
        lenient_factor: a fluent wrong answer is accepted with ``lenient_factor * error_rate`` (capped at 1).
        seed: the judge's own random stream.
    """

    error_rate: float = 0.2
    lenient_factor: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be in [0, 1], got {self.error_rate}")
        if self.lenient_factor < 0:
            raise ValueError(f"lenient_factor must be >= 0, got {self.lenient_factor}")


def is_fluent(steps: Sequence[str], truncated: bool) -> bool:
    """A solution that never admits doubt: no redo line and a final answer written."""
    return not truncated and not any(s.startswith(REDO) for s in steps)


def flip_probability(correct: bool, fluent: bool, judge: FuzzyJudgeConfig) -> float:
    """P(verdict != truth): lenient on fluent wrong answers, ``error_rate`` everywhere else."""
    if not correct and fluent:
        return min(1.0, judge.lenient_factor * judge.error_rate)
    return judge.error_rate


def judge_verdict(problem: Problem, steps: Sequence[str], answer: str | None, truncated: bool, correct: bool,
                  judge: FuzzyJudgeConfig) -> bool:
    """The judge's verdict on one solution (deterministic in its text and the judge's seed)."""
    text = f"{problem.id}\x00{chr(1).join(steps)}\x00{answer}"
    rng = np.random.default_rng([judge.seed, zlib.crc32(text.encode())])
    flip = rng.random() < flip_probability(correct, is_fluent(steps, truncated), judge)
    return correct != flip


class FuzzyArithDomain(ArithDomain):
    """``arith`` whose outcome is the noisy judge's verdict; the step oracle stays exact."""

    name = "arith-fuzzy"

    def __init__(self, config: ArithConfig | None = None, judge: FuzzyJudgeConfig | None = None):
        super().__init__(config)
        self.judge = judge or FuzzyJudgeConfig()

    def make_trajectory(self, problem: Problem, steps: Sequence[str], final_answer: str | None,
                        truncated: bool = False, tokens_generated: int = 0) -> Trajectory:
        t = super().make_trajectory(problem, steps, final_answer, truncated, tokens_generated)
        truth = bool(t.outcome)
        t.meta["true_outcome"] = truth
        t.outcome = (not truncated) and judge_verdict(problem, t.steps, final_answer, truncated, truth, self.judge)
        return t

    def rejudge(self, trajectories: Sequence[Trajectory]) -> list[Trajectory]:
        """Copies of crisp ``arith`` trajectories with the judge's outcome (the same problems and text)."""
        return [self.make_trajectory(t.problem, t.steps, t.final_answer, t.truncated, t.tokens_generated)
                for t in trajectories]
