"""``r3``: reverse-curriculum RL from outcome rewards (Xi et al. 2024, "Training Large Language Models
for Reasoning through Reverse Curriculum Reinforcement Learning", arXiv 2402.05808; public code
WooooDyy/LLM-Reverse-Curriculum-RL).

Start states are prefixes of a demonstration. Early in training the policy starts near the end
of the demonstration (only the last steps are left to write, so outcome rewards are dense and
easy to earn); the start slides back stage by stage to the bare problem. With ``n_stages`` = S
and a demonstration of n steps, stage s (0-based) keeps

    k_s = floor(n · (S - 1 - s) / S)     demonstration steps as given prefix,

so stage 0 keeps most of it and stage S-1 none. Training step ``t`` of ``T`` is in stage
``floor(t · S / T)``; stages are mixed (the paper's mixed-stage training): each prompt draws its
stage uniformly from the stages reached so far. The reward is the outcome only; the given
demonstration tokens are never trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from selfprm.policies.base import Prefix
from selfprm.rl.grpo import GRPOConfig, GRPOTrainer, OutcomeAdvantage, TrainResult
from selfprm.rl.rollout import Rollout
from selfprm.types import Problem
from selfprm.rl.methods import MethodSpec, register_method


@dataclass
class R3Config(GRPOConfig):
    n_stages: int = 4
    mix_stages: bool = True


def r3_kept_steps(n_steps: int, stage: int, n_stages: int) -> int:
    """Demonstration steps given as the start state at ``stage`` (see the module docstring)."""
    if not 0 <= stage < n_stages:
        raise ValueError(f"stage {stage} outside 0..{n_stages - 1}")
    return (n_steps * (n_stages - 1 - stage)) // n_stages


def r3_stage(step: int, total_steps: int, n_stages: int) -> int:
    """The curriculum stage reached at training step ``step`` of ``total_steps``."""
    return min(n_stages - 1, (step * n_stages) // max(1, total_steps))


def r3_start_states(demo_lengths: Sequence[int], step: int, total_steps: int, n_stages: int,
                    rng: np.random.Generator | None = None, mix: bool = True) -> list[int]:
    """Kept demonstration steps for each prompt at ``step``; with ``mix`` each prompt draws its
    stage uniformly from 0..current stage, else all use the current stage."""
    current = r3_stage(step, total_steps, n_stages)
    out = []
    for n in demo_lengths:
        s = int(rng.integers(0, current + 1)) if mix and rng is not None else current
        out.append(r3_kept_steps(n, s, n_stages))
    return out


class R3Method(OutcomeAdvantage):
    name = "r3"

    def __init__(self, config: R3Config | None = None, demo_seed: int = 0):
        self.config = config or R3Config()
        self._demos: dict[str, list[str]] = {}
        self._demo_rng = np.random.default_rng(demo_seed)

    def demonstration(self, domain, problem: Problem) -> list[str]:
        if problem.id not in self._demos:
            steps, _ = domain.worked_solution(problem, self._demo_rng)
            self._demos[problem.id] = list(steps)
        return self._demos[problem.id]

    def rollouts(self, trainer: GRPOTrainer, problems: list[Problem], step: int) -> list[Rollout]:
        c = self.config
        demos = [self.demonstration(trainer.domain, p) for p in problems]
        kept = r3_start_states([len(d) for d in demos], step, c.steps, c.n_stages, trainer.rng, c.mix_stages)
        return trainer.sample([Prefix(p, d[:k]) for p, d, k in zip(problems, demos, kept)], c.group_size, step)


def train_r3(model, tokenizer, domain, config: R3Config, train_problems: Sequence[Problem],
             eval_problems: Sequence[Problem], progress: bool = True) -> TrainResult:
    return GRPOTrainer(model, tokenizer, domain, config, R3Method(config, config.seed)).train(train_problems, eval_problems, progress)


register_method("r3", MethodSpec(R3Config, lambda c, prm: R3Method(c, c.seed)))
