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

*The calculator really runs.* During RL rollouts (:func:`selfprm.rl.rollout.sample_rollouts`) the
policy writes a call up to its marker, ``call calc(12+7) ->``; generation stops there, the domain
evaluates the expression (:meth:`ToolsDomain.run_calls`) and the tool's answer and the end of the
line, `` 19\n``, are appended as *given* tokens — never trained, never counted as policy tokens —
and generation goes on from there. The expression is evaluated by :data:`CALC_EVALUATOR` inside
:func:`selfprm.sandbox.run_sandboxed`: the child parses it with :mod:`ast` and computes only integer
``+``, ``-``, ``*`` (and unary signs, parentheses); anything else is refused, and a refused or
failed call gets an empty answer (the line just ends), which the step parser then reads as an
invalid step. All calls of one generation round go to one sandboxed process
(:class:`CalculatorTool`, ``batched=True``; a process per call costs ~40 ms each, see the report
in :mod:`selfprm.rl.toolpo`); if that process fails, each call is rerun alone so one bad
expression cannot cost the others their answers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from selfprm.domains.base import ANSWER, LineDomain
from selfprm.types import Problem

CALL_RE = re.compile(r"^call calc\((-?\d+)([+\-*])(\d+)\) -> (-?\d+)$")
PLAIN_RE = re.compile(r"^(-?\d+)([+\-*])(\d+)=(-?\d+)$")
# a call the policy has written up to its marker, awaiting the tool's answer
PENDING_CALL_RE = re.compile(r"^call calc\((.*)\)\s*->$")

# Runs inside the sandbox: reads a JSON list of expressions on stdin, writes a JSON list of
# {"value": int} or {"error": str}. Only integer literals, + - * and unary +/- are evaluated — by
# walking the ast, never by eval() — and anything else is refused.
CALC_EVALUATOR = r'''
import ast, json, operator, sys
BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}
UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
MAX_CHARS, MAX_DEPTH, MAX_DIGITS = 400, 64, 400

def ev(node, depth):
    if depth > MAX_DEPTH:
        raise ValueError("refused: nested too deeply")
    if isinstance(node, ast.Expression):
        return ev(node.body, depth + 1)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in BIN:
        v = BIN[type(node.op)](ev(node.left, depth + 1), ev(node.right, depth + 1))
        if len(str(abs(v))) > MAX_DIGITS:
            raise ValueError("refused: result too large")
        return v
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return UNARY[type(node.op)](ev(node.operand, depth + 1))
    what = type(getattr(node, "op", None) or node).__name__
    raise ValueError(f"refused: {what} is not arithmetic")

out = []
for expr in json.load(sys.stdin):
    try:
        if not isinstance(expr, str) or len(expr) > MAX_CHARS:
            raise ValueError("refused: not a short string")
        out.append({"value": ev(ast.parse(expr.strip(), mode="eval"), 0)})
    except (Exception, RecursionError) as e:
        out.append({"error": f"{type(e).__name__}: {e}"})
sys.stdout.write(json.dumps(out))
'''


def calc(a: int, op: str, b: int) -> int:
    """The calculator's arithmetic, in process: the oracle that judges calls (:meth:`ToolsDomain.check_calls`)."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    raise ValueError(f"unknown operation {op!r}")


@dataclass
class CalcResult:
    """One calculator call: its value, or why there is none."""

    value: int | None
    error: str | None = None


def sandboxed_calc(expressions: Sequence[str], *, batched: bool = True, timeout_s: float = 5.0,
                   memory_mb: int = 256) -> list[CalcResult]:
    """Evaluate arithmetic ``expressions`` with :data:`CALC_EVALUATOR` in the sandbox: all in one
    process (``batched``; should it fail, each is rerun alone) or one process per expression."""
    exprs = [str(e) for e in expressions]
    if not exprs:
        return []
    if batched:
        got = _run_calc(exprs, timeout_s, memory_mb)
        if got is not None:
            return got
    return [(_run_calc([e], timeout_s, memory_mb) or [CalcResult(None, "the sandbox failed")])[0] for e in exprs]


def _run_calc(exprs: list[str], timeout_s: float, memory_mb: int) -> list[CalcResult] | None:
    from selfprm.sandbox import run_sandboxed

    res = run_sandboxed(CALC_EVALUATOR, timeout_s=timeout_s, memory_mb=memory_mb, stdin=json.dumps(exprs))
    if not res.ok:
        return None
    try:
        rows = json.loads(res.stdout)
    except ValueError:
        return None
    if not isinstance(rows, list) or len(rows) != len(exprs):
        return None
    return [CalcResult(r["value"], None) if isinstance(r.get("value"), int) else CalcResult(None, str(r.get("error")))
            for r in rows]


@dataclass
class CalculatorTool:
    """How the ``tools`` domain runs its calculator during rollouts.

    Parameters:
        batched: every call of one generation round in one sandboxed process (else a process per call).
        timeout_s: wall-clock limit of one sandboxed process.
        memory_mb: its address-space limit.
    """

    batched: bool = True
    timeout_s: float = 5.0
    memory_mb: int = 256

    def __call__(self, expressions: Sequence[str]) -> list[CalcResult]:
        return sandboxed_calc(expressions, batched=self.batched, timeout_s=self.timeout_s, memory_mb=self.memory_mb)


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

    def __init__(self, config: ToolsConfig | None = None, tool: CalculatorTool | None = None):
        self.config = config or ToolsConfig()
        # how the calculator runs; kept out of ``config`` so cached SFT stages keyed by it stay valid
        self.tool = tool or CalculatorTool()
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

    # ------------------------------------------------------------------ running the tool
    @staticmethod
    def pending_call(line: str) -> str | None:
        """The expression of a call ``line`` has written up to its marker (``call calc(12+7) ->``),
        awaiting the tool's answer; None when ``line`` is no such call."""
        m = PENDING_CALL_RE.match(line.strip())
        return m.group(1) if m else None

    def render_result(self, result: CalcResult) -> str:
        """The text the tool appends after the marker: `` 19`` and the end of the line (only the
        end of the line when the call failed)."""
        return ("" if result.value is None else f" {result.value}") + self.step_separator

    def run_calls(self, expressions: Sequence[str]) -> list[str]:
        """Run pending calls (one generation round's) in the sandbox; the text to append to each."""
        return [self.render_result(r) for r in self.tool(expressions)]

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
