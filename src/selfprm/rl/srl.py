"""``srl``: Supervised Reinforcement Learning (Deng et al. 2025, arXiv 2510.25992).

An expert solution is cut into steps; the policy is given the problem and the expert's first k
steps and writes the next step only. Its reward is how closely that step matches the expert's
step k (their eq. 2, Python's ``difflib.SequenceMatcher`` ratio), and -1 when the step does not
even parse:

    R(y, y*) = 2M / T   (M matched characters, T = |y| + |y*|),   R = -1 if y is malformed.

Advantages are group normalised over the rollouts that share the same prefix. Dynamic sampling
(their §3.3, after DAPO) drops every group whose rewards do not spread (std < ``min_std``): they
carry no gradient. The dropped rollouts still count against the budget.

Budget. An SRL rollout is one step, not a solution, so counting it as a whole sample (as the
equal-samples comparison does) flatters the method. The trainer therefore also counts the policy
tokens each rollout generated (:func:`selfprm.rl.grpo.generated_tokens`: the step and its
separator, never the given expert prefix):

    policy_tokens = Σ_{one-step rollouts y} |y|,

and a study can budget every method in those tokens (``token_budget`` in ``selfprm rl``).

Public code: the paper names none, and no official repository was found (only third-party
reimplementations); the reward, the grouping and the dynamic sampling follow the paper's text.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from selfprm.policies.base import Prefix
from selfprm.rl.grpo import GRPOConfig, GRPOTrainer, TrainResult, broadcast, group_normalise
from selfprm.rl.rollout import Rollout
from selfprm.types import Problem
from selfprm.rl.methods import MethodSpec, register_method

_ARITH_STEP = re.compile(r"^(redo:)?\d+[+\-*]\d+=\d+$")
_ANSWER = re.compile(r"^A:\S+$")


@dataclass
class SRLConfig(GRPOConfig):
    min_std: float = 1e-4


def well_formed(domain, step: str) -> bool:
    """Does ``step`` parse as a step (or the answer line) of ``domain``?"""
    if hasattr(domain, "step_well_formed"):
        return bool(domain.step_well_formed(step))
    s = step.strip()
    return bool(_ARITH_STEP.match(s) or _ANSWER.match(s))


def srl_reward(generated: str | None, expert: str, parses: bool = True) -> float:
    """difflib similarity of the generated step to the expert's; -1 for a step that does not parse."""
    if generated is None or not parses:
        return -1.0
    return difflib.SequenceMatcher(None, generated.strip(), expert.strip()).ratio()


def keep_spread_groups(rewards: Sequence[float], groups: Sequence, min_std: float) -> list[bool]:
    """Dynamic sampling: True for rollouts whose group's rewards spread (std >= ``min_std``)."""
    keep = {}
    for g in dict.fromkeys(groups):
        vals = np.array([r for r, k in zip(rewards, groups) if k == g])
        keep[g] = vals.std() >= min_std
    return [bool(keep[g]) for g in groups]


class SRLMethod:
    name = "srl"

    def __init__(self, config: SRLConfig | None = None, demo_seed: int = 0):
        self.config = config or SRLConfig()
        self._demo_rng = np.random.default_rng(demo_seed)
        self._demos: dict[str, list[str]] = {}

    def expert_steps(self, domain, problem: Problem) -> list[str]:
        """The expert's steps, the answer line last (the final 'step' to predict)."""
        if problem.id not in self._demos:
            steps, ans = domain.worked_solution(problem, self._demo_rng)
            self._demos[problem.id] = list(steps) + [domain.render_answer(ans)]
        return self._demos[problem.id]

    def rollouts(self, trainer: GRPOTrainer, problems: list[Problem], step: int) -> list[Rollout]:
        experts = [self.expert_steps(trainer.domain, p) for p in problems]
        ks = [int(trainer.rng.integers(0, len(e))) for e in experts]
        rolls = trainer.sample([Prefix(p, e[:k]) for p, e, k in zip(problems, experts, ks)],
                               self.config.group_size, step, stop_at_step=True)
        for r in rolls:
            r.meta["expert"] = experts[r.group][ks[r.group]]
        return rolls

    def advantages(self, trainer: GRPOTrainer, rollouts: list[Rollout]) -> tuple[list[Rollout], torch.Tensor]:
        c, dom, tok = self.config, trainer.domain, trainer.tokenizer
        rewards = []
        for r in rollouts:
            new = tok.decode(r.completion_ids[r.n_given:], skip_special_tokens=True).split(dom.step_separator)[0]
            rewards.append(srl_reward(new, r.meta["expert"], well_formed(dom, new)) if new.strip() else -1.0)
        groups = [r.group for r in rollouts]
        keep = keep_spread_groups(rewards, groups, c.min_std)
        kept = [r for r, k in zip(rollouts, keep) if k]
        adv = group_normalise([x for x, k in zip(rewards, keep) if k], [g for g, k in zip(groups, keep) if k], c.eps)
        return kept, broadcast(kept, adv)


def train_srl(model, tokenizer, domain, config: SRLConfig, train_problems: Sequence[Problem],
              eval_problems: Sequence[Problem], progress: bool = True) -> TrainResult:
    return GRPOTrainer(model, tokenizer, domain, config, SRLMethod(config, config.seed)).train(train_problems, eval_problems, progress)


register_method("srl", MethodSpec(SRLConfig, lambda c, prm: SRLMethod(c, c.seed)))
