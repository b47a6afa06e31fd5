"""``perturbation``: step labels made by corrupting one step of a verified-correct solution.

Take a reference solution whose every computation checks and whose answer is right, change one
computation — its result, an operator, an operand, or drop a term (a condition of the problem
the step now ignores) — and carry the changed value through the later steps, the way a real
mistake propagates. The corrupted step is then the first error by construction:

    y_j = 1 for j < k,   y_k = 0,   w_j = 0 for j > k     (k: the corrupted step)

and the untouched solution is an all-correct example (y_j = 1 for all j). No human step label
is read. The steps after ``k`` get weight 0: the construction says nothing about them, and
ProcessBench's metric reads only the first error.

This is the "error injection" family of synthetic process labels; PRMBench (Song et al., arXiv
2501.03124) builds its test set by injecting errors into PRM800K solutions, and Math-Shepherd
(Wang et al., arXiv 2312.08935) motivates "first step that can no longer reach the answer" as the
label. The computations are found in the text (``a op b = c``) and checked with exact arithmetic
before any is changed, so a corrupted step is wrong for certain.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from selfprm.data.gsm8k import eval_arith
from selfprm.labels.base import register
from selfprm.types import StepLabels, Trajectory

KINDS = ("result", "operator", "operand", "drop_term")

_NUM = r"\d[\d,]*(?:\.\d+)?"
_OP = r"(?:[-+*/×÷]|(?<=\s)x(?=\s))"
# expr = result, where expr has at least one operator between numbers (optionally $ and parens)
_COMP = re.compile(
    rf"(?P<expr>[($]*{_NUM}\)*(?:\s*{_OP}\s*[($]*{_NUM}\)*)+)\s*=\s*\$?(?P<res>{_NUM})(?![\d.]\d)"
)
_TOKEN = re.compile(rf"(?P<num>{_NUM})|(?P<op>{_OP})|(?P<par>[()])")
_NUMBER = re.compile(rf"(?<![\w.]){_NUM}(?![\w])")
_PYOP = {"x": "*", "×": "*", "÷": "/"}


def _val(s: str) -> float:
    return float(s.replace(",", ""))


def fmt(x: float) -> str:
    """A number as a solution writes it: integers bare, else at most two decimals."""
    if abs(x - round(x)) < 1e-9:
        return str(int(round(x)))
    return f"{x:.2f}".rstrip("0").rstrip(".")


@dataclass
class Computation:
    step: int
    start: int  # span of ``expr = result`` in the step text
    end: int
    tokens: list[tuple[str, str, int, int]]  # (kind, text, start, end) in step coordinates
    result: float
    res_span: tuple[int, int]

    def python(self, tokens=None) -> str:
        toks = self.tokens if tokens is None else tokens
        return "".join(t.replace(",", "") if k == "num" else _PYOP.get(t, t) for k, t, _, _ in toks)


def find_computations(step: str, step_index: int = 0) -> list[Computation]:
    """Every ``expr = result`` in a step whose arithmetic is exactly right."""
    out = []
    for m in _COMP.finditer(step):
        e0 = m.start("expr")
        toks = [(t.lastgroup, t.group(), e0 + t.start(), e0 + t.end()) for t in _TOKEN.finditer(m.group("expr"))]
        comp = Computation(step_index, m.start(), m.end(), toks, _val(m.group("res")), m.span("res"))
        try:
            if abs(eval_arith(comp.python()) - comp.result) <= 1e-6 * max(1.0, abs(comp.result)):
                out.append(comp)
        except (ValueError, SyntaxError, ZeroDivisionError, OverflowError):
            continue
    return out


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    for s, e, new in sorted(edits, key=lambda x: x[0], reverse=True):
        text = text[:s] + new + text[e:]
    return text


def _plausible(x: float, old: float) -> bool:
    # keep corrupted values looking like ones a solver could write: finite, not absurdly large,
    # same sign, few decimals.
    return (math.isfinite(x) and abs(x - old) > 1e-9 and abs(x) < 1e9 and (x >= 0 or old < 0)
            and abs(x * 100 - round(x * 100)) < 1e-6)


def _mutate(comp: Computation, kind: str, rng: np.random.Generator) -> tuple[list[tuple[int, int, str]], float] | None:
    """Edits to the step's text and the new result, or None when ``kind`` does not apply."""
    nums = [i for i, t in enumerate(comp.tokens) if t[0] == "num"]
    ops = [i for i, t in enumerate(comp.tokens) if t[0] == "op"]
    r = comp.result
    if kind == "result":
        cands = [r + d for d in (1, -1, 2, -2, 10, -10)] + [r * 2, r / 2, r * 10]
        cands = [c for c in cands if _plausible(c, r)]
        if not cands:
            return None
        new = float(cands[int(rng.integers(len(cands)))])
        return [(*comp.res_span, fmt(new))], new
    if kind in ("operator", "operand", "drop_term"):
        toks = list(comp.tokens)
        if kind == "operator":
            if not ops:
                return None
            i = ops[int(rng.integers(len(ops)))]
            swap = {"+": "-", "-": "+", "*": "+", "x": "+", "×": "+", "/": "*", "÷": "*"}
            new_op = swap[toks[i][1]]
            toks[i] = ("op", new_op, toks[i][2], toks[i][3])
            edits = [(toks[i][2], toks[i][3], new_op)]
        elif kind == "operand":
            i = nums[int(rng.integers(len(nums)))]
            v = _val(toks[i][1])
            opts = [c for c in (v + 1, v - 1, v + 2, v * 2, v + 10) if _plausible(c, v)]
            if not opts:
                return None
            nv = fmt(float(opts[int(rng.integers(len(opts)))]))
            toks[i] = ("num", nv, toks[i][2], toks[i][3])
            edits = [(toks[i][2], toks[i][3], nv)]
        else:  # drop_term: remove "op number" (or "number op" at the front) when no parens are involved
            if len(nums) < 3 or any(k == "par" for k, *_ in toks):
                return None
            j = int(rng.integers(1, len(nums)))  # drop a later term, keep the first
            i = nums[j]
            lo = toks[i - 2][3]  # from the end of the previous term: drops " - 15" whole
            hi = toks[i][3]
            if toks[i - 1][1] in ("*", "x", "×", "/", "÷") or (i + 1 < len(toks) and toks[i + 1][1] in ("*", "x", "×", "/", "÷")):
                return None  # dropping a factor is not a dropped condition; keep to sums/differences
            toks = toks[:i - 1] + toks[i + 1:]
            edits = [(lo, hi, "")]
        try:
            new = eval_arith(comp.python(toks))
        except (ValueError, SyntaxError, ZeroDivisionError, OverflowError):
            return None
        if not _plausible(new, r):
            return None
        return edits + [(*comp.res_span, fmt(new))], new
    raise ValueError(f"unknown perturbation kind {kind!r}; choose from {KINDS}")


def _propagate(steps: list[str], start: int, changed: dict[str, str], protected: set[str]) -> list[str]:
    """Carry changed values into steps ``start..``: recompute computations that use them and
    rewrite other mentions (not numbers the problem itself states: those are not derived)."""
    out = list(steps)
    for j in range(start, len(out)):
        text, edits, covered = out[j], [], []
        for comp in find_computations(text, j):
            toks, touched = list(comp.tokens), False
            for i, (k, t, s, e) in enumerate(toks):
                if k == "num" and fmt(_val(t)) in changed:
                    nv = changed[fmt(_val(t))]
                    toks[i] = (k, nv, s, e)
                    edits.append((s, e, nv))
                    touched = True
            if touched:
                try:
                    new = eval_arith(comp.python(toks))
                except (ValueError, ZeroDivisionError, OverflowError, SyntaxError):
                    new = comp.result
                if math.isfinite(new) and abs(new - comp.result) > 1e-9:
                    changed[fmt(comp.result)] = fmt(new)
                    edits.append((*comp.res_span, fmt(new)))
            covered.append((comp.start, comp.end))
        for m in _NUMBER.finditer(text):
            key = fmt(_val(m.group()))
            if key in changed and key not in protected and not any(s <= m.start() < e for s, e in covered):
                edits.append((m.start(), m.end(), changed[key]))
        out[j] = _apply(text, edits)
    return out


def perturb_solution(traj: Trajectory, kind: str, rng: np.random.Generator, step: int | None = None) -> Trajectory | None:
    """One corrupted copy of ``traj`` (``meta["perturbation"]`` says where and how), or None.

    ``step`` picks the step to corrupt; by default a random step holding a checked computation.
    """
    comps = [c for i, s in enumerate(traj.steps) for c in find_computations(s, i)]
    if step is not None:
        comps = [c for c in comps if c.step == step]
    order = rng.permutation(len(comps))
    for ci in order:
        comp = comps[int(ci)]
        got = _mutate(comp, kind, rng)
        if got is None:
            continue
        edits, new = got
        k = comp.step
        text = traj.steps[k]
        head = _apply(text[:comp.end], edits)  # every edit lies inside the computation
        if head == text[:comp.end]:
            continue
        protected = {fmt(_val(m.group())) for m in _NUMBER.finditer(traj.problem.prompt)}
        changed = {fmt(comp.result): fmt(new)}
        # the rest of the corrupted step ("... = 71 clips. The answer is 72.") goes along too
        tail = _propagate([text[comp.end:]], 0, changed, protected)[0]
        steps = list(traj.steps[:k]) + [head + tail] + list(traj.steps[k + 1:])
        steps = _propagate(steps, k + 1, changed, protected)
        out = copy.copy(traj)
        out.steps = steps
        out.meta = {**traj.meta, "perturbation": {"step": k, "kind": kind, "from": fmt(comp.result), "to": fmt(new)}}
        out.meta.pop("raw_steps", None)  # the calculator annotations no longer match the text
        out.oracle_labels = [True] * k + [False] * (len(steps) - k)
        out.outcome = None  # the answer usually changes; nobody checked
        out.final_answer = None
        return out
    return None


@dataclass
class PerturbationConfig:
    variants: int = 3  # corrupted copies per solution (different step/kind where possible)
    keep_clean: bool = True  # also emit the solution itself, all steps correct
    kinds: tuple[str, ...] = field(default=KINDS)
    seed: int = 0


def perturb_solutions(solutions: Sequence[Trajectory], config: PerturbationConfig | None = None) -> list[Trajectory]:
    """Clean solutions and their corrupted variants, ready for :class:`PerturbationLabels`.

    Only solutions marked correct (``outcome is True``) are used: the construction needs every
    step before the corrupted one to be sound (use a *verified* reference,
    :func:`selfprm.data.gsm8k.verify_reference`).
    """
    c = config or PerturbationConfig()
    rng = np.random.default_rng(c.seed)
    out: list[Trajectory] = []
    for t in solutions:
        if t.outcome is not True or not t.steps:
            continue
        if c.keep_clean:
            clean = copy.copy(t)
            clean.meta = {**t.meta, "perturbation": None}
            clean.oracle_labels = [True] * len(t.steps)
            out.append(clean)
        seen = set()
        for v in range(c.variants * 3):  # a few more tries than variants: some kinds do not apply
            if len(seen) >= c.variants:
                break
            kind = c.kinds[int(rng.integers(len(c.kinds)))]
            got = perturb_solution(t, kind, rng)
            if got is None:
                continue
            key = (got.meta["perturbation"]["step"], kind, got.meta["perturbation"]["to"])
            if key in seen:
                continue
            seen.add(key)
            out.append(got)
    return out


@register("perturbation")
@dataclass
class PerturbationLabels:
    """Labels of the trajectories :func:`perturb_solutions` made (1 before the corrupted step,
    0 at it, weight 0 after; all 1 for a clean one)."""

    name: str = "perturbation"
    prm_loss: str = "bce"

    def label(self, trajectories: Sequence[Trajectory], policy=None, *, progress: bool = False) -> list[StepLabels | None]:
        out = []
        for t in trajectories:
            if "perturbation" not in t.meta:
                raise ValueError(f"trajectory of problem {t.problem.id!r} was not made by perturb_solutions")
            p = t.meta["perturbation"]
            n = len(t.steps)
            if p is None:
                out.append(StepLabels([1.0] * n, source=self.name))
                continue
            k = int(p["step"])
            out.append(StepLabels([1.0] * k + [0.0] * (n - k), source=self.name,
                                  weights=[1.0] * (k + 1) + [0.0] * (n - k - 1)))
        return out
