"""``r3``: reverse-curriculum RL from outcome rewards (Xi et al. 2024, "Training Large Language Models
for Reasoning through Reverse Curriculum Reinforcement Learning", arXiv 2402.05808; public code
WooooDyy/LLM-Reverse-Curriculum-RL).

Start states are prefixes of a demonstration: the policy is given the problem and the first k
demonstration steps and writes the rest; the reward is the outcome only, and the given tokens
are never trained (they are prompt, as in the reference, ``R3_math/main.py`` lines 125-170, where
the start state is inside ``question``). With ``n_stages`` = S and a demonstration of n steps,
stage s (0-based) keeps

    k_s = floor(n · (S - 1 - s) / S)     demonstration steps as given prefix,

so stage 0 keeps most of it and stage S-1 none (the bare problem).

Which stage a prompt starts from (``schedule``):

* ``"mixed"`` (default, the reference): every prompt's stage is drawn uniformly from all S stages
  at every training step, from step 0 on,

      s ~ Uniform{0, …, S-1}.

  The reference trains on one pre-mixed file of start states from every stage — the bare
  problem included — shuffled together (``R3_math/scripts/R3_cot_gsm8k.sh`` line 6 reads
  ``gsm8k_nl_mix_example.json``; ``R3_math/main.py`` lines 111 and 218 load it and draw batches
  with ``DataLoader(shuffle=True)`` every epoch). The script that builds the mix is not public;
  the example files show one record per (problem, start state), with 0 to n-1 steps given, in
  random order, so a batch draw is a uniform draw over (problem, stage) — here, a uniform stage
  for each drawn problem.
* ``"progressive"`` (a named deviation, this package's earlier schedule): training step ``t`` of
  ``T`` is in stage ``c_t = floor(t · S / T)`` (with a token budget B, ``floor(tokens · S / B)``);
  with ``mix_stages`` each prompt draws ``s ~ Uniform{0, …, c_t}``, else ``s = c_t``. The bare
  problem appears only in the last 1/S of training.
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


SCHEDULES = ("mixed", "progressive")


@dataclass
class R3Config(GRPOConfig):
    """R3's curriculum on top of GRPO's settings.

    Parameters:
        n_stages: S, start states per demonstration (stage S-1 is the bare problem).
        schedule: ``"mixed"`` (the reference: every stage, uniformly, from the first step) or
            ``"progressive"`` (stages unlocked one by one over training).
        mix_stages: ``"progressive"`` only: draw from the stages unlocked so far (else the newest).
    """

    n_stages: int = 4
    schedule: str = "mixed"
    mix_stages: bool = True

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule {self.schedule!r} is not one of {SCHEDULES}")


def r3_kept_steps(n_steps: int, stage: int, n_stages: int) -> int:
    """Demonstration steps given as the start state at ``stage`` (see the module docstring)."""
    if not 0 <= stage < n_stages:
        raise ValueError(f"stage {stage} outside 0..{n_stages - 1}")
    return (n_steps * (n_stages - 1 - stage)) // n_stages


def r3_stage(step: int, total_steps: int, n_stages: int) -> int:
    """The progressive curriculum's stage reached at ``step`` of ``total_steps`` (or at ``step``
    policy tokens of a ``total_steps``-token budget)."""
    return min(n_stages - 1, (step * n_stages) // max(1, total_steps))


def r3_start_states(demo_lengths: Sequence[int], step: int, total_steps: int, n_stages: int,
                    rng: np.random.Generator | None = None, mix: bool = True,
                    schedule: str = "mixed") -> list[int]:
    """Kept demonstration steps for each prompt at ``step`` (see the module docstring).

    ``schedule="mixed"``: each prompt draws its stage uniformly from all ``n_stages`` (``step``
    is ignored; needs ``rng``). ``"progressive"``: with ``mix`` each prompt draws its stage
    uniformly from 0..current stage, else all use the current stage.
    """
    if schedule == "mixed":
        if rng is None:
            raise ValueError("the mixed schedule draws stages: pass rng")
        return [r3_kept_steps(n, int(rng.integers(0, n_stages)), n_stages) for n in demo_lengths]
    if schedule != "progressive":
        raise ValueError(f"schedule {schedule!r} is not one of {SCHEDULES}")
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
        done, total = trainer.budget_progress(step)
        kept = r3_start_states([len(d) for d in demos], done, total, c.n_stages, trainer.rng, c.mix_stages, c.schedule)
        return trainer.sample([Prefix(p, d[:k]) for p, d, k in zip(problems, demos, kept)], c.group_size, step)


def train_r3(model, tokenizer, domain, config: R3Config, train_problems: Sequence[Problem],
             eval_problems: Sequence[Problem], progress: bool = True) -> TrainResult:
    return GRPOTrainer(model, tokenizer, domain, config, R3Method(config, config.seed)).train(train_problems, eval_problems, progress)


register_method("r3", MethodSpec(R3Config, lambda c, prm: R3Method(c, c.seed)))
