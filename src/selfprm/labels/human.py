"""``human``: ProcessBench-style human step labels, which mark only the first error.

Zheng et al., *ProcessBench: Identifying Process Errors in Mathematical Reasoning*,
arXiv 2412.06559. Annotators read each solution and mark the earliest step that is wrong
(``label = k``), or ``-1`` when every step is sound; nothing is said about the steps after the
first error. As step targets, with ``k`` the first error read from the trajectory's
``oracle_labels`` (:attr:`selfprm.types.Trajectory.first_error`):

    y_j = 1 for j < k,   y_k = 0,   w_j = 1 for j ≤ k,   w_j = 0 for j > k
    y_j = 1, no weights,                                              when k = -1

The labels already exist, so they cost no policy tokens. Unlike ``oracle``, which copies every
step's label, this source claims nothing after the first error: the reference a human-labelled
set such as ProcessBench can actually give.
"""

from __future__ import annotations

from dataclasses import dataclass

from selfprm.labels.base import PerTrajectoryLabels, register
from selfprm.types import StepLabels, Trajectory


def first_error_labels(t: Trajectory, source: str = "human") -> StepLabels:
    """1 before the first error, 0 at it, weight 0 after it; all 1 (no weights) without one."""
    if t.oracle_labels is None:
        raise ValueError(f"trajectory of problem {t.problem.id!r} has no human (oracle) labels")
    n, k = len(t.steps), t.first_error
    if k == -1:
        return StepLabels([1.0] * n, source=source)
    return StepLabels([1.0] * k + [0.0] * (n - k), source=source, weights=[1.0] * (k + 1) + [0.0] * (n - k - 1))


@register("human")
@dataclass
class HumanLabels(PerTrajectoryLabels):
    name: str = "human"

    def label_one(self, t: Trajectory) -> StepLabels:
        return first_error_labels(t, self.name)
