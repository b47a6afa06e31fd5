"""``tools``: chains of operations solved by calling a calculator tool whose calls can be checked.

A problem is a start value and a chain of operations, e.g. ``Q:12 +7 *3``; a solution writes one
step per line — either a call of the calculator, or plain mental arithmetic — and ends with the
answer line::

    call calc(12+7) -> 19
    19*3=57
    A:57

Unlike ``arith`` nothing is reduced modulo anything, so products grow and a tiny policy gets them
wrong unless it learns the calls. Every call is checkable (:meth:`ToolsDomain.check_calls`): it is
correct when it computes the next operation of the chain from the right running value and its
result is what the calculator returns. The step oracle is ``arith``'s rule: a step is sound when
it computes the next operation correctly from the correct running value, and every step before
it is sound.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from selfprm.domains.base import ANSWER, LineDomain
from selfprm.types import Problem
CALL_RE = re.compile(r"^call calc\((-?\d+)([+\-*])(\d+)\) -> (-?\d+)$")
PLAIN_RE = re.compile(r"^(-?\d+)([+\-*])(\d+)=(-?\d+)$")


def calc(a: int, op: str, b: int) -> int:
    """The calculator tool."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    raise ValueError(f"unknown operation {op!r}")


@dataclass
class ToolsConfig:
    """Knobs of the ``tools`` domain.

    Parameters:
        min_ops: fewest operations in a chain.
        max_ops: most operations in a chain.
        start_max: largest start value.
        op_weights: how often each operation is drawn.
        operand_max: largest operand of each operation.
        mental_rate: how often worked solutions do an easy step (both numbers below 10, not a product) in the head.
    """

    min_ops: int = 2
    max_ops: int = 4
    start_max: int = 20
    op_weights: dict[str, float] = field(default_factory=lambda: {"+": 0.4, "-": 0.2, "*": 0.4})
    operand_max: dict[str, int] = field(default_factory=lambda: {"+": 20, "-": 9, "*": 5})
    mental_rate: float = 0.5


@dataclass
class ParsedStep:
    kind: str  # "call", "plain" or "invalid"
    a: int | None = None
    op: str | None = None
    b: int | None = None
    result: int | None = None


class ToolsDomain(LineDomain):
    """Samples problems, writes worked solutions with tool calls, judges steps and calls."""

    name = "tools"

    def __init__(self, config: ToolsConfig | None = None):
        self.config = config or ToolsConfig()
        if self.config.min_ops < 1 or self.config.max_ops < self.config.min_ops:
            raise ValueError("need 1 <= min_ops <= max_ops")

    # ------------------------------------------------------------------ problems
    def sample_problems(self, n: int, seed: int, prefix: str = "tools") -> list[Problem]:
        rng = np.random.default_rng(seed)
        c = self.config
        ops = list(c.op_weights)
        probs = np.array([c.op_weights[o] for o in ops], dtype=float)
        probs /= probs.sum()
        out = []
        for i in range(n):
            k = int(rng.integers(c.min_ops, c.max_ops + 1))
            start = int(rng.integers(1, c.start_max + 1))
            chain = []
            for _ in range(k):
                op = ops[int(rng.choice(len(ops), p=probs))]
                chain.append((op, int(rng.integers(2 if op == "*" else 1, c.operand_max[op] + 1))))
            out.append(self.make_problem(f"{prefix}-{seed}-{i}", start, chain))
        return out

    def make_problem(self, pid: str, start: int, chain: Sequence[tuple[str, int]]) -> Problem:
        values = [start]
        for op, b in chain:
            values.append(calc(values[-1], op, b))
        prompt = "Q:" + str(start) + "".join(f" {op}{b}" for op, b in chain)
        return Problem(pid, prompt, str(values[-1]), {"start": start, "chain": [[op, b] for op, b in chain], "values": values})

    @staticmethod
    def render_call(a: int, op: str, b: int, result: int) -> str:
        return f"call calc({a}{op}{b}) -> {result}"

    def worked_solution(self, problem: Problem, rng: np.random.Generator) -> tuple[list[str], str]:
        """A correct solution: products and large sums go to the calculator, easy steps are mental."""
        values, steps = problem.meta["values"], []
        for j, (op, b) in enumerate(problem.meta["chain"]):
            a, r = values[j], values[j + 1]
            easy = op != "*" and 0 <= a < 10 and b < 10
            if easy and rng.random() < self.config.mental_rate:
                steps.append(f"{a}{op}{b}={r}")
            else:
                steps.append(self.render_call(a, op, b, r))
        return steps, problem.answer

    @staticmethod
    def parse_step(step: str) -> ParsedStep:
        s = step.strip()
        for kind, rx in (("call", CALL_RE), ("plain", PLAIN_RE)):
            m = rx.match(s)
            if m:
                return ParsedStep(kind, int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4)))
        return ParsedStep("invalid")

    def step_well_formed(self, step: str) -> bool:
        s = step.strip()
        return self.parse_step(s).kind != "invalid" or (s.startswith(ANSWER) and len(s) > len(ANSWER))

    def call_spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans ``[start, end)`` of every tool call in ``text`` (``call`` to the result)."""
        spans, pos = [], 0
        for line in text.split(self.step_separator):
            stripped = line.strip()
            if CALL_RE.match(stripped):
                start = pos + line.index(stripped)
                spans.append((start, start + len(stripped)))
            pos += len(line) + len(self.step_separator)
        return spans

    # ------------------------------------------------------------------ oracle
    def judge_steps(self, problem: Problem, steps: Sequence[str]) -> list[bool]:
        chain, values = problem.meta["chain"], problem.meta["values"]
        out, sound, k = [], True, 0
        for s in steps:
            p = self.parse_step(s)
            if p.kind == "invalid" or k >= len(chain) or [p.op, p.b] != list(chain[k]):
                sound = False
            else:
                sound = sound and p.a == values[k] and p.result == calc(p.a, p.op, p.b)
                k += 1
            out.append(sound)
        return out

    def check_calls(self, problem: Problem, steps: Sequence[str]) -> list[bool | None]:
        """Per step: None when it is no call, else whether the call is correct — it computes the
        operation the chain needs next, from the right running value, and reports the tool's result."""
        chain, values = problem.meta["chain"], problem.meta["values"]
        out: list[bool | None] = []
        k = 0
        for s in steps:
            p = self.parse_step(s)
            on_chain = p.kind != "invalid" and k < len(chain) and [p.op, p.b] == list(chain[k])
            if p.kind == "call":
                out.append(bool(on_chain and p.a == values[k] and p.result == calc(p.a, p.op, p.b)))
            else:
                out.append(None)
            if on_chain:
                k += 1
        return out

    def charset(self) -> str:
        return "0123456789+-*=: \nQAcal()>"
