"""``arith``: a synthetic domain of operation chains with an exact step oracle.

A problem is a start value and a chain of operations, e.g. ``Q:7 +5 *3 -4``; a solution writes one
computation per line and ends with the answer line::

    7+5=12
    12*3=36
    36-4=32
    A:2

Values live modulo ``modulus``; the answer asked for is the last value modulo ``answer_modulus``.
The domain reproduces what makes process supervision hard, each behind a knob:

(a) *lucky answers* — ``answer_modulus``: the smaller it is, the more often a wrong chain still
    ends on the right answer, so outcome labels carry false positives;
(b) *recoverable errors* — ``recovery_rate`` (worked solutions) and the ``redo:`` line: a solution
    can notice a wrong step and redo it, after which it is sound again;
(c) *harmless extra steps* — ``extra_step_rate``: an identity step (``36+0=36``) that changes
    nothing and is correct;
(d) *steps of different difficulty* — ``op_weights`` and ``operand_max``: ``+`` is easy,
    ``-`` medium and ``*`` hard (:data:`OP_DIFFICULTY`), and larger operands are harder.

The oracle (:meth:`ArithDomain.trace`) labels a step sound when it is computed correctly from the
correct running value and the prefix up to it is on the correct chain; a ``redo:`` line that
recomputes the last operation correctly makes the prefix sound again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from selfprm.domains.base import LineDomain
from selfprm.types import Problem

OP_DIFFICULTY = {"+": "easy", "-": "medium", "*": "hard"}
REDO = "redo:"
_STEP_RE = re.compile(r"^(redo:)?(\d+)([+\-*])(\d+)=(\d+)$")
_IDENTITY = {("+", 0), ("-", 0), ("*", 1)}


def apply_op(value: int, op: str, operand: int, modulus: int) -> int:
    if op == "+":
        return (value + operand) % modulus
    if op == "-":
        return (value - operand) % modulus
    if op == "*":
        return (value * operand) % modulus
    raise ValueError(f"unknown operation {op!r}")


@dataclass
class ArithConfig:
    """Knobs of the ``arith`` domain (see the module docstring for what each reproduces).

    Parameters:
        min_ops: fewest operations in a chain.
        max_ops: most operations in a chain.
        modulus: values live modulo this.
        answer_modulus: the answer asked for is the last value modulo this (smaller: more lucky answers).
        op_weights: how often each operation is drawn (``+`` easy, ``-`` medium, ``*`` hard).
        operand_max: largest operand of each operation.
        recovery_rate: how often a worked solution errs and redoes the step (the ``redo:`` line).
        extra_step_rate: how often a worked solution adds a harmless identity step.
    """

    min_ops: int = 3
    max_ops: int = 6
    modulus: int = 10
    answer_modulus: int | None = None
    op_weights: dict[str, float] = field(default_factory=lambda: {"+": 0.4, "-": 0.3, "*": 0.3})
    operand_max: dict[str, int] = field(default_factory=lambda: {"+": 9, "-": 9, "*": 9})
    recovery_rate: float = 0.15
    extra_step_rate: float = 0.05


@dataclass
class StepTrace:
    """What the oracle saw in one step."""

    sound: bool
    kind: str  # "op", "redo", "extra" or "invalid"
    op_index: int | None  # which operation of the chain the step computes
    written: int | None  # the value the step wrote


class ArithDomain(LineDomain):
    """Samples problems, writes worked solutions and judges every step (text format: LineDomain)."""

    name = "arith"

    def __init__(self, config: ArithConfig | None = None):
        self.config = config or ArithConfig()
        c = self.config
        if c.min_ops < 1 or c.max_ops < c.min_ops:
            raise ValueError("need 1 <= min_ops <= max_ops")
        for op, b in c.operand_max.items():
            low = 1 if op != "*" else 2
            if b < low:
                raise ValueError(f"operand_max[{op!r}] must be at least {low}")

    # ------------------------------------------------------------------ problems
    def sample_problems(self, n: int, seed: int, prefix: str = "arith") -> list[Problem]:
        rng = np.random.default_rng(seed)
        c = self.config
        ops = list(c.op_weights)
        probs = np.array([c.op_weights[o] for o in ops], dtype=float)
        probs /= probs.sum()
        problems = []
        for i in range(n):
            k = int(rng.integers(c.min_ops, c.max_ops + 1))
            start = int(rng.integers(0, c.modulus))
            chain = []
            for _ in range(k):
                op = ops[int(rng.choice(len(ops), p=probs))]
                # operands that would be identities are excluded so an identity step is always "extra"
                low = 2 if op == "*" else 1
                chain.append((op, int(rng.integers(low, c.operand_max[op] + 1))))
            problems.append(self.make_problem(f"{prefix}-{seed}-{i}", start, chain))
        return problems

    def make_problem(self, pid: str, start: int, chain: Sequence[tuple[str, int]]) -> Problem:
        prompt = "Q:" + str(start) + "".join(f" {op}{b}" for op, b in chain)
        values = [start]
        for op, b in chain:
            values.append(apply_op(values[-1], op, b, self.config.modulus))
        return Problem(
            id=pid,
            prompt=prompt,
            answer=str(self._reduce(values[-1])),
            meta={"start": start, "chain": [[op, b] for op, b in chain], "values": values},
        )

    def _reduce(self, v: int) -> int:
        m = self.config.answer_modulus
        return v if m is None else v % m

    @staticmethod
    def step_difficulty(problem: Problem, op_index: int) -> str:
        return OP_DIFFICULTY[problem.meta["chain"][op_index][0]]

    def worked_solution(self, problem: Problem, rng: np.random.Generator) -> tuple[list[str], str]:
        """A correct solution, with an occasional recovered error and harmless extra step.

        SFT on these teaches the policy both habits, so it makes them on its own when sampled.
        """
        c = self.config
        values = problem.meta["values"]
        steps: list[str] = []
        for j, (op, b) in enumerate(problem.meta["chain"]):
            a, r = values[j], values[j + 1]
            if rng.random() < c.recovery_rate:
                wrong = (r + int(rng.integers(1, c.modulus))) % c.modulus
                steps.append(f"{a}{op}{b}={wrong}")
                steps.append(f"{REDO}{a}{op}{b}={r}")
            else:
                steps.append(f"{a}{op}{b}={r}")
            if rng.random() < c.extra_step_rate:
                op_id, b_id = [("+", 0), ("*", 1)][int(rng.integers(0, 2))]
                steps.append(f"{r}{op_id}{b_id}={r}")
        return steps, problem.answer

    # ------------------------------------------------------------------ oracle
    def trace(self, problem: Problem, steps: Sequence[str]) -> list[StepTrace]:
        """Judge every step exactly (see the module docstring for the rule)."""
        m = self.config.modulus
        chain = [(op, int(b)) for op, b in problem.meta["chain"]]
        values = problem.meta["values"]
        k = 0  # operations consumed
        sound = True
        out: list[StepTrace] = []
        for s in steps:
            mt = _STEP_RE.match(s.strip())
            if mt is None:
                out.append(StepTrace(False, "invalid", None, None))
                sound = False
                continue
            redo, a, op, b, c = mt.group(1), int(mt.group(2)), mt.group(3), int(mt.group(4)), int(mt.group(5))
            arithmetic_ok = apply_op(a, op, b, m) == c
            if redo:
                # redoes the last operation consumed; sound again only if it redoes it right
                ok = k > 0 and (op, b) == chain[k - 1] and a == values[k - 1] and arithmetic_ok
                out.append(StepTrace(ok, "redo", k - 1 if k > 0 else None, c))
                sound = ok
            elif k < len(chain) and (op, b) == chain[k]:
                ok = sound and a == values[k] and arithmetic_ok
                out.append(StepTrace(ok, "op", k, c))
                k += 1
                sound = ok
            elif (op, b) in _IDENTITY:
                ok = sound and a == values[k] and arithmetic_ok
                out.append(StepTrace(ok, "extra", None, c))
                sound = ok
            else:
                out.append(StepTrace(False, "invalid", None, c))
                sound = False
        return out

    def judge_steps(self, problem: Problem, steps: Sequence[str]) -> list[bool]:
        return [t.sound for t in self.trace(problem, steps)]

    def charset(self) -> str:
        """Every character arith text can contain (the embedded char-level tokenizer's vocabulary)."""
        return "0123456789+-*=: \nQAredo"
