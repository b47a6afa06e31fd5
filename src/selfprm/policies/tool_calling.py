"""A causal LM as a policy on a domain with tools: each tool call stops generation, the domain runs
the tool (in the sandbox), and generation goes on after its answer.

:class:`~selfprm.policies.hf.HFPolicy` generates a whole solution in one go, so on ``tools`` the
model would write every calculator answer itself; it refuses such a domain and points here.
"""

from __future__ import annotations

from selfprm.policies.base import Prefix
from selfprm.types import Trajectory


class ToolCallingPolicy:
    """The tiny LM as a policy whose tool calls run while it writes: each ``call calc(a*b) ->`` stops
    generation, the domain's calculator answers, and generation goes on after the answer
    (:func:`selfprm.rl.rollout.sample_rollouts` with ``tools``, the RL rollouts' sampler).
    ``HFPolicy`` generates the whole text itself, so on ``tools`` the model wrote every calculator
    answer from its own arithmetic: 5 % of its steps were sound after 400 SFT steps at width 128
    (SFT loss 0.15), and the grid's tools cells were all of one class. Policy tokens exclude the
    tool's answers."""

    def __init__(self, model, tokenizer, domain, temperature: float, max_new_tokens: int, seed: int = 0) -> None:
        self.model, self.tokenizer, self.domain = model, tokenizer, domain
        self.temperature, self.max_new_tokens = temperature, max_new_tokens
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self.seed, self._calls = seed, 0

    def sample(self, problems, n: int) -> list[list[Trajectory]]:
        return self.continue_from([Prefix(p, []) for p in problems], n)

    def continue_from(self, prefixes, n: int) -> list[list[Trajectory]]:
        from selfprm.rl.rollout import sample_rollouts

        self._calls += 1  # each call its own stream, repeatable from the seed
        rolls = sample_rollouts(self.model, self.tokenizer, self.domain, prefixes, n, self.temperature,
                                self.max_new_tokens, seed=(self.seed * 1_000_003 + self._calls) % (2 ** 63),
                                tools=True)
        out: list[list[Trajectory]] = [[] for _ in prefixes]
        for r in rolls:
            out[r.group].append(r.trajectory)
        return out
