"""``toolpo``: ToolPO's tool-call advantage attribution (Li et al. 2025, DeepAgent, arXiv 2510.21618, §3.4).

Besides the task outcome, every call to a tool is checkable (:meth:`ToolsDomain.check_calls`).
ToolPO gives each rollout a second, group-normalised advantage for its calls and adds it only on
the tokens that make the calls:

    Â_succ(i) = (R_succ(i) - mean) / std                 R_succ: the answer is right
    Â_call(i) = (R_call(i) - mean) / std                 R_call: share of its calls that are correct (0 with no call)
    A_{i,t}   = Â_succ(i) + M_{i,t} · Â_call(i)          M_{i,t} = 1 on the tokens of a call, else 0

so a rollout that reaches a wrong answer through correct calls still has its calls reinforced.

*Tool calls are real.* Rollouts on ``tools`` run the calculator during generation
(:mod:`selfprm.rl.rollout`): the policy writes ``call calc(12+7) ->``, the sandboxed tool appends
`` 19\n`` as given tokens. Those tokens are the environment's, not the policy's, so

    A_{i,t} = 0   and they are out of the loss (train mask 0)      where token t is given,

and ``M_{i,t}`` covers the call tokens the policy wrote (``call calc(12+7) ->``). A call is then
correct when it asks for the operation the chain needs next, from the right running value — its
reported result is the tool's own. DeepAgent's public repository (RUC-NLPIR/DeepAgent) holds
inference and evaluation code only, no ToolPO training code to check this against; the masking of
tool outputs follows the usual multi-turn RL practice of excluding observation tokens from the
loss (SkyRL,
``skyrl_train/generators/skyrl_gym_generator.py``, ``TurnOutput.get_turn_loss_mask``).

*Sandbox cost* (2-core CPU box, one torch thread; the tiny ``tools`` policy after 200 SFT steps;
one generation round of 8 prompts × 8 rollouts, ``max_new_tokens=64``, 46-57 calls a round): no
tool execution (the old path) 0.14-0.18 s; calls run, all of a generation round in one sandboxed
process 0.28-0.36 s (the extra is mostly the extra ``generate`` rounds); one sandboxed process per
call 1.8-2.2 s (1.3-1.6 s of it the sandboxes' CPU, ~40 ms a process). So the calls of a round go
to one process (:class:`selfprm.domains.tools.CalculatorTool`, ``batched=True``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from selfprm.rl.grpo import (GRPOConfig, GRPOTrainer, OutcomeAdvantage, TrainResult, group_normalise,
                             outcome_rewards, pad_token_values)
from selfprm.rl.rollout import Rollout
from selfprm.types import Problem
from selfprm.rl.methods import MethodSpec, register_method


@dataclass
class ToolPOConfig(GRPOConfig):
    call_weight: float = 1.0


def call_token_mask(tokenizer, completion_ids: Sequence[int], domain) -> list[bool]:
    """True on exactly the completion tokens that lie inside a tool call (``domain.call_spans``)."""
    pieces = [tokenizer.decode([t], skip_special_tokens=True) for t in completion_ids]
    spans = domain.call_spans("".join(pieces))
    out, pos = [], 0
    for p in pieces:
        a, b = pos, pos + len(p)
        out.append(bool(p) and any(s <= a and b <= e for s, e in spans))
        pos = b
    return out


def call_reward(checks: Sequence[bool | None]) -> float:
    """Share of the calls that are correct; 0 when there is no call."""
    calls = [c for c in checks if c is not None]
    return sum(calls) / len(calls) if calls else 0.0


class ToolPOMethod(OutcomeAdvantage):
    name = "toolpo"

    def __init__(self, config: ToolPOConfig | None = None):
        self.config = config or ToolPOConfig()

    def advantages(self, trainer: GRPOTrainer, rollouts: list[Rollout]) -> tuple[list[Rollout], torch.Tensor]:
        c, dom = self.config, trainer.domain
        groups = [r.group for r in rollouts]
        succ = group_normalise(outcome_rewards(rollouts), groups, c.eps)
        calls = group_normalise([call_reward(dom.check_calls(r.trajectory.problem, r.trajectory.steps)) for r in rollouts],
                                groups, c.eps)
        rows = []
        for r, a, b in zip(rollouts, succ, calls):
            mask = call_token_mask(trainer.tokenizer, r.completion_ids, dom)
            # given tokens (a tool's answer, a given prefix) get no advantage; the loss masks them too
            rows.append([0.0 if g else a + (c.call_weight * b if m else 0.0) for m, g in zip(mask, r.is_given)])
        return rollouts, pad_token_values(rows)


def train_toolpo(model, tokenizer, domain, config: ToolPOConfig, train_problems: Sequence[Problem],
                 eval_problems: Sequence[Problem], progress: bool = True) -> TrainResult:
    return GRPOTrainer(model, tokenizer, domain, config, ToolPOMethod(config)).train(train_problems, eval_problems, progress)


register_method("toolpo", MethodSpec(ToolPOConfig, lambda c, prm: ToolPOMethod(c), domain="tools"))
