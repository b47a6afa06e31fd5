"""``prm``: GRPO whose token advantages add a PRM's step rewards to the tokens of each step.

DeepSeekMath's process supervision (Shao et al. 2024, arXiv 2402.03300, §4.1.3) normalises the
step rewards of a group, ``r̃_{i,j} = (r_{i,j} - mean(R)) / std(R)`` over every step of every
rollout of the group, and credits each token with them. Here they are added to the outcome
advantage, so the final answer still decides the direction and the PRM says which steps to blame:

    A_{i,t} = Â_i^outcome + α · r̃_{i, step(t)}            (per_step, the default)
    A_{i,t} = Â_i^outcome + α · Σ_{j >= step(t)} r̃_{i,j}   (cumulative=True, DeepSeekMath's return)

Tokens of the answer line get the outcome term only. Any PRM with ``score_steps`` works: one
trained on self-supervised labels or on the oracle's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from selfprm.rl.grpo import (GRPOConfig, GRPOTrainer, OutcomeAdvantage, TrainResult, group_normalise,
                             outcome_rewards, pad_token_values)
from selfprm.rl.rollout import Rollout, token_segments
from selfprm.types import Problem
from selfprm.rl.methods import MethodSpec, register_method


@dataclass
class PRMRewardConfig(GRPOConfig):
    alpha: float = 0.5  # weight of the process term against the outcome term
    cumulative: bool = False


def normalise_step_rewards(step_rewards: Sequence[Sequence[float]], groups: Sequence[int], eps: float = 1e-6) -> list[list[float]]:
    """``(r_ij - mean) / std`` over all scored steps of each group; NaN (unscored) steps get 0."""
    out: list[list[float]] = [[0.0] * len(s) for s in step_rewards]
    for g in dict.fromkeys(groups):
        members = [i for i, k in enumerate(groups) if k == g]
        vals = np.array([x for i in members for x in step_rewards[i] if not math.isnan(x)], dtype=float)
        if len(vals) == 0:
            continue
        mu, sd = vals.mean(), vals.std()
        for i in members:
            out[i] = [0.0 if math.isnan(x) or sd < eps else (x - mu) / (sd + eps) for x in step_rewards[i]]
    return out


def step_token_advantages(segments: Sequence[int], outcome_adv: float, step_adv: Sequence[float],
                          alpha: float, cumulative: bool = False) -> list[float]:
    """Per-token advantage of one rollout from its token->step map (see the module docstring)."""
    if cumulative:
        step_adv = list(np.cumsum(list(step_adv)[::-1])[::-1]) if len(step_adv) else []
    return [outcome_adv + (alpha * step_adv[s] if 0 <= s < len(step_adv) else 0.0) for s in segments]


def process_advantages(trainer: GRPOTrainer, rollouts: Sequence[Rollout], outcome_adv: Sequence[float],
                       step_scores: Sequence[Sequence[float]], alpha: float, cumulative: bool = False,
                       eps: float = 1e-6) -> torch.Tensor:
    """Token advantages ``[B, T]``: each rollout's outcome advantage plus ``alpha`` times its steps'
    group-normalised scores on their tokens (the module docstring's equations)."""
    step_adv = normalise_step_rewards(step_scores, [r.group for r in rollouts], eps)
    rows = []
    for r, a, sa in zip(rollouts, outcome_adv, step_adv):
        seg = token_segments(trainer.tokenizer, r.completion_ids, trainer.domain.step_separator)
        rows.append(step_token_advantages(seg, a, sa, alpha, cumulative))
    return pad_token_values(rows)


class PRMRewardMethod(OutcomeAdvantage):
    name = "prm"

    def __init__(self, prm, config: PRMRewardConfig | None = None):
        self.prm = prm
        self.config = config or PRMRewardConfig()

    def advantages(self, trainer: GRPOTrainer, rollouts: list[Rollout]) -> tuple[list[Rollout], torch.Tensor]:
        c = self.config
        groups = [r.group for r in rollouts]
        out_adv = group_normalise(outcome_rewards(rollouts), groups, c.eps)
        scores = self.prm.score_steps([r.trajectory.problem.prompt for r in rollouts],
                                      [r.trajectory.steps for r in rollouts])
        return rollouts, process_advantages(trainer, rollouts, out_adv, scores, c.alpha, c.cumulative, c.eps)


def train_prm_grpo(model, tokenizer, domain, prm, config: PRMRewardConfig, train_problems: Sequence[Problem],
                   eval_problems: Sequence[Problem], progress: bool = True) -> TrainResult:
    return GRPOTrainer(model, tokenizer, domain, config, PRMRewardMethod(prm, config)).train(train_problems, eval_problems, progress)


register_method("prm", MethodSpec(PRMRewardConfig, lambda c, prm: PRMRewardMethod(prm, c), needs_prm=True))
