"""``outcome``: GRPO on the final outcome only — the baseline every other method is measured against.

Shao et al. 2024 (DeepSeekMath, arXiv 2402.03300), "outcome supervision" (§4.1.2):

    r_i = 1[answer of o_i is right],   A_{i,t} = (r_i - mean(r)) / std(r)   for every token t of o_i.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from selfprm.rl.grpo import GRPOConfig, GRPOTrainer, OutcomeAdvantage, TrainResult
from selfprm.types import Problem
from selfprm.rl.methods import MethodSpec, register_method


@dataclass
class OutcomeConfig(GRPOConfig):
    pass


class OutcomeMethod(OutcomeAdvantage):
    name = "outcome"

    def __init__(self, config: OutcomeConfig | None = None):
        self.config = config or OutcomeConfig()


def train_outcome(model, tokenizer, domain, config: OutcomeConfig, train_problems: Sequence[Problem],
                  eval_problems: Sequence[Problem], progress: bool = True) -> TrainResult:
    return GRPOTrainer(model, tokenizer, domain, config, OutcomeMethod(config)).train(train_problems, eval_problems, progress)


register_method("outcome", MethodSpec(OutcomeConfig, lambda c, prm: OutcomeMethod(c)))
# ToolPO's baseline: outcome-only GRPO on the same domain
register_method("outcome_tools", MethodSpec(OutcomeConfig, lambda c, prm: OutcomeMethod(c), domain="tools"))
