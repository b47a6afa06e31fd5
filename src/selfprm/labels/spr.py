"""``spr``: MetaStone-S1's self-supervised process reward (SPR) labels.

Wang et al., *Test-Time Scaling with Reflective Generative Model* (MetaStone-S1),
arXiv 2507.01951; public code MetaStone-AI/MetaStone-S1 (``verl/workers/actor/dp_actor.py``).

The pseudo-label of every step is the final outcome, ``y_i = 1[answer correct]`` (as
``outcome``); what differs is the loss the PRM trains with (:func:`selfprm.prm.losses.spr_loss`):
a step counts only while the head's own prediction agrees with its pseudo-label, so steps the
head already believes contradict the outcome (a sound step in a failed solution, say) are left
out instead of being pushed the wrong way. Trajectories cut off before an answer carry no outcome
and are dropped, as the public code does (``valid_mask``).
"""

from __future__ import annotations

from dataclasses import dataclass

from selfprm.labels.base import PerTrajectoryLabels, register
from selfprm.labels.outcome import outcome_broadcast
from selfprm.types import StepLabels, Trajectory


@register("spr")
@dataclass
class SPRLabels(PerTrajectoryLabels):
    name: str = "spr"
    prm_loss: str = "spr"

    def label_one(self, t: Trajectory) -> StepLabels | None:
        return None if t.truncated else outcome_broadcast(t, self.name)
