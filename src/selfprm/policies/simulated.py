"""A noisy solver for ``arith`` with set error rates: fast, large studies without a model.

It writes the same text a trained policy would, so every label source runs on it unchanged, and
its error rates are known exactly, so a study can vary them (per step difficulty, recovery,
extra steps, a wrong final reduction, truncation). Tokens are counted as characters plus the end
token, the same count the embedded char-level policy would spend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from selfprm.domains.arith import REDO, ArithDomain, apply_op
from selfprm.policies.base import Prefix
from selfprm.types import Problem, Trajectory


@dataclass
class SimulatedPolicyConfig:
    error_rate: dict[str, float] = field(default_factory=lambda: {"easy": 0.03, "medium": 0.08, "hard": 0.2})
    recovery_rate: float = 0.3  # chance to notice a wrong step and redo it
    extra_step_rate: float = 0.05
    answer_error_rate: float = 0.02  # wrong final reduction after a sound chain
    truncation_rate: float = 0.0
    seed: int = 0


class SimulatedPolicy:
    def __init__(self, domain: ArithDomain, config: SimulatedPolicyConfig | None = None):
        self.domain = domain
        self.config = config or SimulatedPolicyConfig()
        self._rng = np.random.default_rng(self.config.seed)

    def reseed(self, seed: int) -> None:
        """Restart sampling from ``seed``: what follows is repeatable on its own."""
        self._rng = np.random.default_rng(seed)

    def sample(self, problems: Sequence[Problem], n: int) -> list[list[Trajectory]]:
        return self.continue_from([Prefix(p, []) for p in problems], n)

    def continue_from(self, prefixes: Sequence[Prefix], n: int) -> list[list[Trajectory]]:
        return [[self._continue(p.problem, list(p.steps)) for _ in range(n)] for p in prefixes]

    def _continue(self, problem: Problem, steps: list[str]) -> Trajectory:
        c, d, rng = self.config, self.domain, self._rng
        m = d.config.modulus
        chain = [(op, int(b)) for op, b in problem.meta["chain"]]
        # where the prefix left off: operations consumed and the running value it wrote
        value, k = problem.meta["start"], 0
        for t in d.trace(problem, steps):
            if t.kind == "op":
                k += 1
            if t.written is not None and t.kind in ("op", "redo", "extra"):
                value = t.written
        new: list[str] = []
        while k < len(chain):
            op, b = chain[k]
            right = apply_op(value, op, b, m)
            written = right
            if rng.random() < c.error_rate[d.step_difficulty(problem, k)]:
                written = (right + int(rng.integers(1, m))) % m
            new.append(f"{value}{op}{b}={written}")
            if written != right and rng.random() < c.recovery_rate:
                new.append(f"{REDO}{value}{op}{b}={right}")
                written = right
            value, k = written, k + 1
            if rng.random() < c.extra_step_rate:
                new.append(f"{value}+0={value}")
            if rng.random() < c.truncation_rate:
                text = "".join(s + "\n" for s in new)
                return d.make_trajectory(problem, steps + new, None, truncated=True, tokens_generated=len(text))
        answer = d._reduce(value)
        if rng.random() < c.answer_error_rate:
            answer = (answer + 1) % (d.config.answer_modulus or m)
        text = "".join(s + "\n" for s in new) + d.render_answer(str(answer))
        return d.make_trajectory(problem, steps + new, str(answer), tokens_generated=len(text) + 1)
