"""``outcome``: the final answer's correctness copied to every step.

Free — the outcome is known once the trajectory is sampled — and wrong in two known ways: a
correct solution with a recovered or lucky error teaches that its wrong step is fine, and a wrong
solution teaches that its sound opening steps are wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from selfprm.labels.base import PerTrajectoryLabels, register
from selfprm.types import StepLabels, Trajectory


def outcome_broadcast(t: Trajectory, source: str) -> StepLabels:
    if t.outcome is None:
        raise ValueError(f"trajectory of problem {t.problem.id!r} has no outcome")
    return StepLabels([1.0 if t.outcome else 0.0] * len(t.steps), source=source)


@register("outcome")
@dataclass
class OutcomeLabels(PerTrajectoryLabels):
    name: str = "outcome"

    def label_one(self, t: Trajectory) -> StepLabels:
        return outcome_broadcast(t, self.name)
