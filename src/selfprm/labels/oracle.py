"""``oracle``: the exact (or human) step labels the trajectory carries — the reference to beat."""

from __future__ import annotations

from dataclasses import dataclass

from selfprm.labels.base import PerTrajectoryLabels, register
from selfprm.types import StepLabels, Trajectory


@register("oracle")
@dataclass
class OracleLabels(PerTrajectoryLabels):
    name: str = "oracle"

    def label_one(self, t: Trajectory) -> StepLabels:
        if t.oracle_labels is None:
            raise ValueError(f"trajectory of problem {t.problem.id!r} has no oracle labels")
        return StepLabels([float(v) for v in t.oracle_labels], source=self.name)
