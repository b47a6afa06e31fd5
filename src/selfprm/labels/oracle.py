"""``oracle``: the exact (or human) step labels the trajectory carries — the reference to beat."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from selfprm.labels.base import register
from selfprm.types import StepLabels, Trajectory


@register("oracle")
@dataclass
class OracleLabels:
    name: str = "oracle"
    prm_loss: str = "bce"

    def label(self, trajectories: Sequence[Trajectory], policy=None) -> list[StepLabels | None]:
        out = []
        for t in trajectories:
            if t.oracle_labels is None:
                raise ValueError(f"trajectory of problem {t.problem.id!r} has no oracle labels")
            out.append(StepLabels([float(v) for v in t.oracle_labels], source=self.name))
        return out
